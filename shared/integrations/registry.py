"""Which plugins exist. Adding an integration: one module with a ``PLUGIN``, one line here."""

from __future__ import annotations

from shared.integrations.base import PluginRegistry


def default_registry() -> PluginRegistry:
    from shared.integrations import app_service, automation, azure_devops, keyvault, logic_app, vercel

    registry = PluginRegistry()
    for module in (keyvault, azure_devops, vercel, logic_app, app_service, automation):
        registry.register(module.PLUGIN)
    return registry
