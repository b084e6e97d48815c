"""Benchmark (not a test): a simulated scale-out against Graph's write quota.

    .venv/bin/python -m scripts.bench_scale [--apps 10000] [--instances 40] [--latency-ms 20] [--logs DIR]

Method: ``--apps`` applications in the simulated directory, each holding a hand-made secret that
expires one hour from the start and an expired one; all are registered (rotation on, 21-day
secrets, threshold 1 hour, ``retireUnmanagedCredentials`` on, so a rotation makes two Graph writes:
addPassword, then the removal of the expired secret, as later rotations remove the credential
before the previous one). The Entra simulator enforces Graph's write quota for identity and access
(3,000 writes per 150 s per app and tenant, learn.microsoft.com/graph/throttling-limits), answering
each request after ``--latency-ms``. ``--instances`` worker instances start, each its own
``python -m devhost`` process running the real ``function_app`` with the project's host.json (so
``batchSize + newBatchThreshold`` jobs at once each) and the default settings: the Graph write
budget they share is 16 writes/s with a burst of 400. One scan (the timer's run) enqueues every
due application, and the timer runs again every 15 minutes after it (it enqueues what an earlier
run left: a row it could not read, or the rest after its time budget); the run ends when every
rotation has recorded its result.

Reported, as the simulator counted them: the password writes it accepted, the 429s it answered
(every refused write), the most writes in one 150 s window at any moment; each application's
rotation time against its secret's expiry; and, from the simulated directory afterwards, the
applications not holding exactly their hand-made secret and one new one (a credential created
twice, or lost). The threshold is one hour and the timer runs every 15 minutes, so in
the worst case the first scan to see an application comes 15 minutes after it became due: its
secret then has 45 minutes left. Every rotation must therefore record its result within 45
minutes of the scan; the slack reported is what remains of those 45 minutes for the last one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-function-key"
QUOTA_WRITES = 3000
QUOTA_WINDOW_SECONDS = 150
TIMER_PERIOD = timedelta(minutes=15)
THRESHOLD = timedelta(hours=1)


@dataclass
class ScaleResult:
    apps: int
    instances: int
    concurrency: int
    scan_seconds: float
    scans: int  # timer runs until every application had its result
    drain_seconds: float
    succeeded: int
    degraded: int  # rotated, with something left to retry (here: an expired secret not removed)
    throttled_writes: int
    writes: int
    max_writes_per_window: int
    worst_slack_seconds: float
    warnings: dict[str, int]  # what the degraded ones logged
    worker_errors: dict[str, int]  # ERROR lines in the workers' logs, by logger
    # The directory afterwards: applications holding other than the hand-made secret and one new
    # one (a credential added twice, or one lost), and those still holding the expired secret.
    wrong_credentials: int
    expired_left: int

    def rows(self) -> list[str]:
        return [
            "| applications due | instances x jobs each | first scan | timer runs | last result after the first scan | "
            "succeeded | password writes | 429s | most writes in any 150 s (quota 3,000) | "
            "slack of the last one (of 45 min) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {self.apps:,} | {self.instances} x {self.concurrency} | {self.scan_seconds:.0f} s | {self.scans} | "
            f"{self.drain_seconds / 60:.1f} min | {self.succeeded:,} | {self.writes:,} | "
            f"{self.throttled_writes} | {self.max_writes_per_window:,} | "
            f"{self.worst_slack_seconds / 60:.1f} min |",
        ]

    def verdict(self) -> str:
        """One sentence: under the quota without a 429, and every rotation within the deadline."""
        under = self.throttled_writes == 0 and self.max_writes_per_window <= QUOTA_WRITES
        in_time = self.succeeded == self.apps and self.worst_slack_seconds > 0
        clean = self.wrong_credentials == 0
        warnings = ", ".join(f"{name}: {count}" for name, count in sorted(self.warnings.items()))
        errors = ", ".join(f"{name}: {count}" for name, count in sorted(self.worker_errors.items()))
        return (
            f"Under Graph's quota with no 429: {'yes' if under else 'NO'}. All {self.apps:,} rotated "
            f"within 45 minutes of the scan (before expiry with the worst timer phase): "
            f"{'yes' if in_time else 'NO'}. Each application holds its hand-made secret and one new "
            f"one, nothing more: {'yes' if clean else f'NO ({self.wrong_credentials:,} do not)'}"
            f" ({self.expired_left:,} still hold the expired secret)."
            + (f" Warnings the degraded ones logged: {warnings}." if warnings else "")
            + (f" ERROR lines in the workers' logs, by logger: {errors}." if errors else "")
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_listening(port: int, process: subprocess.Popen[bytes], deadline: float) -> None:
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"a worker instance exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("a worker instance did not start") from None
            time.sleep(0.5)


async def _register(services: Any, directory: list[dict[str, str]]) -> None:
    from shared.domain.models import ApplicationConfig

    limit = asyncio.Semaphore(16)

    async def one(app: dict[str, str]) -> None:
        config = ApplicationConfig.model_validate(
            {
                "appId": app["appId"],
                "objectId": app["id"],
                "displayName": app["displayName"],
                "rotation": {
                    "enabled": True,
                    "secretLifetimeDays": 21,
                    "updateThresholdHours": int(THRESHOLD.total_seconds() // 3600),
                    "retireUnmanagedCredentials": True,
                },
            },
            strict=False,
        )
        async with limit:
            await services.registry.put(config, if_match=None, create_only=False)

    await asyncio.gather(*(one(app) for app in directory))


async def _queued(services: Any) -> int:
    from shared.storage.queue import QUEUE_NAME

    properties = await services.queue_client(QUEUE_NAME).get_queue_properties()
    count: int = properties.approximate_message_count
    return count


@dataclass(frozen=True)
class Outcome:
    app_id: str
    result: str  # RotationResult's value
    rotated_at: datetime | None  # when the new secret took over; None until it has


async def _results(services: Any, app_ids: list[str]) -> list[Outcome]:
    limit = asyncio.Semaphore(16)

    async def one(app_id: str) -> Outcome:
        async with limit:
            stored = await services.applications.find(app_id)
        if stored is None:
            return Outcome(app_id, "unregistered", None)
        result = stored.status.last_result.value
        rotated = result in ("succeeded", "degraded")
        return Outcome(app_id, result, stored.status.last_updated_at if rotated else None)

    return list(await asyncio.gather(*(one(app_id) for app_id in app_ids)))


async def _warnings(services: Any, outcomes: list[Outcome]) -> dict[str, int]:
    """What the degraded rotations logged as warnings: ``{event (code): count}``."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.result != "degraded":
            continue
        page = await services.rotation_log.list_page(outcome.app_id, 100, None)
        for entry in page.items:
            if entry.level.value == "warning":
                key = f"{entry.event} ({entry.code})"
                counts[key] = counts.get(key, 0) + 1
    return counts


def _entra_admin_client(sims: Any) -> httpx.Client:
    """A client of the Entra simulator's admin API (``/_sim/...``), trusting its CA."""
    trust = ssl.create_default_context(cafile=sims.endpoints["ca_pem"])
    return httpx.Client(base_url=f"{sims.endpoints['servers']['entra']}/_sim", verify=trust, timeout=120)


def _entra_admin(sims: Any, path: str, switches: dict[str, Any] | None = None) -> Any:
    """GET (or, with ``switches``, POST) the Entra simulator's ``/_sim/{path}``."""
    with _entra_admin_client(sims) as client:
        response = client.get(path) if switches is None else client.post(path, json=switches)
        response.raise_for_status()
        return response.json()


def _audit_directory(sims: Any, object_ids: list[str]) -> tuple[int, int]:
    """``(applications not holding exactly the hand-made secret and one other, holding the expired one)``."""
    wrong = expired = 0
    with _entra_admin_client(sims) as client:
        for object_id in object_ids:
            response = client.get(f"applications/{object_id}")
            response.raise_for_status()
            names = [credential["displayName"] for credential in response.json()["passwordCredentials"]]
            others = [name for name in names if not name.startswith("hand-made")]
            wrong += names.count("hand-made") != 1 or len(others) != 1
            expired += "hand-made, expired" in names
    return wrong, expired


def run(apps: int, instances: int, latency_ms: int, logs: Path | None = None) -> ScaleResult:
    from devhost import load_host_json
    from devhost.testing import AzuriteProcess
    from scripts.bench_timer import AZURITE_ARGS
    from scripts.sim_process import SimulatorProcess, apply_environment
    from shared.config import load_settings
    from shared.services import Services

    started_at = datetime.now(UTC)
    expires = started_at + THRESHOLD
    directory = [
        {"appId": str(uuid.uuid4()), "id": str(uuid.uuid4()), "displayName": f"scale-{number}"}
        for number in range(apps)
    ]
    seed = {
        "applications": [
            {
                **app,
                "passwordCredentials": [
                    {
                        "displayName": "hand-made",
                        "secretText": f"s-{app['appId']}",
                        "endDateTime": expires.isoformat(),
                    },
                    {
                        "displayName": "hand-made, expired",
                        "secretText": f"old-{app['appId']}",
                        "endDateTime": (started_at - timedelta(days=1)).isoformat(),
                    },
                ],
            }
            for app in directory
        ]
    }
    config = load_host_json(ROOT / "host.json")
    concurrency = config.queues.batch_size + (
        config.queues.new_batch_threshold
        if config.queues.new_batch_threshold is not None
        else config.queues.batch_size // 2
    )
    workers: list[subprocess.Popen[bytes]] = []
    with (
        tempfile.TemporaryDirectory() as workdir,
        AzuriteProcess(Path(workdir, "azurite"), extra_args=AZURITE_ARGS) as azurite,
        SimulatorProcess(Path(workdir, "sims"), seed) as sims,
    ):
        apply_environment(sims)
        values = {
            "AzureWebJobsStorage": azurite.connection_string,
            **sims.app_settings,
            "ROTATOR_VERIFY_TIMEOUT_SECONDS": "60",
        }
        services = Services(load_settings(values))
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(services.ensure_storage())
            loop.run_until_complete(_register(services, directory))
            sims.set_switches(latency_seconds=latency_ms / 1000)
            _entra_admin(
                sims,
                "switches",
                {"write_quota": {"limit": QUOTA_WRITES, "window_seconds": QUOTA_WINDOW_SECONDS}},
            )
            environment = {**os.environ, **values}
            deadline = time.monotonic() + 600
            ports = []
            for number in range(instances):
                port = _free_port()
                # The worker writes its own copy of the file descriptor; this one closes at once.
                with Path(workdir, f"instance-{number}.log").open("wb") as output:
                    workers.append(
                        subprocess.Popen(
                            [
                                sys.executable,
                                "-m",
                                "devhost",
                                "--no-settings",
                                "--no-timers",
                                "--port",
                                str(port),
                                "--function-key",
                                KEY,
                            ],
                            cwd=ROOT,
                            env=environment,
                            stdout=output,
                            stderr=subprocess.STDOUT,
                        )
                    )
                ports.append(port)
            for port, worker in zip(ports, workers, strict=True):
                _wait_listening(port, worker, deadline)
            scan_started = time.monotonic()
            scanned_at = datetime.now(UTC)
            loop.run_until_complete(services.scanner.scan())
            scan_seconds = time.monotonic() - scan_started
            scans, next_timer = 1, scan_started + TIMER_PERIOD.total_seconds()
            app_ids = [app["appId"] for app in directory]
            limit = time.monotonic() + 3 * 3600
            while time.monotonic() < limit:
                time.sleep(10)
                if time.monotonic() >= next_timer:
                    # The timer's next run, as in Azure: it enqueues what the last one left (a
                    # row it could not read, or the rest after its time budget).
                    loop.run_until_complete(services.scanner.scan())
                    scans, next_timer = scans + 1, next_timer + TIMER_PERIOD.total_seconds()
                # In-flight messages count until deleted: once none is left, every result is in,
                # or what is missing waits for the next timer run.
                if loop.run_until_complete(_queued(services)) == 0:
                    results = loop.run_until_complete(_results(services, app_ids))
                    if all(outcome.rotated_at is not None for outcome in results):
                        break
            results = loop.run_until_complete(_results(services, app_ids))
            warnings = loop.run_until_complete(_warnings(services, results))
            loop.run_until_complete(services.close())
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGINT)
            for worker in workers:
                try:
                    worker.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    worker.kill()
            loop.close()
        switches = _entra_admin(sims, "switches")
        sims.set_switches(latency_seconds=0)  # the audit reads every application once
        wrong_credentials, expired_left = _audit_directory(sims, [app["id"] for app in directory])
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
            for path in Path(workdir).glob("instance-*.log"):
                shutil.copy(path, logs / path.name)
        errors: dict[str, int] = {}  # the workers' ERROR log lines, by logger
        for path in Path(workdir).glob("instance-*.log"):
            for line in path.read_text(errors="replace").splitlines():
                parts = line.split()
                if len(parts) > 3 and parts[2] == "ERROR":
                    errors[parts[3].rstrip(":")] = errors.get(parts[3].rstrip(":"), 0) + 1
    finished = [outcome.rotated_at for outcome in results if outcome.rotated_at is not None]
    last = max(finished) if finished else datetime.now(UTC)
    # The deadline with the worst timer phase: the scan came 15 minutes after they became due.
    worst_deadline = scanned_at + THRESHOLD - TIMER_PERIOD
    return ScaleResult(
        apps=apps,
        instances=instances,
        concurrency=concurrency,
        scan_seconds=scan_seconds,
        scans=scans,
        drain_seconds=(last - scanned_at).total_seconds(),
        succeeded=len(finished),
        degraded=sum(outcome.result == "degraded" for outcome in results),
        throttled_writes=int(switches["writes_throttled"]),
        writes=int(switches["writes_accepted"]),
        max_writes_per_window=int(switches["writes_peak"]),
        worst_slack_seconds=(worst_deadline - last).total_seconds(),
        warnings=warnings,
        worker_errors=errors,
        wrong_credentials=wrong_credentials,
        expired_left=expired_left,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--apps", type=int, default=10000)
    parser.add_argument("--instances", type=int, default=40)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--logs", type=Path, help="copy the workers' logs to this folder")
    args = parser.parse_args()
    result = run(args.apps, args.instances, args.latency_ms, args.logs)
    print("\n".join(result.rows()))
    print(result.verdict())
    print(json.dumps(result.__dict__))


if __name__ == "__main__":
    main()
