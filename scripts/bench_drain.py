"""Benchmark (not a test): how fast due rotations drain through the local host.

    .venv/bin/python -m scripts.bench_drain [--due 1000] [--latency-ms 20]

The real ``function_app`` runs in the local host (devhost) with the project's host.json (queue
batch and threshold, so at most ``batchSize + newBatchThreshold`` jobs at once), on Azurite and
the simulators (in their own process, as the services are in Azure), which answer each request
after ``--latency-ms``. ``--due`` applications are
registered (rotation on, no destinations: the rotation itself is measured: claim, addPassword,
stage in the vault, prove the secret at the token endpoint, record) and are all due.

Method: first one application is rotated alone, five times, through the same queue; the median
time from enqueue to its recorded result is ``T1``. The ideal drain rate is ``concurrency / T1``
(every slot busy, nothing waiting on the host). Then one timer pass enqueues every due
application and the time until the last result is recorded gives the achieved rate. CPU per
rotation is the host event loop thread's CPU time over the drain, divided by the rotations
(simulators and Azurite excluded: they run in other processes; Azurite in memory).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-function-key"
TENANT = "00000000-0000-0000-0000-00000000cafe"


@dataclass
class DrainResult:
    due: int
    concurrency: int
    single_seconds: float
    drain_seconds: float
    succeeded: int
    cpu_per_rotation_ms: float

    @property
    def ideal_rate(self) -> float:
        return self.concurrency / self.single_seconds

    @property
    def achieved_rate(self) -> float:
        return self.succeeded / self.drain_seconds

    def rows(self) -> list[str]:
        return [
            "| due | concurrency | T1 (one rotation alone) | ideal rate | drain time | achieved rate | "
            "achieved / ideal | CPU per rotation (host loop thread) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {self.due:,} | {self.concurrency} | {self.single_seconds * 1000:.0f} ms | "
            f"{self.ideal_rate:.1f}/s | {self.drain_seconds:.1f} s | {self.achieved_rate:.1f}/s | "
            f"{self.achieved_rate / self.ideal_rate:.2f} | {self.cpu_per_rotation_ms:.1f} ms |",
        ]


async def _register(services: Any, entra_apps: list[Any]) -> None:
    from shared.domain.models import ApplicationConfig

    limit = asyncio.Semaphore(16)

    async def one(app: Any) -> None:
        config = ApplicationConfig.model_validate(
            {
                "appId": app.app_id,
                "objectId": app.object_id,
                "displayName": app.display_name,
                "rotation": {"enabled": True, "secretLifetimeDays": 21, "updateThresholdHours": 1},
            },
            strict=False,
        )
        async with limit:
            await services.registry.put(config, if_match=None, create_only=False)

    await asyncio.gather(*(one(app) for app in entra_apps))


async def _results(services: Any, app_ids: list[str]) -> int:
    done = 0
    for app_id in app_ids:
        stored = await services.applications.find(app_id)
        if stored is not None and stored.status.last_result.value in ("succeeded", "degraded"):
            done += 1
    return done


async def _loop_cpu() -> float:
    return time.thread_time()


@dataclass(frozen=True)
class DirectoryApp:
    app_id: str
    object_id: str
    display_name: str


def run(due: int, latency_ms: int) -> DrainResult:
    import function_app
    from devhost import DevHostThread, load_host_json
    from devhost.testing import AzuriteProcess
    from scripts.bench_timer import AZURITE_ARGS
    from scripts.sim_process import SimulatorProcess, apply_environment
    from shared.config import load_settings
    from shared.domain.models import JobReason, RotationJob
    from shared.services import Services, set_services

    expiring = (datetime.now(UTC) + timedelta(days=60)).isoformat()
    entra_apps = [
        DirectoryApp(str(uuid.uuid4()), str(uuid.uuid4()), f"drain-{number}") for number in range(due + 1)
    ]
    seed = {
        "applications": [
            {
                "displayName": app.display_name,
                "appId": app.app_id,
                "id": app.object_id,
                "passwordCredentials": [
                    {"displayName": "hand-made", "secretText": f"s-{app.app_id}", "endDateTime": expiring}
                ],
            }
            for app in entra_apps
        ]
    }
    with (
        tempfile.TemporaryDirectory() as workdir,
        AzuriteProcess(Path(workdir, "azurite"), extra_args=AZURITE_ARGS) as azurite,
        SimulatorProcess(Path(workdir, "sims"), seed) as sims,
    ):
        apply_environment(sims)
        settings = load_settings(
            {
                "AzureWebJobsStorage": azurite.connection_string,
                **sims.app_settings,
                "ROTATOR_VERIFY_TIMEOUT_SECONDS": "60",
            }
        )
        services = Services(settings)
        set_services(services)
        config = load_host_json(ROOT / "host.json")
        concurrency = config.queues.batch_size + (
            config.queues.new_batch_threshold
            if config.queues.new_batch_threshold is not None
            else config.queues.batch_size // 2
        )
        try:
            with DevHostThread(
                function_app.app,
                function_key=KEY,
                host_config=config,
                settings={"AzureWebJobsStorage": azurite.connection_string},
                enable_timers=False,
                queue_poll_seconds=0.05,
            ) as host:
                host.run_coroutine(services.ensure_storage())
                single, rest = entra_apps[0], entra_apps[1:]
                host.run_coroutine(_register(services, [single]))
                sims.set_switches(latency_seconds=latency_ms / 1000)
                singles = []
                for _ in range(5):
                    job = RotationJob(
                        app_id=single.app_id,
                        rotation_id=str(uuid.uuid4()),
                        reason=JobReason.MANUAL,
                        requested_at=datetime.now(UTC),
                    )
                    started = time.perf_counter()
                    host.run_coroutine(services.rotation_queue.enqueue(job))
                    host.drain("rotations", timeout=120)
                    singles.append(time.perf_counter() - started)
                sims.set_switches(latency_seconds=0)
                host.run_coroutine(_register(services, rest))
                sims.set_switches(latency_seconds=latency_ms / 1000)
                app_ids = [app.app_id for app in rest]
                cpu = host.run_coroutine(_loop_cpu())
                started = time.perf_counter()
                host.run_coroutine(services.scanner.scan())
                host.drain("rotations", timeout=3600)
                drain_seconds = time.perf_counter() - started
                cpu = host.run_coroutine(_loop_cpu()) - cpu
                succeeded = host.run_coroutine(_results(services, app_ids))
                host.run_coroutine(services.close())
        finally:
            set_services(None)
    return DrainResult(
        due,
        concurrency,
        statistics.median(singles),
        drain_seconds,
        succeeded,
        cpu / max(succeeded, 1) * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--latency-ms", type=int, default=20)
    args = parser.parse_args()
    result = run(args.due, args.latency_ms)
    print("\n".join(result.rows()))


if __name__ == "__main__":
    main()
