"""In-memory fakes of the engine's ports, with fault switches, for fast model-based tests.

They model what the engine relies on and nothing more: ETag conflicts on the application row,
Graph's password list with the two-password cap and a lifetime policy, a vault that returns version
ids, destinations that may refuse, and an email that counts what it sent. Every call may be made to
fail by the fault plan (throttling with Retry-After, 5xx, timeouts, refusals, and an addPassword
whose answer is lost after it committed). The protocol itself is tested against the wire-level
simulators elsewhere; these fakes only make thousands of generated interleavings affordable.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.adapters.entra import PERSONAL_ACCOUNT_AUDIENCES, EntraApplication, NewPassword, PasswordInfo
from shared.adapters.vault import VaultSecret, staging_name
from shared.domain.models import (
    TERMINAL_EVENTS,
    ApplicationConfig,
    ApplicationStatus,
    LogLevel,
    RotationJob,
    RotationLogEntry,
    UnloggedOutcome,
)
from shared.domain.schedule import SchedulePolicy, attention_at
from shared.domain.secret import SecretValue
from shared.errors import (
    ConflictError,
    ExternalServiceError,
    NotFoundError,
    ThrottledError,
    TransientServiceError,
)
from shared.integrations.base import DeployContext, DeployOutcome
from shared.storage.applications import DueApplication, StoredApplication


class Crash(BaseException):
    """The worker process died here (BaseException: no ``except Exception`` in the engine sees it)."""


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class Faults:
    """Decides, call by call, whether a port fails and how (seeded by the generated case)."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.rate = 0.0
        self.calls = 0

    def maybe(self, service: str, *, refusals: bool = True) -> None:
        self.calls += 1
        if self.rate <= 0 or self.random.random() >= self.rate:
            return
        kind = self.random.choice(
            ["throttle", "5xx", "timeout", "refuse"] if refusals else ["throttle", "5xx"]
        )
        if kind == "throttle":
            raise ThrottledError(
                "throttled", retry_after=self.random.choice([0.5, 2.0]), service=service, status=429
            )
        if kind == "5xx":
            raise TransientServiceError("server error", service=service, status=503)
        if kind == "timeout":
            raise TransientServiceError("timeout", service=service)
        raise ExternalServiceError(
            "forbidden", service=service, status=403, code="Authorization_RequestDenied"
        )


@dataclass
class Password:
    key_id: str
    display_name: str | None
    secret: str
    end: datetime
    seq: int

    def info(self) -> PasswordInfo:
        return PasswordInfo(self.key_id, self.display_name, self.secret[:3], None, self.end)


@dataclass
class App:
    object_id: str
    app_id: str
    audience: str
    passwords: list[Password] = field(default_factory=list)


class Directory:
    """Microsoft Graph applications: passwords with the personal-account cap and a lifetime policy."""

    def __init__(self, clock: Clock, faults: Faults) -> None:
        self._clock = clock
        self._faults = faults
        self.apps: dict[str, App] = {}
        self.max_lifetime: timedelta | None = None
        self.policy_readable = False
        self.removed: list[tuple[Password, datetime]] = []
        self._seq = itertools.count(1)
        self.lose_next_add_answer = False

    def add_app(self, audience: str) -> App:
        app = App(str(uuid.uuid4()), str(uuid.uuid4()), audience)
        self.apps[app.object_id] = app
        return app

    def seed_password(self, app: App, name: str, end: datetime) -> Password:
        password = Password(str(uuid.uuid4()), name, f"secret-{uuid.uuid4().hex}", end, next(self._seq))
        app.passwords.append(password)
        return password

    def _app(self, object_id: str) -> App:
        if object_id not in self.apps:
            raise NotFoundError("Application not found in Entra ID", object_id=object_id)
        return self.apps[object_id]

    async def get_application(self, object_id: str) -> EntraApplication:
        self._faults.maybe("graph", refusals=False)
        app = self._app(object_id)
        return EntraApplication(
            app.object_id, app.app_id, "app", app.audience, tuple(p.info() for p in app.passwords)
        )

    async def add_password(self, object_id: str, display_name: str, end: datetime) -> NewPassword:
        self._faults.maybe("graph")
        app = self._app(object_id)
        now = self._clock()
        if self.max_lifetime is not None and end - now > self.max_lifetime:
            raise ExternalServiceError(
                "Graph add password failed: lifetime",
                service="graph",
                status=400,
                code="CredentialInvalidLifetimeAsPerAppPolicy",
            )
        if app.audience in PERSONAL_ACCOUNT_AUDIENCES and len(app.passwords) >= 2:
            raise ExternalServiceError(
                "Graph add password failed: You can only add a maximum of 2 passwords.",
                service="graph",
                status=400,
                code="Request_BadRequest",
            )
        password = Password(
            str(uuid.uuid4()), display_name, f"secret-{uuid.uuid4().hex}", end, next(self._seq)
        )
        app.passwords.append(password)
        if self.lose_next_add_answer or (
            self._faults.rate and self._faults.random.random() < self._faults.rate / 3
        ):
            self.lose_next_add_answer = False
            raise TransientServiceError("gateway timeout after commit", service="graph", status=504)
        return NewPassword(password.info(), SecretValue(password.secret))

    async def remove_password(self, object_id: str, key_id: str) -> None:
        self._faults.maybe("graph")
        app = self._app(object_id)
        for password in list(app.passwords):
            if password.key_id == key_id:
                app.passwords.remove(password)
                self.removed.append((password, self._clock()))

    async def password_lifetime_limit(self, app: EntraApplication) -> timedelta | None:
        if not self.policy_readable:
            raise ExternalServiceError(
                "forbidden", service="graph", status=403, code="Authorization_RequestDenied"
            )
        return self.max_lifetime

    def works(self, app_id: str, secret: str) -> bool:
        now = self._clock()
        return any(
            app.app_id == app_id and p.secret == secret and p.end > now
            for app in self.apps.values()
            for p in app.passwords
        )


class Verifier:
    def __init__(self, directory: Directory, faults: Faults) -> None:
        self._directory = directory
        self._faults = faults

    async def works(self, app_id: str, secret: SecretValue) -> bool:
        self._faults.maybe("entra-token", refusals=False)
        return self._directory.works(app_id, secret.reveal())


class Staging:
    """The rotator's vault: one secret per rotation, versions with ids, soft-deletable."""

    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self.secrets: dict[str, list[VaultSecret]] = {}
        self.lose_next_write = False

    async def stage(
        self, app_id: str, rotation_id: str, key_id: str, secret: SecretValue, expires_on: datetime | None
    ) -> str:
        self._faults.maybe("keyvault")
        name = staging_name(app_id, rotation_id)
        version = uuid.uuid4().hex
        tags = {"appId": app_id, "keyId": key_id, "rotationId": rotation_id, "stage": "pending"}
        if self.lose_next_write:
            # Key Vault answered, but the version never shows up again (the listing bug class).
            self.lose_next_write = False
            return version
        self.secrets.setdefault(name, []).append(VaultSecret(name, version, secret, tags, expires_on))
        return version

    async def get(self, app_id: str, rotation_id: str, version: str | None = None) -> VaultSecret | None:
        self._faults.maybe("keyvault", refusals=False)
        versions = self.secrets.get(staging_name(app_id, rotation_id), [])
        if version is None:
            return versions[-1] if versions else None
        return next((v for v in versions if v.version == version), None)

    async def find_legacy(self, app_id: str, key_id: str) -> VaultSecret | None:
        return None

    async def set_stage(self, staged: VaultSecret, stage: str) -> None:
        self._faults.maybe("keyvault", refusals=False)
        versions = self.secrets.get(staged.name, [])
        for index, version in enumerate(versions):
            if version.version == staged.version:
                versions[index] = VaultSecret(
                    version.name,
                    version.version,
                    version.value,
                    {**version.tags, "stage": stage},
                    version.expires_on,
                )

    async def discard(self, app_id: str, rotation_id: str) -> None:
        self._faults.maybe("keyvault", refusals=False)
        self.secrets.pop(staging_name(app_id, rotation_id), None)

    def staged_key_ids(self) -> set[str]:
        return {v.tags["keyId"] for versions in self.secrets.values() for v in versions}


class Applications:
    """The applications table: ETag-conditional writes, as Azure Tables does them."""

    def __init__(self, policy: SchedulePolicy) -> None:
        self._policy = policy
        self.rows: dict[str, StoredApplication] = {}
        self._etags = itertools.count(1)

    async def create(
        self, config: ApplicationConfig, status: ApplicationStatus, now: datetime
    ) -> StoredApplication:
        stored = StoredApplication(config, status, f"W/{next(self._etags)}", now, now)
        self.rows[str(config.app_id)] = stored
        return stored

    async def find(self, app_id: str) -> StoredApplication | None:
        return self.rows.get(app_id)

    async def get(self, app_id: str) -> StoredApplication:
        stored = self.rows.get(app_id)
        if stored is None:
            raise NotFoundError("Application is not registered", app_id=app_id)
        return stored

    async def save(
        self,
        current: StoredApplication,
        config: ApplicationConfig,
        status: ApplicationStatus,
        now: datetime,
        *,
        etag: str | None = None,
    ) -> StoredApplication:
        row = self.rows.get(current.app_id)
        if row is None:
            raise NotFoundError("Application is not registered", app_id=current.app_id)
        if row.etag != (etag or current.etag):
            raise ConflictError(
                "Application was changed by someone else; read it again", app_id=current.app_id
            )
        # Round-trip through JSON like the table does, so nothing relies on shared objects.
        status = ApplicationStatus.model_validate_json(status.model_dump_json(by_alias=True))
        stored = StoredApplication(config, status, f"W/{next(self._etags)}", row.created_at, now)
        self.rows[current.app_id] = stored
        return stored

    async def settle_due_row(
        self, item: DueApplication, stored: StoredApplication | None, now: datetime
    ) -> bool:
        return False  # the fake's due rows are derived from its rows: never stale

    async def due_batches(self, now: datetime, batch_size: int) -> AsyncIterator[list[DueApplication]]:
        found = []
        for app_id, row in self.rows.items():
            moment = attention_at(row.config, row.status, self._policy)
            if moment is not None and moment <= now:
                found.append(DueApplication(app_id, moment))
        found.sort(key=lambda item: (item.attention_at, item.app_id))
        for start in range(0, len(found), batch_size):
            yield found[start : start + batch_size]


class Queue:
    def __init__(self) -> None:
        self.jobs: list[RotationJob] = []
        self.history: list[RotationJob] = []

    async def enqueue(self, job: RotationJob) -> None:
        self.jobs.append(job)
        self.history.append(job)


class SignIns:
    """Graph's sign-in activity report: when each credential last signed in (``SignInEvidence``);
    403 without AuditLog.Read.All (``readable``)."""

    def __init__(self) -> None:
        self.readable = True
        self.uses: dict[str, datetime] = {}

    async def last_used(self, app_id: str) -> dict[str, datetime]:
        if not self.readable:
            from shared.errors import PermissionMissingError

            raise PermissionMissingError("no sign-in report", permission="AuditLog.Read.All", service="graph")
        return dict(self.uses)


class Events:
    """The rotation log: ``entries`` in the order written. ``fail_settles`` makes that many writes
    of terminal outcomes fail (the log being unavailable)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.entries: list[RotationLogEntry] = []
        self.fail_settles = 0
        self._settled: set[tuple[str, str, datetime]] = set()

    async def record(
        self,
        app_id: str,
        rotation_id: str | None,
        event: str,
        message: str,
        *,
        level: LogLevel = LogLevel.INFO,
        step: str | None = None,
        integration: str | None = None,
        key_id: str | None = None,
        code: str | None = None,
        duration_ms: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.entries.append(
            RotationLogEntry(
                at=self._clock(),
                app_id=app_id,
                rotation_id=rotation_id,
                event=event,
                level=level,
                message=message,
                step=step,
                integration=integration,
                key_id=key_id,
                code=code,
                details=details or {},
            )
        )

    def outcome(
        self,
        app_id: str,
        rotation_id: str,
        event: str,
        message: str,
        *,
        level: LogLevel = LogLevel.INFO,
        step: str | None = None,
        key_id: str | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> UnloggedOutcome:
        return UnloggedOutcome(
            at=self._clock(),
            app_id=app_id,
            rotation_id=rotation_id,
            event=event,
            level=level,
            message=message,
            step=step,
            key_id=key_id,
            code=code,
            details=details or {},
        )

    async def has_outcome(self, app_id: str, rotation_id: str) -> bool:
        return any(e.rotation_id == rotation_id and e.event in TERMINAL_EVENTS for e in self.entries)

    async def settle(self, outcomes: list[UnloggedOutcome]) -> None:
        # As ``RotationLogStore.append_once``: one row per outcome, however often it is written.
        for outcome in outcomes:
            if self.fail_settles > 0:
                self.fail_settles -= 1
                raise TransientServiceError("log unavailable", service="storage")
            key = (outcome.rotation_id, outcome.event, outcome.at)
            if key not in self._settled:
                self._settled.add(key)
                self.entries.append(outcome.entry())


class Destinations:
    """Where secrets are delivered: name → the secret it holds; ``broken`` ones refuse every write."""

    kind = "keyVault"

    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self.held: dict[str, str] = {}
        self.broken: set[str] = set()

    def check(self, settings: Any, app: ApplicationConfig) -> list[Any]:
        return []

    def describe(self, settings: Any, app: ApplicationConfig) -> str:
        return "write the secret"

    async def deploy(self, context: DeployContext) -> DeployOutcome:
        name = context.settings.name
        if name in self.broken:
            raise ExternalServiceError("destination refuses", service="dest", status=403, code="Forbidden")
        self._faults.maybe("dest")
        self.held[name] = context.secret.reveal()
        # A write whose answer is lost: it took effect, the caller sees a failure.
        self._faults.maybe("dest", refusals=False)
        return DeployOutcome("written")

    async def verify(self, context: DeployContext) -> None:
        if self.held.get(context.settings.name) != context.secret.reveal():
            raise ExternalServiceError("not written", service="dest", status=409, code="Mismatch")


class Notifier:
    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self.sent: list[str] = []
        self.failures: list[str] = []

    async def rotation_succeeded(self, app: ApplicationConfig, summary: Any) -> None:
        self._faults.maybe("email", refusals=False)
        self.sent.append(summary.rotation_id)

    async def rotation_failed(self, app: ApplicationConfig, summary: Any) -> None:
        self.failures.append(summary.rotation_id)
