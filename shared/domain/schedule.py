"""Schedule maths, in one place and pure: the clock is always passed in.

The timer never scans every application. Each schedulable application has one "attention time":
the moment the timer must next look at it. Storage keeps an index ordered by that time, so a scan
reads only the rows whose time has come (see ``shared.storage.applications``). This module decides
what that time is and what the timer should do when it arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from shared.domain.models import ApplicationConfig, ApplicationStatus

# Sorts before any real time: "look at it now" for an application that was never rotated.
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def next_update_at(config: ApplicationConfig, status: ApplicationStatus) -> datetime | None:
    """When the next secret should be created: threshold hours before the current one expires."""
    if status.expires_at is None:
        return None
    return status.expires_at - timedelta(hours=config.rotation.update_threshold_hours)


def threshold_alert_at(config: ApplicationConfig, status: ApplicationStatus) -> datetime | None:
    """When to warn that rotation is approaching, or None if no (further) alert is due."""
    days = config.notifications.threshold_alert_days
    next_update = next_update_at(config, status)
    if days is None or next_update is None or not config.notifications.recipients:
        return None
    if status.threshold_alert_sent_for == status.current_key_id:
        return None
    return next_update - timedelta(days=days)


# After a failed scheduled rotation, the next one waits this long, doubling per consecutive failure
# up to the cap: a rotation that fails for a lasting reason must not create credentials every scan.
FAILURE_BACKOFF = timedelta(minutes=15)
FAILURE_BACKOFF_CAP = timedelta(hours=2)


def failure_retry_at(status: ApplicationStatus) -> datetime | None:
    """When a scheduled rotation may try again after ``consecutiveFailures`` failures in a row."""
    if status.consecutive_failures <= 0 or status.last_error is None:
        return None
    backoff = min(FAILURE_BACKOFF * (1 << (min(status.consecutive_failures, 10) - 1)), FAILURE_BACKOFF_CAP)
    return status.last_error.at + backoff


def scheduled_at(config: ApplicationConfig, status: ApplicationStatus) -> datetime:
    """When the next scheduled rotation may start (EPOCH: now, for an app never rotated)."""
    moments = [next_update_at(config, status) or EPOCH]
    retry = failure_retry_at(status)
    if retry is not None:
        moments.append(retry)
    return max(moments)


def shown_next_update(config: ApplicationConfig, status: ApplicationStatus, now: datetime) -> datetime | None:
    """What the API shows as ``nextUpdateAt``: when the next scheduled rotation may start, ``now``
    when it is due already, and None (the field is left out) when nothing is scheduled."""
    if not config.is_schedulable:
        return None
    return max(scheduled_at(config, status), now)


def is_due(config: ApplicationConfig, status: ApplicationStatus, now: datetime) -> bool:
    """Whether a scheduled rotation should start now."""
    if not config.is_schedulable:
        return False
    return now >= scheduled_at(config, status)


class Attention(StrEnum):
    ROTATE = "rotate"  # due for a new secret
    TAKE_OVER = "takeOver"  # a claim went stale: the worker died
    REQUEUE = "requeue"  # a job was enqueued long ago and never claimed (lost or poisoned)
    RETRY_INTEGRATIONS = (
        "retryIntegrations"  # maintenance: failed destinations, deferred revocation, clean-up
    )
    RETIRE = "retire"  # the superseded credential has expired: remove it
    ALERT = "alert"  # warn that rotation is approaching
    NOTHING = "nothing"


@dataclass(frozen=True)
class SchedulePolicy:
    claim_timeout: timedelta
    # How long an enqueued, unclaimed job may wait before the timer enqueues another.
    requeue_after: timedelta


def attention_at(
    config: ApplicationConfig, status: ApplicationStatus, policy: SchedulePolicy
) -> datetime | None:
    """The next moment the timer must look at this application, or None to never look.

    A row still holding outcomes the log lacks (``status.unlogged``) is looked at by
    ``unlogged_settle_at`` at the latest, whatever else is due."""
    moment = _attention_at(config, status, policy)
    settle = unlogged_settle_at(status, policy)
    if settle is None:
        return moment
    return settle if moment is None else min(moment, settle)


def unlogged_settle_at(status: ApplicationStatus, policy: SchedulePolicy) -> datetime | None:
    """When the scan writes the outcomes a row still holds for the log (``status.unlogged``),
    None when it holds none: ``requeue_after`` after the oldest. Normally the job that ended the
    rotation writes them at once, or its next delivery does; past that the job was given up
    (moved to the poison queue) and nothing else would read the row before its next rotation."""
    if not status.unlogged:
        return None
    return min(outcome.at for outcome in status.unlogged) + policy.requeue_after


def _attention_at(
    config: ApplicationConfig, status: ApplicationStatus, policy: SchedulePolicy
) -> datetime | None:
    if status.in_progress is not None:
        # Even a disabled app's running rotation must finish or be taken over. From the claim's
        # start, not its renewed expiry: every step renews the claim, and a moving attention time
        # would move the index row with each step (two more writes each). A scan that comes while
        # a renewed claim still holds finds nothing to do; the next one looks again.
        claim = status.in_progress
        return min(claim.expires_at, claim.claimed_at + policy.claim_timeout)
    if status.pending is not None:
        # A requested rotation whose job may be lost: requeue it (at once if it was never queued).
        return status.enqueued_at + policy.requeue_after if status.enqueued_at else EPOCH
    if status.owes_removals() and status.retry_at is not None and not config.is_schedulable:
        # Credentials to remove (``owes_removals``), even while the application is disabled.
        return status.retry_at
    if not config.is_schedulable:
        return None
    if status.enqueued_at is not None:
        return status.enqueued_at + policy.requeue_after
    candidates = [scheduled_at(config, status)]
    for moment in (status.retry_at, status.retire_at):
        if moment is not None:
            candidates.append(moment)
    alert = threshold_alert_at(config, status)
    if alert is not None:
        candidates.append(alert)
    return min(candidates)


def attention_needed(
    config: ApplicationConfig, status: ApplicationStatus, policy: SchedulePolicy, now: datetime
) -> Attention:
    """What the timer should do for an application whose attention time has come."""
    if status.in_progress is not None:
        return Attention.TAKE_OVER if now >= status.in_progress.expires_at else Attention.NOTHING
    if status.pending is not None:
        waited = status.enqueued_at is None or now >= status.enqueued_at + policy.requeue_after
        return Attention.REQUEUE if waited else Attention.NOTHING
    if status.owes_removals() and status.retry_at is not None and not config.is_schedulable:
        return Attention.RETRY_INTEGRATIONS if now >= status.retry_at else Attention.NOTHING
    if not config.is_schedulable:
        return Attention.NOTHING
    if status.enqueued_at is not None:
        return Attention.REQUEUE if now >= status.enqueued_at + policy.requeue_after else Attention.NOTHING
    if is_due(config, status, now):
        return Attention.ROTATE
    if status.retry_at is not None and now >= status.retry_at:
        return Attention.RETRY_INTEGRATIONS
    if status.retire_at is not None and now >= status.retire_at:
        return Attention.RETIRE
    alert = threshold_alert_at(config, status)
    if alert is not None and now >= alert:
        return Attention.ALERT
    return Attention.NOTHING
