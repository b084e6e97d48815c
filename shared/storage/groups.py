"""Groups (shared integration settings), in the ``applications`` table under partition ``group``."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from shared.domain.models import Group
from shared.errors import ConflictError, NotFoundError

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

PARTITION = "group"
# The ETags Azure Table storage issues: W/"datetime'<URL-encoded timestamp>'".
_TABLE_ETAG = re.compile(r"W/\"datetime'[0-9A-Za-z%.:-]{1,64}'\"")


class GroupStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def get(self, group_id: str) -> tuple[Group, str]:
        """The group and its ETag."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = await self._table.get_entity(PARTITION, group_id)
        except ResourceNotFoundError:
            raise NotFoundError("Group does not exist", group_id=group_id) from None
        return _group(entity), str(entity.metadata["etag"])

    async def find(self, group_id: str) -> Group | None:
        try:
            return (await self.get(group_id))[0]
        except NotFoundError:
            return None

    async def list_all(self) -> list[Group]:
        query = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": PARTITION})
        return [_group(entity) async for entity in query]

    async def put(self, group: Group, *, if_match: str | None) -> tuple[str, bool]:
        """Create or replace; returns (etag, created)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        entity = {
            "PartitionKey": PARTITION,
            "RowKey": group.group_id,
            "Group": json.dumps(group.to_json_dict(), separators=(",", ":")),
        }
        if if_match is None:
            try:
                created = await self._table.create_entity(entity)
                return str(created["etag"]), True
            except ResourceExistsError:
                result = await self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
                return str(result["etag"]), False
        if if_match != "*" and not _TABLE_ETAG.fullmatch(if_match):
            # Not an ETag Table storage issued, so it matches nothing (and is never sent on).
            raise ConflictError("Group was changed since it was read", group_id=group.group_id)
        try:
            result = await self._table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=if_match, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            raise ConflictError("Group was changed since it was read", group_id=group.group_id) from None
        return str(result["etag"]), False

    async def delete(self, group_id: str) -> None:
        await self._table.delete_entity(PARTITION, group_id)


def _group(entity: Any) -> Group:
    return Group.model_validate(json.loads(entity["Group"]), strict=False)
