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


@contextlib.asynccontextmanager
async def fresh_table(connection_string: str) -> AsyncIterator[Any]:
    """A new table on Azurite, removed afterwards."""
    from azure.data.tables.aio import TableServiceClient

    service = TableServiceClient.from_connection_string(connection_string)
    name = "store" + uuid.uuid4().hex[:12]
    table = await service.create_table(name)
    try:
        yield table
    finally:
        await service.delete_table(name)
        await table.close()
        await service.close()
