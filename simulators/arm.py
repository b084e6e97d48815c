"""Azure Resource Manager simulator (HTTPS): the parts the ARM-based integrations use.

Resources (resource ids are case-insensitive, as in ARM; ``api-version`` is required on every call):

* ``Microsoft.Web/connections`` (Logic App API connections): GET / PUT / PATCH (tags). GET never shows
  the secret parameter: an older connection lists its non-secret values in ``nonSecretParameterValues``,
  a newer one inside ``parameterValueSet`` (``{"name", "values": {key: {"value"}}}``). PUT replaces the
  parameters; a parameter the connector does not define (``allowed_parameters``) is refused with 400
  ``ParameterNotDefined`` as the real connectors do (Azure/logicapps#402). After a PUT the connection
  reports ``Connected`` when a non-empty client secret was set, ``Error`` otherwise or when the
  ``connection_error`` switch is on (the simulator cannot ask Entra whether the secret is right).
* ``Microsoft.Web/sites`` and ``/slots/{slot}``: ``POST config/appsettings/list``, ``PUT config/appsettings``
  (replaces the whole set), ``POST restart``, ``POST config/configreferences/appsettings/refresh``,
  ``GET config/configreferences/appsettings[/{name}]``. ``@Microsoft.KeyVault(...)`` references resolve
  against the stack's Key Vault simulators (by ``SecretUri`` host:port or by ``VaultName``); like App
  Service, a resolved value is cached until a refresh, a restart or any settings change.
* ``Microsoft.Automation/automationAccounts``: ``GET runbooks/{name}`` and ``PUT`` / ``GET jobs/{name}``.
  A job is ``New`` then ``Running`` and reaches the outcome fixed at creation (``job_outcome`` switch,
  default ``Completed``) after ``job_seconds``. Parameter values are decoded as JSON (as Automation does).
* Long-running PUTs when the ``lro`` switch is ``"azure-async"`` (201 + ``Azure-AsyncOperation``) or
  ``"location"`` (202 + ``Location``): the change is applied when the operation succeeds, after
  ``lro_polls`` polls; ``lro_fail`` makes it end ``Failed`` without applying anything.

Auth: bearer tokens from the stack's ``TokenIssuer`` for ``https://management.azure.com`` (or
``https://management.core.windows.net``, or this server's own URL: the app derives its scope from
``ROTATOR_ARM_URL``). Errors use ARM's ``{"error": {"code", "message"}}``.

Switches: ``deny_access`` (403 ``AuthorizationFailed``; ``true`` or a regular expression searched in
the resource path), ``connection_error``, ``lro``, ``lro_polls``, ``lro_retry_after``, ``lro_fail``,
``job_outcome``, ``job_seconds``, ``kv_reference_status`` (force a reference status such as
``AccessToKeyVaultDenied``), and the base ``throttle`` (429 + ``Retry-After``), ``fail_next`` (5xx) and
``latency_seconds``. Everything held, secrets included, is visible in ``state()`` / ``GET /_sim/state``.
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .base import (
    FaultRule,
    JsonDict,
    SimClock,
    SimHTTPError,
    SimRequest,
    SimResponse,
    SimulatorServer,
    TokenIssuer,
    cast_json_dict,
    empty_response,
    json_response,
)

ARM_RESOURCE = "https://management.azure.com"
ARM_AUDIENCES = (ARM_RESOURCE, "https://management.core.windows.net")
_RG = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers"
_CONNECTION = _RG + r"/Microsoft\.Web/connections/(?P<name>[^/]+)"
_SITE = _RG + r"/Microsoft\.Web/sites/(?P<site>[^/]+)(?:/slots/(?P<slot>[^/]+))?"
_ACCOUNT = _RG + r"/Microsoft\.Automation/automationAccounts/(?P<account>[^/]+)"
_ROLE_ASSIGNMENT = (
    r"(?P<scope>/subscriptions/.+?)/providers/Microsoft\.Authorization/roleAssignments/(?P<name>[^/]+)"
)
_OPERATIONS = r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Simulator/(?P<kind>operations|operationResults)/(?P<op>[^/]+)"
_KV_PREFIX = "@microsoft.keyvault("
JOB_FAILURES = ("Failed", "Stopped", "Suspended", "Blocked")


def _key(resource_id: str) -> str:
    return resource_id.rstrip("/").lower()


def _is_secret_parameter(name: str) -> bool:
    return "secret" in name.lower() or "password" in name.lower()


def _find(mapping: Mapping[str, Any], name: str) -> str | None:
    return next((key for key in mapping if key.lower() == name.lower()), None)


# --------------------------------------------------------------------------- state


@dataclass
class Connection:
    resource_id: str
    location: str
    api_id: str
    display_name: str
    shape: str  # "parameterValues" | "parameterValueSet"
    set_name: str | None
    parameters: dict[str, str]  # everything, secret included, keys as sent
    allowed_parameters: set[str]  # lower-case names the connector defines
    kind: str | None = "V1"
    tags: dict[str, str] = field(default_factory=dict)
    status: str = "Connected"
    error: JsonDict | None = None
    puts: int = 0
    changed: float = field(default_factory=time.time)

    @property
    def secret(self) -> str | None:
        key = next((k for k in self.parameters if k.lower() == "token:clientsecret"), None)
        return self.parameters.get(key) if key else None

    def state_json(self) -> JsonDict:
        return {
            "resourceId": self.resource_id,
            "shape": self.shape,
            "setName": self.set_name,
            "parameters": dict(self.parameters),
            "status": self.status,
            "error": self.error,
            "puts": self.puts,
            "kind": self.kind,
            "tags": dict(self.tags),
        }


@dataclass
class Reference:
    status: str
    vault_name: str | None = None
    secret_name: str | None = None
    secret_version: str | None = None  # pinned in the reference
    active_version: str | None = None
    value: str | None = None  # what the running app sees
    details: str = ""


@dataclass
class Site:
    resource_id: str
    location: str
    settings: dict[str, str]
    references: dict[str, Reference] = field(default_factory=dict)  # by setting name
    restarts: int = 0
    recycles: int = 0  # restarts caused by configuration changes
    refreshes: int = 0
    setting_writes: int = 0

    def effective(self) -> dict[str, str]:
        """The environment the running app sees (references replaced by their cached values)."""
        values = dict(self.settings)
        for name, reference in self.references.items():
            if name in values:
                values[name] = reference.value if reference.value is not None else values[name]
        return values

    def state_json(self) -> JsonDict:
        return {
            "resourceId": self.resource_id,
            "settings": dict(self.settings),
            "effective": self.effective(),
            "references": {k: vars(v).copy() for k, v in self.references.items()},
            "restarts": self.restarts,
            "recycles": self.recycles,
            "refreshes": self.refreshes,
            "settingWrites": self.setting_writes,
        }


@dataclass
class Runbook:
    name: str
    parameters: dict[str, JsonDict]
    state: str = "Published"
    runbook_type: str = "PowerShell"


@dataclass
class Job:
    name: str
    job_id: str
    runbook: str
    parameters: dict[str, Any]  # decoded values, secret included
    raw_parameters: dict[str, str]
    created: float
    outcome: str
    seconds: float
    exception: str | None = None

    def status(self) -> str:
        elapsed = time.monotonic() - self.created
        if elapsed >= self.seconds:
            return self.outcome
        return "Running" if elapsed >= self.seconds / 4 else "New"


@dataclass
class AutomationAccount:
    resource_id: str
    location: str
    runbooks: dict[str, Runbook] = field(default_factory=dict)  # by lower-case name
    jobs: dict[str, Job] = field(default_factory=dict)  # by lower-case name


@dataclass
class Operation:
    op_id: str
    apply: Callable[[], JsonDict | None]
    polls_left: int
    fail: bool
    done: bool = False
    result: JsonDict | None = None


# --------------------------------------------------------------------------- the server


class ArmSimulator(SimulatorServer):
    kind = "arm"

    def __init__(
        self,
        *,
        issuer: TokenIssuer,
        ssl_context: ssl.SSLContext | None,
        keyvaults: Mapping[str, Any] | None = None,
        clock: SimClock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "arm",
    ) -> None:
        super().__init__(name=name, host=host, port=port, ssl_context=ssl_context, clock=clock)
        self.issuer = issuer
        # Key Vault simulators by name (VaultName=...) and, through their ports, by SecretUri.
        self.keyvaults: Mapping[str, Any] = keyvaults if keyvaults is not None else {}
        self.connections: dict[str, Connection] = {}
        self.sites: dict[str, Site] = {}
        self.accounts: dict[str, AutomationAccount] = {}
        self._operations: dict[str, Operation] = {}
        self._set_defaults()

        self.route("GET", "(?i)" + _CONNECTION, self._get_connection)
        self.route("PUT", "(?i)" + _CONNECTION, self._put_connection)
        self.route("PATCH", "(?i)" + _CONNECTION, self._patch_connection)
        self.route("POST", "(?i)" + _SITE + "/config/appsettings/list", self._list_settings)
        self.route("PUT", "(?i)" + _SITE + "/config/appsettings", self._put_settings)
        self.route("POST", "(?i)" + _SITE + "/restart", self._restart)
        self.route("POST", "(?i)" + _SITE + "/config/configreferences/appsettings/refresh", self._refresh)
        self.route("GET", "(?i)" + _SITE + "/config/configreferences/appsettings", self._list_references)
        self.route(
            "GET", "(?i)" + _SITE + "/config/configreferences/appsettings/(?P<key>[^/]+)", self._get_reference
        )
        self.route("GET", "(?i)" + _ACCOUNT + "/runbooks/(?P<runbook>[^/]+)", self._get_runbook)
        self.route("PUT", "(?i)" + _ACCOUNT + "/jobs/(?P<job>[^/]+)", self._put_job)
        self.route("GET", "(?i)" + _ACCOUNT + "/jobs/(?P<job>[^/]+)", self._get_job)
        self.route("GET", "(?i)" + _OPERATIONS, self._get_operation)
        self.route("PUT", "(?i)" + _ROLE_ASSIGNMENT, self._put_role_assignment)

        # Seeding over HTTP, so `make run` (simulators in their own process) can set up each kind.
        self.admin_route("POST", "/connections", self._admin_add_connection)
        self.admin_route("POST", "/sites", self._admin_add_site)
        self.admin_route("POST", "/automationAccounts", self._admin_add_account)
        self.admin_route("POST", "/runbooks", self._admin_add_runbook)

    def seed(self, data: Mapping[str, Any]) -> None:
        """Load ``{"connections": [{"resourceId", "clientId", "secret"?, "tenantId"?, "api"?}],
        "sites": [{"resourceId", "settings"?}], "automationAccounts": [{"resourceId",
        "runbooks"?: [{"name", "parameters"?}]}]}``."""
        for spec in data.get("connections") or []:
            self._connection_from(spec)
        for spec in data.get("sites") or []:
            self.add_site(str(spec["resourceId"]), spec.get("settings") or {})
        for spec in data.get("automationAccounts") or []:
            self.add_automation_account(str(spec["resourceId"]))
            for runbook in spec.get("runbooks") or []:
                self.add_runbook(str(spec["resourceId"]), str(runbook["name"]), runbook.get("parameters"))

    def _connection_from(self, spec: Mapping[str, Any]) -> Connection:
        return self.add_connection(
            str(spec["resourceId"]),
            client_id=str(spec["clientId"]),
            secret=spec.get("secret", "old-connection-secret"),
            tenant_id=spec.get("tenantId"),
            api=str(spec.get("api", "keyvault")),
        )

    def _admin_add_connection(self, request: SimRequest) -> SimResponse:
        connection = self._connection_from(cast_json_dict(request.json()))
        return json_response(201, {"resourceId": connection.resource_id})

    def _admin_add_site(self, request: SimRequest) -> SimResponse:
        body = cast_json_dict(request.json())
        site = self.add_site(str(body["resourceId"]), body.get("settings") or {})
        return json_response(201, {"resourceId": site.resource_id})

    def _admin_add_account(self, request: SimRequest) -> SimResponse:
        body = cast_json_dict(request.json())
        account = self.add_automation_account(str(body["resourceId"]))
        return json_response(201, {"resourceId": account.resource_id})

    def _admin_add_runbook(self, request: SimRequest) -> SimResponse:
        body = cast_json_dict(request.json())
        self.add_runbook(str(body["accountId"]), str(body["name"]), body.get("parameters"))
        return json_response(201, {"accountId": body["accountId"], "name": body["name"]})

    def _put_role_assignment(self, request: SimRequest) -> SimResponse:
        """Record a role assignment; one on a simulated vault lets its principal in there."""
        scope, name = request.params["scope"], request.params["name"]
        if self.deny_role_assignments:
            return self.arm_error(
                403,
                "AuthorizationFailed",
                f"The client '{request.principal}' does not have authorization to perform action "
                f"'Microsoft.Authorization/roleAssignments/write' over scope '{scope}'.",
            )
        properties = self._body(request).get("properties")
        if (
            not isinstance(properties, dict)
            or not properties.get("roleDefinitionId")
            or not properties.get("principalId")
        ):
            return self.arm_error(
                400, "InvalidRoleAssignmentRequest", "roleDefinitionId and principalId are required."
            )
        with self._lock:
            if name.lower() in self.role_assignments:
                return self.arm_error(409, "RoleAssignmentExists", "The role assignment already exists.")
            self.role_assignments[name.lower()] = {"scope": scope, **properties}
        match = re.search(r"/providers/Microsoft\.KeyVault/vaults/(?P<vault>[^/]+)$", scope, re.IGNORECASE)
        vault = self.keyvaults.get(match.group("vault")) if match else None
        if vault is not None:
            vault.deny_access = False
        body = {
            "id": f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}",
            "name": name,
            "properties": {"scope": scope, **properties},
        }
        return json_response(201, body)

    def _set_defaults(self) -> None:
        self.role_assignments: dict[str, JsonDict] = {}
        self.deny_role_assignments = False
        self.deny_access: bool | str = False
        self.connection_error = False
        self.lro: str | None = None
        self.lro_polls = 1
        self.lro_retry_after = 1
        self.lro_fail = False
        self.job_outcome = "Completed"
        self.job_seconds = 0.2
        self.kv_reference_status: str | None = None

    # ----------------------------------------------------------------- Python admin API

    def add_connection(
        self,
        resource_id: str,
        *,
        client_id: str,
        secret: str | None = "old-connection-secret",  # noqa: S107 - simulated old value
        tenant_id: str | None = None,
        shape: str = "parameterValues",
        set_name: str = "oauthSP",
        api: str = "keyvault",
        location: str = "westeurope",
        grant_type: bool = True,
        key_spelling: Mapping[str, str] | None = None,
        extra_parameters: Mapping[str, str] | None = None,
        kind: str | None = "V1",
    ) -> Connection:
        """A service-principal connection. ``key_spelling`` renames keys (e.g. ``token:tenantId``)."""
        spelling = {"clientId": "token:clientId", "secret": "token:clientSecret", "tenant": "token:TenantId"}
        spelling.update(key_spelling or {})
        parameters: dict[str, str] = {spelling["clientId"]: client_id}
        if secret is not None:
            parameters[spelling["secret"]] = secret
        if tenant_id is not None:
            parameters[spelling["tenant"]] = tenant_id
        if grant_type and shape == "parameterValues":
            parameters["token:grantType"] = "client_credentials"
        parameters.update(extra_parameters or {})
        allowed = {k.lower() for k in parameters} | {spelling["secret"].lower()}
        sub = resource_id.split("/")[2]
        connection = Connection(
            resource_id=resource_id,
            location=location,
            api_id=f"/subscriptions/{sub}/providers/Microsoft.Web/locations/{location}/managedApis/{api}",
            display_name=resource_id.rsplit("/", 1)[-1],
            shape=shape,
            set_name=set_name if shape == "parameterValueSet" else None,
            parameters=parameters,
            allowed_parameters=allowed,
            kind=kind,
        )
        connection.status = "Connected" if secret else "Error"
        with self._lock:
            self.connections[_key(resource_id)] = connection
        return connection

    def connection(self, resource_id: str) -> Connection:
        with self._lock:
            return self.connections[_key(resource_id)]

    def add_site(
        self, resource_id: str, settings: Mapping[str, str] | None = None, *, location: str = "westeurope"
    ) -> Site:
        site = Site(resource_id, location, dict(settings or {}))
        with self._lock:
            self._resolve_all(site)
            self.sites[_key(resource_id)] = site
        return site

    def site(self, resource_id: str) -> Site:
        with self._lock:
            return self.sites[_key(resource_id)]

    def add_automation_account(self, resource_id: str, *, location: str = "westeurope") -> AutomationAccount:
        account = AutomationAccount(resource_id, location)
        with self._lock:
            self.accounts[_key(resource_id)] = account
        return account

    def add_runbook(
        self,
        account_id: str,
        name: str,
        parameters: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        state: str = "Published",
    ) -> Runbook:
        """``parameters``: ``{"ClientSecret": {"type": "System.String", "isMandatory": True}, ...}``."""
        runbook = Runbook(name, {k: dict(v) for k, v in (parameters or {}).items()}, state)
        with self._lock:
            self.accounts[_key(account_id)].runbooks[name.lower()] = runbook
        return runbook

    def jobs(self, account_id: str) -> list[Job]:
        with self._lock:
            return list(self.accounts[_key(account_id)].jobs.values())

    # ----------------------------------------------------------------- switches, state, reset

    def apply_switch(self, name: str, value: Any) -> bool:
        if name == "deny_role_assignments":
            self.deny_role_assignments = bool(value)
        elif name == "deny_access":
            self.deny_access = value if isinstance(value, str) else bool(value)
        elif name == "connection_error":
            self.connection_error = bool(value)
        elif name == "lro":
            if value not in (None, "", "azure-async", "location"):
                raise ValueError("lro: expected null, 'azure-async' or 'location'")
            self.lro = value or None
        elif name == "lro_polls":
            self.lro_polls = int(value)
        elif name == "lro_retry_after":
            self.lro_retry_after = int(value)
        elif name == "lro_fail":
            self.lro_fail = bool(value)
        elif name == "job_outcome":
            if value not in ("Completed", *JOB_FAILURES):
                raise ValueError(f"job_outcome: expected Completed or one of {JOB_FAILURES}")
            self.job_outcome = str(value)
        elif name == "job_seconds":
            self.job_seconds = float(value)
        elif name == "kv_reference_status":
            self.kv_reference_status = str(value) if value else None
        else:
            return False
        return True

    def switches(self) -> JsonDict:
        data = super().switches()
        data.update(
            {
                "deny_access": self.deny_access,
                "connection_error": self.connection_error,
                "lro": self.lro,
                "lro_polls": self.lro_polls,
                "lro_retry_after": self.lro_retry_after,
                "lro_fail": self.lro_fail,
                "job_outcome": self.job_outcome,
                "job_seconds": self.job_seconds,
                "kv_reference_status": self.kv_reference_status,
            }
        )
        return data

    def state(self) -> JsonDict:
        with self._lock:
            return {
                "connections": {c.resource_id: c.state_json() for c in self.connections.values()},
                "sites": {s.resource_id: s.state_json() for s in self.sites.values()},
                "automationAccounts": {
                    a.resource_id: {
                        "runbooks": {
                            r.name: {"parameters": r.parameters, "state": r.state}
                            for r in a.runbooks.values()
                        },
                        "jobs": {
                            j.name: {"runbook": j.runbook, "status": j.status(), "parameters": j.parameters}
                            for j in a.jobs.values()
                        },
                    }
                    for a in self.accounts.values()
                },
                "switches": self.switches(),
            }

    def reset(self) -> None:
        with self._lock:
            super().reset()
            self.connections.clear()
            self.sites.clear()
            self.accounts.clear()
            self._operations.clear()
            self._set_defaults()

    def endpoints(self) -> JsonDict:
        return {"arm_url": self.url}

    # ----------------------------------------------------------------- protocol helpers

    @staticmethod
    def arm_error(
        status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> SimResponse:
        return json_response(status, {"error": {"code": code, "message": message}}, headers)

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        # Resource Manager's own audiences only: a token for the host's URL is refused, as in Azure.
        check = self.issuer.check(request.header("authorization"), list(ARM_AUDIENCES))
        if not check.ok or check.token is None:
            if check.error == "missing":
                return self.arm_error(
                    401,
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing.",
                )
            message = {
                "expired": "The access token expiry UTC time is earlier than current UTC time.",
                "audience": "The access token has been obtained for wrong audience or resource.",
            }.get(check.error or "", "The access token is invalid.")
            return self.arm_error(401, "InvalidAuthenticationToken", message)
        request.principal = check.token.principal
        if not request.arg("api-version"):
            return self.arm_error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        denied = self.deny_access is True or (
            isinstance(self.deny_access, str) and re.search(self.deny_access, request.path, re.IGNORECASE)
        )
        if denied and "/providers/microsoft.simulator/" not in request.path.lower():
            principal = check.token.principal
            return self.arm_error(
                403,
                "AuthorizationFailed",
                f"The client '{principal}' with object id '{principal}' does not have authorization to perform "
                f"action '{_action(request)}' over scope '{_scope(request.path)}' or the scope is invalid. If "
                "access was recently granted, please refresh your credentials.",
            )
        return None

    def fault_response(self, request: SimRequest, rule: FaultRule) -> SimResponse:
        headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
        if rule.status == 429:
            return self.arm_error(
                429,
                "TooManyRequests",
                "The request is being throttled as the limit has been reached for operation type - Write_ObservationWindow_00:05:00.",
                headers,
            )
        code = {
            500: "InternalServerError",
            502: "BadGateway",
            503: "ServiceUnavailable",
            504: "GatewayTimeout",
        }
        return self.arm_error(
            rule.status,
            code.get(rule.status, "InternalServerError"),
            "The server encountered an internal error.",
            headers,
        )

    def not_found(self, request: SimRequest) -> SimResponse:
        return self.arm_error(
            404, "NotFound", f"No HTTP resource was found that matches the request URI '{request.path}'."
        )

    def _resource_not_found(self, kind: str, name: str, request: SimRequest) -> SimHTTPError:
        group = request.params.get("rg", "?")
        return SimHTTPError(
            self.arm_error(
                404,
                "ResourceNotFound",
                f"The Resource '{kind}/{name}' under resource group '{group}' was not found. For more details "
                "please go to https://aka.ms/ARMResourceNotFoundFix",
            )
        )

    @staticmethod
    def _body(request: SimRequest) -> JsonDict:
        try:
            return cast_json_dict(request.json())
        except ValueError as error:
            raise SimHTTPError(
                ArmSimulator.arm_error(
                    400, "InvalidRequestContent", f"The request content was invalid: {error}"
                )
            ) from None

    def _long_running(
        self, request: SimRequest, apply: Callable[[], JsonDict | None], status: int
    ) -> SimResponse:
        """Apply now, or (``lro`` switch) answer 201/202 and apply when the operation succeeds."""
        if self.lro is None:
            result = apply()
            return json_response(status, result) if result is not None else empty_response(status)
        op = Operation(uuid.uuid4().hex, apply, max(0, self.lro_polls), self.lro_fail)
        self._operations[op.op_id] = op
        sub = request.params.get("sub", "00000000-0000-0000-0000-000000000000")
        version = request.arg("api-version") or "2020-01-01"
        retry = {"Retry-After": str(self.lro_retry_after)}
        if self.lro == "azure-async":
            url = f"{request.base_url}/subscriptions/{sub}/providers/Microsoft.Simulator/operations/{op.op_id}?api-version={version}"
            return json_response(201, {"status": "InProgress"}, {"Azure-AsyncOperation": url, **retry})
        url = f"{request.base_url}/subscriptions/{sub}/providers/Microsoft.Simulator/operationResults/{op.op_id}?api-version={version}"
        return empty_response(202, {"Location": url, **retry})

    def _get_operation(self, request: SimRequest) -> SimResponse:
        op = self._operations.get(request.params["op"])
        if op is None:
            return self.arm_error(404, "OperationNotFound", "The operation was not found.")
        retry = {"Retry-After": str(self.lro_retry_after)}
        if not op.done and op.polls_left > 0:
            op.polls_left -= 1
            if request.params["kind"].lower() == "operations":
                return json_response(200, {"id": op.op_id, "status": "InProgress"}, retry)
            return empty_response(202, {"Location": request.base_url + request.raw_path, **retry})
        if not op.done:
            op.done = True
            if not op.fail:
                op.result = op.apply()
        if request.params["kind"].lower() == "operations":
            if op.fail:
                return json_response(
                    200,
                    {
                        "id": op.op_id,
                        "status": "Failed",
                        "error": {"code": "Conflict", "message": "The operation failed."},
                    },
                )
            return json_response(200, {"id": op.op_id, "status": "Succeeded"})
        if op.fail:
            return self.arm_error(409, "Conflict", "The operation failed.")
        return json_response(200, op.result) if op.result is not None else empty_response(204)

    # ----------------------------------------------------------------- connections

    def _connection_or_404(self, request: SimRequest) -> Connection:
        found = self.connections.get(_key(request.path))
        if found is None:
            raise self._resource_not_found("Microsoft.Web/connections", request.params["name"], request)
        return found

    def _connection_json(self, connection: Connection) -> JsonDict:
        non_secret = {k: v for k, v in connection.parameters.items() if not _is_secret_parameter(k)}
        status: JsonDict = {"status": connection.status}
        if connection.error:
            status.update({"target": "token", "error": connection.error})
        properties: JsonDict = {
            "displayName": connection.display_name,
            "statuses": [status],
            "overallStatus": connection.status,
            "customParameterValues": {},
            "createdTime": "2024-01-01T00:00:00Z",
            "changedTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(connection.changed)),
            "api": {
                "name": connection.api_id.rsplit("/", 1)[-1],
                "displayName": connection.api_id.rsplit("/", 1)[-1],
                "id": connection.api_id,
                "type": "Microsoft.Web/locations/managedApis",
            },
            "testLinks": [],
        }
        if connection.shape == "parameterValueSet":
            properties["parameterValueSet"] = {
                "name": connection.set_name,
                "values": {k: {"value": v} for k, v in non_secret.items()},
            }
        else:
            properties["nonSecretParameterValues"] = non_secret
        data: JsonDict = {
            "id": connection.resource_id,
            "name": connection.resource_id.rsplit("/", 1)[-1],
            "type": "Microsoft.Web/connections",
            "location": connection.location,
            "properties": properties,
        }
        if connection.kind:
            data["kind"] = connection.kind
        if connection.tags:
            data["tags"] = dict(connection.tags)
        return data

    def _get_connection(self, request: SimRequest) -> SimResponse:
        return json_response(200, self._connection_json(self._connection_or_404(request)))

    def _patch_connection(self, request: SimRequest) -> SimResponse:
        connection = self._connection_or_404(request)
        tags = self._body(request).get("tags")
        if isinstance(tags, dict):
            connection.tags = {str(k): str(v) for k, v in tags.items()}
        return json_response(200, self._connection_json(connection))

    def _put_connection(self, request: SimRequest) -> SimResponse:
        body = self._body(request)
        properties = body.get("properties")
        if not isinstance(properties, dict) or not body.get("location"):
            return self.arm_error(
                400, "InvalidRequestContent", "The request content must have 'location' and 'properties'."
            )
        api = properties.get("api")
        if not isinstance(api, dict) or not api.get("id"):
            return self.arm_error(
                400, "BadRequest", "The API connection must reference an API: 'properties.api.id'."
            )
        if "parameterValues" in properties and "parameterValueSet" in properties:
            return self.arm_error(
                400, "BadRequest", "Only one of parameterValues and parameterValueSet may be given."
            )
        existing = self.connections.get(_key(request.path))
        if "parameterValueSet" in properties:
            value_set = properties["parameterValueSet"]
            if not isinstance(value_set, dict) or not value_set.get("name"):
                return self.arm_error(400, "BadRequest", "parameterValueSet needs a 'name'.")
            values = value_set.get("values") or {}
            parameters = {
                str(k): str(v.get("value") if isinstance(v, dict) else v) for k, v in values.items()
            }
            shape, set_name = "parameterValueSet", str(value_set["name"])
        else:
            values = properties.get("parameterValues") or {}
            if not isinstance(values, dict):
                return self.arm_error(400, "BadRequest", "parameterValues must be an object.")
            parameters = {str(k): str(v) for k, v in values.items()}
            shape, set_name = "parameterValues", None
        if existing is not None:
            for name in parameters:
                if name.lower() not in existing.allowed_parameters:
                    return self.arm_error(
                        400,
                        "BadRequest",
                        "Input parameters are invalid. See details for more information. Details:errorCode: "
                        f"ParameterNotDefined. Message: Parameter '{name}' is not allowed on the connection "
                        f"since it was not defined as a connection parameter when the API was registered.",
                    )
        allowed = existing.allowed_parameters if existing else {k.lower() for k in parameters}
        connection = Connection(
            resource_id=existing.resource_id if existing else request.path,
            location=str(body["location"]),
            api_id=str(api["id"]),
            display_name=str(properties.get("displayName") or request.params["name"]),
            shape=shape,
            set_name=set_name,
            parameters=parameters,
            allowed_parameters=allowed,
            kind=body.get("kind") or (existing.kind if existing else None),
            tags={str(k): str(v) for k, v in (body.get("tags") or {}).items()},
            puts=(existing.puts if existing else 0) + 1,
        )
        if self.connection_error or not connection.secret:
            connection.status = "Error"
            connection.error = {
                "code": "Unauthorized",
                "message": "Failed to refresh access token for service: aadcertificate. Correlation Id=sim. "
                "The credentials of the connection are invalid.",
            }

        def apply() -> JsonDict:
            self.connections[_key(connection.resource_id)] = connection
            return self._connection_json(connection)

        return self._long_running(request, apply, 200 if existing else 201)

    # ----------------------------------------------------------------- sites

    def _site_or_404(self, request: SimRequest) -> Site:
        site_id = request.path.split("/config/")[0]
        for suffix in ("/restart",):
            if site_id.lower().endswith(suffix):
                site_id = site_id[: -len(suffix)]
        found = self.sites.get(_key(site_id))
        if found is None:
            kind = "Microsoft.Web/sites/slots" if request.params.get("slot") else "Microsoft.Web/sites"
            raise self._resource_not_found(
                kind, request.params.get("slot") or request.params["site"], request
            )
        return found

    def _settings_json(self, site: Site) -> JsonDict:
        return {
            "id": f"{site.resource_id}/config/appsettings",
            "name": "appsettings",
            "type": "Microsoft.Web/sites/config",
            "location": site.location,
            "properties": dict(site.settings),
        }

    def _list_settings(self, request: SimRequest) -> SimResponse:
        return json_response(200, self._settings_json(self._site_or_404(request)))

    def _put_settings(self, request: SimRequest) -> SimResponse:
        site = self._site_or_404(request)
        properties = self._body(request).get("properties")
        if not isinstance(properties, dict) or not all(isinstance(v, str) for v in properties.values()):
            return self.arm_error(400, "BadRequest", "'properties' must map setting names to string values.")
        lowered = [k.lower() for k in properties]
        if len(set(lowered)) != len(lowered):
            return self.arm_error(400, "BadRequest", "App setting names must be unique (case-insensitive).")

        def apply() -> JsonDict:
            site.settings = {str(k): str(v) for k, v in properties.items()}
            site.setting_writes += 1
            # Any configuration change restarts the app, which refetches every reference.
            site.recycles += 1
            self._resolve_all(site)
            return self._settings_json(site)

        return self._long_running(request, apply, 200)

    def _restart(self, request: SimRequest) -> SimResponse:
        site = self._site_or_404(request)
        site.restarts += 1
        self._resolve_all(site)
        return empty_response(200)

    def _reference_json(self, site: Site, name: str) -> JsonDict:
        reference = site.references[name]
        properties: JsonDict = {
            "reference": site.settings.get(name),
            "status": reference.status,
            "vaultName": reference.vault_name,
            "secretName": reference.secret_name,
            "secretVersion": reference.secret_version,
            "identityType": "SystemAssigned",
            "details": reference.details,
            "source": "KeyVault",
            "activeVersion": reference.active_version,
        }
        return {
            "id": f"{site.resource_id}/config/configreferences/appsettings/{name}",
            "name": name,
            "type": "Microsoft.Web/sites/config/configreferences",
            "location": site.location,
            "properties": {k: v for k, v in properties.items() if v is not None},
        }

    def _refresh(self, request: SimRequest) -> SimResponse:
        site = self._site_or_404(request)
        site.refreshes += 1
        self._resolve_all(site)
        return json_response(200, {"value": [self._reference_json(site, n) for n in site.references]})

    def _list_references(self, request: SimRequest) -> SimResponse:
        site = self._site_or_404(request)
        return json_response(200, {"value": [self._reference_json(site, n) for n in site.references]})

    def _get_reference(self, request: SimRequest) -> SimResponse:
        site = self._site_or_404(request)
        name = _find(site.references, request.params["key"])
        if name is None:
            return self.arm_error(
                404, "NotFound", f"App setting '{request.params['key']}' is not a Key Vault reference."
            )
        return json_response(200, self._reference_json(site, name))

    def _resolve_all(self, site: Site) -> None:
        site.references = {
            name: self._resolve(value)
            for name, value in site.settings.items()
            if value.strip().lower().startswith(_KV_PREFIX)
        }

    def _resolve(self, value: str) -> Reference:
        text = value.strip()
        fields: dict[str, str] = {}
        for part in text[len(_KV_PREFIX) : -1].split(";") if text.endswith(")") else []:
            key, sep, item = part.partition("=")
            if sep:
                fields[key.strip().lower()] = item.strip()
        vault = None
        if "secreturi" in fields:
            parsed = urlsplit(fields["secreturi"])
            segments = [s for s in parsed.path.split("/") if s]
            if len(segments) < 2 or segments[0].lower() != "secrets":
                return Reference("InvalidSyntax", details="The reference is not a valid secret URI.")
            name, version = segments[1], (segments[2] if len(segments) > 2 else None)
            vault = next((v for v in self.keyvaults.values() if _same_port(v, parsed.port)), None)
            vault_name = vault.name if vault is not None else parsed.hostname
        elif fields.get("vaultname") and fields.get("secretname"):
            vault_name, name, version = fields["vaultname"], fields["secretname"], fields.get("secretversion")
            vault = self.keyvaults.get(vault_name)
        else:
            return Reference(
                "InvalidSyntax", details="The reference has no SecretUri or VaultName/SecretName."
            )
        reference = Reference("Resolved", vault_name, name, version or None)
        if self.kv_reference_status:
            reference.status = self.kv_reference_status
            reference.details = f"Simulated status {self.kv_reference_status}."
            return reference
        if vault is None:
            reference.status, reference.details = "VaultNotFound", "The key vault could not be found."
            return reference
        versions = [v for v in vault.versions(name) if v.enabled]
        if not versions:
            reference.status, reference.details = "SecretNotFound", "The secret could not be found."
            return reference
        chosen = next((v for v in versions if v.version == version), None) if version else versions[-1]
        if chosen is None:
            reference.status, reference.details = (
                "SecretVersionNotFound",
                "The secret version could not be found.",
            )
            return reference
        reference.active_version, reference.value = chosen.version, chosen.value
        reference.details = "Reference has been successfully resolved."
        return reference

    # ----------------------------------------------------------------- automation

    def _account_or_404(self, request: SimRequest) -> AutomationAccount:
        account_id = request.path.split("/runbooks/")[0].split("/jobs/")[0]
        found = self.accounts.get(_key(account_id))
        if found is None:
            raise self._resource_not_found(
                "Microsoft.Automation/automationAccounts", request.params["account"], request
            )
        return found

    def _get_runbook(self, request: SimRequest) -> SimResponse:
        account = self._account_or_404(request)
        runbook = account.runbooks.get(request.params["runbook"].lower())
        if runbook is None:
            return self.arm_error(404, "NotFound", "The Runbook was not found.")
        return json_response(
            200,
            {
                "id": f"{account.resource_id}/runbooks/{runbook.name}",
                "name": runbook.name,
                "type": "Microsoft.Automation/AutomationAccounts/Runbooks",
                "location": account.location,
                "properties": {
                    "runbookType": runbook.runbook_type,
                    "state": runbook.state,
                    "logVerbose": False,
                    "logProgress": False,
                    "parameters": copy.deepcopy(runbook.parameters),
                },
            },
        )

    def _job_json(self, account: AutomationAccount, job: Job) -> JsonDict:
        status = job.status()
        return {
            "id": f"{account.resource_id}/jobs/{job.name}",
            "name": job.name,
            "type": "Microsoft.Automation/AutomationAccounts/Jobs",
            "properties": {
                "jobId": job.job_id,
                "runbook": {"name": job.runbook},
                "provisioningState": "Succeeded" if status in ("Completed", *JOB_FAILURES) else "Processing",
                "status": status,
                "statusDetails": "None",
                "exception": job.exception if status in JOB_FAILURES else None,
                # Like the real service: parameters are readable by anyone who can read jobs.
                "parameters": dict(job.raw_parameters),
                "runOn": "",
            },
        }

    def _put_job(self, request: SimRequest) -> SimResponse:
        account = self._account_or_404(request)
        name = request.params["job"]
        if name.lower() in account.jobs:
            return self.arm_error(409, "Conflict", f"A job with name '{name}' already exists.")
        properties = self._body(request).get("properties")
        if not isinstance(properties, dict) or not isinstance(properties.get("runbook"), dict):
            return self.arm_error(
                400, "BadRequest", "The job must name a runbook: 'properties.runbook.name'."
            )
        runbook = account.runbooks.get(str(properties["runbook"].get("name", "")).lower())
        if runbook is None:
            return self.arm_error(404, "NotFound", "The Runbook was not found.")
        if runbook.state.lower() == "new":
            return self.arm_error(400, "BadRequest", "The runbook has not been published.")
        raw = properties.get("parameters") or {}
        if not isinstance(raw, dict):
            return self.arm_error(400, "BadRequest", "'parameters' must be an object.")
        declared = {k.lower(): k for k in runbook.parameters}
        unknown = [k for k in raw if str(k).lower() not in declared]
        if unknown:
            return self.arm_error(
                400,
                "BadRequest",
                f"Invalid runbook parameters: {', '.join(sorted(map(str, unknown)))} not declared.",
            )
        given = {str(k).lower() for k in raw}
        missing = [
            k for k, spec in runbook.parameters.items() if spec.get("isMandatory") and k.lower() not in given
        ]
        if missing:
            return self.arm_error(
                400, "BadRequest", f"Missing mandatory runbook parameters: {', '.join(sorted(missing))}."
            )
        decoded: dict[str, Any] = {}
        for key, value in raw.items():
            try:
                decoded[declared[str(key).lower()]] = json.loads(value) if isinstance(value, str) else value
            except ValueError:
                decoded[declared[str(key).lower()]] = value  # not JSON: taken as the string itself
        job = Job(
            name=name,
            job_id=str(uuid.uuid4()),
            runbook=runbook.name,
            parameters=decoded,
            raw_parameters={str(k): str(v) for k, v in raw.items()},
            created=time.monotonic(),
            outcome=self.job_outcome,
            seconds=self.job_seconds,
            exception=None
            if self.job_outcome == "Completed"
            else "Simulated runbook failure: access denied.",
        )
        account.jobs[name.lower()] = job
        return json_response(201, self._job_json(account, job))

    def _get_job(self, request: SimRequest) -> SimResponse:
        account = self._account_or_404(request)
        job = account.jobs.get(request.params["job"].lower())
        if job is None:
            return self.arm_error(404, "NotFound", "The job was not found.")
        return json_response(200, self._job_json(account, job))


def _same_port(vault: Any, port: int | None) -> bool:
    try:
        return port is not None and bool(vault.running) and int(vault.port) == port
    except RuntimeError:
        return False


def _scope(path: str) -> str:
    for marker in ("/config/", "/runbooks/", "/jobs/", "/restart"):
        index = path.lower().find(marker)
        if index > 0:
            return path[:index]
    return path


def _action(request: SimRequest) -> str:
    path = request.path.lower()
    if "/microsoft.web/connections/" in path:
        return "Microsoft.Web/connections/" + ("read" if request.method == "GET" else "write")
    if "/microsoft.automation/" in path:
        if "/jobs/" in path:
            return "Microsoft.Automation/automationAccounts/jobs/" + (
                "read" if request.method == "GET" else "write"
            )
        return "Microsoft.Automation/automationAccounts/runbooks/read"
    if path.endswith("/restart"):
        return "Microsoft.Web/sites/restart/action"
    if path.endswith("/list"):
        return "Microsoft.Web/sites/config/list/action"
    if "/configreferences/" in path:
        return "Microsoft.Web/sites/config/" + ("read" if request.method == "GET" else "write")
    return "Microsoft.Web/sites/config/write"
