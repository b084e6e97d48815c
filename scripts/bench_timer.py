"""Benchmark (not a test): the timer's scan cost against the number of registered applications,
and the cold-start import cost of ``function_app``.

    make bench            # or: .venv/bin/python -m scripts.bench_timer [--sizes 1000 10000 100000]

For each size N it starts from an empty Azurite table, writes N registrations of which 100 are
due (plus their index rows, as the app writes them), runs one real scan (``Scanner.scan``: index
query, per-app read, enqueue to the real queue, status write), and reports the scan's wall time
and the rows it read. Then it times ``import function_app`` against a bare
``import azure.functions`` in fresh interpreters (median of several runs) with peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DUE = 100


def _entities(count: int, now: datetime) -> list[dict[str, Any]]:
    from shared.domain.models import ApplicationConfig, ApplicationStatus
    from shared.storage.applications import APP_PREFIX, PARTITION, index_row_key

    rows: list[dict[str, Any]] = []
    for number in range(count):
        app_id = f"00000000-0000-4000-8000-{number:012d}"
        due = number < DUE
        config = ApplicationConfig.model_validate(
            {
                "appId": app_id,
                "objectId": app_id,
                "displayName": f"bench-{number}",
                "rotation": {"enabled": True},
            },
            strict=False,
        )
        expires = now + (timedelta(minutes=30) if due else timedelta(days=1 + number % 20))
        status = ApplicationStatus(current_key_id="k", expires_at=expires, last_updated_at=now)
        attention = expires - timedelta(hours=1)
        index_key = index_row_key(attention, app_id)
        rows.append(
            {
                "PartitionKey": PARTITION,
                "RowKey": f"{APP_PREFIX}{app_id}",
                "AppId": app_id,
                "DisplayName": config.display_name,
                "Config": json.dumps(config.to_json_dict(), separators=(",", ":")),
                "Status": json.dumps(status.to_json_dict(), separators=(",", ":")),
                "IndexKey": index_key,
                "CreatedAt": now,
                "UpdatedAt": now,
            }
        )
        rows.append({"PartitionKey": PARTITION, "RowKey": index_key, "AppId": app_id})
    return rows


def seed(connection_string: str, count: int, now: datetime) -> float:
    from azure.data.tables import TableServiceClient

    service = TableServiceClient.from_connection_string(connection_string)
    service.delete_table("applications")
    service.create_table("applications")
    table = service.get_table_client("applications")
    rows = sorted(_entities(count, now), key=lambda row: row["RowKey"])
    started = time.perf_counter()
    for start in range(0, len(rows), 100):  # a transaction holds at most 100 operations
        table.submit_transaction([("upsert", row) for row in rows[start : start + 100]])
    return time.perf_counter() - started


async def scan_once(connection_string: str, now: datetime) -> tuple[float, int, int]:
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
    try:
        started = time.perf_counter()
        report = await services.scanner.scan()
        elapsed = time.perf_counter() - started
        return elapsed, report.rows_read, sum(report.enqueued.values())
    finally:
        await services.close()


def import_cost(statement: str, runs: int = 7) -> tuple[float, float]:
    # VmHWM, not ru_maxrss: the latter can carry the parent's peak across fork/exec.
    code = (
        "import time; t = time.perf_counter(); "
        f"{statement}; "
        "e = time.perf_counter() - t; "
        "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
        "print(e, hwm)"
    )
    times, rss = [], []
    for _ in range(runs):
        output = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
        times.append(float(output[0]))
        rss.append(float(output[1]) / 1024)
    return statistics.median(times) * 1000, statistics.median(rss)


def main() -> None:
    from devhost.testing import AzuriteProcess

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    args = parser.parse_args()

    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}"
    )
    print(f"{'registered':>10} {'due':>5} {'rows read':>10} {'enqueued':>9} {'scan s':>8} {'seed s':>8}")
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as directory, AzuriteProcess(directory) as azurite:
        for size in args.sizes:
            seeded = seed(azurite.connection_string, size, now)
            elapsed, rows_read, enqueued = asyncio.run(scan_once(azurite.connection_string, now))
            print(
                f"{size:>10} {DUE:>5} {rows_read:>10} {enqueued:>9} {elapsed:>8.2f} {seeded:>8.1f}",
                flush=True,
            )

    base_ms, base_rss = import_cost("import azure.functions")
    app_ms, app_rss = import_cost("import function_app")
    print(
        f"import azure.functions: {base_ms:.0f} ms, {base_rss:.0f} MiB peak RSS (median of 7 fresh interpreters)"
    )
    print(f"import function_app:    {app_ms:.0f} ms, {app_rss:.0f} MiB peak RSS")
    heavy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, function_app; print(sorted(m for m in ('msgraph', 'azure.identity', "
            "'azure.keyvault.secrets', 'azure.data.tables', 'azure.storage.queue', "
            "'azure.communication.email', 'azure.monitor.opentelemetry') if m in sys.modules))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"heavy SDKs loaded by import function_app: {heavy}")


if __name__ == "__main__":
    main()
