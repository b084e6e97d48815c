"""The expiring-secrets count kept from changes (issue 11: the timer's cost follows the due work).

Generated sequences of registrations, rotations (expiry moves), rotation switched off and on,
deletions and re-registrations, jobs claimed and ended (a change made while a job is outstanding
is recorded when it ends), with time passing, and measurements that fail before their count is
recorded, run against the real store and expiry index on Azurite: after each measurement, the
count read incrementally equals a full count of the registry's recorded expiries (each app's
status expiry, or the one before its outstanding job), the expiry index holds exactly those, and
an incremental measurement reads only the changes and the secrets that entered the window.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shared import expiry
from shared.domain.models import ApplicationConfig, ApplicationStatus, RotationClaim
from shared.storage.applications import ApplicationStore
from shared.storage.expiry_index import ExpiryIndex
from tests.rotation.azurite_store import CountingTable, fresh_table, generated, store_over

WINDOW_DAYS = 7
APPS = [str(uuid.UUID(int=index + 1)) for index in range(4)]
EXAMPLES = int(os.environ.get("ROTATOR_EXPIRY_EXAMPLES", "25"))

app_index = st.integers(0, len(APPS) - 1)
hours = st.integers(-48, 24 * 12)
step = st.one_of(
    st.tuples(st.just("register"), app_index, st.none() | hours),
    st.tuples(st.just("rotate"), app_index, st.none() | hours),
    st.tuples(st.just("toggle"), app_index, st.just(None)),
    st.tuples(st.just("delete"), app_index, st.just(None)),
    # A rotation job claimed, with the new secret committed (its expiry moved) or not yet, and the
    # job ended: the change, and "rotate" and "toggle" in between, are held back until it ends.
    st.tuples(st.just("commit"), app_index, st.none() | hours),
    st.tuples(st.just("end"), app_index, st.just(None)),
    st.tuples(st.just("advance"), st.integers(0, 24 * 10), st.just(None)),
    st.tuples(st.just("measure"), st.just(0), st.just(None)),
    # A measurement whose turn fails before its count is recorded (its index moves are written).
    st.tuples(st.just("unrecorded"), st.just(0), st.just(None)),
)


def config_for(app_id: str, enabled: bool = True) -> ApplicationConfig:
    return ApplicationConfig.model_validate(
        {
            "appId": app_id,
            "objectId": str(uuid.uuid4()),
            "displayName": f"app {app_id[-2:]}",
            "rotation": {"enabled": enabled},
        },
        strict=False,
    )


def full_count(recorded: dict[str, datetime | None], as_of: datetime) -> int:
    deadline = as_of + timedelta(days=WINDOW_DAYS)
    return sum(1 for expires in recorded.values() if expires is not None and expires <= deadline)


async def indexed(index: ExpiryIndex, as_of: datetime) -> dict[str, datetime | None]:
    """The expiry index's rows (app id: expiry), read whole."""
    rows = await index.expiring_between(as_of - timedelta(days=3650), as_of + timedelta(days=3650))
    assert len({row.app_id for row in rows}) == len(rows), rows  # one row per application
    return {row.app_id: row.expires_at for row in rows}


async def registry_expiries(store: ApplicationStore) -> dict[str, datetime | None]:
    """Each registration's recorded expiry, as the store reads it back. With no job outstanding
    it is the status's own."""
    page = await store.list_page(1000, None)
    for stored in page.items:
        if stored.status.in_progress is None:
            assert stored.recorded_expires_at == stored.status.expires_at, stored
    return {s.app_id: s.recorded_expires_at for s in page.items if s.recorded_expires_at is not None}


def claimed(status: ApplicationStatus, now: datetime) -> ApplicationStatus:
    claim = RotationClaim(
        rotation_id=str(uuid.uuid4()), owner="w", claimed_at=now, expires_at=now + timedelta(minutes=5)
    )
    return status.model_copy(update={"in_progress": claim})


async def run(connection_string: str, steps: list[tuple[str, int, int | None]]) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    last: dict[str, Any] = {}
    measured = 0
    # The model: each registration's expiry as of its last write with no job outstanding.
    recorded: dict[str, datetime | None] = {}
    async with fresh_table(connection_string) as table, fresh_table(connection_string) as index_table:
        store = store_over(table)
        expiries = ExpiryIndex(index_table)
        for action, index, offset in [*steps, ("measure", 0, None)]:
            app_id = APPS[index % len(APPS)]
            found = await store.find(app_id)
            now += timedelta(seconds=1)
            expires = None if offset is None else now + timedelta(hours=offset)
            written: ApplicationStatus | None = None
            if action == "register" and found is None:
                written = ApplicationStatus().model_copy(update={"expires_at": expires})
                await store.create(config_for(app_id), written, now)
            elif action == "rotate" and found is not None:
                written = found.status.model_copy(update={"expires_at": expires})
                await store.save(found, found.config, written, now)
            elif action == "toggle" and found is not None:
                rotation = found.config.rotation.model_copy(
                    update={"enabled": not found.config.rotation.enabled}
                )
                written = found.status
                await store.save(found, found.config.model_copy(update={"rotation": rotation}), written, now)
            elif action == "commit" and found is not None:
                written = claimed(found.status, now)
                if expires is not None:
                    written = written.model_copy(update={"expires_at": expires})
                await store.save(found, found.config, written, now)
            elif action == "end" and found is not None:
                written = found.status.model_copy(update={"in_progress": None})
                await store.save(found, found.config, written, now)
            elif action == "delete" and found is not None:
                await store.delete(found, now=now)
                recorded.pop(app_id, None)
            if written is not None and written.in_progress is None:
                recorded[app_id] = written.expires_at
            elif action == "advance":
                now += timedelta(hours=index)
            elif action == "unrecorded":
                now += expiry.SETTLE + timedelta(seconds=1)
                await expiry.measure(store, expiries, now, WINDOW_DAYS, last)
            elif action == "measure":
                # Every write so far is older than the settle margin.
                now += expiry.SETTLE + timedelta(seconds=1)
                measurement = await expiry.measure(store, expiries, now, WINDOW_DAYS, last)
                assert measurement.walked == (measured == 0)
                assert measurement.count == full_count(recorded, measurement.as_of), (steps, measurement)
                model = {app: at for app, at in recorded.items() if at is not None}
                assert await indexed(expiries, now) == await registry_expiries(store) == model, steps
                if not measurement.walked:
                    # Only the changes, the secrets that entered the window, and at most one expiry
                    # row of each changed application: nothing else of the registry.
                    assert measurement.rows_read <= len(measurement.consumed) + len(
                        measurement.entered
                    ) + len(_changed(measurement))
                last = {
                    "Count": measurement.count,
                    "AsOf": measurement.as_of,
                    "WithinDays": WINDOW_DAYS,
                    "Layout": expiry.LAYOUT,
                }
                if measurement.consumed:
                    await store.delete_rows(measurement.consumed)
                measured += 1


def _changed(measurement: expiry.Measurement) -> set[str]:
    # Consumed change keys are chg|{instant}|{appId}|{sequence}.
    return {key.split("|")[2] for key in measurement.consumed}


@generated(EXAMPLES)
@given(steps=st.lists(step, min_size=1, max_size=14))
def test_the_incremental_count_equals_a_full_count(
    azurite: str, steps: list[tuple[str, int, int | None]]
) -> None:
    asyncio.run(run(azurite, steps))


def test_a_rotation_inside_the_window_moves_the_count_and_an_entry_is_reported(azurite: str) -> None:
    """Named example: an app whose secret is in the window rotates out of it (the count drops),
    another one's secret enters it by time alone (the count rises, and it is reported)."""
    steps: list[tuple[str, int, int | None]] = [
        ("register", 0, 24),  # in the window
        ("register", 1, 24 * 8),  # enters it a day later
        ("measure", 0, None),
        ("rotate", 0, 24 * 21),
        ("advance", 30, None),
        ("measure", 0, None),
    ]
    asyncio.run(run(azurite, steps))


def test_a_rotation_is_counted_when_its_job_ends(azurite: str) -> None:
    """Named example: a secret inside the window is rotated; its commit (the new expiry, outside
    the window) is one entity write while the job is outstanding, and the count still holds it.
    The write that ends the job records the change: the next measurement moves the count."""

    async def scenario() -> None:
        now = datetime(2026, 12, 1, tzinfo=UTC)
        async with fresh_table(azurite) as table, fresh_table(azurite) as index_table:
            counted = CountingTable(table, ("submit_transaction",))
            store, expiries = store_over(counted), ExpiryIndex(index_table)  # type: ignore[arg-type]
            app_id = APPS[0]
            status = ApplicationStatus().model_copy(update={"expires_at": now + timedelta(days=2)})
            stored = await store.create(config_for(app_id), status, now)
            now += expiry.SETTLE + timedelta(seconds=1)
            first = await expiry.measure(store, expiries, now, WINDOW_DAYS, {})
            assert first.count == 1
            turn = {"Count": 1, "AsOf": first.as_of, "WithinDays": WINDOW_DAYS, "Layout": expiry.LAYOUT}

            stored = await store.save(stored, stored.config, claimed(stored.status, now), now)
            before = counted.calls
            committed = stored.status.model_copy(update={"expires_at": now + timedelta(days=30)})
            stored = await store.save(stored, stored.config, committed, now)
            assert counted.calls == before  # the commit: one entity write
            assert stored.recorded_expires_at == status.expires_at
            now += expiry.SETTLE + timedelta(seconds=1)
            during = await expiry.measure(store, expiries, now, WINDOW_DAYS, turn)
            assert during.count == 1 and during.consumed == []
            turn = {**turn, "AsOf": during.as_of}

            ended = committed.model_copy(update={"in_progress": None})
            stored = await store.save(stored, stored.config, ended, now)
            assert stored.recorded_expires_at == committed.expires_at
            now += expiry.SETTLE + timedelta(seconds=1)
            after = await expiry.measure(store, expiries, now, WINDOW_DAYS, turn)
            assert after.count == 0 and len(after.consumed) == 1
            assert await indexed(expiries, now) == {app_id: committed.expires_at}

    asyncio.run(scenario())


def test_a_write_by_a_version_that_recorded_every_change_makes_the_status_expiry_the_recorded_one(
    azurite: str,
) -> None:
    """Named example (rollback): a version before ``ExpiryRecord`` recorded every change, so after
    one of its writes (``Writes`` moved past the record's stamp) the status's expiry is the one its
    change rows hold."""

    async def scenario() -> None:
        from azure.data.tables import EdmType, EntityProperty, UpdateMode

        from shared.storage.applications import PARTITION, app_row_key

        now = datetime(2026, 12, 1, tzinfo=UTC)
        async with fresh_table(azurite) as table:
            store = store_over(table)
            app_id = APPS[0]
            status = ApplicationStatus().model_copy(update={"expires_at": now + timedelta(days=2)})
            stored = await store.create(config_for(app_id), status, now)
            moved = claimed(status, now).model_copy(update={"expires_at": now + timedelta(days=30)})
            stored = await store.save(stored, stored.config, moved, now)
            assert (await store.get(app_id)).recorded_expires_at == status.expires_at
            await table.update_entity(
                {
                    "PartitionKey": PARTITION,
                    "RowKey": app_row_key(app_id),
                    "Writes": EntityProperty(stored.writes + 1, EdmType.INT64),
                },
                mode=UpdateMode.MERGE,
            )
            assert (await store.get(app_id)).recorded_expires_at == moved.expires_at

    asyncio.run(scenario())


def test_a_count_kept_with_the_index_in_the_registry_table_moves_it_to_its_own_table(azurite: str) -> None:
    """Named example (upgrade): a count recorded by a version that kept the expiry index as
    ``exp|`` rows in the registry table, with the app rows naming them in ``ExpiryKey``. The next
    measurement walks once: it builds the index table, and the legacy rows are deleted with the
    consumed changes. A write then names no legacy row (so a rolled-back version deletes none),
    and the next measurement is incremental again."""

    async def scenario() -> None:
        from shared.storage.applications import PARTITION, app_row_key

        now = datetime(2026, 12, 1, tzinfo=UTC)
        async with fresh_table(azurite) as table, fresh_table(azurite) as index_table:
            store, expiries = store_over(table), ExpiryIndex(index_table)
            for number, hours in enumerate((24, 24 * 20)):
                app_id = APPS[number]
                expires = now + timedelta(hours=hours)
                await store.create(
                    config_for(app_id), ApplicationStatus().model_copy(update={"expires_at": expires}), now
                )
                legacy = f"exp|{expires.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}|{app_id}"
                await table.upsert_entity({"PartitionKey": PARTITION, "RowKey": legacy, "AppId": app_id})
                await table.update_entity(
                    {"PartitionKey": PARTITION, "RowKey": app_row_key(app_id), "ExpiryKey": legacy}
                )
            assert len(await store.legacy_expiry_keys()) == 2
            old_turn = {"Count": 1, "AsOf": now, "WithinDays": WINDOW_DAYS}  # no Layout

            now += timedelta(hours=1)
            measurement = await expiry.measure(store, expiries, now, WINDOW_DAYS, old_turn)
            assert measurement.walked and measurement.count == 1
            assert await indexed(expiries, now) == await registry_expiries(store)
            assert len([key for key in measurement.consumed if key.startswith("exp|")]) == 2
            await store.delete_rows(measurement.consumed)
            assert await store.legacy_expiry_keys() == []

            now += timedelta(seconds=1)  # after the walk's moment (its changes come later)
            found = await store.get(APPS[1])
            moved = found.status.model_copy(update={"expires_at": now + timedelta(hours=30)})
            await store.save(found, found.config, moved, now)
            assert (await table.get_entity(PARTITION, app_row_key(APPS[1])))["ExpiryKey"] == ""

            turn = {"Count": 1, "AsOf": measurement.as_of, "WithinDays": WINDOW_DAYS, "Layout": expiry.LAYOUT}
            now += expiry.SETTLE + timedelta(seconds=1)
            again = await expiry.measure(store, expiries, now, WINDOW_DAYS, turn)
            expiries_now = await registry_expiries(store)
            assert not again.walked and again.count == 2 == full_count(expiries_now, again.as_of)
            assert await indexed(expiries, now) == await registry_expiries(store)

    asyncio.run(scenario())
