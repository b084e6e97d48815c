"""The due index table (``rotationdue``) when writes fail halfway, and across the two layouts
(issue 11: the due rows moved out of the registry table so a list page reads only registrations).

The app row and its due row live in two tables, so no transaction holds both. A write adds its new
due row first and deletes the old one after the app row names the new one. Generated sequences of
writes, each of which may be refused (another writer changed the row), lost before it reached the
service, applied with its answer lost or answered with a 5xx, or followed by a failed delete, check after every step that
every application's app row names a due row that exists and is never later than needed (a scan can
never miss it). Rows left over are deleted by a scan once ``ORPHAN_AGE`` old, never younger (the
write that will name one may still be on its way).

Against the real store on Azurite; the faults are raised by a wrapper around the real TableClient.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.models import ApplicationStatus, RotationResult
from shared.domain.schedule import attention_at
from shared.errors import ConflictError
from shared.rotation.events import EventRecorder
from shared.rotation.scanner import LogOnlyAlerter, Scanner
from shared.storage.applications import (
    LAYOUT_BOTH,
    LAYOUT_KEY,
    LAYOUT_TABLE,
    META_PARTITION,
    PARTITION,
    ApplicationStore,
    app_row_key,
    index_row_key,
)
from shared.storage.due_index import ORPHAN_AGE, DueIndex
from shared.storage.queue import RotationQueue
from shared.storage.rotation_log import RotationLogStore
from tests.rotation.azurite_store import POLICY, due_table, fresh_table, generated, store_over
from tests.rotation.test_due_index import (
    APPS,
    KINDS,
    check,
    config_for,
    due_rows,
    legacy_rows,
    next_status,
    use_layout,
)

EXAMPLES = int(os.environ.get("ROTATOR_DUE_INDEX_EXAMPLES", "25"))
FAULTS = ("none", "refused", "lost", "landed", "failed", "retried", "delete-fails")
START = datetime(2026, 12, 1, tzinfo=UTC)

step = st.tuples(
    st.integers(0, len(APPS) - 1), st.sampled_from(KINDS), st.integers(0, 90), st.sampled_from(FAULTS)
)


class FaultyTable:
    """The real TableClient; the next call of a method named in ``armed`` fails: ``lost`` raises
    before the request is sent, ``landed`` sends it and raises as if the answer never came,
    ``failed`` sends it and raises as a 5xx answer would (the write landed all the same),
    ``retried`` sends it and raises what azure-core's retry of it gets after a lost answer (it
    retries a 5xx with the same If-Match): 412 for an entity write, 409 for a transaction that
    creates, 404 for one that deletes."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self.armed: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._table, name)
        fault = self.armed.pop(name, None)
        if fault is None:
            return method

        async def failing(*args: Any, **kwargs: Any) -> Any:
            if fault == "lost":
                raise ServiceRequestError("injected: the request never reached the service")
            await method(*args, **kwargs)
            if fault == "retried":
                raise _retry_refusal(name, args)
            if fault == "failed":
                raise HttpResponseError(message="injected: 503 Server Busy")
            raise ServiceResponseError("injected: the answer never came")

        return failing


def _retry_refusal(method: str, args: tuple[Any, ...]) -> Exception:
    """The error the service answers a second attempt of ``method`` whose first landed."""
    from azure.data.tables import TableTransactionError

    if method != "submit_transaction":
        error = HttpResponseError(message="injected retry: 412 UpdateConditionNotSatisfied")
        error.status_code = 412
        return error
    first = args[0][0][0]  # the transaction's first operation: the app row's
    code, reason = {"create": (409, "EntityAlreadyExists"), "delete": (404, "ResourceNotFound")}.get(
        first, (412, "UpdateConditionNotSatisfied")
    )
    transaction = TableTransactionError(message=f"injected retry: {code} {reason}")
    transaction.status_code, transaction.error_code = code, reason
    return transaction


async def sweep(store: ApplicationStore, now: datetime) -> None:
    """What a scan does with every due row it reads (``settle_due_row``), without attending."""
    async for batch in store.due_batches(now, 1000):
        for item in batch:
            await store.settle_due_row(item, await store.find(item.app_id), now)


async def run(connection_string: str, steps: list[tuple[int, str, int, str]], layout: str) -> None:
    now = START
    async with fresh_table(connection_string) as table:
        await use_layout(table, layout)
        registry, due = FaultyTable(table), FaultyTable(due_table(table))
        store = ApplicationStore(registry, POLICY, DueIndex(due))  # type: ignore[arg-type]
        for app_id in APPS:
            await store.create(config_for(app_id), next_status("idle", ApplicationStatus(), now), now)
        for number, kind, minutes, fault in steps:
            now += timedelta(minutes=minutes)
            app_id = APPS[number]
            current = await store.get(app_id)
            config = config_for(app_id, enabled=kind != "disable")
            status = next_status(kind, current.status, now)
            rows_before = await due_rows(table)
            if fault == "refused":
                # Another writer got there first: the app row's ETag moved.
                await table.update_entity({"PartitionKey": PARTITION, "RowKey": app_row_key(app_id)})
                with pytest.raises(ConflictError):
                    await store.save(current, config, status, now)
                assert await due_rows(table) == rows_before, steps  # what it added, it deleted
                continue
            if fault in ("lost", "landed", "failed", "retried"):
                for method in ("update_entity", "submit_transaction"):
                    registry.armed[method] = fault
            if fault == "delete-fails":
                due.armed["delete_entity"] = "lost"
            try:
                await store.save(current, config, status, now)
            except (ServiceRequestError, ServiceResponseError, HttpResponseError):
                assert fault in ("lost", "landed", "failed"), steps
            except ConflictError:
                # The retry's refusal of a write that kept its due row: the caller reads again.
                assert fault == "retried", steps
            registry.armed.clear()
            due.armed.clear()
            await check(table, store, steps, layout=layout, orphans=True)
        # A scan soon after deletes no row an app row names (only leftovers older than ORPHAN_AGE).
        await sweep(store, now + timedelta(minutes=1))
        named = {(await store.get(app_id)).due_key for app_id in APPS} - {None}
        assert named <= set(await due_rows(table)), steps
        # Once they are old enough, a scan that reads them deletes every row no app row names.
        late = now + ORPHAN_AGE + timedelta(days=400)  # every row is due by then
        await sweep(store, late)
        assert set(await due_rows(table)) == named, steps
        await check(table, store, steps, layout=layout)


@pytest.mark.parametrize("layout", [LAYOUT_TABLE, LAYOUT_BOTH])
@generated(EXAMPLES)
@given(steps=st.lists(step, min_size=1, max_size=10))
def test_a_failed_write_never_leaves_an_application_without_its_due_row(
    azurite: str, layout: str, steps: list[tuple[int, str, int, str]]
) -> None:
    asyncio.run(run(azurite, steps, layout))


def test_a_row_written_ahead_of_its_app_row_survives_a_scan_until_it_is_old(azurite: str) -> None:
    """Named example: a registration's due row is written, its app row not yet (in flight, or
    lost). A scan reads the row, finds no application, and keeps it; once ``ORPHAN_AGE`` old it
    deletes it. A refused registration (already registered) deletes the row it added."""

    async def scenario() -> None:
        async with fresh_table(azurite) as table:
            store = store_over(table)
            registry = FaultyTable(table)
            failing = ApplicationStore(registry, POLICY, DueIndex(due_table(table)))  # type: ignore[arg-type]
            registry.armed["submit_transaction"] = "lost"
            config = config_for(APPS[0])
            # Expiring within the hour: due at once.
            status = ApplicationStatus(
                current_key_id="k",
                expires_at=START + timedelta(hours=1),
                last_updated_at=START,
                last_result=RotationResult.SUCCEEDED,
            )
            wanted = attention_at(config, status, POLICY)
            assert wanted is not None and wanted <= START
            with pytest.raises(ServiceRequestError):
                await failing.create(config, status, START)
            [orphan] = await due_rows(table)
            await sweep(store, START + ORPHAN_AGE - timedelta(seconds=1))
            assert await due_rows(table) == [orphan]
            await sweep(store, START + ORPHAN_AGE)
            assert await due_rows(table) == []
            created = await store.create(config, status, START)
            with pytest.raises(ConflictError):
                await store.create(config, status, START)
            assert await due_rows(table) == [created.due_key]

    asyncio.run(scenario())


def test_the_layout_is_decided_by_the_first_write_of_an_install(azurite: str) -> None:
    """A new install (empty registry) gets the ``table`` layout: no ``due|`` rows in the registry.
    An install a version before ``rotationdue`` used (its registry holds rows, or only a turn its
    timer recorded; no layout recorded) gets ``both``: every write keeps the ``due|`` row that
    version reads and deletes."""

    async def scenario() -> None:
        config, status = config_for(APPS[0]), next_status("idle", ApplicationStatus(), START)
        async with fresh_table(azurite) as table:
            store = store_over(table)
            created = await store.create(config, status, START)
            assert await legacy_rows(table) == [] and created.index_key is None
            marker = await table.get_entity(META_PARTITION, LAYOUT_KEY)
            assert marker["Layout"] == LAYOUT_TABLE
        async with fresh_table(azurite) as table:
            await table.upsert_entity(
                {"PartitionKey": PARTITION, "RowKey": "ver|registrations", "Change": "x"}
            )
            store = store_over(table)
            created = await store.create(config, status, START)
            wanted = attention_at(config, status, POLICY)
            assert wanted is not None
            assert await legacy_rows(table) == [index_row_key(wanted, APPS[0])] == [created.index_key]
            assert (await table.get_entity(META_PARTITION, LAYOUT_KEY))["Layout"] == LAYOUT_BOTH
            assert await due_rows(table) == [created.due_key]
        # An install where a version before only ever ran its timer (a turn, nothing registered).
        async with fresh_table(azurite) as table:
            await table.upsert_entity(
                {"PartitionKey": META_PARTITION, "RowKey": "expiringSecrets", "LastRun": START}
            )
            assert await store_over(table).writes_legacy_rows()
        # A new install whose first write is this version's timer turn: still ``table``.
        async with fresh_table(azurite) as table:
            store = store_over(table)
            assert (await store.take_turn("expiringSecrets", START, timedelta(hours=1)))[0]
            assert not await store_over(table).writes_legacy_rows()

    asyncio.run(scenario())


async def old_version_save(table: Any, app_id: str, status: Any, now: datetime) -> None:
    """A write as versions before ``rotationdue`` made it: the app row merged with its new status
    and ``IndexKey``, ``Writes`` counted, its old ``due|`` row deleted and the new one inserted in
    one transaction; ``DueKey``/``DueWrites`` untouched (that version does not know them)."""
    import json

    from azure.core import MatchConditions
    from azure.data.tables import EdmType, EntityProperty, UpdateMode

    row = await table.get_entity(PARTITION, app_row_key(app_id))
    writes = getattr(row["Writes"], "value", row["Writes"])
    config = config_for(app_id)
    wanted = attention_at(config, status, POLICY)
    assert wanted is not None
    index_key = index_row_key(wanted, app_id)
    entity = {
        "PartitionKey": PARTITION,
        "RowKey": app_row_key(app_id),
        "Status": json.dumps(status.to_json_dict(), separators=(",", ":")),
        "IndexKey": index_key,
        "Writes": EntityProperty(writes + 1, EdmType.INT64),
        "UpdatedAt": now,
    }
    operations: list[Any] = [
        (
            "update",
            entity,
            {
                "mode": UpdateMode.MERGE,
                "etag": row.metadata["etag"],
                "match_condition": MatchConditions.IfNotModified,
            },
        )
    ]
    if row["IndexKey"] != index_key:
        if row["IndexKey"]:
            operations.append(("delete", {"PartitionKey": PARTITION, "RowKey": row["IndexKey"]}))
        operations.append(("upsert", {"PartitionKey": PARTITION, "RowKey": index_key, "AppId": app_id}))
    await table.submit_transaction(operations)


def test_a_write_by_the_version_before_is_seen_in_both_layouts(azurite: str) -> None:
    """Named example (a rollback, or a deployment where both versions run): in the ``both``
    layout a version before ``rotationdue`` moves an application's attention earlier, through its
    ``due|`` row only. A scan finds the application by that row when it comes due, and attends it
    once although its ``rotationdue`` row is due too; this version's next write re-derives its due
    row (``DueWrites`` no longer matches ``Writes``). After ``contract`` (the ``table`` layout) a
    scan deletes a ``due|`` row only once this version wrote the application again."""

    async def scenario() -> None:
        from azure.storage.queue.aio import QueueClient

        app_id = APPS[0]
        config = config_for(app_id)
        async with fresh_table(azurite) as table:
            await use_layout(table, LAYOUT_BOTH)
            store = store_over(table)
            created = await store.create(config, next_status("idle", ApplicationStatus(), START), START)
            assert created.status.expires_at is not None
            # The version before records an earlier expiry: attention moves 5 days earlier.
            earlier = created.status.model_copy(
                update={"expires_at": created.status.expires_at - timedelta(days=5)}
            )
            await old_version_save(table, app_id, earlier, START)
            stored = await store.get(app_id)
            assert not stored.due_trusted and stored.due_key == created.due_key
            moment = attention_at(config, earlier, POLICY)
            assert moment is not None
            # Both of its rows are due at a time past the old row's too: attended once.
            queue = QueueClient.from_connection_string(azurite, "scan" + uuid.uuid4().hex[:12])
            await queue.create_queue()
            try:
                logs = RotationLogStore(table)
                scanner = Scanner(
                    store,
                    RotationQueue(queue),
                    POLICY,
                    LogOnlyAlerter(EventRecorder(logs, lambda: START)),
                    lambda: START + timedelta(days=30),
                    events=EventRecorder(logs, lambda: START),
                )
                report = await scanner.scan()
                assert report.rows_read == 2 and sum(report.enqueued.values()) == 1
                assert len([message async for message in queue.receive_messages()]) == 1
            finally:
                await queue.delete_queue()
                await queue.close()
            # The scan's own write re-derived the due row from the status that version wrote.
            rewritten = await store.get(app_id)
            assert rewritten.due_trusted and rewritten.due_key != created.due_key
            assert await due_rows(table) == [rewritten.due_key]
            # Contract: in the ``table`` layout a ``due|`` row of an application this version wrote
            # last is deleted when a scan reads it; one the version before wrote last is kept.
            await store.set_layout(LAYOUT_TABLE)
            await old_version_save(table, app_id, earlier, START)
            [kept] = await legacy_rows(table)
            await sweep(store, START + timedelta(days=400))
            assert await legacy_rows(table) == [kept]
            current = await store.get(app_id)
            await store.save(current, current.config, current.status, START)
            await sweep(store, START + timedelta(days=400))
            assert await legacy_rows(table) == []

    asyncio.run(scenario())


def test_contract_then_expand_gives_a_version_before_every_application_back(azurite: str) -> None:
    """``scripts/due_index.py``: an install in the ``both`` layout is contracted (``table``); an
    application written after that loses its ``due|`` row to the next scan; ``expand`` writes it
    again, after which every application has the ``due|`` row a version before reads, and that
    version's writes succeed (the row its transaction deletes exists)."""
    from scripts import due_index as script

    async def scenario() -> None:
        async with fresh_table(azurite) as table:
            await use_layout(table, LAYOUT_BOTH)
            store = store_over(table)
            for app_id in APPS:
                await store.create(config_for(app_id), next_status("idle", ApplicationStatus(), START), START)
            assert await script.status(store) == (LAYOUT_BOTH, len(APPS))
            await script.contract(store)
            current = await store.get(APPS[0])
            await store.save(current, current.config, current.status, START)
            await sweep(store, START + timedelta(days=400))
            assert await script.status(store) == (LAYOUT_TABLE, len(APPS) - 1)
            done = await script.expand(store, wait_seconds=0)
            assert (done.written, done.unchanged, done.left) == (1, len(APPS) - 1, 0)
            assert await script.status(store) == (LAYOUT_BOTH, len(APPS))
            await check(table, store, [], layout=LAYOUT_BOTH)
            for app_id in APPS:
                stored = await store.get(app_id)
                await old_version_save(
                    table, app_id, next_status("idle", stored.status, START + timedelta(days=1)), START
                )

    asyncio.run(scenario())


def test_the_layout_commands_need_only_the_storage_setting(azurite: str, clean_storage: None) -> None:
    """``python -m scripts.due_index status`` runs with ``AzureWebJobsStorage`` alone (the app's
    other settings are not used), and without it says what is missing (no traceback). It only
    reads: on an install no write of this version has touched, no layout is recorded by it (named
    example: it used to record one, deciding what the first write decides)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    bare = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")}

    def status(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "scripts.due_index", "status"]
        return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=60)

    ran = status({**bare, "AzureWebJobsStorage": azurite})
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().endswith(
        "layout not recorded yet (the first write of this version records it); registry due| rows 0"
    )
    from azure.data.tables import TableClient

    with TableClient.from_connection_string(azurite, "applications") as registry:
        assert list(registry.query_entities("PartitionKey eq 'meta'", select=["RowKey"])) == []
        registry.create_entity({"PartitionKey": META_PARTITION, "RowKey": LAYOUT_KEY, "Layout": LAYOUT_TABLE})
    again = status({**bare, "AzureWebJobsStorage": azurite})
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().endswith("layout table; registry due| rows 0")
    missing = status(bare)
    assert missing.returncode == 2 and "AzureWebJobsStorage" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_registration_or_removal_whose_answer_was_lost_is_not_undone_by_its_retry(azurite: str) -> None:
    """Named examples (found driving a running stack): a registration that landed, whose answer was
    lost, is retried by azure-core and refused as already registered (409); a removal's retry is
    refused as not found (404); a save's retry as changed (412). Each is recognised as this very
    write (the due row it added, or the registrations' change nonce it wrote): the registration and
    the save succeed with the row naming a due row that exists, and the removal succeeds and deletes
    its due row."""

    async def scenario() -> None:
        async with fresh_table(azurite) as table:
            registry = FaultyTable(table)
            store = ApplicationStore(registry, POLICY, DueIndex(due_table(table)))  # type: ignore[arg-type]
            config = config_for(APPS[0])
            registry.armed["submit_transaction"] = "retried"
            created = await store.create(config, next_status("idle", ApplicationStatus(), START), START)
            assert created.due_key is not None and await due_rows(table) == [created.due_key]
            registry.armed["update_entity"] = "retried"
            disabled = await store.save(created, config_for(APPS[0], enabled=False), created.status, START)
            enabled = config_for(APPS[0])
            registry.armed["submit_transaction"] = registry.armed["update_entity"] = "retried"
            saved = await store.save(disabled, enabled, next_status("idle", disabled.status, START), START)
            registry.armed.clear()
            assert saved.due_key is not None and await due_rows(table) == [saved.due_key]
            await check(table, store, [], [APPS[0]])
            registry.armed["submit_transaction"] = "retried"
            await store.delete(await store.get(APPS[0]), now=START)
            assert await store.find(APPS[0]) is None and await due_rows(table) == []

    asyncio.run(scenario())
