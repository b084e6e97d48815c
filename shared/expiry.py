"""The count of registered applications whose secret expires within a window, kept up to date by
reading only what changed, so the timer's cost follows the due work and not the registry's size.

The applications store adds, in the transaction of every write that moved an application's
expiry or changed its rotation state, a ``chg|`` row (``shared.storage.applications``); while a
rotation job is outstanding its change is held back and recorded by the write that ends the job,
so a rotation is counted once it has ended. The
expiry index (``shared.storage.expiry_index``) holds one row per application with an expiry, as of
the last measurement; only the measurement writes it. A measurement as of ``T'`` from the last
one as of ``T``, with window ``W``:

* an application written in (T, T'] contributes ``[last new expiry <= T'+W] - [first old expiry
  <= T+W]``, read from its ``chg|`` rows, and its index row moves to its last new expiry;
* any other application's expiry did not move, so it entered the window exactly when its index
  row lies in (T+W, T'+W]: a key range (an expired secret stays counted: the count is "expires
  within W days or has expired").

Rows read: the changes since the last measurement and the secrets that entered the window, both
about the number of rotations in the interval. The first measurement (no stored count, another
window, or a count kept before the index had its own table: ``LAYOUT``) walks the registry once,
rebuilds the index from it and deletes the rows the older layout kept in the registry.

A measurement that fails before its count is recorded is repeated from the same changes: the index
moves are idempotent, and the changes are deleted only once the count that consumed them is
recorded.

Measurements are taken ``SETTLE`` behind the clock, so a write whose transaction was still in
flight (its ``chg|`` row stamped earlier than it commits) is not skipped. The first walk counts the
registry as of its start; an application whose write was in flight at that moment may be off by
one until the window is changed (which walks again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.storage.applications import ApplicationStore, ExpiryRow, expiry_state
from shared.storage.expiry_index import ExpiryIndex, ExpiryMove

SETTLE = timedelta(minutes=2)
TASK = "expiry-report"
# Recorded with each count (``Layout``): 2, the expiry index in its own table. A count recorded
# without it was kept with the index in the registry table, so the next measurement walks.
LAYOUT = 2


@dataclass(frozen=True)
class Expiring:
    """An application in the window, for its ``secret.expiring`` record."""

    row: ExpiryRow
    at_risk: bool


@dataclass
class Measurement:
    count: int
    as_of: datetime
    within_days: int
    rows_read: int = 0
    walked: bool = False  # the first measurement: the registry was read once
    # Entered the window, or written while in it (left it included): one record each.
    entered: list[Expiring] = field(default_factory=list)
    # The ``chg|`` rows this measurement consumed (and, after a walk, the registry's legacy ``exp|``
    # rows): deleted once its count is recorded (a failure in between leaves rows older than the
    # recorded time, which are never read again).
    consumed: list[str] = field(default_factory=list)


def at_risk(row: ExpiryRow, now: datetime) -> bool:
    """Will not be rotated in time by itself: rotation off or app disabled, last rotation failed,
    or already expired."""
    return (
        not row.rotation_scheduled
        or row.last_result == "failed"
        or (row.expires_at is not None and row.expires_at <= now)
    )


async def measure(
    applications: ApplicationStore,
    index: ExpiryIndex,
    now: datetime,
    within_days: int,
    last: dict[str, Any],
) -> Measurement:
    """The count as of ``now - SETTLE``, from ``last`` (what the previous turn recorded, which
    must include ``LAYOUT`` as ``Layout`` next time)."""
    window = timedelta(days=within_days)
    as_of = now - SETTLE
    previous_as_of, previous_count = last.get("AsOf"), last.get("Count")
    if (
        not isinstance(previous_as_of, datetime)
        or not isinstance(previous_count, int)
        or last.get("WithinDays") != within_days
        or last.get("Layout") != LAYOUT
        or previous_as_of >= as_of
    ):
        # The walk reads the registry as it is now: later writes (stamped after now) are changes.
        return await _walk(applications, index, now, now, within_days)
    changes = await applications.expiry_changes(previous_as_of, as_of)
    first_old: dict[str, datetime | None] = {}
    latest: dict[str, ExpiryRow] = {}
    for change in sorted(changes, key=lambda change: (change.new.app_id, change.sequence)):
        first_old.setdefault(change.new.app_id, change.old_expires_at)
        latest[change.new.app_id] = change.new
    count = previous_count
    entered: list[Expiring] = []
    for app_id, new in latest.items():
        old = first_old[app_id]
        was_in = old is not None and old <= previous_as_of + window
        now_in = new.expires_at is not None and new.expires_at <= as_of + window
        count += int(now_in) - int(was_in)
        if now_in or was_in:
            # Leaving the window is reported too: the latest record of an app says where it is.
            entered.append(Expiring(new, now_in and at_risk(new, now)))
    # The index as of ``as_of`` before it is read: the changed apps' rows move (idempotent).
    await index.apply(
        ExpiryMove(app_id, first_old[app_id], new if new.expires_at is not None else None)
        for app_id, new in latest.items()
    )
    crossing = await index.expiring_between(previous_as_of + window, as_of + window)
    for row in crossing:
        if row.app_id not in latest:
            count += 1
            entered.append(Expiring(row, at_risk(row, now)))
    consumed = [change.key for change in changes]
    return Measurement(count, as_of, within_days, len(changes) + len(crossing), False, entered, consumed)


async def _walk(
    applications: ApplicationStore, index: ExpiryIndex, now: datetime, as_of: datetime, within_days: int
) -> Measurement:
    deadline = as_of + timedelta(days=within_days)
    measurement = Measurement(0, as_of, within_days, walked=True)
    rows: dict[str, ExpiryRow] = {}
    token: str | None = None
    while True:
        page = await applications.list_page(1000, token)
        measurement.rows_read += len(page.items)
        for stored in page.items:
            # As the app's last change row recorded it: the changes that follow are relative to
            # that (a job outstanding holds its change back until it ends).
            expires_at = stored.recorded_expires_at
            if expires_at is None:
                continue
            row = ExpiryRow(
                stored.app_id,
                stored.config.display_name,
                expires_at,
                stored.expiry_state or expiry_state(stored.config, stored.status),
            )
            rows[stored.app_id] = row
            if expires_at <= deadline:
                measurement.count += 1
                measurement.entered.append(Expiring(row, at_risk(row, now)))
        token = page.continuation_token
        if not token:
            break
    measurement.rows_read += await index.rebuild(rows)
    # The index as an older version kept it, in the registry table: read by nothing now.
    legacy = await applications.legacy_expiry_keys()
    measurement.rows_read += len(legacy)
    measurement.consumed.extend(legacy)
    return measurement
