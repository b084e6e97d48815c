"""The function metadata the Python worker sends the Functions host, checked against the host's
rules (issue 12). The real worker is not installable from the registry (its PyPI releases stop in
2020), so this builds the same metadata from ``azure.functions``: ``FunctionApp.get_functions()``
and each function's raw bindings, which the worker's indexing passes on unchanged.

Rules (learn.microsoft.com "Azure Functions triggers and bindings", "Azure Functions HTTP
trigger", "Timer trigger", "Azure Queue storage trigger", and the host's function-name rule):
function names start with a letter and hold letters, digits, '_' or '-' (up to 127), unique
ignoring case; binding names are identifiers, unique within a function; exactly one trigger;
HTTP auth levels anonymous/function/admin; no two HTTP functions share a route and a method; no
route under the host's reserved ``admin`` or ``runtime`` paths; timer schedules are six-field
NCRONTAB expressions; queue names are 3-63 lowercase letters, digits and single hyphens; a queue
connection names a setting the app has.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

FUNCTION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,126}$")
BINDING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$|^\$return$")
QUEUE_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
AUTH_LEVELS = {"ANONYMOUS", "FUNCTION", "ADMIN"}
RESERVED_PREFIXES = ("admin", "runtime")


METADATA_PROBE = """
import json
import function_app

functions = []
for function in function_app.app.get_functions():
    bindings = [json.loads(b) if isinstance(b, str) else dict(b) for b in function.get_raw_bindings()]
    functions.append({"name": function.get_function_name(), "bindings": bindings})
print(json.dumps(functions))
"""


@functools.cache
def metadata() -> list[dict[str, Any]]:
    """What the worker's indexing sends, read in a fresh interpreter: ``get_functions()`` indexes
    the blueprints anew on each call, which then clash with an earlier call in this process."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", METADATA_PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    functions: list[dict[str, Any]] = json.loads(result.stdout.strip().splitlines()[-1])
    return functions


def route_prefix() -> str:
    host = json.loads(Path(ROOT, "host.json").read_text())
    return str(host.get("extensions", {}).get("http", {}).get("routePrefix", "api")).strip("/")


def test_function_and_binding_names_follow_the_host_rules() -> None:
    functions = metadata()
    assert len(functions) == 27  # 25 HTTP routes, the timer and the queue worker
    names = [f["name"] for f in functions]
    assert all(FUNCTION_NAME.match(name) for name in names), names
    assert len({name.lower() for name in names}) == len(names)
    for function in functions:
        binding_names = [b["name"] for b in function["bindings"]]
        assert all(BINDING_NAME.match(name) for name in binding_names), function
        assert len(set(binding_names)) == len(binding_names), function
        triggers = [b for b in function["bindings"] if str(b["type"]).endswith("Trigger")]
        assert len(triggers) == 1, function
        assert all(b["direction"] in ("IN", "OUT", "INOUT") for b in function["bindings"])


def _shape(route: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", route.strip("/").lower())


def test_http_routes_are_unique_per_method_and_avoid_reserved_paths() -> None:
    prefix = route_prefix()
    taken: dict[tuple[str, str], str] = {}
    for function in metadata():
        for binding in function["bindings"]:
            if binding["type"] != "httpTrigger":
                continue
            assert str(binding["authLevel"]).upper() in AUTH_LEVELS
            route = binding.get("route") or function["name"]
            full = f"{prefix}/{route}".strip("/") if prefix else route
            assert not full.lower().startswith(RESERVED_PREFIXES), full
            for method in binding.get("methods") or ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]:
                key = (method.upper(), _shape(route))
                assert key not in taken, f"{function['name']} and {taken.get(key)} share {key}"
                taken[key] = function["name"]


def test_the_schedule_and_the_queue_are_valid() -> None:
    from devhost.ncrontab import CronSchedule
    from shared.config import SETTINGS

    settings = {spec.name for spec in SETTINGS}
    kinds: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for function in metadata():
        for binding in function["bindings"]:
            kinds[binding["type"]].append(binding)
    [timer] = kinds["timerTrigger"]
    assert len(timer["schedule"].split()) == 6  # NCRONTAB with seconds
    CronSchedule.parse(timer["schedule"])
    [queue] = kinds["queueTrigger"]
    assert QUEUE_NAME.match(queue["queueName"])
    # An identity-based connection is a prefix of settings (AzureWebJobsStorage__...).
    assert queue["connection"] in settings or any(s.startswith(queue["connection"] + "__") for s in settings)


def _third_party_imports() -> set[str]:
    """Top-level modules imported anywhere in the code Azure runs (function_app.py, shared/)."""
    files = [Path(ROOT, "function_app.py"), *Path(ROOT, "shared").rglob("*.py")]
    modules: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    import sys

    local = {"shared", "function_app", "__future__"}
    return {m for m in modules if m not in local and m not in sys.stdlib_module_names}


def test_every_import_of_the_deployed_code_comes_from_requirements_txt() -> None:
    """``pip install -r requirements.txt`` alone (no dev requirements) must give every module the
    deployed code imports, at load or lazily."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, requires

    from packaging.requirements import Requirement

    def normalize(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    listed = set()
    for line in Path(ROOT, "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            listed.add(normalize(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]))
    # What the listed distributions pull in is installed too.
    installed = set(listed)
    frontier = list(listed)
    while frontier:
        try:
            needed = requires(frontier.pop()) or []
        except PackageNotFoundError:
            continue
        for text in needed:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue  # an extra, or another Python version
            name = normalize(requirement.name)
            if name not in installed:
                installed.add(name)
                frontier.append(name)
    providers = packages_distributions()
    missing = {
        module: providers.get(module)
        for module in _third_party_imports()
        if not {normalize(d) for d in providers.get(module, [])} & installed
    }
    assert not missing, f"imported by the app but not installed by requirements.txt: {missing}"


@pytest.mark.parametrize("name", ["pytest", "hypothesis", "schemathesis"])
def test_the_deployed_code_imports_no_test_tool(name: str) -> None:
    assert name not in _third_party_imports()
