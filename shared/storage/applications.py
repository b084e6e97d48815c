"""Application registrations on Azure Table storage, with ETag optimistic concurrency.

Key design (table ``applications``)
-----------------------------------
All rows live in one partition, ``registry``, so that an application row and the rows that record
its changes can change together in one entity-group transaction (Azure Tables transactions span one
partition):

* ``app|{appId}``            the registration: config JSON, status JSON, and ``DueKey`` (below).

When the application next needs the timer is a row of the due index (``shared.storage.due_index``,
table ``rotationdue``) that the app row names (``DueKey``; ``DueWrites``: the row's ``Writes``
count when this version last wrote it, so a write by another version is seen). What the attention
time is comes from ``shared.domain.schedule``.

* ``due|{attentionAt}|{appId}``  the due index as versions before ``rotationdue`` kept it (named by
  ``IndexKey``, written in the app row's transaction). An install those versions used keeps writing
  these rows too (layout ``both``, a row in the ``meta`` partition), so rolling back to them keeps
  every application rotating; ``scripts/due_index.py contract`` ends that. A scan reads them in
  both layouts (a version before may still be running during a deployment).

* ``chg|{writtenAt}|{appId}|{n}``  one row per write that changed an application's expiry or its
  rotation state (held back while a rotation job is outstanding: the write that ends the job
  records it; ``ExpiryRecord`` on the app row holds what was last recorded): the expiring-secrets
  count (``shared.expiry``) reads them to keep itself and its expiry index
  (``shared.storage.expiry_index``, a table of its own that only it writes) up to date, reading
  only what changed since the last count, never every row.

Rows ``exp|...`` are the expiry index as versions before it had its own table kept it here; the
count's next walk deletes them.

One partition serves thousands of writes per second on Azure, far more than rotations need.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from shared.domain.models import ApplicationConfig, ApplicationStatus
from shared.domain.schedule import SchedulePolicy, attention_at
from shared.errors import ConflictError, NotFoundError, ValidationError
from shared.storage.conditional import read_row, write_if_unchanged
from shared.storage.due_index import ORPHAN_AGE, DueIndex, due_key, key_instant

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

PARTITION = "registry"
# Rows that are not registrations (turns of periodic tasks); never read by the registry queries.
META_PARTITION = "meta"
APP_PREFIX = "app|"
INDEX_PREFIX = "due|"
# The expiry index's rows in this table before it had one of its own (deleted by the count's walk).
LEGACY_EXPIRY_PREFIX = "exp|"
CHANGE_PREFIX = "chg|"
# KEY_RANGE_ORDER: a key-range filter on this table names first the bound that excludes the most
# rows (app rows sort first, then ``chg|``, then ``due|``), the partition last. For Azure it is the
# same key range. Azurite runs a query's filter on every entity of the table and an ``and`` stops
# at its first false side (azurite 3.37 LokiTableMetadataStore.queryTableEntities, AndNode): with
# the partition first (every row matches it), every row paid for three comparisons.
APP_COLUMNS = (
    "Config",
    "Status",
    "CreatedAt",
    "UpdatedAt",
    "IndexKey",
    "DueKey",
    "DueWrites",
    "ExpiryState",
    "Writes",
    "ExpiryRecord",
)
# What a listing reads: the ``Listing`` column (``listing_text``, written with every app row), and
# the key for rows written before it existed. No Edm.DateTime column (the SDK decodes those with
# strptime), and not the configuration and status, whose parsing was most of a page's CPU.
LISTING_COLUMNS = ("RowKey", "Listing")
# A row in the registry partition whose ``Change`` (a random nonce) every registration and removal
# rewrites in its own transaction: when it reads the same, the set of registered apps is the same.
REGISTRATIONS_KEY = "ver|registrations"
# The due index's layout (meta partition, column ``Layout``): ``both`` writes the registry's ``due|``
# rows too (an install versions before ``rotationdue`` used), ``table`` only ``rotationdue``. The
# first write of an install decides it: ``both`` when the registry or meta partition already holds
# rows.
LAYOUT_KEY = "dueIndexLayout"
LAYOUT_BOTH, LAYOUT_TABLE = "both", "table"
# How long an instance trusts the layout it read (a contract takes effect within this).
LAYOUT_REFRESH_SECONDS = 300.0
# A set of registered app ids read in one walk is rebuilt at most this often when registrations keep
# changing; in between, registrations are looked up one by one.
REGISTRATIONS_REBUILD_SECONDS = 30.0
# A query response holds at most 1,000 entities ($top at most 1,000, "Query Entities",
# learn.microsoft.com/rest/api/storageservices/query-entities).
MAX_PAGE = 1000
# A transaction holds at most 100 operations (Azure Tables batch limit).
MAX_BATCH = 100
TABLE_NAME = "applications"
# The longest continuation token text read: the tokens this API returns (its cursors, and the
# service's two encoded keys versions before them returned) are under 200 characters.
MAX_TOKEN_TEXT = 512
# The longest key text a service token may carry: an app row key (40 characters) as Azure encodes it
# is 61; the key of a rotation log row, 41.
_MAX_KEY_TEXT = 96
_AZURE_KEY = re.compile(r"1!(?P<length>[0-9]{1,3})!(?P<encoded>[A-Za-z0-9+/]+-{0,2})")
# ``app|`` and a GUID in its canonical form (36 characters), as ``app_row_key`` writes every app id.
_APP_KEY_LENGTH = len(APP_PREFIX) + 36


def format_instant(moment: datetime) -> str:
    """Fixed-width UTC text that sorts in time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def instant_as_rfc3339(text: str) -> str:
    """``format_instant`` text as ``shared.domain.fields.rfc3339`` writes the same moment (which
    leaves out a fraction of zero)."""
    return text[:-8] + "Z" if text.endswith(".000000Z") else text


def app_row_key(app_id: str) -> str:
    return f"{APP_PREFIX}{app_id}"


def index_row_key(moment: datetime, app_id: str) -> str:
    return f"{INDEX_PREFIX}{format_instant(moment)}|{app_id}"


@dataclass(frozen=True)
class StoredApplication:
    config: ApplicationConfig
    status: ApplicationStatus
    etag: str
    created_at: datetime
    updated_at: datetime
    index_key: str | None = None
    # The due index row the app row names (``shared.storage.due_index``), and the ``Writes`` count
    # when it was written or confirmed (-1: never, the row was written by a version before it).
    due_key: str | None = None
    due_writes: int = -1
    # The rotation state last written (None: written before it was tracked).
    expiry_state: str | None = None
    # Writes of this row so far: orders its ``chg|`` rows (clocks of two instances may disagree).
    writes: int = 0
    # The ``Config`` column as read or written ("": unknown). A write of this same (frozen)
    # ``config`` object writes it again instead of serialising the configuration anew (text an
    # earlier version wrote included: it reads back as this same configuration).
    config_text: str = ""
    # The expiry this application's last ``chg|`` row recorded (None: the status's own, as every
    # write recorded its change before changes were held back while a job is outstanding).
    recorded: RecordedExpiry | None = None

    @property
    def app_id(self) -> str:
        return str(self.config.app_id)

    @property
    def due_trusted(self) -> bool:
        """``due_key`` was written by the row's last write (no other version wrote it since)."""
        return self.due_writes == self.writes

    @property
    def recorded_expires_at(self) -> datetime | None:
        """The expiry the expiry count knows for this application: its last ``chg|`` row's."""
        return self.status.expires_at if self.recorded is None else self.recorded.expires_at


@dataclass(frozen=True)
class RecordedExpiry:
    """The expiry an application's last ``chg|`` row recorded (None: it had none)."""

    expires_at: datetime | None


@dataclass(frozen=True)
class ListedApplication:
    """A registration as a listing shows it.

    ``shown``: the JSON text (an object) of ``appId``, ``objectId``, ``displayName``, ``state``,
    ``rotationEnabled``, ``lastUpdatedAt``, ``expiresAt``, ``lastResult``, ``rotationInProgress``,
    ``integrationCount`` (as the application's own answer writes them); ``scheduled_at``: when the
    next scheduled rotation may start (``shared.domain.schedule.scheduled_at``) as
    ``format_instant`` text, None when nothing is scheduled. Text, not parsed: a page's entries are
    spliced from it (parsing a hundred and writing them again was a third of a page's CPU).
    """

    shown: str
    scheduled_at: str | None
    etag: str

    @property
    def app_id(self) -> str:
        return str(json.loads(self.shown)["appId"])


def listing_text(config: ApplicationConfig, status: ApplicationStatus) -> str:
    """The ``Listing`` column of an app row: ``ListedApplication.shown``'s members, then
    ``scheduledAt`` (last, so that ``listed`` can split it off)."""
    return _listing_text(config, status, status.to_json_dict())


def _listing_text(config: ApplicationConfig, status: ApplicationStatus, status_json: dict[str, Any]) -> str:
    return json.dumps(_listing(config, status, status_json), separators=(",", ":"))


def _listing(
    config: ApplicationConfig, status: ApplicationStatus, status_json: dict[str, Any]
) -> dict[str, Any]:
    """``listing_text``'s members, with the status's JSON form the row's write has already made (the
    configuration's fields are written as its JSON form writes them)."""
    from shared.domain.schedule import scheduled_at

    return {
        "appId": str(config.app_id),
        "objectId": str(config.object_id),
        "displayName": config.display_name,
        "state": config.state.value,
        "rotationEnabled": config.rotation.enabled,
        "lastUpdatedAt": status_json["lastUpdatedAt"],
        "expiresAt": status_json["expiresAt"],
        "lastResult": status_json["lastResult"],
        "rotationInProgress": status.in_progress is not None,
        "integrationCount": len(config.integrations),
        "scheduledAt": format_instant(scheduled_at(config, status)) if config.is_schedulable else None,
    }


_SCHEDULED_MEMBER = ',"scheduledAt":'


def listed(text: str, etag: str) -> ListedApplication:
    """A ``ListedApplication`` from a ``Listing`` column's text (``listing_text``)."""
    split = _split_scheduled(text)
    if split is None:  # not as ``listing_text`` writes it: read it whole
        fields = json.loads(text)
        when = fields.pop("scheduledAt", None)
        scheduled = None if when is None else format_instant(datetime.fromisoformat(when))
        split = json.dumps(fields, separators=(",", ":")), scheduled
    return ListedApplication(split[0], split[1], etag)


# ``scheduledAt``'s value and the object's end, as ``listing_text`` writes them.
_SCHEDULED_VALUE = re.compile(
    r'"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z)"\}|null\}'
)


def _split_scheduled(text: str) -> tuple[str, str | None] | None:
    """``text``'s other members (an object's text) and its ``scheduledAt``, when ``text`` is as
    ``listing_text`` writes it; None otherwise."""
    # No member's text holds an unescaped quote, so the last such member is the last member.
    head, found, tail = text.rpartition(_SCHEDULED_MEMBER)
    matched = _SCHEDULED_VALUE.fullmatch(tail) if found and head != "{" else None
    return None if matched is None else (head + "}", matched.group(1))


@dataclass(frozen=True)
class ExpiryRow:
    """What the expiry count needs of an app: the new side of a ``chg|`` row, or an expiry index
    row (``shared.storage.expiry_index``)."""

    app_id: str
    display_name: str
    expires_at: datetime | None
    # ``expiry_state``: "<1 if rotation is scheduled else 0>|<last result>".
    state: str

    @property
    def rotation_scheduled(self) -> bool:
        return self.state.startswith("1|")

    @property
    def last_result(self) -> str:
        return self.state.partition("|")[2]


@dataclass(frozen=True)
class ExpiryChange:
    """A ``chg|`` row: an application's expiry before and after one write."""

    key: str
    sequence: int  # the application's write number
    old_expires_at: datetime | None
    new: ExpiryRow


@dataclass(frozen=True)
class DueApplication:
    """A due row a scan read: from ``rotationdue`` (``legacy`` False) or the registry's ``due|``
    rows; ``row_key`` names it; ``written_at`` None: unknown (legacy rows)."""

    app_id: str
    attention_at: datetime
    row_key: str = ""
    legacy: bool = False
    written_at: datetime | None = None


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    continuation_token: str | None


def encode_continuation(token: Any) -> str | None:
    if not token:
        return None
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode().rstrip("=")


def decode_continuation(text: str | None) -> dict[str, str] | None:
    """The fields of a continuation token (base64url JSON of strings); ValidationError naming the
    field for anything else, and for text longer than any token this API returns."""
    if not text:
        return None
    if len(text) > MAX_TOKEN_TEXT:
        raise token_problem()
    try:
        padded = text + "=" * (-len(text) % 4)
        token = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        token = None
    if not isinstance(token, dict) or not all(isinstance(v, str) for v in token.values()):
        raise token_problem()
    return token


def token_problem() -> ValidationError:
    """The answer to a continuation token this API did not return (a 400 naming the field)."""
    from shared.errors import FieldProblem

    return ValidationError(
        "Invalid continuation token",
        [
            FieldProblem(
                "continuationToken", "is not a token this API returned", "a token from a previous page"
            )
        ],
    )


async def take(query: Any, count: int) -> list[Any]:
    """The first ``count`` rows of a Table SDK query (an ``AsyncItemPaged``), following the
    service's continuation tokens: Azure may end a response early (after five seconds or at a
    partition boundary, "Query timeout and pagination",
    learn.microsoft.com/rest/api/storageservices/query-timeout-and-pagination)."""
    rows: list[Any] = []
    async for page in query.by_page():
        async for row in page:
            rows.append(row)
            if len(rows) >= count:
                return rows
    return rows


def service_token_row_key(token: dict[str, str], partition: str, is_row_key: Callable[[str], bool]) -> str:
    """The key of the next row a Table service continuation token names in ``partition``;
    ValidationError naming the field unless the token names ``partition`` and a key ``is_row_key``
    accepts.

    Versions before this API's own cursors returned the SDK's token, ``{"PartitionKey", "RowKey"}``:
    the ``x-ms-continuation-NextPartitionKey``/``NextRowKey`` header values. Azure encodes a key as
    ``1!{length}!{base64, "=" written "-"}`` (``1!8!U21pdGg-`` for ``Smith``, "Query Timeout and
    Pagination", learn.microsoft.com/rest/api/storageservices/query-timeout-and-pagination);
    Azurite as base64. The caller reads from the key with a query of its own: nothing of the token
    reaches the service but a key that passed ``is_row_key``.
    """
    if set(token) != {"PartitionKey", "RowKey"} or partition not in _key_readings(token["PartitionKey"]):
        raise token_problem()
    for key in _key_readings(token["RowKey"]):
        if is_row_key(key):
            return key
    raise token_problem()


def _key_readings(text: str) -> list[str]:
    """The keys a continuation header value may stand for: as Azure encodes keys, as Azurite does,
    or the key itself (none for text longer than any key a token of this API names)."""
    if len(text) > _MAX_KEY_TEXT:
        return []
    readings = [text, _base64_text(text)]
    azure = _AZURE_KEY.fullmatch(text)
    if azure and int(azure["length"]) == len(azure["encoded"]):
        readings.append(_base64_text(azure["encoded"].replace("-", "=")))
    return [reading for reading in readings if reading is not None]


def _base64_text(text: str) -> str | None:
    """The UTF-8 text ``text`` encodes in base64 as the service writes it (padded, no stray bits)."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(data).decode() != text:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True)
class _PageCursor:
    """Where the next page of app rows starts (after the key ``after``) and, when the keys of the
    page before were GUIDs, the span of GUID values one page is expected to cover."""

    after: str
    span: int | None

    # The range read first covers three times the last page's span. The keys of a page of 100
    # random GUIDs spread within about 10% of the mean; a short range costs a second query,
    # rows past the page cost nothing but the match (Azurite sorts what matches).
    MARGIN = 3

    @classmethod
    def after_page(cls, last: str, spread: float | None, page_size: int) -> _PageCursor:
        """The cursor after a page whose last key is ``last`` and whose keys were ``spread``
        GUID values apart (None: not GUIDs, so no span)."""
        return cls(last, None if spread is None else cls.span_of(spread, page_size))

    @staticmethod
    def spread(keys: list[str]) -> float | None:
        """The mean distance in GUID values between neighbouring keys of a page (None: fewer than
        two keys, or not GUIDs)."""
        first, last = _guid_value(keys[0]), _guid_value(keys[-1])
        if first is None or last is None or len(keys) < 2:
            return None
        return (last - first) / (len(keys) - 1)

    @classmethod
    def span_of(cls, spread: float, page_size: int) -> int:
        """The span of GUID values the range read first covers, for keys ``spread`` apart."""
        return min(_GUID_MAX, max(1, int(spread * page_size * cls.MARGIN)))

    def upper(self) -> str:
        """The first key past the range the next page reads first."""
        start = _guid_value(self.after)
        assert start is not None and self.span is not None  # decode keeps spans only after GUID keys
        return _app_key_of(start + self.span)

    @staticmethod
    def from_start(span: int) -> str:
        """The first key past the range the first page reads first: ``span`` GUIDs from zero."""
        return _app_key_of(span)

    def encode(self) -> str | None:
        fields = {"after": self.after, **({"span": format(self.span, "x")} if self.span else {})}
        return encode_continuation(fields)

    @classmethod
    def of(cls, token: dict[str, str] | None) -> _PageCursor | None:
        """The cursor of a decoded token this store returned; ValidationError (the field)
        otherwise. ``after`` is always an app key: the cursor's queries are bounded by it."""
        if token is None:
            return None
        after, span = token.get("after"), token.get("span")
        if not (set(token) <= {"after", "span"} and after is not None and _is_app_key(after)):
            raise token_problem()
        if span is not None and not _is_span(span):
            raise token_problem()
        return cls(after, None if span is None else int(span, 16))


def _is_app_key(key: str) -> bool:
    """Whether ``key`` is an app row key as ``app_row_key`` writes it: ``app|`` and a canonical
    (lower-case) GUID, the only form app ids are stored in."""
    return len(key) == _APP_KEY_LENGTH and key.startswith(APP_PREFIX) and _guid_value(key) is not None


def _is_span(text: str) -> bool:
    """Whether ``text`` is a span as ``_PageCursor.encode`` writes it: lower-case hex without leading
    zeros, from 1 to the largest GUID value."""
    return 0 < len(text) <= 32 and all(c in "0123456789abcdef" for c in text) and text[0] != "0"


_GUID_MAX = (1 << 128) - 1
# Before this store has read a page, a walk's first page takes its keys to be as far apart as
# 10,000 random GUIDs' (a registry with fewer costs a second, open query; one with more matches
# more rows than the page needs).
_FIRST_SPREAD = float(1 << 128) / 10_000


def _app_key_of(value: int) -> str:
    """The app row key of the GUID ``value`` (clamped to the largest GUID)."""
    import uuid

    return APP_PREFIX + str(uuid.UUID(int=min(value, _GUID_MAX)))


def _guid_value(key: str) -> int | None:
    """The GUID in an ``app|{appId}`` key as a number (key order is number order for the canonical,
    lower-case form every app id is stored in), or None."""
    import uuid

    text = key[len(APP_PREFIX) :]
    try:
        value = uuid.UUID(text)
    except ValueError:
        return None
    return value.int if str(value) == text else None


class ApplicationStore:
    """The registrations. Every write leaves the app row naming a due row that exists (module
    docstring)."""

    def __init__(self, table: TableClient, policy: SchedulePolicy, due: DueIndex) -> None:
        self._table = table
        self._policy = policy
        self._due = due
        self._layout: tuple[bool, float] | None = None  # (writes ``due|`` rows, read at: monotonic)
        self._registrations: _Registrations | None = None
        self._last_nonce: str | None = None
        # How far apart the keys of the last page this store read were (GUID values): where the
        # range a walk's first page reads ends. A hint: a range that holds too few reads on.
        self._spread = _FIRST_SPREAD

    @property
    def policy(self) -> SchedulePolicy:
        return self._policy

    async def get(self, app_id: str) -> StoredApplication:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = await self._table.get_entity(PARTITION, app_row_key(app_id))
        except ResourceNotFoundError:
            raise NotFoundError("Application is not registered", app_id=app_id) from None
        return _from_entity(entity)

    async def find(self, app_id: str) -> StoredApplication | None:
        try:
            return await self.get(app_id)
        except NotFoundError:
            return None

    async def list_page(self, page_size: int, continuation_token: str | None) -> Page[StoredApplication]:
        # Only what a StoredApplication holds: fewer properties (and no Timestamp) to decode.
        entities, token = await self._app_rows(page_size, continuation_token, APP_COLUMNS)
        return Page([_from_entity(entity) for entity in entities], token)

    async def listing_page(self, page_size: int, continuation_token: str | None) -> Page[ListedApplication]:
        """A page of registrations as a listing shows them (``LISTING_COLUMNS``); the continuation
        tokens are those of ``list_page``. A row written before the ``Listing`` column existed is
        read whole (its next write adds the column)."""
        import asyncio

        entities, token = await self._app_rows(page_size, continuation_token, LISTING_COLUMNS)
        limit = asyncio.Semaphore(8)

        async def whole(entity: Any) -> ListedApplication | None:
            async with limit:
                stored = await self.find(str(entity["RowKey"])[len(APP_PREFIX) :])
            if stored is None:
                return None  # removed since the page was read
            return listed(listing_text(stored.config, stored.status), stored.etag)

        # Tasks only for rows without the column: a hundred tasks a page cost more CPU than the page.
        wholes = iter(await asyncio.gather(*(whole(e) for e in entities if not e.get("Listing"))))
        items = [
            listed(entity["Listing"], entity.metadata["etag"]) if entity.get("Listing") else next(wholes)
            for entity in entities
        ]
        return Page([item for item in items if item is not None], token)

    async def _app_rows(
        self, page_size: int, continuation_token: str | None, columns: Sequence[str]
    ) -> tuple[list[Any], str | None]:
        """A page of app rows in key order and the token of the next (None: this was the last).

        The token names the last key returned and the key span the page covered. The next page
        reads the key range that span says holds one page (app ids are GUIDs, so their keys spread
        evenly), then, if that range held fewer, the rest from its end. On Azure a key-range query
        costs the same either way; Azurite runs every query's filter on every row of the table and
        sorts all that match, so an open range after the cursor made each page cost what follows
        it, and a walk of n rows cost n²/page.
        """
        want = page_size + 1  # one more than the page: whether another page follows
        select = list(columns)
        token = decode_continuation(continuation_token)
        if token is not None and set(token) == {"PartitionKey", "RowKey"}:
            # The service's own token, as versions before these cursors returned it (a walk that
            # spans an upgrade): it names the next app row of the registry partition.
            next_key = service_token_row_key(token, PARTITION, _is_app_key)
            rows = await self._take(">=", next_key, None, want, select)
            return self._page(rows, page_size)
        cursor = _PageCursor.of(token)
        lower: Literal[">", ">="] = ">"
        upper: str | None
        if cursor is None:
            # A bounded range, as pages after it read: an open one made Azurite sort every row.
            span = _PageCursor.span_of(self._spread, page_size)
            lower, start, upper = ">=", APP_PREFIX, _PageCursor.from_start(span)
        else:
            start, upper = cursor.after, (None if cursor.span is None else cursor.upper())
        rows = await self._take(lower, start, upper, want, select)
        if upper is not None and len(rows) < want:
            rows += await self._take(">=", upper, None, want - len(rows), select)
        return self._page(rows, page_size)

    def _page(self, rows: list[Any], page_size: int) -> tuple[list[Any], str | None]:
        page = rows[:page_size]
        if len(rows) <= page_size or not page:
            return page, None
        keys = [str(row["RowKey"]) for row in page]
        spread = _PageCursor.spread(keys)
        if spread is not None:
            self._spread = max(spread, 1.0)
        return page, _PageCursor.after_page(keys[-1], spread, page_size).encode()

    async def _take(
        self,
        lower: Literal[">", ">="],
        start: str,
        upper: str | None,
        count: int,
        select: list[str],
    ) -> list[Any]:
        """Up to ``count`` app rows with keys ``lower`` (``>`` or ``>=``) ``start`` and below
        ``upper`` (None: to the last app row), in key order. Follows the service's continuation
        tokens: Azure may end a response early (after five seconds or at a partition boundary,
        "Query timeout and pagination", learn.microsoft.com/rest/api/storageservices/query-timeout-and-pagination)."""
        operator = "gt" if lower == ">" else "ge"
        query = self._table.query_entities(
            f"RowKey lt @end and RowKey {operator} @start and PartitionKey eq @pk",  # KEY_RANGE_ORDER
            parameters={"pk": PARTITION, "start": start, "end": upper or APP_PREFIX[:-1] + "}"},
            results_per_page=min(count, MAX_PAGE),
            select=select,
        )
        return await take(query, count)

    async def registered(self, app_ids: Sequence[str]) -> set[str]:
        """Which of ``app_ids`` have a registration.

        From the set of registered app ids this instance last read (``RowKey`` alone, 1,000 a page),
        while the registrations' change nonce (``REGISTRATIONS_KEY``, one point read) still reads
        the same: an inventory page costs one read, not one per application. When the nonce moved,
        the set is read again once it holds still from one lookup to the next, or at the latest
        ``REGISTRATIONS_REBUILD_SECONDS`` after the last read; while registrations keep changing (a
        bulk registration) each app is one point read of its key, three at a time.

        Not one filter with ``or``: "using an or to specify a filter based on RowKey values
        results in a partition scan" (learn.microsoft.com/azure/storage/tables/
        table-storage-design-for-query), and the registry is one partition.
        """
        import time

        wanted = {app_id.lower() for app_id in app_ids}
        nonce = await self._registrations_nonce()
        known, last_seen, self._last_nonce = self._registrations, self._last_nonce, nonce
        if known is not None and known.nonce == nonce:
            return wanted & known.app_ids
        settled = nonce == last_seen  # nothing registered or removed since the previous lookup
        if known is None or settled or time.monotonic() - known.read_at >= REGISTRATIONS_REBUILD_SECONDS:
            # The nonce was read first: a registration after it moves it, so the next call reads again.
            self._registrations = _Registrations(nonce, await self._all_registered(), time.monotonic())
            return wanted & self._registrations.app_ids
        return await self._registered_one_by_one(wanted)

    async def _registrations_nonce(self) -> str | None:
        entity = await read_row(self._table, PARTITION, REGISTRATIONS_KEY)
        return None if entity is None else str(entity.get("Change") or "")

    async def _all_registered(self) -> frozenset[str]:
        return frozenset(key[len(APP_PREFIX) :] for key in await self._keys(APP_PREFIX))

    async def _keys(self, prefix: str) -> list[str]:
        """The keys of the registry partition's rows that start with ``prefix`` (``RowKey`` alone,
        1,000 a page)."""
        # App rows sort first: what the prefix excludes lies above it (see KEY_RANGE_ORDER).
        bounds = (
            ("RowKey lt @hi", "RowKey ge @lo") if prefix == APP_PREFIX else ("RowKey ge @lo", "RowKey lt @hi")
        )
        rows = self._table.query_entities(
            f"{bounds[0]} and {bounds[1]} and PartitionKey eq @pk",
            parameters={"pk": PARTITION, "lo": prefix, "hi": prefix[:-1] + "}"},
            results_per_page=1000,
            select=["RowKey"],
        )
        return [str(row["RowKey"]) async for row in rows]

    async def _registered_one_by_one(self, app_ids: set[str]) -> set[str]:
        import asyncio

        from azure.core.exceptions import ResourceNotFoundError

        # Three at a time: each call costs the event loop about a millisecond of SDK work, and an
        # inventory walk must not crowd out the API requests the same loop serves (docs/benchmarks.md:
        # GET one application during an inventory walk).
        limit = asyncio.Semaphore(3)

        async def exists(app_id: str) -> str | None:
            async with limit:
                try:
                    await self._table.get_entity(PARTITION, app_row_key(app_id), select=["RowKey"])
                except ResourceNotFoundError:
                    return None
                return app_id

        found = await asyncio.gather(*(exists(app_id) for app_id in sorted(app_ids)))
        return {app_id for app_id in found if app_id is not None}

    async def create(
        self, config: ApplicationConfig, status: ApplicationStatus, now: datetime
    ) -> StoredApplication:
        from azure.data.tables import TableTransactionError

        app_id = str(config.app_id)
        entity, attention = self._entities(config, status, created_at=now, updated_at=now)
        index_key = (
            index_row_key(attention, app_id) if attention and await self.writes_legacy_rows() else None
        )
        operations: list[Any] = [("create", entity)]
        if index_key:
            operations.append(("upsert", {"PartitionKey": PARTITION, "RowKey": index_key, "AppId": app_id}))
        # A re-registered app's writes must order after its earlier life's: start from the time.
        first = int(now.timestamp() * 1_000_000)
        state, recorded = _change_operation(operations, None, config, status, now, sequence=first)
        due = due_key(attention, app_id) if attention else None
        entity["IndexKey"], entity["DueKey"], entity["DueWrites"] = index_key or "", due or "", _int64(first)
        entity["ExpiryState"], entity["Writes"] = state, _int64(first)
        entity["ExpiryRecord"] = _expiry_record(first, recorded)
        change = _registrations_changed()
        operations.append(change)
        if due:
            await self._due.add(due, app_id, now)  # before the row that names it (module docstring)
        try:
            results = await self._table.submit_transaction(operations)
        except TableTransactionError as error:
            if error.error_code == "EntityAlreadyExists" or error.status_code == 409:
                landed = await self._landed(app_id, due, change)
                if landed is not None:
                    return landed
                if due:
                    await self._due.discard(due)
                raise ConflictError("Application is already registered", app_id=app_id) from None
            raise
        return StoredApplication(
            config,
            status,
            _etag(results[0]),
            now,
            now,
            index_key,
            due_key=due,
            due_writes=first,
            expiry_state=state,
            writes=first,
            config_text=entity["Config"],
            recorded=RecordedExpiry(recorded),
        )

    async def save(
        self,
        current: StoredApplication,
        config: ApplicationConfig,
        status: ApplicationStatus,
        now: datetime,
        *,
        etag: str | None = None,
    ) -> StoredApplication:
        """Rewrite the row that was read as ``current`` (every column this version writes); 412-style
        conflict if it changed since.

        ``etag`` overrides ``current.etag`` (the caller's If-Match).
        """
        from azure.core import MatchConditions
        from azure.data.tables import TableTransactionError, UpdateMode

        app_id = str(config.app_id)
        entity, attention = self._entities(
            config,
            status,
            created_at=current.created_at,
            updated_at=now,
            config_text=current.config_text if config is current.config else "",
        )
        outstanding = _index_may_lag(status)
        legacy = await self.writes_legacy_rows()
        index_key = index_row_key(attention, app_id) if attention and legacy else None
        if outstanding and current.index_key and index_key and current.index_key < index_key:
            # While a job is queued or running (or its outcome waits for the log), the index row
            # stays where it is when that is earlier than needed: a scan then looks early and finds
            # nothing to do (or requeues on time: it decides from this row, not the index), and the
            # job's last write moves it.
            # Marking a job queued, claiming it and each step then cost one entity request, not a
            # batch that deletes and inserts an index row.
            index_key = current.index_key
        due = _next_due_key(current, attention, outstanding)
        writes = current.writes + 1
        entity["IndexKey"], entity["DueKey"], entity["DueWrites"] = index_key or "", due or "", _int64(writes)
        # A merge, not a replace: the row names every column this version writes, never with None
        # (``_entities`` and the expiry columns below), so both leave the same values, and on Azure
        # both are one entity write guarded by If-Match ("Merge Entity",
        # learn.microsoft.com/rest/api/storageservices/merge-entity). Azurite applies a merge in
        # place, where a replace removes and reinserts the document and renumbers the table's
        # indices (most of its time in a timer pass at 100,000 registrations). A column a later
        # version adds survives this version's writes (after a rollback): if it is derived from the
        # others, that version must store the ``Writes`` count it was derived at and trust it only
        # while the row's count is the same.
        operations: list[Any] = [
            (
                "update",
                entity,
                {
                    "mode": UpdateMode.MERGE,
                    "etag": etag or current.etag,
                    "match_condition": MatchConditions.IfNotModified,
                },
            )
        ]
        if legacy and current.index_key != index_key:
            if current.index_key:
                operations.append(("delete", {"PartitionKey": PARTITION, "RowKey": current.index_key}))
            if index_key:
                operations.append(
                    ("upsert", {"PartitionKey": PARTITION, "RowKey": index_key, "AppId": app_id})
                )
        # In the ``table`` layout a ``due|`` row the app row named is left to the scan, which
        # deletes it when it comes due: deleting it here could fail the transaction on a row the
        # scan deleted first.
        added = due if due and due != current.due_key else None
        if added:
            await self._due.add(added, app_id, now)  # before the row that names it (module docstring)
        state, recorded = _change_operation(operations, current, config, status, now, sequence=writes)
        entity["ExpiryState"], entity["Writes"] = state, _int64(writes)
        entity["ExpiryRecord"] = _expiry_record(writes, recorded)
        landed: StoredApplication | None = None  # this write, as read back after its retry's refusal
        if len(operations) == 1:
            # Only the app row (most step writes): one entity request, without the batch's
            # multipart body, which costs milliseconds of CPU to build and parse.
            from azure.core.exceptions import HttpResponseError

            try:
                result = await self._table.update_entity(
                    entity,
                    mode=UpdateMode.MERGE,
                    etag=etag or current.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except HttpResponseError as error:
                landed = await self._refused(error, app_id, added)
        else:
            try:
                result = (await self._table.submit_transaction(operations))[0]
            except TableTransactionError as error:
                landed = await self._refused(error, app_id, added)
        if current.due_key and current.due_key != due:
            await self._due.discard(current.due_key)  # after: the app row names the new one
        if landed is not None:
            return landed
        return StoredApplication(
            config,
            status,
            _etag(result),
            current.created_at,
            now,
            index_key,
            due_key=due,
            due_writes=writes,
            expiry_state=state,
            writes=writes,
            config_text=entity["Config"],
            recorded=RecordedExpiry(recorded),
        )

    async def delete(self, current: StoredApplication, *, now: datetime, etag: str | None = None) -> None:
        from azure.core import MatchConditions
        from azure.data.tables import TableTransactionError

        operations: list[Any] = [
            (
                "delete",
                {"PartitionKey": PARTITION, "RowKey": app_row_key(current.app_id)},
                {"etag": etag or current.etag, "match_condition": MatchConditions.IfNotModified},
            )
        ]
        if current.index_key and await self.writes_legacy_rows():
            operations.append(("delete", {"PartitionKey": PARTITION, "RowKey": current.index_key}))
        if current.recorded_expires_at is not None:
            operations.append(
                (
                    "create",
                    _change_row(
                        current.app_id,
                        current.config.display_name,
                        current.recorded_expires_at,
                        None,
                        "0|",
                        now,
                        current.writes + 1,
                    ),
                )
            )
        change = _registrations_changed()
        operations.append(change)
        try:
            await self._table.submit_transaction(operations)
        except TableTransactionError as error:
            refused = _conflict_or_missing(error, current.app_id)
            # A 404 may answer the SDK's retry of this very transaction, which landed.
            if not isinstance(refused, NotFoundError) or await self._registrations_nonce() != _nonce_of(
                change
            ):
                raise refused from None
        if current.due_key:
            await self._due.discard(current.due_key)

    async def _refused(self, error: Any, app_id: str, added: str | None) -> StoredApplication:
        """After the service refused an app row write that added the due row ``added``: the
        application as stored when the row names ``added`` (the refusal answered the SDK's retry of
        this very write, which landed: azure-core retries a 5xx with the same If-Match). Otherwise
        raises the error, having deleted ``added`` when the service refused the write (a conflict,
        a missing row) and kept it when the outcome is unknown (a timeout, a 5xx: the write may
        still land and name it)."""
        refused = _conflict_or_missing(error, app_id)
        if added and isinstance(refused, ConflictError | NotFoundError):
            landed = await self.find(app_id)
            if landed is not None and landed.due_key == added:
                return landed
            await self._due.discard(added)
        raise refused from None

    async def _landed(
        self, app_id: str, due: str | None, change: tuple[str, dict[str, Any]]
    ) -> StoredApplication | None:
        """After a registration was refused as already registered: the application as stored when
        the refusal answered the SDK's retry of this very registration, which landed (its row names
        the due row ``due``, or the registrations' change nonce is still the one it wrote)."""
        stored = await self.find(app_id)
        if stored is None:
            return None
        if due is not None and stored.due_key == due:
            return stored
        return stored if await self._registrations_nonce() == _nonce_of(change) else None

    async def writes_legacy_rows(self) -> bool:
        """Whether writes keep the registry's ``due|`` rows too (``LAYOUT_KEY``): read once per
        ``LAYOUT_REFRESH_SECONDS``; the first instance to ask on an install decides it."""
        import time

        from azure.core.exceptions import ResourceExistsError

        if self._layout is not None and time.monotonic() - self._layout[1] < LAYOUT_REFRESH_SECONDS:
            return self._layout[0]
        layout = await self.recorded_layout()
        if layout is None:
            # Any registration or periodic turn: a version before ``rotationdue`` ran here (its
            # timer records a turn in ``meta`` every run, even with nothing registered). This
            # version decides the layout before it writes either (``take_turn``).
            used = await take(
                self._table.query_entities(
                    "PartitionKey eq @pk or PartitionKey eq @meta",
                    parameters={"pk": PARTITION, "meta": META_PARTITION},
                    results_per_page=1,
                    select=["RowKey"],
                ),
                1,
            )
            layout = LAYOUT_BOTH if used else LAYOUT_TABLE
            try:
                await self._table.create_entity(
                    {"PartitionKey": META_PARTITION, "RowKey": LAYOUT_KEY, "Layout": layout}
                )
            except ResourceExistsError:
                layout = await self.recorded_layout() or layout  # another instance decided first
        self._layout = (layout != LAYOUT_TABLE, time.monotonic())
        return self._layout[0]

    async def recorded_layout(self) -> str | None:
        """The layout recorded for every instance (``LAYOUT_BOTH`` or ``LAYOUT_TABLE``), None while
        none is: the first write of this version decides it (``writes_legacy_rows``). Reads only."""
        entity = await read_row(self._table, META_PARTITION, LAYOUT_KEY)
        return None if entity is None else str(entity.get("Layout") or LAYOUT_BOTH)

    async def set_layout(self, layout: str) -> None:
        """Record the due index's layout (``LAYOUT_BOTH`` or ``LAYOUT_TABLE``) for every instance."""
        from azure.data.tables import UpdateMode

        if layout not in (LAYOUT_BOTH, LAYOUT_TABLE):
            raise ValueError(f"layout must be {LAYOUT_BOTH!r} or {LAYOUT_TABLE!r}")
        await self._table.upsert_entity(
            {"PartitionKey": META_PARTITION, "RowKey": LAYOUT_KEY, "Layout": layout}, mode=UpdateMode.REPLACE
        )
        self._layout = None

    async def take_turn(self, task: str, now: datetime, interval: timedelta) -> tuple[bool, dict[str, Any]]:
        """Whether this instance runs ``task`` now: at most once per ``interval`` across every
        instance. The turn is a row in the ``meta`` partition, taken by an ETag-conditional write
        (a lost race is "not your turn"). Returns (taken, what the last turn recorded)."""
        await self.writes_legacy_rows()  # decided before this version's first meta row
        entity = await read_row(self._table, META_PARTITION, task)
        if entity is not None:
            last = entity.get("LastRun")
            if isinstance(last, datetime) and timedelta(0) <= now - _as_utc(last) < interval:
                return False, dict(entity)
        row = {"PartitionKey": META_PARTITION, "RowKey": task, "LastRun": now}
        taken = await write_if_unchanged(self._table, row, entity, merge=True)
        return taken, dict(entity or {})

    async def record_turn(self, task: str, values: dict[str, Any]) -> None:
        """Store what a turn of ``task`` found (read back by the instances that skip their turn)."""
        from azure.data.tables import UpdateMode

        await self._table.upsert_entity(
            {"PartitionKey": META_PARTITION, "RowKey": task, **values}, mode=UpdateMode.MERGE
        )

    async def expiry_changes(self, after: datetime, upto: datetime) -> list[ExpiryChange]:
        """The ``chg|`` rows written in (``after``, ``upto``], oldest first."""
        rows = await self._range(CHANGE_PREFIX, after, upto)
        return [
            ExpiryChange(
                str(row["RowKey"]),
                _int(row.get("Sequence")),
                optional_instant(row.get("OldExpiresAt")),
                ExpiryRow(
                    str(row["AppId"]),
                    str(row.get("DisplayName") or ""),
                    optional_instant(row.get("NewExpiresAt")),
                    str(row.get("State") or "0|"),
                ),
            )
            for row in rows
        ]

    async def legacy_due_keys(self) -> list[str]:
        """The keys of the registry's ``due|`` rows (the due index as versions before kept it)."""
        return await self._keys(INDEX_PREFIX)

    async def legacy_expiry_keys(self) -> list[str]:
        """The keys of the ``exp|`` rows versions before the expiry index's own table wrote here."""
        return await self._keys(LEGACY_EXPIRY_PREFIX)

    async def delete_rows(self, row_keys: Sequence[str]) -> None:
        """Delete rows of the registry partition (consumed ``chg|`` rows, legacy ``exp|`` rows), 100
        per transaction."""
        for start in range(0, len(row_keys), MAX_BATCH):
            await self._table.submit_transaction(
                [
                    ("delete", {"PartitionKey": PARTITION, "RowKey": key})
                    for key in row_keys[start : start + MAX_BATCH]
                ]
            )

    async def _range(self, prefix: str, after: datetime, upto: datetime) -> list[Any]:
        query = self._table.query_entities(
            # ``chg|`` rows lie between the app rows and the due rows, as many of each: either
            # bound excludes about half the table (KEY_RANGE_ORDER).
            "RowKey gt @lo and RowKey le @hi and PartitionKey eq @pk",
            parameters={
                "pk": PARTITION,
                "lo": f"{prefix}{format_instant(after)}|~",
                "hi": f"{prefix}{format_instant(upto)}|~",
            },
            results_per_page=1000,
        )
        return [row async for row in query]

    async def due_batches(self, now: datetime, batch_size: int) -> AsyncIterator[list[DueApplication]]:
        """Every due row whose attention time has come, in batches of ``batch_size`` (one Table
        page each, followed by its continuation token), so a scan can drain any number of due
        applications without holding them all: the ``rotationdue`` rows oldest first, then the
        registry's ``due|`` rows (module docstring). One application may appear more than once."""
        async for rows in self._due.due_batches(now, batch_size):
            yield [
                DueApplication(row.app_id, row.attention_at, row.key, False, row.written_at) for row in rows
            ]
        async for batch in self._legacy_due_batches(now, batch_size):
            yield batch

    async def settle_due_row(
        self, item: DueApplication, stored: StoredApplication | None, now: datetime
    ) -> bool:
        """Whether the due row ``item`` stands for nothing (True: the scan leaves the application
        alone for it), deleting it when nothing can still need it.

        A ``rotationdue`` row the app row does not name (the app row was written by this version,
        ``due_trusted``) or of an application that is gone: deleted once ``ORPHAN_AGE`` old. A
        registry ``due|`` row in the ``table`` layout: deleted when the app row no longer names it
        (``IndexKey``) and its own due row was written by this version, or the application is gone.
        Until then it may be the only row that tracks a write by a version before, and an instance
        that still writes the ``both`` layout deletes the row ``IndexKey`` names in its transaction,
        which would fail on a row already gone. In the ``both`` layout those rows are kept.
        """
        if item.legacy:
            if await self.writes_legacy_rows():
                return False
            if stored is not None and (not stored.due_trusted or stored.index_key == item.row_key):
                return False
            from azure.core.exceptions import ResourceNotFoundError

            try:
                await self._table.delete_entity(PARTITION, item.row_key)
            except ResourceNotFoundError:
                pass  # another scan deleted it
            return True
        if stored is not None and not (stored.due_trusted and stored.due_key != item.row_key):
            return False
        if item.written_at is None or now - item.written_at >= ORPHAN_AGE:
            await self._due.remove(item.row_key)
        return True

    async def _legacy_due_batches(
        self, now: datetime, batch_size: int
    ) -> AsyncIterator[list[DueApplication]]:
        upper = f"{INDEX_PREFIX}{format_instant(now)}|~"
        pages = self._table.query_entities(
            "RowKey ge @lo and RowKey le @hi and PartitionKey eq @pk",  # see KEY_RANGE_ORDER
            parameters={"pk": PARTITION, "lo": INDEX_PREFIX, "hi": upper},
            results_per_page=min(batch_size, 1000),
            select=["RowKey", "AppId"],
        ).by_page()
        async for page in pages:
            batch = []
            async for entity in page:
                key = str(entity["RowKey"])
                _, instant, app_id = key.split("|", 2)
                batch.append(DueApplication(app_id, _parse_instant(instant), key, True))
            if batch:
                yield batch

    def _entities(
        self,
        config: ApplicationConfig,
        status: ApplicationStatus,
        *,
        created_at: datetime,
        updated_at: datetime,
        config_text: str = "",
    ) -> tuple[dict[str, Any], datetime | None]:
        """The app row (without its due index columns) and its attention time (None: never);
        ``config_text``: ``config``'s JSON text when known."""
        app_id = str(config.app_id)
        attention = attention_at(config, status, self._policy)
        status_json = status.to_json_dict()
        entity = {
            "PartitionKey": PARTITION,
            "RowKey": app_row_key(app_id),
            "AppId": app_id,
            "DisplayName": config.display_name,
            "Config": config_text or json.dumps(config.to_json_dict(), separators=(",", ":")),
            "Status": json.dumps(status_json, separators=(",", ":")),
            "Listing": _listing_text(config, status, status_json),
            # Named empty, not left out: a merge would keep what an earlier version stored, and that
            # version, rolled back to, would delete the ``exp|`` row it names in its next write's
            # transaction, a row the expiry count's walk has deleted (the transaction would fail).
            "ExpiryKey": "",
            "CreatedAt": created_at,
            "UpdatedAt": updated_at,
        }
        return entity, attention


@dataclass(frozen=True)
class _Registrations:
    """The registered app ids as read after the change nonce ``nonce`` (None: never written)."""

    nonce: str | None
    app_ids: frozenset[str]
    read_at: float  # time.monotonic()


def _job_outstanding(status: ApplicationStatus) -> bool:
    """A rotation job is queued (``pending``, ``enqueuedAt``) or running (``inProgress``): the
    write that ends it will set the application's next attention time."""
    return status.in_progress is not None or status.pending is not None or status.enqueued_at is not None


def _index_may_lag(status: ApplicationStatus) -> bool:
    """A write of ``status`` may leave the application's index rows earlier than needed: a job is
    outstanding (``_job_outstanding``), or the row holds outcomes the log lacks (``unlogged``),
    which the write that settles them follows at once (or the scan, which the earlier row brings
    to it in time). The write that ends a rotation then moves no index row: the one after it
    does, once."""
    return _job_outstanding(status) or bool(status.unlogged)


def _next_due_key(current: StoredApplication, attention: datetime | None, outstanding: bool) -> str | None:
    """The due row a write of an application needing attention at ``attention`` names: the one
    ``current`` names when it is at that time, or earlier while ``outstanding``
    (``_index_may_lag``: the rule ``save`` applies to ``due|`` rows), and was written by this
    version; else a new one."""
    if attention is None:
        return None
    if current.due_key and current.due_trusted:
        kept, wanted = key_instant(current.due_key), format_instant(attention)
        if kept == wanted or (outstanding and kept < wanted):
            return current.due_key
    return due_key(attention, str(current.config.app_id))


def _registrations_changed() -> tuple[str, dict[str, Any]]:
    """The operation that moves the registrations' change nonce (in a registration's transaction)."""
    import secrets

    return (
        "upsert",
        {"PartitionKey": PARTITION, "RowKey": REGISTRATIONS_KEY, "Change": secrets.token_hex(8)},
    )


def _nonce_of(change: tuple[str, dict[str, Any]]) -> str:
    """The change nonce a ``_registrations_changed`` operation writes."""
    return str(change[1]["Change"])


def _config_from_json(text: str) -> ApplicationConfig:
    # Stored JSON was written by this code from validated models: re-validate leniently (no strict
    # re-check of ranges that may have been legal when written). pydantic parses the JSON itself
    # (in Rust), without building the dicts json.loads would.
    return ApplicationConfig.model_validate_json(text, strict=False)


def _status_from_json(text: str) -> ApplicationStatus:
    return ApplicationStatus.model_validate_json(text, strict=False)


def _from_entity(entity: Any) -> StoredApplication:
    return StoredApplication(
        config=_config_from_json(entity["Config"]),
        status=_status_from_json(entity["Status"]),
        etag=entity.metadata["etag"],
        created_at=_as_utc(entity["CreatedAt"]),
        updated_at=_as_utc(entity["UpdatedAt"]),
        index_key=entity.get("IndexKey") or None,
        due_key=entity.get("DueKey") or None,
        due_writes=_int(entity["DueWrites"]) if entity.get("DueWrites") is not None else -1,
        expiry_state=entity.get("ExpiryState") or None,
        writes=_int(entity.get("Writes")),
        config_text=str(entity["Config"]),
        recorded=_recorded(entity.get("ExpiryRecord"), _int(entity.get("Writes"))),
    )


def expiry_state(config: ApplicationConfig, status: ApplicationStatus) -> str:
    return f"{1 if config.is_schedulable else 0}|{status.last_result.value}"


def _change_operation(
    operations: list[Any],
    current: StoredApplication | None,
    config: ApplicationConfig,
    status: ApplicationStatus,
    now: datetime,
    *,
    sequence: int,
) -> tuple[str, datetime | None]:
    """Add to ``operations`` the ``chg|`` row of this write when it changed the expiry or the
    rotation state since the last one recorded. Returns the state and expiry recorded as of this
    write.

    While a job is outstanding the change is held back: the write that ends the job records the
    job's whole change at once. A rotation's commit (the new secret's expiry) is then one entity
    write instead of a transaction with a ``chg|`` row (a transaction costs this process about
    three single writes of CPU), and the expiry count sees a rotation when it has ended.
    """
    app_id = str(config.app_id)
    state = expiry_state(config, status)
    if current is not None and _job_outstanding(status):
        return current.expiry_state or state, current.recorded_expires_at
    old_expiry = current.recorded_expires_at if current is not None else None
    old_state = current.expiry_state if current is not None else None
    if old_expiry != status.expires_at or (old_state or state) != state:
        if old_expiry is not None or status.expires_at is not None:
            operations.append(
                (
                    "create",
                    _change_row(
                        app_id, config.display_name, old_expiry, status.expires_at, state, now, sequence
                    ),
                )
            )
    return state, status.expires_at


def _expiry_record(writes: int, expires_at: datetime | None) -> str:
    """The ``ExpiryRecord`` column: ``{writes}|{recorded expiry or ""}``. The count of writes it was
    stamped at tells a version that reads it whether a version without it (which recorded every
    change) wrote the row since; then the status's own expiry is the recorded one."""
    return f"{writes}|{format_instant(expires_at) if expires_at is not None else ''}"


def _recorded(text: Any, writes: int) -> RecordedExpiry | None:
    if not isinstance(text, str):
        return None
    stamped, _, instant = text.partition("|")
    if stamped != str(writes):
        return None
    return RecordedExpiry(_parse_instant(instant) if instant else None)


def _change_row(
    app_id: str,
    display_name: str,
    old_expires_at: datetime | None,
    new_expires_at: datetime | None,
    state: str,
    now: datetime,
    sequence: int,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "PartitionKey": PARTITION,
        # Unique per write (the app row's ETag serialises its writes); ordered by write time.
        "RowKey": f"{CHANGE_PREFIX}{format_instant(now)}|{app_id}|{sequence:020d}",
        "AppId": app_id,
        "DisplayName": display_name,
        "State": state,
        "Sequence": _int64(sequence),
    }
    if old_expires_at is not None:
        row["OldExpiresAt"] = old_expires_at
    if new_expires_at is not None:
        row["NewExpiresAt"] = new_expires_at
    return row


def _int64(value: int) -> Any:
    """An Edm.Int64 property (the SDK refuses Python ints beyond Int32 otherwise)."""
    from azure.data.tables import EdmType, EntityProperty

    return EntityProperty(value, EdmType.INT64)


def _int(value: Any) -> int:
    """An integer property; Int64 values come back as ``EntityProperty(value, EdmType.INT64)``."""
    value = getattr(value, "value", value)
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else 0


def optional_instant(value: Any) -> datetime | None:
    return _as_utc(value) if isinstance(value, datetime) else None


def _etag(result: Any) -> str:
    return str(result["etag"]) if isinstance(result, dict) else str(result)


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _parse_instant(text: str) -> datetime:
    """``format_instant``'s text back (fromisoformat reads its ``Z``; strptime is several times slower)."""
    return datetime.fromisoformat(text)


def _conflict_or_missing(error: Any, app_id: str) -> Exception:
    code = getattr(error, "error_code", None)  # set by the Tables SDK on the errors it raises
    if error.status_code == 404 or code == "ResourceNotFound":
        return NotFoundError("Application is not registered", app_id=app_id)
    if error.status_code in (409, 412) or code in (
        "UpdateConditionNotSatisfied",
        "ConditionNotMet",
    ):
        return ConflictError("Application was changed by someone else; read it again", app_id=app_id)
    return error  # type: ignore[no-any-return]


__all__: Sequence[str] = (
    "ApplicationStore",
    "DueIndex",
    "DueApplication",
    "Page",
    "StoredApplication",
    "TABLE_NAME",
)
