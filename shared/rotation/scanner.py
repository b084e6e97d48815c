"""The 15-minute scan: read only the due index rows and turn each into the right action."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from shared.domain.models import ApplicationStatus, JobReason, LogLevel, PendingRotation, RotationJob
from shared.domain.schedule import Attention, SchedulePolicy, attention_needed, unlogged_settle_at
from shared.errors import ConflictError
from shared.registry import new_rotation_id
from shared.rotation.events import EventRecorder, settle_outcomes
from shared.storage.applications import ApplicationStore, DueApplication, StoredApplication
from shared.storage.queue import RotationQueue

if TYPE_CHECKING:
    from shared.rotation.ports import EventSink

logger = logging.getLogger("rotator.scanner")

# A scan drains the due set page by page; it stops starting new pages after this long, so it ends
# well before the next timer run (15 minutes) and the host's functionTimeout; the rest is due then.
SCAN_TIME_BUDGET_SECONDS = 10 * 60
DUE_PAGE_SIZE = 1000
SCAN_CONCURRENCY = 16


class ThresholdAlerter(Protocol):
    async def threshold_alert(self, stored: StoredApplication, now: datetime) -> bool:
        """Send the "rotation approaching" alert; True once it is sent (or nobody is to be told)."""
        ...


class LogOnlyAlerter:
    """Records the alert in the rotation log when email is not configured."""

    def __init__(self, events: EventRecorder) -> None:
        self._events = events

    async def threshold_alert(self, stored: StoredApplication, now: datetime) -> bool:
        await self._events.record(
            stored.app_id,
            None,
            "alert.threshold",
            "Rotation is approaching (email is not configured)",
            level=LogLevel.WARNING,
        )
        return True


@dataclass
class ScanReport:
    rows_read: int = 0
    enqueued: dict[str, int] = field(default_factory=dict)
    alerts: int = 0
    # Rows whose outcomes the scan wrote to the log (``unlogged_settle_at``).
    settled: int = 0
    skipped: int = 0
    duration_ms: int = 0
    truncated: bool = False  # the time budget ran out before the due set was drained


class Scanner:
    def __init__(
        self,
        applications: ApplicationStore,
        queue: RotationQueue,
        policy: SchedulePolicy,
        alerter: ThresholdAlerter,
        clock: Callable[[], datetime],
        *,
        events: EventSink,
        time_budget_seconds: float = SCAN_TIME_BUDGET_SECONDS,
    ) -> None:
        """``events``: where the outcomes a row still holds are written (``unlogged_settle_at``)."""
        self._events = events
        self._time_budget = time_budget_seconds
        self._applications = applications
        self._queue = queue
        self._policy = policy
        self._alerter = alerter
        self._clock = clock

    async def scan(self) -> ScanReport:
        started = time.monotonic()
        now = self._clock()
        report = ScanReport()
        # A few at a time: each is three storage round trips, and one scan may meet thousands.
        limit = asyncio.Semaphore(SCAN_CONCURRENCY)
        attended: set[str] = set()  # an application may have more than one due row (its store's docs)

        async def attend(item: DueApplication) -> None:
            async with limit:
                try:
                    await self._attend(item, now, report, attended)
                except Exception as error:  # noqa: BLE001 - one bad row must not stop the scan
                    report.skipped += 1
                    logger.error("scan of %s failed: %s", item.app_id, type(error).__name__)

        async for batch in self._applications.due_batches(now, DUE_PAGE_SIZE):
            report.rows_read += len(batch)
            await asyncio.gather(*(attend(item) for item in batch))
            if time.monotonic() - started > self._time_budget:
                report.truncated = True
                logger.warning(
                    "scan stopped after its time budget; the remaining due rows wait for the next run"
                )
                break
        report.duration_ms = int((time.monotonic() - started) * 1000)
        logger.info(
            "scan.completed: %d due rows read, %s enqueued, %d alerts, %d left as they were",
            report.rows_read,
            report.enqueued,
            report.alerts,
            report.skipped,
            extra={
                "event": "scan.completed",
                "rowsRead": report.rows_read,
                "enqueued": sum(report.enqueued.values()),
                "settled": report.settled,
                # Rows read and left as they were: mostly jobs still waiting in the queue, whose
                # index row stays early until the job's last write moves it.
                "skipped": report.skipped,
                "durationMs": report.duration_ms,
                "truncated": report.truncated,
            },
        )
        return report

    async def _attend(
        self, item: DueApplication, now: datetime, report: ScanReport, attended: set[str]
    ) -> None:
        app_id = item.app_id
        stored = await self._applications.find(app_id)
        if await self._applications.settle_due_row(item, stored, now) or stored is None or app_id in attended:
            report.skipped += 1
            return
        attended.add(app_id)  # no await between the check and this: one attend per application
        settle_at = unlogged_settle_at(stored.status, self._policy)
        settling = settle_at is not None and now >= settle_at
        if settling:
            # The job that ended these rotations was given up before the log took their outcomes.
            settled = await settle_outcomes(self._events, self._applications, stored, now)
            report.settled += 1
            if settled is None:
                return
            stored = settled
        attention = attention_needed(stored.config, stored.status, self._policy, now)
        if attention == Attention.NOTHING:
            if not settling:
                report.skipped += 1
            return
        if attention == Attention.ALERT:
            if await self._alerter.threshold_alert(stored, now):
                report.alerts += 1
                status = stored.status.model_copy(
                    update={"threshold_alert_sent_for": stored.status.current_key_id}
                )
                await self._save(stored, status, now)
            return
        status = stored.status
        claim = status.in_progress
        if attention == Attention.ROTATE:
            # Recorded as pending first (joined by any manual request meanwhile), then queued; a crash
            # in between leaves a pending rotation the next scan requeues.
            pending = PendingRotation(
                rotation_id=new_rotation_id(), requested_at=now, reason=JobReason.SCHEDULED
            )
            if not await self._save(
                stored, status.model_copy(update={"pending": pending, "enqueued_at": now}), now
            ):
                report.skipped += 1
                return
            job = self._job(app_id, pending.rotation_id, JobReason.SCHEDULED, now, status.generation)
        elif attention == Attention.REQUEUE and status.pending is not None:
            pending = status.pending
            if not await self._save(stored, status.model_copy(update={"enqueued_at": now}), now):
                report.skipped += 1
                return
            job = self._job(
                app_id, pending.rotation_id, pending.reason, now, status.generation, pending.compromised
            )
        else:
            # A takeover resumes the dead worker's rotation under its own id.
            rotation_id = (
                claim.rotation_id if attention == Attention.TAKE_OVER and claim else new_rotation_id()
            )
            job = self._job(app_id, rotation_id, JobReason.RETRY, now, status.generation)
            if attention != Attention.TAKE_OVER:
                # Enqueued first, then marked: a crash in between only risks a duplicate job, which
                # the claim absorbs; the mark stops the next scans from enqueueing it again.
                await self._queue.enqueue(job)
                report.enqueued[attention.value] = report.enqueued.get(attention.value, 0) + 1
                await self._save(stored, status.model_copy(update={"enqueued_at": now}), now)
                return
        await self._queue.enqueue(job)
        report.enqueued[attention.value] = report.enqueued.get(attention.value, 0) + 1

    @staticmethod
    def _job(
        app_id: str,
        rotation_id: str,
        reason: JobReason,
        now: datetime,
        generation: int,
        compromised: bool = False,
    ) -> RotationJob:
        return RotationJob(
            app_id=app_id,
            rotation_id=rotation_id,
            reason=reason,
            requested_at=now,
            compromised=compromised,
            generation=generation,
        )

    async def _save(self, stored: StoredApplication, status: ApplicationStatus, now: datetime) -> bool:
        try:
            await self._applications.save(stored, stored.config, status, now)
            return True
        except ConflictError:
            return False  # changed meanwhile (a worker claimed it): nothing to mark
