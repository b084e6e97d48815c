"""The rotation protocol as an explicit, persisted step machine.

A job claims the application (``shared.rotation.lease``), then the engine runs the handler of the
claim's persisted ``RotationStep`` until the claim is released. Each handler checks its own
precondition, does one small thing, and records the next step with an ETag-conditional write, so
a crash anywhere, a duplicate job or a takeover simply runs the current step again.

========== ============================================================= ==========================
step       handler does                                                  on failure
========== ============================================================= ==========================
claimed    check settings; read the app (its appId must match); remove   failed: nothing created,
           orphans of this rotation; make room under the password cap;   or this rotation's
           addPassword within the lifetime policy → ``created``; stage   credential removed
           it in the rotator's vault → ``staged`` (version id recorded)
created    (resume) find the staged secret by its own name, or remove    as above
           the unstaged credential and create again (bounded attempts)
staged     read the staged version; prove it works (token request)       credential removed;
           → ``verified``                                                 previous one untouched
verified   → ``delivering`` (recorded before any destination is written)  –
delivering deliver to each destination not yet confirmed; then commit:   forward only: warnings,
           the new credential is current → ``delivered``                 retried later
delivered  compromised: revoke once every destination confirmed (else    forward only
           defer); otherwise remove superseded credentials no destination
           uses, keeping current + previous → ``retired``
retired    record "notified", then send the notice (at most once)        forward only
notifying  release the claim; outcome succeeded/degraded in the log      –
maintenance (not a rotation) clean up, retry destinations from the        warnings, retried
           current staged version, deferred revocation, retirement
========== ============================================================= ==========================

Jobs never go backwards: a job queued before the application's latest rotation started
(``RotationJob.generation`` below ``status.generation``) is acknowledged as *superseded*; one
queued for an earlier registration of the same app id (below ``registration_generation``) changes
and records nothing (its removal recorded it). Every rotation id ends in the log with one terminal
outcome (``RotationOutcome``): the row write that ends a rotation holds its entry
(``ApplicationStatus.unlogged``) until the log has it (``_log_outcomes``; a job is not acknowledged
before), and every claim first writes what a crash left there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.entra import EntraApplication, PasswordInfo, SecretVerifier
from shared.adapters.retry import RetryPolicy, retry
from shared.adapters.vault import VaultSecret
from shared.domain.models import (
    LATE_WRITE_WINDOW,
    TERMINAL_EVENTS,
    ApplicationStatus,
    IntegrationStatus,
    JobReason,
    LateCreate,
    LogLevel,
    PendingRevocation,
    RotationClaim,
    RotationJob,
    RotationOutcome,
    RotationResult,
    RotationStep,
    is_forward_only,
    registration_generation,
    rfc3339,
)
from shared.domain.schedule import is_due
from shared.errors import (
    ConflictError,
    ExternalServiceError,
    NotFoundError,
    PermissionMissingError,
    RotationError,
    TransientServiceError,
    is_retryable,
)
from shared.integrations.base import PluginRegistry
from shared.rotation.checks import GroupLookup, registration_problems
from shared.rotation.credentials import POLICY_ERROR, Credentials, describe
from shared.rotation.delivery import Delivery, error_info, integration_problems
from shared.rotation.events import settle_outcomes
from shared.rotation.lease import Lease, LeaseLost, Run, StepConflict, remember
from shared.rotation.ports import (
    ApplicationRepo,
    Checkpoint,
    EntraDirectory,
    EventSink,
    Notifier,
    NullNotifier,
    RotationSummary,
    SignInEvidence,
    StagingStore,
)
from shared.storage.applications import StoredApplication

logger = logging.getLogger("rotator.engine")

# Failed destinations, deferred revocations and clean-ups are tried again after this long.
INTEGRATION_RETRY_DELAY = timedelta(minutes=15)
# A superseded credential is removed this long after it expires (clock skew against Entra).
RETIRE_MARGIN = timedelta(minutes=1)
# A rotation creates at most this many credentials before it fails (a secret that cannot be
# staged, or found again, must not loop).
MAX_CREATE_ATTEMPTS = 3
# Retryable failures (throttling, a service's 5xx, a timeout) a rotation pauses for, across the
# job's deliveries and takeovers, before it fails like any other error: a rotation stuck on a
# failure that never clears ends with ``rotation.failed``, the failure alert and the retry backoff,
# instead of pausing and being taken over forever (found with Graph answering 503 to every
# addPassword: the job went to the poison queue and the timer took it over again, endlessly).
MAX_PAUSES = 8
# Step handler runs per invocation before the engine pauses (a full rotation takes about 10).
MAX_STEP_RUNS = 60
# A failure alert for the same reason as the last one is repeated at most this often.
FAILURE_ALERT_REPEAT = timedelta(days=1)
# How many times a secret starting with '-' is re-created (each time is a 1-in-65 chance or so).
MAX_DASH_RECREATES = 5
# A finished rotation runs, in the same invocation, at most this many rotations requested meanwhile.
MAX_CHAINED = 2


_NEXT = {
    RotationStep.DELIVERING: RotationStep.DELIVERED,
    RotationStep.DELIVERED: RotationStep.RETIRED,
    RotationStep.RETIRED: RotationStep.NOTIFYING,
}


def _no_checkpoint(step: str) -> None:
    return None


@dataclass(frozen=True)
class EngineSettings:
    credential_prefix: str
    claim_timeout: timedelta
    verify_timeout_seconds: float
    retry_policy: RetryPolicy = RetryPolicy()
    verify_first_delay: float = 1.0
    verify_max_delay: float = 10.0


class RotationEngine:
    def __init__(
        self,
        *,
        applications: ApplicationRepo,
        events: EventSink,
        directory: EntraDirectory,
        verifier: SecretVerifier,
        staging: StagingStore,
        plugins: PluginRegistry,
        notifier: Notifier,
        settings: EngineSettings,
        clock: Callable[[], datetime],
        services: Any = None,
        groups: GroupLookup | None = None,
        rotator_vault_url: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        checkpoint: Checkpoint = _no_checkpoint,
        sign_ins: SignInEvidence | None = None,
    ) -> None:
        self._applications = applications
        self._sign_ins = sign_ins
        self._events = events
        self._verifier = verifier
        self._staging = staging
        self._plugins = plugins
        self._notifier = notifier
        self._settings = settings
        self._clock = clock
        self._sleep = sleep
        self._checkpoint = checkpoint
        self._groups = groups
        self._rotator_vault_url = rotator_vault_url
        self._lease = Lease(applications, clock, settings.claim_timeout)
        self._credentials = Credentials(
            directory,
            prefix=settings.credential_prefix,
            retry_policy=settings.retry_policy,
            sleep=sleep,
            clock=clock,
        )
        self._delivery = Delivery(
            plugins, events, retry_policy=settings.retry_policy, sleep=sleep, clock=clock, services=services
        )
        self._handlers: dict[RotationStep, Callable[[Run], Awaitable[str | None]]] = {
            RotationStep.CLAIMED: self._create_and_stage,
            RotationStep.CREATED: self._recover_created,
            RotationStep.STAGED: self._verify,
            RotationStep.VERIFIED: self._start_delivery,
            RotationStep.DELIVERING: self._deliver_and_commit,
            RotationStep.DELIVERED: self._revoke_or_retire,
            RotationStep.RETIRED: self._notify_once,
            RotationStep.NOTIFYING: self._finish,
            RotationStep.MAINTENANCE: self._maintain,
        }

    # --- entry point ----------------------------------------------------------------------------
    async def handle(self, job: RotationJob) -> str:
        """Process one queue job; returns what happened. Raises only to have the job retried."""
        claimed = await self._claim(job)
        if isinstance(claimed, str):
            logger.info("job %s for %s: %s", job.rotation_id, job.app_id, claimed)
            return claimed
        outcome = await self._drive(claimed)
        unlogged = claimed.outcome_unlogged
        # Rotations requested while this one ran wait in ``status.pending``: run them now.
        for _ in range(MAX_CHAINED):
            pending = claimed.status.pending
            if claimed.status.in_progress is not None or pending is None:
                break
            follow = RotationJob(
                app_id=job.app_id,
                rotation_id=pending.rotation_id,
                reason=pending.reason,
                requested_at=pending.requested_at,
                compromised=pending.compromised,
            )
            chained = await self._claim(follow)
            if isinstance(chained, str):
                break
            await self._drive(chained)
            claimed = chained
            unlogged = unlogged or chained.outcome_unlogged
        if unlogged:
            raise TransientServiceError(
                "The rotation ended; its outcome is kept with the application until the log can be "
                "written, by this job's next delivery",
                service="storage",
                app_id=job.app_id,
            )
        return outcome

    async def _drive(self, run: Run) -> str:
        """Run step handlers until one finishes the claim; the failure policy decides the rest."""
        for _ in range(MAX_STEP_RUNS):
            try:
                step = run.step
            except LeaseLost:
                return "claim taken over by another worker"
            try:
                done = await self._handlers[step](run)
                if done is not None:
                    return done
            except StepConflict:
                continue
            except LeaseLost:
                await self._event(
                    run, "rotation.handedOver", "Another worker took this rotation over", step=step
                )
                return "claim taken over by another worker"
            except Exception as error:
                permanent = isinstance(error, RotationError | NotFoundError) or (
                    isinstance(error, ExternalServiceError) and not is_retryable(error)
                )
                if permanent or _pauses(run) + 1 >= MAX_PAUSES:
                    failure = _as_rotation_error(error, step)
                    if not permanent:
                        failure = RotationError(
                            f"Gave up after {MAX_PAUSES} retryable failures: {failure.message}",
                            step=step.value,
                            code=failure.code,
                        )
                    if is_forward_only(step):
                        # A destination may hold the new secret: never roll back, note and go on.
                        await self._warn_and_skip(run, step, failure)
                        continue
                    if step == RotationStep.MAINTENANCE:
                        return await self._end_maintenance_with(run, failure)
                    return await self._fail(run, failure)
                await self._pause(run, error)
                raise
        # Steps keep re-running (the row keeps changing, or a step keeps being refused): let the
        # queue deliver the job again later rather than spin here.
        stalled = TransientServiceError("The rotation made no progress; it will resume", service="rotator")
        await self._pause(run, stalled)
        raise stalled

    # --- claim ----------------------------------------------------------------------------------
    async def _claim(self, job: RotationJob) -> Run | str:
        for _ in range(5):
            stored = await self._applications.find(job.app_id)
            if stored is None:
                return "application is not registered"
            if stored.status.unlogged:
                # Outcomes a crash or a failed log write left in the row: into the log first.
                try:
                    settled = await settle_outcomes(self._events, self._applications, stored, self._clock())
                except ConflictError:
                    continue
                if settled is None:
                    return "application is not registered"
                stored = settled
            status, now = stored.status, self._clock()
            owner = self._lease.new_owner()
            claim = status.in_progress
            resumed = False
            if claim is not None:
                if claim.expires_at > now:
                    # Held by a live worker, or a dead one whose lease still runs: nobody may act
                    # before it expires, and then the timer enqueues a takeover. Acknowledged.
                    if status.pending is not None and status.pending.rotation_id == job.rotation_id:
                        return f"rotation {job.rotation_id} is queued behind rotation {claim.rotation_id}"
                    return f"rotation {claim.rotation_id} is in progress"
                # The worker that held this claim died: resume its rotation, not a new one.
                new_status = status.model_copy(
                    update={
                        "in_progress": claim.model_copy(
                            update={"owner": owner, "expires_at": self._lease.expiry()}
                        )
                    }
                )
                resumed = True
            else:
                try:
                    decided = await self._decide(job, stored)
                except ConflictError:
                    continue  # the row changed while this job's end was written: decide again
                if isinstance(decided, str):
                    return decided
                new_status = status.model_copy(update=decided(owner))
            try:
                run = await self._lease.take(stored, new_status, owner)
            except ConflictError:
                continue
            claim = run.claim
            await self._event(
                run,
                "rotation.resumed"
                if resumed
                else (
                    "maintenance.started" if claim.step == RotationStep.MAINTENANCE else "rotation.started"
                ),
                "Rotation resumed after a stale claim (step " + claim.step.value + ")"
                if resumed
                else f"{'Maintenance' if claim.step == RotationStep.MAINTENANCE else 'Rotation'} started ({job.reason.value})",
                step="claim",
                details={
                    "reason": job.reason.value,
                    "compromised": claim.compromised,
                    "generation": claim.generation,
                },
            )
            return run
        raise TransientServiceError("Could not claim the application", service="rotator", app_id=job.app_id)

    async def _decide(
        self, job: RotationJob, stored: StoredApplication
    ) -> Callable[[str], dict[str, Any]] | str:
        """For an unclaimed application: what this job may start (status changes for a new claim)."""
        status, config, now = stored.status, stored.config, self._clock()
        if job.rotation_id in status.recent_rotation_ids or job.rotation_id == status.last_rotation_id:
            return "rotation already finished"
        pending = status.pending if status.pending and status.pending.rotation_id == job.rotation_id else None
        registered = registration_generation(stored.created_at)
        if (
            pending is None
            and job.generation is not None
            and job.generation < registered <= status.generation
        ):
            # Queued for an earlier registration of this app id, which was deleted (its removal
            # recorded what it had queued as superseded): nothing of this one's to touch or log.
            logger.info("job %s was queued before the application was registered again", job.rotation_id)
            return "from an earlier registration"
        if (
            pending is None
            and (
                (job.generation is not None and job.generation < status.generation)
                or status.pending is not None
            )
            and await self._events.has_outcome(stored.app_id, job.rotation_id)
        ):
            # A copy of a job whose rotation ended long enough ago to have left
            # ``recent_rotation_ids``: its one outcome is in the log already.
            return "rotation already finished"
        if pending is None and job.generation is not None and job.generation < status.generation:
            await self._terminal_without_claim(
                stored,
                job.rotation_id,
                "rotation.superseded",
                RotationOutcome.SUPERSEDED,
                "A newer rotation ran since this job was queued; it was acknowledged and changed nothing",
            )
            return "superseded"
        if pending is None and status.pending is not None and job.reason != JobReason.RETRY:
            await self._terminal_without_claim(
                stored,
                job.rotation_id,
                "rotation.merged",
                RotationOutcome.MERGED,
                f"Joined the queued rotation {status.pending.rotation_id}",
                merged_into=status.pending.rotation_id,
            )
            return "merged"
        compromised = pending.compromised if pending else job.compromised
        revoke_unmanaged = pending.revoke_unmanaged if pending else False
        if status.pending_revocation is not None:
            # A compromised rotation's revocation still waits: the next rotation carries it on.
            compromised = True
            revoke_unmanaged = revoke_unmanaged or status.pending_revocation.revoke_unmanaged
        reason = pending.reason if pending else job.reason
        if reason == JobReason.RETRY:
            if not self._maintenance_due(status, now):
                await self._clear_enqueued(stored)
                return "not due"
            step, generation = RotationStep.MAINTENANCE, status.generation
        else:
            if reason == JobReason.SCHEDULED and not (compromised or is_due(config, status, now)):
                if pending is not None:
                    await self._terminal_without_claim(
                        stored,
                        job.rotation_id,
                        "rotation.superseded",
                        RotationOutcome.SUPERSEDED,
                        "The application is no longer due (disabled, or rotated meanwhile)",
                    )
                    return "superseded"
                await self._clear_enqueued(stored)
                return "not due"
            if reason == JobReason.MANUAL and pending is None and config.state != "Active":
                return "application is Disabled"
            step, generation = RotationStep.CLAIMED, status.generation + 1

        def changes(owner: str) -> dict[str, Any]:
            claim = RotationClaim(
                rotation_id=job.rotation_id,
                owner=owner,
                claimed_at=now,
                expires_at=self._lease.expiry(),
                step=step,
                compromised=compromised,
                revoke_unmanaged=revoke_unmanaged,
                generation=generation,
            )
            update: dict[str, Any] = {"in_progress": claim, "generation": generation}
            if step != RotationStep.MAINTENANCE:
                update.update(pending=None, enqueued_at=None)
            elif status.pending is None:
                update["enqueued_at"] = None
            return update

        return changes

    def _maintenance_due(self, status: ApplicationStatus, now: datetime) -> bool:
        return bool(status.cleanup_key_ids) or any(
            t is not None and now >= t for t in (status.retry_at, status.retire_at)
        )

    async def _clear_enqueued(self, stored: StoredApplication) -> None:
        if stored.status.enqueued_at is None or stored.status.pending is not None:
            return
        try:
            await self._applications.save(
                stored, stored.config, stored.status.model_copy(update={"enqueued_at": None}), self._clock()
            )
        except ConflictError:
            pass  # someone else wrote meanwhile; the timer will look again

    async def _terminal_without_claim(
        self,
        stored: StoredApplication,
        rotation_id: str,
        event: str,
        outcome: RotationOutcome,
        message: str,
        **details: Any,
    ) -> None:
        """Record a job's end that needed no claim (superseded, merged), once per rotation id: in
        the row write that ends it, then in the log (``_log_outcomes``)."""
        ended = self._events.outcome(
            stored.app_id,
            rotation_id,
            event,
            message,
            step="claim",
            details={"outcome": outcome.value, **details},
        )
        update: dict[str, Any] = {
            "recent_rotation_ids": remember(stored.status.recent_rotation_ids, rotation_id),
            "unlogged": [*stored.status.unlogged, ended],
        }
        if stored.status.pending is not None and stored.status.pending.rotation_id == rotation_id:
            update.update(pending=None, enqueued_at=None)
        # A ConflictError (the row changed) has the claim decide again on the fresh row.
        saved = await self._applications.save(
            stored, stored.config, stored.status.model_copy(update=update), self._clock()
        )
        self._checkpoint("outcome_written")
        # A failure here raises with the outcome kept in the row: the job is delivered again, and
        # its claim settles the outcome and finds the rotation finished.
        await settle_outcomes(self._events, self._applications, saved, self._clock())

    # --- claimed: create and stage --------------------------------------------------------------
    async def _create_and_stage(self, run: Run) -> None:
        problems = await registration_problems(
            run.config, self._plugins, self._groups, rotator_vault_url=self._rotator_vault_url
        )
        if problems:
            raise RotationError(
                "Integration settings are invalid: " + "; ".join(f"{p.field} {p.message}" for p in problems),
                step="validate",
                code="IntegrationMisconfigured",
            )
        claim = run.claim
        if claim.create_attempts >= MAX_CREATE_ATTEMPTS:
            raise RotationError(
                f"Created {claim.create_attempts} credentials and none could be staged and read back from the "
                "rotator's vault; each was removed. Check the vault (access, firewall, soft-deleted secrets)",
                step="create",
                code="StagingFailed",
            )
        credentials = self._credentials
        app = await credentials.read(run.config)
        name = credentials.name_for(claim.rotation_id)
        # A credential named for this rotation but never recorded lost its text in a crash.
        for orphan in credentials.orphans(app, run.config, run.status, claim.rotation_id):
            await credentials.remove(app.object_id, orphan.key_id, "remove orphan")
            await self._event(
                run,
                "credential.orphanRemoved",
                "Removed a credential whose secret was never staged",
                level=LogLevel.WARNING,
                step="create",
                key_id=orphan.key_id,
            )
            app = _without(app, orphan.key_id)
        try:
            removed = await credentials.make_room(app, run.config, run.status)
        except RotationError as error:
            await self._event(
                run,
                "credential.capReached",
                error.message,
                level=LogLevel.WARNING,
                step="create",
                code=error.code,
            )
            raise
        for password in removed:
            await self._event(
                run,
                "credential.retired",
                "Removed a credential no destination uses, to make room under the password cap",
                step="create",
                key_id=password.key_id,
                details={"credential": describe([password])[0]},
            )
            await self._forget_staged(run.app_id, password)
        lifetime = await credentials.lifetime(run.config, app)
        duplicates: list[str] = []
        unanswered: list[datetime] = []
        try:
            new, applied = await credentials.add(
                run.config, name, lifetime, removed=duplicates, unanswered=unanswered
            )
            for _ in range(MAX_DASH_RECREATES):
                if not (
                    new.secret.reveal().startswith("-") and run.config.rotation.recreate_leading_dash_secrets
                ):
                    break
                # Opted in: a secret read as a command-line option is replaced before anyone sees it.
                await credentials.remove(app.object_id, new.info.key_id, "replace a secret starting with '-'")
                await self._event(
                    run,
                    "secret.recreated",
                    "The new secret started with '-'; it was removed and created again (recreateLeadingDashSecrets)",
                    step="create",
                    key_id=new.info.key_id,
                )
                new, applied = await credentials.add(
                    run.config, name, lifetime, removed=duplicates, unanswered=unanswered
                )
        except Exception:
            if unanswered:
                # Entra may still apply an addPassword whose answer never came: remember when, so
                # whatever it creates is found and removed (``LateCreate``) however this ends.
                await self._best_effort(
                    self._lease.write(run, claim={"unanswered_create_at": max(unanswered)})
                )
            raise
        finally:
            for key_id in duplicates:
                await self._event(
                    run,
                    "credential.duplicateRemoved",
                    "Removed a credential created by a request whose answer was lost",
                    level=LogLevel.WARNING,
                    step="create",
                    key_id=key_id,
                )
        await self._lease.write(
            run,
            claim={
                "step": RotationStep.CREATED,
                "key_id": new.info.key_id,
                "key_hint": new.info.hint,
                "key_end": new.info.end,
                "create_attempts": claim.create_attempts + 1,
                "unanswered_create_at": max(unanswered) if unanswered else claim.unanswered_create_at,
            },
        )
        self._checkpoint("created")
        await self._event(
            run,
            "secret.created",
            f"Created credential (hint {new.info.hint}, expires {new.info.end.isoformat() if new.info.end else 'unknown'})",
            step="create",
            key_id=new.info.key_id,
        )
        if new.secret.reveal().startswith("-"):
            await self._event(
                run,
                "secret.leadingDash",
                "The new secret starts with '-': command-line consumers may read it as an option (quote it, "
                "or set rotation.recreateLeadingDashSecrets)",
                level=LogLevel.WARNING,
                step="create",
                key_id=new.info.key_id,
            )
        if applied.capped_by is not None:
            days = round(applied.applied.total_seconds() / 86400, 2)
            warning = (
                f"Tenant app management policy capped the lifetime: {days} days instead of "
                f"{applied.requested_days} ({'policy read' if applied.capped_by == 'policy' else 'found by refusals'})"
            )
            await self._lease.write(run, claim={"warnings": [*run.claim.warnings, warning]})
            await self._event(
                run,
                "policy.capped",
                warning,
                level=LogLevel.WARNING,
                step="create",
                code=POLICY_ERROR,
                details={
                    "requestedDays": applied.requested_days,
                    "appliedDays": days,
                    "source": applied.capped_by,
                },
            )
        try:
            version = await retry(
                lambda: self._staging.stage(
                    run.app_id, claim.rotation_id, new.info.key_id, new.secret, new.info.end
                ),
                policy=self._settings.retry_policy,
                describe="stage secret",
                sleep=self._sleep,
            )
        except Exception:
            # Never leave a credential nobody can use: take it back (the claim names it, so a crash
            # here is cleaned up by the resume).
            try:
                await self._credentials.directory.remove_password(app.object_id, new.info.key_id)
                await self._lease.write(
                    run, claim={"step": RotationStep.CLAIMED, "key_id": None, "key_end": None}
                )
            except Exception as cleanup_error:  # noqa: BLE001 - the resume removes it
                logger.warning("could not remove unstaged credential: %s", type(cleanup_error).__name__)
            raise
        run.staged_version = version
        self._checkpoint("staged_written")
        await self._lease.write(run, claim={"step": RotationStep.STAGED, "staged_version": version})
        await self._event(
            run, "secret.staged", "Secret staged in the rotator's vault", step="stage", key_id=new.info.key_id
        )
        self._checkpoint("staged")

    async def _recover_created(self, run: Run) -> None:
        """Resumed between addPassword and the record of its staging: find it by name, or start over."""
        claim = run.claim
        staged = await self._staging.get(run.app_id, claim.rotation_id, run.staged_version)
        if staged is not None and staged.tags.get("keyId") == claim.key_id:
            await self._lease.write(
                run, claim={"step": RotationStep.STAGED, "staged_version": staged.version}
            )
            await self._event(
                run,
                "secret.reused",
                "Resumed with the secret staged earlier",
                step="stage",
                key_id=claim.key_id,
            )
            return
        await self._discard_unstaged(run, "its secret was never staged")

    async def _discard_unstaged(self, run: Run, why: str) -> None:
        claim = run.claim
        if claim.key_id:
            await self._credentials.remove(
                str(run.config.object_id), claim.key_id, "remove unstaged credential"
            )
            await self._event(
                run,
                "credential.orphanRemoved",
                f"Removed this rotation's credential: {why}; creating another",
                level=LogLevel.WARNING,
                step="stage",
                key_id=claim.key_id,
            )
        await self._lease.write(
            run,
            claim={"step": RotationStep.CLAIMED, "key_id": None, "key_end": None, "staged_version": None},
        )

    async def _staged_secret(self, run: Run) -> VaultSecret | None:
        """This rotation's staged secret, read once per invocation by its recorded version id."""
        claim = run.claim
        cached = run.staged
        if (
            cached is not None
            and cached.version == claim.staged_version
            and cached.tags.get("keyId") == claim.key_id
        ):
            return cached
        staged = await self._staging.get(run.app_id, claim.rotation_id, claim.staged_version)
        if staged is None or staged.tags.get("keyId") != claim.key_id:
            return None
        if claim.key_end is not None and staged.expires_on != claim.key_end:
            # The vault's copy lost or changed its expiry: destinations get Entra ID's end date.
            staged = replace(staged, expires_on=claim.key_end)
        run.staged = staged
        return staged

    # --- staged: verify -------------------------------------------------------------------------
    async def _verify(self, run: Run) -> None:
        claim = run.claim
        staged = await self._staged_secret(run)
        if staged is None:
            await self._discard_unstaged(run, "its staged version cannot be read back from the vault")
            return
        key_id = str(claim.key_id)
        # Measured on the engine's clock, the one its sleep advances: with an injected sleep (the
        # model tests) a wait on another clock would spin until that clock caught up.
        started = renewed = self._clock()
        delay = self._settings.verify_first_delay
        attempts = 0
        while True:
            attempts += 1
            if self._clock() - renewed > self._settings.claim_timeout / 3:
                # A long wait through propagation keeps the claim alive, so no scan takes it over.
                await self._lease.write(run, claim={})
                renewed = self._clock()
            try:
                works = await self._verifier.works(str(run.config.app_id), staged.value)
            except TransientServiceError:
                works = False
            elapsed = (self._clock() - started).total_seconds()
            if works:
                break
            if elapsed + delay > self._settings.verify_timeout_seconds:
                # It never worked: the failure policy removes it; nobody received it.
                raise RotationError(
                    f"The new secret was never accepted by Entra ID within "
                    f"{self._settings.verify_timeout_seconds:.0f}s; nobody received it and the current secret is untouched",
                    step="verify",
                    code="SecretNeverWorked",
                )
            await self._sleep(delay)
            delay = min(delay * 2, self._settings.verify_max_delay)
        # Verified, and recorded as delivering in the same write (nothing happens in between): from
        # here nothing removes the new credential. A row an earlier version left at VERIFIED
        # resumes through ``_start_delivery``.
        await self._lease.write(run, claim={"step": RotationStep.DELIVERING})
        await self._event(
            run,
            "secret.verified",
            f"New secret works (after {attempts} attempts, {elapsed:.0f}s)",
            step="verify",
            key_id=key_id,
            duration_ms=int(elapsed * 1000),
        )
        self._checkpoint("verified")

    async def _start_delivery(self, run: Run) -> None:
        # Recorded before any destination is written: from here nothing removes the new credential.
        await self._lease.write(run, claim={"step": RotationStep.DELIVERING})

    # --- delivering: deliver, then commit ---------------------------------------------------------
    async def _deliver_and_commit(self, run: Run) -> None:
        claim = run.claim
        key_id = str(claim.key_id)
        staged = await self._staged_secret(run)
        if staged is None:
            raise RotationError(
                "The staged secret can no longer be read from the rotator's vault; destinations not yet "
                "written keep the previous secret",
                step="deploy",
                code="StagedSecretMissing",
            )
        for name in self._delivery.names(run.config):
            held = run.status.integrations.get(name)
            if held is not None and held.confirmed_key_id == key_id:
                continue  # delivered by an earlier run of this step
            result = await self._delivery.deliver(run.config, name, staged, claim.rotation_id, held)
            await self._lease.write(run, integrations={**run.status.integrations, name: result})
        self._checkpoint("deployed")
        await self._commit(run, staged)

    async def _commit(self, run: Run, staged: VaultSecret) -> None:
        """The new credential becomes current; the one it supersedes becomes previous."""
        status, claim = run.status, run.claim
        key_id = str(claim.key_id)
        if status.current_key_id == key_id:
            await self._lease.write(run, claim={"step": RotationStep.DELIVERED})
            return
        await self._staging.set_stage(staged, "current")
        if status.current_rotation_id and status.current_rotation_id != claim.rotation_id:
            await self._best_effort(
                self._mark_previous(run.app_id, status.current_rotation_id, status.current_version)
            )
        await self._lease.write(
            run,
            claim={"step": RotationStep.DELIVERED},
            current_key_id=key_id,
            current_rotation_id=claim.rotation_id,
            current_version=staged.version,
            previous_key_id=status.current_key_id,
            previous_rotation_id=status.current_rotation_id,
            expires_at=staged.expires_on,
            last_updated_at=self._clock(),
            threshold_alert_sent_for=None,
        )
        self._checkpoint("delivered")

    async def _mark_previous(self, app_id: str, rotation_id: str, version: str | None) -> None:
        old = await self._staging.get(app_id, rotation_id, version)
        if old is not None:
            await self._staging.set_stage(old, "previous")

    # --- delivered: revoke (compromised) or retire superseded -------------------------------------
    async def _revoke_or_retire(self, run: Run) -> None:
        claim, status, config = run.claim, run.status, run.config
        key_id = str(claim.key_id)
        app = await self._credentials.read(config)
        warnings = list(claim.warnings)
        changes: dict[str, Any] = {}
        if claim.compromised:
            waiting = self._not_confirmed(run, key_id)
            if waiting:
                warning = (
                    "Compromised: the old credentials stay valid until every destination holds the new secret "
                    f"({', '.join(waiting)} did not confirm it); they are revoked when delivery completes"
                )
                warnings.append(warning)
                changes["pending_revocation"] = PendingRevocation(
                    rotation_id=claim.rotation_id, key_id=key_id, revoke_unmanaged=claim.revoke_unmanaged
                )
                await self._event(
                    run,
                    "credential.revocationDeferred",
                    warning,
                    level=LogLevel.WARNING,
                    step="retire",
                    key_id=key_id,
                )
            else:
                leftover, revoke_warnings = await self._revoke(run, app, key_id, claim.revoke_unmanaged)
                warnings += revoke_warnings
                changes["pending_revocation"] = leftover
                changes["previous_key_id"] = None if leftover is None else status.previous_key_id
        else:
            removable = self._credentials.superseded(app, config, status, keep_previous=True)
            removable += self._credentials.expired_foreign(app, config)
            refused = await self._remove_all(
                run, app, removable, "Removed a superseded credential no destination uses"
            )
            warnings += refused
            owed = self._owed_after(app, refused, status.cleanup_key_ids)
            if owed != status.cleanup_key_ids:
                changes["cleanup_key_ids"] = owed
        new = next((p for p in app.passwords if p.key_id == key_id), None)
        if new is not None and new.end is not None and new.end != status.expires_at:
            # Entra ID's end date for the new credential, not its staged copy's ``exp`` (which
            # ``_commit`` had): a copy whose expiry was changed or removed in the vault must not
            # move the schedule (no expiry reads as never rotated: due again at once).
            changes["expires_at"] = new.end
        previous = next((p for p in app.passwords if p.key_id == status.previous_key_id), None)
        retire_at = (
            previous.end + RETIRE_MARGIN
            if previous is not None and previous.end is not None and not claim.compromised
            else None
        )
        early = config.rotation.retire_unused_previous_after_hours
        if retire_at is not None and early:
            # Opted in: look at the sign-in evidence then (``_retire_early``), not only at expiry.
            retire_at = min(retire_at, self._clock() + timedelta(hours=early))
        changes["retire_at"] = retire_at
        self._checkpoint("retired")
        # Retired, and the notice recorded as sent in the same write, before sending: at most once.
        # A row an earlier version left at RETIRED resumes through ``_notify_once``.
        await self._lease.write(
            run,
            claim={"step": RotationStep.NOTIFYING, "notified": True, "warnings": warnings[-20:]},
            reapply=False,
            **changes,
        )
        try:
            await self._send_notice(run)
        except Exception as error:  # noqa: BLE001 - retiring is done: a failed notice must not be taken for a failure to retire
            logger.warning("notice not sent: %s", type(error).__name__)

    def _not_confirmed(self, run: Run, key_id: str) -> list[str]:
        integrations = run.status.integrations
        return [
            name
            for name in self._delivery.names(run.config)
            if integrations.get(name) is None or integrations[name].confirmed_key_id != key_id
        ]

    async def _revoke(
        self, run: Run, app: EntraApplication, key_id: str, include_foreign: bool
    ) -> tuple[PendingRevocation | None, list[str]]:
        """Remove every other password we own (foreign ones with the opt-in); what is left to retry."""
        revoke, kept = self._credentials.revocable(app, key_id, include_foreign=include_foreign)
        warnings = await self._remove_all(run, app, revoke, "Compromised mode: revoked")
        left = [p for p in revoke if p.key_id in _failed_keys(warnings)]
        if kept:
            message = (
                f"Compromised: {len(kept)} credential(s) the rotator did not create are still valid "
                "(revoke them by hand, or refresh with revokeUnmanagedCredentials)"
            )
            warnings.append(message)
        await self._event(
            run,
            "credential.revokedAll",
            f"Compromised mode: revoked {len(revoke) - len(left)} other password(s)"
            + (f", {len(left)} to retry" if left else "")
            + (f"; {len(kept)} foreign credential(s) left valid" if kept else ""),
            level=LogLevel.WARNING,
            step="retire",
            key_id=key_id,
            details={
                "revokedKeyIds": [p.key_id for p in revoke if p not in left],
                "foreignStillValid": describe(kept),
            },
        )
        pending = (
            PendingRevocation(
                rotation_id=run.claim.rotation_id, key_id=key_id, revoke_unmanaged=include_foreign
            )
            if left
            else None
        )
        return pending, warnings

    async def _remove_all(
        self, run: Run, app: EntraApplication, passwords: list[PasswordInfo], what: str
    ) -> list[str]:
        """Remove each; a refusal becomes a warning (``could not remove <keyId>``) and is retried later."""
        warnings = []
        for password in passwords:
            try:
                await self._credentials.remove(app.object_id, password.key_id, "remove credential")
            except Exception as error:  # noqa: BLE001 - forward only: note it, retry later
                info = error_info(error, "retire", self._clock())
                warnings.append(f"could not remove {password.key_id}: {info.code}")
                await self._event(
                    run,
                    "retire.failed",
                    f"Could not remove credential: {info.message}",
                    level=LogLevel.WARNING,
                    step="retire",
                    key_id=password.key_id,
                    code=info.code,
                )
                continue
            await self._event(run, "credential.retired", what, step="retire", key_id=password.key_id)
            await self._forget_staged(run.app_id, password)
        return warnings

    def _owed_after(self, app: EntraApplication, refused: list[str], owed: list[str]) -> list[str]:
        """``owed`` (``cleanup_key_ids``) with the rotator's own credentials whose removal
        ``_remove_all`` reports refused: maintenance retries them every pass (and a DELETE waits
        for them), instead of leaving them to the previous credential's retirement weeks later."""
        failed = _failed_keys(refused)
        ours = [p.key_id for p in app.passwords if p.key_id in failed and self._credentials.is_ours(p)]
        return [*owed, *(key_id for key_id in ours if key_id not in owed)]

    async def _forget_staged(self, app_id: str, password: PasswordInfo) -> None:
        """A removed credential's staged copy goes too: staged secrets exist only for live credentials."""
        rotation_id = self._credentials.rotation_of(password)
        if rotation_id:
            await self._best_effort(self._staging.discard(app_id, rotation_id))

    # --- retired: notify exactly once -------------------------------------------------------------
    async def _notify_once(self, run: Run) -> None:
        claim = run.claim
        if claim.notified:
            await self._lease.write(run, claim={"step": RotationStep.NOTIFYING})
            return
        # Recorded before sending: a resume after this point never sends a second notice.
        await self._lease.write(run, claim={"step": RotationStep.NOTIFYING, "notified": True})
        await self._send_notice(run)

    async def _send_notice(self, run: Run) -> None:
        claim = run.claim
        include_secret = run.config.notifications.include_secret_in_email
        staged = await self._staged_secret(run) if include_secret else None
        status = run.status
        summary = RotationSummary(
            app_id=run.app_id,
            rotation_id=claim.rotation_id,
            key_id=claim.key_id,
            hint=claim.key_hint,
            expires_at=status.expires_at,
            integrations={
                k: v for k, v in status.integrations.items() if k in self._delivery.names(run.config)
            },
            warnings=list(claim.warnings),
            compromised=claim.compromised,
            secret=staged.value
            if staged is not None and run.config.notifications.include_secret_in_email
            else None,
        )
        await self._notify(run, summary, succeeded=True)
        self._checkpoint("notified")

    # --- notifying: finish ------------------------------------------------------------------------
    async def _finish(self, run: Run) -> str:
        claim, status = run.claim, run.status
        now = self._clock()
        failed = [
            n
            for n in self._delivery.names(run.config)
            if (status.integrations.get(n) or _PENDING).result != "succeeded"
        ]
        retry_needed = bool(
            failed or status.pending_revocation or status.cleanup_key_ids or _needs_retry(claim.warnings)
        )
        outcome = RotationOutcome.DEGRADED if retry_needed else RotationOutcome.SUCCEEDED
        detail = ", ".join(failed) + " failed" if failed else ""
        if status.pending_revocation is not None:
            detail = (detail + "; " if detail else "") + "revocation pending"
        completed = self._events.outcome(
            run.app_id,
            claim.rotation_id,
            "rotation.completed",
            f"Rotation {outcome.value}" + (f": {detail}" if detail else ""),
            step="finish",
            level=LogLevel.WARNING if retry_needed else LogLevel.INFO,
            key_id=claim.key_id,
            details={
                "outcome": outcome.value,
                "integrations": {
                    k: v.result
                    for k, v in status.integrations.items()
                    if k in self._delivery.names(run.config)
                },
                "warnings": list(claim.warnings),
                "compromised": claim.compromised,
            },
        )
        await self._lease.write(
            run,
            outcome=completed,
            in_progress=None,
            enqueued_at=status.enqueued_at if status.pending is not None else None,
            last_result=RotationResult.DEGRADED if retry_needed else RotationResult.SUCCEEDED,
            last_error=None,
            consecutive_failures=0,
            last_rotation_id=claim.rotation_id,
            recent_rotation_ids=remember(status.recent_rotation_ids, claim.rotation_id),
            late_creates=_late_creates(status, claim),
            retry_at=self._next_look(
                run, now, retry_needed=retry_needed, late_creates=_late_creates(status, claim)
            ),
        )
        await self._log_outcomes(run)
        self._checkpoint("finished")
        return "rotated"

    # --- maintenance between rotations -------------------------------------------------------------
    async def _maintain(self, run: Run) -> str:
        """Remove credentials whose removal was refused before (``cleanup_key_ids``), deliver the
        current secret to destinations that missed it, revoke what a compromised rotation deferred,
        retire the expired previous one."""
        status, config = run.status, run.config
        now = self._clock()
        object_id = str(config.object_id)
        cleanup = []
        for key_id in status.cleanup_key_ids:
            try:
                await self._credentials.remove(object_id, key_id, "remove credential owed")
                await self._event(
                    run,
                    "credential.orphanRemoved",
                    "Removed a credential whose removal was refused before (a failed rotation's, or superseded)",
                    step="retire",
                    key_id=key_id,
                )
            except Exception as error:  # noqa: BLE001 - kept for the next pass
                cleanup.append(key_id)
                logger.warning("cleanup of %s failed: %s", key_id, type(error).__name__)
        if cleanup != status.cleanup_key_ids:
            removed_previous = (
                status.previous_key_id in status.cleanup_key_ids and status.previous_key_id not in cleanup
            )
            changed: dict[str, Any] = {"cleanup_key_ids": cleanup}
            if removed_previous:
                changed["previous_key_id"] = None
            await self._lease.write(run, **changed)
        await self._sweep_late_creates(run, now)
        if status.retry_at is not None and now >= status.retry_at:
            await self._retry_destinations(run)
        status = run.status
        warnings: list[str] = []
        changes: dict[str, Any] = {}
        revocation = status.pending_revocation
        current = status.current_key_id
        if revocation is not None and current is not None and not self._not_confirmed(run, current):
            # Revoke everything but the current credential (a newer rotation may have replaced the
            # compromised one's: the intent carries on to whatever is current).
            app = await self._credentials.read(config)
            left, warnings = await self._revoke(run, app, current, revocation.revoke_unmanaged)
            changes["pending_revocation"] = left
            if left is None:
                changes["previous_key_id"] = None
        if status.retire_at is not None and now >= status.retire_at:
            look_again: datetime | None = None  # early retirement (opted in) not yet: when to look again
            app = await self._credentials.read(config)
            superseded = self._credentials.superseded(app, config, status, keep_previous=False)
            expired = [p for p in superseded if p.key_id == status.previous_key_id and p.is_expired(now)]
            previous = next((p for p in app.passwords if p.key_id == status.previous_key_id), None)
            if (
                previous is not None
                and not previous.is_expired(now)
                and config.rotation.retire_unused_previous_after_hours
            ):
                later = await self._retire_early(run, previous, now)
                if later is None:
                    expired = [p for p in superseded if p.key_id == previous.key_id]
                else:
                    # Not yet: the previous credential stays; others superseded are still removed.
                    superseded = [p for p in superseded if p.key_id != previous.key_id]
                    look_again = later
            others = [p for p in superseded if p.key_id != status.previous_key_id]
            refused = await self._remove_all(run, app, [*expired, *others], "Removed a superseded credential")
            warnings += refused
            owed = self._owed_after(app, refused, cleanup)
            if owed != cleanup:
                changes["cleanup_key_ids"] = cleanup = owed
            warnings += await self._remove_all(
                run,
                app,
                self._credentials.expired_foreign(app, config),
                "Removed an expired credential (opted in)",
            )
            changes["retire_at"] = look_again
            if not _failed_keys(warnings):
                changes["previous_key_id"] = None if expired else status.previous_key_id
        failed = [
            n
            for n in self._delivery.names(config)
            if (status.integrations.get(n) or _PENDING).result != "succeeded"
        ]
        revocation_left = changes.get("pending_revocation", status.pending_revocation)
        retry_needed = bool(failed or revocation_left or cleanup or _needs_retry(warnings))
        result = status.last_result
        if status.last_result in (RotationResult.DEGRADED, RotationResult.SUCCEEDED):
            result = RotationResult.DEGRADED if retry_needed else RotationResult.SUCCEEDED
        await self._lease.write(
            run,
            in_progress=None,
            enqueued_at=status.enqueued_at if status.pending is not None else None,
            retry_at=self._next_look(run, now, retry_needed=retry_needed),
            last_result=result,
            recent_rotation_ids=remember(status.recent_rotation_ids, run.claim.rotation_id),
            **changes,
        )
        return "delivered"

    async def _retire_early(self, run: Run, previous: PasswordInfo, now: datetime) -> datetime | None:
        """Opted-in early retirement of the previous credential: None when it may go now, else when
        to look again. It may go once every destination confirmed the current secret and Graph's
        sign-in report shows no use of the previous one for the configured hours since then."""
        config, status = run.config, run.status
        wait = timedelta(hours=config.rotation.retire_unused_previous_after_hours or 0)
        expiry = previous.end + RETIRE_MARGIN if previous.end else now + wait
        current = status.current_key_id
        waiting = self._not_confirmed(run, current) if current else ["the current credential"]
        if waiting:
            await self._event(
                run,
                "credential.earlyRetirementWaiting",
                f"The previous credential stays: {', '.join(waiting)} did not confirm the new secret yet",
                step="retire",
                key_id=previous.key_id,
            )
            return min(expiry, now + wait)
        confirmed = [
            result.at
            for name, result in status.integrations.items()
            if name in self._delivery.names(config) and result.confirmed_key_id == current
        ]
        since = max([*confirmed, status.last_updated_at or now])
        if self._sign_ins is None:
            return expiry
        try:
            used = await self._sign_ins.last_used(run.app_id)
        except PermissionMissingError as error:
            await self._event(
                run,
                "credential.earlyRetirementUnavailable",
                f"Early retirement needs sign-in evidence: grant {error.permission}; the previous credential "
                "is retired when it expires",
                level=LogLevel.WARNING,
                step="retire",
                key_id=previous.key_id,
                code="AuditLogReadMissing",
            )
            return expiry
        except ExternalServiceError as error:
            logger.warning("sign-in activity unavailable: %s", type(error).__name__)
            return min(expiry, now + INTEGRATION_RETRY_DELAY)
        last_used = used.get(previous.key_id.lower())
        quiet_since = max(since, last_used) if last_used else since
        if now < quiet_since + wait:
            if last_used is not None and last_used > since:
                await self._event(
                    run,
                    "credential.stillInUse",
                    f"The previous credential signed in at {rfc3339(last_used)}, after every destination "
                    "confirmed the new secret: something still uses it (see the consumers list)",
                    level=LogLevel.WARNING,
                    step="retire",
                    key_id=previous.key_id,
                    details={"lastSignInAt": rfc3339(last_used)},
                )
            return min(expiry, quiet_since + wait)
        await self._event(
            run,
            "credential.unusedEvidence",
            "The previous credential was not used since every destination confirmed the new secret "
            f"({rfc3339(since)}; last sign-in {rfc3339(last_used) if last_used else 'none in the report'}): "
            "retiring it early (opted in)",
            step="retire",
            key_id=previous.key_id,
            details={
                "lastSignInAt": rfc3339(last_used) if last_used else None,
                "confirmedAt": rfc3339(since),
            },
        )
        return None

    def _next_look(
        self, run: Run, now: datetime, *, retry_needed: bool, late_creates: list[LateCreate] | None = None
    ) -> datetime | None:
        """When maintenance must look again (``retry_at``): after a failure, the retry delay; once a
        write that may still land can land no more, to write the current secret again over whatever
        it left (``LateWrite``); and once an unanswered addPassword can land no more, to remove what
        it created (``LateCreate``)."""
        status = run.status
        settling = [
            late.settles_at() for late in (status.late_creates if late_creates is None else late_creates)
        ]
        for name in self._delivery.names(run.config):
            settled = (status.integrations.get(name) or _PENDING).late_writes_settle_at()
            if settled is not None:
                settling.append(settled)
        moments = [now + INTEGRATION_RETRY_DELAY] if retry_needed else []
        moments += [moment if moment > now else now + INTEGRATION_RETRY_DELAY for moment in settling]
        return min(moments, default=None)

    async def _sweep_late_creates(self, run: Run, now: datetime) -> None:
        """Remove what an unanswered addPassword created once it can land no more: credentials named
        for that rotation that nothing uses (``Credentials.orphans``)."""
        status = run.status
        settled = [late for late in status.late_creates if late.settles_at() <= now]
        if not settled:
            return
        app = await self._credentials.read(run.config)
        left = [late for late in status.late_creates if late.settles_at() > now]
        for late in settled:
            found = self._credentials.orphans(app, run.config, status, late.rotation_id)
            warnings = await self._remove_all(
                run, app, found, "Removed a credential an unanswered addPassword created late"
            )
            if _failed_keys(warnings):
                left.append(late)  # tried again at the next look
        await self._lease.write(run, late_creates=left)

    async def _retry_destinations(self, run: Run) -> None:
        """Deliver the current secret again to each destination that failed, and to each whose
        unanswered writes can land no more (what they left, if anything, is then overwritten)."""
        status, now = run.status, self._clock()
        configured = set(self._delivery.names(run.config))

        def needs_delivery(result: IntegrationStatus) -> bool:
            settled = result.late_writes_settle_at()
            return result.result != "succeeded" or (settled is not None and settled <= now)

        pending = [
            n
            for n in self._delivery.names(run.config)
            if needs_delivery(status.integrations.get(n) or _PENDING)
        ]
        if not pending or status.current_key_id is None:
            return
        staged = await self._current_staged(run.app_id, status)
        if staged is None:
            await self._event(
                run,
                "integrations.retried",
                "The current secret is not in the rotator's vault any more: rotate to deliver a new one",
                level=LogLevel.WARNING,
                step="deploy",
                code="StagedSecretMissing",
            )
            return
        for name in pending:
            result = await self._delivery.deliver(
                run.config, name, staged, run.claim.rotation_id, status.integrations.get(name)
            )
            await self._lease.write(run, integrations={**run.status.integrations, name: result})
        still = [n for n in pending if n in configured and run.status.integrations[n].result != "succeeded"]
        await self._event(
            run,
            "integrations.retried",
            "Delivered the current secret again (after a failure, or once an unanswered write could "
            "land no more): " + (", ".join(still) + " still failing" if still else "all delivered"),
            level=LogLevel.WARNING if still else LogLevel.INFO,
            step="deploy",
        )

    async def _current_staged(self, app_id: str, status: ApplicationStatus) -> VaultSecret | None:
        if status.current_rotation_id:
            staged = await self._staging.get(app_id, status.current_rotation_id, status.current_version)
            if staged is not None and staged.tags.get("keyId") == status.current_key_id:
                return staged
            return None
        return await self._staging.find_legacy(app_id, str(status.current_key_id))

    async def _end_maintenance_with(self, run: Run, error: Exception) -> str:
        info = error_info(error, "maintenance", self._clock())
        await self._event(
            run,
            "maintenance.failed",
            f"Maintenance stopped: {info.message}",
            level=LogLevel.WARNING,
            step="retire",
            code=info.code,
        )
        await self._lease.write(
            run, in_progress=None, retry_at=self._clock() + INTEGRATION_RETRY_DELAY, last_error=info
        )
        return "delivered"

    # --- failure policy -------------------------------------------------------------------------
    async def _warn_and_skip(self, run: Run, step: RotationStep, error: Exception) -> None:
        """A refusal after delivery began: record it, keep going, and have the timer retry the rest."""
        info = error_info(error, step.value, self._clock())
        warning = f"could not complete {step.value}: {info.message} ({info.code})"
        await self._event(
            run, "rotation.warning", warning, level=LogLevel.WARNING, step=step.value, code=info.code
        )
        claim, status = run.claim, run.status
        extra: dict[str, Any] = {}
        if step == RotationStep.DELIVERING and claim.key_id and status.current_key_id != claim.key_id:
            # Commit anyway: a destination may hold the new secret, so it must become current.
            extra = {
                "current_key_id": claim.key_id,
                "current_rotation_id": claim.rotation_id,
                "current_version": claim.staged_version,
                "previous_key_id": status.current_key_id,
                "previous_rotation_id": status.current_rotation_id,
                "last_updated_at": self._clock(),
            }
        if step == RotationStep.DELIVERED and claim.compromised and claim.key_id:
            extra["pending_revocation"] = PendingRevocation(
                rotation_id=claim.rotation_id, key_id=claim.key_id, revoke_unmanaged=claim.revoke_unmanaged
            )
        await self._lease.write(
            run,
            claim={
                "step": _NEXT.get(step, RotationStep.NOTIFYING),
                "warnings": [*claim.warnings, warning][-20:],
            },
            **extra,
        )

    async def _fail(self, run: Run, error: RotationError) -> str:
        """Before delivery: remove only this rotation's credential; the previous one is untouched."""
        claim, status = run.claim, run.status
        info = error_info(error, error.step, self._clock())
        cleanup = list(status.cleanup_key_ids)
        late_creates = _late_creates(status, claim)
        if error.code != "ApplicationIdMismatch":
            try:
                created = await self._credentials_of(run)
            except TransientServiceError:
                if _pauses(run) + 1 < MAX_PAUSES:
                    raise
                # Out of pauses with Entra unreadable: fail now all the same. The recorded
                # credential goes on the cleanup list, and any other named for this rotation is
                # found by name at the next look (a ``LateCreate`` of now).
                created = []
                cleanup += [claim.key_id] if claim.key_id and claim.key_id not in cleanup else []
                late = LateCreate(rotation_id=claim.rotation_id, at=self._clock() - LATE_WRITE_WINDOW)
                late_creates = [*[x for x in late_creates if x.rotation_id != claim.rotation_id], late][-10:]
            for key_id in created:
                try:
                    await self._credentials.remove(
                        str(run.config.object_id), key_id, "remove failed credential"
                    )
                except Exception as cleanup_error:  # noqa: BLE001 - recorded, the timer retries it
                    logger.warning("could not remove failed credential: %s", type(cleanup_error).__name__)
                    cleanup.append(key_id)
        kept = [key_id for key_id in cleanup if key_id not in status.cleanup_key_ids]
        if kept:
            # Said with the failure, or the log and the alert would read as if nothing were left.
            info = info.model_copy(
                update={
                    "message": f"{info.message}; Entra ID did not remove its credential yet (keyId "
                    f"{', '.join(kept)}): the timer removes it"
                }
            )
        await self._best_effort(self._staging.discard(run.app_id, claim.rotation_id))
        # A rotation that keeps failing for the same reason alerts once, then again only when the
        # reason changes or a day has passed: not at every retry.
        previous = status.last_error if status.last_result == RotationResult.FAILED else None
        repeated = previous is not None and (previous.code, previous.step) == (info.code, info.step)
        alerted_at = status.failure_alerted_at
        alert = not (repeated and alerted_at is not None and info.at - alerted_at < FAILURE_ALERT_REPEAT)
        failed = self._events.outcome(
            run.app_id,
            claim.rotation_id,
            "rotation.failed",
            info.message,
            level=LogLevel.ERROR,
            step=error.step,
            code=info.code,
            details={"outcome": RotationOutcome.FAILED.value},
        )
        await self._lease.write(
            run,
            outcome=failed,
            in_progress=None,
            enqueued_at=status.enqueued_at if status.pending is not None else None,
            last_result=RotationResult.FAILED,
            last_error=info,
            failure_alerted_at=info.at if alert else alerted_at,
            consecutive_failures=status.consecutive_failures + 1,
            last_rotation_id=claim.rotation_id,
            recent_rotation_ids=remember(status.recent_rotation_ids, claim.rotation_id),
            cleanup_key_ids=cleanup,
            late_creates=late_creates,
            retry_at=_earliest(
                self._clock() + INTEGRATION_RETRY_DELAY if cleanup else status.retry_at,
                *(max(late.settles_at(), self._clock() + INTEGRATION_RETRY_DELAY) for late in late_creates),
            ),
        )
        await self._log_outcomes(run)
        if alert:
            await self._notify(
                run,
                RotationSummary(
                    app_id=run.app_id,
                    rotation_id=claim.rotation_id,
                    warnings=list(claim.warnings),
                    error=info,
                ),
                succeeded=False,
            )
        else:
            await self._events.record(
                run.app_id,
                claim.rotation_id,
                "notification.suppressed",
                f"No failure alert: the same failure ({info.code}) was alerted at {rfc3339(alerted_at or info.at)}; "
                "the next one goes out when the reason changes or after a day",
                step="notify",
                code=info.code,
            )
        return "failed"

    async def _credentials_of(self, run: Run) -> list[str]:
        """The credentials this rotation created: the recorded one and any named for it (a lost
        answer, a crash before the record) that nothing uses. If Entra cannot be read now, the
        rotation pauses and fails later, so no credential of its is left untraced."""
        claim = run.claim
        found = [claim.key_id] if claim.key_id else []
        try:
            app = await self._credentials.read(run.config)
        except Exception as error:
            if not is_retryable(error):
                return found  # gone, refused or another application: nothing more to find there
            raise TransientServiceError(
                "Entra ID cannot be read to clean up a failed rotation; it will be tried again",
                service="graph",
                app_id=run.app_id,
            ) from error
        found += [p.key_id for p in self._credentials.orphans(app, run.config, run.status, claim.rotation_id)]
        return list(dict.fromkeys(found))

    async def _pause(self, run: Run, error: Exception) -> None:
        """A retryable failure: leave the claim resumable at once by the job's next delivery."""
        try:
            step = run.step.value
        except LeaseLost:
            return
        info = error_info(error, step, self._clock())
        await self._event(
            run,
            "rotation.paused",
            f"Will retry: {info.message}",
            level=LogLevel.WARNING,
            step=step,
            code=info.code,
        )
        try:
            await self._lease.release_now(run, last_error=info)
        except Exception:  # noqa: BLE001 - the claim then goes stale by itself
            logger.warning("could not release claim for %s", run.app_id)

    # --- helpers --------------------------------------------------------------------------------
    async def _notify(self, run: Run, summary: RotationSummary, *, succeeded: bool) -> None:
        try:
            if succeeded:
                await self._notifier.rotation_succeeded(run.config, summary)
            else:
                await self._notifier.rotation_failed(run.config, summary)
        except Exception as error:  # noqa: BLE001 - email never blocks a rotation
            await self._event(
                run,
                "notification.failed",
                f"Notification failed: {type(error).__name__}",
                level=LogLevel.WARNING,
                step="notify",
            )

    async def _best_effort(self, operation: Awaitable[Any]) -> None:
        try:
            await operation
        except Exception as error:  # noqa: BLE001 - tidying up; never decides an outcome
            logger.warning("best-effort step failed: %s", type(error).__name__)

    async def _log_outcomes(self, run: Run) -> None:
        """After the write that ended ``run``'s rotation (its outcome in the row's ``unlogged``):
        write the outcome to the log and remove it from the row. When that fails, the row keeps it
        and ``handle`` has the job delivered again, whose claim settles it."""
        self._checkpoint("outcome_written")
        try:
            settled = await settle_outcomes(self._events, self._applications, run.stored, self._clock())
        except Exception as error:  # noqa: BLE001 - kept in the row; the job's next delivery settles it
            logger.warning("outcome of %s kept with the application: %s", run.app_id, type(error).__name__)
            run.outcome_unlogged = True
            return
        if settled is not None:
            run.stored = settled

    async def _event(self, run: Run, event: str, message: str, **fields: Any) -> None:
        status = run.stored.status.in_progress
        rotation_id = status.rotation_id if status is not None else run.status.last_rotation_id
        await self._events.record(run.app_id, rotation_id, event, message, **fields)


_PENDING = IntegrationStatus(result="pending", at=datetime.min)


def _without(app: EntraApplication, key_id: str) -> EntraApplication:
    return EntraApplication(
        app.object_id,
        app.app_id,
        app.display_name,
        app.sign_in_audience,
        tuple(p for p in app.passwords if p.key_id != key_id),
    )


def _failed_keys(warnings: list[str]) -> set[str]:
    prefix = "could not remove "
    return {w[len(prefix) :].split(":")[0] for w in warnings if w.startswith(prefix)}


def _needs_retry(warnings: list[str]) -> bool:
    """Warnings of the form ``could not ...`` name work the timer must try again."""
    return any(w.startswith("could not") for w in warnings)


def _late_creates(status: ApplicationStatus, claim: RotationClaim) -> list[LateCreate]:
    """The status's ``late_creates`` with the ending rotation's, if its addPassword went unanswered."""
    if claim.unanswered_create_at is None:
        return status.late_creates
    late = LateCreate(rotation_id=claim.rotation_id, at=claim.unanswered_create_at)
    return [*[x for x in status.late_creates if x.rotation_id != claim.rotation_id], late][-10:]


def _earliest(*moments: datetime | None) -> datetime | None:
    return min((moment for moment in moments if moment is not None), default=None)


def _pauses(run: Run) -> int:
    try:
        return run.claim.pauses
    except LeaseLost:
        return 0


def _as_rotation_error(error: Exception, step: RotationStep) -> RotationError:
    if isinstance(error, RotationError):
        return error
    code = getattr(error, "code", None) or (
        "NotFound" if isinstance(error, NotFoundError) else type(error).__name__
    )
    message = getattr(error, "message", None) or "Unexpected error"
    return RotationError(str(message), step=step.value, code=str(code))


__all__ = [
    "TERMINAL_EVENTS",
    "EngineSettings",
    "NotFoundError",
    "NullNotifier",
    "RotationEngine",
    "RotationSummary",
    "integration_problems",
]
