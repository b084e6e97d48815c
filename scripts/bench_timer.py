"""The timer run's cost against the number of registered applications, and the cold-start import
cost of ``function_app`` (part of ``make bench``: ``scripts/bench.py`` runs it and writes the table).

For each size N it starts from empty Azurite tables and writes N registrations as the app writes
them (app row in the registry, its due index row, a row in the expiry index as the expiry count
leaves it): 100 are due now, 50 more have secrets that entered the
7-day expiry window within the last hour, the rest expire 8 to 28 days out; the expiry count's
previous turn is recorded an hour ago. The activity is the same at every N, so what grows with N
is what does not follow the due work. It then runs one real timer pass as the trigger does
(``timer_pass``): the scan (``Scanner.scan``: index query, per-app read, enqueue to the real queue,
status write) beside the expiry report (``report_expiring_secrets``: changes and window entries
since the last turn), and reports rows read, wall time and the CPU time of this process and of
Azurite's (which runs in its own). An unreported pass on a small table comes first, so one-time
imports do not flatter the ratio against the smallest size.
The import cost compares ``import function_app`` with a bare ``import azure.functions`` in fresh
interpreters (median of several runs) with peak RSS.
"""

from __future__ import annotations

import asyncio
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DUE = 100
ENTERED = 50
WINDOW_DAYS = 7
# In memory: with files, Azurite (LokiJS autosave) rewrites its whole database every 5 seconds while
# anything changes, which at 100,000 registrations blocks it for seconds: a cost of the emulator's
# persistence that grows with N, not of Azure Table storage.
AZURITE_ARGS = ("--inMemoryPersistence",)


def bench_app_id(number: int) -> str:
    """The ``number``th registration's app id: a random (version 4) GUID, as Entra assigns them, the
    same in every run. Keys of random GUIDs spread evenly, as a listing's key ranges expect."""
    import hashlib
    import uuid

    return str(uuid.UUID(bytes=hashlib.sha256(b"bench-app-%d" % number).digest()[:16], version=4))


TIMER_METHOD = (
    "for each size N, empty Azurite tables (Azurite in memory: with files it rewrites its whole "
    "database every 5 s while anything changes, LokiJS autosave) get N registrations written as the app writes them "
    "(app row in the registry table, its row in the due index's table, a row in the expiry index's table as the expiry count "
    "leaves it; 100-operation transactions). 100 are due now, 50 more have "
    "secrets that entered the 7-day expiry window within the last hour, the rest expire 8 to 28 days "
    "out, and the expiry count's previous turn is recorded an hour ago: the same activity at every N. "
    "Then one real timer pass runs as the trigger runs it (`timer_pass`): the scan (`Scanner.scan`: "
    "due-index query, per-app read, enqueue to the real queue, ETag-conditional status write, 16 at "
    "a time) beside the expiry report (`report_expiring_secrets`). CPU time is measured for this "
    "process and for Azurite's (from /proc) over the same pass. An unreported pass on a small table "
    "comes first (one-time imports)."
)


def _entities(
    count: int, now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The registry's app rows, the due index's rows and the expiry index's rows, as this version
    writes them."""
    from azure.data.tables import EdmType, EntityProperty

    from shared.domain.models import ApplicationConfig, ApplicationStatus
    from shared.storage import due_index, expiry_index
    from shared.storage.applications import APP_PREFIX, PARTITION, expiry_state, listing_text

    rows: list[dict[str, Any]] = []
    due_rows: list[dict[str, Any]] = []
    expiring: list[dict[str, Any]] = []
    for number in range(count):
        app_id = bench_app_id(number)
        due = number < DUE
        entered = DUE <= number < DUE + ENTERED
        config = ApplicationConfig.model_validate(
            {
                "appId": app_id,
                "objectId": app_id,
                "displayName": f"bench-{number}",
                "rotation": {"enabled": True},
            },
            strict=False,
        )
        if due:
            expires = now + timedelta(minutes=30)
        elif entered:  # entered the 7-day window during the last hour
            expires = now + timedelta(days=WINDOW_DAYS) - timedelta(minutes=5 + number % 50)
        else:
            expires = now + timedelta(days=8) + timedelta(minutes=(number * 7919) % (20 * 24 * 60))
        status = ApplicationStatus(current_key_id="k", expires_at=expires, last_updated_at=now)
        attention = expires - timedelta(hours=1)
        due_key = due_index.due_key(attention, app_id)
        rows.append(
            {
                "PartitionKey": PARTITION,
                "RowKey": f"{APP_PREFIX}{app_id}",
                "AppId": app_id,
                "DisplayName": config.display_name,
                "Config": json.dumps(config.to_json_dict(), separators=(",", ":")),
                "Status": json.dumps(status.to_json_dict(), separators=(",", ":")),
                "Listing": listing_text(config, status),
                "IndexKey": "",
                "DueKey": due_key,
                "DueWrites": EntityProperty(1, EdmType.INT64),
                "ExpiryKey": "",
                "ExpiryState": expiry_state(config, status),
                "Writes": EntityProperty(1, EdmType.INT64),
                "CreatedAt": now,
                "UpdatedAt": now,
            }
        )
        due_rows.append(
            {"PartitionKey": due_index.PARTITION, "RowKey": due_key, "AppId": app_id, "WrittenAt": now}
        )
        expiring.append(
            {
                "PartitionKey": expiry_index.PARTITION,
                "RowKey": expiry_index.expiry_key(expires, app_id),
                "AppId": app_id,
                "DisplayName": config.display_name,
                "ExpiresAt": expires,
                "State": expiry_state(config, status),
            }
        )
    return rows, due_rows, expiring


def _previous_turn(count: int, now: datetime) -> dict[str, Any]:
    """The expiry count's turn an hour ago: the due apps were in the window, nothing else."""
    from shared.expiry import LAYOUT, TASK

    return {
        "PartitionKey": "meta",
        "RowKey": TASK,
        "LastRun": now - timedelta(hours=1),
        "AsOf": now - timedelta(hours=1),
        "Count": min(DUE, count),
        "WithinDays": WINDOW_DAYS,
        "Layout": LAYOUT,
    }


def seed(connection_string: str, count: int, now: datetime) -> float:
    from azure.data.tables import TableServiceClient

    from shared.storage import applications, due_index, expiry_index

    service = TableServiceClient.from_connection_string(connection_string)
    registry, due, expiring = _entities(count, now)
    started = time.perf_counter()
    tables = (
        (applications.TABLE_NAME, registry),
        (due_index.TABLE_NAME, due),
        (expiry_index.TABLE_NAME, expiring),
    )
    for name, rows in tables:
        service.delete_table(name)
        service.create_table(name)
        table = service.get_table_client(name)
        rows.sort(key=lambda row: row["RowKey"])
        for start in range(0, len(rows), 100):  # a transaction holds at most 100 operations
            table.submit_transaction([("upsert", row) for row in rows[start : start + 100]])
    registrations = service.get_table_client(applications.TABLE_NAME)
    registrations.upsert_entity(_previous_turn(count, now))
    # The layout this version gives an install it creates (``ApplicationStore.writes_legacy_rows``).
    registrations.upsert_entity(
        {
            "PartitionKey": applications.META_PARTITION,
            "RowKey": applications.LAYOUT_KEY,
            "Layout": applications.LAYOUT_TABLE,
        }
    )
    return time.perf_counter() - started


@dataclass
class TimerRun:
    scan_rows: int
    report_rows: int
    enqueued: int
    expiring: int
    wall: float
    cpu: float
    azurite_cpu: float = 0.0


def process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc; 0 where unavailable)."""
    import os

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def timer_once(connection_string: str, now: datetime) -> TimerRun:
    from shared.config import load_settings
    from shared.services import Services

    settings = load_settings(
        {
            "AzureWebJobsStorage": connection_string,
            "ROTATOR_TENANT_ID": "00000000-0000-0000-0000-00000000cafe",
            "ROTATOR_VAULT_URL": "https://localhost:1",
        }
    )
    services = Services(settings, clock=lambda: now)
    await services.ensure_storage()
    await services.queue_client("rotations").clear_messages()
    import logging

    from shared.triggers.timer import timer_pass

    measured: list[logging.LogRecord] = []

    class Measured(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if getattr(record, "event", None) == "expiry.measured":
                measured.append(record)

    handler = Measured()
    telemetry = logging.getLogger("rotator.telemetry")
    telemetry.addHandler(handler)
    telemetry.setLevel(logging.INFO)
    applications = services.applications
    try:
        await applications.get(bench_app_id(0))  # warm the connection
        started, cpu = time.perf_counter(), time.process_time()
        report = await timer_pass(services)  # what the timer trigger runs
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        expiring = int(getattr(measured[-1], "count", -1)) if measured else -1
        # The report's own count (the logged expiry.measured record) and its turn row.
        report_rows = sum(int(getattr(record, "rowsRead", 0)) for record in measured) + 1
        return TimerRun(report.rows_read, report_rows, sum(report.enqueued.values()), expiring, wall, cpu)
    finally:
        telemetry.removeHandler(handler)
        await services.close()


def import_costs(statements: tuple[str, ...], runs: int = 11) -> list[tuple[float, float]]:
    """Median wall time (ms) and peak RSS (MiB) of each import statement in fresh interpreters; the
    statements alternate run by run, so both see the same machine load."""
    # VmHWM, not ru_maxrss: the latter can carry the parent's peak across fork/exec.
    code = (
        "import time; t = time.perf_counter(); "
        "{statement}; "
        "e = time.perf_counter() - t; "
        "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
        "print(e, hwm)"
    )
    samples: dict[str, tuple[list[float], list[float]]] = {s: ([], []) for s in statements}
    for _ in range(runs):
        for statement in statements:
            output = subprocess.run(
                [sys.executable, "-c", code.format(statement=statement)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            samples[statement][0].append(float(output[0]))
            samples[statement][1].append(float(output[1]) / 1024)
    return [(statistics.median(samples[s][0]) * 1000, statistics.median(samples[s][1])) for s in statements]


def timer_table(sizes: list[int]) -> tuple[list[str], str]:
    """The timer run at each registry size: the table rows and the ratio line."""
    from devhost.testing import AzuriteProcess

    header = (
        "| registered | due | rows read: scan | rows read: expiry report | rows read / due "
        "| enqueued | expiring counted | timer run wall s | timer run CPU s (this process) "
        "| timer run CPU s (Azurite) | seed s |"
    )
    lines = [header, "|" + "---:|" * 11]
    print(header, flush=True)
    now = datetime.now(UTC)
    runs: dict[int, TimerRun] = {}
    with (
        tempfile.TemporaryDirectory() as directory,
        AzuriteProcess(directory, extra_args=AZURITE_ARGS) as azurite,
    ):
        # One unreported pass first: the first pass in a process also imports and builds what
        # every later one reuses, which would flatter the ratio against the smallest size.
        seed(azurite.connection_string, DUE + ENTERED, now)
        asyncio.run(timer_once(azurite.connection_string, now))
        for size in sizes:
            seeded = seed(azurite.connection_string, size, now)
            before = process_cpu_seconds(azurite.pid)
            run = runs[size] = asyncio.run(timer_once(azurite.connection_string, now))
            # The pass's own part: the client's warm-up read before it is a few ms of Azurite's time.
            run.azurite_cpu = process_cpu_seconds(azurite.pid) - before
            line = (
                f"| {size:,} | {DUE} | {run.scan_rows} | {run.report_rows} | "
                f"{(run.scan_rows + run.report_rows) / DUE:.2f} | {run.enqueued} | {run.expiring} | "
                f"{run.wall:.2f} | {run.cpu:.2f} | {run.azurite_cpu:.2f} | {seeded:.1f} |"
            )
            lines.append(line)
            print(line, flush=True)
    smallest, largest = min(runs), max(runs)
    ratios = (
        f"At {largest:,} against {smallest:,} registered: wall time "
        f"{runs[largest].wall / runs[smallest].wall:.2f}x, this process's CPU time "
        f"{runs[largest].cpu / runs[smallest].cpu:.2f}x, Azurite's CPU time "
        f"{runs[largest].azurite_cpu / max(runs[smallest].azurite_cpu, 0.01):.2f}x."
    )
    print(ratios)
    return lines, ratios


def cold_start() -> tuple[list[str], str]:
    """The import cost table and the heavy libraries ``import function_app`` loads.

    Both imports read bytecode, as in a deployment: the libraries' was written by pip when it
    installed them, the app's is written first here as the package hook writes it
    (``scripts/compile_app.py``; the package is read-only, so Python could not cache it there)."""
    from scripts.compile_app import compile_app

    if not compile_app():
        raise RuntimeError("the app's modules did not compile")
    (base_ms, base_rss), (app_ms, app_rss) = import_costs(("import azure.functions", "import function_app"))
    cold = [
        "| import | wall time (median of 11) | peak RSS |",
        "|---|---:|---:|",
        f"| `import azure.functions` | {base_ms:.0f} ms | {base_rss:.1f} MiB |",
        f"| `import function_app` | {app_ms:.0f} ms | {app_rss:.1f} MiB |",
        f"| ratio | {app_ms / base_ms:.2f}x | {app_rss / base_rss:.2f}x |",
    ]
    print("\n".join(cold))
    heavy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, function_app; print(sorted(m for m in ('msgraph', 'azure.identity', "
            "'azure.keyvault.secrets', 'azure.data.tables', 'azure.storage.queue', "
            "'azure.communication.email', 'azure.monitor.opentelemetry', 'pydantic') if m in sys.modules))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"heavy libraries loaded by import function_app: {heavy}")
    return cold, heavy


def machine() -> str:
    import os

    memory = next(
        (
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        "0",
    )
    return (
        f"{os.cpu_count()} cores ({platform.machine()}), {int(memory) // 1024 // 1024} GiB RAM, "
        f"Python {platform.python_version()}; Azurite (from node_modules), the simulators and the "
        "local host on the same machine"
    )


if __name__ == "__main__":
    from scripts.bench import main

    main()
