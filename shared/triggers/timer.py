"""Timer trigger: every 15 minutes, enqueue the rotations that are due."""

import logging

import azure.functions as func

from shared.services import get_services

bp = func.Blueprint()
logger = logging.getLogger("rotator.timer")

SCHEDULE = "0 */15 * * * *"


@bp.timer_trigger(arg_name="timer", schedule=SCHEDULE, run_on_startup=False, use_monitor=True)
async def scan_due_rotations(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logger.warning("scan is running late (past due)")
    await get_services().scanner.scan()
