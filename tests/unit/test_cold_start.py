"""Cold start: importing the app must not load the heavy SDKs (they load on first use)."""

import json
import subprocess
import sys

from tests.conftest import ROOT

HEAVY = (
    "msgraph",
    "kiota_http",
    "azure.identity",
    "azure.keyvault.secrets",
    "azure.data.tables",
    "azure.storage.queue",
    "azure.communication.email",
    "azure.monitor.opentelemetry",
    "httpx",
    # Validation models: the first request or job builds them (issue 11: import cost ≤ 1.3× the
    # Functions library's own).
    "pydantic",
    "shared.domain.models",
)


def test_importing_function_app_loads_no_heavy_sdk() -> None:
    code = f"import json, sys, function_app; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(loaded.stdout) == []
