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
        """Create or replace; returns (etag, created). ``ConflictError`` when ``if_match`` (``*``
        included) does not hold. Seeding and tests use it; the API goes through ``shared.groups``."""
        if if_match is None:
            try:
                return await self.create(group), True
            except ConflictError:
                from azure.data.tables import UpdateMode

                result = await self._table.upsert_entity(_entity(group), mode=UpdateMode.REPLACE)
                return str(result["etag"]), False
        return await self.replace(group, if_match), False

    async def create(self, group: Group) -> str:
        """Add a group that does not exist; its ETag. ``ConflictError`` if it exists."""
        from azure.core.exceptions import ResourceExistsError

        try:
            created = await self._table.create_entity(_entity(group))
        except ResourceExistsError:
            raise ConflictError("Group already exists", group_id=group.group_id) from None
        return str(created["etag"])

    async def replace(self, group: Group, etag: str) -> str:
        """Replace the group if its ETag is still ``etag`` (``*``: if it exists); the new ETag.
        ``ConflictError`` otherwise, nothing written."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        if etag != "*" and not _TABLE_ETAG.fullmatch(etag):
            # Not an ETag Table storage issued, so it matches nothing (and is never sent on).
            raise ConflictError("Group was changed since it was read", group_id=group.group_id)
        try:
            result = await self._table.update_entity(
                _entity(group),
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            raise ConflictError("Group was changed since it was read", group_id=group.group_id) from None
        return str(result["etag"])

    async def delete(self, group_id: str, etag: str | None = None) -> None:
        """Delete the group (only while its ETag is ``etag``, when given). ``ConflictError`` if the
        ETag no longer holds; a group already gone is not an error."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        if etag is None:
            await self._table.delete_entity(PARTITION, group_id)
            return
        try:
            await self._table.delete_entity(
                PARTITION, group_id, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except ResourceNotFoundError:
            return
        except ResourceModifiedError:
            raise ConflictError("Group was changed since it was read", group_id=group_id) from None


def _entity(group: Group) -> dict[str, Any]:
    return {
        "PartitionKey": PARTITION,
        "RowKey": group.group_id,
        "Group": json.dumps(group.to_json_dict(), separators=(",", ":")),
    }


def _group(entity: Any) -> Group:
    return Group.model_validate(json.loads(entity["Group"]), strict=False)
