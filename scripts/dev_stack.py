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
LOCAL = Path(os.environ.get("ROTATOR_LOCAL_DIR") or ROOT / ".local")
# Simulator ports, pinned so a restarted stack keeps the URLs its registrations hold: the base
# (ROTATOR_LOCAL_SIMULATOR_PORT, 0 for free ports) plus these offsets.
SIMULATOR_OFFSETS = {
    "entra": 0,
    "msi": 1,
    "rotator": 2,
    "demo": 3,
    "devops": 4,
    "vercel": 5,
    "arm": 6,
    "webhook": 7,
    "acs": 8,
}
SNAPSHOT_SECONDS = 2.0


def _print(line: str = "") -> None:
    print(line, flush=True)


def simulator_ports(base: int) -> dict[str, int]:
    return {name: (base + offset if base else 0) for name, offset in SIMULATOR_OFFSETS.items()}


def build_stack(state_dir: Path, ports: dict[str, int], *, keep: bool) -> Any:
    from scripts.demo import tune_simulators
    from simulators.stack import SimulatorStack

    stack = SimulatorStack(
        state_dir,
        keyvaults=("rotator", "demo"),
        entra_port=ports["entra"],
        msi_port=ports["msi"],
        keyvault_ports={"rotator": ports["rotator"], "demo": ports["demo"]},
        extra_ports={name: ports[name] for name in ("devops", "vercel", "arm", "webhook", "acs")},
        reuse_tls=keep,
    )
    tune_simulators(stack)
    return stack


def stop_leftovers(state_file: Path) -> list[str]:
    """Stop what a previous run that was killed left running (its Azurite, in its own session, or
    the old stack process), from the pid file; what was stopped, in words."""
    import signal as signals
    import time

    if not state_file.exists():
        return []
    try:
        recorded = json.loads(state_file.read_text())
    except ValueError:
        recorded = {}
    stopped = []
    for role, pid in (recorded.get("pids") or {}).items():
        if not isinstance(pid, int) or pid == os.getpid():
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone
        if ("azurite" if role == "azurite" else "scripts.dev_stack") not in command:
            continue  # the pid was reused by something else
        os.kill(pid, signals.SIGTERM)
        # Azurite writes its tables to disk on SIGTERM (otherwise every 5 s): give it time, even on a
        # busy machine, before killing it and losing the last writes.
        for _ in range(300 if role == "azurite" else 50):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signals.SIGKILL)
        stopped.append(f"{role} (pid {pid})")
    state_file.unlink(missing_ok=True)
    return stopped


def prepare_local(state_file: Path, *, keep: bool) -> list[str]:
    """Stop a previous run's leftovers, then start ``.local/`` afresh unless its data is kept."""
    stopped = stop_leftovers(state_file)
    if not keep:
        shutil.rmtree(LOCAL, ignore_errors=True)
    LOCAL.mkdir(parents=True, exist_ok=True)
    return stopped


def taken_ports(ports: dict[str, int]) -> list[str]:
    """The ports (by setting) another process holds: a clear message beats EADDRINUSE later."""
    import socket

    taken = []
    for name, number in ports.items():
        if not number:
            continue
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", number))
            except OSError:
                taken.append(f"{number} ({name})")
    return taken


async def run() -> int:
    from devhost import DevHost
    from devhost.testing import AzuriteProcess
    from scripts.demo import (
        DEMO_APP_ID,
        DEMO_DISPLAY_NAME,
        OPS_APP_ID,
        OPS_DISPLAY_NAME,
        register_demo,
        register_operations_demo,
    )
    from scripts.local_settings import LocalSettingsError, layer, read_local_settings
    from shared.config import load_settings
    from shared.errors import ConfigurationError
    from shared.services import Services, set_services

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    keep = os.environ.get("ROTATOR_LOCAL_KEEP_DATA") == "1"
    state_file = LOCAL / "stack.json"
    # A pid file left behind means the last run was killed: its rotations were cut off mid-step.
    crashed = state_file.exists()
    for leftover in prepare_local(state_file, keep=keep):
        _print(f"Stopped {leftover}, left running by a previous run that did not stop cleanly.")

    port = int(os.environ.get("ROTATOR_LOCAL_PORT", "7071"))
    function_key = os.environ.get("ROTATOR_LOCAL_FUNCTION_KEY") or None
    azurite_ports = {
        "ROTATOR_LOCAL_AZURITE_BLOB_PORT": int(os.environ.get("ROTATOR_LOCAL_AZURITE_BLOB_PORT", "10000")),
        "ROTATOR_LOCAL_AZURITE_QUEUE_PORT": int(os.environ.get("ROTATOR_LOCAL_AZURITE_QUEUE_PORT", "10001")),
        "ROTATOR_LOCAL_AZURITE_TABLE_PORT": int(os.environ.get("ROTATOR_LOCAL_AZURITE_TABLE_PORT", "10002")),
    }
    sim_ports = simulator_ports(int(os.environ.get("ROTATOR_LOCAL_SIMULATOR_PORT", "7101")))
    taken = taken_ports(
        {"ROTATOR_LOCAL_PORT": port, **azurite_ports}
        | {f"ROTATOR_LOCAL_SIMULATOR_PORT+{SIMULATOR_OFFSETS[n]} ({n})": p for n, p in sim_ports.items()}
    )
    if taken:
        _print(
            "Ports in use by another process: " + ", ".join(taken) + ". Stop it, or choose other ports with "
            "the settings named (ROTATOR_LOCAL_SIMULATOR_PORT=0 picks free simulator ports)."
        )
        return 2

    with contextlib.ExitStack() as stop_later:
        azurite = stop_later.enter_context(
            AzuriteProcess(
                LOCAL / "azurite",
                blob_port=azurite_ports["ROTATOR_LOCAL_AZURITE_BLOB_PORT"],
                queue_port=azurite_ports["ROTATOR_LOCAL_AZURITE_QUEUE_PORT"],
                table_port=azurite_ports["ROTATOR_LOCAL_AZURITE_TABLE_PORT"],
            )
        )
        state_file.write_text(json.dumps({"pids": {"stack": os.getpid(), "azurite": azurite.pid}}))
        stop_later.callback(lambda: state_file.unlink(missing_ok=True))
        stack = stop_later.enter_context(build_stack(LOCAL / "simulators", sim_ports, keep=keep))
        stack.write_endpoints()
        snapshot_file = LOCAL / "simulators" / "snapshot.json"
        restored = keep and snapshot_file.exists()
        if restored:
            stack.restore(json.loads(snapshot_file.read_text()))

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
            auth_headers = {"x-functions-key": key}
            auth_curl = f"-H 'x-functions-key: {key}'"
            token_curl = None
            if settings.api_auth == "entra":
                # The simulated Entra ID issues the API's tokens; a "Local portal" app holds the role.
                from scripts.demo import local_portal, portal_token

                audience = str(settings.api_audience)
                portal_id, token_curl = local_portal(stack, audience, settings.api_role)
                token = await asyncio.to_thread(portal_token, stack, audience, portal_id)
                auth_headers = {"Authorization": f"Bearer {token}"}
                auth_curl = '-H "Authorization: Bearer $TOKEN"'
            if restored:
                demo = {"displayName": DEMO_DISPLAY_NAME, "watch": []}
                operations = {"displayName": OPS_DISPLAY_NAME, "watch": []}
                _print("Restored the last run: registrations from Azurite, simulator state from .local/.")
                if crashed:
                    resumed = await release_claims(services)
                    if resumed:
                        # Taken over at once, under their own rotation ids, by the scan.
                        await host.fire_timer("scan_due_rotations")
                        _print(f"Resuming {resumed} rotation(s) the killed run left in flight.")
            else:
                demo = await register_demo(base, auth_headers, stack)
                operations = await register_operations_demo(base, auth_headers, stack)
            snapshots = asyncio.create_task(_keep_snapshots(stack, snapshot_file))
            _print()
            _print("Entra ID secret rotator is running locally.")
            _print(f"  API:           {base}/api   (OpenAPI: {base}/api/openapi.json)")
            if token_curl is None:
                _print(f"  Function key:  {key}")
            else:
                _print(
                    "  Entra ID:      ROTATOR_API_AUTH=entra; a token (valid an hour) for the local portal:"
                )
                _print(
                    f"    TOKEN=$({token_curl} | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')"
                )
            _print(
                f"  Azurite:       tables {azurite.host}:{azurite.table_port}, queues {azurite.host}:{azurite.queue_port}"
                " (account devstoreaccount1, the well-known development key)"
            )
            _print(f"  Simulators:    {LOCAL / 'simulators' / 'endpoints.json'}")
            _print(f"  Settings used: {LOCAL / 'local.settings.json'}")
            _print()
            _print(f"Demo application {demo['displayName']} ({DEMO_APP_ID}) is registered. Try:")
            _print(f"  curl -s {auth_curl} {base}/api/applications")
            _print(f"  curl -s -X POST {auth_curl} {base}/api/applications/{DEMO_APP_ID}/refresh")
            _print(f"  curl -s {auth_curl} {base}/api/applications/{DEMO_APP_ID}/log")
            _print(f"  curl -s {auth_curl} {base}/api/applications/{DEMO_APP_ID}/plan")
            for line in demo.get("watch", []):
                _print(f"  {line}")
            _print()
            _print(
                f"Demo application {operations['displayName']} ({OPS_APP_ID}) delivers to the other kinds: "
                "a Logic App connection, an App Service setting, an Automation runbook and a webhook. Try:"
            )
            _print(f"  curl -s -X POST {auth_curl} {base}/api/applications/{OPS_APP_ID}/refresh")
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
            if "snapshots" in locals():
                snapshots.cancel()
            _write_snapshot(stack, snapshot_file)
            await host.stop()
            await services.close()
            set_services(None)
    return 0


async def release_claims(services: Any) -> int:
    """After a killed run, every claim in the local table belongs to the dead host (the local
    stack is one host): expire them so the scan takes the rotations over now, rather than after
    the claim timeout as it would for one dead instance among several in Azure."""
    from shared.errors import ConflictError

    now = services.clock()
    released, token = 0, None
    while True:
        page = await services.applications.list_page(100, token)
        for stored in page.items:
            claim = stored.status.in_progress
            if claim is None or claim.expires_at <= now:
                continue
            status = stored.status.model_copy(
                update={"in_progress": claim.model_copy(update={"expires_at": now})}
            )
            try:
                await services.applications.save(stored, stored.config, status, now)
                released += 1
            except ConflictError:
                continue
        token = page.continuation_token
        if not token:
            return released


def _write_snapshot(stack: Any, path: Path) -> None:
    # It holds the simulated applications' secret texts: readable by this user only.
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(stack.snapshot()))
    os.replace(temporary, path)


async def _keep_snapshots(stack: Any, path: Path) -> None:
    """The simulators live in this process: their state is written every few seconds, so a run
    killed without warning restarts (ROTATOR_LOCAL_KEEP_DATA=1) with the same applications,
    secrets and destinations its registrations point at."""
    while True:
        await asyncio.to_thread(_write_snapshot, stack, path)
        await asyncio.sleep(SNAPSHOT_SECONDS)


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
