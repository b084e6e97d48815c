"""The due index: when each registered application next needs the timer, in a table of its own
(``rotationdue``), so a scan reads only the due rows, as one key range.

Row: PartitionKey ``due``; RowKey ``{attentionAt}|{appId}|{nonce}`` (``attentionAt`` fixed-width UTC,
so key order is time order; ``nonce`` 8 random hex digits, so no two writes share a key and
deleting a row one write left behind never deletes another's); ``AppId``; ``WrittenAt``.

Why a table of its own: the registrations table then holds registrations, and every query of it
(a list page) costs what the table holds in Azurite, which runs a query's filter on every entity of
the table (azurite 3.37 ``LokiTableMetadataStore.queryTableEntities``; docs/benchmarks.md).

Why a write is ordered: Azure Table transactions span one partition of one table ("Performing
entity group transactions", learn.microsoft.com/rest/api/storageservices/
performing-entity-group-transactions), so the app row and its due row cannot change together. A
write adds its new due row *before* the app row that names it (``DueKey``) and deletes the row it
replaces *after*: a crash or a lost race in between leaves an extra row, never an application
without one. A scan reads a row when its time has come, and then deletes it if no app row names it
and it is ``ORPHAN_AGE`` old (younger, the write that will name it may still be on its way); a
leftover row with a later time waits for it (one row per failed write, never more).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from shared.domain.models import LATE_WRITE_WINDOW

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

logger = logging.getLogger("rotator.storage")

TABLE_NAME = "rotationdue"
PARTITION = "due"
# A row no app row names is deleted once this old: a write that timed out may still land (and name
# it) within the window the rotation engine allows late writes (``LATE_WRITE_WINDOW``), and
# ``WrittenAt`` is the writer's ``now``, which a scan takes once for a run of up to 10 minutes
# (``shared.rotation.scanner.SCAN_TIME_BUDGET_SECONDS``): both, with room to spare.
ORPHAN_AGE = max(LATE_WRITE_WINDOW * 4, timedelta(hours=1))
_INSTANT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def due_key(attention_at: datetime, app_id: str) -> str:
    """A new row key for ``app_id`` needing attention at ``attention_at`` (unique: a nonce ends it)."""
    return f"{attention_at.astimezone(UTC).strftime(_INSTANT_FORMAT)}|{app_id}|{secrets.token_hex(4)}"


def key_instant(key: str) -> str:
    """The fixed-width attention time a row key starts with (compares as time)."""
    return key.split("|", 1)[0]


@dataclass(frozen=True)
class DueRow:
    """One row of the index: ``key`` names it; ``written_at`` None when the row has no time (never
    written by this code: treated as old)."""

    key: str
    app_id: str
    attention_at: datetime
    written_at: datetime | None


class DueIndex:
    """The ``rotationdue`` table (module docstring). ``ApplicationStore`` writes it; a scan reads it."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def add(self, key: str, app_id: str, now: datetime) -> None:
        """Write the row ``key`` (an upsert: the SDK's retry of a write that landed must not fail)."""
        await self._table.upsert_entity(
            {"PartitionKey": PARTITION, "RowKey": key, "AppId": app_id, "WrittenAt": now}
        )

    async def remove(self, key: str) -> None:
        """Delete the row ``key``; a row already gone is no error."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            await self._table.delete_entity(PARTITION, key)
        except ResourceNotFoundError:
            pass

    async def discard(self, key: str) -> None:
        """``remove`` after the app row was written or refused: a failure here leaves a row no app
        row names, which a scan deletes later, so it is logged, not raised."""
        try:
            await self.remove(key)
        except Exception as error:  # noqa: BLE001 - the scan's sweep removes what this leaves
            logger.warning("due row not deleted (a scan removes it later): %s", type(error).__name__)

    async def due_batches(self, now: datetime, batch_size: int) -> AsyncIterator[list[DueRow]]:
        """The rows whose attention time has come, oldest first, in batches of ``batch_size`` (one
        Table page each, followed by its continuation token)."""
        pages = self._table.query_entities(
            "RowKey le @hi and PartitionKey eq @pk",  # the bound excludes most rows (Azurite: first)
            parameters={"pk": PARTITION, "hi": f"{now.astimezone(UTC).strftime(_INSTANT_FORMAT)}|~"},
            results_per_page=min(batch_size, 1000),
            select=["RowKey", "AppId", "WrittenAt"],
        ).by_page()
        async for page in pages:
            batch = []
            async for entity in page:
                key = str(entity["RowKey"])
                written = entity.get("WrittenAt")
                batch.append(
                    DueRow(
                        key,
                        str(entity.get("AppId") or key.split("|")[1]),
                        datetime.strptime(key_instant(key), _INSTANT_FORMAT).replace(tzinfo=UTC),
                        written.astimezone(UTC) if isinstance(written, datetime) else None,
                    )
                )
            if batch:
                yield batch
