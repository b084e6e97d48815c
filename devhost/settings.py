"""App settings the way the Functions host resolves them: from the environment.

* ``%Name%`` inside a binding value (schedule, queue name) is replaced by the app
  setting ``Name``.
* A storage ``connection`` names an app setting holding a connection string; when it is
  missing the host also tries ``AzureWebJobs<connection>``; an empty connection means
  ``AzureWebJobsStorage``. Identity-based connections (``<name>__queueServiceUri``) need
  Azure credentials and are refused here with a clear message.
* ``local.settings.json`` ``Values`` become environment variables, as Core Tools does.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path

__all__ = [
    "SettingError",
    "load_local_settings",
    "resolve_expression",
    "resolve_storage_connection",
    "validate_queue_name",
]

_EXPRESSION = re.compile(r"%([^%]+)%")
_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")


class SettingError(LookupError):
    """An app setting a binding needs is missing or unusable."""

    def __str__(self) -> str:
        # LookupError would quote the message; we want it as written.
        return str(self.args[0]) if self.args else ""


def resolve_expression(value: str, environ: Mapping[str, str], *, what: str) -> str:
    """Replace each ``%Name%`` with the app setting ``Name``."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise SettingError(f"{what}: app setting {name!r} (from %{name}%) is not set")
        return environ[name]

    return _EXPRESSION.sub(substitute, value)


def resolve_storage_connection(connection: str | None, environ: Mapping[str, str]) -> str:
    """The connection string named by a storage binding's ``connection``."""
    name = connection or "AzureWebJobsStorage"
    for candidate in (name, f"AzureWebJobs{name}"):
        value = environ.get(candidate)
        if value:
            return value
    prefix = f"{name}__"
    if any(key.startswith(prefix) for key in environ):
        raise SettingError(
            f"connection {name!r} is identity-based ({prefix}...); the local host needs a "
            f"connection string in the app setting {name!r} (e.g. an Azurite one)"
        )
    raise SettingError(
        f"connection {name!r}: app setting {name!r} is not set; set it to a storage "
        f"connection string (e.g. UseDevelopmentStorage=true for Azurite)"
    )


def validate_queue_name(name: str) -> str:
    """Lower-case and check a queue name, as the queue trigger does."""
    normalized = name.lower()
    if not 3 <= len(normalized) <= 63 or not _QUEUE_NAME.match(normalized):
        raise SettingError(
            f"invalid queue name {name!r}: 3-63 characters, lowercase letters, digits and "
            f"single dashes, starting and ending with a letter or digit"
        )
    return normalized


def load_local_settings(path: str | Path, environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Copy ``Values`` of local.settings.json into the environment.

    Variables already set win, so a shell export overrides the file. Returns the names
    that were set.
    """
    target: MutableMapping[str, str] = os.environ if environ is None else environ
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise SettingError(f"cannot read {path}: {exc}") from None
    values = document.get("Values") if isinstance(document, dict) else None
    if values is None:
        return []
    if not isinstance(values, dict):
        raise SettingError(f"{path}: 'Values' must be an object")
    applied: list[str] = []
    for key, value in values.items():
        if key in target:
            continue
        target[str(key)] = "" if value is None else str(value)
        applied.append(str(key))
    return applied
