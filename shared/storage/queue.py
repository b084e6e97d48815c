"""The rotation queue. Messages are base64 JSON, as the Functions host reads them by default."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.storage.queue.aio import QueueClient

    from shared.domain.models import RotationJob

QUEUE_NAME = "rotations"
POISON_QUEUE_NAME = f"{QUEUE_NAME}-poison"


class RotationQueue:
    def __init__(self, queue: QueueClient) -> None:
        self._queue = queue

    async def enqueue(self, job: RotationJob) -> None:
        # The job names what to rotate and why; it never carries a secret.
        await self._queue.send_message(job.model_dump_json(by_alias=True))


def parse_job(body: bytes | str) -> RotationJob:
    """Read a job from a queue message body (already base64-decoded by the host)."""
    from pydantic import ValidationError

    from shared.domain.models import RotationJob

    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        return RotationJob.model_validate_json(text, strict=False)
    except ValidationError as error:
        # Name the fields only: the host moves the message to the poison queue for inspection.
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in error.errors())
        raise ValueError(f"Malformed rotation job (fields: {fields})") from None
