"""``make run`` with ROTATOR_API_AUTH=entra: the banner's token command works against the simulated
Entra ID, the demo applications are registered with that token, and a call without one is a
problem+json 401."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import httpx

from scripts.demo import DEMO_APP_ID
from tests.e2e.test_restart import Stack, _ports, _stop

AUDIENCE = "5d1f7a6e-1111-4a2b-9c3d-00000000a91e"


def test_the_local_stack_serves_entra_tokens_and_refuses_calls_without_one(tmp_path: Path) -> None:
    env = {
        **os.environ,
        **_ports(),
        "ROTATOR_LOCAL_DIR": str(tmp_path / "local"),
        "ROTATOR_API_AUTH": "entra",
        "ROTATOR_API_AUDIENCE": AUDIENCE,
    }
    base = f"http://127.0.0.1:{env['ROTATOR_LOCAL_PORT']}/api"
    stack = Stack(env)
    try:
        stack.wait_for("Ctrl-C stops everything.")
        banner = "".join(stack.seen)
        [command] = re.findall(r"TOKEN=\$\((curl [^|]+)\|", banner)
        # The banner's own command, as a user would paste it.
        token_json = subprocess.run(
            shlex.split(command), capture_output=True, text=True, check=True, timeout=30
        )
        token = json.loads(token_json.stdout)["access_token"]
        with httpx.Client(base_url=base, timeout=30) as api:
            listed = api.get("/applications", headers={"Authorization": f"Bearer {token}"})
            assert listed.status_code == 200
            assert DEMO_APP_ID in [a["appId"] for a in listed.json()["items"]]
            refused = api.get("/applications")
            assert refused.status_code == 401
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    finally:
        _stop(stack)
