"""A simulated scale-out (issue 11): 40 worker instances, the host's concurrency each, run whole
rotations from one scan's queue against the Entra simulator's enforced write quota.

Each instance is its own ``Services`` (its own clients and its own view of the shared Graph write
budget in Azurite), as each Functions instance is its own process; here they share one event loop,
so the quota and the budget are scaled down in time to keep the test short. ``make bench``
(``scripts/bench_scale.py``) runs the full size: 10,000 applications, 40 processes, Graph's own
quota and the default budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.config import load_settings
from shared.domain.models import ApplicationConfig, RotationResult
from shared.services import Services
from shared.storage.budget import Limit, RateBudget
from tests.rotation.conftest import rotator_environment

INSTANCES = 40
APPS = 120
# Graph's 3,000 writes per 150 s, scaled down: 80 per 4 s. The budget keeps under it with room
# for 2 s of delay between a token and its write: burst + rate x (window + 1 s held) = 60.
QUOTA = {"limit": 80, "window_seconds": 4}
LIMIT = Limit(rate_per_second=10, burst=10)


def host_concurrency() -> int:
    """Jobs one instance runs at once: host.json's ``batchSize + newBatchThreshold``."""
    from devhost import load_host_json
    from tests.conftest import ROOT

    queues = load_host_json(ROOT / "host.json").queues
    threshold = queues.new_batch_threshold
    return queues.batch_size + (threshold if threshold is not None else queues.batch_size // 2)


@contextlib.asynccontextmanager
async def instances(
    stack: Any, azurite: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[list[Services]]:
    env = rotator_environment(azurite, stack)
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        monkeypatch.setenv(name, env[name])
    made = []
    try:
        for _ in range(INSTANCES):
            services = Services(load_settings(env))
            budget = RateBudget(
                services.table_service.get_table_client("applications"),
                f"graph-writes|{services.settings.tenant_id}",
                LIMIT,
                clock=services.clock,
                sleep=services.sleep,
                batch=2,  # as shared.services builds it
            )
            services.graph_write_budget = budget  # type: ignore[misc]  # scaled down (see above)
            made.append(services)
        await made[0].ensure_storage()
        yield made
    finally:
        await asyncio.gather(*(services.close() for services in made))


async def run_instance(services: Services, slots: int, finished: asyncio.Event, failures: list[str]) -> None:
    """One instance's queue trigger: up to ``slots`` jobs at once; a job that raises is delivered again."""
    from shared.storage.queue import QUEUE_NAME, parse_job

    client = services.queue_client(QUEUE_NAME)
    running: set[asyncio.Task[None]] = set()

    async def process(message: Any) -> None:
        try:
            await services.engine.handle(parse_job(message.content))
        except Exception as error:  # noqa: BLE001 - as the host: the message comes back
            failures.append(type(error).__name__)
            await client.update_message(message, visibility_timeout=1)
            return
        await client.delete_message(message)

    while not finished.is_set():
        free = slots - len(running)
        if free == 0:
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            running = {task for task in running if not task.done()}
            continue
        messages = [
            message
            async for message in client.receive_messages(
                messages_per_page=free, max_messages=free, visibility_timeout=300
            )
        ]
        if not messages:
            await asyncio.sleep(0.5)
        for message in messages:
            running.add(asyncio.create_task(process(message)))
        running = {task for task in running if not task.done()}
    await asyncio.gather(*running)


async def test_forty_instances_rotate_every_due_application_under_the_graph_write_quota(
    stack: Any, azurite: str, clean_storage: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Named example: 40 instances x the host's concurrency rotate what one scan enqueued, two
    Graph writes per rotation (addPassword, then the removal of an expired hand-made secret), and
    the simulator never answers 429: the shared budget paces every instance."""
    entra = stack.entra
    now = datetime.now(UTC)
    apps = [
        entra.add_application(
            f"scale-{number}",
            passwords=[
                {
                    "displayName": "hand-made",
                    "secretText": f"s{number}",
                    "endDateTime": (now + timedelta(minutes=45)).isoformat(),
                },
                {
                    "displayName": "expired",
                    "secretText": f"e{number}",
                    "endDateTime": (now - timedelta(days=1)).isoformat(),
                },
            ],
        )
        for number in range(APPS)
    ]
    slots = host_concurrency()
    async with instances(stack, azurite, monkeypatch) as workers:
        first = workers[0]
        registrations = asyncio.Semaphore(16)

        async def register(app: Any) -> None:
            config = ApplicationConfig.model_validate(
                {
                    "appId": app.app_id,
                    "objectId": app.object_id,
                    "displayName": app.display_name,
                    "rotation": {"enabled": True, "retireUnmanagedCredentials": True},
                },
                strict=False,
            )
            async with registrations:
                await first.registry.put(config, if_match=None, create_only=False)

        await asyncio.gather(*(register(app) for app in apps))
        entra.set_switches(write_quota=QUOTA)
        try:
            report = await first.scanner.scan()
            assert sum(report.enqueued.values()) == APPS
            finished = asyncio.Event()
            failures: list[str] = []
            started = time.monotonic()
            running = [asyncio.create_task(run_instance(w, slots, finished, failures)) for w in workers]

            async def results() -> list[RotationResult]:
                found = [await first.applications.find(app.app_id) for app in apps]
                return [stored.status.last_result for stored in found if stored is not None]

            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                await asyncio.sleep(2)
                if (await results()).count(RotationResult.SUCCEEDED) == APPS:
                    break
            elapsed = time.monotonic() - started
            finished.set()
            await asyncio.gather(*running)
            throttled = entra.switches()["writes_throttled"]
        finally:
            entra.set_switches(write_quota=None)

        assert (await results()).count(RotationResult.SUCCEEDED) == APPS, failures
        assert throttled == 0
        prefix = first.settings.credential_prefix + ":"
        for app in apps:  # two writes each: the new secret in, the expired one out
            names = sorted(p.display_name or "" for p in entra.get_application(app.object_id).passwords)
            assert len(names) == 2 and names[0] == "hand-made" and names[1].startswith(prefix), names
        # Paced at the budget's rate: 240 writes at 10 a second after its burst.
        assert elapsed >= (2 * APPS - LIMIT.burst) / LIMIT.rate_per_second * 0.9
