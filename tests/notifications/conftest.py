"""Fixtures for notification tests: the ACS Email simulator on the shared stack, and a rotator whose
``Services`` sends email through a real ``EmailClient`` to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from shared.adapters.retry import RetryPolicy
from shared.config import load_settings
from shared.domain.models import ApplicationConfig
from shared.notifications.email import AcsEmailTransport, EmailNotifier
from shared.services import Services
from simulators.acs import AcsEmailSimulator
from tests.rotation.conftest import FakeClock, Rotator, rotator_environment, stack  # noqa: F401

SENDER = "DoNotReply@rotator.simulator.local"
RECIPIENTS = ["ops@contoso.com", "owner@contoso.com"]


@pytest.fixture(scope="session")
def acs_sim(sim_stack: Any) -> AcsEmailSimulator:
    """One ACS Email simulator on the session's stack (attached once; the stack resets it per test)."""
    existing = sim_stack.servers.get("acs")
    if existing is not None:
        assert isinstance(existing, AcsEmailSimulator)
        return existing
    server = AcsEmailSimulator(
        issuer=sim_stack.issuer, ssl_context=sim_stack.ssl_context, clock=sim_stack.clock
    )
    sim_stack.add(server)
    return server


@pytest.fixture
def acs(stack: Any, acs_sim: AcsEmailSimulator) -> Iterator[AcsEmailSimulator]:  # noqa: F811
    # ``stack`` reset every simulator, this one included; poll at once instead of after 5 s.
    acs_sim.set_switches(retry_after_seconds=0)
    yield acs_sim


FAST_RETRIES = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, max_retry_after=5.0)


@dataclass
class EmailRotator(Rotator):
    acs: AcsEmailSimulator = None  # type: ignore[assignment]
    notifier: EmailNotifier = None  # type: ignore[assignment]

    async def register_app(
        self,
        entra_app: Any,
        *,
        notifications: dict[str, Any] | None = None,
        integrations: list[dict[str, Any]] | None = None,
        **rotation: Any,
    ) -> ApplicationConfig:
        config = ApplicationConfig.model_validate(
            {
                "appId": entra_app.app_id,
                "objectId": entra_app.object_id,
                "displayName": entra_app.display_name,
                "rotation": {
                    "enabled": True,
                    "secretLifetimeDays": 21,
                    "updateThresholdHours": 1,
                    **rotation,
                },
                "notifications": {"recipients": RECIPIENTS, **(notifications or {})},
                "integrations": integrations or [],
            },
            strict=False,
        )
        await self.services.registry.put(config, if_match=None, create_only=False)
        return config

    def staged_secret(self, app_id: str) -> str:
        versions = self.stack.keyvaults["rotator"].versions_named(f"app-{app_id}-")
        current = [v for v in versions if v.tags.get("stage") == "current"] or versions
        return str(current[-1].value)

    def emails(self, kind_in_subject: str | None = None) -> list[Any]:
        return [m for m in self.acs.outbox() if kind_in_subject is None or kind_in_subject in m.subject]


def build_notifier(services: Services, acs: AcsEmailSimulator, **options: Any) -> EmailNotifier:
    transport = AcsEmailTransport(
        acs.url,
        services.credential,
        timeout_seconds=services.settings.http_timeout_seconds,
        ca_bundle=services.settings.ca_bundle,
        poll_timeout_seconds=10,
        polling_interval_seconds=0.05,
    )
    services._closers.append(transport.close)
    options.setdefault("retry_policy", FAST_RETRIES)
    return EmailNotifier(
        transport,
        sender_address=SENDER,
        clock=services.clock,
        events=services.events,
        applications=services.applications,
        **options,
    )


@pytest.fixture
async def email_rotator(
    stack: Any,  # noqa: F811 - the fixture imported above
    acs: AcsEmailSimulator,
    azurite: str,
    clean_storage: None,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[EmailRotator]:
    env = rotator_environment(azurite, stack, **acs.app_settings(SENDER))
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        monkeypatch.setenv(name, env[name])
    clock = FakeClock(stack)
    services = Services(load_settings(env), clock=clock)
    assert services.settings.email_enabled
    await services.ensure_storage()
    notifier = build_notifier(services, acs)
    # What Services.notifier / Services.alerter return when email is configured (see the report).
    services.__dict__["notifier"] = notifier
    services.__dict__["alerter"] = notifier
    try:
        yield EmailRotator(services, stack, clock, acs=acs, notifier=notifier)
    finally:
        await services.close()
        await asyncio.sleep(0)


def days(n: float) -> timedelta:
    return timedelta(days=n)
