"""Rotation events: one call writes the audit log entry and the structured telemetry record.

Telemetry dimensions (Application Insights customDimensions / OpenTelemetry attributes):
``event``, ``appId``, ``rotationId``, ``step``, ``integration``, ``outcome``, ``code``, ``durationMs``.
Values are identifiers and outcomes only: a secret has no way in, since no field takes one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from shared.domain.models import LogLevel, RotationLogEntry
from shared.observability import record_event_metrics
from shared.redaction import redact_text, redact_value
from shared.storage.rotation_log import RotationLogStore

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
        try:
            await self._log_store.append(entry)
        except Exception as error:  # noqa: BLE001 - the audit log must not break a rotation
            logger.error("could not write rotation log entry %s: %s", event, type(error).__name__)
