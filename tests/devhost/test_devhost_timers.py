"""Timer triggers: fire_timer, runOnStartup, a real schedule, settings and disabled functions."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from devhost import DevHost, DevHostThread, FunctionLoadError, HostConfig


def timer_app(
    schedule: str, calls: list[Any], *, run_on_startup: bool = False, fail: bool = False
) -> func.FunctionApp:
    app = func.FunctionApp()

    @app.timer_trigger(schedule=schedule, arg_name="timer", run_on_startup=run_on_startup)
    async def tick(timer: func.TimerRequest) -> None:
        calls.append(timer)
        if fail:
            raise RuntimeError("timer failed")

    return app


async def test_fire_timer_builds_a_timer_request() -> None:
    calls: list[Any] = []
    async with DevHost(timer_app("0 */15 * * * *", calls)) as host:
        await host.fire_timer("tick")
        await host.fire_timer("TICK", past_due=True)  # names are case-insensitive
        with pytest.raises(KeyError):
            await host.fire_timer("nope")
    first, second = calls
    assert isinstance(first, TimerRequest) and isinstance(second, TimerRequest)
    assert (first.past_due, second.past_due) == (False, True)
    assert "Next" in first.schedule_status and "LastUpdated" in first.schedule_status
    assert "Last" in second.schedule_status
    assert first.schedule == {"AdjustForDST": True}


async def test_fire_timer_reraises_the_functions_exception() -> None:
    async with DevHost(timer_app("0 */15 * * * *", [], fail=True)) as host:
        with pytest.raises(RuntimeError, match="timer failed"):
            await host.fire_timer("tick")
        assert host.invocations[-1].error == "RuntimeError: timer failed"


async def test_run_on_startup() -> None:
    calls: list[Any] = []
    async with DevHost(timer_app("0 0 0 1 1 *", calls, run_on_startup=True)) as host:
        await host.wait_for_invocations("tick", 1, timeout=5)
    assert len(calls) == 1


async def test_schedule_fires_on_whole_seconds_and_survives_failures() -> None:
    calls: list[Any] = []
    async with DevHost(timer_app("* * * * * *", calls, fail=True)) as host:
        records = await host.wait_for_invocations("tick", 2, timeout=5)
    assert all(not record.succeeded for record in records)
    # Fired at (just after) whole seconds, one second apart.
    assert all(record.started_at.microsecond < 500_000 for record in records[:2])
    assert (records[1].started_at - records[0].started_at).total_seconds() == pytest.approx(1, abs=0.5)


async def test_timers_can_be_left_unscheduled_but_still_fired() -> None:
    calls: list[Any] = []
    async with DevHost(timer_app("* * * * * *", calls), enable_timers=False) as host:
        await asyncio.sleep(1.2)
        assert calls == []
        await host.fire_timer("tick")
    assert len(calls) == 1


async def test_stop_does_not_wait_for_the_next_occurrence() -> None:
    host = DevHost(timer_app("0 0 0 1 1 *", []))
    await host.start()
    began = time.monotonic()
    await host.stop()
    assert time.monotonic() - began < 2


def test_schedule_from_an_app_setting_and_invalid_schedules() -> None:
    calls: list[Any] = []
    with DevHostThread(
        timer_app("%TICK_SCHEDULE%", calls), settings={"TICK_SCHEDULE": "0 0 0 1 1 *"}
    ) as host:
        host.fire_timer("tick")
    assert len(calls) == 1
    with pytest.raises(FunctionLoadError, match="NCRONTAB"):
        DevHost(timer_app("0 0 25 * * *", []))


def test_disabled_function_is_not_loaded() -> None:
    host = DevHost(timer_app("0 0 0 1 1 *", []), settings={"AzureWebJobs.tick.Disabled": "true"})
    assert [spec.name for spec in host.all_functions] == ["tick"]
    assert host.functions == []


def test_one_app_can_back_several_hosts() -> None:
    # FunctionApp.get_functions() raises on a second call unless devhost resets it.
    app = timer_app("0 0 0 1 1 *", [])
    assert DevHost(app).functions[0].name == "tick"
    assert DevHost(app).functions[0].name == "tick"


async def test_function_timeout_from_host_json() -> None:
    app = func.FunctionApp()

    @app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer")
    async def sleepy(timer: func.TimerRequest) -> None:
        await asyncio.sleep(5)

    @app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer")
    async def own_timeout(timer: func.TimerRequest) -> None:
        await asyncio.wait_for(asyncio.sleep(5), 0.01)

    async with DevHost(app, host_config=HostConfig(function_timeout=timedelta(seconds=0.3))) as host:
        with pytest.raises(TimeoutError, match="Timeout value of 0:00:00.300000 was exceeded"):
            await host.fire_timer("sleepy")
        with pytest.raises(TimeoutError) as raised:
            await host.fire_timer("own_timeout")
        assert "Timeout value" not in str(raised.value)
