"""The engine's ports: the narrow, typed interfaces it drives, so it runs unchanged against the real
adapters (``shared.services`` builds them) or the in-memory fakes of the model-based tests.

=====================  ==========================================  =================================
port                   real adapter                                what the engine needs of it
=====================  ==========================================  =================================
``EntraDirectory``     ``shared.adapters.entra.GraphDirectory``    read an app, add/remove passwords,
                                                                   the password-lifetime policy
``SecretVerifier``     ``shared.adapters.entra.TokenVerifier``     one token request with a secret
``StagingStore``       ``shared.adapters.vault.StagingVault``      stage/get/tag/delete by rotation
``ApplicationRepo``    ``shared.storage.applications.ApplicationStore``  ETag reads and writes
``EventSink``          ``shared.rotation.events.EventRecorder``    the audit log + telemetry
``Notifier``           ``shared.notifications.email.EmailNotifier``  rotation notice, failure alert
``PluginRegistry``     ``shared.integrations.registry``            the destination plugins
``SignInEvidence``     ``shared.discovery.signins.GraphSignInReader``  when each credential last
                                                                   signed in (early retirement)
=====================  ==========================================  =================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from shared.adapters.entra import EntraDirectory, SecretVerifier
from shared.adapters.vault import VaultSecret
from shared.domain.models import (
    ApplicationConfig,
    ApplicationStatus,
    ErrorInfo,
    IntegrationStatus,
    LogLevel,
    UnloggedOutcome,
)
from shared.domain.secret import SecretValue
from shared.storage.applications import StoredApplication


class StagingStore(Protocol):
    async def stage(
        self, app_id: str, rotation_id: str, key_id: str, secret: SecretValue, expires_on: datetime | None
    ) -> str: ...

    async def get(self, app_id: str, rotation_id: str, version: str | None = None) -> VaultSecret | None: ...

    async def find_legacy(self, app_id: str, key_id: str) -> VaultSecret | None: ...

    async def set_stage(self, staged: VaultSecret, stage: str) -> None: ...

    async def discard(self, app_id: str, rotation_id: str) -> None: ...


class SignInEvidence(Protocol):
    async def last_used(self, app_id: str) -> dict[str, datetime]:
        """``keyId`` (lower case) -> when that credential last signed in (absent: no sign-in in the
        report's window); raises ``PermissionMissingError`` without ``AuditLog.Read.All``."""
        ...


class ApplicationRepo(Protocol):
    async def find(self, app_id: str) -> StoredApplication | None: ...

    async def get(self, app_id: str) -> StoredApplication: ...

    async def save(
        self,
        current: StoredApplication,
        config: ApplicationConfig,
        status: ApplicationStatus,
        now: datetime,
        *,
        etag: str | None = None,
    ) -> StoredApplication: ...


class EventSink(Protocol):
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
    ) -> None: ...

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
        """A terminal entry for the row write that ends a rotation (``EventRecorder.outcome``)."""
        ...

    async def has_outcome(self, app_id: str, rotation_id: str) -> bool:
        """Whether the log holds the rotation's terminal entry (``EventRecorder.has_outcome``)."""
        ...

    async def settle(self, outcomes: list[UnloggedOutcome]) -> None:
        """Write outcomes to the log idempotently; raises when it cannot (``EventRecorder.settle``)."""
        ...


class Checkpoint(Protocol):
    """Called after each durable step; tests use it to kill the worker at every step in turn."""

    def __call__(self, step: str) -> None: ...


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


class Notifier(Protocol):
    async def rotation_succeeded(self, app: ApplicationConfig, summary: RotationSummary) -> None: ...

    async def rotation_failed(self, app: ApplicationConfig, summary: RotationSummary) -> None: ...


class NullNotifier:
    async def rotation_succeeded(self, app: ApplicationConfig, summary: RotationSummary) -> None:
        return None

    async def rotation_failed(self, app: ApplicationConfig, summary: RotationSummary) -> None:
        return None


__all__ = [
    "ApplicationRepo",
    "Checkpoint",
    "EntraDirectory",
    "EventSink",
    "Notifier",
    "NullNotifier",
    "RotationSummary",
    "SecretVerifier",
    "StagingStore",
]
