"""Read a FunctionApp's functions the way the Python worker indexes them.

Facts about azure-functions 1.26 this relies on (checked against the installed package):

* ``app.get_functions()`` builds ``Function`` objects; it fills an HTTP trigger's missing
  ``route`` with the function name and missing ``auth_level`` with the app's level. It
  records names in ``app.functions_bindings`` and raises ``ValueError`` ("does not have a
  unique function name") on a SECOND call, so we reset that attribute first.
* ``Function.get_trigger()`` is an ``HttpTrigger`` (``route``, ``methods``: list of
  ``HttpMethod`` or None, ``auth_level``: ``AuthLevel``), ``TimerTrigger`` (``schedule``,
  ``run_on_startup``, ``use_monitor``) or ``QueueTrigger`` (``queue_name``,
  ``connection``); every binding has ``type``, ``name`` and ``direction`` (0 in, 1 out,
  2 inout). ``@app.route`` adds an ``http`` output binding named ``$return``.
* Like the worker, parameters must match the binding names exactly, except a parameter
  called ``context``, which receives a ``func.Context``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

__all__ = [
    "FunctionLoadError",
    "FunctionSpec",
    "HttpTriggerInfo",
    "OutputBindingInfo",
    "QueueTriggerInfo",
    "SupportsGetFunctions",
    "TimerTriggerInfo",
    "discover_functions",
    "load_app",
]

HTTP_TRIGGER = "httpTrigger"
TIMER_TRIGGER = "timerTrigger"
QUEUE_TRIGGER = "queueTrigger"
_DIRECTION_OUT = 1
_DIRECTION_INOUT = 2


class FunctionLoadError(RuntimeError):
    """A function cannot be loaded (the worker would refuse it too)."""


class SupportsGetFunctions(Protocol):
    """A FunctionApp (anything with ``get_functions()``)."""

    def get_functions(self) -> Any: ...


@dataclass(frozen=True)
class HttpTriggerInfo:
    route: str
    methods: frozenset[str] | None  # None: every method
    auth_level: str  # "anonymous" | "function" | "admin"


@dataclass(frozen=True)
class TimerTriggerInfo:
    schedule: str
    run_on_startup: bool
    use_monitor: bool | None


@dataclass(frozen=True)
class QueueTriggerInfo:
    queue_name: str
    connection: str | None


@dataclass(frozen=True)
class OutputBindingInfo:
    name: str
    type: str
    fields: dict[str, Any] = field(default_factory=dict)


TriggerInfo = HttpTriggerInfo | TimerTriggerInfo | QueueTriggerInfo


@dataclass(frozen=True)
class FunctionSpec:
    """Everything the host needs to know to invoke one function."""

    name: str
    trigger_type: str
    trigger_arg: str
    trigger: TriggerInfo | None  # None: a trigger type the local host does not run
    func: Callable[..., Any]
    is_async: bool
    requires_context: bool
    outputs: tuple[OutputBindingInfo, ...]
    return_binding: OutputBindingInfo | None
    trigger_annotation: Any
    directory: str
    # Set when the local host cannot run this function; it is listed but skipped.
    unsupported_reason: str | None = None

    @property
    def description(self) -> str:
        """Route, schedule or queue, for the startup table."""
        if self.unsupported_reason is not None:
            return f"not run locally: {self.unsupported_reason}"
        trigger = self.trigger
        if isinstance(trigger, HttpTriggerInfo):
            methods = ",".join(sorted(trigger.methods)) if trigger.methods else "*"
            return f"[{methods}] {trigger.route} ({trigger.auth_level})"
        if isinstance(trigger, TimerTriggerInfo):
            startup = ", runOnStartup" if trigger.run_on_startup else ""
            return f"{trigger.schedule}{startup}"
        if isinstance(trigger, QueueTriggerInfo):
            connection = trigger.connection or "AzureWebJobsStorage"
            return f"{trigger.queue_name} (connection {connection})"
        return "not run locally"


def _enum_value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _binding_fields(binding: Any) -> dict[str, Any]:
    try:
        raw = binding.get_dict_repr()
    except Exception:  # noqa: BLE001 - a third-party binding's broken repr must not stop the host
        return {}
    return {key: _plain(value) for key, value in dict(raw).items()}


def _trigger_info(trigger: Any) -> TriggerInfo | None:
    kind = getattr(trigger, "type", None)
    if kind == HTTP_TRIGGER:
        methods = getattr(trigger, "methods", None)
        return HttpTriggerInfo(
            route=str(trigger.route),
            methods=(
                None if methods is None else frozenset(str(_enum_value(method)).upper() for method in methods)
            ),
            auth_level=str(_enum_value(getattr(trigger, "auth_level", None)) or "function").lower(),
        )
    if kind == TIMER_TRIGGER:
        return TimerTriggerInfo(
            schedule=str(trigger.schedule),
            run_on_startup=bool(getattr(trigger, "run_on_startup", False)),
            use_monitor=getattr(trigger, "use_monitor", None),
        )
    if kind == QUEUE_TRIGGER:
        return QueueTriggerInfo(
            queue_name=str(trigger.queue_name),
            connection=getattr(trigger, "connection", None),
        )
    return None


def _function_directory(func: Callable[..., Any]) -> str:
    try:
        return os.path.dirname(os.path.abspath(inspect.getfile(func)))
    except (TypeError, OSError):
        return os.getcwd()


def _is_async(func: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(inspect.unwrap(func))


def _signature(func: Callable[..., Any]) -> inspect.Signature:
    # Resolve string annotations (from __future__ import annotations) when possible.
    try:
        return inspect.signature(func, eval_str=True)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: fall back to the raw strings
        return inspect.signature(func)


def _build_spec(function: Any) -> FunctionSpec:
    name = str(function.get_function_name())
    func = function.get_user_function()
    trigger = function.get_trigger()
    if trigger is None:
        raise FunctionLoadError(f"function {name!r} has no trigger")

    outputs: list[OutputBindingInfo] = []
    inputs: list[str] = []
    return_binding: OutputBindingInfo | None = None
    for binding in function.get_bindings():
        if binding is trigger:
            continue
        direction = getattr(binding, "direction", 0)
        binding_info = OutputBindingInfo(
            name=str(binding.name), type=str(binding.type), fields=_binding_fields(binding)
        )
        if direction == _DIRECTION_INOUT:
            raise FunctionLoadError(f"function {name!r}: 'inout' bindings are not supported")
        if binding_info.name == "$return":
            return_binding = binding_info
        elif direction == _DIRECTION_OUT:
            outputs.append(binding_info)
        else:
            inputs.append(binding_info.name)

    # The worker's rule: parameters and binding names must be the same set, except
    # a parameter named "context".
    try:
        parameters = dict(_signature(func).parameters)
    except (TypeError, ValueError) as exc:
        raise FunctionLoadError(f"function {name!r}: cannot read its signature: {exc}") from None
    bound = {str(trigger.name), *inputs, *(output.name for output in outputs)}
    requires_context = "context" in parameters and "context" not in bound
    if requires_context:
        parameters.pop("context")
    extra = sorted(set(parameters) - bound)
    missing = sorted(bound - set(parameters))
    if extra or missing:
        problems = []
        if extra:
            problems.append(f"parameters declared in Python but not in the bindings: {extra}")
        if missing:
            problems.append(f"bindings without a Python parameter: {missing}")
        raise FunctionLoadError(f"cannot load the {name} function: {'; '.join(problems)}")

    annotation = parameters[str(trigger.name)].annotation
    info = _trigger_info(trigger)
    reason: str | None = None
    if info is None:
        reason = f"trigger type {getattr(trigger, 'type', '?')!r} is not supported"
    elif inputs:
        reason = f"input bindings {sorted(inputs)} are not supported"
    return FunctionSpec(
        name=name,
        trigger_type=str(getattr(trigger, "type", "")),
        trigger_arg=str(trigger.name),
        trigger=info,
        func=func,
        is_async=_is_async(func),
        requires_context=requires_context,
        outputs=tuple(outputs),
        return_binding=return_binding,
        trigger_annotation=None if annotation is inspect.Parameter.empty else annotation,
        directory=_function_directory(func),
        unsupported_reason=reason,
    )


def discover_functions(app: SupportsGetFunctions) -> list[FunctionSpec]:
    """Index the app's functions; raises FunctionLoadError like the worker would."""
    if hasattr(app, "functions_bindings"):
        # get_functions() raises on its second call unless this name registry is reset.
        app.functions_bindings = None
    try:
        functions: Sequence[Any] = app.get_functions()
    except ValueError as exc:
        raise FunctionLoadError(str(exc)) from None
    return [_build_spec(function) for function in functions]


def load_app(
    module_name: str, attribute: str = "app", *, app_dir: str | Path | None = None
) -> tuple[SupportsGetFunctions, ModuleType]:
    """Import ``module_name`` (from ``app_dir`` first) and return its FunctionApp."""
    if app_dir is not None:
        directory = str(Path(app_dir).resolve())
        if directory not in sys.path:
            sys.path.insert(0, directory)
    module = importlib.import_module(module_name)
    app = getattr(module, attribute, None)
    if app is None or not callable(getattr(app, "get_functions", None)):
        raise FunctionLoadError(f"module {module_name!r} has no FunctionApp attribute {attribute!r}")
    return app, module
