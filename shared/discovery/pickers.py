"""Destination pickers: what the portal lets a user select, read with the rotator's own identity.

Each picker returns one page (``PickerPage``) of small records (names and ids, never a secret) and an
opaque continuation token. Pages are the service's own pages: ``pageSize`` is passed as ``$top`` /
``limit`` where the API takes it. The token wraps the service's cursor and is checked on the way
back in (an ARM ``nextLink`` must stay on the ARM host, under the same list path).

Sources (request and response shapes):

* Subscriptions - List: learn.microsoft.com/rest/api/resources/subscriptions/list
* Vaults - List By Subscription / By Resource Group, Vaults - Get:
  learn.microsoft.com/rest/api/keyvault/keyvault/vaults (``properties.enableRbacAuthorization``,
  ``properties.accessPolicies``, ``properties.vaultUri``)
* Permissions - List For Resource: learn.microsoft.com/rest/api/authorization/permissions/list-for-resource
  (the caller's effective ``dataActions`` on an RBAC vault)
* Connections - List (API connections, 2016-06-01):
  learn.microsoft.com/rest/api/logic/connections (non-secret ``parameterValues``)
* Web Apps - List By Resource Group: learn.microsoft.com/rest/api/appservice/web-apps/list-by-resource-group
* Automation Account - List By Resource Group, Runbook - List By Automation Account:
  learn.microsoft.com/rest/api/automation/automation-account/list-by-resource-group,
  learn.microsoft.com/rest/api/automation/runbook/list-by-automation-account
* Projects - List (``$top``, ``continuationToken``; the next token in ``x-ms-continuationtoken``):
  learn.microsoft.com/rest/api/azure/devops/core/projects/list
* Endpoints - Get Service Endpoints: learn.microsoft.com/rest/api/azure/devops/serviceendpoint/endpoints/get-service-endpoints
* Find projects (``limit``, ``until`` = ``pagination.next``): vercel.com/docs/rest-api/reference/endpoints/projects/find-projects
"""

from __future__ import annotations

import asyncio
import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote

from shared.discovery.rest import Answer, decode_token, encode_token, get_json, same_origin_path
from shared.errors import FieldProblem, NotFoundError, PermissionMissingError, ValidationError

if TYPE_CHECKING:
    from shared.services import Services

SUBSCRIPTIONS_API = "2022-12-01"
KEYVAULT_API = "2023-07-01"
PERMISSIONS_API = "2022-04-01"
CONNECTIONS_API = "2016-06-01"
WEB_API = "2023-12-01"
AUTOMATION_API = "2023-11-01"
DEVOPS_API = "7.1"
READER = "the Reader role"
SET_SECRET_ACTION = "microsoft.keyvault/vaults/secrets/setsecret/action"  # noqa: S105 - an action name
# Key Vault access-policy permissions that let the rotator write a secret version (and read it back).
POLICY_WRITE = {"set", "all"}


class JsonRecord(Protocol):
    def to_json(self) -> dict[str, object]: ...


@dataclass(frozen=True)
class PickerPage:
    items: list[JsonRecord]
    continuation_token: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "items": [item.to_json() for item in self.items],
            "continuationToken": self.continuation_token,
        }


@dataclass(frozen=True)
class Subscription:
    subscription_id: str
    display_name: str
    state: str

    def to_json(self) -> dict[str, object]:
        return {"subscriptionId": self.subscription_id, "displayName": self.display_name, "state": self.state}


@dataclass(frozen=True)
class KeyVaultChoice:
    resource_id: str
    name: str
    location: str
    vault_url: str
    permission_model: Literal["rbac", "accessPolicy"]
    # True/False when the rotator could tell; None when it may not read the vault's permissions.
    can_write_secrets: bool | None
    selectable: bool = True
    reason: str | None = None

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "resourceId": self.resource_id,
            "name": self.name,
            "location": self.location,
            "vaultUrl": self.vault_url,
            "permissionModel": self.permission_model,
            "canWriteSecrets": self.can_write_secrets,
            "selectable": self.selectable,
        }
        if self.reason:
            body["reason"] = self.reason
        return body


@dataclass(frozen=True)
class ArmChoice:
    """An API connection, a site or an Automation account / runbook: id, name and a few facts."""

    resource_id: str
    name: str
    facts: dict[str, str | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"resourceId": self.resource_id, "name": self.name, **self.facts}


@dataclass(frozen=True)
class DevOpsProject:
    project_id: str
    name: str

    def to_json(self) -> dict[str, object]:
        return {"id": self.project_id, "name": self.name}


@dataclass(frozen=True)
class ServiceConnectionChoice:
    connection_id: str
    name: str
    type: str
    scheme: str
    service_principal_id: str | None
    supported: bool
    reason: str | None

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "id": self.connection_id,
            "name": self.name,
            "type": self.type,
            "authorizationScheme": self.scheme,
            "servicePrincipalId": self.service_principal_id,
            "supported": self.supported,
        }
        if self.reason:
            body["reason"] = self.reason
        return body


@dataclass(frozen=True)
class VercelProject:
    project_id: str
    name: str
    framework: str | None

    def to_json(self) -> dict[str, object]:
        return {"id": self.project_id, "name": self.name, "framework": self.framework}


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


# --------------------------------------------------------------------------- ARM


class ArmReader:
    """GET pages from ARM with the rotator's identity."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._base = services.settings.arm_url.rstrip("/")

    async def token(self) -> str:
        access = await self._services.credential.get_token(self._services.settings.arm_scope)
        return str(access.token)

    async def get(
        self,
        path_or_url: str,
        api_version: str | None,
        *,
        what: str,
        permission: str,
        params: dict[str, str] | None = None,
        method: str = "GET",
    ) -> Answer:
        """One read (``POST`` for ARM's list actions, e.g. ``config/appsettings/list``)."""
        url = (
            path_or_url
            if path_or_url.startswith("https://") or path_or_url.startswith("http://")
            else self._base + path_or_url
        )
        query = dict(params or {})
        if api_version:
            query["api-version"] = api_version
        headers = {"Authorization": f"Bearer {await self.token()}", "Accept": "application/json"}
        return await get_json(
            self._services.http,
            url,
            method=method,
            params=query or None,
            headers=headers,
            service="arm",
            what=what,
            permission=permission,
        )

    async def page(
        self,
        path: str,
        api_version: str,
        token: str | None,
        *,
        kind: str,
        what: str,
        permission: str,
        top: int | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One ARM list page: its ``value`` and the continuation token for its ``nextLink``."""
        next_link = decode_token(token, kind)
        if next_link is not None:
            if not same_origin_path(next_link, self._base, path):
                raise ValidationError(
                    "Invalid continuation token",
                    [
                        FieldProblem(
                            "continuationToken", "does not continue this list", "a token from a previous page"
                        )
                    ],
                )
            answer = await self.get(next_link, None, what=what, permission=permission)
        else:
            params = {"$top": str(top)} if top else None
            answer = await self.get(path, api_version, what=what, permission=permission, params=params)
        body = _obj(answer.body)
        values = [item for item in _list(body.get("value")) if isinstance(item, dict)]
        link = body.get("nextLink")
        return values, encode_token(kind, link) if isinstance(link, str) and link else None


def resource_group_path(subscription_id: str, resource_group: str) -> str:
    return f"/subscriptions/{quote(subscription_id, safe='')}/resourceGroups/{quote(resource_group, safe='')}"


async def subscriptions(services: Services, page_size: int, token: str | None) -> PickerPage:
    reader = ArmReader(services)
    values, next_token = await reader.page(
        "/subscriptions",
        SUBSCRIPTIONS_API,
        token,
        kind="subscriptions",
        what="subscriptions",
        permission=f"{READER} on a subscription",
    )
    items: list[JsonRecord] = [
        Subscription(_str(v.get("subscriptionId")), _str(v.get("displayName")), _str(v.get("state")))
        for v in values
    ]
    return PickerPage(items, next_token)


def _policy_allows_write(properties: dict[str, Any], principal: str) -> bool:
    for policy in _list(properties.get("accessPolicies")):
        policy = _obj(policy)
        if _str(policy.get("objectId")).lower() != principal.lower() or policy.get("applicationId"):
            continue
        secrets = {_str(p).lower() for p in _list(_obj(policy.get("permissions")).get("secrets"))}
        if secrets & POLICY_WRITE:
            return True
    return False


def actions_allow(permissions: list[dict[str, Any]], action: str) -> bool:
    """Whether ARM's effective permissions (``dataActions`` minus ``notDataActions``, wildcards as ARM
    writes them) include ``action``."""
    action = action.lower()
    for entry in permissions:
        allowed = any(fnmatch.fnmatchcase(action, _str(a).lower()) for a in _list(entry.get("dataActions")))
        denied = any(fnmatch.fnmatchcase(action, _str(a).lower()) for a in _list(entry.get("notDataActions")))
        if allowed and not denied:
            return True
    return False


async def can_write_secrets(services: Services, vault: dict[str, Any], principal: str) -> bool | None:
    """Whether the rotator may write secrets in this vault now (None: it may not tell)."""
    properties = _obj(vault.get("properties"))
    if properties.get("enableRbacAuthorization") is not True:
        return _policy_allows_write(properties, principal)
    vault_id = _str(vault.get("id"))
    try:
        answer = await ArmReader(services).get(
            f"{vault_id}/providers/Microsoft.Authorization/permissions",
            PERMISSIONS_API,
            what=f"the rotator's permissions on {vault_id}",
            permission=READER,
        )
    except (PermissionMissingError, NotFoundError):
        return None
    entries = [e for e in _list(_obj(answer.body).get("value")) if isinstance(e, dict)]
    return actions_allow(entries, SET_SECRET_ACTION)


def vault_choice(services: Services, vault: dict[str, Any], can_write: bool | None) -> KeyVaultChoice:
    from shared.adapters.vault import same_vault

    properties = _obj(vault.get("properties"))
    url = _str(properties.get("vaultUri"))
    own = bool(url) and same_vault(url, services.settings.vault_url)
    return KeyVaultChoice(
        resource_id=_str(vault.get("id")),
        name=_str(vault.get("name")),
        location=_str(vault.get("location")),
        vault_url=url,
        permission_model="rbac" if properties.get("enableRbacAuthorization") is True else "accessPolicy",
        can_write_secrets=can_write,
        selectable=not own,
        reason="the rotator's own vault holds staged secrets and stored credentials; it is never a destination"
        if own
        else None,
    )


async def vault_page(
    services: Services, subscription_id: str, resource_group: str | None, page_size: int, token: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ARM's Vault objects in a subscription (or resource group), and the next token."""
    scope = (
        resource_group_path(subscription_id, resource_group)
        if resource_group
        else f"/subscriptions/{quote(subscription_id, safe='')}"
    )
    return await ArmReader(services).page(
        f"{scope}/providers/Microsoft.KeyVault/vaults",
        KEYVAULT_API,
        token,
        kind="keyVaults",
        what=f"Key Vaults in {scope}",
        permission=f"{READER} on {scope}",
        top=page_size,
    )


async def key_vaults(
    services: Services, subscription_id: str, resource_group: str | None, page_size: int, token: str | None
) -> PickerPage:
    values, next_token = await vault_page(services, subscription_id, resource_group, page_size, token)
    from shared.integrations.keyvault import rotator_principal

    principal = await rotator_principal(services)
    semaphore = asyncio.Semaphore(8)

    async def one(vault: dict[str, Any]) -> KeyVaultChoice:
        async with semaphore:
            return vault_choice(services, vault, await can_write_secrets(services, vault, principal))

    items: list[JsonRecord] = list(await asyncio.gather(*(one(v) for v in values)))
    return PickerPage(items, next_token)


async def _resource_group_list(
    services: Services,
    subscription_id: str,
    resource_group: str,
    provider_path: str,
    api_version: str,
    token: str | None,
    *,
    kind: str,
    what: str,
    top: int | None,
) -> tuple[list[dict[str, Any]], str | None]:
    scope = resource_group_path(subscription_id, resource_group)
    return await ArmReader(services).page(
        f"{scope}/providers/{provider_path}",
        api_version,
        token,
        kind=kind,
        what=f"{what} in resource group {resource_group}",
        permission=f"{READER} on {scope}",
        top=top,
    )


def connection_client_id(connection: dict[str, Any]) -> str | None:
    """The client id an API connection signs in with (``token:clientId``), from its non-secret values."""
    properties = _obj(connection.get("properties"))
    values: dict[str, Any] = dict(_obj(properties.get("nonSecretParameterValues")))
    values.update(_obj(properties.get("parameterValues")))
    value_set = _obj(properties.get("parameterValueSet"))
    for key, entry in _obj(value_set.get("values")).items():
        values[key] = _obj(entry).get("value")
    for key, value in values.items():
        if key.lower() == "token:clientid" and isinstance(value, str):
            return value
    return None


async def logic_app_connections(
    services: Services, subscription_id: str, resource_group: str, page_size: int, token: str | None
) -> PickerPage:
    values, next_token = await _resource_group_list(
        services,
        subscription_id,
        resource_group,
        "Microsoft.Web/connections",
        CONNECTIONS_API,
        token,
        kind="connections",
        what="API connections",
        top=page_size,
    )
    items: list[JsonRecord] = []
    for connection in values:
        properties = _obj(connection.get("properties"))
        api = _obj(properties.get("api"))
        items.append(
            ArmChoice(
                _str(connection.get("id")),
                _str(connection.get("name")),
                {
                    "displayName": _str(properties.get("displayName")) or None,
                    "api": _str(api.get("name")) or _str(api.get("id")).rsplit("/", 1)[-1] or None,
                    "clientId": connection_client_id(connection),
                },
            )
        )
    return PickerPage(items, next_token)


async def app_services(
    services: Services, subscription_id: str, resource_group: str, page_size: int, token: str | None
) -> PickerPage:
    values, next_token = await _resource_group_list(
        services,
        subscription_id,
        resource_group,
        "Microsoft.Web/sites",
        WEB_API,
        token,
        kind="sites",
        what="App Service and Function Apps",
        top=None,
    )
    items: list[JsonRecord] = []
    for site in values:
        properties = _obj(site.get("properties"))
        items.append(
            ArmChoice(
                _str(site.get("id")),
                _str(site.get("name")),
                {
                    "kind": _str(site.get("kind")) or None,
                    "state": _str(properties.get("state")) or None,
                    "defaultHostName": _str(properties.get("defaultHostName")) or None,
                },
            )
        )
    return PickerPage(items, next_token)


async def automation_accounts(
    services: Services, subscription_id: str, resource_group: str, page_size: int, token: str | None
) -> PickerPage:
    values, next_token = await _resource_group_list(
        services,
        subscription_id,
        resource_group,
        "Microsoft.Automation/automationAccounts",
        AUTOMATION_API,
        token,
        kind="automationAccounts",
        what="Automation accounts",
        top=None,
    )
    items: list[JsonRecord] = [
        ArmChoice(_str(a.get("id")), _str(a.get("name")), {"location": _str(a.get("location")) or None})
        for a in values
    ]
    return PickerPage(items, next_token)


async def runbooks(services: Services, account_id: str, page_size: int, token: str | None) -> PickerPage:
    values, next_token = await ArmReader(services).page(
        f"{account_id.rstrip('/')}/runbooks",
        AUTOMATION_API,
        token,
        kind="runbooks",
        what=f"runbooks of {account_id}",
        permission=f"{READER} on {account_id}",
    )
    items: list[JsonRecord] = []
    for runbook in values:
        properties = _obj(runbook.get("properties"))
        items.append(
            ArmChoice(
                _str(runbook.get("id")),
                _str(runbook.get("name")),
                {
                    "runbookType": _str(properties.get("runbookType")) or None,
                    "state": _str(properties.get("state")) or None,
                },
            )
        )
    return PickerPage(items, next_token)


# --------------------------------------------------------------------------- Azure DevOps


async def devops_headers(services: Services) -> dict[str, str]:
    from shared.integrations.azure_devops import DEVOPS_SCOPE

    access = await services.credential.get_token(DEVOPS_SCOPE)
    return {
        "Authorization": f"Bearer {access.token}",
        "Accept": "application/json",
        # Without it DevOps answers an unauthenticated call with 203 and a sign-in page.
        "X-TFS-FedAuthRedirect": "Suppress",
    }


async def devops_projects(
    services: Services, organization: str, page_size: int, token: str | None
) -> PickerPage:
    cursor = decode_token(token, "devopsProjects")
    params = {"api-version": DEVOPS_API, "$top": str(page_size)}
    if cursor:
        params["continuationToken"] = cursor
    base = services.settings.devops_url.rstrip("/")
    answer = await get_json(
        services.http,
        f"{base}/{quote(organization, safe='')}/_apis/projects",
        params=params,
        headers=await devops_headers(services),
        service="azuredevops",
        what=f"projects of organization {organization}",
        permission=f"the rotator's identity added to organization {organization} with project read access",
    )
    items: list[JsonRecord] = [
        DevOpsProject(_str(p.get("id")), _str(p.get("name")))
        for p in _list(_obj(answer.body).get("value"))
        if isinstance(p, dict)
    ]
    next_cursor = answer.headers.get("x-ms-continuationtoken")
    return PickerPage(items, encode_token("devopsProjects", next_cursor) if next_cursor else None)


def service_connection_choice(endpoint: dict[str, Any]) -> ServiceConnectionChoice:
    """A service endpoint and whether the rotator can update it (an azurerm connection that signs
    in with a service principal and a secret)."""
    authorization = _obj(endpoint.get("authorization"))
    parameters = {k.lower(): v for k, v in _obj(authorization.get("parameters")).items()}
    kind = _str(endpoint.get("type"))
    scheme = _str(authorization.get("scheme"))
    principal = parameters.get("serviceprincipalid")
    reason: str | None = None
    if kind.lower() != "azurerm":
        reason = f"a '{kind}' connection, not Azure Resource Manager: it holds no Entra ID client secret"
    elif scheme.lower() == "workloadidentityfederation":
        reason = "signs in with workload identity federation: it holds no secret to rotate"
    elif scheme.lower() == "managedserviceidentity":
        reason = "signs in with a managed identity: it holds no secret to rotate"
    elif scheme.lower() != "serviceprincipal":
        reason = f"authorization scheme '{scheme}' is not one the rotator updates"
    elif _str(parameters.get("authenticationtype")).lower() == "spncertificate":
        reason = "signs in with a certificate, not a secret"
    return ServiceConnectionChoice(
        _str(endpoint.get("id")),
        _str(endpoint.get("name")),
        kind,
        scheme,
        principal if isinstance(principal, str) and principal else None,
        reason is None,
        reason,
    )


async def devops_endpoints(services: Services, organization: str, project: str) -> list[dict[str, Any]]:
    base = services.settings.devops_url.rstrip("/")
    answer = await get_json(
        services.http,
        f"{base}/{quote(organization, safe='')}/{quote(project, safe='')}/_apis/serviceendpoint/endpoints",
        # includeFailed: a connection that failed to become ready still holds the secret.
        params={"api-version": DEVOPS_API, "includeFailed": "true"},
        headers=await devops_headers(services),
        service="azuredevops",
        what=f"service connections of {organization}/{project}",
        permission=f"the rotator's identity as a Reader of the service connections of {organization}/{project}",
    )
    return [e for e in _list(_obj(answer.body).get("value")) if isinstance(e, dict)]


async def devops_service_connections(
    services: Services, organization: str, project: str, page_size: int, token: str | None
) -> PickerPage:
    # Endpoints - Get Service Endpoints answers in one page; ours are cut from it.
    offset_text = decode_token(token, "serviceConnections")
    offset = int(offset_text) if offset_text and offset_text.isdigit() else 0
    endpoints = await devops_endpoints(services, organization, project)
    chunk = endpoints[offset : offset + page_size]
    more = offset + page_size < len(endpoints)
    items: list[JsonRecord] = [service_connection_choice(e) for e in chunk]
    return PickerPage(items, encode_token("serviceConnections", str(offset + page_size)) if more else None)


# --------------------------------------------------------------------------- Vercel


async def vercel_token(services: Services, group_id: str) -> tuple[str, str | None]:
    """The group's Vercel token (from the rotator's vault) and team id; 404/409 when it has none."""
    from shared.errors import ConflictError

    group, _etag = await services.groups.get(group_id)
    vercel = group.vercel
    if vercel is None or not vercel.token_secret_name:
        raise ConflictError(f"Group '{group_id}' has no Vercel token; set the group's Vercel settings first")
    stored = await services.vault(services.settings.vault_url).get(vercel.token_secret_name)
    if stored is None:
        raise ConflictError(
            f"The Vercel token of group '{group_id}' is missing from the rotator's vault; set it again"
        )
    from shared.credentials import header_safe

    secret = stored.value.reveal()
    if not header_safe(secret):  # stored before the API checked it
        raise ConflictError(
            f"The Vercel token of group '{group_id}' cannot be sent in an HTTP header; set it again"
        )
    return secret, vercel.team_id


async def vercel_projects(services: Services, group_id: str, page_size: int, token: str | None) -> PickerPage:
    secret, team_id = await vercel_token(services, group_id)
    params = {"limit": str(page_size)}
    until = decode_token(token, "vercelProjects")
    if until:
        params["until"] = until
    if team_id:
        params["teamId"] = team_id
    answer = await get_json(
        services.http,
        f"{services.settings.vercel_url.rstrip('/')}/v10/projects",
        params=params,
        headers={"Authorization": f"Bearer {secret}", "Accept": "application/json"},
        service="vercel",
        what=f"Vercel projects of group {group_id}",
        permission=f"a Vercel token for group '{group_id}' with access to its team's projects",
    )
    body = _obj(answer.body)
    items: list[JsonRecord] = [
        VercelProject(_str(p.get("id")), _str(p.get("name")), _str(p.get("framework")) or None)
        for p in _list(body.get("projects"))
        if isinstance(p, dict)
    ]
    following = _obj(body.get("pagination")).get("next")
    return PickerPage(
        items, encode_token("vercelProjects", str(following)) if following not in (None, "") else None
    )
