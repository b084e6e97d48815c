"""Request parsing and response shaping for the HTTP triggers.

Errors become RFC 9457 problem details here, and only here: the rest of the code raises the
documented ``shared.errors`` hierarchy. Problem bodies name fields and allowed values; they never
echo what was sent (a body may hold a credential).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import typing
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from shared.errors import (
    AccessDeniedError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    ExternalServiceError,
    FieldProblem,
    NotFoundError,
    PayloadTooLargeError,
    PermissionMissingError,
    RotatorError,
    ValidationError,
)
from shared.heap import settle_after_first

if TYPE_CHECKING:
    import azure.functions as func

logger = logging.getLogger("rotator.api")

MAX_BODY_BYTES = 64 * 1024
# JSON nested deeper than this is refused before anything recurses over it.
MAX_JSON_DEPTH = 32
PAGE_SIZE = (1, 100)
DEFAULT_PAGE_SIZE = 25
PROBLEM_BASE = "https://github.com/entra-secret-rotator/problems/"

Handler = Callable[["func.HttpRequest"], Awaitable["func.HttpResponse"]]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return json_text_response(json.dumps(body, separators=(",", ":")), status, headers)


def json_text_response(
    text: str, status: int = 200, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    """An answer whose body is ``text``, JSON already written (a list page spliced from stored JSON)."""
    import azure.functions as func

    return func.HttpResponse(
        text,
        status_code=status,
        headers=headers,
        mimetype="application/json",
        charset="utf-8",
    )


def problem_response(
    status: int,
    title: str,
    detail: str,
    problem_type: str,
    errors: list[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> func.HttpResponse:
    import azure.functions as func

    body: dict[str, Any] = {
        "type": PROBLEM_BASE + problem_type,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [problem.as_dict() for problem in errors]
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        headers=headers,
        mimetype="application/problem+json",
        charset="utf-8",
    )


def error_to_response(error: Exception) -> func.HttpResponse:
    """The one mapping from our error hierarchy to HTTP status codes."""
    from shared.registry import PreconditionFailed

    if isinstance(error, AuthenticationError):
        # RFC 6750 section 3: the challenge names the scheme, and the error when a token was sent.
        challenge = 'Bearer realm="entra-secret-rotator"' + (
            f', error="{error.error}"' if error.error else ""
        )
        return problem_response(
            401, "Unauthorized", error.message, "unauthorized", headers={"WWW-Authenticate": challenge}
        )
    if isinstance(error, AccessDeniedError):
        return problem_response(403, "Forbidden", error.message, "forbidden")
    if isinstance(error, ValidationError):
        return problem_response(400, "Invalid request", error.message, "validation", error.problems)
    if isinstance(error, NotFoundError):
        return problem_response(404, "Not found", error.message, "not-found")
    if isinstance(error, PreconditionFailed):
        return problem_response(412, "Precondition failed", error.message, "precondition-failed")
    if isinstance(error, ConflictError):
        detail = error.message
        rotation_id = error.context.get("rotation_id")
        if rotation_id:
            detail += f" (rotationId {rotation_id})"
        return problem_response(409, "Conflict", detail, "conflict")
    if isinstance(error, PayloadTooLargeError):
        return problem_response(413, "Payload too large", error.message, "payload-too-large")
    if isinstance(error, PermissionMissingError):
        return problem_response(
            403,
            "Missing permission",
            f"{error.message}; grant: {error.permission}",
            "insufficient-permission",
        )
    if isinstance(error, ExternalServiceError):
        logger.warning("dependency failed: %s", error)
        return problem_response(
            502, "Dependency failed", f"{error.service} answered with an error", "dependency-failed"
        )
    import uuid

    error_id = str(uuid.uuid4())
    if isinstance(error, ConfigurationError):
        logger.error("configuration error %s: %s", error_id, error)
        return problem_response(500, "Configuration error", error.message, "configuration")
    # Log the type and our own message only: exception text from an SDK could quote a request.
    logger.error(
        "unexpected error %s: %s", error_id, type(error).__name__, exc_info=isinstance(error, RotatorError)
    )
    return problem_response(
        500, "Internal error", f"Unexpected error; reference {error_id} in the logs", "internal"
    )


# Query parameters each operation takes (by handler name); ``code`` (the function key) always.
QUERY_PARAMETERS: dict[str, frozenset[str]] = {
    "list_applications": frozenset({"pageSize", "continuationToken"}),
    "delete_application": frozenset({"leaveCredentials"}),
    "get_rotation_log": frozenset({"pageSize", "continuationToken"}),
    "list_inventory": frozenset({"expiringWithinDays", "pageSize", "continuationToken"}),
    "pick_subscriptions": frozenset({"pageSize", "continuationToken"}),
    "pick_key_vaults": frozenset({"subscriptionId", "resourceGroup", "pageSize", "continuationToken"}),
    "pick_logic_app_connections": frozenset(
        {"subscriptionId", "resourceGroup", "pageSize", "continuationToken"}
    ),
    "pick_app_services": frozenset({"subscriptionId", "resourceGroup", "pageSize", "continuationToken"}),
    "pick_automation_accounts": frozenset(
        {"subscriptionId", "resourceGroup", "pageSize", "continuationToken"}
    ),
    "pick_runbooks": frozenset({"automationAccountId", "pageSize", "continuationToken"}),
    "pick_devops_projects": frozenset({"organization", "pageSize", "continuationToken"}),
    "pick_devops_service_connections": frozenset(
        {"organization", "project", "pageSize", "continuationToken"}
    ),
    "pick_vercel_projects": frozenset({"groupId", "pageSize", "continuationToken"}),
    "list_consumers": frozenset({"resourceGroupId", "devOpsProject"}),
    "plan_rotation": frozenset({"consumers"}),
}


async def authorize(req: func.HttpRequest) -> None:
    """With ``ROTATOR_API_AUTH=entra``, the caller's Entra ID token (``shared.api.auth``); with
    function keys the host has checked the key already."""
    from shared.services import get_services

    services = get_services()
    if services.settings.api_auth == "entra":
        await services.api_auth.authorize(req.headers.get("Authorization"))


def handle_errors(handler: Handler) -> Handler:
    """Wrap an HTTP trigger so every error leaves as problem details, and a query parameter the
    operation does not take is a 400 naming it (a typo is never silently ignored)."""
    allowed = QUERY_PARAMETERS.get(handler.__name__, frozenset()) | {"code"}

    # functools.wraps keeps the signature and annotations the Functions worker inspects.
    @functools.wraps(handler)
    async def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            await authorize(req)
            unknown = sorted(name for name in req.params if name not in allowed)
            if unknown:
                raise ValidationError(
                    "Unknown query parameter",
                    [
                        FieldProblem(
                            "query." + name[:64],
                            "is not a parameter of this operation",
                            ", ".join(sorted(allowed)),
                        )
                        for name in unknown[:10]
                    ],
                )
            return await handler(req)
        except Exception as error:  # noqa: BLE001 - the API edge maps every error
            return error_to_response(error)
        finally:
            settle_after_first(handler.__name__)

    return wrapper


def read_json(req: func.HttpRequest, *, required: bool = True) -> Any:
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"The request body must be at most {MAX_BODY_BYTES} bytes")
    if not body.strip():
        if required:
            raise ValidationError(
                "A JSON body is required", [FieldProblem("body", "is empty", "a JSON object")]
            )
        return {}
    try:
        data = json.loads(body)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as error:
        line = getattr(error, "lineno", None)
        where = f" at line {line}, column {getattr(error, 'colno', '?')}" if line else ""
        raise ValidationError(
            "The request body is not valid JSON",
            [FieldProblem("body", f"is not valid JSON{where}", "a JSON object")],
        ) from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise _too_deep()
    return data


def _too_deep() -> ValidationError:
    return ValidationError(
        "The request body is nested too deeply",
        [
            FieldProblem(
                "body", "is nested too deeply", f"at most {MAX_JSON_DEPTH} levels of objects and arrays"
            )
        ],
    )


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_JSON_DEPTH:
                return level
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def parse_model(model: type[Any], data: Any) -> Any:
    """Validate ``data`` into ``model``; every problem names its field and what is allowed."""
    from pydantic import ValidationError as PydanticValidationError

    from shared.domain.fields import REQUEST_CONTEXT

    if not isinstance(data, dict):
        raise ValidationError(
            "The request body must be a JSON object",
            [FieldProblem("body", "is not an object", "a JSON object")],
        )
    surrogates = _surrogate_problems(model, data)
    if surrogates:
        raise ValidationError("The request has invalid fields", surrogates)
    try:
        # JSON mode: strict about types (no "21" for 21) yet reads GUIDs and dates from strings.
        return model.model_validate_json(json.dumps(data), context={REQUEST_CONTEXT: True})
    except PydanticValidationError as error:
        raise ValidationError(
            "The request has invalid fields", [_field_problem(model, item) for item in error.errors()]
        ) from None


# What a wrong value of each pydantic error type should have been, when the field's schema says
# nothing more precise (pydantic's own messages may quote the input: these never do).
_ALLOWED_BY_ERROR = {
    "bool": "true or false",
    "model": "an object",
    "dict": "an object",
    "list": "an array",
    "uuid": "a GUID",
    "string": "a string",
    "int": "a whole number",
    "float": "a number",
    "datetime": "an RFC 3339 date-time",
}


def _field_problem(model: type[Any], item: Any) -> FieldProblem:
    from pydantic_core.core_schema import ErrorType

    from shared.domain.models import INTEGRATION_KINDS

    loc = tuple(item["loc"])
    # Drop discriminator tags from the location: integrations.0.keyVault.vaultUrl -> integrations.0.vaultUrl
    # (a tag follows an index: a field named like a kind, such as a group's vercel, stays).
    parts = [
        str(part)
        for index, part in enumerate(loc)
        if not (part in INTEGRATION_KINDS and index and isinstance(loc[index - 1], int))
    ]
    ctx = item.get("ctx") or {}
    if ctx.get("field"):  # a check across fields names the one to fix
        parts.append(str(ctx["field"]))
    field = ".".join(parts) or "body"
    kind = item["type"]
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        return FieldProblem(
            ".".join([*parts, "kind"]), "is not a known integration kind", ", ".join(INTEGRATION_KINDS)
        )
    if kind == "extra_forbidden":
        known = sorted(_schema_at(model, loc[:-1]).get("properties", {}))
        allowed = "the fields " + ", ".join(known) if known else "the fields the OpenAPI document lists"
        return FieldProblem(field, "is not a known field", allowed)
    if kind in ("too_long", "too_short"):
        low, high = ctx.get("min_length"), ctx.get("max_length")
        allowed = (
            f"{low if low is not None else 0} to {high} items"
            if high is not None
            else f"at least {low} items"
        )
        return FieldProblem(field, "has the wrong number of items", allowed)
    if kind not in typing.get_args(ErrorType):
        # Our own checks (shared.domain): their messages and allowed texts are written to be shown.
        return FieldProblem(
            field, str(item["msg"]), str(ctx.get("allowed") or _describe(_schema_at(model, loc)))
        )
    if ctx.get("expected"):  # enum and literal values: pydantic lists them, quoted
        allowed = str(ctx["expected"])
    else:
        family = next((name for name in _ALLOWED_BY_ERROR if kind.startswith(name + "_")), None)
        allowed = _describe(_schema_at(model, loc)) or (
            _ALLOWED_BY_ERROR[family] if family else "what the OpenAPI document states for this field"
        )
    if kind == "missing":
        return FieldProblem(field, "is required", allowed)
    return FieldProblem(field, f"must be {allowed}", allowed)


_SCHEMAS: dict[type[Any], dict[str, Any]] = {}


def _json_schema(model: type[Any]) -> dict[str, Any]:
    # The schema the OpenAPI document is generated from: allowed texts say what it says.
    if model not in _SCHEMAS:
        _SCHEMAS[model] = model.model_json_schema(by_alias=True)
    return _SCHEMAS[model]


def _schema_at(model: type[Any], loc: tuple[Any, ...], data: Any = None) -> dict[str, Any]:
    """The JSON schema of the field at ``loc`` (a pydantic error location, which names the
    integration kind after an index, or a path in ``data``, whose ``kind`` members then choose);
    empty when the location is not in the schema."""
    root = _json_schema(model)
    node, value = _resolve(root, root), data
    for part in loc:
        mapping = node.get("discriminator", {}).get("mapping", {})
        if mapping:
            if isinstance(part, str) and part in mapping:  # a pydantic location's tag
                node = _resolve(root, {"$ref": mapping[part]})
                continue
            tag = value.get("kind") if isinstance(value, dict) else None
            node = _resolve(root, {"$ref": mapping[tag]}) if tag in mapping else {}
        if isinstance(part, int):
            node = _resolve(root, node.get("items", {}))
            value = value[part] if isinstance(value, list) and part < len(value) else None
        else:
            node = _resolve(root, node.get("properties", {}).get(part, {}))
            value = value.get(part) if isinstance(value, dict) else None
    return node


def _resolve(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``node`` with its ``$ref`` followed; a nullable field (``anyOf`` with null) as its other
    branch, marked ``nullable``."""
    if "$ref" in node:
        name = str(node["$ref"]).rsplit("/", 1)[-1]
        node = {**root.get("$defs", {}).get(name, {}), **{k: v for k, v in node.items() if k != "$ref"}}
    branches = node.get("anyOf", [])
    others = [branch for branch in branches if branch.get("type") != "null"]
    if branches and len(others) == 1 and len(others) < len(branches):
        node = {**_resolve(root, others[0]), "nullable": True}
    return node


def _describe(schema: dict[str, Any]) -> str:
    """What a field's schema allows, in words (empty when it says nothing)."""
    text = ""
    description = str(schema.get("description", ""))
    kind = schema.get("type")
    if description.startswith("Must be "):  # shared.domain.fields.matches writes these
        text = description.removeprefix("Must be ").rstrip(".")
    elif "enum" in schema:
        text = " or ".join(json.dumps(value) for value in schema["enum"])
    elif "const" in schema:
        text = json.dumps(schema["const"])
    elif "discriminator" in schema:
        text = "an object whose kind is one of " + ", ".join(schema["discriminator"].get("mapping", {}))
    elif kind == "boolean":
        text = "true or false"
    elif kind == "integer" and "minimum" in schema and "maximum" in schema:
        text = f"a whole number from {schema['minimum']} to {schema['maximum']}"
    elif kind == "string" and schema.get("format") == "uuid":
        text = "a GUID"
    elif kind == "string" and schema.get("format") == "date-time":
        text = "an RFC 3339 date-time"
    elif kind in ("object", "array", "string", "integer", "number"):
        text = {
            "object": "an object",
            "array": "an array",
            "string": "a string",
            "integer": "a whole number",
        }.get(kind, "a number")
        if kind == "array" and "maxItems" in schema:
            text += f" of at most {schema['maxItems']} items"
    elif "properties" in schema:
        text = "an object"
    if text and schema.get("nullable"):
        text += " (or null)"
    return text


# An unpaired UTF-16 surrogate: JSON may escape one ("\ud800"), Python reads it, but it is no
# Unicode character and the model's JSON parser (rightly) refuses it.
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _surrogate_problems(model: type[Any], data: Any) -> list[FieldProblem]:
    """A problem naming each field (at most ten) whose text holds an unpaired surrogate."""
    found: list[tuple[Any, ...]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack and len(found) < 10:
        path, value = stack.pop()
        if isinstance(value, str) and _LONE_SURROGATE.search(value):
            found.append(path)
        elif isinstance(value, dict):
            if any(_LONE_SURROGATE.search(key) for key in value):
                found.append(path)  # a member name: the object holding it is named
            else:
                stack.extend(((*path, key), child) for key, child in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*path, index), child) for index, child in reversed(list(enumerate(value))))
    problems = []
    for path in found:
        field_allowed = _describe(_schema_at(model, path, data))
        problems.append(
            FieldProblem(
                ".".join(str(part) for part in path) or "body",
                "holds an unpaired surrogate (a \\uD800 to \\uDFFF escape without its pair)",
                (field_allowed + ", " if field_allowed else "") + "as Unicode text (no unpaired surrogates)",
            )
        )
    return problems


def int_param(raw: str | None, name: str, low: int, high: int, default: int) -> int:
    """A whole-number query parameter: ASCII digits only (not ``²`` or ``٣``), within its range."""
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not low <= int(raw) <= high:
        raise ValidationError(
            f"Invalid {name}", [FieldProblem(name, "must be a whole number", f"{low} to {high}")]
        )
    return int(raw)


def bool_param(req: func.HttpRequest, name: str, *, default: bool) -> bool:
    """A query parameter that is ``true`` or ``false`` (exactly), ``default`` when absent; 400
    naming it otherwise."""
    raw = req.params.get(name)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise ValidationError(
            f"Invalid {name}", [FieldProblem(name, "must be true or false", "true or false")]
        )
    return bool(raw == "true")


def page_params(req: func.HttpRequest) -> tuple[int, str | None]:
    page_size = int_param(req.params.get("pageSize"), "pageSize", *PAGE_SIZE, DEFAULT_PAGE_SIZE)
    return page_size, req.params.get("continuationToken") or None


def if_match(req: func.HttpRequest) -> str | None:
    """The ``If-Match`` header as sent (None when absent). ``*`` matches any current entity; any
    other value (empty or malformed included) is compared with the current ETag, so one that is not
    an ETag this API returned fails the precondition (RFC 9110 §13.1.1): nothing is written."""
    value = req.headers.get("If-Match")
    return value.strip() if value is not None else None


def header(req: func.HttpRequest, name: str) -> str | None:
    value = req.headers.get(name)
    return value.strip() if value else None


def text_param(
    req: func.HttpRequest, name: str, pattern: str, allowed: str, *, required: bool = True
) -> str | None:
    """A string query parameter that must match ``pattern`` in full (empty included: present but
    empty is invalid, not absent); 400 naming it and ``allowed``."""
    import re

    raw = req.params.get(name)
    if raw is None:
        if required:
            raise ValidationError(f"Missing {name}", [FieldProblem(name, "is required", allowed)])
        return None
    if not re.fullmatch(pattern, raw):
        raise ValidationError(f"Invalid {name}", [FieldProblem(name, f"must be {allowed}", allowed)])
    return str(raw)


def app_id_param(req: func.HttpRequest) -> str:
    """The ``appId`` route parameter as a canonical (lower-case) GUID; 400 naming it otherwise."""
    import uuid

    raw = req.route_params.get("appId", "")
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ValidationError(
            "Invalid application id",
            [FieldProblem("appId", "must be the application's client id", "a GUID")],
        ) from None
