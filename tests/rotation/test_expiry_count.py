"""The expiring-secrets count kept from changes (issue 11: the timer's cost follows the due work).

Generated sequences of registrations, rotations (expiry moves), rotation switched off and on,
deletions and re-registrations, with time passing, run against the real store on Azurite: after
each, the count read incrementally equals a full count of the registry, and an incremental
measurement reads only the changes and the secrets that entered the window.
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
from shared.domain.models import ApplicationConfig, ApplicationStatus
from shared.storage.applications import ApplicationStore
from tests.rotation.azurite_store import POLICY, fresh_table, generated

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
    st.tuples(st.just("advance"), st.integers(0, 24 * 10), st.just(None)),
    st.tuples(st.just("measure"), st.just(0), st.just(None)),
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


async def full_count(store: ApplicationStore, as_of: datetime) -> int:
    deadline = as_of + timedelta(days=WINDOW_DAYS)
    count, token = 0, None
    while True:
        page = await store.list_page(1000, token)
        count += sum(
            1 for s in page.items if s.status.expires_at is not None and s.status.expires_at <= deadline
        )
        token = page.continuation_token
        if not token:
            return count


async def run(connection_string: str, steps: list[tuple[str, int, int | None]]) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    last: dict[str, Any] = {}
    measured = 0
    async with fresh_table(connection_string) as table:
        store = ApplicationStore(table, POLICY)
        for action, index, offset in [*steps, ("measure", 0, None)]:
            app_id = APPS[index % len(APPS)]
            found = await store.find(app_id)
            now += timedelta(seconds=1)
            expires = None if offset is None else now + timedelta(hours=offset)
            if action == "register" and found is None:
                status = ApplicationStatus().model_copy(update={"expires_at": expires})
                await store.create(config_for(app_id), status, now)
            elif action == "rotate" and found is not None:
                status = found.status.model_copy(update={"expires_at": expires})
                await store.save(found, found.config, status, now)
            elif action == "toggle" and found is not None:
                rotation = found.config.rotation.model_copy(
                    update={"enabled": not found.config.rotation.enabled}
                )
                await store.save(
                    found, found.config.model_copy(update={"rotation": rotation}), found.status, now
                )
            elif action == "delete" and found is not None:
                await store.delete(found, now=now)
            elif action == "advance":
                now += timedelta(hours=index)
            elif action == "measure":
                # Every write so far is older than the settle margin.
                now += expiry.SETTLE + timedelta(seconds=1)
                measurement = await expiry.measure(store, now, WINDOW_DAYS, last)
                assert measurement.walked == (measured == 0)
                assert measurement.count == await full_count(store, measurement.as_of), (steps, measurement)
                if not measurement.walked:
                    # Only the changes, the secrets that entered the window, and at most one expiry
                    # row of each changed application: nothing else of the registry.
                    assert measurement.rows_read <= len(measurement.consumed) + len(
                        measurement.entered
                    ) + len(_changed(measurement))
                last = {"Count": measurement.count, "AsOf": measurement.as_of, "WithinDays": WINDOW_DAYS}
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
