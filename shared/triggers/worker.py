"""Queue trigger: run one rotation job. Raising hands the message back to the host for a retry."""

import logging

import azure.functions as func

from shared.heap import settle_after_first
from shared.services import get_services
from shared.storage.queue import QUEUE_NAME, parse_job

bp = func.Blueprint()
logger = logging.getLogger("rotator.worker")


@bp.queue_trigger(arg_name="message", queue_name=QUEUE_NAME, connection="AzureWebJobsStorage")
async def rotate_secret(message: func.QueueMessage) -> None:
    job = parse_job(message.get_body())
    try:
        outcome = await get_services().engine.handle(job)
    finally:
        settle_after_first("rotate_secret")
    logger.info(
        "job %s for %s: %s (delivery %s)",
        job.rotation_id,
        job.app_id,
        outcome,
        message.dequeue_count,
        extra={
            "event": "job.processed",
            "appId": job.app_id,
            "rotationId": job.rotation_id,
            "outcome": outcome,
        },
    )
