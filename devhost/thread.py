"""DevHostThread: a DevHost on its own thread and event loop, for synchronous tests."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

from devhost.discovery import SupportsGetFunctions
from devhost.host import DevHost
from devhost.invoker import InvocationRecord
from devhost.queues import QueueStats

__all__ = ["DevHostThread"]

T = TypeVar("T")


class DevHostThread:
    """Run a DevHost in a background thread; use it with ``with`` from sync code.

    Every invocation runs on that thread's single event loop (as in the worker), so
    code that caches aio clients bound to the loop works; ``run_coroutine`` runs more
    coroutines on the same loop (e.g. closing those clients, ``fire_timer``, ``drain``).
    Keyword arguments are DevHost's; the app is indexed here, so load errors raise in
    the constructor.
    """

    def __init__(self, app: SupportsGetFunctions, *, start_timeout: float = 60.0, **host_kwargs: Any) -> None:
        self.host = DevHost(app, **host_kwargs)
        self._start_timeout = start_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return self.host.base_url

    @property
    def function_key(self) -> str:
        return self.host.function_key

    @property
    def master_key(self) -> str:
        return self.host.master_key

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the host thread is not running")
        return self._loop

    def url(self, route: str = "") -> str:
        return self.host.url(route)

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("a DevHostThread can be started once")
        self._thread = threading.Thread(target=self._main, name="devhost", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._start_timeout):
            raise TimeoutError(f"the local host did not start within {self._start_timeout}s")
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error
        return self

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        try:
            await self.host.start()
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread, which re-raises it
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop_requested.wait()
        await self.host.stop()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the host gracefully and join the thread."""
        thread, loop, requested = self._thread, self._loop, self._stop_requested
        if thread is None or loop is None or requested is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(requested.set)
        thread.join(timeout if timeout is not None else self.host.stop_timeout + 30)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def run_coroutine(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the host's loop and return its result (or raise its error)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    # Sync shortcuts for the DevHost test helpers.

    def fire_timer(self, function_name: str, *, past_due: bool = False) -> None:
        self.run_coroutine(self.host.fire_timer(function_name, past_due=past_due))

    def drain(self, queue_name: str | None = None, timeout: float = 10.0) -> None:
        self.run_coroutine(self.host.drain(queue_name, timeout), timeout + 5)

    def wait_for_invocations(
        self, function_name: str, count: int = 1, timeout: float = 10.0
    ) -> list[InvocationRecord]:
        return self.run_coroutine(self.host.wait_for_invocations(function_name, count, timeout), timeout + 5)

    @property
    def invocations(self) -> list[InvocationRecord]:
        return self.host.invocations

    def queue_stats(self, queue_name: str) -> QueueStats:
        return self.host.queue_stats(queue_name)
