"""The timer trigger: fire a function on its NCRONTAB (or TimeSpan) schedule, in UTC.

Like the host's TimerListener, the next occurrence is computed from the time the previous
invocation finished, so a slow run skips occurrences instead of piling them up, and one
timer never runs twice at once. ``runOnStartup`` fires once when the host starts.
``past_due`` is False for on-time firings; the host only sets it when its schedule
monitor finds a missed occurrence, which a local host without storage state never does
(``fire_timer(..., past_due=True)`` exists to test that path).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from azure.functions.timer import TimerRequest

from devhost.discovery import FunctionSpec
from devhost.ncrontab import CronSchedule, IntervalSchedule, ScheduleNeverOccursError

__all__ = ["TimerRunner"]

Invoke = Callable[[FunctionSpec, Any, str], Awaitable[Any]]


class TimerRunner:
    """Schedules one timer-triggered function."""

    def __init__(
        self,
        *,
        spec: FunctionSpec,
        schedule: CronSchedule | IntervalSchedule,
        run_on_startup: bool,
        invoke: Invoke,
        logger: logging.Logger,
    ) -> None:
        self.spec = spec
        self.schedule = schedule
        self.run_on_startup = run_on_startup
        self.last: datetime | None = None
        self.next: datetime | None = None
        # Known before the first firing, so a TimerRequest always carries "Next".
        with contextlib.suppress(ScheduleNeverOccursError):
            self.next = schedule.next_occurrence(datetime.now(UTC))
        self._invoke = invoke
        self._logger = logger
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"devhost-timer-{self.spec.name}")

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self, grace: float) -> None:
        """Stop scheduling; a running invocation gets ``grace`` seconds to finish."""
        self._stopping.set()
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=grace)
        if not done:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def request(self, *, past_due: bool) -> TimerRequest:
        """The TimerRequest the worker would build (ScheduleStatus as with useMonitor)."""
        now = datetime.now(UTC)
        status: dict[str, str] = {"LastUpdated": now.isoformat()}
        if self.last is not None:
            status["Last"] = self.last.isoformat()
        if self.next is not None:
            status["Next"] = self.next.isoformat()
        return TimerRequest(past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True})

    async def fire(self, *, past_due: bool, reason: str) -> None:
        """Invoke now; the function's exception propagates (after being logged)."""
        async with self._lock:
            try:
                await self._invoke(self.spec, self.request(past_due=past_due), reason)
            finally:
                self.last = datetime.now(UTC)

    async def _fire_logged(self, reason: str) -> None:
        # The invoker logged the failure; the schedule goes on.
        with contextlib.suppress(Exception):
            await self.fire(past_due=False, reason=reason)

    async def _loop(self) -> None:
        if self.run_on_startup:
            await self._fire_logged(f"Timer fired at {datetime.now(UTC).isoformat()} (RunOnStartup)")
        while not self._stopping.is_set():
            try:
                self.next = self.schedule.next_occurrence(datetime.now(UTC))
            except ScheduleNeverOccursError as exc:
                self._logger.warning("timer %s will not run: %s", self.spec.name, exc)
                return
            # The loop clock and the wall clock can disagree by a few ms: re-check.
            while (delay := (self.next - datetime.now(UTC)).total_seconds()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._stopping.is_set():
                    return
            await self._fire_logged(f"Timer fired at {datetime.now(UTC).isoformat()}")
