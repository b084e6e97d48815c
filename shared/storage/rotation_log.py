"""The rotation log (audit trail): table ``rotationlog``, one partition per application.

RowKey = ``{inverted microseconds}|{8 hex digits}``: Azure Tables return rows in key order, so the
newest entry comes first without sorting, and paging with continuation tokens stays cheap. The
digits are random, except in a rotation's terminal entry, where they are derived from its rotation
id and event (``outcome_row_key``), so writing that entry again writes the same row. Entries are
kept when an application is deleted: it is an audit log.

A page's continuation token names the application and the key of the next page's first row
(``_LogCursor``): a token is refused on another application's log, and its key is read with a key
range of that application's partition, never passed on to the service as it came.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.domain.models import RotationLogEntry
from shared.storage.applications import (
    Page,
    decode_continuation,
    encode_continuation,
    service_token_row_key,
    take,
    token_problem,
)

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

TABLE_NAME = "rotationlog"
_MAX_MICROS = 10**17  # beyond year 5000: keeps inverted keys positive and fixed-width
# A key as ``log_row_key`` writes it (the only writer of this table since its first version).
_LOG_ROW_KEY = re.compile(r"[0-9]{17}\|[0-9a-f]{8}")


def log_row_key(moment: datetime, suffix: str | None = None) -> str:
    """The key of an entry at ``moment``: its inverted microseconds, then ``suffix`` (8 hex
    digits; random when None)."""
    micros = int(moment.astimezone(UTC).timestamp() * 1_000_000)
    return f"{_MAX_MICROS - micros:017d}|{suffix or secrets.token_hex(4)}"


def outcome_row_key(entry: RotationLogEntry) -> str:
    """The one key a rotation's terminal entry is written under: derived from its time, rotation
    id and event, so every writer of the same ``UnloggedOutcome`` writes the same row."""
    import hashlib

    digest = hashlib.sha256(f"{entry.rotation_id}|{entry.event}".encode()).hexdigest()
    return log_row_key(entry.at, digest[:8])


class RotationLogStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def append(self, entry: RotationLogEntry) -> None:
        await self._table.create_entity(_row(entry, log_row_key(entry.at)))

    async def append_once(self, entry: RotationLogEntry) -> None:
        """Write a terminal entry under ``outcome_row_key``; a row already there (an earlier
        attempt's, or another reader's settling the same outcome) is the same entry."""
        from azure.core.exceptions import ResourceExistsError

        try:
            await self._table.create_entity(_row(entry, outcome_row_key(entry)))
        except ResourceExistsError:
            pass

    async def has_event(self, app_id: str, rotation_id: str, events: Collection[str]) -> bool:
        """Whether ``app_id``'s log holds an entry of ``rotation_id`` whose event is one of
        ``events`` (a query of the application's partition: for rare paths only)."""
        query = self._table.query_entities(
            "PartitionKey eq @pk and RotationId eq @rotation",
            parameters={"pk": app_id, "rotation": rotation_id},
            select=["Event"],
        )
        async for row in query:
            if row.get("Event") in events:
                return True
        return False

    async def list_page(
        self, app_id: str, page_size: int, continuation_token: str | None
    ) -> Page[RotationLogEntry]:
        """A page of ``app_id``'s entries, newest first. ValidationError naming the field for a
        token that is not one this store returned for ``app_id``'s log."""
        cursor = _LogCursor.of(decode_continuation(continuation_token), app_id)
        rows = await self._take(app_id, None if cursor is None else cursor.start, page_size + 1)
        page = [_entry(row) for row in rows[:page_size]]
        if len(rows) <= page_size:
            return Page(page, None)
        return Page(page, _LogCursor(app_id, str(rows[page_size]["RowKey"])).encode())

    async def _take(self, app_id: str, start: str | None, count: int) -> list[Any]:
        """Up to ``count`` rows of ``app_id``'s log from the key ``start`` on (None: the first), in
        key order. Follows the service's continuation tokens: Azure may end a response early."""
        query = self._table.query_entities(
            "PartitionKey eq @pk" + ("" if start is None else " and RowKey ge @start"),
            parameters={"pk": app_id, **({} if start is None else {"start": start})},
            results_per_page=count,
            select=["RowKey", "Entry"],
        )
        return await take(query, count)


@dataclass(frozen=True)
class _LogCursor:
    """Where the next page of ``app_id``'s log starts: the key of its first row."""

    app_id: str
    start: str

    def encode(self) -> str | None:
        return encode_continuation({"log": self.app_id, "from": self.start})

    @classmethod
    def of(cls, token: dict[str, str] | None, app_id: str) -> _LogCursor | None:
        """The cursor of a decoded token this store returned for ``app_id``'s log (or, from
        versions before these cursors, the service's own token for its partition); ValidationError
        naming the field otherwise."""
        if token is None:
            return None
        if set(token) == {"PartitionKey", "RowKey"}:
            return cls(app_id, service_token_row_key(token, app_id, _is_log_row_key))
        if set(token) != {"log", "from"} or token["log"] != app_id or not _is_log_row_key(token["from"]):
            raise token_problem()
        return cls(app_id, token["from"])


def _is_log_row_key(key: str) -> bool:
    return _LOG_ROW_KEY.fullmatch(key) is not None


def _row(entry: RotationLogEntry, row_key: str) -> dict[str, Any]:
    return {
        "PartitionKey": entry.app_id,
        "RowKey": row_key,
        "At": entry.at,
        "RotationId": entry.rotation_id or "",
        "Event": entry.event,
        "Level": entry.level.value,
        "Entry": json.dumps(entry.to_json_dict(), separators=(",", ":")),
    }


def _entry(entity: Any) -> RotationLogEntry:
    return RotationLogEntry.model_validate(json.loads(entity["Entry"]), strict=False)
