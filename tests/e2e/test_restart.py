"""`make run` survives being killed (issue 12): the next start stops the orphaned Azurite (pid
file), keeps the simulator ports and CA, restores the simulators' state with
ROTATOR_LOCAL_KEEP_DATA=1, and the registrations it kept still rotate."""

from __future__ import annotations

import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from scripts.demo import DEMO_APP_ID, OPS_APP_ID
from tests.conftest import ROOT

KEY = "restart-test-key"


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports() -> dict[str, str]:
    while True:
        # Below Linux's ephemeral range (32768-60999 by default, ip_local_port_range): a port the
        # kernel hands another process's connection between this check and the bind failed a run.
        base = random.randrange(20000, 32700, 20)  # noqa: S311 - a port range, not a secret
        if all(_free(base + n) for n in range(14)):
            return {
                "ROTATOR_LOCAL_SIMULATOR_PORT": str(base),
                "ROTATOR_LOCAL_PORT": str(base + 10),
                "ROTATOR_LOCAL_AZURITE_BLOB_PORT": str(base + 11),
                "ROTATOR_LOCAL_AZURITE_QUEUE_PORT": str(base + 12),
                "ROTATOR_LOCAL_AZURITE_TABLE_PORT": str(base + 13),
            }


class Stack:
    """``python -m scripts.dev_stack`` with its output read line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scripts.dev_stack"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if text in line:
                return
        raise AssertionError(f"{text!r} not printed; output:\n{''.join(self.seen)[-4000:]}")


def _stop(*stacks: Stack | None) -> None:
    """Ctrl-C, as a user stops it (a clean stop removes the pid file)."""
    for stack in stacks:
        if stack is not None and stack.process.poll() is None:
            stack.process.send_signal(signal.SIGINT)
            try:
                stack.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                stack.process.kill()


def _rotate(api: httpx.Client, app_id: str) -> dict[str, Any]:
    before = api.get(f"/applications/{app_id}").json()["status"].get("currentKeyId")
    assert api.post(f"/applications/{app_id}/refresh").status_code == 202
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status: dict[str, Any] = api.get(f"/applications/{app_id}").json()["status"]
        if status.get("currentKeyId") not in (None, before) and status.get("inProgress") is None:
            if status.get("lastResult") != "succeeded":
                print(status.get("integrations"))  # shown when the test fails
            return status
        time.sleep(0.5)
    raise AssertionError(f"{app_id} did not rotate: {status}")


def test_the_stack_restarts_after_sigkill_with_its_data(tmp_path: Path) -> None:
    env = {
        **os.environ,
        **_ports(),
        "ROTATOR_LOCAL_DIR": str(tmp_path / "local"),
        "ROTATOR_LOCAL_KEEP_DATA": "1",
        "ROTATOR_LOCAL_FUNCTION_KEY": KEY,
        "ROTATOR_VERIFY_TIMEOUT_SECONDS": "30",
    }
    base = f"http://127.0.0.1:{env['ROTATOR_LOCAL_PORT']}/api"
    first = Stack(env)
    second: Stack | None = None
    try:
        first.wait_for("Ctrl-C stops everything.")
        ca_before = (tmp_path / "local" / "simulators" / "ca.pem").read_bytes()
        with httpx.Client(base_url=base, headers={"x-functions-key": KEY}, timeout=30) as api:
            rotated = _rotate(api, DEMO_APP_ID)
            assert rotated["lastResult"] == "succeeded"
        time.sleep(3)  # a snapshot of the simulators is written every 2 s
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)

        second = Stack(env)
        second.wait_for("Stopped azurite")  # the orphan held the ports
        second.wait_for("Restored the last run")
        second.wait_for("Ctrl-C stops everything.")
        assert (tmp_path / "local" / "simulators" / "ca.pem").read_bytes() == ca_before
        with httpx.Client(base_url=base, headers={"x-functions-key": KEY}, timeout=30) as api:
            kept = api.get(f"/applications/{DEMO_APP_ID}")
            assert kept.status_code == 200
            assert kept.json()["status"]["currentKeyId"] == rotated["currentKeyId"]
            again = _rotate(api, DEMO_APP_ID)
            assert again["lastResult"] == "succeeded" and again["currentKeyId"] != rotated["currentKeyId"]
            assert _rotate(api, OPS_APP_ID)["lastResult"] == "succeeded"
    finally:
        _stop(first, second)
        # Nothing is left running: the pid file is gone with a clean stop.
        assert not (tmp_path / "local" / "stack.json").exists()


def test_a_rotation_in_flight_when_the_stack_is_killed_finishes_after_the_restart(tmp_path: Path) -> None:
    """Whole-stack crash recovery: killed with SIGKILL while a rotation waits out Entra's
    propagation delay, the restarted stack (ROTATOR_LOCAL_KEEP_DATA=1) takes the rotation over
    under its own id, and it ends with exactly one working rotator-made credential."""
    import json
    import ssl

    env = {
        **os.environ,
        **_ports(),
        "ROTATOR_LOCAL_DIR": str(tmp_path / "local"),
        "ROTATOR_LOCAL_KEEP_DATA": "1",
        "ROTATOR_LOCAL_FUNCTION_KEY": KEY,
        "ROTATOR_VERIFY_TIMEOUT_SECONDS": "120",
    }
    base = f"http://127.0.0.1:{env['ROTATOR_LOCAL_PORT']}/api"
    endpoints_file = tmp_path / "local" / "simulators" / "endpoints.json"
    first = Stack(env)
    second: Stack | None = None
    try:
        first.wait_for("Ctrl-C stops everything.")
        endpoints = json.loads(endpoints_file.read_text())
        trust = ssl.create_default_context(cafile=endpoints["ca_pem"])
        entra = endpoints["servers"]["entra"]
        with httpx.Client(verify=trust, timeout=10) as sims:
            sims.post(f"{entra}/_sim/switches", json={"propagation_delay_seconds": 60}).raise_for_status()
        with httpx.Client(base_url=base, headers={"x-functions-key": KEY}, timeout=30) as api:
            accepted = api.post(f"/applications/{DEMO_APP_ID}/refresh").json()
            rotation_id = accepted["rotationId"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                events = [e["event"] for e in api.get(f"/applications/{DEMO_APP_ID}/log").json()["items"]]
                if "secret.staged" in events:
                    break
                time.sleep(0.5)
            assert "secret.staged" in events
        # The new credential is in a simulator snapshot (every 2 s), and Azurite saved the claim to
        # disk (every 5 s; the restarted stack also stops the old Azurite with SIGTERM, which saves).
        time.sleep(6)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)

        second = Stack(env)
        # The demo rotation under test, and on a loaded machine maybe also the other demo
        # application's first rotation (started with the stack) if it had not finished yet.
        second.wait_for("rotation(s) the killed run left in flight")
        second.wait_for("Ctrl-C stops everything.")
        with httpx.Client(base_url=base, headers={"x-functions-key": KEY}, timeout=30) as api:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                status = api.get(f"/applications/{DEMO_APP_ID}").json()["status"]
                if status.get("inProgress") is None and status.get("lastRotationId") == rotation_id:
                    break
                time.sleep(0.5)
            assert status.get("lastRotationId") == rotation_id and status["lastResult"] in (
                "succeeded",
                "degraded",
            )
            current = status["currentKeyId"]
        endpoints = json.loads(endpoints_file.read_text())
        with httpx.Client(verify=ssl.create_default_context(cafile=endpoints["ca_pem"]), timeout=10) as sims:
            state = sims.get(f"{endpoints['servers']['entra']}/_sim/state").json()
        [app] = [a for a in state["applications"] if a["appId"] == DEMO_APP_ID]
        managed = [
            p for p in app["passwordCredentials"] if (p["displayName"] or "").startswith("secret-rotator:")
        ]
        assert [p["keyId"] for p in managed] == [current]
    finally:
        _stop(first, second)
