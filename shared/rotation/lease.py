"""Claim and lease: who may work on an application's rotation, and every write made under it.

One row per application holds the claim (``status.inProgress``). It is taken with an ETag-
conditional write, renewed by every write made under it, and carries an owner nonce: a worker
whose claim was taken over (it was presumed dead) fails its next write instead of clobbering the
new owner's state. Every write goes through ``Lease.write``; when the row changed underneath
(a refresh escalating the rotation to compromised, a configuration edit), the write raises
``StepConflict`` after reloading the row, and the engine runs the current step again from the
fresh state. Step handlers are idempotent, so a re-run is always safe.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.vault import VaultSecret
from shared.domain.models import (
    ApplicationConfig,
    ApplicationStatus,
    RotationClaim,
    RotationStep,
    UnloggedOutcome,
)
from shared.errors import ConflictError, TransientServiceError
from shared.rotation.ports import ApplicationRepo
from shared.storage.applications import StoredApplication

# How many rotation ids a status remembers as ended (re-delivered jobs for them are acknowledged).
RECENT_ROTATIONS = 20


class LeaseLost(TransientServiceError):
    """Another worker took the claim over: this one must stop at once, writing nothing more."""


class StepConflict(Exception):
    """The row changed under a write; the row was reloaded and the current step must run again."""


@dataclass
class Run:
    """One claimed rotation (or maintenance pass): the freshest row read and what this worker owns."""

    stored: StoredApplication
    owner: str
    # Kept in memory between a vault write and the table write that records it, and the staged
    # secret once read (the value never leaves this process's memory).
    staged_version: str | None = None
    staged: VaultSecret | None = None
    # Write conflicts met in this invocation (bounded: a row that keeps changing pauses the run).
    conflicts: int = 0
    # The row holds this run's terminal outcome, which the log does not yet: the job must be
    # delivered again (its next claim writes it) rather than acknowledged.
    outcome_unlogged: bool = False

    @property
    def app_id(self) -> str:
        return self.stored.app_id

    @property
    def config(self) -> ApplicationConfig:
        return self.stored.config

    @property
    def status(self) -> ApplicationStatus:
        return self.stored.status

    @property
    def claim(self) -> RotationClaim:
        claim = self.stored.status.in_progress
        if claim is None or claim.owner != self.owner:
            raise LeaseLost(
                "The claim was taken over by another worker", service="rotator", app_id=self.app_id
            )
        return claim

    @property
    def rotation_id(self) -> str:
        return self.claim.rotation_id

    @property
    def step(self) -> RotationStep:
        return self.claim.step


class Lease:
    def __init__(
        self, applications: ApplicationRepo, clock: Callable[[], datetime], timeout: timedelta
    ) -> None:
        self._applications = applications
        self._clock = clock
        self.timeout = timeout

    def new_owner(self) -> str:
        return uuid.uuid4().hex

    def expiry(self) -> datetime:
        return self._clock() + self.timeout

    async def take(self, stored: StoredApplication, status: ApplicationStatus, owner: str) -> Run:
        """Write ``status`` (which holds the new claim) under ``stored``'s ETag; ConflictError if stale."""
        saved = await self._applications.save(stored, stored.config, status, self._clock())
        return Run(saved, owner)

    async def write(
        self,
        run: Run,
        *,
        claim: dict[str, Any] | None = None,
        reapply: bool = True,
        outcome: UnloggedOutcome | None = None,
        **status: Any,
    ) -> None:
        """Apply changes to the claim and the status under the claim, renewing the lease.

        ``in_progress=None`` in ``status`` releases the claim; ``outcome`` (the rotation's terminal
        entry) is added to the row's ``unlogged`` in the same write. When the row changed since it was
        read, it is reloaded and the same changes applied on top (``reapply``: for writes whose
        content does not depend on what others may change meanwhile: the compromised flags, a
        pending request), or ``StepConflict`` is raised so the step runs again from the fresh row.
        ``LeaseLost`` when the claim is no longer ours.
        """
        while True:
            current = run.claim
            changes = dict(status)
            if outcome is not None:
                changes["unlogged"] = [*run.status.unlogged, outcome]
            if "in_progress" not in changes:
                changes["in_progress"] = current.model_copy(
                    update={**(claim or {}), "expires_at": self.expiry()}
                )
            try:
                run.stored = await self._applications.save(
                    run.stored, run.stored.config, run.status.model_copy(update=changes), self._clock()
                )
                return
            except ConflictError:
                await self.reload(run)
                run.conflicts += 1
                if run.conflicts > 20:
                    raise TransientServiceError(
                        "The application row keeps changing; the rotation will resume", service="rotator"
                    ) from None
                if not reapply:
                    raise StepConflict() from None

    async def reload(self, run: Run) -> None:
        run.stored = await self._applications.get(run.app_id)
        run.claim  # noqa: B018 - raises LeaseLost when the claim is no longer ours

    async def release_now(self, run: Run, **status: Any) -> None:
        """Let the next delivery of the job resume at once (a retryable pause, counted in the
        claim's ``pauses``); best effort."""
        claim = run.stored.status.in_progress
        if claim is None or claim.owner != run.owner:
            return
        for _ in range(3):
            try:
                run.stored = await self._applications.save(
                    run.stored,
                    run.stored.config,
                    run.status.model_copy(
                        update={
                            "in_progress": claim.model_copy(
                                update={"expires_at": self._clock(), "pauses": claim.pauses + 1}
                            ),
                            **status,
                        }
                    ),
                    self._clock(),
                )
                return
            except ConflictError:
                fresh = await self._applications.get(run.app_id)
                if fresh.status.in_progress is None or fresh.status.in_progress.owner != run.owner:
                    return
                run.stored, claim = fresh, fresh.status.in_progress


def remember(recent: list[str], rotation_id: str) -> list[str]:
    """The recent-rotation list with ``rotation_id`` added (bounded, newest last)."""
    return [*[r for r in recent if r != rotation_id], rotation_id][-RECENT_ROTATIONS:]
