"""Which plugins exist. Adding an integration: one module, one line here."""

from __future__ import annotations

from shared.integrations.base import PluginRegistry


def default_registry() -> PluginRegistry:
    registry = PluginRegistry()
    return registry
