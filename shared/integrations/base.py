"""The one contract every integration plugin follows, and the registry that holds them.

A plugin is a module with a class implementing ``IntegrationPlugin`` and one ``register`` call in
``shared.integrations.registry``. The engine calls, for each configured integration:

* ``check(settings, app)``  before anything is created: problems that would make delivery fail
  (a dry run shows them too). No network calls that change anything.
* ``deploy(context)``        deliver the secret; must be idempotent (a retry re-sends the same value).
* ``verify(context)``        confirm the destination holds / accepts the new secret.

Plugins raise the ``shared.errors`` hierarchy: ``ThrottledError`` / ``TransientServiceError`` are
retried with backoff; anything else fails that integration only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared.domain.secret import SecretValue

if TYPE_CHECKING:
    from shared.domain.models import ApplicationConfig
    from shared.errors import FieldProblem


@dataclass(frozen=True)
class DeployContext:
    app: ApplicationConfig
    settings: Any  # the integration's own settings model
    rotation_id: str
    key_id: str
    secret: SecretValue
    expires_at: datetime | None
    services: Any  # shared.services.Services: adapters the plugin may use


@dataclass(frozen=True)
class DeployOutcome:
    """What a deployment did, in words fit for the log (never the value)."""

    summary: str
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WriteOnlyField:
    """A credential an integration takes at PUT and never returns (``shared.credentials``).

    ``input_field`` is popped from the body and stored in the rotator's vault; ``reference_field``
    then holds the vault secret's name (``credential_secret_name(appId, name, name_suffix)``).
    ``defaults`` are set on the integration when the credential is given.
    """

    input_field: str
    reference_field: str
    name_suffix: str
    description: str
    https: bool = False
    defaults: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PlanItem:
    integration: str
    kind: str
    action: str
    problems: list[FieldProblem] = field(default_factory=list)


class IntegrationPlugin(Protocol):
    """What a destination declares and does. The registry builds from the declarations the
    write-only credential handling, their OpenAPI fields and the failure email's steps."""

    kind: str
    # The pydantic model of the integration's settings (an ``IntegrationBase`` with a ``Literal`` kind);
    # the registry builds the API's ``Integration`` union from these.
    settings_model: type[Any]
    write_only: tuple[WriteOnlyField, ...]
    # What to check when delivery to this kind fails (the failure alert lists these).
    troubleshooting: tuple[str, ...]

    def check(self, settings: Any, app: ApplicationConfig) -> list[FieldProblem]: ...

    def describe(self, settings: Any, app: ApplicationConfig) -> str: ...

    async def deploy(self, context: DeployContext) -> DeployOutcome: ...

    async def verify(self, context: DeployContext) -> None: ...


class PluginRegistry:
    def __init__(self) -> None:
        self._plugins: dict[str, IntegrationPlugin] = {}

    def register(self, plugin: IntegrationPlugin) -> None:
        if plugin.kind in self._plugins:
            raise ValueError(f"an integration plugin for {plugin.kind!r} is already registered")
        self._plugins[plugin.kind] = plugin

    def get(self, kind: str) -> IntegrationPlugin | None:
        return self._plugins.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._plugins)

    def plugins(self) -> list[IntegrationPlugin]:
        return [self._plugins[kind] for kind in self.kinds()]

    def write_only(self, kind: str) -> tuple[WriteOnlyField, ...]:
        plugin = self._plugins.get(kind)
        return plugin.write_only if plugin is not None else ()

    def troubleshooting(self, kind: str) -> tuple[str, ...]:
        plugin = self._plugins.get(kind)
        return plugin.troubleshooting if plugin is not None else ()
