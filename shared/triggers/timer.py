"""Timer trigger: every 15 minutes, enqueue the rotations that are due."""

import logging
from typing import TYPE_CHECKING

import azure.functions as func

from shared.heap import settle_after_first
from shared.services import get_services

if TYPE_CHECKING:
    from shared.rotation.scanner import ScanReport
    from shared.services import Services

bp = func.Blueprint()
logger = logging.getLogger("rotator.timer")

SCHEDULE = "0 */15 * * * *"


@bp.timer_trigger(arg_name="timer", schedule=SCHEDULE, run_on_startup=False, use_monitor=True)
async def scan_due_rotations(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logger.warning("scan is running late (past due)")
    await timer_pass(get_services())
    settle_after_first("scan_due_rotations")


async def timer_pass(services: "Services") -> "ScanReport":
    """One timer run: the scan and the expiry report side by side (independent work: the report
    counts as of two minutes ago, so the scan's writes meanwhile are the next count's changes).
    Returns the scan's report; the expiry report's failure is logged and never fails the scan."""
    import asyncio

    from shared.observability import report_expiring_secrets

    async def report() -> None:
        try:
            await report_expiring_secrets(services.applications, services.expiry_index, services.clock())
        except Exception as error:  # noqa: BLE001 - the expiry report must not fail the scan
            logger.warning("expiry report failed: %s", type(error).__name__)

    scanned, _ = await asyncio.gather(services.scanner.scan(), report())
    return scanned
