"""Pages of registrations against the real store on Azurite (issue 11: a list page's cost).

A continuation token names the last key a page returned and the span of GUID values that page
covered; the next page first reads the key range that span says holds one page, then the rest
from its end if the range held fewer; a walk's first page reads the range the store's last page
spread suggests, in the same way. Generated sets of app ids (spread evenly, in clusters, or
with gaps far wider than a page's span) and page sizes check that a walk returns every
registration exactly once, in key order, with every page full but the last, and that the last
page carries no token. Tokens this API did not return are refused naming the field; the
service's own token, as the version before these cursors returned it, still continues a walk.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.models import ApplicationConfig, ApplicationStatus
from shared.errors import ValidationError
from shared.storage.applications import ApplicationStore, encode_continuation
from tests.rotation.azurite_store import POLICY, CountingTable, fresh_table, generated

EXAMPLES = int(os.environ.get("ROTATOR_LIST_PAGE_EXAMPLES", "12"))
NOW = datetime(2026, 12, 1, tzinfo=UTC)

# App ids as GUID values: a cluster of neighbours at a generated base, or values anywhere.
cluster = st.tuples(st.integers(0, (1 << 128) - 64), st.integers(1, 12)).map(
    lambda spec: [spec[0] + step for step in range(spec[1])]
)
anywhere = st.lists(st.integers(0, (1 << 128) - 1), min_size=1, max_size=12)
app_values = st.lists(st.one_of(cluster, anywhere), min_size=1, max_size=4).map(
    lambda groups: sorted({value for group in groups for value in group})
)


def config_for(app_id: str) -> ApplicationConfig:
    return ApplicationConfig.model_validate(
        {"appId": app_id, "objectId": app_id, "displayName": f"app {app_id[:8]}"}, strict=False
    )


async def walk(store: ApplicationStore, page_size: int, token: str | None = None) -> list[list[str]]:
    pages: list[list[str]] = []
    while True:
        page = await store.listing_page(page_size, token)
        pages.append([str(item.app_id) for item in page.items])
        token = page.continuation_token
        if token is None:
            return pages
        assert len(pages) < 1000, "the walk does not end"


async def run(connection_string: str, values: list[int], page_sizes: list[int]) -> None:
    app_ids = [str(uuid.UUID(int=value)) for value in values]
    async with fresh_table(connection_string) as table:
        store = ApplicationStore(table, POLICY)
        await asyncio.gather(*(store.create(config_for(a), ApplicationStatus(), NOW) for a in app_ids))
        for page_size in page_sizes:
            pages = await walk(store, page_size)
            assert [a for page in pages for a in page] == app_ids  # every one once, in key order
            assert all(len(page) == page_size for page in pages[:-1])
            assert 1 <= len(pages[-1]) <= page_size


@given(values=app_values, page_sizes=st.lists(st.integers(1, 7), min_size=1, max_size=3))
@generated(EXAMPLES)
def test_a_walk_returns_every_registration_once_in_key_order(
    azurite: str, values: list[int], page_sizes: list[int]
) -> None:
    asyncio.run(run(azurite, values, page_sizes))


def test_a_page_reads_the_range_of_one_page_then_the_rest(azurite: str) -> None:
    """Named example: ids 1..30 then two far past; pages of 10 read one range while the spread
    holds, and a page whose range falls short reads the rest from the range's end."""
    values = [*range(1, 31), 1 << 100, (1 << 100) + 1]

    async def scenario() -> None:
        async with fresh_table(azurite) as table:
            counting = CountingTable(table, ("query_entities",))
            store = ApplicationStore(counting, POLICY)  # type: ignore[arg-type]
            app_ids = [str(uuid.UUID(int=value)) for value in values]
            for app_id in app_ids:
                await store.create(config_for(app_id), ApplicationStatus(), NOW)
            token = None
            queries: list[int] = []
            seen: list[str] = []
            for _ in range(4):
                before = counting.calls
                page = await store.listing_page(10, token)
                queries.append(counting.calls - before)
                seen += [str(item.app_id) for item in page.items]
                token = page.continuation_token
            assert seen == app_ids and token is None
            # Page 1: the first range (10,000 registrations' spread) holds them all. Page 2: the
            # range (10, 40) holds a page and one. Page 3: (20, 50) holds ten, so it reads on
            # from 50 (the first far id tells another page follows). Page 4: (30, 60) holds none;
            # the far ids come from the second query.
            assert queries == [1, 1, 2, 2]

    asyncio.run(scenario())


class RecordingTable:
    """The real TableClient, recording the parameters of each ``query_entities`` call."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self.queries: list[dict[str, str]] = []

    def query_entities(self, *args: Any, **kwargs: Any) -> Any:
        self.queries.append(dict(kwargs["parameters"]))
        return self._table.query_entities(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


def test_a_walks_first_page_reads_a_bounded_range_then_the_spread_it_learned(azurite: str) -> None:
    """Named example (an open first range made Azurite sort the whole registry for every walk's
    first page): 64 ids spread evenly, pages of 10. Before the store has read a page, the first
    range assumes 10,000 registrations' spread; it holds one id, so the page reads on from its end.
    After a walk, a new walk's first page reads the span the last page's spread gives: one query."""
    step = (1 << 128) // 64
    app_ids = [str(uuid.UUID(int=number * step + 1)) for number in range(64)]

    async def scenario() -> None:
        async with fresh_table(azurite) as table:
            for app_id in app_ids:
                await ApplicationStore(table, POLICY).create(config_for(app_id), ApplicationStatus(), NOW)
            recording = RecordingTable(table)
            store = ApplicationStore(recording, POLICY)  # type: ignore[arg-type]
            first = await store.listing_page(10, None)
            assert [str(item.app_id) for item in first.items] == app_ids[:10]
            bounded, rest = recording.queries
            assert bounded["end"] == "app|" + str(uuid.UUID(int=int(float(1 << 128) / 10_000 * 10 * 3)))
            assert rest["start"] == bounded["end"] and rest["end"] == "app}"
            assert [a for page in await walk(store, 10) for a in page] == app_ids
            recording.queries.clear()
            again = await store.listing_page(10, None)
            assert [str(item.app_id) for item in again.items] == app_ids[:10]
            assert [query["end"] for query in recording.queries] == [
                "app|" + str(uuid.UUID(int=int(step * 10 * 3)))
            ]

    asyncio.run(scenario())


def test_a_registration_at_the_end_of_the_range_read_first_is_not_skipped(azurite: str) -> None:
    """Named example: ids 1, 2 and 8, pages of 2. Page 2 reads the range (2, 8) (page 1's span,
    three times), which holds nothing; the 8 at the range's end comes from the read that starts
    there."""
    asyncio.run(run(azurite, [1, 2, 8], [2]))


def _token(fields: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "fields",
    [
        {"after": "due|2026-12-01"},  # not an app key
        {"after": "app|" + "0" * 100},  # longer than any key
        {"after": "app|x", "span": "not-hex"},
        {"after": "app|x", "span": "1" * 33},  # more than 128 bits
        {"after": "app|x", "extra": "1"},
        {"span": "10"},
        {"after": 7},
    ],
)
def test_a_token_this_api_did_not_return_is_refused_naming_the_field(
    azurite: str, fields: dict[str, Any]
) -> None:
    async def scenario() -> None:
        async with fresh_table(azurite) as table:
            store = ApplicationStore(table, POLICY)
            with pytest.raises(ValidationError) as raised:
                await store.listing_page(10, _token(fields))
            assert [problem.field for problem in raised.value.problems] == ["continuationToken"]

    asyncio.run(scenario())


def test_the_services_own_token_from_the_version_before_still_continues(azurite: str) -> None:
    async def scenario() -> None:
        async with fresh_table(azurite) as table:
            store = ApplicationStore(table, POLICY)
            app_ids = [str(uuid.UUID(int=value)) for value in range(1, 8)]
            for app_id in app_ids:
                await store.create(config_for(app_id), ApplicationStatus(), NOW)
            # How the version before paged: the SDK's first page and its continuation token.
            pages = table.query_entities(
                "PartitionKey eq 'registry' and RowKey ge 'app|' and RowKey lt 'app}'",
                results_per_page=3,
                select=["RowKey"],
            ).by_page()
            first = [row["RowKey"] async for row in await pages.__anext__()]
            legacy = encode_continuation(pages.continuation_token)
            assert legacy is not None and first == [f"app|{a}" for a in app_ids[:3]]
            rest = await walk(store, 3, legacy)
            assert [a for page in rest for a in page] == app_ids[3:]

    asyncio.run(scenario())
