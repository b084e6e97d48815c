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

ARM calls go through ``shared.adapters.arm.ArmClient``.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from shared.adapters.arm import ArmClient, ArmTarget, obj, resource_name
from shared.domain.fields import ConnectionResourceId, IntegrationBase
from shared.errors import (
    FieldProblem,
    RotationError,
)
from shared.integrations.base import DeployContext, DeployOutcome, WriteOnlyField

if TYPE_CHECKING:
    from shared.domain.models import ApplicationConfig
    from shared.domain.secret import SecretValue

logger = logging.getLogger("rotator.integrations.arm")

ARM_SERVICE = "arm"
CONNECTIONS_API_VERSION = "2016-06-01"
# Built-in role whose actions include Microsoft.Web/connections/* (Azure built-in roles, Integration).
LOGIC_APP_CONTRIBUTOR = "Logic App Contributor"
_ASYNC_DONE = {"succeeded"}
_ASYNC_FAILED = {"failed", "canceled", "cancelled"}


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


class LogicAppConnectionIntegration(IntegrationBase):
    kind: Literal["logicAppConnection"]
    resource_id: ConnectionResourceId


class LogicAppConnectionPlugin:
    kind = "logicAppConnection"
    settings_model = LogicAppConnectionIntegration
    write_only: tuple[WriteOnlyField, ...] = ()
    troubleshooting: tuple[str, ...] = (
        "Logic App connection: check that the API connection resource still exists and that the rotator's "
        "identity may write it (Contributor on the connection).",
        "Open the connection in the portal: a connection whose status is Error must be fixed or re-created.",
    )

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
