"""Rotation events: one call writes the audit log entry and the structured telemetry record.

Telemetry dimensions (Application Insights customDimensions / OpenTelemetry attributes):
``event``, ``appId``, ``rotationId``, ``step``, ``integration``, ``outcome``, ``code``, ``durationMs``.
Values are identifiers and outcomes only: a secret has no way in, since no field takes one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.domain.models import TERMINAL_EVENTS, LogLevel, RotationLogEntry, UnloggedOutcome
from shared.errors import ConflictError, NotFoundError, TransientServiceError
from shared.observability import record_event_metrics
from shared.redaction import redact_text, redact_value
from shared.storage.rotation_log import RotationLogStore

if TYPE_CHECKING:
    from shared.rotation.ports import ApplicationRepo, EventSink
    from shared.storage.applications import StoredApplication

logger = logging.getLogger("rotator.events")

_LEVELS = {LogLevel.INFO: logging.INFO, LogLevel.WARNING: logging.WARNING, LogLevel.ERROR: logging.ERROR}


class EventRecorder:
    def __init__(self, log_store: RotationLogStore, clock: Callable[[], datetime]) -> None:
        self._log_store = log_store
        self._clock = clock

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
        entry = self._entry(
            app_id, rotation_id, event, message, level, step, integration, key_id, code, duration_ms, details
        )
        try:
            await self._log_store.append(entry)
        except Exception as error:  # noqa: BLE001 - the audit log must not break a rotation
            logger.error("could not write rotation log entry %s: %s", event, type(error).__name__)

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
        """A rotation's terminal entry, for the app row write that ends the rotation; ``settle``
        then writes it to the log. Logged and counted (telemetry) now, as ``record`` does."""
        entry = self._entry(
            app_id, rotation_id, event, message, level, step, None, key_id, code, None, details
        )
        return UnloggedOutcome.model_validate(entry.model_dump(exclude={"integration"}))

    async def has_outcome(self, app_id: str, rotation_id: str) -> bool:
        """Whether the log holds ``rotation_id``'s terminal entry (``TERMINAL_EVENTS``).
        TransientServiceError when the log cannot be read."""
        try:
            return await self._log_store.has_event(app_id, rotation_id, TERMINAL_EVENTS)
        except Exception as error:
            raise TransientServiceError(
                f"The rotation log cannot be read ({type(error).__name__})", service="storage"
            ) from error

    async def settle(self, outcomes: list[UnloggedOutcome]) -> None:
        """Write ``outcomes`` to the log, each under its one key (writing one twice changes
        nothing). TransientServiceError when the log cannot be written: the caller keeps them."""
        try:
            for outcome in outcomes:
                await self._log_store.append_once(outcome.entry())
        except Exception as error:
            raise TransientServiceError(
                f"The rotation log cannot be written ({type(error).__name__}); the outcome is kept "
                "with the application and written by its next reader",
                service="storage",
            ) from error

    def _entry(
        self,
        app_id: str,
        rotation_id: str | None,
        event: str,
        message: str,
        level: LogLevel,
        step: str | None,
        integration: str | None,
        key_id: str | None,
        code: str | None,
        duration_ms: int | None,
        details: dict[str, Any] | None,
    ) -> RotationLogEntry:
        """The entry, redacted, after logging it and counting it (telemetry)."""
        # Whatever a message or detail quotes (a service's error, a URL), no credential gets through.
        message = redact_text(message)
        details = redact_value(details) if details else details
        entry = RotationLogEntry(
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
        dimensions = {
            "event": event,
            "appId": app_id,
            "rotationId": rotation_id,
            "step": step,
            "integration": integration,
            "outcome": level.value if level != LogLevel.INFO else "ok",
            "code": code,
            "keyId": key_id,
            "durationMs": duration_ms,
        }
        logger.log(
            _LEVELS[level],
            "%s: %s",
            event,
            message,
            extra={key: value for key, value in dimensions.items() if value is not None},
        )
        record_event_metrics(event, dimensions)
        return entry


async def settle_outcomes(
    events: EventSink, applications: ApplicationRepo, stored: StoredApplication, now: datetime
) -> StoredApplication | None:
    """Write ``stored``'s unlogged outcomes to the log, then remove them from its row. Returns the
    row as then stored (None: deleted meanwhile). Raises TransientServiceError when the log
    cannot be written, ConflictError when the row keeps changing (the outcomes stay: the next
    reader settles them)."""
    settled = stored.status.unlogged
    await events.settle(settled)
    for _ in range(3):
        remaining = [o for o in stored.status.unlogged if o not in settled]
        try:
            return await applications.save(
                stored, stored.config, stored.status.model_copy(update={"unlogged": remaining}), now
            )
        except ConflictError:
            found = await applications.find(stored.app_id)
            if found is None:
                return None
            stored = found
        except NotFoundError:
            return None
    raise ConflictError("The application keeps changing; its outcomes stay for the next reader")
