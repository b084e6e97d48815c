"""Rate budgets shared by every instance: a token bucket per limited resource, kept in one Table row.

Azure Functions on Flex Consumption scales to at least 40 instances and cannot be capped lower
(learn.microsoft.com "Flex Consumption plan hosting"), so a limit the service enforces per tenant
must be kept across instances, not per process. Each budget is a row ``budget|{name}`` in the
``meta`` partition of the ``applications`` table: ``Tokens`` (a float), ``UpdatedAt``,
``PausedUntil`` and ``PausedAt``.

A caller reserves: it reads the row, adds what the rate refilled since ``UpdatedAt`` (up to
``burst``), subtracts its cost and writes the row back under its ETag (a lost race reads again).
``Tokens`` may go below zero: the debt is the queue of callers already promised a later moment,
and a caller's moment is when the refill pays its own cost back (``-Tokens / rate`` seconds
ahead). It sleeps until then without reading the row again, so callers waiting for the budget
cost the table nothing while they wait (this is the generic cell rate algorithm, GCRA, of ITU-T
I.371 in its token-bucket form). An earlier design had every waiter poll the row: 40 instances x
12 jobs polled it about 700 times a second in Azurite, most writes lost the ETag race, and only a
third of the rate was granted. Within one instance, callers take turns at the row (one asyncio
lock), so at most one caller per instance races for it.

A ``429``'s ``Retry-After`` pauses every instance's callers, not one call: ``pause`` sets
``PausedUntil`` and starts the refill again from zero at its end, and callers whose reserved moment
was promised before the pause (``PausedAt``) give it up, wait out the pause and reserve again, so
the budget restarts at its rate instead of releasing the whole queue at once.

The budgets and the limits they keep under (``shared.services``):

* Graph writes per app+tenant: 3,000 per 150 s (Microsoft Graph service-specific throttling
  limits, identity and access). Default 16/s with a burst of 400: at most 2,800 per 150 s.
* ACS email: 100 per hour for a new resource (learn "Azure Communication Services service limits",
  email). Default 90 per hour with a burst of 10: at most 100 in any hour.
* ARM writes: a bucket of 200 refilling 10/s per principal (learn "Understand how Azure Resource
  Manager throttles requests"). Default 8/s with a burst of 150.

The bucket paces when tokens are granted; a call reaches the service a moment later. A limit
stays under a sliding-window quota for calls delayed by up to ``(quota - burst) / rate - window``
seconds: 12.5 s for the Graph default.

When the bucket holds more than a batch, an instance takes ``batch`` tokens in one write and spends
them within a second of its moment; unspent ones lapse, which keeps the bound (burst + rate x
window, plus at most one second of rate). A caller waits for its moment up to ``max_wait_seconds``;
when the moment is further away, ``acquire`` reserves nothing and raises ``ThrottledError`` with the
wait as ``retry_after``, and the caller's one retry layer decides.
"""

from __future__ import annotations

import asyncio
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
HOLD = timedelta(seconds=1)
# The longest wait after a lost race before reading the row again.
RACE_BACKOFF_CAP = 1.0
# Attempts to record a pause before giving up (each lost race re-reads the row).
CONTENTION_ATTEMPTS = 30


@dataclass(frozen=True)
class Promise:
    """A reservation: made at ``granted``, good from ``moment`` (both the instance's clock)."""

    granted: datetime
    moment: datetime


@dataclass(frozen=True)
class Limit:
    """``rate_per_second`` tokens refill continuously, up to ``burst``."""

    rate_per_second: float
    burst: float


def graph_write_limit(rate_per_second: float) -> Limit:
    """The Graph write budget's limit at ``rate_per_second``: its burst plus 151 s of refill (the
    150 s window and a second of held tokens) stays within Graph's 3,000 writes per 150 s per app
    and tenant (learn.microsoft.com/graph/throttling-limits, identity and access)."""
    return Limit(rate_per_second, min(25 * rate_per_second, 3000 - 151 * rate_per_second))


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
        # Tokens taken from the shared row in one write and spent here from the promised moment
        # until HOLD after it (fewer round trips per call; unspent ones lapse: no instance hoards).
        self._batch = max(1, batch)
        self._held = 0.0
        self._promise: Promise | None = None
        self._table = table
        self._limit = limit
        self._clock = clock
        self._sleep = sleep
        self._max_wait = max_wait_seconds
        self._row_key = f"budget|{name}"
        self._turn = asyncio.Lock()  # one caller of this instance at the shared row at a time
        self._races_lost = 0  # in a row, by this instance: how long it backs off before the next

    async def acquire(self, cost: float = 1.0) -> None:
        """Take ``cost`` tokens, waiting for the refill (or a pause) up to ``max_wait_seconds``.

        Raises ``ThrottledError`` (``retry_after``: the wait still needed) beyond that.
        """
        waited = 0.0
        while True:
            promise: Promise | float | None = self._spend_held(cost)
            if promise is None:
                async with self._turn:
                    # Another caller here may have taken a batch while this one waited its turn.
                    promise = self._spend_held(cost) or await self._reserve(cost, waited)
            if isinstance(promise, float):
                await self._sleep(promise)  # paused: try again after it
                waited += promise
                continue
            wait = (promise.moment - self._clock()).total_seconds()
            if wait <= 0:
                return
            await self._sleep(wait)
            waited += wait
            # A pause recorded while this caller slept cancels its moment (see the module docstring).
            forfeited, pause_wait = await self._forfeited(promise.granted)
            if not forfeited:
                return
            if self._promise is promise:
                self._held = 0.0  # the batch's other tokens were promised before the pause too
            if waited + pause_wait > self._max_wait:
                raise self._throttled(pause_wait)
            await self._sleep(pause_wait)
            waited += pause_wait

    def _spend_held(self, cost: float) -> Promise | None:
        """One of the tokens this instance took in a batch, while they last."""
        now = self._clock()
        if self._held < cost or self._promise is None or now >= self._promise.moment + HOLD:
            return None
        self._held -= cost
        return self._promise

    async def _reserve(self, cost: float, waited: float) -> Promise | float:
        """Read the row and write it back less the cost: the caller's promised moment, or the
        seconds to wait before trying again (a pause). Called in this instance's turn."""
        while True:
            promise = await self._try_reserve(cost, waited)
            if promise is not None:
                self._races_lost = 0
                return promise
            # Lost a race to another instance: read again after a backoff that doubles with each
            # race this instance loses, slept in its turn, so many instances arriving at once space
            # themselves out instead of racing every round.
            backoff = random.uniform(0.005, min(RACE_BACKOFF_CAP, 0.02 * 2**self._races_lost))  # noqa: S311
            self._races_lost += 1
            await self._sleep(backoff)
            waited += backoff

    async def _try_reserve(self, cost: float, waited: float) -> Promise | float | None:
        """One read and at most one write; None when another instance wrote the row first."""
        self._held = 0.0
        entity = await self._read()
        now = self._clock()
        tokens, paused_until, _ = self._refilled(entity, now)
        if paused_until is not None and paused_until > now:
            # Spread the wake-ups of every paused caller over a little more than the pause.
            wait = (paused_until - now).total_seconds() * random.uniform(1.0, 1.2)  # noqa: S311
            if waited + wait > self._max_wait:
                raise self._throttled(wait)
            return wait
        # A batch only from surplus: tokens reserved ahead and then not spent would delay others.
        take = float(self._batch) * cost if tokens >= float(self._batch) * cost else cost
        wait = max(0.0, (take - tokens) / self._limit.rate_per_second)
        if waited + wait > self._max_wait:
            raise self._throttled(wait)
        if not await self._write(entity, tokens - take, now, entity_pause(entity)):
            return None
        self._held = take - cost
        self._promise = Promise(granted=now, moment=now + timedelta(seconds=wait))
        return self._promise

    async def _forfeited(self, granted: datetime) -> tuple[bool, float]:
        """Whether a pause was recorded after ``granted``, and how long it still holds (jittered)."""
        entity = await self._read()
        _, paused_until, paused_at = self._refilled(entity, self._clock())
        if paused_at is None or paused_at <= granted:
            return False, 0.0
        remaining = 0.0 if paused_until is None else (paused_until - self._clock()).total_seconds()
        return True, max(0.0, remaining) * random.uniform(1.0, 1.2)  # noqa: S311

    def _throttled(self, wait: float) -> ThrottledError:
        return ThrottledError(
            f"The shared {self.name} budget is exhausted; try again in {wait:.0f} s",
            retry_after=wait,
            service="budget",
            budget=self.name,
        )

    async def pause(self, seconds: float) -> None:
        """Pause every caller of this budget for ``seconds`` (a 429's ``Retry-After``); the
        refill starts again from zero when the pause ends, and moments promised before it lapse."""
        self._held = 0.0
        for _ in range(CONTENTION_ATTEMPTS):
            entity = await self._read()
            now = self._clock()
            tokens, paused_until, _ = self._refilled(entity, now)
            until = now + timedelta(seconds=seconds)
            if paused_until is not None and paused_until >= until:
                return
            # UpdatedAt at the pause's end: nothing refills before it (``_refilled``).
            if await self._write(entity, 0.0, until, (until, now)):
                logger.warning(
                    "budget %s paused for %.0f s after a 429",
                    self.name,
                    seconds,
                    extra={"event": "budget.paused", "budget": self.name, "seconds": seconds},
                )
                return

    def _refilled(self, entity: Any, now: datetime) -> tuple[float, datetime | None, datetime | None]:
        """``(tokens now, PausedUntil, PausedAt)``; tokens below zero are moments promised ahead."""
        if entity is None:
            return self._limit.burst, None, None
        updated = entity.get("UpdatedAt")
        tokens = float(entity.get("Tokens") or 0.0)
        if isinstance(updated, datetime):
            elapsed = max(0.0, (now - updated).total_seconds())
            tokens = min(self._limit.burst, tokens + elapsed * self._limit.rate_per_second)
        paused_until, paused_at = entity_pause(entity) or (None, None)
        return tokens, paused_until, paused_at

    async def _read(self) -> Any:
        return await read_row(self._table, META_PARTITION, self._row_key)

    async def _write(
        self, entity: Any, tokens: float, updated: datetime, pause: tuple[datetime, datetime] | None
    ) -> bool:
        """Store the bucket under the ETag read; False when another instance wrote it first."""
        row: dict[str, Any] = {
            "PartitionKey": META_PARTITION,
            "RowKey": self._row_key,
            "Tokens": float(tokens),
            "UpdatedAt": updated,
        }
        if pause is not None:
            row["PausedUntil"], row["PausedAt"] = pause
        return await write_if_unchanged(self._table, row, entity)


def entity_pause(entity: Any) -> tuple[datetime, datetime] | None:
    """The row's last pause as ``(PausedUntil, PausedAt)``; None when it was never paused.

    Rows written before ``PausedAt`` existed count their pause as recorded at its end."""
    if entity is None:
        return None
    until = entity.get("PausedUntil")
    if not isinstance(until, datetime):
        return None
    at = entity.get("PausedAt")
    return until, at if isinstance(at, datetime) else until
