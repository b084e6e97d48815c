"""One timer run: the scan and the expiry report side by side (issue 11: the timer's wall time),
and a failing report never fails the scan."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.rotation.scanner import ScanReport
from shared.triggers.timer import timer_pass


class FakeScanner:
    def __init__(self, report_started: asyncio.Event) -> None:
        self._report_started = report_started

    async def scan(self) -> ScanReport:
        # Returns only once the report has started: a run that scanned first, then reported,
        # would wait here for ever.
        await self._report_started.wait()
        return ScanReport(rows_read=3, enqueued={"rotate": 2})


class FakeServices:
    def __init__(self, report_started: asyncio.Event) -> None:
        self.scanner = FakeScanner(report_started)
        self.applications = object()
        self.expiry_index = object()

    def clock(self) -> datetime:
        return datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize("report_fails", [False, True])
def test_the_scan_and_the_report_run_side_by_side(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, report_fails: bool
) -> None:
    async def scenario() -> ScanReport:
        started = asyncio.Event()

        async def report(applications: Any, index: Any, now: datetime) -> int:
            started.set()
            await asyncio.sleep(0)
            if report_fails:
                raise RuntimeError("table unavailable")
            return 5

        monkeypatch.setattr("shared.observability.report_expiring_secrets", report)
        return await asyncio.wait_for(timer_pass(FakeServices(started)), timeout=5)  # type: ignore[arg-type]

    with caplog.at_level(logging.WARNING, logger="rotator.timer"):
        scanned = asyncio.run(scenario())
    assert scanned.rows_read == 3 and scanned.enqueued == {"rotate": 2}
    failed = [r for r in caplog.records if "expiry report failed" in r.getMessage()]
    assert len(failed) == (1 if report_fails else 0)
