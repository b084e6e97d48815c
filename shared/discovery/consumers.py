"""Consumer discovery: who holds, or points at, an application's client secret.

Searched with the rotator's own identity, in the scopes the application's integrations name plus the
ones the caller adds (resource groups, DevOps projects):

=================================  =====================================  ===========================
consumer kind                      found by (``evidence``)                docs
=================================  =====================================  ===========================
``azureDevOpsServiceConnection``   ``authorization.parameters.             learn.microsoft.com/rest/api/
                                   serviceprincipalid`` is the appId       azure/devops/serviceendpoint
                                   (``servicePrincipalId``)
``logicAppConnection``             the ``token:clientId`` parameter is     learn.microsoft.com/rest/api/
                                   the appId (``clientId``)                logic/connections
``appServiceSetting``              a setting's value has the SHA-256 of   learn.microsoft.com/rest/api/
                                   the current or previous staged secret   appservice/web-apps/
                                   (``secretDigest``), or it is a Key      list-application-settings
                                   Vault reference to a secret of this
                                   application (``keyVaultReference``)
``keyVaultSecret``                 the secret's ``appId`` tag              learn.microsoft.com/rest/api/
                                   (``appIdTag``)                          keyvault/secrets/get-secrets
``vercelEnvironmentVariable``      a variable of the group's projects     vercel.com/docs/rest-api/
                                   with a name this application's          reference/endpoints/projects
                                   Vercel integrations use (``name``:
                                   Vercel never shows sensitive values)
=================================  =====================================  ===========================

Each consumer says whether an enabled integration already covers it, and, if not, a ready-to-PUT
integration. Values are compared in memory by digest and never returned or logged. A scope the
rotator may not read is reported in ``gaps`` with the permission it needs; the search goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

from shared.discovery import pickers
from shared.discovery.rest import get_json
from shared.errors import (
    ConflictError,
    ExternalServiceError,
    NotFoundError,
    PermissionMissingError,
    RotatorError,
)

if TYPE_CHECKING:
    from shared.domain.models import ApplicationConfig
    from shared.services import Services
    from shared.storage.applications import StoredApplication

logger = logging.getLogger("rotator.discovery")

WEB_API = "2023-12-01"
# Bounds that keep one discovery call short: list pages followed per scope, scopes per call.
MAX_PAGES = 10
MAX_SCOPES = 20
# Scopes searched side by side, and how long one may take before it is reported as a gap.
PARALLEL_SCOPES = 6
SCOPE_SECONDS = 20
WEBSITE_CONTRIBUTOR = "the Website Contributor role (app settings are read with config/list)"

ConsumerKind = Literal[
    "azureDevOpsServiceConnection",
    "logicAppConnection",
    "appServiceSetting",
    "keyVaultSecret",
    "vercelEnvironmentVariable",
]


@dataclass(frozen=True)
class Consumer:
    kind: ConsumerKind
    resource: str  # the resource id, or org/project/id, or vault URL + secret name
    name: str
    evidence: str
    covered_by: str | None
    supported: bool
    reason: str | None = None
    # Settings of an integration that would cover it (None when covered or unsupported).
    integration: dict[str, object] | None = None
    confidence: Literal["exact", "name"] = "exact"

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "kind": self.kind,
            "resource": self.resource,
            "name": self.name,
            "evidence": self.evidence,
            "confidence": self.confidence,
            "covered": self.covered_by is not None,
            "coveredBy": self.covered_by,
            "supported": self.supported,
            "integration": self.integration,
        }
        if self.reason:
            body["reason"] = self.reason
        return body


@dataclass(frozen=True)
class Gap:
    scope: str
    reason: str
    permission: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"scope": self.scope, "reason": self.reason, "permission": self.permission}


@dataclass
class Discovery:
    app_id: str
    consumers: list[Consumer] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    scanned: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "appId": self.app_id,
            "items": [c.to_json() for c in self.consumers],
            "gaps": [g.to_json() for g in self.gaps],
            "scanned": self.scanned,
        }


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def resource_group_of(resource_id: str) -> str | None:
    """``/subscriptions/{s}/resourceGroups/{g}`` of a resource id, or None."""
    parts = resource_id.split("/")
    if len(parts) > 4 and parts[1].lower() == "subscriptions" and parts[3].lower() == "resourcegroups":
        return f"/subscriptions/{parts[2]}/resourceGroups/{parts[4]}"
    return None


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.lower() == b.lower()


def _host(url: str) -> str:
    parsed = urlsplit(url)
    return f"{(parsed.hostname or '').lower()}:{parsed.port or 443}"


class _Search:
    def __init__(self, services: Services, stored: StoredApplication) -> None:
        self.services = services
        self.config: ApplicationConfig = stored.config
        self.status = stored.status
        self.app_id = str(stored.config.app_id).lower()
        self.result = Discovery(self.app_id)
        self.digests: dict[str, bytes] = {}
        # (vault host or name, secret name) of the secrets this application's secret lives in.
        self.managed_secrets: set[tuple[str, str]] = set()
        self.vault_names: dict[str, str] = {}

    async def together(self, scopes: Sequence[tuple[str, Callable[[], Awaitable[None]]]]) -> None:
        """Search these scopes side by side (at most ``PARALLEL_SCOPES`` at once)."""
        semaphore = asyncio.Semaphore(PARALLEL_SCOPES)

        async def one(scope: str, work: Callable[[], Awaitable[None]]) -> None:
            async with semaphore:
                await self.guarded(scope, work)

        await asyncio.gather(*(one(scope, work) for scope, work in scopes))

    async def guarded(self, scope: str, work: Callable[[], Awaitable[None]]) -> None:
        try:
            async with asyncio.timeout(SCOPE_SECONDS):
                await work()
        except TimeoutError:
            self.result.gaps.append(Gap(scope, f"no answer within {SCOPE_SECONDS} seconds"))
        except PermissionMissingError as error:
            self.result.gaps.append(Gap(scope, error.message, error.permission))
        except NotFoundError as error:
            self.result.gaps.append(Gap(scope, error.message))
        except ConflictError as error:
            self.result.gaps.append(Gap(scope, error.message))
        except ExternalServiceError as error:
            if error.status in (401, 403):
                self.result.gaps.append(Gap(scope, "the rotator may not read it", None))
            else:
                self.result.gaps.append(Gap(scope, f"{error.service} failed: {error.message}"))
        except RotatorError as error:  # e.g. a token without the identity's object id
            self.result.gaps.append(Gap(scope, error.message))

    def integrations(self, kind: str) -> list[tuple[str, Any]]:
        return [(i.name or i.kind, i) for i in self.config.integrations if i.kind == kind and i.enabled]

    # ----------------------------------------------------------------- staged secrets
    async def load_digests(self) -> None:
        status = self.status
        wanted = [("current", status.current_rotation_id, status.current_version)]
        if status.previous_rotation_id:
            wanted.append(("previous", status.previous_rotation_id, None))
        for label, rotation_id, version in wanted:
            if not rotation_id:
                continue
            staged = await self.services.staging.get(self.app_id, rotation_id, version)
            if staged is not None:
                self.digests[label] = _digest(staged.value.reveal())

    def matches_secret(self, value: str) -> str | None:
        digest = _digest(value)
        for label, known in self.digests.items():
            if hmac.compare_digest(digest, known):
                return label
        return None

    # ----------------------------------------------------------------- Azure DevOps
    async def devops(self, organization: str, project: str) -> None:
        endpoints = await pickers.devops_endpoints(self.services, organization, project)
        for endpoint in endpoints:
            choice = pickers.service_connection_choice(endpoint)
            if not _same(choice.service_principal_id, self.app_id):
                continue
            covered = next(
                (
                    name
                    for name, i in self.integrations("azureDevOps")
                    if _same(i.organization, organization)
                    and _same(i.project, project)
                    and str(i.service_connection_id).lower() == choice.connection_id.lower()
                ),
                None,
            )
            suggestion: dict[str, object] | None = None
            if covered is None and choice.supported:
                suggestion = {
                    "kind": "azureDevOps",
                    "organization": organization,
                    "project": project,
                    "serviceConnectionId": choice.connection_id,
                }
            self.result.consumers.append(
                Consumer(
                    "azureDevOpsServiceConnection",
                    f"{organization}/{project}/{choice.connection_id}",
                    choice.name,
                    "servicePrincipalId",
                    covered,
                    choice.supported,
                    choice.reason,
                    suggestion,
                )
            )

    # ----------------------------------------------------------------- ARM resource groups
    async def _all(self, first: Callable[[str | None], Awaitable[pickers.PickerPage]]) -> list[Any]:
        items: list[Any] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            page = await first(token)
            items += page.items
            token = page.continuation_token
            if not token:
                break
        return items

    async def connections(self, subscription: str, group: str) -> None:
        found = await self._all(
            lambda t: pickers.logic_app_connections(self.services, subscription, group, 100, t)
        )
        for choice in found:
            if not _same(str(choice.facts.get("clientId") or ""), self.app_id):
                continue
            covered = next(
                (
                    n
                    for n, i in self.integrations("logicAppConnection")
                    if _same(i.resource_id, choice.resource_id)
                ),
                None,
            )
            self.result.consumers.append(
                Consumer(
                    "logicAppConnection",
                    choice.resource_id,
                    choice.name,
                    "clientId",
                    covered,
                    True,
                    integration=None
                    if covered
                    else {"kind": "logicAppConnection", "resourceId": choice.resource_id},
                )
            )

    async def sites(self, subscription: str, group: str) -> None:
        found = await self._all(lambda t: pickers.app_services(self.services, subscription, group, 100, t))
        for choice in found:
            await self.guarded(choice.resource_id, partial(self.site_settings, choice.resource_id))

    async def site_settings(self, site_id: str) -> None:
        from shared.integrations.app_service import is_key_vault_reference, parse_reference

        answer = await pickers.ArmReader(self.services).get(
            f"{site_id}/config/appsettings/list",
            WEB_API,
            method="POST",
            what=f"app settings of {site_id}",
            permission=f"{WEBSITE_CONTRIBUTOR} on {site_id}",
        )
        properties = answer.body.get("properties") if isinstance(answer.body, dict) else None
        settings = properties if isinstance(properties, dict) else {}
        site_integrations = [
            (n, i) for n, i in self.integrations("appService") if _same(i.resource_id, site_id)
        ]
        for name, value in settings.items():
            if not isinstance(value, str) or not value:
                continue
            if is_key_vault_reference(value):
                reference = parse_reference(value)
                if reference is None:
                    continue
                where = (
                    _host(reference.vault_url)
                    if reference.vault_url
                    else (reference.vault_name or "").lower()
                )
                if (where, reference.secret_name.lower()) not in self.managed_secrets:
                    continue
                covered = next(
                    (
                        n
                        for n, i in site_integrations
                        if i.mode == "keyVaultReference"
                        and (i.setting_name is None or _same(i.setting_name, name))
                    ),
                    None,
                )
                self._site_consumer(site_id, name, "keyVaultReference", covered, "keyVaultReference")
                continue
            which = self.matches_secret(value)
            if which is None:
                continue
            covered = next(
                (n for n, i in site_integrations if i.mode == "appSetting" and _same(i.setting_name, name)),
                None,
            )
            self._site_consumer(site_id, name, f"secretDigest:{which}", covered, "appSetting")

    def _site_consumer(
        self, site_id: str, setting: str, evidence: str, covered: str | None, mode: str
    ) -> None:
        suggestion: dict[str, object] | None = None
        if covered is None:
            suggestion = {"kind": "appService", "resourceId": site_id, "mode": mode, "settingName": setting}
        self.result.consumers.append(
            Consumer(
                "appServiceSetting",
                f"{site_id}#{setting}",
                setting,
                evidence,
                covered,
                True,
                integration=suggestion,
            )
        )

    async def vaults_in(self, subscription: str, group: str) -> list[str]:
        """The vaults of a resource group (URLs; names remembered for references by name). Only the
        Vault objects: whether the rotator may write there does not matter for reading tags."""
        urls: list[str] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            vaults, token = await pickers.vault_page(self.services, subscription, group, 100, token)
            for vault in vaults:
                choice = pickers.vault_choice(self.services, vault, None)
                if choice.vault_url:
                    self.vault_names[_host(choice.vault_url)] = choice.name.lower()
                    if choice.selectable:
                        urls.append(choice.vault_url)
            if not token:
                break
        return urls

    # ----------------------------------------------------------------- Key Vault
    def vault_name(self, vault_url: str) -> str:
        """The vault's name: from ARM when listed, else the first label of an Azure vault host."""
        return (
            self.vault_names.get(_host(vault_url))
            or (urlsplit(vault_url).hostname or "").split(".")[0].lower()
        )

    def add_managed(self, vault_url: str, secret: str) -> None:
        """A secret that holds this application's secret: references to it (by URI or by vault
        name, as App Service allows) point at the secret."""
        self.managed_secrets.add((_host(vault_url), secret.lower()))
        self.managed_secrets.add((self.vault_name(vault_url), secret.lower()))

    async def tagged_secrets(self, vault_url: str) -> None:
        from shared.adapters.vault import MANAGED_BY
        from shared.integrations.keyvault import secret_name

        vault = self.services.vault(vault_url)
        covering = {
            secret_name(i, self.config).lower(): n
            for n, i in self.integrations("keyVault")
            if _host(i.vault_url) == _host(vault_url)
        }
        for name, tags in await vault.secret_tags():
            if not _same(tags.get("appId"), self.app_id):
                continue
            self.add_managed(vault_url, name)
            covered = covering.get(name.lower())
            suggestion: dict[str, object] | None = None
            if covered is None:
                suggestion = {"kind": "keyVault", "vaultUrl": vault_url.rstrip("/"), "secretName": name}
                if tags.get("managedBy") != MANAGED_BY:
                    suggestion["adoptExisting"] = True
            self.result.consumers.append(
                Consumer(
                    "keyVaultSecret",
                    f"{vault_url.rstrip('/')}/secrets/{name}",
                    name,
                    "appIdTag",
                    covered,
                    True,
                    integration=suggestion,
                )
            )

    # ----------------------------------------------------------------- Vercel
    async def vercel(self, group_id: str) -> None:
        names = {i.env_var_name for _n, i in self.integrations("vercel")}
        if not names:
            return
        secret, team_id = await pickers.vercel_token(self.services, group_id)
        projects = await self._all(lambda t: pickers.vercel_projects(self.services, group_id, 100, t))
        base = self.services.settings.vercel_url.rstrip("/")
        headers = {"Authorization": f"Bearer {secret}", "Accept": "application/json"}
        params = {"teamId": team_id} if team_id else None
        for project in projects:
            answer = await get_json(
                self.services.http,
                f"{base}/v10/projects/{quote(project.project_id, safe='')}/env",
                params=params,
                headers=headers,
                service="vercel",
                what=f"environment variables of Vercel project {project.name}",
                permission=f"a Vercel token for group '{group_id}' with access to project {project.name}",
            )
            envs = answer.body.get("envs") if isinstance(answer.body, dict) else None
            for env in envs if isinstance(envs, list) else []:
                if not isinstance(env, dict) or env.get("key") not in names:
                    continue
                key = str(env["key"])
                covered = next(
                    (
                        n
                        for n, i in self.integrations("vercel")
                        if i.env_var_name == key and i.project_id in (project.project_id, project.name)
                    ),
                    None,
                )
                targets = env.get("target")
                standard = [
                    t
                    for t in (targets if isinstance(targets, list) else [targets])
                    if t in ("production", "preview", "development")
                ]
                suggestion: dict[str, object] | None = None
                if covered is None:
                    suggestion = {
                        "kind": "vercel",
                        "projectId": project.project_id,
                        "envVarName": key,
                        "targets": standard or ["production"],
                    }
                self.result.consumers.append(
                    Consumer(
                        "vercelEnvironmentVariable",
                        f"{project.project_id}/{key}",
                        key,
                        "name",
                        covered,
                        True,
                        "matched by name only: Vercel does not show sensitive values; confirm it holds this application's secret"
                        if covered is None
                        else None,
                        suggestion,
                        confidence="name",
                    )
                )


def parse_project(text: str) -> tuple[str, str]:
    organization, _sep, project = text.partition("/")
    return organization, project


async def discover(
    services: Services,
    stored: StoredApplication,
    *,
    resource_groups: list[str] = (),  # type: ignore[assignment]
    devops_projects: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> Discovery:
    """Every consumer found in the application's scopes plus the ones given; never raises for a
    scope it may not read (see ``Discovery.gaps``)."""
    from shared.integrations.azure_devops import AzureDevOpsIntegration
    from shared.integrations.keyvault import KeyVaultIntegration

    search = _Search(services, stored)
    config = stored.config
    groups: dict[str, str] = {}  # lower case (ARM ids compare so) -> as written
    vault_urls: dict[str, str] = {}
    projects: dict[tuple[str, str], None] = {}
    for integration in config.integrations:
        for attribute in ("resource_id", "automation_account_id", "vault_resource_id"):
            value = getattr(integration, attribute, None)
            group = resource_group_of(value) if isinstance(value, str) else None
            if group:
                groups.setdefault(group.lower(), group)
        if isinstance(integration, KeyVaultIntegration):
            vault_urls[_host(integration.vault_url)] = integration.vault_url
        if isinstance(integration, AzureDevOpsIntegration):
            projects[(integration.organization, integration.project)] = None
    for group in resource_groups:
        groups.setdefault(group.lower(), group)
    for pair in devops_projects:
        projects[pair] = None
    group_list = list(groups.values())[:MAX_SCOPES]
    project_list = list(projects)[:MAX_SCOPES]
    arm_groups = [(group, group.split("/")[2], group.split("/")[4]) for group in group_list]

    async def list_vaults(subscription: str, name: str) -> None:
        for url in await search.vaults_in(subscription, name):
            vault_urls.setdefault(_host(url), url)

    # Three phases, each one's scopes side by side: the staged secrets and the vaults first, then
    # what needs only them, then App Service (its references are checked against the secrets found).
    first: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("rotator vault (staged secrets)", search.load_digests)
    ]
    first += [(f"{g} (Key Vaults)", partial(list_vaults, sub, name)) for g, sub, name in arm_groups]
    await search.together(first)
    rotator_vault = _host(services.settings.vault_url)
    vaults = [url for host, url in vault_urls.items() if host != rotator_vault][:MAX_SCOPES]
    # Secrets the application's Key Vault integrations write hold its secret too.
    from shared.integrations.keyvault import secret_name

    for _name, integration in search.integrations("keyVault"):
        search.add_managed(integration.vault_url, secret_name(integration, config))
    second: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        (url, partial(search.tagged_secrets, url)) for url in vaults
    ]
    second += [(f"{o}/{p}", partial(search.devops, o, p)) for o, p in project_list]
    second += [
        (f"{g} (API connections)", partial(search.connections, sub, name)) for g, sub, name in arm_groups
    ]
    if config.group_id and search.integrations("vercel"):
        second.append(
            (f"Vercel projects of group {config.group_id}", partial(search.vercel, str(config.group_id)))
        )
    await search.together(second)
    await search.together(
        [(f"{g} (App Service)", partial(search.sites, sub, name)) for g, sub, name in arm_groups]
    )
    search.result.consumers.sort(key=lambda c: (c.kind, c.resource.lower()))
    search.result.scanned = {
        "resourceGroups": group_list,
        "devOpsProjects": [f"{o}/{p}" for o, p in project_list],
        "keyVaults": [url.rstrip("/") for url in vaults],
    }
    return search.result
