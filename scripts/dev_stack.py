"""`make run`: the whole app on one machine, no Azure account, no Core Tools.

Starts Azurite (tables + queues), the simulated Azure endpoints (Entra ID + Graph, managed
identity, Key Vaults, and the integration destinations), creates the tables and queues, starts
the local Functions host with ``function_app.py``, registers a demo application and prints how to
use it. Ctrl-C stops everything. State lives under ``.local/`` and starts fresh each run (the
simulators keep theirs in memory, so old registrations would point at applications that no
longer exist); set ``ROTATOR_LOCAL_KEEP_DATA=1`` to keep Azurite's data anyway. Settings are
layered (``scripts/local_settings.py``): the stack's defaults and endpoints, then a
``local.settings.json`` of yours, then the environment, all validated as in Azure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local"


def _print(line: str = "") -> None:
    print(line, flush=True)


def build_stack(state_dir: Path) -> Any:
    from scripts.demo import tune_simulators
    from simulators.stack import SimulatorStack

    stack = SimulatorStack(state_dir, keyvaults=("rotator", "demo"))
    tune_simulators(stack)
    return stack


async def run() -> int:
    from devhost import DevHost
    from devhost.testing import AzuriteProcess
    from scripts.demo import DEMO_APP_ID, OPS_APP_ID, register_demo, register_operations_demo
    from scripts.local_settings import LocalSettingsError, layer, read_local_settings
    from shared.config import load_settings
    from shared.errors import ConfigurationError
    from shared.services import Services, set_services

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if os.environ.get("ROTATOR_LOCAL_KEEP_DATA") != "1":
        shutil.rmtree(LOCAL, ignore_errors=True)
    LOCAL.mkdir(exist_ok=True)

    port = int(os.environ.get("ROTATOR_LOCAL_PORT", "7071"))
    function_key = os.environ.get("ROTATOR_LOCAL_FUNCTION_KEY") or None

    with contextlib.ExitStack() as stop_later:
        azurite = stop_later.enter_context(
            AzuriteProcess(
                LOCAL / "azurite",
                blob_port=int(os.environ.get("ROTATOR_LOCAL_AZURITE_BLOB_PORT", "10000")),
                queue_port=int(os.environ.get("ROTATOR_LOCAL_AZURITE_QUEUE_PORT", "10001")),
                table_port=int(os.environ.get("ROTATOR_LOCAL_AZURITE_TABLE_PORT", "10002")),
            )
        )
        stack = stop_later.enter_context(build_stack(LOCAL / "simulators"))
        stack.write_endpoints()

        try:
            user_file = read_local_settings(ROOT / "local.settings.json")
        except LocalSettingsError as error:
            _print(f"Configuration error: {error}")
            return 2
        stack_values = {"AzureWebJobsStorage": azurite.connection_string, **stack.app_settings()}
        layered = layer(stack_values, user_file, os.environ)
        env = layered.values
        try:
            settings = load_settings(env)
        except ConfigurationError as error:
            _print(f"Configuration error: {error.message}")
            return 2
        os.environ.update(env)
        overridden = sorted(
            name for name, source in layered.sources.items() if source != "stack" and name in stack_values
        )
        if overridden:
            _print(f"Your settings replace the local stack's for: {', '.join(overridden)}")
        services = Services(settings)
        set_services(services)
        await services.ensure_storage()
        (LOCAL / "local.settings.json").write_text(
            json.dumps(
                {"IsEncrypted": False, "Values": {"FUNCTIONS_WORKER_RUNTIME": "python", **env}}, indent=2
            )
        )

        host = DevHost(
            __import__("function_app").app,
            port=port,
            function_key=function_key,
            host_json_path=ROOT / "host.json",
            settings={"AzureWebJobsStorage": azurite.connection_string},
            queue_poll_seconds=1.0,
        )
        await host.start()
        try:
            base = host.base_url.rstrip("/")
            key = host.function_key
            demo = await register_demo(base, key, stack)
            operations = await register_operations_demo(base, key, stack)
            _print()
            _print("Entra ID secret rotator is running locally.")
            _print(f"  API:           {base}/api   (OpenAPI: {base}/api/openapi.json)")
            _print(f"  Function key:  {key}")
            _print(
                f"  Azurite:       tables {azurite.host}:{azurite.table_port}, queues {azurite.host}:{azurite.queue_port}"
                " (account devstoreaccount1, the well-known development key)"
            )
            _print(f"  Simulators:    {LOCAL / 'simulators' / 'endpoints.json'}")
            _print(f"  Settings used: {LOCAL / 'local.settings.json'}")
            _print()
            _print(f"Demo application {demo['displayName']} ({DEMO_APP_ID}) is registered. Try:")
            _print(f"  curl -s -H 'x-functions-key: {key}' {base}/api/applications")
            _print(
                f"  curl -s -X POST -H 'x-functions-key: {key}' {base}/api/applications/{DEMO_APP_ID}/refresh"
            )
            _print(f"  curl -s -H 'x-functions-key: {key}' {base}/api/applications/{DEMO_APP_ID}/log")
            _print(f"  curl -s -H 'x-functions-key: {key}' {base}/api/applications/{DEMO_APP_ID}/plan")
            for line in demo.get("watch", []):
                _print(f"  {line}")
            _print()
            _print(
                f"Demo application {operations['displayName']} ({OPS_APP_ID}) delivers to the other kinds: "
                "a Logic App connection, an App Service setting, an Automation runbook and a webhook. Try:"
            )
            _print(
                f"  curl -s -X POST -H 'x-functions-key: {key}' {base}/api/applications/{OPS_APP_ID}/refresh"
            )
            for line in operations.get("watch", []):
                _print(f"  {line}")
            _print()
            _print("The timer scans every 15 minutes (at :00, :15, :30, :45). To scan now:")
            _print(
                f"  curl -s -X POST -H 'x-functions-key: {key}' -H 'Content-Type: application/json' "
                f'-d \'{{"input": ""}}\' {base}/admin/functions/scan_due_rotations'
            )
            _print("Ctrl-C stops everything.")
            await _wait_for_signal()
        finally:
            _print("Stopping...")
            await host.stop()
            await services.close()
            set_services(None)
    return 0


async def _wait_for_signal() -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()


def main() -> None:
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()
