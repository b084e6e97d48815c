"""The due index against the real store on Azurite (issue 11: the scan reads only due rows).

Each application has one row in the due index table (``rotationdue``), which the app row names
(``DueKey``); in the ``both`` layout also one ``due|`` row in the registry, which it names too
(``IndexKey``). While a job is queued or running (``pending``, ``enqueuedAt``, ``inProgress``), or
the row holds an outcome the log lacks (``unlogged``: the write that ended a rotation, which the
write that settles it follows), a write leaves those rows where they are when they are earlier than
needed: one entity write and no index write (an expiry change is recorded by the write that ends
the job). Generated sequences of status writes (idle with an expiry, a job queued, a claim, a
renewed claim, a retry enqueued, a job ended with its outcome unlogged, the outcome settled,
rotation switched off), in both layouts, check after every write that the rows are never later than
the application's attention time (a scan can never miss it), are exactly that time once nothing is
outstanding, and that a write the rule covers submits no transaction and writes no due row.

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
    LogLevel,
    PendingRotation,
    RotationClaim,
    RotationResult,
    UnloggedOutcome,
)
from shared.domain.schedule import attention_at
from shared.errors import ConflictError
from shared.storage.applications import (
    INDEX_PREFIX,
    LAYOUT_BOTH,
    LAYOUT_KEY,
    LAYOUT_TABLE,
    META_PARTITION,
    PARTITION,
    ApplicationStore,
    StoredApplication,
    app_row_key,
    format_instant,
    index_row_key,
)
from shared.storage.due_index import DueIndex, key_instant
from tests.rotation.azurite_store import POLICY, CountingTable, due_table, fresh_table, generated, store_over

APPS = [str(uuid.UUID(int=index + 1)) for index in range(3)]
EXAMPLES = int(os.environ.get("ROTATOR_DUE_INDEX_EXAMPLES", "25"))
KINDS = ("idle", "pending", "enqueued", "claim", "renew", "finish", "ended", "settled", "disable")

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
    """A job queued or running, or an outcome the log lacks: the due row may be early."""
    job = status.in_progress is not None or status.pending is not None or status.enqueued_at is not None
    return job or bool(status.unlogged)


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
    if kind in ("finish", "ended"):
        # "ended": as the engine ends a rotation, its outcome kept in the row for the log.
        outcome = UnloggedOutcome(
            at=now,
            app_id="a",
            rotation_id=str(uuid.uuid4()),
            event="rotation.completed",
            level=LogLevel.INFO,
            message="Rotation succeeded",
        )
        return status.model_copy(
            update={
                "in_progress": None,
                "pending": None,
                "enqueued_at": None,
                "retry_at": None,
                "unlogged": [*status.unlogged, outcome] if kind == "ended" else status.unlogged,
            }
        )
    if kind == "settled":
        return status.model_copy(update={"unlogged": []})
    return status  # "disable": the configuration changes


async def use_layout(table: Any, layout: str) -> None:
    """Record the due index layout on a fresh table, as an install of that kind has it."""
    await table.upsert_entity({"PartitionKey": META_PARTITION, "RowKey": LAYOUT_KEY, "Layout": layout})


async def run(connection_string: str, steps: list[tuple[int, str, int]], layout: str) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    async with fresh_table(connection_string) as table:
        await use_layout(table, layout)
        counted = CountingTable(table, ("submit_transaction",))
        due_writes = CountingTable(due_table(table), ("upsert_entity", "delete_entity"))
        store = ApplicationStore(counted, POLICY, DueIndex(due_writes))  # type: ignore[arg-type]
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
            before, due_before = counted.calls, due_writes.calls
            await store.save(current, config, status, now)
            written[app_id] = (config, status)
            wanted = attention_at(config, status, POLICY)
            kept = (
                outstanding(status)
                and current.due_key is not None
                and wanted is not None
                and key_instant(current.due_key) < format_instant(wanted)
            )
            if kept:
                # One entity write: the due rows stay, and an expiry or state change is held
                # back until the job ends (``_change_operation``).
                assert (counted.calls, due_writes.calls) == (before, due_before), (steps, kind)
            await check(table, store, steps, layout=layout)
            for app_id, (config, status) in written.items():
                # The app row is merged, not replaced: every column must come from the last write.
                stored = await store.get(app_id)
                assert (stored.config, stored.status) == (config, status), steps


async def due_rows(table: Any) -> list[str]:
    """The keys of the due index table beside ``table``."""
    return [str(entity["RowKey"]) async for entity in due_table(table).query_entities("", select=["RowKey"])]


async def legacy_rows(table: Any) -> list[str]:
    """The keys of the registry's ``due|`` rows."""
    return [
        str(entity["RowKey"])
        async for entity in table.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": PARTITION, "lo": INDEX_PREFIX, "hi": INDEX_PREFIX[:-1] + "}"},
            select=["RowKey"],
        )
    ]


async def check(
    table: Any,
    store: ApplicationStore,
    steps: list[Any],
    app_ids: list[str] = APPS,
    *,
    layout: str = LAYOUT_TABLE,
    orphans: bool = False,
) -> None:
    """Every application's due rows as the module docstring says; ``orphans``: rows no app row
    names may be left over (a write failed halfway), as long as the named ones are right."""
    due, legacy = await due_rows(table), await legacy_rows(table)
    for app_id in app_ids:
        stored = await store.get(app_id)
        entity = await table.get_entity(
            PARTITION, app_row_key(app_id), select=["IndexKey", "DueKey", "DueWrites"]
        )
        assert stored.due_trusted, steps  # this version wrote it
        wanted = attention_at(stored.config, stored.status, POLICY)
        mine = [row for row in due if f"|{app_id}|" in row]
        named = [row for row in mine if row == entity["DueKey"]] if orphans else mine
        mine_legacy = [row for row in legacy if row.endswith(f"|{app_id}")]
        if layout == LAYOUT_TABLE:
            assert mine_legacy == [] and not entity["IndexKey"], steps
        if wanted is None:
            assert named == [] and not entity["DueKey"], steps
            if layout == LAYOUT_BOTH:
                assert mine_legacy == [] and not entity["IndexKey"], steps
            continue
        assert named == [entity["DueKey"]], steps  # exactly the row the app row names
        assert key_instant(named[0]) <= format_instant(wanted), steps  # never later than needed
        if not outstanding(stored.status):
            assert key_instant(named[0]) == format_instant(wanted), steps  # exact once no job is outstanding
        if layout == LAYOUT_BOTH:
            assert mine_legacy == [entity["IndexKey"]], steps
            assert mine_legacy[0] <= index_row_key(wanted, app_id), steps
            if not outstanding(stored.status):
                assert mine_legacy[0] == index_row_key(wanted, app_id), steps


@contextlib.asynccontextmanager
async def one_idle_app(
    connection_string: str, now: datetime, layout: str = LAYOUT_TABLE
) -> AsyncIterator[tuple[Any, CountingTable, ApplicationStore, StoredApplication]]:
    """A throwaway table holding ``APPS[0]`` registered idle at ``now``, with the store over it
    counting transactions: (table, counting wrapper, store, the stored application)."""
    async with fresh_table(connection_string) as table:
        await use_layout(table, layout)
        counted = CountingTable(table, ("submit_transaction",))
        store = store_over(counted)  # type: ignore[arg-type]
        app_id = APPS[0]
        created = await store.create(config_for(app_id), next_status("idle", ApplicationStatus(), now), now)
        yield table, counted, store, created


@pytest.mark.parametrize("layout", [LAYOUT_TABLE, LAYOUT_BOTH])
@generated(EXAMPLES)
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_the_due_row_is_never_later_than_needed(
    azurite: str, layout: str, steps: list[tuple[int, str, int]]
) -> None:
    asyncio.run(run(azurite, steps, layout))


@pytest.mark.parametrize("layout", [LAYOUT_TABLE, LAYOUT_BOTH])
def test_a_queued_job_and_its_claim_leave_the_due_row_in_place(azurite: str, layout: str) -> None:
    """Named example: the scan marks a due rotation queued, a worker claims it and renews the claim:
    three entity writes, no transaction, and the row stays at the time the scan found it; the end
    of the job moves it to the next scheduled time in one transaction."""

    async def scenario() -> None:
        now = datetime(2026, 12, 1, tzinfo=UTC)
        app_id = APPS[0]
        async with one_idle_app(azurite, now, layout) as (table, counted, store, created):
            config, idle = created.config, created.status
            found_at = created.index_key, created.due_key
            due_at = attention_at(config, idle, POLICY)
            assert due_at is not None and now < due_at
            now = due_at  # the scan finds it due
            before = counted.calls
            stored = created
            for kind in ("pending", "claim", "renew"):
                stored = await store.save(stored, config, next_status(kind, stored.status, now), now)
                assert (stored.index_key, stored.due_key) == found_at
                now += timedelta(minutes=1)
            assert counted.calls == before
            finished = next_status("finish", next_status("idle", stored.status, now), now)
            stored = await store.save(stored, config, finished, now)
            assert counted.calls == before + 1
            wanted = attention_at(config, finished, POLICY)
            assert (
                wanted is not None
                and stored.due_key
                and key_instant(stored.due_key) == format_instant(wanted)
            )
            assert stored.index_key == (index_row_key(wanted, app_id) if layout == LAYOUT_BOTH else None)
            assert await due_rows(table) == [stored.due_key]
            await check(table, store, [], [app_id], layout=layout)

    asyncio.run(scenario())


@pytest.mark.parametrize("layout", [LAYOUT_TABLE, LAYOUT_BOTH])
def test_the_write_that_ends_a_rotation_leaves_the_due_row_to_the_one_that_settles_its_outcome(
    azurite: str, layout: str
) -> None:
    """Named example (the engine's last two writes): the write that ends a claimed rotation keeps
    its outcome for the log (``unlogged``) and leaves the due row where the scan found it; the
    write that settles the outcome moves it to the next scheduled time. Two due row writes per
    rotation, not four."""

    async def scenario() -> None:
        now = datetime(2026, 12, 1, tzinfo=UTC)
        async with one_idle_app(azurite, now, layout) as (table, counted, store, created):
            config = created.config
            due_at = attention_at(config, created.status, POLICY)
            assert due_at is not None
            now = due_at
            stored = created
            for kind in ("pending", "claim"):
                stored = await store.save(stored, config, next_status(kind, stored.status, now), now)
            found_at = await due_rows(table)
            assert found_at == [created.due_key]
            before = counted.calls
            ended = next_status("ended", next_status("idle", stored.status, now), now)
            stored = await store.save(stored, config, ended, now)
            # One transaction: the expiry change held back while the job ran (``_change_operation``).
            assert counted.calls == before + 1 and await due_rows(table) == found_at
            assert (stored.index_key, stored.due_key) == (created.index_key, created.due_key)
            await check(table, store, [], [APPS[0]], layout=layout)
            settled = next_status("settled", stored.status, now)
            stored = await store.save(stored, config, settled, now)
            # In the ``both`` layout the registry's ``due|`` row moves in the app row's transaction.
            assert counted.calls == before + (2 if layout == LAYOUT_BOTH else 1)
            wanted = attention_at(config, settled, POLICY)
            assert wanted is not None and stored.due_key is not None
            assert key_instant(stored.due_key) == format_instant(wanted)
            assert await due_rows(table) == [stored.due_key]
            await check(table, store, [], [APPS[0]], layout=layout)

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
