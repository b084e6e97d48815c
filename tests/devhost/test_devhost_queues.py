"""The queue trigger against a real Azurite: delete, retry, poison, decoding, concurrency, stop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage
from azure.storage.queue.aio import QueueClient

from devhost import DevHost, DevHostThread, HostConfig, QueuesOptions
from devhost.testing import AzuriteProcess, peek_queue, send_queue_message


def queue_app(handler: Callable[..., Any], *, annotation: Any = func.QueueMessage) -> func.FunctionApp:
    """An app with one queue trigger on %QUEUE% that calls ``handler(msg)``."""
    app = func.FunctionApp()

    async def worker(msg: func.QueueMessage) -> Any:
        result = handler(msg)
        if asyncio.iscoroutine(result):
            return await result
        return result

    worker.__annotations__["msg"] = annotation
    app.queue_trigger(arg_name="msg", queue_name="%QUEUE%", connection="AzureWebJobsStorage")(worker)
    return app


def config(**queues: Any) -> HostConfig:
    return HostConfig(queues=QueuesOptions(**queues))


def make_host(app: func.FunctionApp, azurite: str, queue_name: str, **kwargs: Any) -> DevHost:
    return DevHost(
        app,
        settings={"AzureWebJobsStorage": azurite, "QUEUE": queue_name, **kwargs.pop("settings", {})},
        queue_poll_seconds=0.1,
        **kwargs,
    )


async def message_count(azurite: str, queue_name: str) -> int:
    async with QueueClient.from_connection_string(azurite, queue_name) as client:
        return (await client.get_queue_properties()).approximate_message_count or 0


async def test_base64_message_is_processed_and_deleted(azurite: str, queue_name: str) -> None:
    received: list[Any] = []
    host = make_host(queue_app(received.append), azurite, queue_name)
    async with host:
        send_queue_message(azurite, queue_name, '{"app": "one"}')
        await host.drain(queue_name, timeout=10)
        assert await message_count(azurite, queue_name) == 0
        assert host.queue_stats(queue_name).succeeded == 1
    (message,) = received
    # The worker's subclass, with the storage metadata.
    assert isinstance(message, QueueMessage)
    assert message.get_body() == b'{"app": "one"}'
    assert message.get_json() == {"app": "one"}
    assert message.dequeue_count == 1
    assert message.id and message.pop_receipt
    assert isinstance(message.insertion_time, datetime)
    assert message.expiration_time > message.insertion_time


async def test_failures_retry_with_increasing_dequeue_count_then_poison(
    azurite: str, queue_name: str
) -> None:
    counts: list[int] = []

    def fail(msg: QueueMessage) -> None:
        counts.append(msg.dequeue_count)
        raise RuntimeError("always fails")

    host = make_host(
        queue_app(fail),
        azurite,
        queue_name,
        host_config=config(max_dequeue_count=3, visibility_timeout=timedelta(0)),
    )
    async with host:
        message_id = send_queue_message(azurite, queue_name, "payload")
        await host.drain(queue_name, timeout=15)
        stats = host.queue_stats(queue_name)
    assert counts == [1, 2, 3]
    assert (stats.failed, stats.poisoned, stats.succeeded) == (3, 1, 0)
    assert await message_count(azurite, queue_name) == 0
    # The original (still base64) text lands in <queue>-poison as a new message.
    assert peek_queue(azurite, f"{queue_name}-poison") == ["cGF5bG9hZA=="]
    assert message_id


async def test_failed_message_waits_out_the_visibility_timeout(azurite: str, queue_name: str) -> None:
    attempts: list[float] = []

    def fail_once(msg: QueueMessage) -> None:
        attempts.append(time.monotonic())
        if msg.dequeue_count == 1:
            raise RuntimeError("first attempt fails")

    host = make_host(
        queue_app(fail_once), azurite, queue_name, host_config=config(visibility_timeout=timedelta(seconds=1))
    )
    async with host:
        send_queue_message(azurite, queue_name, "x")
        await host.drain(queue_name, timeout=10)
    assert len(attempts) == 2
    assert attempts[1] - attempts[0] >= 0.9
    assert peek_queue(azurite, f"{queue_name}-poison") == []


async def test_invalid_base64_goes_straight_to_poison(azurite: str, queue_name: str) -> None:
    received: list[Any] = []
    host = make_host(queue_app(received.append), azurite, queue_name)
    async with host:
        send_queue_message(azurite, queue_name, "not base64 at all!", encode_base64=False)
        await host.drain(queue_name, timeout=10)
        stats = host.queue_stats(queue_name)
    assert received == []  # the host never invokes the function for it
    assert (stats.decode_failures, stats.poisoned) == (1, 1)
    assert peek_queue(azurite, f"{queue_name}-poison") == ["not base64 at all!"]


async def test_message_already_past_max_dequeue_count_is_poisoned_unprocessed(
    azurite: str, queue_name: str
) -> None:
    # Simulate crashes mid-processing: read the message 3 times without deleting it.
    send_queue_message(azurite, queue_name, "crashy")
    async with QueueClient.from_connection_string(azurite, queue_name) as client:
        for _ in range(3):
            (message,) = [m async for m in client.receive_messages(max_messages=1, visibility_timeout=30)]
            await client.update_message(message.id, message.pop_receipt, visibility_timeout=0)
    received: list[Any] = []
    host = make_host(queue_app(received.append), azurite, queue_name, host_config=config(max_dequeue_count=2))
    async with host:
        await host.drain(queue_name, timeout=10)
    assert received == []
    assert peek_queue(azurite, f"{queue_name}-poison") == ["Y3Jhc2h5"]


async def test_message_encoding_none_and_str_parameter(azurite: str, queue_name: str) -> None:
    received: list[Any] = []
    host = make_host(
        queue_app(received.append, annotation=str),
        azurite,
        queue_name,
        host_config=config(message_encoding="none"),
    )
    async with host:
        send_queue_message(azurite, queue_name, "plain text", encode_base64=False)
        await host.drain(queue_name, timeout=10)
    assert received == ["plain text"]


async def test_batch_runs_concurrently_up_to_batch_size(azurite: str, queue_name: str) -> None:
    running = 0
    peak = 0

    async def slow(msg: QueueMessage) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.3)
        running -= 1

    for index in range(6):
        send_queue_message(azurite, queue_name, f"m{index}")
    host = make_host(queue_app(slow), azurite, queue_name, host_config=config(batch_size=3))
    async with host:
        await host.drain(queue_name, timeout=15)
        assert host.queue_stats(queue_name).succeeded == 6
    assert peak == 3


async def test_queue_output_binding_and_return_value(azurite: str, queue_name: str) -> None:
    out_queue = f"{queue_name}-out"
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="%QUEUE%", connection="AzureWebJobsStorage")
    @app.queue_output(arg_name="out", queue_name="%OUT%", connection="AzureWebJobsStorage")
    def forward(msg: func.QueueMessage, out: func.Out[str]) -> None:
        out.set(msg.get_body().decode().upper())

    host = make_host(app, azurite, queue_name, settings={"OUT": out_queue})
    async with host:
        send_queue_message(azurite, queue_name, "hello")
        await host.drain(queue_name, timeout=10)
    # Written base64-encoded, as the host's output binding does.
    assert peek_queue(azurite, out_queue) == ["SEVMTE8="]


async def test_graceful_stop_lets_a_running_message_finish(azurite: str, queue_name: str) -> None:
    started = asyncio.Event()
    finished: list[str] = []

    async def slow(msg: QueueMessage) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(msg.get_body().decode())

    host = make_host(queue_app(slow), azurite, queue_name)
    await host.start()
    send_queue_message(azurite, queue_name, "in flight")
    await asyncio.wait_for(started.wait(), 10)
    await host.stop(timeout=5)
    assert finished == ["in flight"]
    assert await message_count(azurite, queue_name) == 0


async def test_stop_timeout_cancels_and_the_message_stays(azurite: str, queue_name: str) -> None:
    started = asyncio.Event()

    async def stuck(msg: QueueMessage) -> None:
        started.set()
        await asyncio.sleep(60)

    host = make_host(queue_app(stuck), azurite, queue_name)
    await host.start()
    send_queue_message(azurite, queue_name, "stuck")
    await asyncio.wait_for(started.wait(), 10)
    began = time.monotonic()
    await host.stop(timeout=0.3)
    assert time.monotonic() - began < 5
    # Not deleted: it becomes visible again after the processing visibility timeout.
    assert await message_count(azurite, queue_name) == 1
    assert host.invocations[-1].succeeded is False


async def test_missing_connection_setting_is_reported_and_the_rest_runs(queue_name: str) -> None:
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name=queue_name, connection="NoSuchConnection")
    def orphan(msg: func.QueueMessage) -> None:
        pass

    @app.route(route="ping", auth_level=func.AuthLevel.ANONYMOUS)
    def ping(req: func.HttpRequest) -> str:
        return "pong"

    async with DevHost(app) as host:
        assert "NoSuchConnection" in host.function_errors["orphan"]
        assert host.base_url.startswith("http://127.0.0.1:")


def test_thread_wrapper_drains_on_the_host_loop(azurite: str, queue_name: str) -> None:
    loops: list[int] = []

    async def handler(msg: QueueMessage) -> None:
        loops.append(id(asyncio.get_running_loop()))

    with DevHostThread(
        queue_app(handler),
        settings={"AzureWebJobsStorage": azurite, "QUEUE": queue_name},
        queue_poll_seconds=0.1,
    ) as host:
        for body in ("a", "b"):
            send_queue_message(azurite, queue_name, body)
        host.drain(queue_name, timeout=10)
        assert host.queue_stats(queue_name).succeeded == 2
        assert loops == [id(host.loop)] * 2
        assert host.run_coroutine(message_count(azurite, queue_name)) == 0


async def test_drain_times_out_with_a_clear_message(azurite: str, queue_name: str) -> None:
    async def slow(msg: QueueMessage) -> None:
        await asyncio.sleep(2)

    host = make_host(queue_app(slow), azurite, queue_name)
    await host.start()
    try:
        send_queue_message(azurite, queue_name, "slow")
        with pytest.raises(TimeoutError, match=queue_name):
            await host.drain(queue_name, timeout=0.3)
        with pytest.raises(KeyError):
            await host.drain("no-such-queue", timeout=0.1)
    finally:
        await host.stop(timeout=0.1)


async def test_returning_a_value_without_return_binding_fails_like_the_worker(
    azurite: str, queue_name: str
) -> None:
    host = make_host(
        queue_app(lambda msg: "oops"),
        azurite,
        queue_name,
        host_config=config(max_dequeue_count=1),
    )
    async with host:
        send_queue_message(azurite, queue_name, "x")
        await host.drain(queue_name, timeout=10)
    assert host.invocations[-1].error is not None
    assert "without a $return binding" in host.invocations[-1].error
    assert peek_queue(azurite, f"{queue_name}-poison") == ["eA=="]


async def test_storage_outage_is_logged_and_stop_still_works(
    queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A private Azurite, killed while the host polls it.
    with AzuriteProcess() as private:
        host = make_host(queue_app(lambda msg: None), private.connection_string, queue_name)
        await host.start()
        private.kill()
    with caplog.at_level(logging.WARNING, logger="devhost"):
        deadline = time.monotonic() + 10
        while "polling failed" not in caplog.text and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # more failed polls, which must not be logged again
        began = time.monotonic()
        await host.stop(timeout=5)
        assert time.monotonic() - began < 5
    assert "polling failed" in caplog.text
    assert caplog.text.count("polling failed") == 1  # said once, not on every poll
