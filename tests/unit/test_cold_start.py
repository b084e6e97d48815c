"""Cold start: importing the app must not load the heavy SDKs (they load on first use)."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_the_package_hook_writes_bytecode_python_will_use(tmp_path: Path) -> None:
    """The deployment package is mounted read-only, so the app's bytecode is written before
    packaging (azd ``prepackage``): hash-checked (PEP 552), so Python uses it whatever the package's
    file times, and only while the source is the one it was compiled from."""
    from scripts.compile_app import SOURCES, compile_app

    azure = Path(ROOT, "azure.yaml").read_text()
    assert "./scripts/compile_app.py" in azure.split("prepackage:", 1)[1].split("postpackage:", 1)[0]
    ignored = Path(ROOT, ".funcignore").read_text().split()
    assert not {"__pycache__", "*.pyc", "__pycache__/", "**/__pycache__"} & set(ignored)

    for name in SOURCES:
        source = Path(ROOT, name)
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    assert compile_app(tmp_path)
    sources = [tmp_path / "function_app.py", *sorted((tmp_path / "shared").rglob("*.py"))]
    for path in sources:
        cached = Path(importlib.util.cache_from_source(str(path)))
        header = cached.read_bytes()[:16]
        assert header[:4] == importlib.util.MAGIC_NUMBER, path
        assert int.from_bytes(header[4:8], "little") == 0b11, path  # hash-based, checked
        assert header[8:16] == importlib.util.source_hash(path.read_bytes()), path

    # Python imports the app from that bytecode: allowed to write bytecode, it rewrites none (a file
    # it found stale or unusable would be compiled again and rewritten).
    before = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*.pyc")}
    subprocess.run(
        [sys.executable, "-c", "import function_app"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""},
        check=True,
        capture_output=True,
    )
    after = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*.pyc")}
    assert after == before
