"""The API against its own OpenAPI document, fuzzed by schemathesis through the local host."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

from tests.api.conftest import FUNCTION_KEY
from tests.conftest import ROOT

# 10 examples per operation and phase is about 1,100 requests; a fixed seed keeps CI deterministic.
# ROTATOR_SCHEMATHESIS_EXAMPLES and ROTATOR_SCHEMATHESIS_SEED explore further.
EXAMPLES = int(os.environ.get("ROTATOR_SCHEMATHESIS_EXAMPLES", "10"))
SEED = os.environ.get("ROTATOR_SCHEMATHESIS_SEED", "20261201")


def test_every_operation_answers_by_its_contract(app_host: Any, api: Any) -> None:
    assert api.put("/groups/fuzz-group", json={"displayName": "Fuzzing"}).status_code in (200, 201)
    base = str(app_host.base_url).rstrip("/")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(ROOT / "tests" / "api" / "schemathesis.toml"),
            "run",
            f"{base}/api/openapi.json",
            # Every check runs by default; schemathesis.toml turns off the ones it names, per
            # operation too (a --checks option would override those: CLI options come first).
            "--seed",
            SEED,
            "--header",
            f"x-functions-key: {FUNCTION_KEY}",
            "--max-examples",
            str(EXAMPLES),
            "--no-color",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    print(result.stdout[-20000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    generated = re.search(r"(\d+) generated", result.stdout)
    assert generated is not None and int(generated.group(1)) >= 1000, result.stdout[-2000:]
