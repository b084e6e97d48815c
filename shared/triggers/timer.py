"""Timer trigger: every 15 minutes, enqueue the rotations that are due."""

import logging

import azure.functions as func

from shared.heap import settle_after_first
from shared.services import get_services

bp = func.Blueprint()
logger = logging.getLogger("rotator.timer")

SCHEDULE = "0 */15 * * * *"


@bp.timer_trigger(arg_name="timer", schedule=SCHEDULE, run_on_startup=False, use_monitor=True)
async def scan_due_rotations(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logger.warning("scan is running late (past due)")
    services = get_services()
    await services.scanner.scan()
    try:
        from shared.observability import report_expiring_secrets

        await report_expiring_secrets(services.applications, services.clock())
    except Exception as error:  # noqa: BLE001 - the expiry report must not fail the scan
        logger.warning("expiry report failed: %s", type(error).__name__)
    settle_after_first("scan_due_rotations")
