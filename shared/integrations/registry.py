"""Which plugins exist. Adding an integration: one module with a settings model and a ``PLUGIN``,
and one entry in ``PLUGINS`` here. The API's ``Integration`` union, its validation, the OpenAPI
schema, the credential handling and the failure email's steps are all built from these."""

from __future__ import annotations

from shared.domain.fields import IntegrationBase
from shared.integrations import app_service, automation, azure_devops, keyvault, logic_app, vercel
from shared.integrations.base import IntegrationPlugin, PluginRegistry

PLUGINS: tuple[IntegrationPlugin, ...] = (
    keyvault.PLUGIN,
    azure_devops.PLUGIN,
    vercel.PLUGIN,
    logic_app.PLUGIN,
    app_service.PLUGIN,
    automation.PLUGIN,
)


def settings_models() -> tuple[type[IntegrationBase], ...]:
    """The settings model of every registered plugin, in registration order."""
    return tuple(plugin.settings_model for plugin in PLUGINS)


def default_registry() -> PluginRegistry:
    registry = PluginRegistry()
    for plugin in PLUGINS:
        registry.register(plugin)
    return registry
