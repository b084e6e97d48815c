"""Pages of an application's rotation log against the real store on Azurite (issue D3).

A continuation token names the application and the key of the next page's first entry; it reads on
only in that application's log. Tokens the log did not return for this application (the list's, the
log's of another application, forged service tokens) are refused naming the field; the service's
own token, as versions before these cursors returned it, still continues a walk (as Azurite and
Azure encode its keys). Generated token fields are either refused naming the field or are a token
the log could have returned for the application, never anything else.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.models import LogLevel, RotationLogEntry
from shared.errors import ValidationError
from shared.storage.applications import Page, encode_continuation
from shared.storage.rotation_log import RotationLogStore
from tests.rotation.azurite_store import fresh_table, generated
from tests.rotation.test_list_pages import EXAMPLES, azure_key, azurite_key

A1 = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
A3 = "0f8fad5b-d9cb-469f-a165-70867728950e"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
LOG_KEY = re.compile(r"[0-9]{17}\|[0-9a-f]{8}")


def entry(app_id: str, minutes: int) -> RotationLogEntry:
    return RotationLogEntry(
        at=NOW + timedelta(minutes=minutes),
        app_id=app_id,
        rotation_id=None,
        event=f"test.{minutes}",
        level=LogLevel.INFO,
        message="",
    )


async def logged(table: Any, entries: dict[str, int]) -> RotationLogStore:
    """A log store on ``table`` with ``count`` entries for each app id of ``entries``."""
    store = RotationLogStore(table)
    for app_id, count in entries.items():
        for minutes in range(count):
            await store.append(entry(app_id, minutes))
    return store


async def walk(
    store: RotationLogStore, app_id: str, page_size: int, token: str | None = None
) -> list[list[str]]:
    pages: list[list[str]] = []
    while True:
        page = await store.list_page(app_id, page_size, token)
        assert all(item.app_id == app_id for item in page.items)
        pages.append([item.event for item in page.items])
        token = page.continuation_token
        if token is None:
            return pages
        assert len(pages) < 100, "the walk does not end"


def _token(fields: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")


@pytest.mark.parametrize("page_size", [1, 2, 3, 5, 6])
def test_a_walk_returns_every_entry_of_the_application_once_newest_first(
    azurite: str, page_size: int
) -> None:
    async def scenario() -> None:
        async with fresh_table(azurite) as table:
            store = await logged(table, {A1: 5, A3: 4})
            pages = await walk(store, A1, page_size)
            assert [event for page in pages for event in page] == [f"test.{m}" for m in range(4, -1, -1)]
            assert all(len(page) == page_size for page in pages[:-1]) and pages[-1]  # no empty last page

    asyncio.run(scenario())


def test_another_applications_token_is_refused_naming_the_field(azurite: str) -> None:
    """Issue D3: A3's token on A1's log read A1's log from A3's position (an empty page although
    A1 has more entries)."""

    async def scenario() -> None:
        async with fresh_table(azurite) as table:
            store = await logged(table, {A1: 3, A3: 3})
            token = (await store.list_page(A3, 1, None)).continuation_token
            assert token is not None
            with pytest.raises(ValidationError) as raised:
                await store.list_page(A1, 1, token)
            assert [problem.field for problem in raised.value.problems] == ["continuationToken"]
            assert [event for page in await walk(store, A3, 1, token) for event in page] == [
                "test.1",
                "test.0",
            ]

    asyncio.run(scenario())


LOG_ROW = "08226000000000000|0a1b2c3d"


@pytest.mark.parametrize(
    "fields",
    [
        # Issue D3's examples: accepted as the first page, or as an empty last page.
        {},
        {"foo": "bar"},
        {"RowKey": "y"},
        # The list's tokens: its own, and the service's from the version before.
        {"after": f"app|{A1}", "span": "ff"},
        {"PartitionKey": azurite_key("registry"), "RowKey": azurite_key(f"app|{A1}")},
        # The log's shapes, of another application or with a key the log never wrote.
        {"log": A3, "from": LOG_ROW},
        {"log": A1.upper(), "from": LOG_ROW},
        {"log": A1, "from": LOG_ROW + "0"},
        {"log": A1, "from": "9" * 2000},
        {"log": A1, "from": LOG_ROW, "extra": ""},
        {"log": A1},
        {"PartitionKey": azurite_key(A3), "RowKey": azurite_key(LOG_ROW)},
        {"PartitionKey": azurite_key(A1), "RowKey": azurite_key("y")},
        {"PartitionKey": azurite_key(A1), "RowKey": "x" * 2000},
        {"PartitionKey": "!!!", "RowKey": "\u0000"},
    ],
)
def test_a_token_the_log_did_not_return_for_the_application_is_refused_naming_the_field(
    azurite: str, fields: dict[str, Any]
) -> None:
    async def scenario() -> None:
        async with fresh_table(azurite) as table:
            store = await logged(table, {A1: 2})
            with pytest.raises(ValidationError) as raised:
                await store.list_page(A1, 10, _token(fields))
            assert [problem.field for problem in raised.value.problems] == ["continuationToken"]

    asyncio.run(scenario())


@pytest.mark.parametrize("keys_as", ["returned", "azure", "raw"])
def test_the_services_own_token_from_the_version_before_still_continues(azurite: str, keys_as: str) -> None:
    """The SDK's token as the version before returned it on Azurite, the same keys as Azure encodes
    them, and the keys themselves: each continues the walk at the next entry."""

    async def scenario() -> None:
        async with fresh_table(azurite) as table:
            store = await logged(table, {A1: 5, A3: 2})
            # How the version before paged: the SDK's first page and its continuation token.
            pages = table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": A1}, results_per_page=2
            ).by_page()
            first = [row["RowKey"] async for row in await pages.__anext__()]
            returned = pages.continuation_token
            assert set(returned) == {"PartitionKey", "RowKey"}
            next_key = base64.b64decode(returned["RowKey"]).decode()
            assert returned == {"PartitionKey": azurite_key(A1), "RowKey": azurite_key(next_key)}
            keys = {"PartitionKey": A1, "RowKey": next_key}
            token = {
                "returned": returned,
                "azure": {name: azure_key(key) for name, key in keys.items()},
                "raw": keys,
            }[keys_as]
            legacy = encode_continuation(token)
            assert len(first) == 2 and next_key > first[-1]
            rest = await walk(store, A1, 2, legacy)
            assert [event for page in rest for event in page] == ["test.2", "test.1", "test.0"]

    asyncio.run(scenario())


# Generated token fields: the names of every token kind and others, with values that are keys of
# this log (in the forms a token may carry them), other keys, or any text.
log_keys = st.from_regex(LOG_KEY, fullmatch=True)
app_ids = st.sampled_from([A1, A3, A1.upper()])
key_texts = st.one_of(
    log_keys, app_ids, st.sampled_from(["registry", f"app|{A1}", LOG_ROW + "0"]), st.text(max_size=40)
)


def in_token_forms(keys: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Keys as a token may carry them: as Azurite or Azure encodes them, or the key itself."""
    return keys.flatmap(lambda key: st.sampled_from([key, azurite_key(key), azure_key(key)]))


token_values = st.one_of(in_token_forms(key_texts), st.text(max_size=80))
token_fields = st.one_of(
    st.dictionaries(
        st.one_of(
            st.sampled_from(["log", "from", "PartitionKey", "RowKey", "after", "span"]), st.text(max_size=8)
        ),
        token_values,
        max_size=3,
    ),
    st.fixed_dictionaries(
        {"log": st.one_of(app_ids, token_values), "from": st.one_of(log_keys, token_values)}
    ),
    st.fixed_dictionaries(
        {
            "PartitionKey": st.one_of(in_token_forms(app_ids), token_values),
            "RowKey": st.one_of(in_token_forms(log_keys), token_values),
        }
    ),
)


def could_be_issued(fields: dict[str, str], app_id: str) -> bool:
    """Whether the log returns (or the version before returned) a token of these fields for the log
    of ``app_id``."""

    def is_log_key(key: str) -> bool:
        return LOG_KEY.fullmatch(key) is not None

    def names(text: str, key_ok: Any) -> bool:
        encoded = text.rpartition("!")[2].replace("-", "=")
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except ValueError:
            decoded = ""
        return any(key_ok(key) and text in {key, azurite_key(key), azure_key(key)} for key in (text, decoded))

    if set(fields) == {"PartitionKey", "RowKey"}:
        return names(fields["PartitionKey"], lambda key: key == app_id) and names(
            fields["RowKey"], is_log_key
        )
    return set(fields) == {"log", "from"} and fields["log"] == app_id and is_log_key(fields["from"])


@pytest.fixture
def log_table(azurite: str) -> Iterator[str]:
    """A table with A1's and A3's logs, for generated tokens to page through."""
    from azure.data.tables import TableServiceClient

    name = "logtokens" + uuid.uuid4().hex[:12]

    async def append() -> None:
        from azure.data.tables.aio import TableClient

        async with TableClient.from_connection_string(azurite, name) as table:
            await logged(table, {A1: 4, A3: 2})

    with TableServiceClient.from_connection_string(azurite) as service:
        service.create_table(name)
        try:
            asyncio.run(append())
            yield name
        finally:
            service.delete_table(name)


@given(fields=token_fields)
@generated(max(EXAMPLES * 10, 50))
def test_generated_token_fields_are_refused_unless_the_log_could_have_returned_them(
    azurite: str, log_table: str, fields: dict[str, str]
) -> None:
    """Issue D3: no decoded token fails the request (a 5xx) or is read (a 200) unless the log
    could have returned it for this application."""

    async def outcome() -> Page[Any] | ValidationError:
        from azure.data.tables.aio import TableClient

        async with TableClient.from_connection_string(azurite, log_table) as table:
            try:
                return await RotationLogStore(table).list_page(A1, 2, _token(fields))
            except ValidationError as refused:
                return refused

    answer = asyncio.run(outcome())
    if could_be_issued(fields, A1):
        assert isinstance(answer, Page), answer
        assert all(item.app_id == A1 for item in answer.items)
    else:
        assert isinstance(answer, ValidationError), fields
        assert [problem.field for problem in answer.problems] == ["continuationToken"]
