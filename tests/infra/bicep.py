"""Read the Bicep templates through pycep's parse tree.

There is no Bicep compiler here, so the infra tests read what pycep-parser gives: a JSON-like tree
of ``parameters``, ``variables``, ``resources`` (child resources flattened as ``parent__child``
with their full type), ``modules`` and ``outputs``. Expressions are nested dicts
(``{"function": {...}}``, ``{"operator": {...}}``); identifiers and string literals both arrive
as plain ``str``, and interpolated strings stay as raw text (``'https://${x.y}'``), which is
why a few helpers look inside strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"

Tree = dict[str, Any]


@cache
def _parser() -> BicepParser:
    return BicepParser()


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@cache
def parse(path: Path) -> Tree:
    tree: Tree = _parser().parse(file_path=path)
    return tree


def template(relative: str) -> Tree:
    return parse(INFRA / relative)


@dataclass(frozen=True)
class Resource:
    symbol: str
    type: str
    api_version: str
    existing: bool
    body: dict[str, Any]  # name, properties, ... (the loop/condition wrapper removed)
    loop: dict[str, Any] | None
    condition: Any

    @property
    def properties(self) -> dict[str, Any]:
        props: dict[str, Any] = self.body.get("properties", {})
        return props


def _unwrap(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None, Any]:
    """Strip the loop / condition wrappers pycep puts around a resource or module body."""
    loop = None
    condition = None
    while (
        "config" in config
        and isinstance(config["config"], dict)
        and ("loop_type" in config or "condition" in config)
    ):
        loop = config.get("loop_type", loop)
        condition = config.get("condition", condition)
        config = config["config"]
    return config, loop, condition


def resources(tree: Tree, type_: str | None = None) -> list[Resource]:
    found = []
    for symbol, raw in tree.get("resources", {}).items():
        if type_ is not None and raw["type"].lower() != type_.lower():
            continue
        body, loop, condition = _unwrap(raw["config"])
        found.append(
            Resource(symbol, raw["type"], raw["api_version"], raw["existing"], body, loop, condition)
        )
    return found


def one_resource(tree: Tree, type_: str, *, existing: bool = False) -> Resource:
    matches = [r for r in resources(tree, type_) if r.existing == existing]
    assert len(matches) == 1, f"expected one {type_}, found {[r.symbol for r in matches]}"
    return matches[0]


@dataclass(frozen=True)
class Module:
    symbol: str
    path: str
    params: dict[str, Any]
    condition: Any
    depends_on: list[Any]


def modules(tree: Tree) -> dict[str, Module]:
    found = {}
    for symbol, raw in tree.get("modules", {}).items():
        body, _loop, condition = _unwrap(raw["config"])
        found[symbol] = Module(
            symbol,
            raw["detail"]["path"],
            body.get("params", {}),
            condition,
            body.get("dependsOn", body.get("depends_on", [])),
        )
    return found


def variable(tree: Tree, name: str) -> Any:
    return tree["variables"][name]["value"]


def resolve(tree: Tree, value: Any) -> Any:
    """A bare identifier naming a variable becomes that variable's value (one level)."""
    if isinstance(value, str) and value in tree.get("variables", {}):
        return variable(tree, value)
    return value


def param_default(tree: Tree, name: str) -> Any:
    return tree["parameters"][name].get("default")


def decorator(tree: Tree, section: str, name: str, kind: str) -> Any:
    for item in tree[section][name]["decorators"]:
        if item["type"] == kind:
            return item["argument"]
    return None


def walk(node: Any) -> Iterator[Any]:
    """Every node of an expression tree, depth first."""
    yield node
    if isinstance(node, dict):
        for child in node.values():
            yield from walk(child)
    elif isinstance(node, list):
        for child in node:
            yield from walk(child)


def strings(node: Any) -> Iterator[str]:
    for item in walk(node):
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            # Object keys can hold text too (quoted keys such as 'Application.ReadWrite.All').
            yield from (key for key in item if isinstance(key, str))


def operator(node: Any) -> dict[str, Any] | None:
    """The {'type': ..., 'operands': ...} of an operator node, else None (an object property
    that happens to be called `operator`, like a log alert's 'GreaterThan', is not one)."""
    if isinstance(node, dict) and isinstance(node.get("operator"), dict):
        op: dict[str, Any] = node["operator"]
        return op
    return None


def accessor(node: Any) -> list[Any]:
    """Flatten a property-accessor chain: environment().authentication.loginEndpoint ->
    [{'function': {'type': 'environment'}}, 'authentication', 'loginEndpoint']."""
    op = operator(node)
    if op is not None and op["type"] == "property_accessor":
        operands = op["operands"]
        return accessor(operands["operand_1"]) + accessor(operands["operand_2"])
    return [node]


def function_name(node: Any) -> str | None:
    if isinstance(node, dict) and "function" in node:
        name: str = node["function"]["type"]
        return name
    return None


def conditional(node: Any) -> tuple[Any, Any, Any] | None:
    """(condition, true_value, false_value) of a ternary, else None."""
    op = operator(node)
    if op is not None and op["type"] == "conditional":
        ops = op["operands"]
        return ops["condition"], ops["true_value"], ops["false_value"]
    return None


INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


def interpolations(node: Any) -> Iterator[str]:
    """The expressions inside '${...}' of every string in the tree (pycep keeps them as text)."""
    for text in strings(node):
        yield from INTERPOLATION.findall(text)
