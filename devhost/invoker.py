"""Calling user functions the way the Python worker does.

* ``async def`` functions run on the host's event loop, so every invocation of one host
  shares that loop (apps cache aio SDK clients bound to it).
* Plain functions run in a thread pool (the worker's ``PYTHON_THREADPOOL_THREAD_COUNT``
  pool); if one returns an awaitable it is awaited on the loop.
* Arguments go by binding name; a ``context`` parameter gets a ``func.Context``; output
  bindings get an ``Out`` whose value is read after the call.
* A function without a ``$return`` binding that returns a value fails, as in the worker.
* The exception of a failed invocation is logged with its traceback to the host's logger
  and re-raised to the trigger, which decides what the caller sees (HTTP: a bare 500).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
from azure.functions import _abc as azf_abc  # TraceContext/RetryContext are not re-exported

from devhost.discovery import FunctionSpec

__all__ = ["InvocationContext", "InvocationOutcome", "InvocationRecord", "Invoker", "OutValue"]


class OutValue(func.Out[Any]):  # type: ignore[misc,unused-ignore]  # azure.* is Any under the project mypy config
    """The object an output-binding parameter receives: the function calls ``set()``."""

    def __init__(self) -> None:
        self._value: Any = None
        self.was_set = False

    def set(self, val: Any) -> None:
        self._value = val
        self.was_set = True

    def get(self) -> Any:
        return self._value


class _TraceContext(azf_abc.TraceContext):  # type: ignore[misc,unused-ignore]  # azure.* is Any under the project mypy config
    def __init__(self) -> None:
        self._parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(azf_abc.RetryContext):  # type: ignore[misc,unused-ignore]  # azure.* is Any under the project mypy config
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):  # type: ignore[misc,unused-ignore]  # azure.* is Any under the project mypy config
    """``func.Context`` for one invocation (the worker's own class is not public)."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._local = threading.local()
        self._local.invocation_id = invocation_id
        self._trace = _TraceContext()
        self._retry = _RetryContext()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> azf_abc.TraceContext:
        return self._trace

    @property
    def retry_context(self) -> azf_abc.RetryContext:
        return self._retry


@dataclass(frozen=True)
class InvocationRecord:
    """One finished invocation, kept by the host for tests and the CLI log."""

    function_name: str
    invocation_id: str
    trigger_type: str
    reason: str
    started_at: datetime
    duration: float
    succeeded: bool
    # "ExceptionType: message" only: tracebacks go to the log, never anywhere else.
    error: str | None = None


@dataclass
class InvocationOutcome:
    return_value: Any
    outputs: dict[str, OutValue] = field(default_factory=dict)


class Invoker:
    """Runs invocations and keeps track of the ones in flight."""

    def __init__(
        self,
        *,
        executor: Executor,
        logger: logging.Logger,
        on_record: Callable[[InvocationRecord], None],
        function_timeout: timedelta | None = None,
    ) -> None:
        self._executor = executor
        self._logger = logger
        self._on_record = on_record
        self._timeout = function_timeout.total_seconds() if function_timeout else None
        self._running: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def running_count(self) -> int:
        return len(self._running)

    async def wait_idle(self, grace: float | None) -> bool:
        """Wait until no invocation runs; False if ``grace`` seconds passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            return False
        return True

    def cancel_running(self) -> int:
        """Cancel the tasks of running invocations (sync ones keep their thread)."""
        for task in self._running:
            task.cancel()
        return len(self._running)

    async def invoke(self, spec: FunctionSpec, trigger_value: Any, *, reason: str) -> InvocationOutcome:
        """Invoke ``spec`` with its trigger argument; re-raises the function's exception."""
        invocation_id = str(uuid.uuid4())
        outputs = {output.name: OutValue() for output in spec.outputs}
        kwargs: dict[str, Any] = {spec.trigger_arg: trigger_value, **outputs}
        if spec.requires_context:
            kwargs["context"] = InvocationContext(invocation_id, spec.name, spec.directory)

        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
            self._idle.clear()
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        self._logger.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", spec.name, reason, invocation_id)
        error: BaseException | None = None
        try:
            result = await asyncio.wait_for(self._call(spec, kwargs), self._timeout)
            self._check_result(spec, result)
            return InvocationOutcome(return_value=result, outputs=outputs)
        except TimeoutError as exc:
            if self._timeout is None or time.perf_counter() - started < self._timeout:
                error = exc  # the function's own TimeoutError, not functionTimeout
                raise
            error = TimeoutError(
                f"Timeout value of {timedelta(seconds=self._timeout)} was exceeded "
                f"by function: Functions.{spec.name}"
            )
            raise error from exc
        except BaseException as exc:
            error = exc
            raise
        finally:
            duration = time.perf_counter() - started
            if task is not None:
                self._running.discard(task)
                if not self._running:
                    self._idle.set()
            self._finish(spec, invocation_id, reason, started_at, duration, error)

    async def _call(self, spec: FunctionSpec, kwargs: dict[str, Any]) -> Any:
        if spec.is_async:
            return await spec.func(**kwargs)
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        result = await loop.run_in_executor(
            self._executor, functools.partial(context.run, spec.func, **kwargs)
        )
        if inspect.isawaitable(result):
            result = await result
        return result

    @staticmethod
    def _check_result(spec: FunctionSpec, result: Any) -> None:
        # The worker fails such an invocation (azure-functions-python-worker#74/#75).
        if spec.return_binding is None and result is not None:
            raise TypeError(f"function {spec.name!r} without a $return binding returned a non-None value")

    def _finish(
        self,
        spec: FunctionSpec,
        invocation_id: str,
        reason: str,
        started_at: datetime,
        duration: float,
        error: BaseException | None,
    ) -> None:
        millis = round(duration * 1000)
        if error is None:
            self._logger.info(
                "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
                spec.name,
                invocation_id,
                millis,
            )
        elif isinstance(error, asyncio.CancelledError):
            self._logger.warning(
                "Executed 'Functions.%s' (Cancelled, Id=%s, Duration=%dms)",
                spec.name,
                invocation_id,
                millis,
            )
        else:
            self._logger.error(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)",
                spec.name,
                invocation_id,
                millis,
                exc_info=(type(error), error, error.__traceback__),
            )
        self._on_record(
            InvocationRecord(
                function_name=spec.name,
                invocation_id=invocation_id,
                trigger_type=spec.trigger_type,
                reason=reason,
                started_at=started_at,
                duration=duration,
                succeeded=error is None,
                error=None if error is None else f"{type(error).__name__}: {error}",
            )
        )


def default_thread_count() -> int:
    """The worker's default pool size for Python 3.9+, unless the app setting overrides."""
    configured = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return min(32, (os.cpu_count() or 1) + 4)
