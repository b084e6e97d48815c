"""The registry service: what the configuration API does, free of HTTP.

It validates nothing itself (models are validated at the API edge) and decides everything else:
create-or-replace semantics with ETags, refusing to delete under a running rotation, and turning
a manual refresh into a queued job.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared.domain.models import (
    ApplicationConfig,
    ApplicationState,
    ApplicationStatus,
    JobReason,
    RotationJob,
    RotationLogEntry,
)
from shared.errors import ConflictError
from shared.storage.applications import ApplicationStore, Page, StoredApplication
from shared.storage.queue import RotationQueue
from shared.storage.rotation_log import RotationLogStore


@dataclass(frozen=True)
class PutResult:
    application: StoredApplication
    created: bool


class PreconditionFailed(ConflictError):
    """An If-Match / If-None-Match precondition did not hold."""


def new_rotation_id() -> str:
    return str(uuid.uuid4())


class RegistryService:
    def __init__(
        self,
        applications: ApplicationStore,
        rotation_log: RotationLogStore,
        queue: RotationQueue,
        clock: Callable[[], datetime],
    ) -> None:
        self._applications = applications
        self._log = rotation_log
        self._queue = queue
        self._clock = clock

    async def get(self, app_id: str) -> StoredApplication:
        return await self._applications.get(app_id)

    async def list(self, page_size: int, continuation_token: str | None) -> Page[StoredApplication]:
        return await self._applications.list_page(page_size, continuation_token)

    async def put(self, config: ApplicationConfig, *, if_match: str | None, create_only: bool) -> PutResult:
        """Create, or replace the configuration of, an application. Status is kept on replace."""
        app_id = str(config.app_id)
        now = self._clock()
        current = await self._applications.find(app_id)
        if current is None:
            if if_match is not None and if_match != "*":
                raise PreconditionFailed("Application does not exist; If-Match cannot hold", app_id=app_id)
            created = await self._applications.create(config, ApplicationStatus(), now)
            return PutResult(created, created=True)
        if create_only:
            raise PreconditionFailed("Application already exists (If-None-Match: *)", app_id=app_id)
        if if_match is not None and if_match != "*" and if_match != current.etag:
            raise PreconditionFailed(
                "Application was changed since it was read (stale If-Match)", app_id=app_id
            )
        for _ in range(3):
            try:
                saved = await self._applications.save(current, config, current.status, now)
                break
            except ConflictError:
                if if_match is not None and if_match != "*":
                    raise PreconditionFailed(
                        "Application was changed since it was read (stale If-Match)", app_id=app_id
                    ) from None
                # No precondition asked for: the rotator updated the status meanwhile; apply on top.
                current = await self._applications.get(app_id)
        else:
            raise ConflictError("Application is changing too often; try again", app_id=app_id)
        return PutResult(saved, created=False)

    async def delete(self, app_id: str, *, if_match: str | None) -> None:
        current = await self._applications.get(app_id)
        if if_match is not None and if_match != "*" and if_match != current.etag:
            raise PreconditionFailed(
                "Application was changed since it was read (stale If-Match)", app_id=app_id
            )
        claim = current.status.in_progress
        if claim is not None and claim.expires_at > self._clock():
            raise ConflictError(
                "A rotation is in progress; delete the application after it ends",
                app_id=app_id,
                rotation_id=claim.rotation_id,
            )
        await self._applications.delete(current)

    async def log(
        self, app_id: str, page_size: int, continuation_token: str | None
    ) -> Page[RotationLogEntry]:
        await self._applications.get(app_id)  # 404 for an unknown application, not an empty log
        return await self._log.list_page(app_id, page_size, continuation_token)

    async def request_refresh(self, app_id: str, *, compromised: bool) -> RotationJob:
        """Queue a manual rotation now. The worker runs the same protocol as a scheduled one."""
        current = await self._applications.get(app_id)
        if current.config.state != ApplicationState.ACTIVE:
            raise ConflictError("Application is Disabled; set its state to Active first", app_id=app_id)
        claim = current.status.in_progress
        now = self._clock()
        if claim is not None and claim.expires_at > now:
            raise ConflictError(
                "A rotation is already in progress", app_id=app_id, rotation_id=claim.rotation_id
            )
        job = RotationJob(
            app_id=app_id,
            rotation_id=new_rotation_id(),
            reason=JobReason.MANUAL,
            requested_at=now,
            compromised=compromised,
        )
        await self._queue.enqueue(job)
        return job
