"""Benchmark (not a test): API latency through the local host, the way a portal calls it.

    .venv/bin/python -m scripts.bench_api [--registered 10000] [--directory 2000]

The real ``function_app`` is served by the local host (devhost) over real sockets, on Azurite and
the simulators (in their own process). ``--registered`` registrations are written as the app writes them; the simulated
directory holds ``--directory`` applications for the inventory. Measured:

* ``GET /applications?pageSize=100``: one client walking the pages (continuation tokens), then 8
  clients at once; latency percentiles.
* ``GET /applications/{appId}``: idle, then while another client walks ``/inventory`` pages.

``make bench`` runs it after the timer benchmark and adds its table to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-function-key"
# GET one application, idle and during the walk: enough that p99 is not two stray samples.
GET_SAMPLES = 1000


@dataclass
class Latencies:
    label: str
    samples: list[float]

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000

    def row(self) -> str:
        return (
            f"| {self.label} | {len(self.samples)} | {self.percentile(0.5):.0f} | "
            f"{self.percentile(0.99):.0f} | {max(self.samples) * 1000:.0f} |"
        )


def timed(client: httpx.Client, path: str, params: dict[str, str] | None = None) -> tuple[float, Any]:
    started = time.perf_counter()
    response = client.get(path, params=params)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
    return elapsed, response.json()


def walk_pages(client: httpx.Client, path: str, count: int, page_size: int = 100) -> list[float]:
    samples: list[float] = []
    token: str | None = None
    while len(samples) < count:
        params = {"pageSize": str(page_size), **({"continuationToken": token} if token else {})}
        elapsed, body = timed(client, path, params)
        samples.append(elapsed)
        token = body.get("continuationToken")
    return samples


@dataclass
class PageCost:
    """CPU per list page while 8 clients walk: the host process's, Azurite's and the client
    processes' (ms)."""

    host_ms: float
    azurite_ms: float
    client_ms: float

    def line(self) -> str:
        return (
            f"CPU per list page while 8 clients walk: the host process {self.host_ms:.1f} ms, "
            f"Azurite {self.azurite_ms:.1f} ms, the client's process {self.client_ms:.1f} ms "
            f"(8 pages in flight on {os.cpu_count()} cores: "
            f"{8 * (self.host_ms + self.azurite_ms + self.client_ms) / (os.cpu_count() or 1):.0f} ms "
            "of CPU per core for each round of the 8)."
        )


def measure(base_url: str, registered: int, azurite_pid: int | None) -> tuple[list[Latencies], PageCost]:
    import multiprocessing

    def client() -> httpx.Client:
        return httpx.Client(base_url=f"{base_url}/api", headers={"x-functions-key": KEY}, timeout=60)

    from scripts.bench_timer import bench_app_id

    results: list[Latencies] = []
    with client() as warm:
        walk_pages(warm, "/applications", 5)
        app_id = bench_app_id(registered // 2)
        for _ in range(20):
            timed(warm, f"/applications/{app_id}")
    # Every client in a process of its own, as portal users are: a client in this process would
    # share the host's interpreter (its lock, its garbage collections) for its own JSON parsing.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        results.append(Latencies("list, page of 100, 1 client", pool.apply(walk_list, (base_url, 200))[0]))
    from scripts.bench_timer import process_cpu_seconds

    with multiprocessing.get_context("spawn").Pool(8) as pool:
        pool.starmap(walk_list, [(base_url, 0)] * 8)  # the pool's interpreters start
        host, azurite = time.process_time(), process_cpu_seconds(azurite_pid)
        walks = pool.starmap(walk_list, [(base_url, 40)] * 8)
        host, azurite = time.process_time() - host, process_cpu_seconds(azurite_pid) - azurite
    served = 8 * (40 + 2)
    clients = sum(cpu for _, cpu in walks)
    cost = PageCost(host / served * 1000, azurite / served * 1000, clients / served * 1000)
    results.append(
        Latencies("list, page of 100, 8 clients", [sample for walk, _ in walks for sample in walk])
    )
    with client() as one:
        idle = [timed(one, f"/applications/{app_id}")[0] for _ in range(GET_SAMPLES)]
        results.append(Latencies("GET one application, idle", idle))
        # The walker is another process, as a portal is (see above).
        spawn = multiprocessing.get_context("spawn")
        stop, pages = spawn.Event(), spawn.Value("i", 0)
        walker = spawn.Process(target=walk_inventory, args=(base_url, stop, pages), daemon=True)
        walker.start()
        time.sleep(3.0)  # the walker's interpreter starts and its first pages are served
        walked = pages.value
        busy = [timed(one, f"/applications/{app_id}")[0] for _ in range(GET_SAMPLES)]
        walked = pages.value - walked
        stop.set()
        walker.join(timeout=60)
        if walked < 5:
            raise RuntimeError(f"the inventory walker served {walked} pages meanwhile: no load was measured")
        print(f"inventory pages served while GET one was timed: {walked}")
        results.append(Latencies("GET one application, during an inventory walk", busy))
    return results, cost


def walk_inventory(base_url: str, stop: Any, pages: Any) -> None:
    """Walk ``/inventory`` pages of 100 from the start, again and again, until ``stop`` is set,
    counting the pages in ``pages`` (a shared integer)."""
    with httpx.Client(base_url=f"{base_url}/api", headers={"x-functions-key": KEY}, timeout=60) as walker:
        while not stop.is_set():
            token: str | None = None
            while not stop.is_set():
                params = {"pageSize": "100", **({"continuationToken": token} if token else {})}
                _, body = timed(walker, "/inventory", params)
                with pages.get_lock():
                    pages.value += 1
                token = body.get("continuationToken")
                if not token:
                    break


def walk_list(base_url: str, count: int) -> tuple[list[float], float]:
    """``count`` pages of ``GET /applications`` from a client of its own: their latencies (s),
    and this process's CPU time over them and two pages before (s)."""
    started = time.process_time()
    with httpx.Client(base_url=f"{base_url}/api", headers={"x-functions-key": KEY}, timeout=60) as own:
        walk_pages(own, "/applications", 2)  # this client's connection and first page
        samples = walk_pages(own, "/applications", count)
    return samples, time.process_time() - started


def run(registered: int, directory: int) -> tuple[list[Latencies], PageCost, float]:
    import asyncio

    import function_app
    from devhost import DevHostThread
    from devhost.testing import AzuriteProcess
    from scripts.bench_timer import AZURITE_ARGS, seed
    from scripts.sim_process import SimulatorProcess, apply_environment
    from shared.config import load_settings
    from shared.services import Services, set_services

    directory_seed = {
        "applications": [
            {
                "displayName": f"directory-{number}",
                "passwordCredentials": [
                    {"displayName": "p", "secretText": f"s{number}x", "endDateTime": "2027-01-01T00:00:00Z"}
                ],
            }
            for number in range(directory)
        ]
    }
    with (
        tempfile.TemporaryDirectory() as workdir,
        AzuriteProcess(Path(workdir, "azurite"), extra_args=AZURITE_ARGS) as azurite,
        SimulatorProcess(Path(workdir, "sims"), directory_seed) as sims,
    ):
        seeded = seed(azurite.connection_string, registered, datetime.now(UTC))
        apply_environment(sims)
        settings = load_settings({"AzureWebJobsStorage": azurite.connection_string, **sims.app_settings})
        services = Services(settings)
        set_services(services)
        try:
            with DevHostThread(
                function_app.app,
                port=0,
                function_key=KEY,
                host_json_path=ROOT / "host.json",
                settings={"AzureWebJobsStorage": azurite.connection_string},
                enable_queues=False,
                enable_timers=False,
            ) as host:
                results, cost = measure(str(host.base_url).rstrip("/"), registered, azurite.pid)
                host.run_coroutine(services.close())
        finally:
            set_services(None)
            asyncio.set_event_loop(None)
    return results, cost, seeded


HEADER = "| request | samples | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--registered", type=int, default=10000)
    parser.add_argument("--directory", type=int, default=2000)
    args = parser.parse_args()
    results, cost, seeded = run(args.registered, args.directory)
    print(f"{args.registered:,} registered (seeded in {seeded:.0f} s), {args.directory:,} in the directory")
    print(HEADER)
    for result in results:
        print(result.row())
    idle, busy = results[2], results[3]
    print(f"GET one during an inventory walk: p99 {busy.percentile(0.99) / idle.percentile(0.99):.2f}x idle")
    print(cost.line())


if __name__ == "__main__":
    main()
