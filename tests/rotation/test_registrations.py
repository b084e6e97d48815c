"""Which applications are registered, as an inventory page asks (issue 11: one read per page, not
one per application), against the real store on Azurite.

Two stores on one table stand for two instances. Generated sequences of registrations, removals,
re-registrations and time passing, made through either, are followed by lookups through the
first: each answer equals the registrations at that moment, and while nothing changed a lookup
is one point read.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.models import ApplicationConfig, ApplicationStatus
from shared.storage import applications as applications_module
from tests.rotation.azurite_store import CountingTable, fresh_table, generated, store_over

APPS = [str(uuid.UUID(int=index + 1)) for index in range(5)]
EXAMPLES = int(os.environ.get("ROTATOR_REGISTRATION_EXAMPLES", "25"))

step = st.one_of(
    st.tuples(st.just("register"), st.integers(0, 1), st.integers(0, len(APPS) - 1)),
    st.tuples(st.just("delete"), st.integers(0, 1), st.integers(0, len(APPS) - 1)),
    st.tuples(st.just("wait"), st.just(0), st.integers(0, 40)),
    st.tuples(st.just("lookup"), st.just(0), st.just(0)),
)


def config_for(app_id: str) -> ApplicationConfig:
    return ApplicationConfig.model_validate(
        {"appId": app_id, "objectId": str(uuid.uuid4()), "displayName": "app", "rotation": {"enabled": True}},
        strict=False,
    )


# What a lookup reads.
LOOKUPS = ("get_entity", "query_entities")


async def run(connection_string: str, steps: list[tuple[str, int, int]], monkeypatch: Any) -> None:
    clock = [1000.0]
    monkeypatch.setattr("time.monotonic", lambda: clock[0])
    now = datetime(2026, 12, 1, tzinfo=UTC)
    registered: set[str] = set()
    async with fresh_table(connection_string) as table:
        counted = CountingTable(table, LOOKUPS)
        stores = [store_over(counted), store_over(table)]  # type: ignore[arg-type]
        for action, instance, value in [*steps, ("lookup", 0, 0), ("lookup", 0, 0)]:
            store = stores[instance]
            now += timedelta(seconds=1)
            if action == "register":
                app_id = APPS[value]
                if app_id not in registered:
                    await store.create(config_for(app_id), ApplicationStatus(), now)
                    registered.add(app_id)
            elif action == "delete":
                app_id = APPS[value]
                found = await store.find(app_id)
                if found is not None:
                    await store.delete(found, now=now)
                    registered.discard(app_id)
            elif action == "wait":
                clock[0] += value
            else:
                asked = [*APPS, str(uuid.uuid4())]
                # Asked three times with nothing changed in between: always the registrations of
                # the moment, and the third time one point read (of the change nonce).
                for _ in range(3):
                    before = counted.calls
                    assert await stores[0].registered(asked) == registered, steps
                assert counted.calls - before == 1


@generated(EXAMPLES)
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_a_lookup_answers_the_registrations_of_the_moment(
    azurite: str, steps: list[tuple[str, int, int]], monkeypatch: Any
) -> None:
    asyncio.run(run(azurite, steps, monkeypatch))


def test_an_inventory_page_costs_one_read_while_nothing_changes(azurite: str, monkeypatch: Any) -> None:
    """Named example: 100 applications asked about, 60 registered: the first lookup reads the set
    (one nonce read and one page of keys), every later one only the nonce."""

    async def scenario() -> None:
        now = datetime(2026, 12, 1, tzinfo=UTC)
        asked = [str(uuid.uuid4()) for _ in range(100)]
        async with fresh_table(azurite) as table:
            counted = CountingTable(table, LOOKUPS)
            store = store_over(counted)  # type: ignore[arg-type]
            for app_id in asked[:60]:
                await store.create(config_for(app_id), ApplicationStatus(), now)
            before = counted.calls
            assert await store.registered(asked) == set(asked[:60])
            assert counted.calls - before == 2
            for _ in range(3):
                before = counted.calls
                assert await store.registered(asked) == set(asked[:60])
                assert counted.calls - before == 1

    asyncio.run(scenario())


def test_while_registrations_keep_changing_lookups_go_one_by_one(azurite: str, monkeypatch: Any) -> None:
    """A bulk registration under way moves the nonce between lookups: each looks up every key
    (still exact); the set is read again once the nonce holds still from one lookup to the next, or
    REGISTRATIONS_REBUILD_SECONDS after it was last read."""
    clock = [1000.0]
    monkeypatch.setattr("time.monotonic", lambda: clock[0])

    async def scenario() -> None:
        now = datetime(2026, 12, 1, tzinfo=UTC)
        asked = APPS
        async with fresh_table(azurite) as table:
            counted = CountingTable(table, LOOKUPS)
            store = store_over(counted)  # type: ignore[arg-type]
            await store.create(config_for(APPS[0]), ApplicationStatus(), now)
            assert await store.registered(asked) == {APPS[0]}  # the set is read
            for app_id in APPS[1:4]:  # a registration between each two lookups
                await store.create(config_for(app_id), ApplicationStatus(), now)
                before = counted.calls
                assert await store.registered(asked) == set(APPS[: APPS.index(app_id) + 1])
                assert counted.calls - before == 1 + len(APPS)  # the nonce, then each key
            clock[0] += applications_module.REGISTRATIONS_REBUILD_SECONDS
            await store.create(config_for(APPS[4]), ApplicationStatus(), now)
            before = counted.calls
            assert await store.registered(asked) == set(APPS)
            assert counted.calls - before == 2  # long enough: the nonce, and the set read again
            await store.delete(await store.get(APPS[0]), now=now)
            assert await store.registered(asked) == set(APPS[1:])  # one by one
            before = counted.calls
            assert await store.registered(asked) == set(APPS[1:])
            assert counted.calls - before == 2  # it held still: the set is read again

    asyncio.run(scenario())
