"""What the generated tests of the real ``ApplicationStore`` on Azurite share: a throwaway table,
a wrapper that counts the calls a step makes, the schedule policy and the hypothesis settings."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings

from shared.domain.schedule import SchedulePolicy
from shared.storage.applications import ApplicationStore
from shared.storage.due_index import DueIndex

POLICY = SchedulePolicy(timedelta(minutes=30), timedelta(minutes=30))


def generated(examples: int) -> settings:
    """Hypothesis settings for these tests: ``examples`` cases (each makes real requests, so no
    deadline), the same cases every run unless ``ROTATOR_MODEL_RANDOM=1``."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        derandomize=os.environ.get("ROTATOR_MODEL_RANDOM") != "1",
    )


class CountingTable:
    """The real TableClient, counting calls to the methods named in ``counted``."""

    def __init__(self, table: Any, counted: tuple[str, ...]) -> None:
        self._table = table
        self._counted = counted
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        if name in self._counted:
            self.calls += 1
        return getattr(self._table, name)


# The due index table beside each table ``fresh_table`` made (by its name), for ``store_over``.
_DUE_TABLES: dict[str, Any] = {}


@contextlib.asynccontextmanager
async def fresh_table(connection_string: str) -> AsyncIterator[Any]:
    """A new table on Azurite (and a due index table beside it), removed afterwards."""
    from azure.data.tables.aio import TableServiceClient

    service = TableServiceClient.from_connection_string(connection_string)
    name = "store" + uuid.uuid4().hex[:12]
    table = await service.create_table(name)
    due = _DUE_TABLES[name] = await service.create_table(name + "due")
    try:
        yield table
    finally:
        del _DUE_TABLES[name]
        await service.delete_table(name)
        await service.delete_table(name + "due")
        await table.close()
        await due.close()
        await service.close()


def due_table(table: Any) -> Any:
    """The due index table ``fresh_table`` made beside ``table`` (or a wrapper of it)."""
    return _DUE_TABLES[table.table_name]


def store_over(table: Any, policy: SchedulePolicy = POLICY) -> ApplicationStore:
    """The real store over a ``fresh_table`` table (or a wrapper of it) and its due index table."""
    return ApplicationStore(table, policy, DueIndex(due_table(table)))
