"""Delivery: write one staged secret to one destination through its plugin, and say what it holds.

Each destination is independent: bounded retries (``RetryPolicy``, honouring Retry-After) inside
one attempt, and a failure there never stops the others. The result records which credential the
destination confirmed and which it may hold without confirmation, so retirement never removes a
credential a destination could still be using.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from shared.adapters.retry import RetryPolicy, retry
from shared.adapters.vault import VaultSecret
from shared.domain.models import (
    ApplicationConfig,
    ErrorInfo,
    IntegrationStatus,
    LateWrite,
    LogLevel,
)
from shared.errors import FieldProblem, RotationError, RotatorError, outcome_unknown
from shared.integrations.base import DeployContext, DeployOutcome, PluginRegistry
from shared.rotation.ports import EventSink


class Delivery:
    def __init__(
        self,
        plugins: PluginRegistry,
        events: EventSink,
        *,
        retry_policy: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]],
        clock: Callable[[], datetime],
        services: Any,
    ) -> None:
        self.plugins = plugins
        self._events = events
        self._retry_policy = retry_policy
        self._sleep = sleep
        self._clock = clock
        self._services = services

    def names(self, config: ApplicationConfig) -> list[str]:
        """The enabled destinations, in configuration order."""
        return [i.name or i.kind for i in config.integrations if i.enabled]

    async def deliver(
        self,
        config: ApplicationConfig,
        name: str,
        staged: VaultSecret,
        rotation_id: str,
        previous: IntegrationStatus | None,
    ) -> IntegrationStatus:
        """Deploy and verify; the destination's new status (never raises for a destination's error)."""
        integration = next(i for i in config.integrations if (i.name or i.kind) == name)
        key_id = staged.tags["keyId"]
        app_id = str(config.app_id)
        plugin = self.plugins.get(integration.kind)
        started = time.monotonic()
        began = self._clock()
        # Writes of this delivery whose answer never came: the service may still apply them later.
        unanswered: list[datetime] = []
        try:
            if plugin is None:
                raise RotationError(
                    f"No plugin for {integration.kind}", step="deploy", code="IntegrationNotAvailable"
                )
            context = DeployContext(
                app=config,
                settings=integration,
                rotation_id=rotation_id,
                key_id=key_id,
                secret=staged.value,
                expires_at=staged.expires_on,
                services=self._services,
            )
            deploying = plugin

            async def deploy() -> DeployOutcome:
                attempt = self._clock()
                try:
                    return await deploying.deploy(context)
                except Exception as error:
                    if outcome_unknown(error):
                        unanswered.append(attempt)
                    raise

            outcome = await retry(
                deploy,
                policy=self._retry_policy,
                describe=f"deploy {name}",
                sleep=self._sleep,
            )
            await retry(
                lambda: plugin.verify(context),
                policy=self._retry_policy,
                describe=f"verify {name}",
                sleep=self._sleep,
            )
        except Exception as error:  # noqa: BLE001 - one destination failing must not stop the others
            info = error_info(error, "deploy", self._clock())
            await self._events.record(
                app_id,
                rotation_id,
                "integration.failed",
                f"{name}: {info.message}",
                level=LogLevel.ERROR,
                step="deploy",
                integration=name,
                key_id=key_id,
                code=info.code,
                duration_ms=int((time.monotonic() - started) * 1000),
            )
            # It may hold the new secret (a write whose answer was lost) or what it held before.
            unconfirmed = [*(previous.unconfirmed_key_ids if previous else []), key_id]
            return IntegrationStatus(
                result="failed",
                at=self._clock(),
                key_id=key_id,
                error=info,
                confirmed_key_id=previous.confirmed_key_id if previous else None,
                unconfirmed_key_ids=list(dict.fromkeys(unconfirmed))[-10:],
                late_writes=late_writes(previous, key_id, unanswered, settled_before=None),
            )
        for warning in outcome.warnings:
            await self._events.record(
                app_id,
                rotation_id,
                "integration.warning",
                f"{name}: {warning}",
                level=LogLevel.WARNING,
                step="deploy",
                integration=name,
                key_id=key_id,
            )
        await self._events.record(
            app_id,
            rotation_id,
            "integration.deployed",
            f"{name}: {outcome.summary}",
            step="deploy",
            integration=name,
            key_id=key_id,
            details=outcome.details,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        return IntegrationStatus(
            result="succeeded",
            at=self._clock(),
            key_id=key_id,
            confirmed_key_id=key_id,
            late_writes=late_writes(previous, key_id, unanswered, settled_before=began),
        )


def late_writes(
    previous: IntegrationStatus | None,
    key_id: str,
    unanswered: list[datetime],
    *,
    settled_before: datetime | None,
) -> list[LateWrite]:
    """A destination's writes that may still land, after a delivery of ``key_id``: the earlier ones
    (less those whose window closed before ``settled_before``, when a write that began then has
    succeeded: anything still in flight would have landed before it), and this delivery's latest
    unanswered write."""
    kept = [
        w
        for w in (previous.late_writes if previous else [])
        if settled_before is None or w.settles_at() > settled_before
    ]
    if unanswered:
        kept = [w for w in kept if w.key_id != key_id] + [LateWrite(key_id=key_id, at=max(unanswered))]
    return kept[-10:]


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


def error_info(error: BaseException, step: str | None, now: datetime) -> ErrorInfo:
    """What the status, the log and the alert email say of an error (its message redacted)."""
    from shared.redaction import redact_text

    if isinstance(error, RotatorError):
        code = getattr(error, "code", None) or type(error).__name__
        return ErrorInfo(code=str(code), message=redact_text(error.message), step=step, at=now)
    return ErrorInfo(code=type(error).__name__, message="Unexpected error", step=step, at=now)
