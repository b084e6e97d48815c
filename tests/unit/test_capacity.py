"""Issue 11: the defaults leave room for 10,000 applications expiring in the same hour.

``make bench`` measures it (``scripts/bench_scale.py``: 10,000 due through 40 instances against
Graph's enforced quota); this keeps the defaults it relies on from drifting apart: a change to the
timer, the threshold, the scan's time budget or the Graph write budget that would leave the last
of 10,000 rotating after its secret expired fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from devhost.ncrontab import parse_schedule
from shared.config import load_settings
from shared.domain.models import RotationSettings
from shared.rotation.scanner import SCAN_TIME_BUDGET_SECONDS
from shared.storage.budget import graph_write_limit
from shared.triggers.timer import SCHEDULE
from tests.conftest import base_environment

APPLICATIONS = 10_000
WRITES_PER_ROTATION = 2  # addPassword, then the removal of the credential before the previous one


def test_ten_thousand_expiring_in_the_same_hour_rotate_before_expiry_with_the_defaults() -> None:
    settings = load_settings(base_environment("UseDevelopmentStorage=true"))
    limit = graph_write_limit(settings.graph_writes_per_second)
    schedule = parse_schedule(SCHEDULE)
    first = schedule.next_occurrence(datetime(2026, 12, 1, tzinfo=UTC))
    timer_period = schedule.next_occurrence(first) - first
    threshold = timedelta(hours=RotationSettings().update_threshold_hours)

    # Worst case, taken one after the other although they overlap: the first scan comes a whole
    # timer period after they became due, spends its whole time budget, and only then do the
    # rotations start, paced by the shared budget after its burst.
    writes = APPLICATIONS * WRITES_PER_ROTATION
    drain = timedelta(seconds=(writes - limit.burst) / limit.rate_per_second)
    last_rotated = timer_period + timedelta(seconds=SCAN_TIME_BUDGET_SECONDS) + drain
    assert last_rotated < threshold, (timer_period, drain)
    # ...and the budget itself stays within Graph's 3,000 writes per 150 s (with its held second).
    assert limit.burst + limit.rate_per_second * 151 <= 3000
