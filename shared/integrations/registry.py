"""Which plugins exist. Adding an integration: one module with a ``PLUGIN``, one line here."""

from __future__ import annotations

from shared.integrations.base import PluginRegistry


def default_registry() -> PluginRegistry:
    from shared.integrations import keyvault

    registry = PluginRegistry()
    registry.register(keyvault.PLUGIN)
    return registry
