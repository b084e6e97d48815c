"""The simulators in their own process, for benchmarks: measured on the local host, the rotator
must not share its interpreter (and GIL) with the services it calls, as it does not in Azure."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

ROOT = Path(__file__).resolve().parent.parent


class SimulatorProcess:
    """``python -m simulators`` with a seed document; ``endpoints`` is its endpoints.json."""

    def __init__(
        self, state_dir: Path, seed: dict[str, Any], *, keyvaults: tuple[str, ...] = ("rotator",)
    ) -> None:
        self._state_dir = state_dir
        self._seed = seed
        self._keyvaults = keyvaults
        self._process: subprocess.Popen[bytes] | None = None
        self.endpoints: dict[str, Any] = {}

    def __enter__(self) -> Self:
        self._state_dir.mkdir(parents=True, exist_ok=True)
        seed_file = self._state_dir / "seed.json"
        seed_file.write_text(json.dumps(self._seed))
        command = [
            sys.executable,
            "-m",
            "simulators",
            "--state-dir",
            str(self._state_dir),
            "--seed",
            str(seed_file),
        ]
        for vault in self._keyvaults:
            command += ["--keyvault", vault]
        self._process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
        endpoints = self._state_dir / "endpoints.json"
        deadline = time.monotonic() + 120
        while not endpoints.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the simulators did not start")
            time.sleep(0.1)
        self.endpoints = json.loads(endpoints.read_text())
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()

    @property
    def app_settings(self) -> dict[str, str]:
        return dict(self.endpoints["app_settings"])

    def environment(self) -> dict[str, str]:
        """The managed-identity variables (IDENTITY_ENDPOINT, IDENTITY_HEADER) for the rotator."""
        return {name: value for name, value in self.app_settings.items() if name.startswith("IDENTITY_")}

    def set_switches(self, **switches: Any) -> None:
        """The same switches on every server (``POST /_sim/switches``)."""
        import ssl

        trust = ssl.create_default_context(cafile=self.endpoints["ca_pem"])
        with httpx.Client(verify=trust, timeout=30) as client:
            for url in self.endpoints["servers"].values():
                client.post(f"{url}/_sim/switches", json=switches).raise_for_status()


def apply_environment(process: SimulatorProcess) -> None:
    os.environ.update(process.environment())
