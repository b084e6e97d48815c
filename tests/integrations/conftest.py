"""Fixtures of the integration plugin tests: the rotation fixtures plus destination simulators."""

# ruff: noqa: F811 - fixtures imported from tests.rotation.conftest are parameters here by design

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.adapters.vault import credential_secret_name
from shared.config import load_settings
from shared.domain.models import ApplicationConfig
from shared.services import Services
from tests.rotation.conftest import (  # noqa: F401 - fixtures re-exported for this package
    FakeClock,
    Rotator,
    rotator,
    rotator_environment,
    stack,
)

# --- Azure DevOps and Vercel (test_azure_devops.py, test_vercel.py) --------------------------------


@pytest.fixture
def devops_sim(stack: Any) -> Any:
    return stack.devops  # ``stack`` has reset it


@pytest.fixture
def vercel_sim(stack: Any) -> Any:
    return stack.vercel


@pytest.fixture
async def devops_vercel_rotator(
    stack: Any,
    azurite: str,
    clean_storage: None,
    monkeypatch: pytest.MonkeyPatch,
    devops_sim: Any,
    vercel_sim: Any,
) -> AsyncIterator[Rotator]:
    """Like ``rotator``, with the DevOps and Vercel URLs pointed at their simulators."""
    env = rotator_environment(
        azurite, stack, ROTATOR_DEVOPS_URL=devops_sim.url, ROTATOR_VERCEL_URL=vercel_sim.url
    )
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        monkeypatch.setenv(name, env[name])
    clock = FakeClock(stack)
    services = Services(load_settings(env), clock=clock)
    await services.ensure_storage()
    try:
        yield Rotator(services, stack, clock)
    finally:
        await services.close()


def use_plugins(services: Services, *kinds: str) -> None:
    """Install a registry with Key Vault and the named plugins (before ``services.engine`` is built)."""
    from shared.integrations import azure_devops, keyvault, vercel
    from shared.integrations.base import PluginRegistry

    available = {"azureDevOps": azure_devops.PLUGIN, "vercel": vercel.VercelPlugin()}
    registry = PluginRegistry()
    registry.register(keyvault.PLUGIN)
    for kind in kinds:
        registry.register(available[kind])
    assert "engine" not in services.__dict__, "install plugins before the engine is built"
    services.__dict__["plugins"] = registry


async def register_with_integrations(
    rotator: Rotator, entra_app: Any, integrations: list[dict[str, Any]], *, group_id: str | None = None
) -> ApplicationConfig:
    config = ApplicationConfig.model_validate(
        {
            "appId": entra_app.app_id,
            "objectId": entra_app.object_id,
            "displayName": entra_app.display_name,
            "groupId": group_id,
            "rotation": {"enabled": True, "secretLifetimeDays": 21, "updateThresholdHours": 1},
            "integrations": integrations,
        },
        strict=False,
    )
    await rotator.services.registry.put(config, if_match=None, create_only=False)
    return config


def current_staged(rotator: Rotator, app_id: str) -> Any:
    [current] = [
        v
        for v in rotator.stack.keyvaults["rotator"].versions_named(f"app-{app_id}-")
        if v.tags["stage"] == "current"
    ]
    return current


async def seed_vercel(rotator: Rotator, vercel_sim: Any) -> Any:
    from shared.domain.models import Group, VercelGroupSettings

    name = credential_secret_name("vercel", "web")
    rotator.stack.keyvaults["rotator"].set_secret(name, "vercel-token-web")
    vercel_sim.add_token("vercel-token-web", "team_web")
    await rotator.services.groups.put(
        Group(
            group_id="web",
            display_name="Web",
            vercel=VercelGroupSettings(team_id="team_web", token_secret_name=name),
        ),
        if_match=None,
    )
    return vercel_sim.add_project("payroll-web", team_id="team_web")


async def receive_job(services: Any) -> Any:
    from shared.storage.queue import QUEUE_NAME, parse_job

    queue = services.queue_service.get_queue_client(QUEUE_NAME)
    messages = [m async for m in queue.receive_messages(max_messages=32)]
    assert len(messages) == 1
    await queue.delete_message(messages[0])
    # The host decodes the base64 body before the trigger sees it; so do we.
    return parse_job(base64.b64decode(messages[0].content))


# --- ARM (Logic App connections, App Service, Automation) and webhooks ----------------------------
# (test_logic_app.py, test_app_service.py, test_automation.py)

ARM_SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
ARM_GROUP = f"/subscriptions/{ARM_SUBSCRIPTION}/resourceGroups/payroll-rg/providers"
CONNECTION_ID = f"{ARM_GROUP}/Microsoft.Web/connections/payroll-kv"
SITE_ID = f"{ARM_GROUP}/Microsoft.Web/sites/payroll-api"
ACCOUNT_ID = f"{ARM_GROUP}/Microsoft.Automation/automationAccounts/ops-automation"
NEW_SECRET = "Nw8Q~new-client-secret-VALUE-0123456789abcdef"


@pytest.fixture
def arm_sim(stack: Any) -> Any:
    return stack.arm  # ``stack`` has reset it


@pytest.fixture
def webhook_sim(stack: Any) -> Any:
    return stack.webhook


@pytest.fixture
async def arm_services(
    stack: Any, arm_sim: Any, azurite: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Services]:
    """Services for calling the ARM / webhook plugins directly: the stack's identity, vaults and ARM,
    and Azurite (ARM writes take a token of the shared ARM write budget)."""
    from tests.conftest import base_environment

    env = base_environment(azurite, **{**stack.app_settings(), "ROTATOR_ARM_URL": arm_sim.url})
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        monkeypatch.setenv(name, env[name])
    services = Services(load_settings(env), clock=FakeClock(stack))
    await services.ensure_storage()
    try:
        yield services
    finally:
        await services.close()


@pytest.fixture
async def arm_rotator(
    stack: Any,
    azurite: str,
    clean_storage: None,
    monkeypatch: pytest.MonkeyPatch,
    arm_sim: Any,
    webhook_sim: Any,
) -> AsyncIterator[Rotator]:
    """Like ``rotator``, with ROTATOR_ARM_URL pointed at the ARM simulator."""
    env = rotator_environment(azurite, stack, ROTATOR_ARM_URL=arm_sim.url)
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        monkeypatch.setenv(name, env[name])
    clock = FakeClock(stack)
    services = Services(load_settings(env), clock=clock)
    await services.ensure_storage()
    try:
        yield Rotator(services, stack, clock)
    finally:
        await services.close()


def install_plugins(services: Services, *plugins: Any) -> None:
    """A test-local registry with Key Vault and ``plugins`` (before ``services.engine`` is built)."""
    from shared.integrations import keyvault
    from shared.integrations.base import PluginRegistry

    registry = PluginRegistry()
    registry.register(keyvault.PLUGIN)
    for plugin in plugins:
        registry.register(plugin)
    assert "engine" not in services.__dict__, "install plugins before the engine is built"
    services.__dict__["plugins"] = registry


def plugin_context(
    services: Services,
    integration: dict[str, Any],
    *,
    app_id: str = "7d5c1a2b-0000-4000-8000-00000000a99a",
    secret: str = NEW_SECRET,
    key_id: str = "5b3f7c2e-1111-4222-8333-444455556666",
    rotation_id: str = "rot-0001",
) -> Any:
    """A DeployContext for one integration of a throwaway application."""
    from datetime import UTC, datetime, timedelta

    from shared.domain.secret import SecretValue
    from shared.integrations.base import DeployContext

    config = ApplicationConfig.model_validate(
        {
            "appId": app_id,
            "objectId": "0b0b0b0b-0000-4000-8000-000000000001",
            "displayName": "Payroll API",
            "integrations": [integration],
        },
        strict=False,
    )
    return DeployContext(
        app=config,
        settings=config.integrations[0],
        rotation_id=rotation_id,
        key_id=key_id,
        secret=SecretValue(secret),
        expires_at=datetime(2030, 1, 1, tzinfo=UTC) + timedelta(days=0),
        services=services,
    )


def assert_secret_absent(secret: str, *things: Any, logs: str = "") -> None:
    """The value appears in no outcome, detail, exception (message, context, repr) or log text."""
    for thing in things:
        texts = [str(thing), repr(thing)]
        for attribute in ("summary", "warnings", "details", "context", "message"):
            if hasattr(thing, attribute):
                texts.append(repr(getattr(thing, attribute)))
        for text in texts:
            assert secret not in text, f"secret leaked in {type(thing).__name__}"
    assert secret not in logs, "secret leaked in the logs"


def app_logs(caplog: pytest.LogCaptureFixture) -> str:
    """What the rotator process logged (the simulators' own access logs are the receivers' side)."""
    return "\n".join(
        f"{record.getMessage()} {record.exc_text or ''}"
        for record in caplog.records
        if not record.name.startswith("simulators")
    )
