"""The registry service: what the configuration API does, free of HTTP.

It validates nothing itself (models are validated at the API edge) and decides everything else:
create-or-replace semantics with ETags, refusing to delete under a running rotation, and turning
a manual refresh into a queued job.
"""

from __future__ import annotations

import builtins
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from shared.credentials import CredentialChanges, stored_references
from shared.domain.models import (
    ApplicationConfig,
    ApplicationState,
    ApplicationStatus,
    JobReason,
    LogLevel,
    PendingRotation,
    RotationJob,
    RotationLogEntry,
    RotationStep,
    registration_generation,
    step_index,
)
from shared.errors import ConflictError, FieldProblem, NotFoundError, ValidationError
from shared.storage.applications import ApplicationStore, ListedApplication, Page, StoredApplication
from shared.storage.queue import RotationQueue
from shared.storage.rotation_log import RotationLogStore

if TYPE_CHECKING:
    from shared.adapters.vault import VaultClient
    from shared.integrations.base import PluginRegistry
    from shared.rotation.checks import GroupLookup
    from shared.rotation.ports import EventSink


logger = logging.getLogger("rotator.registry")


@dataclass(frozen=True)
class RefreshOutcome:
    """The rotation a refresh request is answered with; ``joined`` when it already existed."""

    rotation_id: str
    compromised: bool
    joined: bool
    state: str  # "queued" | "running"


@dataclass(frozen=True)
class PutResult:
    application: StoredApplication
    created: bool


class PreconditionFailed(ConflictError):
    """An If-Match / If-None-Match precondition did not hold."""


# A table string property holds at most 64 KiB, i.e. 32,768 UTF-16 characters (Azure Tables data
# model: learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model).
# The configuration JSON is one property; this keeps it, and non-BMP characters, within it.
MAX_CONFIG_CHARACTERS = 30_000


def _check_storable(config: ApplicationConfig) -> None:
    import json

    text = json.dumps(config.to_json_dict(), separators=(",", ":"))
    if len(text.encode("utf-16-le")) // 2 > MAX_CONFIG_CHARACTERS:
        raise ValidationError(
            "The registration is too large to store",
            [
                FieldProblem(
                    "body",
                    "is too large to store",
                    f"a registration of at most {MAX_CONFIG_CHARACTERS} characters as compact JSON",
                )
            ],
        )


# The log entry of a DELETE that leaves credentials the rotator owed removal in Entra ID.
CREDENTIALS_LEFT = "registration.deletedLeavingCredentials"


def _removals_owed(current: StoredApplication) -> ConflictError:
    """The refusal of a DELETE while credentials wait for the rotator to remove them."""
    status = current.status
    reasons = []
    if status.cleanup_key_ids:
        reasons.append(
            f"{len(status.cleanup_key_ids)} credential(s) of the rotator's (a failed rotation's, or "
            f"superseded) that Entra ID did not remove yet (keyIds {', '.join(status.cleanup_key_ids)})"
        )
    if status.pending_revocation is not None:
        reasons.append(
            f"the revocation a compromised rotation ({status.pending_revocation.rotation_id}) asked for, "
            "which waits for every destination to hold the new secret (or for the destinations that "
            "do not to be removed from the registration)"
        )
    if status.late_creates:
        until = max(late.settles_at() for late in status.late_creates)
        reasons.append(f"whatever an unanswered addPassword may still create until {until.isoformat()}")
    when = f" (next attempt at {status.retry_at.isoformat()})" if status.retry_at is not None else ""
    return ConflictError(
        "Credentials wait for the rotator to remove them from Entra ID: "
        + "; ".join(reasons)
        + f". The timer removes them{when}, also while rotation is disabled; delete the application "
        "after that (once it is gone nothing would remove them), or delete it now with "
        "leaveCredentials=true to leave them in Entra ID (the log names them)",
        app_id=current.app_id,
    )


def new_rotation_id() -> str:
    return str(uuid.uuid4())


class RegistryService:
    def __init__(
        self,
        applications: ApplicationStore,
        rotation_log: RotationLogStore,
        queue: RotationQueue,
        clock: Callable[[], datetime],
        events: EventSink | None = None,
        plugins: PluginRegistry | None = None,
        groups: GroupLookup | None = None,
        rotator_vault_url: str | None = None,
        vaults: Callable[[str], VaultClient] | None = None,
    ) -> None:
        """``vaults``: a vault client by URL (``Services.vault``), for the rotator's vault
        (``rotator_vault_url``) where ``put`` stores credentials."""
        self._vaults = vaults
        self._applications = applications
        self._log = rotation_log
        self._queue = queue
        self._clock = clock
        self._events = events
        self._plugins = plugins
        self._groups = groups
        self._rotator_vault_url = rotator_vault_url

    async def get(self, app_id: str) -> StoredApplication:
        return await self._applications.get(app_id)

    async def list(self, page_size: int, continuation_token: str | None) -> Page[ListedApplication]:
        return await self._applications.listing_page(page_size, continuation_token)

    async def put(
        self,
        config: ApplicationConfig,
        *,
        if_match: str | None,
        create_only: bool,
        allow_object_id_change: bool = False,
        credentials: CredentialChanges | None = None,
    ) -> PutResult:
        """Create, or replace the configuration of, an application. Status is kept on replace.

        The objectId of an existing registration changes only with ``allow_object_id_change``
        (``allowObjectIdChange: true`` in the body): a typo there would point every rotation at
        another application. ``ConflictError`` (409) otherwise.

        Preconditions (RFC 9110 section 13.1): ``If-Match`` (``*`` included) fails with
        ``PreconditionFailed`` (412) when nothing is registered; ``create_only`` (``If-None-Match:
        *``) when something is, including when a concurrent create wins. ``credentials`` are stored
        only once every check has passed, and deleted again when the write does not happen: a
        refused request never changes the credential an integration uses.
        """
        app_id = str(config.app_id)
        _check_storable(config)
        if self._plugins is not None:
            from shared.rotation.checks import registration_problems

            problems = await registration_problems(
                config, self._plugins, self._groups, rotator_vault_url=self._rotator_vault_url
            )
            if problems:
                raise ValidationError("The settings would make every rotation fail", problems)
        now = self._clock()
        changes = credentials or CredentialChanges()
        stored = False
        try:
            for _ in range(3):
                current = await self._applications.find(app_id)
                self._check_preconditions(
                    app_id, current, config, if_match, create_only, allow_object_id_change
                )
                references = (
                    {}
                    if current is None or self._plugins is None
                    else stored_references(current.config.integrations, self._plugins)
                )
                changes.check_against(references)
                if not stored and changes.pending:
                    await changes.store(self._credential_vault(), owner=app_id)
                stored = True
                try:
                    if current is None:
                        created = await self._applications.create(
                            config, ApplicationStatus(generation=registration_generation(now)), now
                        )
                        return PutResult(created, created=True)
                    saved = await self._applications.save(current, config, current.status, now)
                    return PutResult(saved, created=False)
                except (ConflictError, NotFoundError) as lost:
                    removed = isinstance(lost, NotFoundError)
                    if create_only or (if_match is not None and (if_match != "*" or removed)):
                        if removed:
                            reason = "Application was removed since it was read"
                        elif current is not None:
                            reason = "Application was changed since it was read (stale If-Match)"
                        else:
                            reason = "Application already exists (If-None-Match: *)"
                        raise PreconditionFailed(reason, app_id=app_id) from None
                    # No precondition asked for: another write (the rotator's status, a concurrent
                    # registration or removal) came first; apply this one on top of it (a removal:
                    # as a registration, what a PUT without If-Match asks for).
            raise ConflictError("Application is changing too often; try again", app_id=app_id)
        except BaseException:
            if stored and changes.pending:
                await changes.discard(self._credential_vault())
            raise

    @staticmethod
    def _check_preconditions(
        app_id: str,
        current: StoredApplication | None,
        config: ApplicationConfig,
        if_match: str | None,
        create_only: bool,
        allow_object_id_change: bool,
    ) -> None:
        if current is None:
            if if_match is not None:
                # "*" too: it holds only when a current representation exists (RFC 9110 13.1.1).
                raise PreconditionFailed("Application does not exist; If-Match cannot hold", app_id=app_id)
            return
        if create_only:
            raise PreconditionFailed("Application already exists (If-None-Match: *)", app_id=app_id)
        if current.config.object_id != config.object_id and not allow_object_id_change:
            # A conflict with what is registered (not a malformed field): 409, nothing written.
            raise ConflictError(
                f"objectId differs from the registered objectId {current.config.object_id}; send "
                "allowObjectIdChange: true to change it",
                app_id=app_id,
            )
        if if_match is not None and if_match != "*" and if_match != current.etag:
            raise PreconditionFailed(
                "Application was changed since it was read (stale If-Match)", app_id=app_id
            )

    def _credential_vault(self) -> VaultClient:
        if self._vaults is None or self._rotator_vault_url is None:
            raise RuntimeError("credentials sent, but the registry has no rotator vault to store them in")
        return self._vaults(self._rotator_vault_url)

    async def delete(self, app_id: str, *, if_match: str | None, leave_credentials: bool = False) -> None:
        """Remove the registration (the log stays). ConflictError while any rotation holds a claim,
        even one whose worker stopped (its credential may not be traced yet; the timer resumes it),
        and while credentials wait for the rotator to remove them from Entra ID
        (``ApplicationStatus.owes_removals``: once the row is gone nothing would remove them),
        unless the operator asks to ``leave_credentials``: then a log entry
        (``registration.deletedLeavingCredentials``) names what stays in Entra ID, written before the
        row goes like any outcome below (TransientServiceError, and nothing deleted, when it cannot).

        A rotation still queued ends as superseded, written with the row first (as the engine ends
        one, ``UnloggedOutcome``), and every outcome the row holds is in the log before the row
        goes: a crash or a refused delete leaves the application registered with its queued
        rotation ended, never a returned rotation id without its outcome."""
        for _ in range(8):
            current = await self._applications.get(app_id)
            if if_match is not None and if_match != "*" and if_match != current.etag:
                raise PreconditionFailed(
                    "Application was changed since it was read (stale If-Match)", app_id=app_id
                )
            claim = current.status.in_progress
            if claim is not None:
                stopped = claim.expires_at <= self._clock()
                raise ConflictError(
                    "A rotation is in progress"
                    + (
                        f" (its worker stopped at step {claim.step.value}; the timer resumes it within "
                        "15 minutes)"
                        if stopped
                        else ""
                    )
                    + "; delete the application after it ends",
                    app_id=app_id,
                    rotation_id=claim.rotation_id,
                )
            if current.status.owes_removals():
                if not leave_credentials or self._events is None:
                    raise _removals_owed(current)
                try:
                    current = await self._note_credentials_left(current)
                except ConflictError:
                    continue  # the row changed meanwhile: look again
            try:
                current = await self._end_queued(current)
            except ConflictError:
                continue  # the row changed meanwhile: look again
            if self._events is not None and current.status.unlogged:
                await self._events.settle(current.status.unlogged)
            try:
                await self._applications.delete(current, now=self._clock())
            except ConflictError:
                if if_match is not None:
                    raise
                continue  # the row changed meanwhile (a rotation, a request): look again
            return
        raise ConflictError("Application is changing too often; try again", app_id=app_id)

    async def _note_credentials_left(self, current: StoredApplication) -> StoredApplication:
        """``current`` with the entry naming what a DELETE with ``leave_credentials`` leaves in
        Entra ID in its ``unlogged`` (once: a retried DELETE adds none), in one row write."""
        status = current.status
        if self._events is None or any(o.event == CREDENTIALS_LEFT for o in status.unlogged):
            return current
        left = []
        if status.cleanup_key_ids:
            left.append(f"credential(s) {', '.join(status.cleanup_key_ids)}")
        if status.pending_revocation is not None:
            left.append(
                "the credentials compromised rotation "
                f"{status.pending_revocation.rotation_id} was to revoke (all but {status.pending_revocation.key_id})"
            )
        if status.late_creates:
            left.append(
                "any credential named for rotation(s) "
                f"{', '.join(late.rotation_id for late in status.late_creates)} (an addPassword that got no answer)"
            )
        noted = self._events.outcome(
            current.app_id,
            status.last_rotation_id or new_rotation_id(),
            CREDENTIALS_LEFT,
            "Registration deleted at the operator's request (leaveCredentials=true), leaving "
            + "; ".join(left)
            + " in Entra ID: the rotator no longer tracks them once it is gone; remove them there "
            "(written before the registration goes: if it is still registered, the DELETE did not "
            "complete and the timer still removes them)",
            level=LogLevel.WARNING,
            step="request",
            details={
                "cleanupKeyIds": list(status.cleanup_key_ids),
                "pendingRevocation": None
                if status.pending_revocation is None
                else status.pending_revocation.to_json_dict(),
                "unansweredRotationIds": [late.rotation_id for late in status.late_creates],
            },
        )
        return await self._save_status(
            current, status.model_copy(update={"unlogged": [*status.unlogged, noted]})
        )

    async def _end_queued(self, current: StoredApplication) -> StoredApplication:
        """``current`` with its queued rotation (if any) ended as superseded, in one row write."""
        pending = current.status.pending
        if pending is None or self._events is None:
            return current
        from shared.rotation.lease import remember

        ended = self._events.outcome(
            current.app_id,
            pending.rotation_id,
            "rotation.superseded",
            "The application's removal ended its queued rotation before it ran",
            step="request",
            details={"outcome": "superseded"},
        )
        status = current.status.model_copy(
            update={
                "pending": None,
                "enqueued_at": None,
                "recent_rotation_ids": remember(current.status.recent_rotation_ids, pending.rotation_id),
                "unlogged": [*current.status.unlogged, ended],
            }
        )
        return await self._save_status(current, status)

    async def applications_in_group(self, group_id: str, limit: int = 20) -> builtins.list[str]:
        """App ids of registrations that name ``group_id`` (a scan: deleting a group is rare)."""
        found: builtins.list[str] = []
        token: str | None = None
        while len(found) < limit:
            page = await self._applications.list_page(100, token)
            found += [s.app_id for s in page.items if s.config.group_id == group_id]
            token = page.continuation_token
            if not token:
                break
        return found[:limit]

    async def log(
        self, app_id: str, page_size: int, continuation_token: str | None
    ) -> Page[RotationLogEntry]:
        page = await self._log.list_page(app_id, page_size, continuation_token)
        # The log outlives DELETE; 404 only for an application that has neither a row nor a log.
        if not page.items and continuation_token is None and await self._applications.find(app_id) is None:
            raise NotFoundError("Application is not registered and has no rotation log", app_id=app_id)
        return page

    async def request_refresh(
        self, app_id: str, *, compromised: bool, revoke_unmanaged: bool = False
    ) -> RefreshOutcome:
        """A manual rotation now, or the one already pending, which this request joins.

        Never a silent no-op: the answer is either a rotation id that will reach a terminal outcome
        in the log, or an error. A compromised request escalates the pending rotation, or the
        running one while it has not yet decided about revocation; past that point it queues a
        new rotation after the running one.
        """
        for _ in range(8):
            current = await self._applications.get(app_id)
            if current.config.state != ApplicationState.ACTIVE:
                raise ConflictError("Application is Disabled; set its state to Active first", app_id=app_id)
            status, now = current.status, self._clock()
            claim = status.in_progress
            try:
                if (
                    claim is not None
                    and (not compromised or step_index(claim.step) < step_index(RotationStep.RETIRED))
                    and claim.step != RotationStep.MAINTENANCE
                ):
                    if (compromised and not claim.compromised) or (
                        revoke_unmanaged and not claim.revoke_unmanaged
                    ):
                        escalated = claim.model_copy(
                            update={
                                "compromised": True,
                                "revoke_unmanaged": claim.revoke_unmanaged or revoke_unmanaged,
                            }
                        )
                        await self._save_status(current, status.model_copy(update={"in_progress": escalated}))
                        await self._record(app_id, claim.rotation_id, "rotation.escalated", compromised=True)
                    return RefreshOutcome(
                        claim.rotation_id, compromised or claim.compromised, joined=True, state="running"
                    )
                pending = status.pending
                if pending is not None:
                    if (compromised and not pending.compromised) or (
                        revoke_unmanaged and not pending.revoke_unmanaged
                    ):
                        escalated_pending = pending.model_copy(
                            update={
                                "compromised": True,
                                "revoke_unmanaged": pending.revoke_unmanaged or revoke_unmanaged,
                            }
                        )
                        await self._save_status(
                            current, status.model_copy(update={"pending": escalated_pending})
                        )
                        await self._record(
                            app_id, pending.rotation_id, "rotation.escalated", compromised=True
                        )
                    return RefreshOutcome(
                        pending.rotation_id, compromised or pending.compromised, joined=True, state="queued"
                    )
                rotation_id = new_rotation_id()
                queued = PendingRotation(
                    rotation_id=rotation_id,
                    requested_at=now,
                    reason=JobReason.MANUAL,
                    compromised=compromised,
                    revoke_unmanaged=revoke_unmanaged,
                )
                saved = await self._save_status(
                    current, status.model_copy(update={"pending": queued, "enqueued_at": now})
                )
            except ConflictError:
                continue  # another request or the engine wrote first: decide again on the fresh row
            job = RotationJob(
                app_id=app_id,
                rotation_id=rotation_id,
                reason=JobReason.MANUAL,
                requested_at=now,
                compromised=compromised,
                generation=status.generation,
            )
            try:
                await self._queue.enqueue(job)
            except Exception:
                # Not queued: take the request back so nobody waits for it (the timer requeues it if
                # this fails too, and the rotation then still happens).
                try:
                    await self._save_status(
                        saved, saved.status.model_copy(update={"pending": None, "enqueued_at": None})
                    )
                except Exception as rollback_error:  # noqa: BLE001 - the timer's requeue covers it
                    logger.warning("pending request kept for the timer: %s", type(rollback_error).__name__)
                raise
            await self._record(app_id, rotation_id, "rotation.requested", compromised=compromised)
            return RefreshOutcome(rotation_id, compromised, joined=False, state="queued")
        raise ConflictError("Application is changing too often; try again", app_id=app_id)

    async def _save_status(self, current: StoredApplication, status: ApplicationStatus) -> StoredApplication:
        return await self._applications.save(current, current.config, status, self._clock())

    async def _record(self, app_id: str, rotation_id: str, event: str, *, compromised: bool) -> None:
        if self._events is None:
            return
        message = {
            "rotation.requested": "Manual rotation requested" + (" (compromised)" if compromised else ""),
            "rotation.escalated": "Escalated to compromised by a manual request",
        }[event]
        await self._events.record(
            app_id, rotation_id, event, message, step="request", details={"compromised": compromised}
        )
