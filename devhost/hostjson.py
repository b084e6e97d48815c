"""The parts of host.json that change how the local host behaves.

Keys are matched case-insensitively because the Functions host reads host.json through
.NET configuration, which ignores case.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from devhost.ncrontab import parse_timespan

__all__ = ["HostConfig", "HostJsonError", "QueuesOptions", "load_host_json", "parse_host_json"]


class HostJsonError(ValueError):
    """host.json is unreadable or holds a value the host would refuse."""


@dataclass(frozen=True)
class QueuesOptions:
    """``extensions.queues``; defaults are the Storage Queues extension v5 defaults."""

    max_dequeue_count: int = 5
    visibility_timeout: timedelta = timedelta(0)
    batch_size: int = 16
    new_batch_threshold: int | None = None
    max_polling_interval: timedelta = timedelta(minutes=1)
    message_encoding: str = "base64"

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 32:
            raise HostJsonError(f"queues.batchSize must be 1-32, got {self.batch_size}")
        if self.max_dequeue_count < 1:
            raise HostJsonError(f"queues.maxDequeueCount must be at least 1, got {self.max_dequeue_count}")
        if self.visibility_timeout < timedelta(0):
            raise HostJsonError("queues.visibilityTimeout must not be negative")
        if self.max_polling_interval < timedelta(milliseconds=100):
            raise HostJsonError("queues.maxPollingInterval must be at least 00:00:00.1")
        if self.message_encoding not in ("base64", "none"):
            raise HostJsonError(
                f"queues.messageEncoding must be 'base64' or 'none', got {self.message_encoding!r}"
            )


@dataclass(frozen=True)
class HostConfig:
    """What the local host takes from host.json."""

    route_prefix: str = "api"
    queues: QueuesOptions = field(default_factory=QueuesOptions)
    # host.json "functions": when set, only these functions are loaded.
    functions: tuple[str, ...] | None = None
    function_timeout: timedelta | None = None
    path: Path | None = None


def _get(mapping: Mapping[str, Any], key: str) -> Any:
    wanted = key.lower()
    for name, value in mapping.items():
        if name.lower() == wanted:
            return value
    return None


def _section(mapping: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    current: Any = mapping
    for key in keys:
        current = _get(current, key) if isinstance(current, Mapping) else None
    return current if isinstance(current, Mapping) else {}


def _timespan(value: Any, name: str, *, number_unit: str) -> timedelta:
    # The v2 queue extension took milliseconds as a number; v5 takes a TimeSpan string.
    if isinstance(value, bool):
        raise HostJsonError(f"{name} must be a TimeSpan string, got {value!r}")
    if isinstance(value, int | float):
        return timedelta(**{number_unit: value})
    if isinstance(value, str):
        try:
            return parse_timespan(value)
        except ValueError as exc:
            raise HostJsonError(f"{name}: {exc}") from None
    raise HostJsonError(f"{name} must be a TimeSpan string, got {value!r}")


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise HostJsonError(f"{name} must be an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise HostJsonError(f"{name} must be an integer, got {value!r}") from None


def parse_host_json(data: Mapping[str, Any], *, path: Path | None = None) -> HostConfig:
    """Build a HostConfig from the decoded host.json document."""
    http = _section(data, "extensions", "http")
    prefix = _get(http, "routePrefix")
    route_prefix = "api" if prefix is None else str(prefix).strip("/")

    queues = _section(data, "extensions", "queues")
    defaults = QueuesOptions()
    raw = {
        "max_dequeue_count": _get(queues, "maxDequeueCount"),
        "visibility_timeout": _get(queues, "visibilityTimeout"),
        "batch_size": _get(queues, "batchSize"),
        "new_batch_threshold": _get(queues, "newBatchThreshold"),
        "max_polling_interval": _get(queues, "maxPollingInterval"),
        "message_encoding": _get(queues, "messageEncoding"),
    }
    options = QueuesOptions(
        max_dequeue_count=(
            defaults.max_dequeue_count
            if raw["max_dequeue_count"] is None
            else _int(raw["max_dequeue_count"], "queues.maxDequeueCount")
        ),
        visibility_timeout=(
            defaults.visibility_timeout
            if raw["visibility_timeout"] is None
            else _timespan(raw["visibility_timeout"], "queues.visibilityTimeout", number_unit="seconds")
        ),
        batch_size=(
            defaults.batch_size if raw["batch_size"] is None else _int(raw["batch_size"], "queues.batchSize")
        ),
        new_batch_threshold=(
            None
            if raw["new_batch_threshold"] is None
            else _int(raw["new_batch_threshold"], "queues.newBatchThreshold")
        ),
        max_polling_interval=(
            defaults.max_polling_interval
            if raw["max_polling_interval"] is None
            else _timespan(
                raw["max_polling_interval"],
                "queues.maxPollingInterval",
                number_unit="milliseconds",
            )
        ),
        message_encoding=(
            defaults.message_encoding
            if raw["message_encoding"] is None
            else str(raw["message_encoding"]).lower()
        ),
    )

    functions_value = _get(data, "functions")
    functions: tuple[str, ...] | None = None
    if functions_value is not None:
        if not isinstance(functions_value, list) or not all(
            isinstance(item, str) for item in functions_value
        ):
            raise HostJsonError("host.json 'functions' must be a list of function names")
        functions = tuple(functions_value)

    timeout_value = _get(data, "functionTimeout")
    function_timeout = (
        None if timeout_value is None else _timespan(timeout_value, "functionTimeout", number_unit="seconds")
    )
    return HostConfig(
        route_prefix=route_prefix,
        queues=options,
        functions=functions,
        function_timeout=function_timeout,
        path=path,
    )


def load_host_json(path: str | Path | None, *, missing_ok: bool = True) -> HostConfig:
    """Read host.json; ``None`` (or a missing file, if ``missing_ok``) gives the defaults."""
    if path is None:
        return HostConfig()
    file = Path(path)
    if not file.is_file():
        if missing_ok:
            return HostConfig()
        raise HostJsonError(f"{file} does not exist")
    try:
        data = json.loads(file.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise HostJsonError(f"cannot read {file}: {exc}") from None
    if not isinstance(data, dict):
        raise HostJsonError(f"{file} must hold a JSON object")
    return parse_host_json(data, path=file)
