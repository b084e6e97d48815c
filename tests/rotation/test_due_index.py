"""The due index against the real store on Azurite (issue 11: the scan reads only due rows).

Each application has at most one ``due|`` row, which the app row names (``IndexKey``). While a
job is queued or running (``pending``, ``enqueuedAt``, ``inProgress``) a write leaves that row
where it is when it is earlier than needed: one entity write instead of a batch that deletes and
inserts it (an expiry change is recorded by the write that ends the job). Generated sequences of status writes (idle with an expiry, a job queued, a claim, a
renewed claim, a retry enqueued, rotation switched off) check after every write that the row is
never later than the application's attention time (a scan can never miss it), is exactly that time
once no job is outstanding, and that a write the rule covers submits no transaction.

The app row is written with a merge that names every column this version owns: after every write
the stored configuration and status are the ones last written, and a column added by a newer
version survives (named example).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.models import (
    ApplicationConfig,
    ApplicationStatus,
    JobReason,
    PendingRotation,
    RotationClaim,
    RotationResult,
)
from shared.domain.schedule import attention_at
from shared.errors import ConflictError
from shared.storage.applications import (
    INDEX_PREFIX,
    PARTITION,
    ApplicationStore,
    StoredApplication,
    app_row_key,
    index_row_key,
)
from tests.rotation.azurite_store import POLICY, CountingTable, fresh_table, generated

APPS = [str(uuid.UUID(int=index + 1)) for index in range(3)]
EXAMPLES = int(os.environ.get("ROTATOR_DUE_INDEX_EXAMPLES", "25"))
KINDS = ("idle", "pending", "enqueued", "claim", "renew", "finish", "disable")

step = st.tuples(st.integers(0, len(APPS) - 1), st.sampled_from(KINDS), st.integers(0, 90))


def config_for(app_id: str, *, enabled: bool = True) -> ApplicationConfig:
    return ApplicationConfig.model_validate(
        {
            "appId": app_id,
            "objectId": app_id,
            "displayName": "app",
            "rotation": {"enabled": enabled, "secretLifetimeDays": 30, "updateThresholdHours": 12},
        },
        strict=False,
    )


def outstanding(status: ApplicationStatus) -> bool:
    return status.in_progress is not None or status.pending is not None or status.enqueued_at is not None


def next_status(kind: str, status: ApplicationStatus, now: datetime) -> ApplicationStatus:
    """The status a write of ``kind`` leaves (its expiry unchanged while a job is outstanding)."""
    if kind == "idle":
        return ApplicationStatus(
            current_key_id="k",
            expires_at=now + timedelta(days=10),
            last_updated_at=now,
            last_result=RotationResult.SUCCEEDED,
        )
    if kind == "pending":
        pending = PendingRotation(rotation_id=str(uuid.uuid4()), requested_at=now, reason=JobReason.MANUAL)
        return status.model_copy(update={"pending": pending, "enqueued_at": now})
    if kind == "enqueued":
        return status.model_copy(update={"enqueued_at": now, "retry_at": now})
    if kind == "claim" or (kind == "renew" and status.in_progress is None):
        claim = RotationClaim(
            rotation_id=str(uuid.uuid4()), owner="w", claimed_at=now, expires_at=now + timedelta(minutes=5)
        )
        return status.model_copy(update={"in_progress": claim, "pending": None, "enqueued_at": None})
    if kind == "renew":
        assert status.in_progress is not None
        claim = status.in_progress.model_copy(update={"expires_at": now + timedelta(minutes=5)})
        return status.model_copy(update={"in_progress": claim})
    if kind == "finish":
        return status.model_copy(
            update={"in_progress": None, "pending": None, "enqueued_at": None, "retry_at": None}
        )
    return status  # "disable": the configuration changes


async def run(connection_string: str, steps: list[tuple[int, str, int]]) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    async with fresh_table(connection_string) as table:
        counted = CountingTable(table, ("submit_transaction",))
        store = ApplicationStore(counted, POLICY)  # type: ignore[arg-type]
        written: dict[str, tuple[ApplicationConfig, ApplicationStatus]] = {}
        for app_id in APPS:
            written[app_id] = (config_for(app_id), next_status("idle", ApplicationStatus(), now))
            await store.create(*written[app_id], now)
        for number, kind, minutes in steps:
            now += timedelta(minutes=minutes)
            app_id = APPS[number]
            current = await store.get(app_id)
            config = config_for(app_id, enabled=kind != "disable")
            status = next_status(kind, current.status, now)
            before = counted.calls
            await store.save(current, config, status, now)
            written[app_id] = (config, status)
            wanted = attention_at(config, status, POLICY)
            kept = (
                outstanding(status)
                and current.index_key is not None
                and wanted is not None
                and current.index_key < index_row_key(wanted, app_id)
            )
            if kept:
                # One entity write: the index row stays, and an expiry or state change is held
                # back until the job ends (``_change_operation``).
                assert counted.calls == before, (steps, kind)
            await check(table, store, steps)
            for app_id, (config, status) in written.items():
                # The app row is merged, not replaced: every column must come from the last write.
                stored = await store.get(app_id)
                assert (stored.config, stored.status) == (config, status), steps


async def check(
    table: Any, store: ApplicationStore, steps: list[tuple[int, str, int]], app_ids: list[str] = APPS
) -> None:
    rows = [
        str(entity["RowKey"])
        async for entity in table.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": PARTITION, "lo": INDEX_PREFIX, "hi": INDEX_PREFIX[:-1] + "}"},
            select=["RowKey"],
        )
    ]
    for app_id in app_ids:
        mine = [row for row in rows if row.endswith(f"|{app_id}")]
        stored = await store.get(app_id)
        entity = await table.get_entity(PARTITION, app_row_key(app_id), select=["IndexKey"])
        wanted = attention_at(stored.config, stored.status, POLICY)
        if wanted is None:
            assert mine == [] and not entity["IndexKey"], steps
            continue
        assert mine == [entity["IndexKey"]], steps  # exactly the row the app row names
        assert mine[0] <= index_row_key(wanted, app_id), steps  # never later than needed
        if not outstanding(stored.status):
            assert mine[0] == index_row_key(wanted, app_id), steps  # exact once no job is outstanding


@contextlib.asynccontextmanager
async def one_idle_app(
    connection_string: str, now: datetime
) -> AsyncIterator[tuple[Any, CountingTable, ApplicationStore, StoredApplication]]:
    """A throwaway table holding ``APPS[0]`` registered idle at ``now``, with the store over it
    counting transactions: (table, counting wrapper, store, the stored application)."""
    async with fresh_table(connection_string) as table:
        counted = CountingTable(table, ("submit_transaction",))
        store = ApplicationStore(counted, POLICY)  # type: ignore[arg-type]
        app_id = APPS[0]
        created = await store.create(config_for(app_id), next_status("idle", ApplicationStatus(), now), now)
        yield table, counted, store, created


@generated(EXAMPLES)
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_the_due_row_is_never_later_than_needed(azurite: str, steps: list[tuple[int, str, int]]) -> None:
    asyncio.run(run(azurite, steps))


def test_a_queued_job_and_its_claim_leave_the_due_row_in_place(azurite: str) -> None:
    """Named example: the scan marks a due rotation queued, a worker claims it and renews the claim:
    three entity writes, no transaction, and the row stays at the time the scan found it; the end
    of the job moves it to the next scheduled time in one transaction."""

    async def scenario() -> None:
        now = datetime(2026, 12, 1, tzinfo=UTC)
        app_id = APPS[0]
        async with one_idle_app(azurite, now) as (table, counted, store, created):
            config, idle = created.config, created.status
            found_at = created.index_key
            due_at = attention_at(config, idle, POLICY)
            assert due_at is not None and now < due_at
            now = due_at  # the scan finds it due
            before = counted.calls
            stored = created
            for kind in ("pending", "claim", "renew"):
                stored = await store.save(stored, config, next_status(kind, stored.status, now), now)
                assert stored.index_key == found_at
                now += timedelta(minutes=1)
            assert counted.calls == before
            finished = next_status("finish", next_status("idle", stored.status, now), now)
            stored = await store.save(stored, config, finished, now)
            assert counted.calls == before + 1
            wanted = attention_at(config, finished, POLICY)
            assert wanted is not None and stored.index_key == index_row_key(wanted, app_id)
            await check(table, store, [], [app_id])

    asyncio.run(scenario())


def test_a_save_rewrites_every_column_it_owns_and_keeps_one_it_does_not(azurite: str) -> None:
    """The app row is written with a merge (Merge Entity, If-Match): every column this version
    writes holds the new values, a column a later version added survives (its ``Writes`` count
    tells that version it was not rewritten), and the ETag still guards the write."""

    async def scenario() -> None:
        from azure.data.tables import UpdateMode

        now = datetime(2026, 12, 1, tzinfo=UTC)
        app_id = APPS[0]
        async with one_idle_app(azurite, now) as (table, counted, store, created):
            config = created.config
            await table.update_entity(
                {"PartitionKey": PARTITION, "RowKey": app_row_key(app_id), "FromANewerVersion": "kept"},
                mode=UpdateMode.MERGE,
            )
            stale = created
            current = await store.get(app_id)
            due_at = attention_at(config, current.status, POLICY)
            assert due_at is not None
            queued = next_status("pending", current.status, due_at)  # queued when the scan finds it due
            # One entity write (a job queued), then a transaction (the job ends with rotation off:
            # its due row goes and the state change is recorded).
            ended = next_status("finish", queued, due_at)
            for saved_config, saved_status, transactions in (
                (config, queued, 0),
                (config_for(app_id, enabled=False), ended, 1),
            ):
                before = counted.calls
                saved = await store.save(current, saved_config, saved_status, due_at)
                assert counted.calls - before == transactions
                row = await table.get_entity(PARTITION, app_row_key(app_id))
                assert row["FromANewerVersion"] == "kept"
                assert row["Writes"].value == current.writes + 1  # what tells that version it is stale
                current = await store.get(app_id)
                assert (current.config, current.status, current.etag) == (
                    saved_config,
                    saved_status,
                    saved.etag,
                )
            with pytest.raises(ConflictError):
                await store.save(stale, config, queued, due_at)

    asyncio.run(scenario())
