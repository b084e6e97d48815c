"""The rotation engine against Azurite and the simulated Entra ID + Key Vault, through real SDKs."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.config import load_settings
from shared.domain.models import ApplicationConfig, ApplicationStatus, JobReason, RotationJob
from shared.services import Services
from tests.conftest import base_environment

UNMANAGED_SECRET = "planted-unmanaged-secret-VALUE-0123456789"


class FakeClock:
    """The app's clock and the simulators' clock, moved together."""

    def __init__(self, stack: Any) -> None:
        self._stack = stack
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta
        self._stack.clock.offset_seconds = self.offset.total_seconds()


@pytest.fixture
def stack(sim_stack: Any) -> Iterator[Any]:
    sim_stack.reset()
    yield sim_stack
    sim_stack.reset()


def rotator_environment(azurite: str, stack: Any, **overrides: str) -> dict[str, str]:
    return base_environment(
        azurite, **{**stack.app_settings(), "ROTATOR_VERIFY_TIMEOUT_SECONDS": "30", **overrides}
    )


@dataclass
class Rotator:
    services: Services
    stack: Any
    clock: FakeClock

    def seed_entra_app(
        self, *, audience: str = "AzureADMyOrg", passwords: list[dict[str, Any]] | None = None
    ) -> Any:
        if passwords is None:
            passwords = [
                {
                    "displayName": "hand-made",
                    "secretText": UNMANAGED_SECRET,
                    "endDateTime": (self.clock() + timedelta(days=30)).isoformat(),
                }
            ]
        return self.stack.entra.add_application("Payroll API", sign_in_audience=audience, passwords=passwords)

    async def register(self, entra_app: Any, **rotation: Any) -> ApplicationConfig:
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
            },
            strict=False,
        )
        await self.services.registry.put(config, if_match=None, create_only=False)
        return config

    async def status(self, app_id: str) -> ApplicationStatus:
        return (await self.services.applications.get(app_id)).status

    def job(self, app_id: str, reason: JobReason = JobReason.MANUAL, **extra: Any) -> RotationJob:
        return RotationJob(
            app_id=app_id,
            rotation_id=str(uuid.uuid4()),
            reason=reason,
            requested_at=self.clock(),
            **extra,
        )

    def passwords(self, entra_app: Any) -> list[Any]:
        return list(self.stack.entra.get_application(entra_app.object_id).passwords)

    def managed(self, entra_app: Any) -> list[Any]:
        prefix = self.services.settings.credential_prefix + ":"
        return [p for p in self.passwords(entra_app) if (p.display_name or "").startswith(prefix)]

    async def queued_jobs(self) -> list[RotationJob]:
        """Take every job off the rotations queue (as the host would deliver them)."""
        from shared.storage.queue import QUEUE_NAME, parse_job

        client = self.services.queue_client(QUEUE_NAME)
        jobs = []
        async for message in client.receive_messages(messages_per_page=32, visibility_timeout=5):
            jobs.append(parse_job(message.content))
            await client.delete_message(message)
        return jobs

    async def log_events(self, app_id: str) -> list[str]:
        page = await self.services.rotation_log.list_page(app_id, 100, None)
        return [entry.event for entry in reversed(page.items)]


@contextlib.asynccontextmanager
async def rotator_with(
    stack: Any, azurite: str, monkeypatch: pytest.MonkeyPatch, **settings: str
) -> AsyncIterator[Rotator]:
    """A ``Rotator`` on the stack and Azurite with ``settings`` over the defaults (setting names)."""
    env = rotator_environment(azurite, stack, **settings)
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        monkeypatch.setenv(name, env[name])
    clock = FakeClock(stack)
    services = Services(load_settings(env), clock=clock)
    await services.ensure_storage()
    try:
        yield Rotator(services, stack, clock)
    finally:
        await services.close()


@pytest.fixture
async def rotator(
    stack: Any, azurite: str, clean_storage: None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Rotator]:
    async with rotator_with(stack, azurite, monkeypatch) as made:
        yield made
