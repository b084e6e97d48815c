"""HTTP route templates with the ASP.NET Core syntax the Functions host uses.

Supported: literal segments (matched case-insensitively), ``{name}``, ``{name?}``,
``{name=default}``, ``{*rest}`` / ``{**rest}`` (catch-all, last segment, may be empty),
inline constraints ``{id:int}``, ``{id:int:min(1)}``, complex segments such as
``{name}.{ext}``, and ``{{`` / ``}}`` escapes. Constraints: int, long, bool, guid, alpha,
double, float, decimal, datetime, required, minlength(n), maxlength(n), length(n),
length(a,b), min(n), max(n), range(a,b), regex(expr). An unknown constraint is an error
at load time, as it is for the host.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote

__all__ = ["RouteParameter", "RouteTemplate", "RouteTemplateError", "parse_route", "split_path"]

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")
_FLOAT = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")
_DECIMAL = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)\s*$")
_HEX = "[0-9a-fA-F]"
_GUID = re.compile(
    rf"^\s*(?:{_HEX}{{32}}"
    rf"|{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
    rf"|\{{{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}\}}"
    rf"|\({_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}\))\s*$"
)
_ALPHA = re.compile(r"^[a-zA-Z]*$")


class RouteTemplateError(ValueError):
    """The route template cannot be parsed (the host would refuse the function)."""


@dataclass(frozen=True)
class Constraint:
    text: str
    check: Callable[[str], bool]


@dataclass(frozen=True)
class RouteParameter:
    name: str
    optional: bool = False
    catch_all: bool = False
    default: str | None = None
    constraints: tuple[Constraint, ...] = ()

    def accepts(self, value: str) -> bool:
        return all(constraint.check(value) for constraint in self.constraints)


Part = str | RouteParameter


def _in_range(value: str, bounds: tuple[int, int]) -> bool:
    return bool(_INTEGER.match(value)) and bounds[0] <= int(value) <= bounds[1]


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value.strip())
    except ValueError:
        return False
    return True


def _int_args(name: str, args: str | None, count: tuple[int, ...]) -> list[int]:
    parts = [] if args is None else [part.strip() for part in args.split(",")]
    if len(parts) not in count or not all(_INTEGER.match(part) for part in parts):
        raise RouteTemplateError(f"constraint {name!r} needs {count} integer argument(s)")
    return [int(part) for part in parts]


def _make_constraint(text: str) -> Constraint:
    match = re.fullmatch(r"(?P<name>[A-Za-z]+)(?:\((?P<args>.*)\))?", text, re.DOTALL)
    if match is None:
        raise RouteTemplateError(f"invalid constraint {text!r}")
    name, args = match["name"].lower(), match["args"]
    simple: dict[str, Callable[[str], bool]] = {
        "int": lambda v: _in_range(v, _INT32),
        "long": lambda v: _in_range(v, _INT64),
        "bool": lambda v: v.strip().lower() in ("true", "false"),
        "guid": lambda v: bool(_GUID.match(v)),
        "alpha": lambda v: bool(_ALPHA.match(v)),
        "double": lambda v: bool(_FLOAT.match(v)),
        "float": lambda v: bool(_FLOAT.match(v)),
        "decimal": lambda v: bool(_DECIMAL.match(v)),
        "datetime": _is_datetime,
        "required": lambda v: v != "",
    }
    if name in simple:
        if args is not None:
            raise RouteTemplateError(f"constraint {name!r} takes no argument")
        return Constraint(text, simple[name])
    if name == "regex":
        if args is None:
            raise RouteTemplateError("constraint 'regex' needs a pattern")
        try:
            # ASP.NET: culture-invariant, case-insensitive, not implicitly anchored.
            pattern = re.compile(args, re.IGNORECASE)
        except re.error as exc:
            raise RouteTemplateError(f"invalid regex constraint {args!r}: {exc}") from None
        return Constraint(text, lambda v: pattern.search(v) is not None)
    if name in ("minlength", "maxlength", "min", "max"):
        (bound,) = _int_args(name, args, (1,))
        checks: dict[str, Callable[[str], bool]] = {
            "minlength": lambda v: len(v) >= bound,
            "maxlength": lambda v: len(v) <= bound,
            "min": lambda v: _in_range(v, _INT64) and int(v) >= bound,
            "max": lambda v: _in_range(v, _INT64) and int(v) <= bound,
        }
        return Constraint(text, checks[name])
    if name == "length":
        bounds = _int_args(name, args, (1, 2))
        low, high = (bounds[0], bounds[0]) if len(bounds) == 1 else (bounds[0], bounds[1])
        return Constraint(text, lambda v: low <= len(v) <= high)
    if name == "range":
        low, high = _int_args(name, args, (2,))
        return Constraint(text, lambda v: _in_range(v, _INT64) and low <= int(v) <= high)
    raise RouteTemplateError(f"unknown route constraint {name!r}")


def _split_top_level(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside parentheses (regex(...) may contain it)."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _parse_parameter(body: str, template: str) -> RouteParameter:
    catch_all = False
    if body.startswith("**"):
        catch_all, body = True, body[2:]
    elif body.startswith("*"):
        catch_all, body = True, body[1:]
    default: str | None = None
    pieces = _split_top_level(body, "=")
    if len(pieces) > 1:
        body, default = pieces[0], "=".join(pieces[1:])
    optional = False
    if body.endswith("?"):
        optional, body = True, body[:-1]
    name, *constraint_texts = _split_top_level(body, ":")
    if not name or re.search(r"[{}/?*=:]", name):
        raise RouteTemplateError(f"invalid parameter name {name!r} in route {template!r}")
    if optional and default is not None:
        raise RouteTemplateError(
            f"parameter {name!r} in route {template!r} cannot be optional and have a default"
        )
    constraints = tuple(_make_constraint(text) for text in constraint_texts if text)
    return RouteParameter(
        name=name,
        optional=optional or catch_all,
        catch_all=catch_all,
        default=default,
        constraints=constraints,
    )


def _tokenize(template: str) -> list[Part | None]:
    """Literal characters and parameters; ``None`` marks a segment separator."""
    tokens: list[Part | None] = []
    literal: list[str] = []
    index = 0

    def flush() -> None:
        if literal:
            tokens.append("".join(literal))
            literal.clear()

    while index < len(template):
        char = template[index]
        if char == "{" and template.startswith("{{", index):
            literal.append("{")
            index += 2
        elif char == "}" and template.startswith("}}", index):
            literal.append("}")
            index += 2
        elif char == "{":
            flush()
            body: list[str] = []
            index += 1
            while True:
                if index >= len(template):
                    raise RouteTemplateError(f"unclosed '{{' in route {template!r}")
                if template.startswith("}}", index) or template.startswith("{{", index):
                    body.append(template[index])
                    index += 2
                    continue
                if template[index] == "}":
                    index += 1
                    break
                body.append(template[index])
                index += 1
            tokens.append(_parse_parameter("".join(body), template))
        elif char == "}":
            raise RouteTemplateError(f"unmatched '}}' in route {template!r}")
        elif char == "/":
            flush()
            tokens.append(None)
            index += 1
        elif char == "?":
            raise RouteTemplateError(f"'?' is not allowed in route {template!r}")
        else:
            literal.append(char)
            index += 1
    flush()
    return tokens


def split_path(raw_path: str) -> list[str]:
    """Decoded path segments; one trailing slash is ignored, as ASP.NET routing does."""
    path = raw_path[1:] if raw_path.startswith("/") else raw_path
    if path.endswith("/"):
        path = path[:-1]
    if not path:
        return []
    return [unquote(segment) for segment in path.split("/")]


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    segments: tuple[tuple[Part, ...], ...]

    @property
    def parameters(self) -> list[RouteParameter]:
        return [part for segment in self.segments for part in segment if not isinstance(part, str)]

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """Route values for the decoded path segments, or None if the route does not match."""
        values: dict[str, str] = {}
        for position, template_segment in enumerate(self.segments):
            first = template_segment[0]
            if isinstance(first, RouteParameter) and first.catch_all:
                rest = "/".join(segments[position:])
                if rest:
                    values[first.name] = rest
                elif first.default is not None:
                    values[first.name] = first.default
                return values if self._constraints_hold(values) else None
            if position >= len(segments):
                # Path exhausted: every remaining segment must be an optional parameter.
                for remaining in self.segments[position:]:
                    part = remaining[0]
                    if len(remaining) != 1 or isinstance(part, str):
                        return None
                    if part.default is not None:
                        values[part.name] = part.default
                    elif not part.optional:
                        return None
                return values if self._constraints_hold(values) else None
            if not self._match_segment(template_segment, segments[position], values):
                return None
        if len(segments) > len(self.segments):
            return None
        return values if self._constraints_hold(values) else None

    def _constraints_hold(self, values: dict[str, str]) -> bool:
        for parameter in self.parameters:
            value = values.get(parameter.name)
            if value is not None and not parameter.accepts(value):
                return False
        return True

    @staticmethod
    def _match_segment(template: tuple[Part, ...], segment: str, values: dict[str, str]) -> bool:
        if len(template) == 1:
            part = template[0]
            if isinstance(part, str):
                return part.lower() == segment.lower()
            if segment == "":
                return False
            values[part.name] = segment
            return True
        # Greedy groups: ASP.NET matches complex segments right to left, so in
        # {name}.{ext} the last '.' splits "a.tar.gz" into "a.tar" and "gz".
        pattern = "".join(
            re.escape(part) if isinstance(part, str) else f"(?P<p{index}>.+)"
            for index, part in enumerate(template)
        )
        match = re.fullmatch(pattern, segment, re.IGNORECASE | re.DOTALL)
        if match is None:
            return False
        for index, part in enumerate(template):
            if isinstance(part, RouteParameter):
                values[part.name] = match[f"p{index}"]
        return True


def parse_route(template: str) -> RouteTemplate:
    """Parse a Functions route template (without the route prefix)."""
    text = template.strip()
    if text.startswith("~/"):
        text = text[2:]
    text = text.strip("/")
    segments: list[tuple[Part, ...]] = []
    current: list[Part] = []
    for token in _tokenize(text) if text else []:
        if token is None:
            if not current:
                raise RouteTemplateError(f"empty segment in route {template!r}")
            segments.append(tuple(current))
            current = []
        else:
            current.append(token)
    if current:
        segments.append(tuple(current))
    elif segments:
        raise RouteTemplateError(f"empty segment in route {template!r}")

    names: set[str] = set()
    for position, segment in enumerate(segments):
        for part in segment:
            if isinstance(part, str):
                continue
            if part.name.lower() in names:
                raise RouteTemplateError(f"parameter {part.name!r} repeated in route {template!r}")
            names.add(part.name.lower())
            if part.catch_all and (len(segment) != 1 or position != len(segments) - 1):
                raise RouteTemplateError(
                    f"catch-all {part.name!r} must be the whole last segment of {template!r}"
                )
            if len(segment) > 1 and (part.optional or part.default is not None):
                raise RouteTemplateError(
                    f"optional parameter {part.name!r} cannot share a segment in {template!r}"
                )
    return RouteTemplate(template=template, segments=tuple(segments))
