"""DevHost: runs a FunctionApp's HTTP, timer and queue functions on one event loop."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import os
import secrets
import time
from collections import ChainMap
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import azure.functions as func
from aiohttp import web
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue.aio import QueueServiceClient

from devhost.discovery import (
    FunctionLoadError,
    FunctionSpec,
    HttpTriggerInfo,
    OutputBindingInfo,
    QueueTriggerInfo,
    SupportsGetFunctions,
    TimerTriggerInfo,
    discover_functions,
    load_app,
)
from devhost.hostjson import HostConfig, load_host_json
from devhost.httpserver import HttpFrontend, HttpRoute
from devhost.invoker import InvocationOutcome, InvocationRecord, Invoker, default_thread_count
from devhost.ncrontab import CronSchedule, IntervalSchedule, parse_schedule
from devhost.queues import QueueListener, QueueStats, queue_trigger_value
from devhost.routing import RouteTemplateError, parse_route
from devhost.settings import (
    SettingError,
    resolve_expression,
    resolve_storage_connection,
    validate_queue_name,
)
from devhost.timers import TimerRunner

__all__ = ["DevHost", "HostStartError"]

_RECORDS_KEPT = 10_000
_ADMIN_REASON = "This function was programmatically called via the host APIs."


# The longest request line or header field the local host reads (see ``_start_http``).
MAX_LINE_BYTES = 64 * 1024


class HostStartError(RuntimeError):
    """The host could not start a trigger (e.g. the storage account is unreachable)."""


def _disabled(name: str, environ: Mapping[str, str]) -> bool:
    # The host's per-function switch: app setting AzureWebJobs.<name>.Disabled.
    value = environ.get(f"AzureWebJobs.{name}.Disabled", "")
    return value.strip().lower() in ("1", "true")


class DevHost:
    """A local stand-in for the Functions host, for development and tests.

    Construction only reads the app (no sockets, no storage): load errors (bad
    signatures, bad routes or schedules, duplicate names) surface here. ``start()`` binds
    127.0.0.1:``port`` (0 = a free port), creates the trigger queues and starts the
    timers; ``stop()`` shuts down gracefully.

    ``settings`` are app settings layered over ``os.environ`` for what the HOST resolves
    (connection names, ``%Name%`` expressions, ``AzureWebJobs.<fn>.Disabled``); the app's
    own code still reads ``os.environ``.
    """

    def __init__(
        self,
        app: SupportsGetFunctions,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        function_key: str | None = None,
        master_key: str | None = None,
        host_json_path: str | Path | None = None,
        host_config: HostConfig | None = None,
        settings: Mapping[str, str] | None = None,
        queue_poll_seconds: float = 0.5,
        queue_visibility_seconds: int = 600,
        stop_timeout: float = 30.0,
        enable_http: bool = True,
        enable_timers: bool = True,
        enable_queues: bool = True,
        thread_count: int | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if host_config is not None and host_json_path is not None:
            raise ValueError("pass host_json_path or host_config, not both")
        self.config = host_config or load_host_json(host_json_path, missing_ok=False)
        self.function_key = function_key or secrets.token_urlsafe(32)
        # One key for everything unless the caller separates them.
        self.master_key = master_key or self.function_key
        self.bind_host = host
        self.requested_port = port
        self.queue_poll_seconds = queue_poll_seconds
        self.queue_visibility_seconds = queue_visibility_seconds
        self.stop_timeout = stop_timeout
        self.enable_http = enable_http
        self.enable_timers = enable_timers
        self.enable_queues = enable_queues
        self.logger = logger or logging.getLogger("devhost")
        self._settings: Mapping[str, str] = ChainMap(dict(settings or {}), os.environ)
        self._thread_count = thread_count or default_thread_count()

        self.all_functions = discover_functions(app)
        self.functions = self._select(self.all_functions)
        self._routes = self._build_routes()
        self._timers: dict[str, TimerRunner] = {}
        self._timer_specs = self._build_timer_specs()
        self._queue_specs = self._build_queue_specs()

        self.port: int | None = None
        self._started = False
        self._stopped = False
        self._runner: web.AppRunner | None = None
        self._invoker: Invoker | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._listeners: list[QueueListener] = []
        self._services: dict[str, QueueServiceClient] = {}
        self._records: collections.deque[InvocationRecord] = collections.deque(maxlen=_RECORDS_KEPT)
        # Replaced (and the old one set) on every record: a cheap broadcast to waiters.
        self._records_changed: asyncio.Event | None = None
        self._background: set[asyncio.Task[Any]] = set()
        # Functions that could not start (e.g. a missing connection setting), by name.
        self.function_errors: dict[str, str] = {}

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_module(
        cls,
        module: str = "function_app",
        attribute: str = "app",
        *,
        app_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> DevHost:
        """Import ``module`` and host its app; host.json next to the module by default."""
        app, loaded = load_app(module, attribute, app_dir=app_dir)
        if "host_json_path" not in kwargs and "host_config" not in kwargs and loaded.__file__:
            candidate = Path(loaded.__file__).resolve().parent / "host.json"
            if candidate.is_file():
                kwargs["host_json_path"] = candidate
        return cls(app, **kwargs)

    def _select(self, specs: list[FunctionSpec]) -> list[FunctionSpec]:
        wanted = self.config.functions
        selected: list[FunctionSpec] = []
        for spec in specs:
            if wanted is not None and spec.name not in wanted:
                continue
            if _disabled(spec.name, self._settings):
                self.logger.info("function %s is disabled by app setting", spec.name)
                continue
            if spec.unsupported_reason is not None:
                self.logger.warning("function %s is not run locally: %s", spec.name, spec.unsupported_reason)
                continue
            selected.append(spec)
        return selected

    def _build_routes(self) -> list[HttpRoute]:
        routes: list[HttpRoute] = []
        for spec in self.functions:
            if isinstance(spec.trigger, HttpTriggerInfo):
                try:
                    template = parse_route(spec.trigger.route)
                except RouteTemplateError as exc:
                    raise FunctionLoadError(f"function {spec.name!r}: {exc}") from None
                routes.append(HttpRoute(spec=spec, trigger=spec.trigger, template=template))
        return routes

    def _build_timer_specs(self) -> list[tuple[FunctionSpec, CronSchedule | IntervalSchedule, bool]]:
        timers: list[tuple[FunctionSpec, CronSchedule | IntervalSchedule, bool]] = []
        for spec in self.functions:
            if isinstance(spec.trigger, TimerTriggerInfo):
                expression = resolve_expression(
                    spec.trigger.schedule, self._settings, what=f"timer {spec.name}"
                )
                try:
                    schedule = parse_schedule(expression)
                except ValueError as exc:
                    raise FunctionLoadError(f"function {spec.name!r}: {exc}") from None
                timers.append((spec, schedule, spec.trigger.run_on_startup))
        return timers

    def _build_queue_specs(self) -> list[tuple[FunctionSpec, str, str | None]]:
        queues: list[tuple[FunctionSpec, str, str | None]] = []
        for spec in self.functions:
            if isinstance(spec.trigger, QueueTriggerInfo):
                name = validate_queue_name(
                    resolve_expression(spec.trigger.queue_name, self._settings, what=f"queue {spec.name}")
                )
                queues.append((spec, name, spec.trigger.connection))
        return queues

    # ----------------------------------------------------------------- lifecycle

    @property
    def started(self) -> bool:
        return self._started and not self._stopped

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the host is not serving HTTP (not started, or enable_http=False)")
        return f"http://{self.bind_host}:{self.port}"

    def url(self, route: str = "") -> str:
        """Absolute URL of a function route, with the route prefix."""
        prefix = f"/{self.config.route_prefix}" if self.config.route_prefix else ""
        return f"{self.base_url}{prefix}/{route.lstrip('/')}"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("a DevHost can be started once")
        self._started = True
        self._executor = ThreadPoolExecutor(
            max_workers=self._thread_count, thread_name_prefix="devhost-worker"
        )
        self._records_changed = asyncio.Event()
        self._invoker = Invoker(
            executor=self._executor,
            logger=logging.getLogger(f"{self.logger.name}.functions"),
            on_record=self._record,
            function_timeout=self.config.function_timeout,
        )
        try:
            if self.enable_http:
                await self._start_http()
            for spec, schedule, run_on_startup in self._timer_specs:
                self._timers[spec.name.lower()] = TimerRunner(
                    spec=spec,
                    schedule=schedule,
                    run_on_startup=run_on_startup,
                    invoke=self._invoke_timer,
                    logger=logging.getLogger(f"{self.logger.name}.timer"),
                )
            if self.enable_queues:
                await self._start_queues()
            if self.enable_timers:
                for timer in self._timers.values():
                    timer.start()
        except BaseException:
            await self.stop()
            raise
        self.logger.info("host started with %d function(s)", len(self.functions))

    async def _start_http(self) -> None:
        frontend = HttpFrontend(
            routes=self._routes,
            route_prefix=self.config.route_prefix,
            function_key=self.function_key,
            master_key=self.master_key,
            invoke=self._invoke_http,
            admin_invoke=self._admin_invoke,
            logger=logging.getLogger(f"{self.logger.name}.http"),
        )
        # access_log=None: aiohttp would log query strings, and with them ?code=<key>.
        # Request lines and header fields up to 64 KiB reach the app (aiohttp's own default, 8 KiB,
        # would answer a longer query string itself, in text/plain, before any function sees it).
        runner = web.AppRunner(
            frontend.build_app(),
            access_log=None,
            shutdown_timeout=self.stop_timeout,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_LINE_BYTES,
        )
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self.bind_host, self.requested_port)
        await site.start()
        self.port = int(runner.addresses[0][1])

    def _service(self, connection_string: str) -> QueueServiceClient:
        service = self._services.get(connection_string)
        if service is None:
            # Short retries: the SDK default (15 s, then 18 s, ...) would hide a stopped
            # emulator for a minute and hold up shutdown.
            import urllib.request

            from azure.core.pipeline.transport import AioHttpTransport

            service = QueueServiceClient.from_connection_string(
                connection_string,
                # aiohttp's trust_env looks up proxies and netrc on a worker thread for every
                # poll; only worth it when the environment names a proxy.
                transport=AioHttpTransport(use_env_settings=bool(urllib.request.getproxies())),
                # One retry after 1 s (delay = initial_backoff + increment_base ** 1).
                retry_total=1,
                initial_backoff=0,
                increment_base=1,
                random_jitter_range=0,
                connection_timeout=5,
            )
            self._services[connection_string] = service
        return service

    async def _start_queues(self) -> None:
        for spec, queue_name, connection in self._queue_specs:
            try:
                connection_string = resolve_storage_connection(connection, self._settings)
            except SettingError as exc:
                # The host keeps running the other functions and reports this one.
                self.function_errors[spec.name] = str(exc)
                self.logger.error("function %s is not listening: %s", spec.name, exc)
                continue
            listener = QueueListener(
                spec=spec,
                queue_name=queue_name,
                service=self._service(connection_string),
                options=self.config.queues,
                invoke=self._invoke_queue,
                logger=logging.getLogger(f"{self.logger.name}.queue"),
                poll_seconds=self.queue_poll_seconds,
                processing_visibility_seconds=self.queue_visibility_seconds,
            )
            try:
                await listener.start()
            except AzureError as exc:
                # Name the setting, never the connection string: it holds the account key.
                first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise HostStartError(
                    f"function {spec.name}: cannot reach queue {queue_name!r} through the "
                    f"connection setting {connection or 'AzureWebJobsStorage'!r}: {first_line}"
                ) from exc
            self._listeners.append(listener)

    async def stop(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - a grace period, not a cancel scope
        """Stop triggers, let running invocations finish (up to ``timeout``), clean up."""
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        budget = self.stop_timeout if timeout is None else timeout
        for listener in self._listeners:
            listener.request_stop()
        for timer in self._timers.values():
            timer.request_stop()
        if self._runner is not None:
            # Stops accepting, waits for in-flight requests up to shutdown_timeout.
            await self._runner.cleanup()
            self._runner = None
        await asyncio.gather(
            *(listener.stop(budget) for listener in self._listeners),
            *(timer.stop(budget) for timer in self._timers.values()),
        )
        if self._background:
            _, pending = await asyncio.wait(self._background, timeout=budget)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._invoker is not None and not await self._invoker.wait_idle(budget):
            cancelled = self._invoker.cancel_running()
            self.logger.warning("cancelled %d invocation(s) still running at shutdown", cancelled)
            await self._invoker.wait_idle(1.0)
        for service in self._services.values():
            with contextlib.suppress(Exception):
                await service.close()
        self._services.clear()
        if self._executor is not None:
            # Threads of sync functions cannot be interrupted; do not wait for them.
            self._executor.shutdown(wait=False, cancel_futures=True)
        self.logger.info("host stopped")

    # ----------------------------------------------------------------- invocation

    def _require_invoker(self) -> Invoker:
        if self._invoker is None:
            raise RuntimeError("the host is not started")
        return self._invoker

    async def _run(self, spec: FunctionSpec, value: Any, reason: str) -> InvocationOutcome:
        outcome = await self._require_invoker().invoke(spec, value, reason=reason)
        await self._send_queue_outputs(spec, outcome)
        return outcome

    async def _invoke_http(self, spec: FunctionSpec, request: func.HttpRequest) -> InvocationOutcome:
        return await self._run(
            spec, request, f"This function was triggered by an HTTP {request.method} request."
        )

    async def _invoke_timer(self, spec: FunctionSpec, request: Any, reason: str) -> None:
        await self._run(spec, request, reason)

    async def _invoke_queue(self, spec: FunctionSpec, message: Any) -> None:
        reason = f"New queue message detected on '{self._queue_name_of(spec)}'."
        await self._run(spec, message, reason)

    def _queue_name_of(self, spec: FunctionSpec) -> str:
        for queue_spec, name, _ in self._queue_specs:
            if queue_spec is spec:
                return name
        return "?"

    def _find(self, name: str) -> FunctionSpec | None:
        wanted = name.lower()
        return next((spec for spec in self.functions if spec.name.lower() == wanted), None)

    def _admin_invoke(self, name: str, value: str | None) -> bool:
        """Admin API: run a non-HTTP function in the background (the host answers 202)."""
        spec = self._find(name)
        if spec is None or isinstance(spec.trigger, HttpTriggerInfo):
            return False
        if isinstance(spec.trigger, TimerTriggerInfo):
            timer = self._timers[spec.name.lower()]
            coro: Any = timer.fire(past_due=False, reason=_ADMIN_REASON)
        else:
            message = queue_trigger_value(spec, (value or "").encode("utf-8"))
            coro = self._run(spec, message, _ADMIN_REASON)
        task = asyncio.create_task(self._swallow(coro))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return True

    @staticmethod
    async def _swallow(coro: Any) -> None:
        with contextlib.suppress(Exception):  # logged by the invoker
            await coro

    async def _send_queue_outputs(self, spec: FunctionSpec, outcome: InvocationOutcome) -> None:
        pending: list[tuple[OutputBindingInfo, Any]] = []
        for output in spec.outputs:
            value = outcome.outputs[output.name]
            if output.type == "queue" and value.was_set:
                pending.append((output, value.get()))
        if spec.return_binding is not None and spec.return_binding.type == "queue":
            if outcome.return_value is not None:
                pending.append((spec.return_binding, outcome.return_value))
        for binding, value in pending:
            try:
                await self._send_to_output_queue(spec, binding, value)
            except Exception:
                # Like a failed binding flush on the host: the invocation counts as failed.
                self.logger.exception("Functions.%s: output binding %r failed", spec.name, binding.name)
                raise

    async def _send_to_output_queue(self, spec: FunctionSpec, binding: OutputBindingInfo, value: Any) -> None:
        fields = binding.fields
        queue_name = validate_queue_name(
            resolve_expression(
                str(fields.get("queueName", "")), self._settings, what=f"output of {spec.name}"
            )
        )
        connection = fields.get("connection")
        service = self._service(
            resolve_storage_connection(None if connection is None else str(connection), self._settings)
        )
        client = service.get_queue_client(queue_name)
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            if isinstance(item, func.QueueMessage):
                raw = item.get_body()
            elif isinstance(item, str):
                raw = item.encode("utf-8")
            elif isinstance(item, bytes):
                raw = item
            else:
                raise TypeError(
                    f"queue output {binding.name!r} of {spec.name}: cannot send "
                    f"{type(item).__name__} (use str, bytes or func.QueueMessage)"
                )
            text = (
                base64.b64encode(raw).decode("ascii")
                if self.config.queues.message_encoding == "base64"
                else raw.decode("utf-8")
            )
            try:
                await client.send_message(text)
            except ResourceNotFoundError:
                # The host creates an output queue on first use.
                with contextlib.suppress(ResourceExistsError):
                    await client.create_queue()
                await client.send_message(text)

    def _record(self, record: InvocationRecord) -> None:
        self._records.append(record)
        changed = self._records_changed
        if changed is not None:
            self._records_changed = asyncio.Event()
            changed.set()

    # ----------------------------------------------------------------- test helpers

    @property
    def invocations(self) -> list[InvocationRecord]:
        """Finished invocations, oldest first (the last 10,000)."""
        return list(self._records)

    async def wait_for_invocations(
        self,
        function_name: str,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109 - test-helper API: a deadline in seconds
    ) -> list[InvocationRecord]:
        """Wait until ``function_name`` has finished ``count`` invocations since start.

        Returns all of them (oldest first); raises TimeoutError after ``timeout`` seconds.
        """
        if self._records_changed is None:
            raise RuntimeError("the host is not started")
        wanted = function_name.lower()
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self._records if r.function_name.lower() == wanted]
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{function_name}: {len(found)} of {count} invocation(s) after {timeout}s")
            changed = self._records_changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    async def fire_timer(self, function_name: str, *, past_due: bool = False) -> None:
        """Invoke a timer function now; its exception (if any) is re-raised here."""
        timer = self._timers.get(function_name.lower())
        if timer is None:
            raise KeyError(f"no timer function named {function_name!r}")
        await timer.fire(past_due=past_due, reason=_ADMIN_REASON)

    def queue_stats(self, queue_name: str) -> QueueStats:
        for listener in self._listeners:
            if listener.queue_name == queue_name.lower():
                return listener.stats
        raise KeyError(f"no queue trigger on {queue_name!r}")

    async def drain(
        self,
        queue_name: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - test-helper API: a deadline in seconds
    ) -> None:
        """Wait until the queue (or every trigger queue) is empty and nothing runs.

        "Empty" counts invisible messages too, so a message waiting out a visibility
        timeout after a failure keeps the queue busy until it succeeds or is poisoned.
        """
        listeners = [
            listener
            for listener in self._listeners
            if queue_name is None or listener.queue_name == queue_name.lower()
        ]
        if queue_name is not None and not listeners:
            raise KeyError(f"no queue trigger on {queue_name!r}")
        deadline = time.monotonic() + timeout
        while True:
            idle = [await listener.is_idle() for listener in listeners]
            if all(idle):
                return
            if time.monotonic() >= deadline:
                busy = [
                    f"{listener.queue_name} ({listener.stats})"
                    for listener, ok in zip(listeners, idle, strict=True)
                    if not ok
                ]
                raise TimeoutError(f"queues not drained after {timeout}s: {busy}")
            await asyncio.sleep(0.05)
