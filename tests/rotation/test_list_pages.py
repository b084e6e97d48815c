"""Pages of registrations against the real store on Azurite (issue 11: a list page's cost).

A continuation token names the last key a page returned and the span of GUID values that page
covered; the next page first reads the key range that span says holds one page, then the rest
from its end if the range held fewer; a walk's first page reads the range the store's last page
spread suggests, in the same way. Generated sets of app ids (spread evenly, in clusters, or
with gaps far wider than a page's span) and page sizes check that a walk returns every
registration exactly once, in key order, with every page full but the last, and that the last
page carries no token. Tokens this API did not return are refused naming the field; the
service's own token, as the version before these cursors returned it, still continues a walk (as
Azurite and Azure encode its keys). Generated token fields are either refused naming the field or
are a token this API could have returned, never anything else.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.models import ApplicationConfig, ApplicationStatus
from shared.errors import ValidationError
from shared.storage.applications import ApplicationStore, Page, encode_continuation
from shared.storage.due_index import DueIndex
from tests.rotation.azurite_store import POLICY, CountingTable, fresh_table, generated, store_over

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
        store = store_over(table)
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
            store = store_over(counting)  # type: ignore[arg-type]
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
                await store_over(table).create(config_for(app_id), ApplicationStatus(), NOW)
            recording = RecordingTable(table)
            store = store_over(recording)  # type: ignore[arg-type]
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


APP_GUID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
APP_KEY = f"app|{APP_GUID}"
AZURITE_REGISTRY = base64.b64encode(b"registry").decode()


def azurite_key(key: str) -> str:
    """A key as Azurite writes it in a continuation header: base64."""
    return base64.b64encode(key.encode()).decode()


def azure_key(key: str) -> str:
    """A key as Azure writes it in a continuation header: ``1!{length}!{base64, "=" as "-"}``."""
    encoded = azurite_key(key).replace("=", "-")
    return f"1!{len(encoded)}!{encoded}"


@pytest.mark.parametrize(
    "fields",
    [
        {"after": "due|2026-12-01"},  # not an app key
        {"after": "app|" + "0" * 100},  # longer than any key
        {"after": "app|zzzz"},  # issue D4: an app key, but not of a GUID
        {"after": f"app|{APP_GUID.upper()}"},  # app ids are stored lower-case
        {"after": f"app|{{{APP_GUID}}}"},
        {"after": APP_KEY, "span": "not-hex"},
        {"after": APP_KEY, "span": "1" * 33},  # more than 128 bits
        {"after": APP_KEY, "span": "0"},  # the store writes no span rather than zero
        {"after": APP_KEY, "span": "0f"},
        {"after": APP_KEY, "extra": "1"},
        {"span": "10"},
        {"after": 7},
        # Issue D4: raw Table tokens this API never returned.
        {"PartitionKey": "!!!", "RowKey": "\u0000"},
        {"PartitionKey": "x" * 2000, "RowKey": "y"},
        {"PartitionKey": AZURITE_REGISTRY},
        {"PartitionKey": AZURITE_REGISTRY, "RowKey": azurite_key("due|2026-12-01T00:00:00.000000Z|x")},
        {"PartitionKey": AZURITE_REGISTRY, "RowKey": azurite_key("app|zzzz")},
        {"PartitionKey": azurite_key("meta"), "RowKey": azurite_key(APP_KEY)},  # another partition
        {"PartitionKey": "1!99!cmVnaXN0cnk-", "RowKey": azure_key(APP_KEY)},  # a length that lies
        {"PartitionKey": "cmVnaXN0cnl=", "RowKey": azurite_key(APP_KEY)},  # stray bits: not the service's
        # The rotation log's tokens: the service's (a log partition and row) and its own.
        {
            "PartitionKey": azurite_key(APP_GUID),
            "RowKey": azurite_key("08226000000000000|0a1b2c3d"),
        },
        {"log": APP_GUID, "from": "08226000000000000|0a1b2c3d"},
    ],
)
def test_a_token_this_api_did_not_return_is_refused_naming_the_field(
    azurite: str, fields: dict[str, Any]
) -> None:
    async def scenario() -> None:
        async with fresh_table(azurite) as table:
            store = store_over(table)
            with pytest.raises(ValidationError) as raised:
                await store.listing_page(10, _token(fields))
            assert [problem.field for problem in raised.value.problems] == ["continuationToken"]

    asyncio.run(scenario())


@pytest.mark.parametrize("keys_as", ["returned", "azure", "raw"])
def test_the_services_own_token_from_the_version_before_still_continues(azurite: str, keys_as: str) -> None:
    """The SDK's token as the version before returned it on Azurite, the same keys as Azure encodes
    them, and the keys themselves: each continues the walk at the next app row."""

    async def scenario() -> None:
        async with fresh_table(azurite) as table:
            store = store_over(table)
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
            returned = pages.continuation_token
            assert returned == {"PartitionKey": AZURITE_REGISTRY, "RowKey": azurite_key(f"app|{app_ids[3]}")}
            keys = {"PartitionKey": "registry", "RowKey": f"app|{app_ids[3]}"}
            token = {
                "returned": returned,
                "azure": {name: azure_key(key) for name, key in keys.items()},
                "raw": keys,
            }[keys_as]
            legacy = encode_continuation(token)
            assert legacy is not None and first == [f"app|{a}" for a in app_ids[:3]]
            rest = await walk(store, 3, legacy)
            assert [a for page in rest for a in page] == app_ids[3:]

    asyncio.run(scenario())


# Generated token fields: the names of every token kind and others, with values that are app keys
# (in the forms a token may carry them), other keys, or any text.
guid_keys = st.uuids().map(lambda value: f"app|{value}")
key_texts = st.one_of(
    guid_keys,
    guid_keys.map(str.upper),
    st.sampled_from(["registry", "meta", "app|zzzz", "due|2026-12-01T00:00:00.000000Z|x", "app|"]),
    st.text(max_size=40),
)
token_values = st.one_of(
    key_texts,
    key_texts.map(azurite_key),
    key_texts.map(azure_key),
    st.from_regex(r"[1-9a-f][0-9a-f]{0,31}", fullmatch=True),
    st.text(max_size=80),
)
spans = st.from_regex(r"[1-9a-f][0-9a-f]{0,31}", fullmatch=True)


def in_token_forms(keys: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Keys as a token may carry them: as Azurite or Azure encodes them, or the key itself."""
    return keys.flatmap(lambda key: st.sampled_from([key, azurite_key(key), azure_key(key)]))


# Fields of any names, and fields in the shapes of the list's tokens (a tenth or so could be its).
token_fields = st.one_of(
    st.dictionaries(
        st.one_of(
            st.sampled_from(["after", "span", "PartitionKey", "RowKey", "log", "from"]), st.text(max_size=8)
        ),
        token_values,
        max_size=3,
    ),
    st.fixed_dictionaries(
        {"after": st.one_of(guid_keys, key_texts)}, optional={"span": st.one_of(spans, token_values)}
    ),
    st.fixed_dictionaries(
        {
            "PartitionKey": st.one_of(in_token_forms(st.sampled_from(["registry", "meta"])), token_values),
            "RowKey": st.one_of(in_token_forms(guid_keys), token_values),
        }
    ),
)


def could_be_issued(fields: dict[str, str]) -> bool:
    """Whether the list returns (or the version before returned) a token of these fields."""

    def is_app_key(key: str) -> bool:
        try:
            return key.startswith("app|") and key == f"app|{uuid.UUID(key[4:])}"
        except ValueError:
            return False

    def names(text: str, key_ok: Any) -> bool:
        encoded = text.rpartition("!")[2].replace("-", "=")
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except ValueError:
            decoded = ""
        return any(key_ok(key) and text in {key, azurite_key(key), azure_key(key)} for key in (text, decoded))

    if set(fields) == {"PartitionKey", "RowKey"}:
        return names(fields["PartitionKey"], lambda key: key == "registry") and names(
            fields["RowKey"], is_app_key
        )
    span = fields.get("span")
    return (
        set(fields) <= {"after", "span"}
        and is_app_key(fields.get("after", ""))
        and (span is None or re.fullmatch(r"[1-9a-f][0-9a-f]{0,31}", span) is not None)
    )


@pytest.fixture
def registry_table(azurite: str) -> Iterator[str]:
    """A table of seven registrations, for generated tokens to page through."""
    from azure.data.tables import TableServiceClient

    name = "tokens" + uuid.uuid4().hex[:12]

    async def register() -> None:
        from azure.data.tables.aio import TableClient

        async with (
            TableClient.from_connection_string(azurite, name) as table,
            TableClient.from_connection_string(azurite, name + "due") as due,
        ):
            store = ApplicationStore(table, POLICY, DueIndex(due))
            for value in range(1, 8):
                await store.create(config_for(str(uuid.UUID(int=value << 100))), ApplicationStatus(), NOW)

    with TableServiceClient.from_connection_string(azurite) as service:
        service.create_table(name)
        service.create_table(name + "due")
        try:
            asyncio.run(register())
            yield name
        finally:
            service.delete_table(name)
            service.delete_table(name + "due")


@given(fields=token_fields)
@generated(max(EXAMPLES * 10, 50))
def test_generated_token_fields_are_refused_unless_the_list_could_have_returned_them(
    azurite: str, registry_table: str, fields: dict[str, str]
) -> None:
    """Issue D4: no decoded token fails the request (a 5xx) or is read (a 200) unless the list
    could have returned it."""

    async def outcome() -> Page[Any] | ValidationError:
        from azure.data.tables.aio import TableClient

        async with (
            TableClient.from_connection_string(azurite, registry_table) as table,
            TableClient.from_connection_string(azurite, registry_table + "due") as due,
        ):
            try:
                return await ApplicationStore(table, POLICY, DueIndex(due)).listing_page(3, _token(fields))
            except ValidationError as refused:
                return refused

    answer = asyncio.run(outcome())
    if could_be_issued(fields):
        assert isinstance(answer, Page), answer
    else:
        assert isinstance(answer, ValidationError), fields
        assert [problem.field for problem in answer.problems] == ["continuationToken"]
