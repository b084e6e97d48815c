"""``python -m devhost`` as a real process: preflight, banner, serving, clean shutdown."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

APP = """
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="hello/{name}", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"hello {req.route_params['name']}")


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer")
def yearly(timer: func.TimerRequest) -> None:
    pass
"""

PREFLIGHT = """
import os


def check() -> None:
    if os.environ.get("NEEDED_SETTING") != "yes":
        raise RuntimeError("NEEDED_SETTING must be 'yes'")
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "function_app.py").write_text(APP)
    (tmp_path / "preflight_mod.py").write_text(PREFLIGHT)
    (tmp_path / "host.json").write_text('{"version": "2.0", "extensions": {"http": {"routePrefix": "v1"}}}')
    return tmp_path


def environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ROTATOR_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def run(app_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devhost", "--app-dir", str(app_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(**env),
        cwd=app_dir,
    )


def test_preflight_failure_prints_the_message_and_exits_2(app_dir: Path) -> None:
    result = run(app_dir, "--preflight", "preflight_mod:check")
    assert result.returncode == 2
    assert "preflight failed: NEEDED_SETTING must be 'yes'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_preflight_spec_and_missing_module_fail_cleanly(app_dir: Path) -> None:
    assert run(app_dir, "--preflight", "nomodule").returncode == 2
    result = run(app_dir, "--module", "no_such_module", "--port", "0")
    assert result.returncode == 1
    assert "cannot load no_such_module:app" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def served(app_dir: Path) -> Iterator[tuple[subprocess.Popen[str], list[str], queue.Queue[str]]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devhost",
            "--app-dir",
            str(app_dir),
            "--port",
            "0",
            "--preflight",
            "preflight_mod:check",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(NEEDED_SETTING="yes", ROTATOR_LOCAL_FUNCTION_KEY="cli-test-key"),
        cwd=app_dir,
    )
    lines: queue.Queue[str] = queue.Queue()
    stderr: list[str] = []
    assert process.stdout is not None and process.stderr is not None
    out, err = process.stdout, process.stderr

    def read_stdout() -> None:
        for line in out:
            lines.put(line)

    def read_stderr() -> None:
        for line in err:
            stderr.append(line)

    threading.Thread(target=read_stdout, daemon=True).start()
    threading.Thread(target=read_stderr, daemon=True).start()
    try:
        yield process, stderr, lines
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_serves_the_app_and_stops_cleanly_on_sigterm(
    served: tuple[subprocess.Popen[str], list[str], queue.Queue[str]],
) -> None:
    process, stderr, lines = served
    banner: list[str] = []
    deadline = time.monotonic() + 30
    while not any("hello" in line for line in banner):
        assert time.monotonic() < deadline, f"no banner; stderr: {''.join(stderr)}"
        try:
            banner.append(lines.get(timeout=1))
        except queue.Empty:
            assert process.poll() is None, f"exited early: {''.join(stderr)}"
    while True:  # the rest of the table
        try:
            banner.append(lines.get(timeout=0.5))
        except queue.Empty:
            break
    text = "".join(banner)
    match = re.search(r"devhost: (http://127\.0\.0\.1:\d+)", text)
    assert match, text
    base_url = match.group(1)
    assert "function key: from $ROTATOR_LOCAL_FUNCTION_KEY" in text
    assert "cli-test-key" not in text  # a key the caller chose is not echoed
    assert re.search(r"hello\s+httpTrigger\s+\[GET\] hello/\{name\} \(function\)", text)
    assert f"{base_url}/v1/hello/{{name}}" in text  # routePrefix from host.json
    assert re.search(r"yearly\s+timerTrigger\s+0 0 0 1 1 \*", text)

    response = httpx.get(f"{base_url}/v1/hello/world", headers={"x-functions-key": "cli-test-key"})
    assert (response.status_code, response.text) == (200, "hello world")
    assert httpx.get(f"{base_url}/v1/hello/world").status_code == 401

    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    time.sleep(0.2)  # let the reader thread collect the last lines
    log = "".join(stderr)
    assert "Executed 'Functions.hello' (Succeeded" in log
    assert "host stopped" in log
    assert "Traceback" not in log
