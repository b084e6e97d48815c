"""Optimistic writes of one Table row by several instances (turns, rate budgets)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient


async def read_row(table: TableClient, partition: str, row_key: str) -> Any:
    """The row (with its ETag in ``metadata``), or None."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return await table.get_entity(partition, row_key)
    except ResourceNotFoundError:
        return None


async def write_if_unchanged(
    table: TableClient, row: dict[str, Any], read: Any, *, merge: bool = False
) -> bool:
    """Write ``row`` if it is still as ``read`` (None: it did not exist): create it, or replace
    (``merge``: merge) it under the read ETag. False when another writer got there first."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
    from azure.data.tables import UpdateMode

    try:
        if read is None:
            await table.create_entity(row)
        else:
            await table.update_entity(
                row,
                mode=UpdateMode.MERGE if merge else UpdateMode.REPLACE,
                etag=read.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
    except (ResourceExistsError, ResourceModifiedError):
        return False
    return True
