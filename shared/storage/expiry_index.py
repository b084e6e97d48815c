"""The expiry index: one row per registered application whose secret has an expiry, in a table of
its own (``secretexpiry``), ordered by expiry, so the expiring-secrets count can read the secrets
that entered its window as one key range (``shared.expiry``).

Only the expiry count writes it, from the change rows that every application write adds in its own
transaction (``ApplicationStore``, ``chg|`` rows): each measurement first moves the rows of the
applications that changed since the last one, then reads the window's new entries. So an
application write never touches this table, and a measurement that fails halfway is repeated from
the same changes with the same result (every move is an upsert of the latest state and a delete
of the state the last measurement left, which ignores a row already gone).

Why a table of its own: Azure Table transactions span one partition of one table ("Performing
entity group transactions", learn.microsoft.com/rest/api/storageservices/
performing-entity-group-transactions), and this index needs none with the registrations, because
it is derived from their change rows by one writer at a time (the measurement's turn). Apart from
them, the registrations table holds a third fewer rows, which is what a query costs in Azurite
(its store runs a query's filter on every entity of the table; docs/benchmarks.md).

Row: PartitionKey ``expiry``; RowKey ``{expiresAt}|{appId}`` (fixed-width UTC, so key order is
expiry order); ``AppId``, ``DisplayName``, ``ExpiresAt``, ``State`` (``shared.storage.applications.
expiry_state``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.storage.applications import ExpiryRow, format_instant, optional_instant

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

TABLE_NAME = "secretexpiry"
PARTITION = "expiry"
# A transaction holds at most 100 operations (the page above).
MAX_BATCH = 100
# Deletes are single requests (a batch fails whole on one missing row): this many at a time.
PARALLEL_DELETES = 8


def expiry_key(expires_at: datetime, app_id: str) -> str:
    return f"{format_instant(expires_at)}|{app_id}"


@dataclass(frozen=True)
class ExpiryMove:
    """One application's row as the last measurement left it (``old_expires_at``; None: no row)
    and as it is now (``new``; None, or a row without ``expires_at``: no row)."""

    app_id: str
    old_expires_at: datetime | None
    new: ExpiryRow | None


class ExpiryIndex:
    """The ``secretexpiry`` table (module docstring). Written only by the expiry count's turn."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def expiring_between(self, after: datetime, upto: datetime) -> list[ExpiryRow]:
        """The rows of secrets expiring in (``after``, ``upto``], soonest first."""
        query = self._table.query_entities(
            # The upper bound first: most secrets expire after the window, and Azurite runs the
            # filter on every row, stopping an ``and`` at its first false side (the comment
            # KEY_RANGE_ORDER in shared.storage.applications). For Azure, the same key range.
            "RowKey le @hi and RowKey gt @lo and PartitionKey eq @pk",
            parameters={
                "pk": PARTITION,
                "lo": f"{format_instant(after)}|~",
                "hi": f"{format_instant(upto)}|~",
            },
            results_per_page=1000,
        )
        return [_row(entity) async for entity in query]

    async def apply(self, moves: Iterable[ExpiryMove]) -> None:
        """Move each application's row from its old expiry to its new one (idempotent)."""
        upserts: list[ExpiryRow] = []
        deletes: list[str] = []
        for move in moves:
            new_key = _key_of(move.new)
            if move.old_expires_at is not None:
                old_key = expiry_key(move.old_expires_at, move.app_id)
                if old_key != new_key:
                    deletes.append(old_key)
            if move.new is not None and new_key is not None:
                upserts.append(move.new)
        await self._upsert(upserts)
        await self._delete(deletes)

    async def rebuild(self, rows: Mapping[str, ExpiryRow]) -> int:
        """Make the table hold exactly ``rows`` (by app id; rows without an expiry are left out):
        the count's first walk. Returns the rows read."""
        wanted = {key: row for row in rows.values() if (key := _key_of(row)) is not None}
        query = self._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": PARTITION}, results_per_page=1000, select=["RowKey"]
        )
        present = [str(entity["RowKey"]) async for entity in query]
        await self._upsert(list(wanted.values()))
        await self._delete([key for key in present if key not in wanted])
        return len(present)

    async def _upsert(self, rows: list[ExpiryRow]) -> None:
        from azure.data.tables import UpdateMode

        for start in range(0, len(rows), MAX_BATCH):
            batch = rows[start : start + MAX_BATCH]
            await self._table.submit_transaction(
                [("upsert", _entity(row), {"mode": UpdateMode.REPLACE}) for row in batch]
            )

    async def _delete(self, keys: list[str]) -> None:
        limit = asyncio.Semaphore(PARALLEL_DELETES)

        async def delete(key: str) -> None:
            async with limit:
                # The SDK answers a row already gone (a repeated measurement) without an error.
                await self._table.delete_entity(PARTITION, key)

        await asyncio.gather(*(delete(key) for key in keys))


def _key_of(row: ExpiryRow | None) -> str | None:
    if row is None or row.expires_at is None:
        return None
    return expiry_key(row.expires_at, row.app_id)


def _entity(row: ExpiryRow) -> dict[str, Any]:
    assert row.expires_at is not None
    return {
        "PartitionKey": PARTITION,
        "RowKey": expiry_key(row.expires_at, row.app_id),
        "AppId": row.app_id,
        "DisplayName": row.display_name,
        "ExpiresAt": row.expires_at,
        "State": row.state,
    }


def _row(entity: Any) -> ExpiryRow:
    return ExpiryRow(
        str(entity["AppId"]),
        str(entity.get("DisplayName") or ""),
        optional_instant(entity.get("ExpiresAt")),
        str(entity.get("State") or "0|"),
    )
