"""The queue trigger: poll a Storage queue and invoke a function per message.

Host semantics reproduced (Storage Queues extension v5, ``QueueProcessor``):

* messages are read with a processing visibility timeout (the host uses 10 minutes and
  renews it while the function runs; so do we);
* success: the message is deleted;
* failure: if ``dequeue_count >= maxDequeueCount`` the ORIGINAL message text (still
  base64) is added to ``<queue>-poison`` (created if missing) and the message deleted;
  otherwise its visibility is set to host.json ``visibilityTimeout`` so it comes back;
* a message already past ``maxDequeueCount`` when read (a crash mid-processing) goes to
  poison without being processed;
* with ``messageEncoding`` base64, a message that is not valid base64 goes straight to
  poison without an invocation (the host's MessageDecodingFailed handler);
* "pop receipt mismatch" and "message not found" on delete/update are ignored.

Local simplifications: at most ``batchSize`` messages run at once and a new batch is
read as soon as a slot is free; the poll interval while the queue is empty doubles from
1/8 of the cap up to ``min(maxPollingInterval, queue_poll_seconds)``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.functions.queue import QueueMessage as FunctionsQueueMessage
from azure.storage.queue import QueueMessage as StorageQueueMessage
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from devhost.discovery import FunctionSpec
from devhost.hostjson import QueuesOptions

__all__ = [
    "QueueListener",
    "QueueStats",
    "decode_message_body",
    "queue_trigger_value",
    "to_functions_message",
]

# Azure Storage limit for one receive call.
_MAX_RECEIVE = 32


@dataclass
class QueueStats:
    """Counters for one listener (useful in tests)."""

    received: int = 0
    succeeded: int = 0
    failed: int = 0
    poisoned: int = 0
    decode_failures: int = 0


def decode_message_body(content: str, encoding: str) -> bytes:
    """The function's view of a message: base64-decoded unless encoding is 'none'.

    Raises ValueError when the text is not valid base64 (.NET's decoder ignores
    whitespace, so we do too).
    """
    if encoding == "none":
        return content.encode("utf-8")
    compact = "".join(content.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"message is not valid base64: {exc}") from None


def to_functions_message(message: StorageQueueMessage, body: bytes) -> FunctionsQueueMessage:
    """Build the ``azure.functions.queue.QueueMessage`` the worker would pass.

    ``func.QueueMessage`` is the base class without dequeue_count and the times; the
    worker builds this subclass from the host's trigger metadata.
    """
    return FunctionsQueueMessage(  # type: ignore[no-untyped-call]
        id=message.id,
        body=body,
        dequeue_count=message.dequeue_count,
        expiration_time=message.expires_on,
        insertion_time=message.inserted_on,
        time_next_visible=message.next_visible_on,
        pop_receipt=message.pop_receipt,
    )


def queue_trigger_value(spec: FunctionSpec, body: bytes, message: StorageQueueMessage | None = None) -> Any:
    """The trigger argument, converted to the parameter's annotation like the worker.

    ``str`` and ``bytes`` parameters get the body; anything else a QueueMessage. Without
    a storage message (admin API), the message gets a fresh id and dequeue count 1.
    """
    annotation = spec.trigger_annotation
    if annotation in (str, "str"):
        return body.decode("utf-8", errors="replace")
    if annotation in (bytes, "bytes"):
        return body
    if message is None:
        now = datetime.now(UTC)
        return FunctionsQueueMessage(  # type: ignore[no-untyped-call]
            id=str(uuid.uuid4()),
            body=body,
            dequeue_count=1,
            insertion_time=now,
            expiration_time=now + timedelta(days=7),
            time_next_visible=now,
            pop_receipt=None,
        )
    return to_functions_message(message, body)


def _is_gone(error: HttpResponseError) -> bool:
    """Errors the host ignores on delete/update: the message moved on or vanished."""
    code = str(getattr(error, "error_code", "") or "")
    return isinstance(error, ResourceNotFoundError) or code in (
        "PopReceiptMismatch",
        "MessageNotFound",
        "QueueNotFound",
        "QueueBeingDeleted",
        "QueueDisabled",
    )


Invoke = Callable[[FunctionSpec, Any], Awaitable[Any]]


class QueueListener:
    """Polls one queue for one queue-triggered function."""

    def __init__(
        self,
        *,
        spec: FunctionSpec,
        queue_name: str,
        service: QueueServiceClient,
        options: QueuesOptions,
        invoke: Invoke,
        logger: logging.Logger,
        poll_seconds: float,
        processing_visibility_seconds: int,
    ) -> None:
        self.spec = spec
        self.queue_name = queue_name
        self.poison_queue_name = f"{queue_name}-poison"
        self.options = options
        self.stats = QueueStats()
        self._service = service
        self._invoke = invoke
        self._logger = logger
        self._poll_cap = max(min(options.max_polling_interval.total_seconds(), poll_seconds), 0.01)
        self._visibility = max(int(processing_visibility_seconds), 1)
        self._queue: QueueClient = service.get_queue_client(queue_name)
        self._poison: QueueClient = service.get_queue_client(self.poison_queue_name)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self._poll_task: asyncio.Task[None] | None = None
        self._last_poll_error: str | None = None

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def start(self) -> None:
        """Create the queue if missing and start polling."""
        with contextlib.suppress(ResourceExistsError):
            await self._queue.create_queue()
        self._poll_task = asyncio.create_task(self._poll_loop(), name=f"devhost-queue-{self.queue_name}")
        self._poll_task.add_done_callback(self._on_poll_done)

    def request_stop(self) -> None:
        self._stopping.set()
        # Wakes a poll loop that waits for a free slot while the batch is full.
        self._slot_free.set()

    async def stop(self, grace: float) -> None:
        """Stop polling, then wait up to ``grace`` seconds for running messages."""
        self.request_stop()
        if self._poll_task is not None:
            # A receive in progress normally ends within a second; one stuck retrying an
            # unreachable storage account is cancelled (its message, if any, reappears).
            done, _ = await asyncio.wait({self._poll_task}, timeout=min(grace, 5.0))
            if not done:
                self._poll_task.cancel()
            # A crashed poll loop was already logged by _on_poll_done.
            await asyncio.gather(self._poll_task, return_exceptions=True)
        if self._in_flight:
            _, pending = await asyncio.wait(self._in_flight, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                self._logger.warning(
                    "queue %s: %d message(s) still running at shutdown were cancelled; "
                    "they become visible again after the processing visibility timeout",
                    self.queue_name,
                    len(pending),
                )
                await asyncio.gather(*pending, return_exceptions=True)

    async def is_idle(self) -> bool:
        """No message running and none in the queue (visible or not)."""
        if self._in_flight:
            return False
        properties = await self._queue.get_queue_properties()
        return not self._in_flight and properties.approximate_message_count == 0

    async def _poll_loop(self) -> None:
        interval = self._poll_cap / 8
        while not self._stopping.is_set():
            free = self.options.batch_size - len(self._in_flight)
            if free <= 0:
                self._slot_free.clear()
                await self._wait_for(self._slot_free, None)
                continue
            try:
                messages = await self._receive(min(free, _MAX_RECEIVE))
            except (AzureError, OSError) as exc:  # e.g. the emulator is down: keep polling, say so once
                messages = []
                self._log_poll_error(exc)
            if self._stopping.is_set():
                # Received while stopping: hand them straight back.
                for message in messages:
                    await self._release(message, 0)
                break
            if not messages:
                await self._wait_for(self._stopping, interval)
                interval = min(interval * 2, self._poll_cap)
                continue
            interval = self._poll_cap / 8
            self._last_poll_error = None
            for message in messages:
                task = asyncio.create_task(self._process(message))
                self._in_flight.add(task)
                task.add_done_callback(self._on_done)

    def _on_poll_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._logger.error(
                "queue %s: polling stopped on an unexpected error",
                self.queue_name,
                exc_info=task.exception(),
            )

    def _on_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            self._logger.error(
                "queue %s: message handling failed", self.queue_name, exc_info=task.exception()
            )

    @staticmethod
    async def _wait_for(event: asyncio.Event, seconds: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    def _log_poll_error(self, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if text != self._last_poll_error:
            self._logger.warning("queue %s: polling failed: %s", self.queue_name, text)
            self._last_poll_error = text

    async def _receive(self, count: int) -> list[StorageQueueMessage]:
        pager = self._queue.receive_messages(
            messages_per_page=count, max_messages=count, visibility_timeout=self._visibility
        )
        return [message async for message in pager]

    async def _process(self, message: StorageQueueMessage) -> None:
        self.stats.received += 1
        state = _MessageState(message.id, message.pop_receipt)
        if (message.dequeue_count or 0) > self.options.max_dequeue_count:
            await self._to_poison(message, state, "it is past maxDequeueCount")
            return
        content = str(message.content or "")
        try:
            body = decode_message_body(content, self.options.message_encoding)
        except ValueError:
            self.stats.decode_failures += 1
            self._logger.warning(
                "Message decoding has failed! Check MessageEncoding settings. MessageId=%s",
                message.id,
            )
            await self._to_poison(message, state, "it could not be decoded")
            return
        renewer = asyncio.create_task(self._keep_invisible(state))
        failed = False
        try:
            await self._invoke(self.spec, queue_trigger_value(self.spec, body, message))
        except Exception:  # noqa: BLE001 - any failure means release or poison, like the host
            # The invoker already logged the traceback.
            failed = True
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
        if not failed:
            self.stats.succeeded += 1
            await self._delete(state)
            return
        self.stats.failed += 1
        if (message.dequeue_count or 0) >= self.options.max_dequeue_count:
            await self._to_poison(message, state, "it reached maxDequeueCount")
        else:
            await self._release(message, int(self.options.visibility_timeout.total_seconds()), state)

    async def _keep_invisible(self, state: _MessageState) -> None:
        """Renew the processing visibility at half its length, like the host."""
        while True:
            await asyncio.sleep(self._visibility / 2)
            try:
                updated = await self._queue.update_message(
                    state.id, state.pop_receipt, visibility_timeout=self._visibility
                )
            except HttpResponseError as exc:
                if _is_gone(exc):
                    return
                raise
            state.pop_receipt = updated.pop_receipt

    async def _delete(self, state: _MessageState) -> None:
        try:
            await self._queue.delete_message(state.id, state.pop_receipt)
        except HttpResponseError as exc:
            if not _is_gone(exc):
                raise

    async def _release(
        self,
        message: StorageQueueMessage,
        visibility_seconds: int,
        state: _MessageState | None = None,
    ) -> None:
        current = state or _MessageState(message.id, message.pop_receipt)
        try:
            await self._queue.update_message(
                current.id, current.pop_receipt, visibility_timeout=visibility_seconds
            )
        except HttpResponseError as exc:
            if not _is_gone(exc):
                raise

    async def _to_poison(self, message: StorageQueueMessage, state: _MessageState, why: str) -> None:
        self._logger.warning(
            "Message %s on queue %s: %s (dequeue count %s, maxDequeueCount %d); moving it to queue '%s'",
            message.id,
            self.queue_name,
            why,
            message.dequeue_count,
            self.options.max_dequeue_count,
            self.poison_queue_name,
        )
        # The raw text is copied, so a base64 message stays base64 in the poison queue.
        try:
            await self._poison.send_message(message.content)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                await self._poison.create_queue()
            await self._poison.send_message(message.content)
        self.stats.poisoned += 1
        await self._delete(state)


@dataclass
class _MessageState:
    id: str
    pop_receipt: str | None
