"""The stack, the CLI and the extension point for more simulators."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from simulators import (
    SimRequest,
    SimResponse,
    SimulatorServer,
    SimulatorStack,
    TokenIssuer,
    json_response,
)
from simulators.entra import EntraSimulator
from simulators.tls import create_tls_bundle

ROOT = Path(__file__).resolve().parents[2]

SEED = {
    "applications": [
        {
            "displayName": "demo",
            "appId": "11111111-1111-1111-1111-111111111111",
            "id": "22222222-2222-2222-2222-222222222222",
            "passwordCredentials": [{"displayName": "old", "secretText": "demo-secret"}],
        }
    ],
    "keyvaults": {
        "demo": {
            "secrets": {"demo-client-secret": "demo-secret", "other": {"value": "x", "tags": {"a": "b"}}}
        }
    },
    "switches": {"entra": {"propagation_delay_seconds": 2}},
}


def test_endpoints_and_seed(tmp_path: Path) -> None:
    with SimulatorStack(tmp_path, keyvaults=["rotator", "demo"]) as stack:
        stack.seed(SEED)
        written = json.loads(stack.write_endpoints().read_text())
        endpoints = stack.endpoints()
        assert written == endpoints
        assert endpoints["graph_url"] == stack.entra.url and endpoints["graph_url"].startswith(
            "https://127.0.0.1:"
        )
        assert endpoints["login_authority"] == stack.entra.url
        assert endpoints["msi_endpoint"] == f"{stack.msi.url}/msi/token"
        assert endpoints["msi_header"] == stack.msi.identity_header
        assert set(endpoints["keyvaults"]) == {"rotator", "demo"}
        assert Path(endpoints["ca_pem"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
        assert endpoints["app_settings"]["ROTATOR_VAULT_URL"] == stack.keyvaults["rotator"].url
        assert endpoints["app_settings"]["IDENTITY_HEADER"] == stack.msi.identity_header
        assert stack.entra.get_application("11111111-1111-1111-1111-111111111111").display_name == "demo"
        assert stack.keyvaults["demo"].get_secret("other").tags == {"a": "b"}
        assert stack.entra.propagation_delay_seconds == 2


class EchoSimulator(SimulatorServer):
    """What a later simulator (DevOps, Vercel, ...) looks like: routes + the shared issuer."""

    kind = "echo"

    def __init__(self, stack: SimulatorStack, name: str = "echo") -> None:
        super().__init__(name=name, ssl_context=stack.ssl_context, clock=stack.clock)
        self.issuer = stack.issuer  # would validate bearer tokens in authenticate()
        self.route("GET", r"/echo/(?P<word>\w+)", self._echo)

    def _echo(self, request: SimRequest) -> SimResponse:
        return json_response(200, {"word": request.params["word"]})


def test_more_simulators_plug_into_the_stack(tmp_path: Path) -> None:
    with SimulatorStack(tmp_path, keyvaults=[]) as stack:
        echo = stack.add(EchoSimulator(stack))
        with httpx.Client(verify=stack.tls.client_context()) as http:
            assert http.get(f"{echo.url}/echo/hello").json() == {"word": "hello"}
            echo.fail_next(1, 503, retry_after=2)
            failed = http.get(f"{echo.url}/echo/again")
        assert failed.status_code == 503 and failed.headers["Retry-After"] == "2"
        assert stack.endpoints()["echo_url"] == echo.url
        assert stack.endpoints()["servers"]["echo"] == echo.url
    assert not echo.running


def test_stop_closes_keep_alive_connections_and_frees_the_port(tmp_path: Path) -> None:
    tls = create_tls_bundle(tmp_path)
    first = EntraSimulator(issuer=TokenIssuer(), ssl_context=tls.server_context()).start()
    port = first.port
    with httpx.Client(verify=tls.client_context()) as http:
        assert http.get(f"{first.url}/_sim/state").status_code == 200  # leaves a pooled connection
        started = time.monotonic()
        first.stop()
        assert time.monotonic() - started < 2
        with EntraSimulator(issuer=TokenIssuer(), ssl_context=tls.server_context(), port=port) as second:
            assert http.get(f"{second.url}/_sim/state").status_code == 200


def test_cli_writes_endpoints_and_stops_on_sigterm(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(SEED))
    state_dir = tmp_path / "state"
    endpoints_file = state_dir / "endpoints.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators", "--state-dir", str(state_dir), "--keyvault", "rotator"]
        + ["--keyvault", "demo", "--seed", str(seed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 20
        while not endpoints_file.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "endpoints.json never appeared"
            time.sleep(0.05)
        endpoints = json.loads(endpoints_file.read_text())
        with httpx.Client(verify=ssl.create_default_context(cafile=endpoints["ca_pem"])) as http:
            state = http.get(f"{endpoints['graph_url']}/_sim/state").json()
            vault = http.get(f"{endpoints['keyvaults']['demo']}/_sim/state").json()
        assert [app["displayName"] for app in state["applications"]] == ["demo"]
        assert vault["secrets"]["demo-client-secret"][0]["value"] == "demo-secret"
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert "graph_url" in stdout and "keyvault:demo" in stdout
    assert not endpoints_file.exists()
