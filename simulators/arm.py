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
* Subscriptions - List, ``GET /subscriptions`` (learn.microsoft.com/rest/api/resources/subscriptions/list):
  the subscriptions seeded explicitly (``subscriptions`` seed key, ``POST /_sim/subscriptions``) plus
  every subscription named in a known resource id (connections, sites, accounts, vaults, role
  assignments), each ``{"id", "subscriptionId", "displayName", "state", "tenantId", ...}``.
* ``Microsoft.KeyVault/vaults`` (learn.microsoft.com/rest/api/keyvault/keyvault/vaults, 2023-07-01):
  every Key Vault simulator of the stack is a vault, by default in subscription
  ``00000000-0000-0000-0000-000000000001``, resource group ``rg-sim``, ``westeurope``, RBAC, no access
  policies (``vaults`` seed key / ``POST /_sim/vaults`` change that). ``GET`` a vault (``vaultUri`` is
  the simulator's URL plus ``/``, as Azure writes it; until a vault's subscription or resource group
  is seeded it also answers at any other subscription / resource group, so the ids tests built
  before vaults had a place still resolve), List By Subscription / By Resource Group
  (``$top``), and ``PUT {vault}/accessPolicies/{add|replace|remove}`` (Update Access Policy), which
  changes what the vault's data plane lets each principal do (see ``simulators/keyvault.py``).
* ``{scope}/providers/Microsoft.Authorization/permissions`` (Permissions - List For Resource / For
  Resource Group, learn.microsoft.com/rest/api/authorization/permissions/list-for-resource): the
  caller holds Reader (``*/read``) everywhere; a second entry, the Key Vault Secrets Officer role's
  (``dataActions`` ``Microsoft.KeyVault/vaults/secrets/*``), is listed on an RBAC vault whose
  ``deny_access`` is off or where the caller has a Secrets Officer role assignment (on a resource
  group or subscription scope: where it has such an assignment at or above the scope).
* Lists: API connections of a resource group (``$top``; the GET shape, never the secret), Web Apps
  of a resource group or subscription (``includeSlots``; ``kind`` as seeded, default ``app``),
  Automation accounts of a resource group or subscription, and an account's runbooks.
* Every list answers at most ``list_page_size`` items (switch, default 100; ``$top`` lowers it where
  the API takes ``$top``) and a ``nextLink`` on this server with ``$skiptoken`` and the other query
  parameters. A list in a resource group or subscription no known resource names answers 404
  ``ResourceGroupNotFound`` / ``SubscriptionNotFound`` (learn.microsoft.com/azure/azure-resource-manager/
  troubleshooting/error-not-found).
* Long-running PUTs when the ``lro`` switch is ``"azure-async"`` (201 + ``Azure-AsyncOperation``) or
  ``"location"`` (202 + ``Location``): the change is applied when the operation succeeds, after
  ``lro_polls`` polls; ``lro_fail`` makes it end ``Failed`` without applying anything.

Auth: bearer tokens from the stack's ``TokenIssuer`` for ``https://management.azure.com`` (or
``https://management.core.windows.net``, or this server's own URL: the app derives its scope from
``ROTATOR_ARM_URL``). Errors use ARM's ``{"error": {"code", "message"}}``.

Seeding (``seed`` keys, and the same objects to ``POST /_sim/<key>``): ``connections``, ``sites``
(``{"resourceId", "settings"?, "kind"?, "location"?}``), ``automationAccounts`` (runbooks:
``{"name", "parameters"?, "description"?}``; ``POST /_sim/runbooks`` takes ``accountId``),
``subscriptions`` (``{"subscriptionId", "displayName"?, "state"?, "tenantId"?}``) and ``vaults``
(``{"name", "subscriptionId"?, "resourceGroup"?, "location"?, "tags"?, "enableRbacAuthorization"?,
"accessPolicies"?}``; the name of one of the stack's Key Vault simulators).

Switches: ``deny_access`` (403 ``AuthorizationFailed``; ``true`` or a regular expression searched in
the resource path; it covers every route above, lists included), ``list_page_size`` (default 100),
``connection_error``, ``lro``, ``lro_polls``, ``lro_retry_after``, ``lro_fail``, ``job_outcome``,
``job_seconds``, ``kv_reference_status`` (force a reference status such as
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
from urllib.parse import quote, urlencode, urlsplit

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
from .entra import DEFAULT_TENANT_ID

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
_SUB = r"/subscriptions/(?P<sub>[^/]+)/providers"
_VAULT = _RG + r"/Microsoft\.KeyVault/vaults/(?P<vault>[^/]+)"
_PERMISSIONS = r"(?P<scope>/subscriptions/.+?)/providers/Microsoft\.Authorization/permissions/?"
_VAULT_ID = re.compile(
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.KeyVault/vaults/(?P<vault>[^/]+)",
    re.IGNORECASE,
)
DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
DEFAULT_RESOURCE_GROUP = "rg-sim"
DEFAULT_LOCATION = "westeurope"
DEFAULT_PAGE_SIZE = 100
SUBSCRIPTION_STATES = ("Enabled", "Warned", "PastDue", "Disabled", "Deleted")
SECRETS_OFFICER_ROLE_ID = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
# Secret permissions of an access policy (learn.microsoft.com/rest/api/keyvault/keyvault/vaults/get,
# SecretPermissions).
SECRET_PERMISSIONS = ("all", "get", "list", "set", "delete", "backup", "restore", "recover", "purge")
# The built-in roles' permissions, as Permissions - List reports them
# (learn.microsoft.com/azure/role-based-access-control/built-in-roles/general#reader and
# .../built-in-roles/security#key-vault-secrets-officer).
READER_PERMISSION: JsonDict = {
    "actions": ["*/read"],
    "notActions": [],
    "dataActions": [],
    "notDataActions": [],
}
SECRETS_OFFICER_PERMISSION: JsonDict = {
    "actions": [
        "Microsoft.Authorization/*/read",
        "Microsoft.Insights/alertRules/*",
        "Microsoft.Resources/deployments/*",
        "Microsoft.Resources/subscriptions/resourceGroups/read",
        "Microsoft.Support/*",
        "Microsoft.KeyVault/checkNameAvailability/read",
        "Microsoft.KeyVault/deletedVaults/read",
        "Microsoft.KeyVault/locations/*/read",
        "Microsoft.KeyVault/vaults/*/read",
        "Microsoft.KeyVault/operations/read",
    ],
    "notActions": [],
    "dataActions": ["Microsoft.KeyVault/vaults/secrets/*"],
    "notDataActions": [],
}
_KV_PREFIX = "@microsoft.keyvault("
JOB_FAILURES = ("Failed", "Stopped", "Suspended", "Blocked")


def _key(resource_id: str) -> str:
    return resource_id.rstrip("/").lower()


def _is_secret_parameter(name: str) -> bool:
    return "secret" in name.lower() or "password" in name.lower()


def _find(mapping: Mapping[str, Any], name: str) -> str | None:
    return next((key for key in mapping if key.lower() == name.lower()), None)


def _id_parts(resource_id: str) -> list[str]:
    """``/subscriptions/s/resourceGroups/g/providers/NS/type/name`` -> ``["", "subscriptions", "s", ...]``."""
    return resource_id.rstrip("/").split("/")


def _subscription_of(resource_id: str) -> str | None:
    parts = _id_parts(resource_id)
    return parts[2] if len(parts) > 2 and parts[1].lower() == "subscriptions" and parts[2] else None


def _group_of(resource_id: str) -> str | None:
    parts = _id_parts(resource_id)
    return parts[4] if len(parts) > 4 and parts[3].lower() == "resourcegroups" and parts[4] else None


def _in_scope(resource_id: str, sub: str, group: str | None) -> bool:
    """Whether a resource id lies in the subscription (and, when given, the resource group)."""
    if (_subscription_of(resource_id) or "").lower() != sub.lower():
        return False
    return group is None or (_group_of(resource_id) or "").lower() == group.lower()


def normalise_access_policies(raw: Any) -> list[JsonDict]:
    """Validate access-policy entries (``{tenantId, objectId, applicationId?, permissions: {secrets:
    [...], keys?, certificates?, storage?}}``); ValueError names what is wrong."""
    if not isinstance(raw, list):
        raise ValueError("accessPolicies must be a list")
    policies: list[JsonDict] = []
    for entry in raw:
        if not isinstance(entry, dict) or not entry.get("tenantId") or not entry.get("objectId"):
            raise ValueError("each access policy needs a tenantId and an objectId")
        permissions = entry.get("permissions")
        if not isinstance(permissions, dict):
            raise ValueError("each access policy needs a permissions object")
        cleaned: dict[str, list[str]] = {}
        for kind, values in permissions.items():
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ValueError(f"permissions.{kind} must be a list of strings")
            secrets = str(kind).lower() == "secrets"
            unknown = [v for v in values if secrets and v.lower() not in SECRET_PERMISSIONS]
            if unknown:
                raise ValueError(f"unknown secret permissions {unknown}; expected {list(SECRET_PERMISSIONS)}")
            cleaned[str(kind).lower()] = list(dict.fromkeys(v.lower() if secrets else v for v in values))
        policy: JsonDict = {"tenantId": str(entry["tenantId"]), "objectId": str(entry["objectId"])}
        if entry.get("applicationId"):
            policy["applicationId"] = str(entry["applicationId"])
        policy["permissions"] = cleaned
        policies.append(policy)
    return policies


def update_access_policies(
    current: list[JsonDict], changes: list[JsonDict], operation: str
) -> list[JsonDict]:
    """The vault's policies after Vaults - Update Access Policy: ``add`` merges the permissions into the
    entry of the same tenantId/objectId/applicationId (or appends one), ``replace`` replaces that
    entry's permissions, ``remove`` takes the listed permissions away (an entry left with none goes)."""
    result = copy.deepcopy(current)

    def same(a: JsonDict, b: JsonDict) -> bool:
        return all(
            str(a.get(k) or "").lower() == str(b.get(k) or "").lower()
            for k in ("tenantId", "objectId", "applicationId")
        )

    for change in changes:
        existing = next((p for p in result if same(p, change)), None)
        if existing is None:
            if operation != "remove":
                result.append(copy.deepcopy(change))
            continue
        permissions: dict[str, list[str]] = existing.setdefault("permissions", {})
        for kind, values in change["permissions"].items():
            have = permissions.get(kind, [])
            if operation == "add":
                lowered = {v.lower() for v in have}
                permissions[kind] = have + [v for v in values if v.lower() not in lowered]
            elif operation == "replace":
                permissions[kind] = list(values)
            else:
                gone = {v.lower() for v in values}
                permissions[kind] = [v for v in have if v.lower() not in gone]
        if operation == "replace":
            for kind in [k for k in permissions if k not in change["permissions"]]:
                del permissions[kind]
        if operation == "remove" and not any(permissions.values()):
            result.remove(existing)
    return result


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
    kind: str = "app"  # "app", "functionapp,linux", ... (Web Apps - List By Resource Group)

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
            "kind": self.kind,
        }


@dataclass
class Runbook:
    name: str
    parameters: dict[str, JsonDict]
    state: str = "Published"
    runbook_type: str = "PowerShell"
    description: str | None = None


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
class Subscription:
    subscription_id: str
    display_name: str
    state: str = "Enabled"
    tenant_id: str | None = None


@dataclass
class VaultMetadata:
    """Where a Key Vault simulator lives in ARM (its permission model lives on the simulator)."""

    subscription_id: str = DEFAULT_SUBSCRIPTION
    resource_group: str = DEFAULT_RESOURCE_GROUP
    location: str = DEFAULT_LOCATION
    tags: dict[str, str] = field(default_factory=dict)
    # Until a subscription or resource group is seeded, the vault also answers at any other
    # subscription and resource group (ids tests built before vaults had a place keep resolving).
    placed: bool = False


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
        tenant_id: str | None = None,
    ) -> None:
        super().__init__(name=name, host=host, port=port, ssl_context=ssl_context, clock=clock)
        self.issuer = issuer
        # Key Vault simulators by name (VaultName=...) and, through their ports, by SecretUri.
        self.keyvaults: Mapping[str, Any] = keyvaults if keyvaults is not None else {}
        self.tenant_id = tenant_id or next(
            (str(v.tenant_id) for v in self.keyvaults.values() if getattr(v, "tenant_id", None)),
            DEFAULT_TENANT_ID,
        )
        self.connections: dict[str, Connection] = {}
        self.sites: dict[str, Site] = {}
        self.accounts: dict[str, AutomationAccount] = {}
        self.subscriptions: dict[str, Subscription] = {}  # seeded explicitly, by lower-case id
        self.vault_metadata: dict[str, VaultMetadata] = {}  # by the vault simulator's name
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
        # Reading: subscriptions, vaults, permissions and the lists of each destination kind.
        self.route("GET", "(?i)/subscriptions/?", self._list_subscriptions)
        self.route("GET", "(?i)" + _SUB + r"/Microsoft\.KeyVault/vaults/?", self._list_vaults)
        self.route("GET", "(?i)" + _RG + r"/Microsoft\.KeyVault/vaults/?", self._list_vaults)
        self.route("GET", "(?i)" + _VAULT + "/?", self._get_vault)
        self.route(
            "PUT",
            "(?i)" + _VAULT + r"/accessPolicies/(?P<op>add|replace|remove)/?",
            self._update_access_policy,
        )
        self.route("GET", "(?i)" + _PERMISSIONS, self._list_permissions)
        self.route("GET", "(?i)" + _RG + r"/Microsoft\.Web/connections/?", self._list_connections)
        self.route("GET", "(?i)" + _SUB + r"/Microsoft\.Web/sites/?", self._list_sites)
        self.route("GET", "(?i)" + _RG + r"/Microsoft\.Web/sites/?", self._list_sites)
        self.route("GET", "(?i)" + _SUB + r"/Microsoft\.Automation/automationAccounts/?", self._list_accounts)
        self.route("GET", "(?i)" + _RG + r"/Microsoft\.Automation/automationAccounts/?", self._list_accounts)
        self.route("GET", "(?i)" + _ACCOUNT + "/runbooks/?", self._list_runbooks)

        # Seeding over HTTP, so `make run` (simulators in their own process) can set up each kind.
        self.admin_route("POST", "/connections", self._admin_add_connection)
        self.admin_route("POST", "/sites", self._admin_add_site)
        self.admin_route("POST", "/automationAccounts", self._admin_add_account)
        self.admin_route("POST", "/runbooks", self._admin_add_runbook)
        self.admin_route("POST", "/subscriptions", self._admin_add_subscription)
        self.admin_route("POST", "/vaults", self._admin_set_vault)

    def seed(self, data: Mapping[str, Any]) -> None:
        """Load ``{"connections": [{"resourceId", "clientId", "secret"?, "tenantId"?, "api"?}],
        "sites": [{"resourceId", "settings"?, "kind"?, "location"?}], "automationAccounts": [{"resourceId",
        "runbooks"?: [{"name", "parameters"?, "description"?}]}], "subscriptions": [{"subscriptionId",
        "displayName"?, "state"?, "tenantId"?}], "vaults": [{"name", "subscriptionId"?, "resourceGroup"?,
        "location"?, "tags"?, "enableRbacAuthorization"?, "accessPolicies"?}]}``."""
        for spec in data.get("connections") or []:
            self._connection_from(spec)
        for spec in data.get("sites") or []:
            self._site_from(spec)
        for spec in data.get("automationAccounts") or []:
            self.add_automation_account(str(spec["resourceId"]))
            for runbook in spec.get("runbooks") or []:
                self.add_runbook(
                    str(spec["resourceId"]),
                    str(runbook["name"]),
                    runbook.get("parameters"),
                    description=runbook.get("description"),
                )
        for spec in data.get("subscriptions") or []:
            self._subscription_from(spec)
        for spec in data.get("vaults") or []:
            self._vault_from(spec)

    def _site_from(self, spec: Mapping[str, Any]) -> Site:
        return self.add_site(
            str(spec["resourceId"]),
            spec.get("settings") or {},
            kind=str(spec.get("kind") or "app"),
            location=str(spec.get("location") or DEFAULT_LOCATION),
        )

    def _subscription_from(self, spec: Mapping[str, Any]) -> Subscription:
        return self.add_subscription(
            str(spec["subscriptionId"]),
            display_name=spec.get("displayName"),
            state=str(spec.get("state") or "Enabled"),
            tenant_id=spec.get("tenantId"),
        )

    def _vault_from(self, spec: Mapping[str, Any]) -> str:
        rbac = spec.get("enableRbacAuthorization")
        self.set_vault(
            str(spec["name"]),
            subscription_id=spec.get("subscriptionId"),
            resource_group=spec.get("resourceGroup"),
            location=spec.get("location"),
            tags=spec.get("tags"),
            enable_rbac_authorization=None if rbac is None else bool(rbac),
            access_policies=spec.get("accessPolicies"),
        )
        return str(spec["name"])

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
        site = self._site_from(cast_json_dict(request.json()))
        return json_response(201, {"resourceId": site.resource_id})

    def _admin_add_account(self, request: SimRequest) -> SimResponse:
        body = cast_json_dict(request.json())
        account = self.add_automation_account(str(body["resourceId"]))
        return json_response(201, {"resourceId": account.resource_id})

    def _admin_add_runbook(self, request: SimRequest) -> SimResponse:
        body = cast_json_dict(request.json())
        self.add_runbook(
            str(body["accountId"]),
            str(body["name"]),
            body.get("parameters"),
            description=body.get("description"),
        )
        return json_response(201, {"accountId": body["accountId"], "name": body["name"]})

    def _admin_add_subscription(self, request: SimRequest) -> SimResponse:
        subscription = self._subscription_from(cast_json_dict(request.json()))
        return json_response(201, self._subscription_json(subscription))

    def _admin_set_vault(self, request: SimRequest) -> SimResponse:
        name = self._vault_from(cast_json_dict(request.json()))
        return json_response(200, self._vault_json(name))

    def _put_role_assignment(self, request: SimRequest) -> SimResponse:
        """Record a role assignment. One on a simulated RBAC vault (any role; the vault is found by name
        whatever the subscription and group in the scope), or a Key Vault Secrets Officer assignment on
        a resource group or subscription holding RBAC vaults, lets the principal into those vaults
        (clears their ``deny_access``). An access-policy vault is never opened by a role."""
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
        opened = [match.group("vault")] if match and match.group("vault") in self.keyvaults else []
        if not match and str(properties["roleDefinitionId"]).lower().endswith("/" + SECRETS_OFFICER_ROLE_ID):
            # Secrets Officer on a resource group or subscription covers the vaults inside it.
            lowered = scope.rstrip("/").lower()
            opened = [
                n for n in self.keyvaults if self.vault_resource_id(n).lower().startswith(lowered + "/")
            ]
        # learn.microsoft.com/azure/key-vault/general/rbac-access-policy: in an access-policy vault the
        # data plane ignores role assignments, so only an RBAC vault lets the principal in.
        for vault_name in opened:
            if self.keyvaults[vault_name].enable_rbac_authorization:
                self.keyvaults[vault_name].deny_access = False
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
        self.list_page_size = DEFAULT_PAGE_SIZE

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
        self,
        resource_id: str,
        settings: Mapping[str, str] | None = None,
        *,
        location: str = DEFAULT_LOCATION,
        kind: str = "app",
    ) -> Site:
        site = Site(resource_id, location, dict(settings or {}), kind=kind)
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
        description: str | None = None,
    ) -> Runbook:
        """``parameters``: ``{"ClientSecret": {"type": "System.String", "isMandatory": True}, ...}``."""
        runbook = Runbook(
            name, {k: dict(v) for k, v in (parameters or {}).items()}, state, description=description
        )
        with self._lock:
            self.accounts[_key(account_id)].runbooks[name.lower()] = runbook
        return runbook

    def jobs(self, account_id: str) -> list[Job]:
        with self._lock:
            return list(self.accounts[_key(account_id)].jobs.values())

    def add_subscription(
        self,
        subscription_id: str,
        *,
        display_name: str | None = None,
        state: str = "Enabled",
        tenant_id: str | None = None,
    ) -> Subscription:
        """A subscription for Subscriptions - List (those named in resource ids are listed anyway)."""
        if state not in SUBSCRIPTION_STATES:
            raise ValueError(f"state: expected one of {SUBSCRIPTION_STATES}")
        subscription = Subscription(
            subscription_id, display_name or f"Simulated subscription {subscription_id}", state, tenant_id
        )
        with self._lock:
            self.subscriptions[subscription_id.lower()] = subscription
        return subscription

    def vault_meta(self, name: str) -> VaultMetadata:
        """Where the named Key Vault simulator lives in ARM (defaults unless ``set_vault`` moved it)."""
        return self.vault_metadata.get(name) or VaultMetadata()

    def vault_resource_id(self, name: str) -> str:
        meta = self.vault_meta(name)
        return (
            f"/subscriptions/{meta.subscription_id}/resourceGroups/{meta.resource_group}"
            f"/providers/Microsoft.KeyVault/vaults/{name}"
        )

    def set_vault(
        self,
        name: str,
        *,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        location: str | None = None,
        tags: Mapping[str, str] | None = None,
        enable_rbac_authorization: bool | None = None,
        access_policies: list[JsonDict] | None = None,
    ) -> str:
        """Change a stack vault's ARM metadata and permission model (None keeps a value); its id."""
        if name not in self.keyvaults:
            raise ValueError(
                f"no Key Vault simulator named {name!r} (this stack runs {sorted(self.keyvaults)})"
            )
        policies = normalise_access_policies(access_policies) if access_policies is not None else None
        with self._lock:
            meta = copy.deepcopy(self.vault_meta(name))
            meta.subscription_id = subscription_id or meta.subscription_id
            meta.resource_group = resource_group or meta.resource_group
            meta.placed = meta.placed or bool(subscription_id or resource_group)
            meta.location = location or meta.location
            if tags is not None:
                meta.tags = {str(k): str(v) for k, v in tags.items()}
            self.vault_metadata[name] = meta
            vault = self.keyvaults[name]
            if enable_rbac_authorization is not None:
                vault.enable_rbac_authorization = enable_rbac_authorization
            if policies is not None:
                vault.access_policies = policies
        return self.vault_resource_id(name)

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
        elif name == "list_page_size":
            if isinstance(value, bool) or int(value) < 1:
                raise ValueError("list_page_size: expected a positive integer")
            self.list_page_size = int(value)
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
                "list_page_size": self.list_page_size,
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
                            r.name: {
                                "parameters": r.parameters,
                                "state": r.state,
                                "description": r.description,
                            }
                            for r in a.runbooks.values()
                        },
                        "jobs": {
                            j.name: {"runbook": j.runbook, "status": j.status(), "parameters": j.parameters}
                            for j in a.jobs.values()
                        },
                    }
                    for a in self.accounts.values()
                },
                "subscriptions": [self._subscription_json(s) for s in self._known_subscriptions()],
                "vaults": {
                    name: {
                        "resourceId": self.vault_resource_id(name),
                        "location": self.vault_meta(name).location,
                        "tags": dict(self.vault_meta(name).tags),
                        "enableRbacAuthorization": vault.enable_rbac_authorization,
                        "accessPolicies": copy.deepcopy(vault.access_policies),
                    }
                    for name, vault in self.keyvaults.items()
                },
                "roleAssignments": copy.deepcopy(self.role_assignments),
                "switches": self.switches(),
            }

    def reset(self) -> None:
        with self._lock:
            super().reset()
            self.connections.clear()
            self.sites.clear()
            self.accounts.clear()
            self.subscriptions.clear()
            self.vault_metadata.clear()
            for vault in self.keyvaults.values():  # the vaults' management-plane properties
                vault.enable_rbac_authorization = True
                vault.access_policies = []
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

    # ----------------------------------------------------------------- lists, paging and scopes

    def _page(self, request: SimRequest, items: list[JsonDict], *, top: bool = False) -> SimResponse:
        """At most ``list_page_size`` items (``$top`` lowers it where the API takes it) and a ``nextLink``
        on this server carrying ``$skiptoken`` and the other query parameters, as ARM pages
        (learn.microsoft.com/azure/azure-resource-manager/management/azure-resource-manager-api-pagination:
        follow ``nextLink`` until it is absent)."""
        size = self.list_page_size
        if top and request.arg("$top") is not None:
            text = str(request.arg("$top"))
            if not text.isdigit() or int(text) < 1:
                return self.arm_error(
                    400, "BadRequest", f"The value '{text}' of $top is not a positive integer."
                )
            size = min(size, int(text))
        skip = request.arg("$skiptoken") or "0"
        if not skip.isdigit():
            return self.arm_error(400, "BadRequest", f"The $skiptoken '{skip}' is not valid.")
        offset = int(skip)
        payload: JsonDict = {"value": items[offset : offset + size]}
        if offset + size < len(items):
            query = [
                (key, value)
                for key, values in request.query.items()
                if key.lstrip("$").lower() != "skiptoken"
                for value in values
            ]
            query.append(("$skiptoken", str(offset + size)))
            payload["nextLink"] = (
                f"{request.base_url}{quote(request.path)}?{urlencode(query, safe='$', quote_via=quote)}"
            )
        return json_response(200, payload)

    def _known_ids(self) -> list[str]:
        """Every resource id (and role-assignment scope) the simulator knows."""
        ids = [c.resource_id for c in self.connections.values()]
        ids += [s.resource_id for s in self.sites.values()]
        ids += [a.resource_id for a in self.accounts.values()]
        ids += [self.vault_resource_id(name) for name in self.keyvaults]
        ids += [str(a.get("scope", "")) for a in self.role_assignments.values()]
        return ids

    def _known_subscriptions(self) -> list[Subscription]:
        found = dict(self.subscriptions)
        for resource_id in self._known_ids():
            sub = _subscription_of(resource_id)
            if sub and sub.lower() not in found:
                found[sub.lower()] = Subscription(sub, f"Simulated subscription {sub}")
        return list(found.values())

    def _require_scope(self, request: SimRequest) -> tuple[str, str | None]:
        """The list's subscription and resource group, which must exist: 404 ``SubscriptionNotFound`` /
        ``ResourceGroupNotFound`` otherwise (learn.microsoft.com/azure/azure-resource-manager/
        troubleshooting/error-not-found). A group exists when a known resource id names it."""
        sub, group = request.params["sub"], request.params.get("rg")
        if sub.lower() not in {s.subscription_id.lower() for s in self._known_subscriptions()}:
            raise SimHTTPError(
                self.arm_error(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
            )
        if group is not None and not any(_in_scope(i, sub, group) for i in self._known_ids()):
            raise SimHTTPError(
                self.arm_error(404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found.")
            )
        return sub, group

    # ----------------------------------------------------------------- subscriptions

    def _subscription_json(self, subscription: Subscription) -> JsonDict:
        # learn.microsoft.com/rest/api/resources/subscriptions/list (Subscription).
        return {
            "id": f"/subscriptions/{subscription.subscription_id}",
            "authorizationSource": "RoleBased",
            "managedByTenants": [],
            "subscriptionId": subscription.subscription_id,
            "tenantId": subscription.tenant_id or self.tenant_id,
            "displayName": subscription.display_name,
            "state": subscription.state,
            "subscriptionPolicies": {
                "locationPlacementId": "Public_2014-09-01",
                "quotaId": "PayAsYouGo_2014-09-01",
                "spendingLimit": "Off",
            },
        }

    def _list_subscriptions(self, request: SimRequest) -> SimResponse:
        return self._page(request, [self._subscription_json(s) for s in self._known_subscriptions()])

    # ----------------------------------------------------------------- key vaults (management plane)

    def _vault_json(self, name: str, request: SimRequest | None = None) -> JsonDict:
        """The Vault resource (learn.microsoft.com/rest/api/keyvault/keyvault/vaults/get); its id is the
        one ``request`` addressed when the vault has no seeded place (see ``VaultMetadata.placed``)."""
        vault, meta = self.keyvaults[name], self.vault_meta(name)
        resource_id = self.vault_resource_id(name)
        if request is not None and not meta.placed:
            sub, group = request.params["sub"], request.params["rg"]
            resource_id = (
                f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.KeyVault/vaults/{name}"
            )
        try:
            uri = f"{vault.url}/"  # Azure writes vaultUri with the trailing slash
        except RuntimeError:  # not started
            uri = f"https://{name}.vault.azure.net/"
        return {
            "id": resource_id,
            "name": name,
            "type": "Microsoft.KeyVault/vaults",
            "location": meta.location,
            "tags": dict(meta.tags),
            "properties": {
                "sku": {"family": "A", "name": "standard"},
                "tenantId": vault.tenant_id,
                "accessPolicies": copy.deepcopy(vault.access_policies),
                "enabledForDeployment": False,
                "enabledForDiskEncryption": False,
                "enabledForTemplateDeployment": False,
                "enableSoftDelete": True,
                "softDeleteRetentionInDays": 90,
                "enableRbacAuthorization": bool(vault.enable_rbac_authorization),
                "vaultUri": uri,
                "provisioningState": "Succeeded",
                "publicNetworkAccess": "Enabled",
            },
        }

    def _vault_named(self, sub: str, group: str, name: str) -> str | None:
        """The stack vault with this name (vault names are globally unique) in this subscription and
        resource group (case-insensitive); a vault without a seeded place answers anywhere."""
        for candidate in self.keyvaults:
            if candidate.lower() != name.lower():
                continue
            meta = self.vault_meta(candidate)
            if not meta.placed or (meta.subscription_id.lower(), meta.resource_group.lower()) == (
                sub.lower(),
                group.lower(),
            ):
                return candidate
        return None

    def _vault_or_404(self, request: SimRequest) -> str:
        name = self._vault_named(request.params["sub"], request.params["rg"], request.params["vault"])
        if name is None:
            raise self._resource_not_found("Microsoft.KeyVault/vaults", request.params["vault"], request)
        return name

    def _list_vaults(self, request: SimRequest) -> SimResponse:
        # Vaults - List By Subscription / List By Resource Group: both take $top.
        sub, group = self._require_scope(request)
        names = [n for n in self.keyvaults if _in_scope(self.vault_resource_id(n), sub, group)]
        return self._page(request, [self._vault_json(n) for n in names], top=True)

    def _get_vault(self, request: SimRequest) -> SimResponse:
        return json_response(200, self._vault_json(self._vault_or_404(request), request))

    def _update_access_policy(self, request: SimRequest) -> SimResponse:
        """Vaults - Update Access Policy (learn.microsoft.com/rest/api/keyvault/keyvault/vaults/update-access-policy):
        ``{"properties": {"accessPolicies": [...]}}``; answers the VaultAccessPolicyParameters it applied."""
        name = self._vault_or_404(request)
        properties = self._body(request).get("properties")
        if not isinstance(properties, dict):
            return self.arm_error(400, "BadRequest", "The request must have 'properties.accessPolicies'.")
        try:
            changes = normalise_access_policies(properties.get("accessPolicies"))
        except ValueError as error:
            return self.arm_error(400, "BadRequest", f"Invalid access policies: {error}.")
        operation = request.params["op"].lower()
        vault = self.keyvaults[name]
        vault.access_policies = update_access_policies(vault.access_policies, changes, operation)
        # The shape of the page's sample response: the id ends in "accessPolicies/", the policies sent.
        return json_response(
            200,
            {
                "id": f"{self._vault_json(name, request)['id']}/accessPolicies/",
                "type": "Microsoft.KeyVault/vaults/accessPolicies",
                "properties": {"accessPolicies": changes},
            },
        )

    # ----------------------------------------------------------------- permissions

    def _holds_secrets_officer(self, principal: str, scope: str, vault_name: str | None) -> bool:
        """Whether ``principal`` has a Key Vault Secrets Officer assignment covering ``scope`` (at it or
        above it; on a vault, an assignment naming the vault counts, as ``_put_role_assignment`` does)."""
        wanted = scope.rstrip("/").lower()
        for assignment in self.role_assignments.values():
            if str(assignment.get("principalId", "")).lower() != principal.lower():
                continue
            role = str(assignment.get("roleDefinitionId", "")).lower()
            if not role.endswith("/" + SECRETS_OFFICER_ROLE_ID):
                continue
            at = str(assignment.get("scope", "")).rstrip("/").lower()
            if wanted == at or wanted.startswith(at + "/"):
                return True
            named = _VAULT_ID.fullmatch(at)
            if vault_name is not None and named is not None and named.group("vault") == vault_name.lower():
                return True
        return False

    def _list_permissions(self, request: SimRequest) -> SimResponse:
        """Permissions - List For Resource / For Resource Group
        (learn.microsoft.com/rest/api/authorization/permissions/list-for-resource): the caller's role
        permissions at the scope, ``{"value": [{"actions", "notActions", "dataActions", "notDataActions"}]}``."""
        scope = request.params["scope"].rstrip("/")
        principal = request.principal or ""
        entries = [copy.deepcopy(READER_PERMISSION)]
        vault_id = _VAULT_ID.fullmatch(scope)
        if vault_id is not None:
            name = self._vault_named(vault_id.group("sub"), vault_id.group("rg"), vault_id.group("vault"))
            if name is None:
                raise self._resource_not_found("Microsoft.KeyVault/vaults", vault_id.group("vault"), request)
            vault = self.keyvaults[name]
            # Only an RBAC vault's data plane follows role assignments (see _put_role_assignment).
            officer = bool(vault.enable_rbac_authorization) and (
                not vault.deny_access or self._holds_secrets_officer(principal, scope, name)
            )
        else:
            officer = self._holds_secrets_officer(principal, scope, None)
        if officer:
            entries.append(copy.deepcopy(SECRETS_OFFICER_PERMISSION))
        return self._page(request, entries)

    # ----------------------------------------------------------------- lists of the destinations

    def _list_connections(self, request: SimRequest) -> SimResponse:
        # Connections - List (Microsoft.Web 2016-06-01, Azure/azure-rest-api-specs
        # specification/web/resource-manager/Microsoft.Web/stable/2016-06-01/logicAppsManagementClient.json
        # and examples/connectionsList.json): resource group only, $top and $filter.
        sub, group = self._require_scope(request)
        if request.arg("$filter"):
            return self.arm_error(
                400, "BadRequest", "The simulator does not evaluate $filter on connections."
            )
        found = [c for c in self.connections.values() if _in_scope(c.resource_id, sub, group)]
        return self._page(request, [self._connection_json(c) for c in found], top=True)

    @staticmethod
    def _site_item(site: Site) -> JsonDict:
        # Web Apps - List By Resource Group (learn.microsoft.com/rest/api/appservice/web-apps/list-by-resource-group)
        # and List Slots (.../web-apps/list-slots) for the item shape.
        parts = _id_parts(site.resource_id)
        name = parts[8] if len(parts) > 8 else parts[-1]
        slot = parts[10] if len(parts) > 10 and parts[9].lower() == "slots" else None
        host = f"{name}-{slot}.azurewebsites.net" if slot else f"{name}.azurewebsites.net"
        return {
            "id": site.resource_id,
            "name": f"{name}/{slot}" if slot else name,
            "type": "Microsoft.Web/sites/slots" if slot else "Microsoft.Web/sites",
            "kind": site.kind,
            "location": site.location,
            "tags": {},
            "properties": {
                "state": "Running",
                "hostNames": [host],
                "repositorySiteName": name,
                "usageState": "Normal",
                "enabled": True,
                "enabledHostNames": [host, host.replace(".azurewebsites.net", ".scm.azurewebsites.net")],
                "availabilityState": "Normal",
                "defaultHostName": host,
            },
        }

    def _list_sites(self, request: SimRequest) -> SimResponse:
        # Web Apps - List / List By Resource Group: slots only with includeSlots=true.
        sub, group = self._require_scope(request)
        slots = (request.arg("includeSlots") or "").lower() == "true"
        found = [
            s
            for s in self.sites.values()
            if _in_scope(s.resource_id, sub, group) and (slots or "/slots/" not in s.resource_id.lower())
        ]
        return self._page(request, [self._site_item(s) for s in found])

    def _list_accounts(self, request: SimRequest) -> SimResponse:
        # Automation Account - List / List By Resource Group
        # (learn.microsoft.com/rest/api/automation/automation-account/list-by-resource-group).
        sub, group = self._require_scope(request)
        items = [
            {
                "id": a.resource_id,
                "name": _id_parts(a.resource_id)[-1],
                "type": "Microsoft.Automation/AutomationAccounts",
                "location": a.location,
                "tags": {},
                "properties": {
                    "sku": {"name": "Basic"},
                    "state": "Ok",
                    "creationTime": "2024-01-01T00:00:00+00:00",
                    "lastModifiedTime": "2024-01-01T00:00:00+00:00",
                },
            }
            for a in self.accounts.values()
            if _in_scope(a.resource_id, sub, group)
        ]
        return self._page(request, items)

    def _runbook_json(self, account: AutomationAccount, runbook: Runbook, *, parameters: bool) -> JsonDict:
        # Runbook - Get / List By Automation Account (learn.microsoft.com/rest/api/automation/runbook).
        properties: JsonDict = {
            "runbookType": runbook.runbook_type,
            "state": runbook.state,
            "logVerbose": False,
            "logProgress": False,
        }
        if runbook.description is not None:
            properties["description"] = runbook.description
        if parameters:
            properties["parameters"] = copy.deepcopy(runbook.parameters)
        return {
            "id": f"{account.resource_id}/runbooks/{runbook.name}",
            "name": runbook.name,
            "type": "Microsoft.Automation/AutomationAccounts/Runbooks",
            "location": account.location,
            "properties": properties,
        }

    def _list_runbooks(self, request: SimRequest) -> SimResponse:
        account = self._account_or_404(request)
        return self._page(
            request, [self._runbook_json(account, r, parameters=False) for r in account.runbooks.values()]
        )

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
        account_id = re.split(r"(?i)/(?:runbooks|jobs)(?:/|$)", request.path)[0]
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
        return json_response(200, self._runbook_json(account, runbook, parameters=True))

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
    lowered = path.rstrip("/").lower()
    for marker in (
        "/config/",
        "/runbooks",
        "/jobs/",
        "/restart",
        "/accesspolicies/",
        "/providers/microsoft.authorization/",
    ):
        index = lowered.find(marker)
        if index > 0:
            return path[:index]
    collection = re.fullmatch(r"(?i)(/subscriptions/.+?)/providers/[^/]+/[^/]+/?", path)
    return collection.group(1) if collection else path  # a list: its subscription or resource group


def _action(request: SimRequest) -> str:
    path = request.path.rstrip("/").lower()
    if path == "/subscriptions":
        return "Microsoft.Resources/subscriptions/read"
    if "/providers/microsoft.authorization/permissions" in path:
        return "Microsoft.Authorization/permissions/read"
    if "/providers/microsoft.authorization/roleassignments/" in path:
        return "Microsoft.Authorization/roleAssignments/write"
    if "/microsoft.keyvault/vaults" in path:
        if "/accesspolicies/" in path:
            return "Microsoft.KeyVault/vaults/accessPolicies/write"
        return "Microsoft.KeyVault/vaults/read"
    if path.endswith("/microsoft.web/sites"):
        return "Microsoft.Web/sites/read"
    if path.endswith("/microsoft.automation/automationaccounts"):
        return "Microsoft.Automation/automationAccounts/read"
    if "/microsoft.web/connections" in path:
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
