"""The settings ``make run`` gives the app, in layers (each overrides the one before):

1. the local stack's defaults: a short verification wait suits a demo;
2. the local stack's endpoints: Azurite and the simulators (tenant, Graph, login, vaults, ...);
3. ``local.settings.json`` in the project root, if the user has one (the Functions Core Tools
   format: ``{"IsEncrypted": false, "Values": {...}}``);
4. the environment: any setting the app reads (``shared.config.SETTINGS``) that is exported.

The result is validated by ``shared.config.load_settings``, with the same errors as in Azure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.config import SETTINGS

STACK_DEFAULTS = {"ROTATOR_VERIFY_TIMEOUT_SECONDS": "60"}
# Also taken from the environment and local.settings.json: the managed-identity endpoint the
# simulators (or a real host) provide.
EXTRA_NAMES = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")


class LocalSettingsError(ValueError):
    """``local.settings.json`` cannot be used (the message says why, never a value)."""


@dataclass(frozen=True)
class Layered:
    values: dict[str, str]
    # Which layer each value came from: "defaults", "stack", "local.settings.json", "environment".
    sources: dict[str, str]


def read_local_settings(path: Path) -> dict[str, str]:
    """The ``Values`` of a Core Tools ``local.settings.json`` (empty when there is none)."""
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise LocalSettingsError(f"{path}: not readable JSON ({type(error).__name__})") from None
    if not isinstance(document, dict):
        raise LocalSettingsError(f'{path}: expected an object with "Values"')
    if document.get("IsEncrypted") is True:
        raise LocalSettingsError(f"{path}: encrypted settings are not supported; decrypt them first")
    values = document.get("Values", {})
    if not isinstance(values, dict) or not all(isinstance(v, str | int | bool) for v in values.values()):
        raise LocalSettingsError(f'{path}: "Values" must map names to strings')
    return {
        str(name): str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in values.items()
    }


def layer(stack: Mapping[str, str], local_settings: Mapping[str, str], environ: Mapping[str, str]) -> Layered:
    names = {spec.name for spec in SETTINGS} | set(EXTRA_NAMES)
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for source, layer_values in (
        ("defaults", STACK_DEFAULTS),
        ("stack", stack),
        ("local.settings.json", local_settings),
        ("environment", environ),
    ):
        for name, value in layer_values.items():
            if source in ("local.settings.json", "environment") and name not in names:
                continue  # FUNCTIONS_WORKER_RUNTIME and the like: not the app's settings
            if source == "environment" and not value.strip():
                continue
            values[name] = value
            sources[name] = source
    return Layered(values, sources)
