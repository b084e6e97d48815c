"""Rate budgets shared by every instance: a token bucket per limited resource, kept in one Table row.

Azure Functions on Flex Consumption scales to at least 40 instances and cannot be capped lower
(learn.microsoft.com "Flex Consumption plan hosting"), so a limit the service enforces per tenant
must be kept across instances, not per process. Each budget is a row ``budget|{name}`` in the
``meta`` partition of the ``applications`` table: ``Tokens`` (a float), ``UpdatedAt`` and
``PausedUntil``. Taking a token reads the row, adds what the rate refilled since ``UpdatedAt`` (up
to ``burst``) and writes it back under the row's ETag; a lost race reads again. A ``429``'s
``Retry-After`` sets ``PausedUntil``, which pauses every instance's callers, not one call.

The budgets and the limits they keep under (``Budgets``):

* Graph writes per app+tenant: 3,000 per 150 s (Microsoft Graph service-specific throttling
  limits, identity and access). Default 16/s with a burst of 400: at most 2,800 per 150 s.
* ACS email: 100 per hour for a new resource (learn "Azure Communication Services service limits",
  email). Default 90 per hour with a burst of 10: at most 100 in any hour.
* ARM writes: a bucket of 200 refilling 10/s per principal (learn "Understand how Azure Resource
  Manager throttles requests"). Default 8/s with a burst of 150.

The bucket paces when tokens are granted; a call reaches the service a moment later. A limit
stays under a sliding-window quota for calls delayed by up to ``(quota - burst) / rate - window``
seconds: 12.5 s for the Graph default.

An instance may take a few tokens in one write (``batch``) and spend them within a second; unspent
ones lapse, which keeps the bound (burst + rate x window, plus at most one second of rate).
A caller waits for its token up to ``max_wait_seconds``; beyond that ``acquire`` raises
``ThrottledError`` with the wait as ``retry_after``, and the caller's one retry layer decides.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.errors import ThrottledError
from shared.storage.conditional import read_row, write_if_unchanged

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

logger = logging.getLogger("rotator.budget")

META_PARTITION = "meta"
# How long tokens taken in a batch may be spent locally before they lapse.
HOLD_SECONDS = 1.0
# Attempts to record a pause before giving up (each lost race re-reads the row).
CONTENTION_ATTEMPTS = 30


@dataclass(frozen=True)
class Limit:
    """``rate_per_second`` tokens refill continuously, up to ``burst``."""

    rate_per_second: float
    burst: float


class RateBudget:
    """One shared token bucket (see the module docstring)."""

    def __init__(
        self,
        table: TableClient,
        name: str,
        limit: Limit,
        *,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]],
        max_wait_seconds: float = 60.0,
        batch: int = 1,
    ) -> None:
        self.name = name
        # Tokens taken from the shared row in one write and spent here within HOLD_SECONDS (fewer
        # round trips per call; unspent ones lapse, so no instance hoards).
        self._batch = max(1, batch)
        self._held = 0.0
        self._held_until: datetime | None = None
        self._table = table
        self._limit = limit
        self._clock = clock
        self._sleep = sleep
        self._max_wait = max_wait_seconds
        self._row_key = f"budget|{name}"

    async def acquire(self, cost: float = 1.0) -> None:
        """Take ``cost`` tokens, waiting for the refill (or a pause) up to ``max_wait_seconds``.

        Raises ``ThrottledError`` (``retry_after``: the wait still needed) beyond that.
        """
        now = self._clock()
        if self._held >= cost and self._held_until is not None and now < self._held_until:
            self._held -= cost
            return
        self._held = 0.0
        waited = 0.0
        while True:
            entity = await self._read()
            now = self._clock()
            tokens, paused_until = self._refilled(entity, now)
            if paused_until is not None and paused_until > now:
                # Spread the wake-ups of every paused caller over a little more than the pause.
                wait = (paused_until - now).total_seconds() * random.uniform(1.0, 1.2)  # noqa: S311
            elif tokens >= cost:
                take = max(cost, min(float(self._batch) * cost, tokens // cost * cost))
                if await self._write(entity, tokens - take, now, paused_until):
                    self._held = take - cost
                    self._held_until = now + timedelta(seconds=HOLD_SECONDS)
                    return
                wait = random.uniform(0.005, 0.05)  # noqa: S311 - lost a race: read again soon
            else:
                wait = (cost - tokens) / self._limit.rate_per_second * random.uniform(1.0, 1.5)  # noqa: S311
            if waited + wait > self._max_wait:
                raise ThrottledError(
                    f"The shared {self.name} budget is exhausted; try again in {wait:.0f} s",
                    retry_after=wait,
                    service="budget",
                    budget=self.name,
                )
            await self._sleep(wait)
            waited += wait

    async def pause(self, seconds: float) -> None:
        """Pause every caller of this budget for ``seconds`` (a 429's ``Retry-After``)."""
        self._held = 0.0
        for _ in range(CONTENTION_ATTEMPTS):
            entity = await self._read()
            now = self._clock()
            tokens, paused_until = self._refilled(entity, now)
            until = now + timedelta(seconds=seconds)
            if paused_until is not None and paused_until >= until:
                return
            if await self._write(entity, tokens, now, until):
                logger.warning(
                    "budget %s paused for %.0f s after a 429",
                    self.name,
                    seconds,
                    extra={"event": "budget.paused", "budget": self.name, "seconds": seconds},
                )
                return

    def _refilled(self, entity: Any, now: datetime) -> tuple[float, datetime | None]:
        if entity is None:
            return self._limit.burst, None
        updated = entity.get("UpdatedAt")
        tokens = float(entity.get("Tokens") or 0.0)
        if isinstance(updated, datetime):
            elapsed = max(0.0, (now - updated).total_seconds())
            tokens = min(self._limit.burst, tokens + elapsed * self._limit.rate_per_second)
        paused = entity.get("PausedUntil")
        return tokens, paused if isinstance(paused, datetime) else None

    async def _read(self) -> Any:
        return await read_row(self._table, META_PARTITION, self._row_key)

    async def _write(self, entity: Any, tokens: float, now: datetime, paused_until: datetime | None) -> bool:
        """Store the bucket under the ETag read; False when another instance wrote it first."""
        row: dict[str, Any] = {
            "PartitionKey": META_PARTITION,
            "RowKey": self._row_key,
            "Tokens": float(tokens),
            "UpdatedAt": now,
        }
        if paused_until is not None:
            row["PausedUntil"] = paused_until
        return await write_if_unchanged(self._table, row, entity)
