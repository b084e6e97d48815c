"""The rotation log (audit trail): table ``rotationlog``, one partition per application.

RowKey = ``{inverted microseconds}|{random}``: Azure Tables return rows in key order, so the newest
entry comes first without sorting, and paging with continuation tokens stays cheap. Entries are
kept when an application is deleted: it is an audit log.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.domain.models import RotationLogEntry
from shared.storage.applications import Page, decode_continuation, encode_continuation

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

TABLE_NAME = "rotationlog"
_MAX_MICROS = 10**17  # beyond year 5000: keeps inverted keys positive and fixed-width


def log_row_key(moment: datetime) -> str:
    micros = int(moment.astimezone(UTC).timestamp() * 1_000_000)
    return f"{_MAX_MICROS - micros:017d}|{secrets.token_hex(4)}"


class RotationLogStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def append(self, entry: RotationLogEntry) -> None:
        await self._table.create_entity(
            {
                "PartitionKey": entry.app_id,
                "RowKey": log_row_key(entry.at),
                "At": entry.at,
                "RotationId": entry.rotation_id or "",
                "Event": entry.event,
                "Level": entry.level.value,
                "Entry": json.dumps(entry.to_json_dict(), separators=(",", ":")),
            }
        )

    async def list_page(
        self, app_id: str, page_size: int, continuation_token: str | None
    ) -> Page[RotationLogEntry]:
        pages = self._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": app_id}, results_per_page=page_size
        ).by_page(continuation_token=decode_continuation(continuation_token))
        items: list[RotationLogEntry] = []
        async for page in pages:
            items = [_entry(entity) async for entity in page]
            break
        return Page(items, encode_continuation(getattr(pages, "continuation_token", None)))


def _entry(entity: Any) -> RotationLogEntry:
    return RotationLogEntry.model_validate(json.loads(entity["Entry"]), strict=False)
