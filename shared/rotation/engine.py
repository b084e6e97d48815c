"""The rotation protocol. Every step can run again safely; a crash anywhere resumes cleanly.

1. Claim    conditional (ETag) write of ``status.inProgress`` with the rotation id and an owner
            nonce. A fresh claim held by someone else makes this job back off; a stale one (its
            worker died) is taken over and *its* rotation id resumed.
2. Create   ``addPassword`` named ``<prefix>:<rotationId>``, end = now + lifetime (stepped down if
            the tenant policy refuses it). Credentials with this rotation's name but no staged
            secret are orphans (their text is lost): they are removed before creating again.
3. Stage    the secret goes at once to the rotator's own vault, tagged with the rotation id. From
            here on every step, and every retry, reads it from there.
4. Verify   a token is acquired with the new secret, retrying through Entra's propagation delay.
            A secret that never works is removed and the rotation fails; the old one is untouched.
5. Deploy   each integration independently, with bounded retries; results recorded per integration.
6. Notify, 7. Finish (status, staged version marked current, claim released), 8. Retire expired
            credentials the rotator created (others only if the operator opted in); in
            "compromised" mode every other password is removed once the new one is delivered.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

from shared.adapters.entra import EntraApplication, EntraDirectory, NewPassword, PasswordInfo, SecretVerifier
from shared.adapters.retry import RetryPolicy, retry
from shared.adapters.vault import StagingVault, VaultSecret
from shared.domain.models import (
    ApplicationConfig,
    ApplicationStatus,
    ErrorInfo,
    IntegrationStatus,
    JobReason,
    LogLevel,
    RotationClaim,
    RotationJob,
    RotationResult,
)
from shared.domain.schedule import is_due
from shared.domain.secret import SecretValue
from shared.errors import (
    ConflictError,
    ExternalServiceError,
    FieldProblem,
    NotFoundError,
    RotationError,
    RotatorError,
    TransientServiceError,
    is_retryable,
)
from shared.integrations.base import DeployContext, PluginRegistry
from shared.rotation.events import EventRecorder
from shared.storage.applications import ApplicationStore, StoredApplication

logger = logging.getLogger("rotator.engine")

POLICY_ERROR = "CredentialInvalidLifetimeAsPerAppPolicy"
# Tenant policies usually cap lifetimes at round numbers of days; try these below the request.
POLICY_STEP_DOWN_DAYS = (60, 30, 14, 7, 3, 1)
# Failed integrations are tried again from the staged secret after this long.
INTEGRATION_RETRY_DELAY = timedelta(minutes=15)
# A superseded credential is removed this long after it expires (clock skew against Entra).
RETIRE_MARGIN = timedelta(minutes=1)


class Checkpoint(Protocol):
    """Called after each durable step; tests use it to kill the worker at every step in turn."""

    def __call__(self, step: str) -> None: ...


def _no_checkpoint(step: str) -> None:
    return None


class Notifier(Protocol):
    async def rotation_succeeded(self, app: ApplicationConfig, summary: RotationSummary) -> None: ...

    async def rotation_failed(self, app: ApplicationConfig, summary: RotationSummary) -> None: ...


class NullNotifier:
    async def rotation_succeeded(self, app: ApplicationConfig, summary: RotationSummary) -> None:
        return None

    async def rotation_failed(self, app: ApplicationConfig, summary: RotationSummary) -> None:
        return None


@dataclass
class RotationSummary:
    """What happened, for notifications. ``secret`` is set only for the opt-in secret email."""

    app_id: str
    rotation_id: str
    key_id: str | None = None
    hint: str | None = None
    expires_at: datetime | None = None
    integrations: dict[str, IntegrationStatus] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: ErrorInfo | None = None
    compromised: bool = False
    secret: SecretValue | None = None


@dataclass(frozen=True)
class EngineSettings:
    credential_prefix: str
    claim_timeout: timedelta
    verify_timeout_seconds: float
    retry_policy: RetryPolicy = RetryPolicy()
    verify_first_delay: float = 1.0
    verify_max_delay: float = 10.0


@dataclass
class _Run:
    """One claimed rotation: the freshest stored row and what this invocation owns."""

    stored: StoredApplication
    rotation_id: str
    owner: str
    compromised: bool
    resumed: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def app_id(self) -> str:
        return self.stored.app_id

    @property
    def config(self) -> ApplicationConfig:
        return self.stored.config


class RotationEngine:
    def __init__(
        self,
        *,
        applications: ApplicationStore,
        events: EventRecorder,
        directory: EntraDirectory,
        verifier: SecretVerifier,
        staging: StagingVault,
        plugins: PluginRegistry,
        notifier: Notifier,
        settings: EngineSettings,
        clock: Callable[[], datetime],
        services: Any = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        checkpoint: Checkpoint = _no_checkpoint,
    ) -> None:
        self._applications = applications
        self._events = events
        self._directory = directory
        self._verifier = verifier
        self._staging = staging
        self._plugins = plugins
        self._notifier = notifier
        self._settings = settings
        self._clock = clock
        self._services = services
        self._sleep = sleep
        self._checkpoint = checkpoint

    # --- entry point ----------------------------------------------------------------------------
    async def handle(self, job: RotationJob) -> str:
        """Process one queue job. Returns what happened; raises only to have the job retried."""
        run = await self._claim(job)
        if isinstance(run, str):
            logger.info("job %s for %s skipped: %s", job.rotation_id, job.app_id, run)
            return run
        claim = run.stored.status.in_progress
        resuming_delivery = run.resumed and claim is not None and claim.step == "delivering"
        try:
            if not resuming_delivery and (run.resumed or self._should_rotate(job, run)):
                await self._rotate(run)
                return "rotated"
            await self._set_step(run, "delivering")
            await self._maintain(run)
            return "delivered"
        except RotationError as error:
            await self._fail(run, error)
            return "failed"
        except ExternalServiceError as error:
            if is_retryable(error):
                await self._pause(run, error)
                raise
            # A refusal (403, 400, ...) will not change by retrying the same job.
            await self._fail(run, RotationError(error.message, step=self._current_step(run), code=error.code))
            return "failed"
        except NotFoundError as error:
            await self._fail(run, RotationError(error.message, step=self._current_step(run), code="NotFound"))
            return "failed"
        except Exception as error:
            await self._pause(run, error)
            raise

    def _current_step(self, run: _Run) -> str:
        claim = run.stored.status.in_progress
        return claim.step if claim else "unknown"

    def _should_rotate(self, job: RotationJob, run: _Run) -> bool:
        if job.reason == JobReason.MANUAL or run.compromised:
            return True
        return is_due(run.config, run.stored.status, self._clock())

    # --- 1. claim ------------------------------------------------------------------------------
    async def _claim(self, job: RotationJob) -> _Run | str:
        for _ in range(5):
            stored = await self._applications.find(job.app_id)
            if stored is None:
                return "application is not registered"
            status = stored.status
            now = self._clock()
            claim = status.in_progress
            resumed = False
            compromised = job.compromised
            if claim is not None:
                if claim.expires_at > now:
                    # Held by a live worker, or by a dead one whose lease still runs: either way
                    # nobody may act before it expires, and then the timer enqueues a takeover.
                    # So this copy is acknowledged, not retried into the poison queue.
                    return f"rotation {claim.rotation_id} is in progress"
                # The worker that held this claim died: resume its rotation, not a new one.
                rotation_id, resumed = claim.rotation_id, True
                compromised = compromised or claim.compromised
            else:
                if job.rotation_id == status.last_rotation_id:
                    return "rotation already finished"
                if job.reason != JobReason.MANUAL:
                    due = is_due(stored.config, status, now)
                    pending = any(t is not None and now >= t for t in (status.retry_at, status.retire_at))
                    if not (due or pending or compromised):
                        await self._clear_enqueued(stored)
                        return "not due"
                elif stored.config.state != "Active":
                    return "application is Disabled"
                rotation_id = job.rotation_id
            owner = uuid.uuid4().hex
            new_claim = RotationClaim(
                rotation_id=rotation_id,
                owner=owner,
                claimed_at=claim.claimed_at if claim and resumed else now,
                expires_at=now + self._settings.claim_timeout,
                step=claim.step if claim and resumed else "claimed",
                compromised=compromised,
            )
            try:
                saved = await self._applications.save(
                    stored,
                    stored.config,
                    status.model_copy(update={"in_progress": new_claim, "enqueued_at": None}),
                    now,
                )
            except ConflictError:
                continue
            run = _Run(saved, rotation_id, owner, compromised, resumed)
            await self._event(
                run,
                "rotation.resumed" if resumed else "rotation.started",
                f"Rotation {'resumed after a stale claim' if resumed else 'started'} ({job.reason.value})",
                step="claim",
                details={"reason": job.reason.value, "compromised": compromised},
            )
            return run
        raise TransientServiceError("Could not claim the application", service="rotator", app_id=job.app_id)

    async def _clear_enqueued(self, stored: StoredApplication) -> None:
        if stored.status.enqueued_at is None:
            return
        try:
            await self._applications.save(
                stored, stored.config, stored.status.model_copy(update={"enqueued_at": None}), self._clock()
            )
        except ConflictError:
            pass  # someone else wrote meanwhile; the timer will look again

    async def _update(self, run: _Run, **status_changes: Any) -> None:
        """Write status changes under our claim; survives concurrent config edits, not takeovers."""
        for _ in range(5):
            status = run.stored.status
            claim = status.in_progress
            if claim is None or claim.owner != run.owner:
                raise TransientServiceError(
                    "Claim was taken over by another worker", service="rotator", app_id=run.app_id
                )
            changes = dict(status_changes)
            if "in_progress" not in changes:
                # Each durable step renews the lease.
                changes["in_progress"] = claim.model_copy(
                    update={"expires_at": self._clock() + self._settings.claim_timeout}
                )
            try:
                run.stored = await self._applications.save(
                    run.stored, run.stored.config, status.model_copy(update=changes), self._clock()
                )
                return
            except ConflictError:
                run.stored = await self._applications.get(run.app_id)
        raise TransientServiceError("Could not update status", service="rotator", app_id=run.app_id)

    async def _set_step(self, run: _Run, step: str) -> None:
        claim = run.stored.status.in_progress
        assert claim is not None
        await self._update(
            run,
            in_progress=claim.model_copy(
                update={"step": step, "expires_at": self._clock() + self._settings.claim_timeout}
            ),
        )
        self._checkpoint(step)

    # --- the rotation --------------------------------------------------------------------------
    async def _rotate(self, run: _Run) -> None:
        # A misconfigured integration fails the rotation before Entra is touched.
        problems = integration_problems(run.config, self._plugins)
        if problems:
            raise RotationError(
                "Integration settings are invalid: " + "; ".join(f"{p.field} {p.message}" for p in problems),
                step="validate",
                code="IntegrationMisconfigured",
            )
        app = await self._call(
            lambda: self._directory.get_application(str(run.config.object_id)), "read application"
        )
        staged = await self._staging.find(run.app_id, rotationId=run.rotation_id)
        if staged is None:
            staged = await self._create_and_stage(run, app)
        elif run.resumed:
            await self._event(
                run,
                "secret.reused",
                "Resumed with the secret staged earlier",
                step="stage",
                key_id=staged.tags.get("keyId"),
            )
        key_id = staged.tags["keyId"]
        await self._verify(run, key_id, staged.value)
        await self._set_step(run, "verified")

        results = await self._deploy_all(run, staged, key_id, only=None)
        self._checkpoint("deployed")

        if run.compromised:
            await self._revoke_others(run, key_id)

        password = await self._find_password(run, key_id)
        summary = RotationSummary(
            app_id=run.app_id,
            rotation_id=run.rotation_id,
            key_id=key_id,
            hint=password.hint if password else None,
            expires_at=staged.expires_on or (password.end if password else None),
            integrations=results,
            warnings=run.warnings,
            compromised=run.compromised,
            secret=staged.value if run.config.notifications.include_secret_in_email else None,
        )
        await self._notify(run, summary, succeeded=True)
        await self._finish(run, staged, password, results)
        self._checkpoint("finished")
        await self._retire(run, key_id)

    async def _create_and_stage(self, run: _Run, app: EntraApplication) -> VaultSecret:
        name = f"{self._settings.credential_prefix}:{run.rotation_id}"
        object_id = app.object_id
        # A credential named for this rotation but not staged lost its text in a crash: remove it.
        for orphan in [p for p in app.passwords if p.display_name == name]:
            await self._call(
                partial(self._directory.remove_password, object_id, orphan.key_id), "remove orphan"
            )
            await self._event(
                run,
                "credential.orphanRemoved",
                "Removed a credential whose secret was never staged",
                level=LogLevel.WARNING,
                step="create",
                key_id=orphan.key_id,
            )
            app = EntraApplication(
                app.object_id,
                app.app_id,
                app.display_name,
                app.sign_in_audience,
                tuple(p for p in app.passwords if p.key_id != orphan.key_id),
            )
        await self._make_room(run, app)
        new = await self._add_password(run, object_id, name)
        self._checkpoint("created")
        await self._event(
            run,
            "secret.created",
            f"Created credential (hint {new.info.hint}, expires "
            f"{new.info.end.isoformat() if new.info.end else 'unknown'})",
            step="create",
            key_id=new.info.key_id,
        )
        try:
            await retry(
                lambda: self._staging.stage(
                    run.app_id, run.rotation_id, new.info.key_id, new.secret, new.info.end
                ),
                policy=self._settings.retry_policy,
                describe="stage secret",
                sleep=self._sleep,
            )
        except Exception:
            # Never leave a credential nobody can trace or use: take it back before failing.
            try:
                await self._directory.remove_password(object_id, new.info.key_id)
            except Exception as cleanup_error:  # noqa: BLE001 - a later resume removes it by name
                logger.warning("could not remove unstaged credential: %s", type(cleanup_error).__name__)
            raise
        self._checkpoint("staged_written")
        await self._set_step(run, "staged")
        staged = await self._staging.find(run.app_id, rotationId=run.rotation_id)
        if staged is None:
            raise TransientServiceError(
                "Staged secret not readable yet", service="keyvault", app_id=run.app_id
            )
        await self._event(
            run, "secret.staged", "Secret staged in the rotator's vault", step="stage", key_id=new.info.key_id
        )
        return staged

    async def _add_password(self, run: _Run, object_id: str, name: str) -> NewPassword:
        requested = run.config.rotation.secret_lifetime_days
        candidates = [requested, *[d for d in POLICY_STEP_DOWN_DAYS if d < requested]]
        for index, days in enumerate(candidates):
            # A margin under a capped lifetime absorbs clock skew against the policy's own clock.
            margin = timedelta(minutes=5) if index else timedelta(0)
            end = self._clock() + timedelta(days=days) - margin
            try:
                new = await self._add_once(run, object_id, name, end)
            except ExternalServiceError as error:
                if error.code == POLICY_ERROR and index + 1 < len(candidates):
                    continue
                if error.code == POLICY_ERROR:
                    raise RotationError(
                        "The tenant's app management policy refuses every lifetime tried",
                        step="create",
                        code=POLICY_ERROR,
                    ) from None
                if error.status == 400 and "password" in error.message.lower():
                    raise RotationError(
                        "Entra refused another password: the credential cap is reached",
                        step="create",
                        code=error.code or "CredentialCapReached",
                    ) from None
                raise
            if days != requested:
                warning = f"Tenant policy capped the lifetime: {days} days instead of {requested}"
                run.warnings.append(warning)
                await self._event(
                    run,
                    "policy.capped",
                    warning,
                    level=LogLevel.WARNING,
                    step="create",
                    code=POLICY_ERROR,
                    details={"requestedDays": requested, "appliedDays": days},
                )
            return new
        raise AssertionError("unreachable")

    async def _add_once(self, run: _Run, object_id: str, name: str, end: datetime) -> NewPassword:
        attempt = 1
        policy = self._settings.retry_policy
        while True:
            try:
                return await self._directory.add_password(object_id, name, end)
            except Exception as error:
                delay = policy.delay(attempt, error)
                if delay is None:
                    raise
                # The lost answer may have created a credential whose text we never saw: remove it.
                await self._remove_named(run, object_id, name)
                await self._sleep(delay)
                attempt += 1

    async def _remove_named(self, run: _Run, object_id: str, name: str) -> None:
        app = await self._call(lambda: self._directory.get_application(object_id), "read application")
        for password in app.passwords:
            if password.display_name == name:
                await self._call(
                    partial(self._directory.remove_password, object_id, password.key_id),
                    "remove unseen credential",
                )
                await self._event(
                    run,
                    "credential.duplicateRemoved",
                    "Removed a credential created by a request whose answer was lost",
                    level=LogLevel.WARNING,
                    step="create",
                    key_id=password.key_id,
                )

    async def _make_room(self, run: _Run, app: EntraApplication) -> None:
        cap = app.password_cap
        if cap is None or len(app.passwords) < cap:
            return
        now = self._clock()
        removable = [p for p in app.passwords if p.is_expired(now) and self._may_retire(run, p)]
        for password in sorted(removable, key=lambda p: p.end or now)[: len(app.passwords) - cap + 1]:
            await self._call(
                partial(self._directory.remove_password, app.object_id, password.key_id),
                "remove expired credential",
            )
            await self._event(
                run,
                "credential.retired",
                "Removed an expired credential to make room",
                step="create",
                key_id=password.key_id,
            )
        if len(app.passwords) - len(removable) >= cap:
            message = (
                f"The application allows at most {cap} passwords and none can be removed safely "
                "(remove one, or opt in to retiring credentials the rotator did not create)"
            )
            await self._event(
                run,
                "credential.capReached",
                message,
                level=LogLevel.WARNING,
                step="create",
                code="CredentialCapReached",
            )
            raise RotationError(message, step="create", code="CredentialCapReached")

    def _may_retire(self, run: _Run, password: PasswordInfo) -> bool:
        return self._is_ours(password) or run.config.rotation.retire_unmanaged_credentials

    def _is_ours(self, password: PasswordInfo) -> bool:
        return (password.display_name or "").startswith(f"{self._settings.credential_prefix}:")

    async def _verify(self, run: _Run, key_id: str, secret: SecretValue) -> None:
        started = time.monotonic()
        delay = self._settings.verify_first_delay
        attempts = 0
        while True:
            attempts += 1
            try:
                works = await self._verifier.works(str(run.config.app_id), secret)
            except TransientServiceError:
                works = False
            elapsed = time.monotonic() - started
            if works:
                await self._event(
                    run,
                    "secret.verified",
                    f"New secret works (after {attempts} attempts, {elapsed:.0f}s)",
                    step="verify",
                    key_id=key_id,
                    duration_ms=int(elapsed * 1000),
                )
                return
            if elapsed + delay > self._settings.verify_timeout_seconds:
                break
            await self._sleep(delay)
            delay = min(delay * 2, self._settings.verify_max_delay)
        # It never worked: take it back so nobody receives a dead secret; the old one stays.
        object_id = str(run.config.object_id)
        await self._call(
            lambda: self._directory.remove_password(object_id, key_id), "remove failed credential"
        )
        staged = await self._staging.find(run.app_id, rotationId=run.rotation_id)
        if staged is not None:
            await self._staging.set_stage(staged, "failed")
        raise RotationError(
            f"The new secret was never accepted by Entra ID within {self._settings.verify_timeout_seconds:.0f}s; "
            "it was removed and the current secret is untouched",
            step="verify",
            code="SecretNeverWorked",
        )

    async def _deploy_all(
        self, run: _Run, staged: VaultSecret, key_id: str, only: set[str] | None
    ) -> dict[str, IntegrationStatus]:
        results: dict[str, IntegrationStatus] = {}
        for integration in run.config.integrations:
            name = integration.name or integration.kind
            if not integration.enabled or (only is not None and name not in only):
                continue
            results[name] = await self._deploy_one(run, integration, name, staged, key_id)
            await self._update(run, integrations={**run.stored.status.integrations, name: results[name]})
        return results

    async def _deploy_one(
        self, run: _Run, integration: Any, name: str, staged: VaultSecret, key_id: str
    ) -> IntegrationStatus:
        plugin = self._plugins.get(integration.kind)
        started = time.monotonic()
        try:
            if plugin is None:
                raise RotationError(
                    f"No plugin for {integration.kind}", step="deploy", code="IntegrationNotAvailable"
                )
            context = DeployContext(
                app=run.config,
                settings=integration,
                rotation_id=run.rotation_id,
                key_id=key_id,
                secret=staged.value,
                expires_at=staged.expires_on,
                services=self._services,
            )
            outcome = await retry(
                lambda: plugin.deploy(context),
                policy=self._settings.retry_policy,
                describe=f"deploy {name}",
                sleep=self._sleep,
            )
            await retry(
                lambda: plugin.verify(context),
                policy=self._settings.retry_policy,
                describe=f"verify {name}",
                sleep=self._sleep,
            )
        except Exception as error:  # noqa: BLE001 - one integration failing must not stop the others
            info = _error_info(error, "deploy", self._clock())
            await self._event(
                run,
                "integration.failed",
                f"{name}: {info.message}",
                level=LogLevel.ERROR,
                step="deploy",
                integration=name,
                key_id=key_id,
                code=info.code,
                duration_ms=int((time.monotonic() - started) * 1000),
            )
            return IntegrationStatus(result="failed", at=self._clock(), key_id=key_id, error=info)
        for warning in outcome.warnings:
            await self._event(
                run,
                "integration.warning",
                f"{name}: {warning}",
                level=LogLevel.WARNING,
                step="deploy",
                integration=name,
                key_id=key_id,
            )
        await self._event(
            run,
            "integration.deployed",
            f"{name}: {outcome.summary}",
            step="deploy",
            integration=name,
            key_id=key_id,
            details=outcome.details,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        return IntegrationStatus(result="succeeded", at=self._clock(), key_id=key_id)

    async def _revoke_others(self, run: _Run, key_id: str) -> None:
        object_id = str(run.config.object_id)
        app = await self._call(lambda: self._directory.get_application(object_id), "read application")
        revoked = []
        for password in app.passwords:
            if password.key_id != key_id:
                await self._call(
                    partial(self._directory.remove_password, object_id, password.key_id),
                    "revoke credential",
                )
                revoked.append(password.key_id)
        await self._event(
            run,
            "credential.revokedAll",
            f"Compromised mode: removed every other password ({len(revoked)}) immediately",
            level=LogLevel.WARNING,
            step="retire",
            key_id=key_id,
            details={"revokedKeyIds": revoked},
        )

    async def _find_password(self, run: _Run, key_id: str) -> PasswordInfo | None:
        object_id = str(run.config.object_id)
        app = await self._call(lambda: self._directory.get_application(object_id), "read application")
        return next((p for p in app.passwords if p.key_id == key_id), None)

    async def _notify(self, run: _Run, summary: RotationSummary, *, succeeded: bool) -> None:
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

    async def _finish(
        self,
        run: _Run,
        staged: VaultSecret,
        password: PasswordInfo | None,
        results: dict[str, IntegrationStatus],
    ) -> None:
        now = self._clock()
        failed = [name for name, result in results.items() if result.result == "failed"]
        await self._staging.set_stage(staged, "current")
        await self._update(
            run,
            current_key_id=staged.tags["keyId"],
            last_updated_at=(password.start if password and password.start else now),
            expires_at=password.end if password and password.end else staged.expires_on,
            last_result=RotationResult.DEGRADED if failed else RotationResult.SUCCEEDED,
            last_error=None,
            last_rotation_id=run.rotation_id,
            in_progress=None,
            enqueued_at=None,
            integrations={
                **{
                    k: v
                    for k, v in run.stored.status.integrations.items()
                    if k in {i.name for i in run.config.integrations}
                },
                **results,
            },
            retry_at=now + INTEGRATION_RETRY_DELAY if failed else None,
            retire_at=self._retire_time(run.stored.status, staged.tags["keyId"], now, run.compromised),
            threshold_alert_sent_for=None,
        )
        outcome = "degraded: " + ", ".join(failed) + " failed" if failed else "succeeded"
        await self._event(
            run,
            "rotation.completed",
            f"Rotation {outcome}",
            step="finish",
            level=LogLevel.WARNING if failed else LogLevel.INFO,
            key_id=staged.tags["keyId"],
            details={"integrations": {k: v.result for k, v in results.items()}},
        )

    async def _retire(self, run: _Run, key_id: str) -> None:
        object_id = str(run.config.object_id)
        now = self._clock()
        try:
            app = await self._directory.get_application(object_id)
            for password in app.passwords:
                if (
                    password.key_id == key_id
                    or not password.is_expired(now)
                    or not self._may_retire(run, password)
                ):
                    continue
                await self._directory.remove_password(object_id, password.key_id)
                await self._event(
                    run,
                    "credential.retired",
                    "Removed an expired credential",
                    step="retire",
                    key_id=password.key_id,
                )
        except Exception as error:  # noqa: BLE001 - retiring is tidying up; the next rotation tries again
            await self._event(
                run,
                "retire.failed",
                f"Could not retire old credentials: {type(error).__name__}",
                level=LogLevel.WARNING,
                step="retire",
            )

    # --- retries of failed integrations, from the staged secret ---------------------------------
    @staticmethod
    def _retire_time(
        previous: ApplicationStatus, new_key_id: str, now: datetime, compromised: bool
    ) -> datetime | None:
        """When the credential being superseded expires (it keeps working until then: zero downtime)."""
        if compromised or previous.current_key_id in (None, new_key_id) or previous.expires_at is None:
            return None
        return previous.expires_at + RETIRE_MARGIN if previous.expires_at > now else None

    async def _maintain(self, run: _Run) -> None:
        """Between rotations: deliver the staged secret to integrations that failed, and remove the
        superseded credential once it has expired."""
        status = run.stored.status
        now = self._clock()
        changes: dict[str, Any] = {"in_progress": None}
        if status.retry_at is not None and now >= status.retry_at:
            changes.update(await self._retry_integrations(run))
        if status.retire_at is not None and now >= status.retire_at:
            if status.current_key_id:
                await self._retire(run, status.current_key_id)
            changes["retire_at"] = None
        await self._update(run, **changes)

    async def _retry_integrations(self, run: _Run) -> dict[str, Any]:
        status = run.stored.status
        failed = {name for name, result in status.integrations.items() if result.result != "succeeded"}
        configured = {i.name for i in run.config.integrations if i.enabled}
        pending = failed & configured
        staged = None
        if status.current_key_id:
            staged = await self._staging.find(run.app_id, keyId=status.current_key_id)
        if not pending or staged is None:
            recovered = staged is not None and status.last_result == RotationResult.DEGRADED
            return {"retry_at": None, **({"last_result": RotationResult.SUCCEEDED} if recovered else {})}
        results = await self._deploy_all(run, staged, staged.tags["keyId"], only=pending)
        still_failed = [n for n, r in results.items() if r.result == "failed"]
        await self._event(
            run,
            "integrations.retried",
            "Retried failed integrations from the staged secret: "
            + (", ".join(still_failed) + " still failing" if still_failed else "all delivered"),
            level=LogLevel.WARNING if still_failed else LogLevel.INFO,
            step="deploy",
        )
        return {
            "integrations": {**run.stored.status.integrations, **results},
            "last_result": RotationResult.DEGRADED if still_failed else RotationResult.SUCCEEDED,
            "retry_at": self._clock() + INTEGRATION_RETRY_DELAY if still_failed else None,
        }

    # --- failure paths ---------------------------------------------------------------------------
    async def _fail(self, run: _Run, error: RotationError) -> None:
        info = _error_info(error, error.step, self._clock())
        await self._event(
            run, "rotation.failed", info.message, level=LogLevel.ERROR, step=error.step, code=info.code
        )
        await self._discard_new_credential(run)
        await self._notify(
            run,
            RotationSummary(
                app_id=run.app_id, rotation_id=run.rotation_id, warnings=run.warnings, error=info
            ),
            succeeded=False,
        )
        await self._update(
            run,
            in_progress=None,
            enqueued_at=None,
            last_result=RotationResult.FAILED,
            last_error=info,
            last_rotation_id=run.rotation_id,
        )

    async def _discard_new_credential(self, run: _Run) -> None:
        """A failed rotation leaves nothing behind: its credential is removed, its staged copy disabled."""
        object_id = str(run.config.object_id)
        name = f"{self._settings.credential_prefix}:{run.rotation_id}"
        try:
            staged = await self._staging.find(run.app_id, rotationId=run.rotation_id)
            if staged is not None and staged.tags.get("stage") != "current":
                await self._directory.remove_password(object_id, staged.tags["keyId"])
                await self._staging.set_stage(staged, "failed")
            app = await self._directory.get_application(object_id)
            for password in app.passwords:
                if password.display_name == name and password.key_id != run.stored.status.current_key_id:
                    await self._directory.remove_password(object_id, password.key_id)
        except Exception as cleanup_error:  # noqa: BLE001 - retire removes leftovers by name later
            logger.warning("cleanup after failed rotation incomplete: %s", type(cleanup_error).__name__)

    async def _pause(self, run: _Run, error: Exception) -> None:
        """A retryable failure: leave the claim resumable at once by the job's next delivery."""
        info = _error_info(
            error,
            (run.stored.status.in_progress.step if run.stored.status.in_progress else None),
            self._clock(),
        )
        await self._event(
            run,
            "rotation.paused",
            f"Will retry: {info.message}",
            level=LogLevel.WARNING,
            step=info.step,
            code=info.code,
        )
        claim = run.stored.status.in_progress
        if claim is None or claim.owner != run.owner:
            return
        try:
            await self._update(
                run, in_progress=claim.model_copy(update={"expires_at": self._clock()}), last_error=info
            )
        except Exception:  # noqa: BLE001 - the claim then goes stale by itself
            logger.warning("could not release claim for %s", run.app_id)

    async def _call(self, operation: Callable[[], Awaitable[Any]], describe: str) -> Any:
        return await retry(
            operation, policy=self._settings.retry_policy, describe=describe, sleep=self._sleep
        )

    async def _event(self, run: _Run, event: str, message: str, **fields: Any) -> None:
        await self._events.record(run.app_id, run.rotation_id, event, message, **fields)


def integration_problems(config: ApplicationConfig, plugins: PluginRegistry) -> list[FieldProblem]:
    """Problems each enabled integration's plugin finds in its settings (no network calls)."""
    problems: list[FieldProblem] = []
    for index, integration in enumerate(config.integrations):
        if not integration.enabled:
            continue
        plugin = plugins.get(integration.kind)
        if plugin is None:
            problems.append(
                FieldProblem(
                    f"integrations.{index}.kind",
                    "has no delivery plugin installed",
                    ", ".join(plugins.kinds()),
                )
            )
            continue
        for problem in plugin.check(integration, config):
            problems.append(
                FieldProblem(f"integrations.{index}.{problem.field}", problem.message, problem.allowed)
            )
    return problems


def _error_info(error: BaseException, step: str | None, now: datetime) -> ErrorInfo:
    if isinstance(error, RotatorError):
        code = getattr(error, "code", None) or type(error).__name__
        return ErrorInfo(code=str(code), message=error.message, step=step, at=now)
    return ErrorInfo(code=type(error).__name__, message="Unexpected error", step=step, at=now)


__all__ = ["EngineSettings", "NotFoundError", "RotationEngine", "RotationSummary"]
