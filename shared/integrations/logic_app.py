"""Logic App API connections (``Microsoft.Web/connections``): the service-principal secret a connection uses.

Wire facts (azure-rest-api-specs web/.../stable/2016-06-01 examples connectionsGet / connectionsCreateOrUpdate,
Azure/LogicAppsUX#3221, Azure/logicapps#402, managed-API metadata where ``token:clientSecret`` is a
``securestring``):

* GET never echoes secret parameters. Non-secret ones come back in ``nonSecretParameterValues`` (older
  connections, written as ``parameterValues``) or inside ``parameterValueSet`` (newer connections:
  ``{"name": "<set>", "values": {"token:clientId": {"value": ...}, ...}}``). Key casing varies
  (``token:TenantId`` / ``token:tenantId``), so keys are matched case-insensitively and sent back spelled
  as the connection spells them.
* PUT replaces the parameters: every non-secret parameter the GET showed is sent back unchanged with the
  new secret. Parameters the connection does not show are *not* invented: connectors refuse parameters
  they do not define (``ParameterNotDefined``, Azure/logicapps#402).
* A connection is touched only when its client id parameter is this application's appId; anything else
  (another app, a managed-identity or OAuth connection) is refused with the reason.
* Success is the connection's own status after the update: ``overallStatus`` / ``statuses[0].status``
  must be ``Connected``.

Also home of ``ArmClient``: plain REST over Azure Resource Manager with the rotator's managed identity,
shared by the App Service and Automation plugins (no azure-mgmt-* dependency: azure-mgmt-web ships no
``Microsoft.Web/connections`` operations, and generic REST is simpler to simulate and test).
"""

from __future__ import annotations

import email.utils
import hmac
import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.domain.models import ApplicationConfig, LogicAppConnectionIntegration
from shared.errors import (
    ExternalServiceError,
    FieldProblem,
    RotationError,
    ThrottledError,
    TransientServiceError,
)
from shared.integrations.base import DeployContext, DeployOutcome

if TYPE_CHECKING:
    import httpx

    from shared.domain.secret import SecretValue

logger = logging.getLogger("rotator.integrations.arm")

ARM_SERVICE = "arm"
CONNECTIONS_API_VERSION = "2016-06-01"
# Built-in role whose actions include Microsoft.Web/connections/* (Azure built-in roles, Integration).
LOGIC_APP_CONTRIBUTOR = "Logic App Contributor"
_ASYNC_DONE = {"succeeded"}
_ASYNC_FAILED = {"failed", "canceled", "cancelled"}


# --------------------------------------------------------------------------- ARM client


@dataclass(frozen=True)
class ArmTarget:
    """What an ARM call is about, for error messages (never a secret)."""

    resource_id: str
    label: str  # e.g. "API connection 'payroll-kv'"
    role: str  # the built-in role the rotator's identity needs on the resource
    step: str = "deploy"
    role_note: str | None = None  # an alternative to that role, if any

    def at(self, step: str) -> ArmTarget:
        return replace(self, step=step)


def resource_name(resource_id: str) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


def retry_after_seconds(headers: Any) -> float | None:
    """``Retry-After`` as seconds (a number or an HTTP date), or None."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def arm_error(response: httpx.Response) -> tuple[str | None, str]:
    """ARM's ``{"error": {"code", "message"}}`` (some providers omit the wrapper)."""
    try:
        payload = response.json()
    except ValueError:
        return None, response.reason_phrase or f"HTTP {response.status_code}"
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            code = error.get("code")
            message = error.get("message") or response.reason_phrase
            return (str(code) if code else None), str(message or "")
    return None, response.reason_phrase or f"HTTP {response.status_code}"


class ArmClient:
    """Bearer-token REST calls to ARM that translate failures into the rotator's errors.

    * 429 -> ``ThrottledError`` with the ``Retry-After`` seconds; 5xx, 409 (another operation in
      progress), timeouts and connection errors -> ``TransientServiceError`` (the engine retries).
    * 403 -> ``RotationError`` naming the role the rotator's identity needs on the resource.
    * 404 and other 4xx -> ``RotationError`` with ARM's code and message (any secret value scrubbed).
    * 201/202 with ``Azure-AsyncOperation`` or ``Location`` -> ``wait()`` polls, bounded by
      ``lro_timeout``, honouring ``Retry-After``; the token is only ever sent to the ARM host.
    """

    def __init__(
        self,
        services: Any,
        *,
        redact: SecretValue | None = None,
        lro_timeout: float = 120.0,
        max_poll_delay: float = 10.0,
        default_poll_delay: float = 2.0,
    ) -> None:
        self._services = services
        self._base = str(services.settings.arm_url).rstrip("/")
        self._scope = str(services.settings.arm_scope)
        self._redact = redact
        self._lro_timeout = lro_timeout
        self._max_poll_delay = max_poll_delay
        self._default_poll_delay = default_poll_delay

    # ----------------------------------------------------------------- requests

    def url(self, path_or_url: str, api_version: str | None) -> str:
        if path_or_url.startswith(("https://", "http://")):
            self._check_origin(path_or_url)
            return path_or_url
        url = f"{self._base}{path_or_url}"
        return f"{url}?api-version={api_version}" if api_version else url

    def _check_origin(self, url: str) -> None:
        # A poll URL comes from a response header: never send the bearer token to another host.
        theirs, ours = urlsplit(url), urlsplit(self._base)
        if (theirs.scheme, theirs.netloc.lower()) != (ours.scheme, ours.netloc.lower()):
            raise RotationError(
                "ARM answered with a polling URL on another host; the rotator does not follow it",
                step="deploy",
                code="ArmUnexpectedHost",
            )

    async def sleep(self, seconds: float) -> None:
        await self._services.sleep(seconds)

    async def _headers(self) -> dict[str, str]:
        token = await self._services.credential.get_token(self._scope)
        return {"Authorization": f"Bearer {token.token}", "Accept": "application/json"}

    async def request(
        self,
        method: str,
        path_or_url: str,
        api_version: str | None,
        target: ArmTarget,
        *,
        action: str,
        body: Any = None,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        """One call; returns 2xx answers and the statuses in ``accept``, raises for the rest."""
        import httpx

        url = self.url(path_or_url, api_version)
        headers = await self._headers()
        try:
            response: httpx.Response = await self._services.http.request(
                method, url, json=body, headers=headers, follow_redirects=False
            )
        except httpx.TimeoutException as error:
            raise TransientServiceError(
                f"ARM call to {action} {target.label} timed out",
                service=ARM_SERVICE,
                resource=target.resource_id,
                error=type(error).__name__,
            ) from None
        except httpx.TransportError as error:
            raise TransientServiceError(
                f"ARM call to {action} {target.label} failed to connect",
                service=ARM_SERVICE,
                resource=target.resource_id,
                error=type(error).__name__,
            ) from None
        status = response.status_code
        logger.info("ARM %s %s -> %d", method, target.label, status)
        if 200 <= status < 300 or status in accept:
            return response
        self._raise_for(response, target, action)
        raise AssertionError("unreachable")

    async def json(
        self,
        method: str,
        path_or_url: str,
        api_version: str | None,
        target: ArmTarget,
        *,
        action: str,
        body: Any = None,
    ) -> dict[str, Any]:
        response = await self.request(method, path_or_url, api_version, target, action=action, body=body)
        return _json_object(response)

    def scrub(self, text: str, limit: int = 300) -> str:
        """A service's message made safe for logs: the secret (if echoed) removed, length capped."""
        if self._redact is not None:
            text = text.replace(self._redact.reveal(), "***")
        return text if len(text) <= limit else text[: limit - 3] + "..."

    def _raise_for(self, response: httpx.Response, target: ArmTarget, action: str) -> None:
        status = response.status_code
        code, message = arm_error(response)
        message = self.scrub(message)
        what = f"ARM refused to {action} {target.label}"
        context: dict[str, Any] = {"service": ARM_SERVICE, "status": status, "code": code}
        if status == 429:
            raise ThrottledError(
                f"ARM throttled the call to {action} {target.label}",
                retry_after=retry_after_seconds(response.headers),
                resource=target.resource_id,
                **context,
            )
        if status >= 500 or status in (408, 409):
            # 409 from ARM is almost always "another operation is in progress on this resource".
            raise TransientServiceError(
                f"{what} for now: {status} {code or 'error'}: {message}",
                resource=target.resource_id,
                **context,
            )
        if status == 403:
            alternative = f" ({target.role_note})" if target.role_note else ""
            raise RotationError(
                f"Access denied to {target.label} ({target.resource_id}): the rotator's identity needs the "
                f"'{target.role}' role on it{alternative}",
                step=target.step,
                code=code or "AuthorizationFailed",
            )
        if status == 401:
            raise ExternalServiceError(
                f"ARM did not accept the rotator's token to {action} {target.label}: {message}",
                resource=target.resource_id,
                **context,
            )
        if status == 404:
            raise RotationError(
                f"{target.label} was not found ({target.resource_id})",
                step=target.step,
                code=code or "ResourceNotFound",
            )
        raise RotationError(
            f"{what}: {code or status}: {message}", step=target.step, code=code or str(status)
        )

    # ----------------------------------------------------------------- long-running operations

    async def wait(self, response: httpx.Response, target: ArmTarget, *, action: str) -> httpx.Response:
        """Follow a 201/202 answer to its end; returns the final response (the first if synchronous)."""
        if response.status_code not in (201, 202):
            return response
        async_url = response.headers.get("Azure-AsyncOperation")
        location = response.headers.get("Location")
        poll_url = async_url or location
        if not poll_url:
            return response
        self._check_origin(poll_url)
        deadline = time.monotonic() + self._lro_timeout
        current = response
        while True:
            delay = retry_after_seconds(current.headers)
            delay = self._default_poll_delay if delay is None else delay
            delay = min(delay, self._max_poll_delay)
            if time.monotonic() + delay > deadline:
                raise TransientServiceError(
                    f"ARM is still working to {action} {target.label} after {self._lro_timeout:.0f}s",
                    service=ARM_SERVICE,
                    resource=target.resource_id,
                )
            await self._services.sleep(delay)
            current = await self.request("GET", poll_url, None, target, action=f"follow {action}")
            if async_url:
                payload = _json_object(current)
                state = str(payload.get("status") or "").lower()
                if state in _ASYNC_DONE:
                    return current
                if state in _ASYNC_FAILED:
                    error = obj(payload.get("error"))
                    code = str(error.get("code") or state.capitalize())
                    message = self.scrub(str(error.get("message") or ""))
                    raise RotationError(
                        f"ARM could not {action} {target.label}: {code}: {message}".rstrip(": "),
                        step=target.step,
                        code=code,
                    )
            elif current.status_code != 202:
                return current


def obj(value: Any) -> dict[str, Any]:
    """A JSON value narrowed to an object (``{}`` for anything else)."""
    return value if isinstance(value, dict) else {}


def _json_object(response: httpx.Response) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


# --------------------------------------------------------------------------- the connection plugin


@dataclass(frozen=True)
class ConnectionShape:
    """How a connection holds its parameters, read from a GET (secret values are never in it)."""

    kind: str  # "parameterValues" | "parameterValueSet"
    set_name: str | None
    non_secret: dict[str, Any]  # parameter -> plain value, keys spelled as the connection spells them
    secret_key: str

    def client_id(self) -> str | None:
        value = _lookup(self.non_secret, "token:clientid")
        return str(value).strip() if value not in (None, "") else None


def _lookup(mapping: dict[str, Any], lowered: str) -> Any:
    return next((value for key, value in mapping.items() if key.lower() == lowered), None)


def _plain(value: Any) -> Any:
    # parameterValueSet wraps each value as {"value": ...}; parameterValues holds it bare.
    if isinstance(value, dict) and "value" in value:
        return value["value"]
    return value


def _is_secret_parameter(name: str) -> bool:
    return name.lower() == "token:clientsecret"


def read_shape(properties: dict[str, Any]) -> ConnectionShape:
    keys: list[str] = []
    value_set = properties.get("parameterValueSet")
    if isinstance(value_set, dict) and value_set.get("name"):
        values = obj(value_set.get("values"))
        keys = list(values)
        non_secret = {k: _plain(v) for k, v in values.items() if not _is_secret_parameter(k)}
        # Should a GET list the set's non-secret values separately, they belong to the set as well.
        for key, value in obj(properties.get("nonSecretParameterValues")).items():
            if not _is_secret_parameter(key) and _lookup(non_secret, key.lower()) is None:
                non_secret[key] = value
        kind, set_name = "parameterValueSet", str(value_set["name"])
    else:
        non_secret = {}
        for source in (properties.get("nonSecretParameterValues"), properties.get("parameterValues")):
            if isinstance(source, dict):
                keys.extend(source)
                for key, value in source.items():
                    if not _is_secret_parameter(key):
                        non_secret.setdefault(key, value)
        kind, set_name = "parameterValues", None
    secret_key = next((k for k in keys if _is_secret_parameter(k)), "token:clientSecret")
    return ConnectionShape(kind, set_name, non_secret, secret_key)


def connection_status(properties: dict[str, Any]) -> tuple[str, str | None]:
    """The connection's status, and its first error (code: message) if it reports one."""
    statuses = properties.get("statuses") if isinstance(properties.get("statuses"), list) else []
    first = obj(statuses[0]) if statuses else {}
    status = str(properties.get("overallStatus") or first.get("status") or "Unknown")
    error = first.get("error") if isinstance(first.get("error"), dict) else None
    detail = f"{error.get('code') or 'Error'}: {error.get('message') or ''}".rstrip(": ") if error else None
    return status, detail


class LogicAppConnectionPlugin:
    kind = "logicAppConnection"

    def __init__(self, *, lro_timeout: float = 120.0) -> None:
        self._lro_timeout = lro_timeout

    def check(self, settings: Any, app: ApplicationConfig) -> list[FieldProblem]:
        return []

    def describe(self, settings: Any, app: ApplicationConfig) -> str:
        return (
            f"update the service-principal secret of Logic App API connection "
            f"'{resource_name(settings.resource_id)}' (only if it signs in as this application)"
        )

    def _target(self, settings: LogicAppConnectionIntegration, step: str = "deploy") -> ArmTarget:
        return ArmTarget(
            settings.resource_id,
            f"API connection '{resource_name(settings.resource_id)}'",
            LOGIC_APP_CONTRIBUTOR,
            step,
            role_note="or 'Contributor'",
        )

    async def deploy(self, context: DeployContext) -> DeployOutcome:
        settings: LogicAppConnectionIntegration = context.settings
        client = ArmClient(context.services, redact=context.secret, lro_timeout=self._lro_timeout)
        target = self._target(settings)
        connection = await client.json(
            "GET", settings.resource_id, CONNECTIONS_API_VERSION, target, action="read"
        )
        properties = obj(connection.get("properties"))
        shape = read_shape(properties)
        name = resource_name(settings.resource_id)
        self._check_owner(shape, context.app, name)
        api = obj(properties.get("api"))
        if not api.get("id") or not connection.get("location"):
            raise RotationError(
                f"API connection '{name}' has no api.id or location to write back",
                step="deploy",
                code="ConnectionUnreadable",
            )
        body = self._put_body(connection, properties, shape, api, context.secret)
        response = await client.request(
            "PUT", settings.resource_id, CONNECTIONS_API_VERSION, target, action="update", body=body
        )
        await client.wait(response, target, action="update")
        described = f"{shape.kind} '{shape.set_name}'" if shape.set_name else shape.kind
        return DeployOutcome(
            f"updated the client secret of API connection '{name}' ({described})",
            details={"connection": name, "parameterShape": shape.kind, "parameterSet": shape.set_name},
        )

    @staticmethod
    def _check_owner(shape: ConnectionShape, app: ApplicationConfig, name: str) -> None:
        client_id = shape.client_id()
        if client_id is None:
            raise RotationError(
                f"API connection '{name}' has no service-principal client id parameter (token:clientId); "
                "only connections that sign in with this application's client secret can be updated",
                step="deploy",
                code="ConnectionNotServicePrincipal",
            )
        if not hmac.compare_digest(client_id.lower(), str(app.app_id).lower()):
            raise RotationError(
                f"API connection '{name}' signs in as application {client_id}, not {app.app_id}; "
                "it was left unchanged",
                step="deploy",
                code="ConnectionClientMismatch",
            )

    @staticmethod
    def _put_body(
        connection: dict[str, Any],
        properties: dict[str, Any],
        shape: ConnectionShape,
        api: dict[str, Any],
        secret: SecretValue,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "displayName": properties.get("displayName") or resource_name(str(connection.get("id", ""))),
            "api": {"id": api["id"]},
            "customParameterValues": properties.get("customParameterValues") or {},
        }
        if shape.kind == "parameterValueSet":
            values: dict[str, Any] = {key: {"value": value} for key, value in shape.non_secret.items()}
            values[shape.secret_key] = {"value": secret.reveal()}
            out["parameterValueSet"] = {"name": shape.set_name, "values": values}
        else:
            parameters = dict(shape.non_secret)
            parameters[shape.secret_key] = secret.reveal()
            out["parameterValues"] = parameters
        body: dict[str, Any] = {"location": connection["location"], "properties": out}
        for key in ("kind", "tags"):
            if connection.get(key):
                body[key] = connection[key]
        return body

    async def verify(self, context: DeployContext) -> None:
        settings: LogicAppConnectionIntegration = context.settings
        client = ArmClient(context.services, redact=context.secret)
        connection = await client.json(
            "GET",
            settings.resource_id,
            CONNECTIONS_API_VERSION,
            self._target(settings, "verify"),
            action="read",
        )
        properties = obj(connection.get("properties"))
        status, detail = connection_status(properties)
        if status.lower() != "connected":
            suffix = f": {client.scrub(detail)}" if detail else ""
            raise RotationError(
                f"API connection '{resource_name(settings.resource_id)}' reports status '{status}' after the "
                f"update{suffix}",
                step="verify",
                code="ConnectionNotConnected",
            )


PLUGIN = LogicAppConnectionPlugin()
