"""Azure DevOps service connections simulator (HTTPS), the part of the REST API the rotator uses.

* ``GET {org}/{project}/_apis/serviceendpoint/endpoints/{id}?api-version=..`` returns the
  ServiceEndpoint with its secrets as ``null`` (write-only, like the real service). An id that is
  unknown or not shared with the project answers ``200`` with a ``null`` body, as DevOps does
  (MicrosoftDocs/vsts-rest-api-specs#285).
* ``PUT {org}/_apis/serviceendpoint/endpoints/{id}?api-version=..`` (organization level) takes
  the whole object. ``serviceEndpointProjectReferences`` is required; a ``null`` key keeps the
  stored one; the answer is the updated object, key ``null`` again.
* ``GET {org}/{project}/_apis/serviceendpoint/endpoints?api-version=..`` (Endpoints - Get Service
  Endpoints, learn.microsoft.com/rest/api/azure/devops/serviceendpoint/endpoints/get-service-endpoints)
  lists the connections shared with the project as ``{"count", "value"}``, each exactly as the
  single GET shows it (secrets ``null``). Filters: ``type``, ``authSchemes``, ``endpointIds``,
  ``endpointNames``, ``owner`` (comma-separated lists, case-insensitive). Connections with
  ``isReady: false`` are left out unless ``includeFailed=true``, as the service does
  (Azure/azure-devops-cli-extension#1027, #1234). The API documents no paging for this list.
* ``GET {org}/_apis/projects?api-version=..&$top=&$skip=&continuationToken=&stateFilter=``
  (Projects - List, learn.microsoft.com/rest/api/azure/devops/core/projects/list) answers
  ``{"count", "value": [TeamProjectReference]}`` ordered by name; a page of ``$top`` (default 100)
  that leaves projects behind carries the ``x-ms-continuationtoken`` header, whose value (the number
  of projects already returned, as the docs describe ``continuationToken``) is passed back as
  ``continuationToken``. Needs a project-read scope (``vso.project``) for a PAT, per the docs.

Auth: ``Bearer`` tokens from the stack's ``TokenIssuer`` for the DevOps resource
(``499b84ac-1321-427f-aa17-267ca6975798``), or ``Basic`` with a PAT registered here (any user name).
Without ``X-TFS-FedAuthRedirect: Suppress`` an unauthenticated call gets ``203`` and a sign-in page,
as browsers do; with it, ``401``. Errors use DevOps's body (``$id``, ``message``, ``typeName``,
``typeKey``, ``errorCode``, ``eventId``).

Seeding: ``seed({"projects": [...], "serviceConnections": [...], "pats": [...], "members": ...})``;
every project a connection references exists. Connections of other kinds take ``type``, ``scheme``,
``url``, ``parameters`` (non-secret authorization parameters), ``secretParameter`` and ``isReady``
(see ``add_service_connection``).

Switches: ``deny_access`` (403 for everyone), ``fail_validation`` (the next N updates leave the
connection ``isReady: false`` with ``operationStatus.state: Failed``), and the base ``throttle``
(429 + ``Retry-After`` + ``X-RateLimit-*``, TF400733), ``fail_next`` (5xx) and ``latency_seconds``.
The stored key is visible through ``service_principal_key(id)`` and ``GET /_sim/state``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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
    json_response,
)

DEVOPS_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"
READ_SCOPES = frozenset({"vso.serviceendpoint", "vso.serviceendpoint_query", "vso.serviceendpoint_manage"})
# Projects - List documents vso.project; the write/manage scopes include it.
PROJECT_READ_SCOPES = frozenset({"vso.project", "vso.project_write", "vso.project_manage"})
MANAGE_SCOPES = frozenset({"vso.serviceendpoint_manage"})
FULL_ACCESS = "full"  # a PAT with "Full access"
_SEGMENT = r"[^/]+"


@dataclass
class Pat:
    token: str
    principal: str
    scopes: frozenset[str]


@dataclass
class Project:
    id: str
    name: str
    description: str | None = None
    visibility: str = "private"
    revision: int = 1
    last_update_time: datetime | None = None

    def to_json(self, base_url: str, organization: str) -> JsonDict:
        """A TeamProjectReference (Projects - List; ``description`` only when the project has one)."""
        data: JsonDict = {"id": self.id, "name": self.name}
        if self.description:
            data["description"] = self.description
        updated = self.last_update_time or datetime.now(UTC)
        data.update(
            {
                "url": f"{base_url}/{organization}/_apis/projects/{self.id}",
                "state": "wellFormed",
                "revision": self.revision,
                "visibility": self.visibility,
                "lastUpdateTime": updated.strftime("%Y-%m-%dT%H:%M:%S.")
                + f"{updated.microsecond // 1000:03d}Z",
            }
        )
        return data


@dataclass
class Organization:
    name: str
    projects: dict[str, Project] = field(default_factory=dict)  # by lower-case name
    # Who may call at all (None: anyone with a valid token); others get 401 as non-members do.
    members: set[str] | None = None

    def project(self, name_or_id: str) -> Project | None:
        found = self.projects.get(name_or_id.lower())
        if found is not None:
            return found
        return next((p for p in self.projects.values() if p.id == name_or_id.lower()), None)


@dataclass
class ServiceConnection:
    id: str
    organization: str
    name: str
    type: str
    url: str
    scheme: str
    parameters: dict[str, Any]  # authorization parameters, secrets left out
    key: str | None
    data: dict[str, Any]
    project_refs: list[dict[str, Any]]
    description: str = ""
    is_ready: bool = True
    operation_state: str = "Ready"
    status_message: str = ""
    # Principals allowed to update it (Endpoint Administrators); None: anyone who may read it.
    administrators: set[str] | None = None
    key_updates: int = 0
    # The write-only authorization parameter holding ``key`` (None: the scheme has no secret).
    secret_parameter: str | None = "serviceprincipalkey"

    def shared_with(self, project: Project) -> bool:
        return any(ref.get("projectReference", {}).get("id") == project.id for ref in self.project_refs)

    def to_json(self, *, include_key: bool = False) -> JsonDict:
        parameters = dict(self.parameters)
        # Write-only: the real service never returns the key.
        if self.secret_parameter:
            parameters[self.secret_parameter] = self.key if include_key else None
        return {
            "data": copy.deepcopy(self.data),
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "url": self.url,
            "createdBy": {"displayName": "Simulated Admin", "id": "00000000-0000-0000-0000-0000000ad000"},
            "description": self.description,
            "authorization": {"parameters": parameters, "scheme": self.scheme},
            "isShared": len(self.project_refs) > 1,
            "isReady": self.is_ready,
            "isOutdated": False,
            "operationStatus": {"state": self.operation_state, "statusMessage": self.status_message},
            "owner": "Library",
            "serviceEndpointProjectReferences": copy.deepcopy(self.project_refs),
        }


class AzureDevOpsSimulator(SimulatorServer):
    kind = "devops"

    def __init__(
        self,
        *,
        issuer: TokenIssuer,
        ssl_context: ssl.SSLContext | None,
        clock: SimClock | None = None,
        name: str = "devops",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(name=name, host=host, port=port, ssl_context=ssl_context, clock=clock)
        self.issuer = issuer
        self.deny_access = False
        self.fail_validation = 0
        self._orgs: dict[str, Organization] = {}
        self._endpoints: dict[str, ServiceConnection] = {}
        self._pats: dict[str, Pat] = {}

        endpoint = rf"/_apis/serviceendpoint/endpoints/(?P<id>{_SEGMENT})/?"
        self.route("GET", rf"/(?P<org>{_SEGMENT})/(?P<project>{_SEGMENT}){endpoint}", self._get_endpoint)
        self.route("PUT", rf"/(?P<org>{_SEGMENT}){endpoint}", self._put_endpoint)
        self.route(
            "GET",
            rf"/(?P<org>{_SEGMENT})/(?P<project>{_SEGMENT})/_apis/serviceendpoint/endpoints/?",
            self._list_endpoints,
        )
        self.route("GET", rf"/(?P<org>{_SEGMENT})/_apis/projects/?", self._list_projects)

        self.admin_route("POST", "/organizations", self._admin_add_organization)
        self.admin_route("POST", "/projects", self._admin_add_project)
        self.admin_route("POST", "/serviceconnections", self._admin_add_connection)
        self.admin_route("POST", "/pats", self._admin_add_pat)

    # ----------------------------------------------------------------- Python admin API

    def add_project(
        self,
        organization: str,
        project: str,
        *,
        project_id: str | None = None,
        description: str | None = None,
        visibility: str = "private",
    ) -> Project:
        """Create a project (an existing one of that name is returned unchanged)."""
        if visibility not in ("private", "public"):
            raise ValueError("visibility must be private or public")
        with self._lock:
            org = self._orgs.setdefault(organization.lower(), Organization(organization))
            existing = org.projects.get(project.lower())
            if existing is not None:
                return existing
            created = Project(
                (project_id or str(uuid.uuid4())).lower(),
                project,
                description=description,
                visibility=visibility,
                last_update_time=self.clock.now(),
            )
            org.projects[project.lower()] = created
            return created

    def set_members(self, organization: str, members: set[str] | None) -> None:
        """Limit who is a user of the organization (None: everyone with a valid credential)."""
        with self._lock:
            self._orgs.setdefault(organization.lower(), Organization(organization)).members = members

    def add_service_connection(
        self,
        organization: str,
        project: str,
        *,
        name: str,
        service_principal_id: str,
        tenant_id: str = "00000000-0000-0000-0000-00000000cafe",
        key: str | None = "initial-key",
        endpoint_id: str | None = None,
        type: str = "azurerm",  # noqa: A002 - the API's field name
        scheme: str = "ServicePrincipal",
        authentication_type: str = "spnKey",
        subscription_id: str = "11111111-1111-1111-1111-111111111111",
        administrators: set[str] | None = None,
        shared_with: tuple[str, ...] = (),
        url: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        key_parameter: str | None = "auto",
        is_ready: bool = True,
        description: str = "",
    ) -> ServiceConnection:
        """Seed a service connection; by default an azurerm one (the shape ``az devops service-endpoint
        azurerm create`` makes, learn.microsoft.com/rest/api/azure/devops/serviceendpoint/endpoints/create
        sample): parameters ``tenantid``, ``serviceprincipalid`` (not for ManagedServiceIdentity),
        ``authenticationType`` (ServicePrincipal only), the issuer and subject for
        WorkloadIdentityFederation. Other kinds: ``parameters`` replaces the non-secret authorization
        parameters (default ``{}`` for a non-azurerm type), ``key_parameter`` names the write-only one
        holding ``key`` ("auto": ``serviceprincipalkey`` for the ServicePrincipal scheme, else none;
        None: no secret), ``url`` and ``data`` the rest; ``is_ready=False`` seeds a failed connection
        (the list shows it only with ``includeFailed=true``)."""
        with self._lock:
            projects = [self.add_project(organization, p) for p in (project, *shared_with)]
            is_azure = type.lower() == "azurerm"
            if key_parameter == "auto":
                key_parameter = "serviceprincipalkey" if scheme.lower() == "serviceprincipal" else None
            if parameters is None:
                parameters = {"tenantid": tenant_id} if is_azure else {}
                if is_azure and scheme.lower() != "managedserviceidentity":
                    parameters["serviceprincipalid"] = service_principal_id
                if is_azure and scheme.lower() == "serviceprincipal":
                    parameters["authenticationType"] = authentication_type
                if is_azure and scheme.lower() == "workloadidentityfederation":
                    parameters["workloadIdentityFederationIssuer"] = (
                        f"https://login.microsoftonline.com/{tenant_id}/v2.0"
                    )
                    parameters["workloadIdentityFederationSubject"] = f"sc://{organization}/{project}/{name}"
            connection = ServiceConnection(
                id=(endpoint_id or str(uuid.uuid4())).lower(),
                organization=organization,
                name=name,
                type=type,
                url=url or ("https://management.azure.com/" if is_azure else "https://github.com"),
                scheme=scheme,
                parameters=dict(parameters),
                key=key if key_parameter else None,
                data=dict(data)
                if data is not None
                else (
                    {
                        "subscriptionId": subscription_id,
                        "subscriptionName": "Simulated subscription",
                        "environment": "AzureCloud",
                        "scopeLevel": "Subscription",
                        "creationMode": "Manual",
                    }
                    if is_azure
                    else {}
                ),
                project_refs=[
                    {"projectReference": {"id": p.id, "name": p.name}, "name": name, "description": ""}
                    for p in projects
                ],
                description=description,
                is_ready=is_ready,
                operation_state="Ready" if is_ready else "Failed",
                administrators=administrators,
                secret_parameter=key_parameter,
            )
            self._endpoints[connection.id] = connection
            return connection

    def add_pat(
        self, token: str, *, principal: str = "pat-user", scopes: set[str] | frozenset[str] = MANAGE_SCOPES
    ) -> Pat:
        with self._lock:
            pat = Pat(token, principal, frozenset(scopes))
            self._pats[token] = pat
            return pat

    def service_connection(self, endpoint_id: str) -> ServiceConnection:
        with self._lock:
            return self._endpoints[endpoint_id.lower()]

    def service_principal_key(self, endpoint_id: str) -> str | None:
        """The stored key (which the API itself never returns)."""
        return self.service_connection(endpoint_id).key

    def seed(self, data: Mapping[str, Any]) -> None:
        """Load ``{"projects": [...], "serviceConnections": [...], "pats": [...], "members": {org: [...]}}``
        (the objects take the fields of ``POST /_sim/projects``, ``POST /_sim/serviceconnections`` and
        ``POST /_sim/pats``)."""
        for spec in data.get("projects") or []:
            self._project_from_json(dict(spec))
        for spec in data.get("serviceConnections") or []:
            self._connection_from_json(dict(spec))
        for spec in data.get("pats") or []:
            self._pat_from_json(dict(spec))
        for organization, members in (data.get("members") or {}).items():
            self.set_members(organization, set(members) if members is not None else None)

    def state(self) -> JsonDict:
        base_url = self.url if self.running else "https://dev.azure.com"
        with self._lock:
            return {
                "organizations": {
                    org.name: {
                        "projects": {p.name: p.id for p in org.projects.values()},
                        "projectDetails": [p.to_json(base_url, org.name) for p in org.projects.values()],
                        "members": sorted(org.members) if org.members is not None else None,
                    }
                    for org in self._orgs.values()
                },
                "serviceConnections": {
                    e.id: {
                        **e.to_json(include_key=True),
                        "organization": e.organization,
                        "keyUpdates": e.key_updates,
                        "administrators": sorted(e.administrators) if e.administrators is not None else None,
                    }
                    for e in self._endpoints.values()
                },
                "pats": [{"principal": p.principal, "scopes": sorted(p.scopes)} for p in self._pats.values()],
                "switches": self.switches(),
            }

    def reset(self) -> None:
        with self._lock:
            super().reset()
            self._orgs.clear()
            self._endpoints.clear()
            self._pats.clear()
            self.deny_access = False
            self.fail_validation = 0

    def switches(self) -> JsonDict:
        data = super().switches()
        data["deny_access"] = self.deny_access
        data["fail_validation"] = self.fail_validation
        return data

    def apply_switch(self, name: str, value: Any) -> bool:
        if name == "deny_access":
            self.deny_access = bool(value)
            return True
        if name == "fail_validation":
            self.fail_validation = int(value or 0)
            return True
        return False

    def endpoints(self) -> JsonDict:
        return {"devops_url": self.url}

    # ----------------------------------------------------------------- protocol helpers

    @staticmethod
    def devops_error(
        status: int,
        message: str,
        type_key: str,
        *,
        type_name: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SimResponse:
        body = {
            "$id": "1",
            "innerException": None,
            "message": message,
            "typeName": type_name
            or f"Microsoft.VisualStudio.Services.WebApi.{type_key}, Microsoft.VisualStudio.Services.WebApi",
            "typeKey": type_key,
            "errorCode": 0,
            "eventId": 3000,
        }
        return json_response(status, body, headers)

    def _unauthorized(self, request: SimRequest) -> SimResponse:
        if (request.header("x-tfs-fedauthredirect") or "").lower() != "suppress":
            # What a caller that did not ask to suppress the redirect gets: a sign-in page.
            page = b"<html><head><title>Azure DevOps Services | Sign In</title></head><body></body></html>"
            return SimResponse(203, page, {"Content-Type": "text/html; charset=utf-8"})
        response = self.devops_error(
            401,
            "TF400813: The user '' is not authorized to access this resource.",
            "UnauthorizedRequestException",
            type_name="Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException, "
            "Microsoft.TeamFoundation.Framework.Server",
        )
        response.headers["WWW-Authenticate"] = (
            'Bearer authorization_uri=https://login.microsoftonline.com/common, Basic realm="https://dev.azure.com/"'
        )
        return response

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        header = request.header("authorization") or ""
        scheme, _, value = header.partition(" ")
        scopes: frozenset[str]
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return self._unauthorized(request)
            pat = self._pats.get(decoded.partition(":")[2])
            if pat is None:
                return self._unauthorized(request)
            request.principal, scopes = pat.principal, pat.scopes
        else:
            check = self.issuer.check(header, [DEVOPS_RESOURCE])
            if not check.ok or check.token is None:
                return self._unauthorized(request)
            request.principal, scopes = check.token.principal, frozenset({FULL_ACCESS})
        org = self._orgs.get(request.params.get("org", "").lower())
        if org is not None and org.members is not None and request.principal not in org.members:
            return self._unauthorized(request)
        if request.path.rstrip("/").endswith("/_apis/projects"):
            needed = PROJECT_READ_SCOPES  # Projects - List documents vso.project
        else:
            needed = MANAGE_SCOPES if request.method == "PUT" else READ_SCOPES
        if FULL_ACCESS not in scopes and not scopes & needed:
            return self.devops_error(
                401,
                "TF400813: The user is not authorized to access this resource. The personal access token "
                f"is missing the scope {sorted(needed)[-1]}.",
                "UnauthorizedRequestException",
            )
        if self.deny_access:
            return self._access_denied(request)
        if not request.arg("api-version"):
            return self.devops_error(
                400,
                f'No api-version was supplied for the "{request.method}" request. The version must be supplied '
                'either as part of the Accept header (e.g. "application/json; api-version=1.0") or as a query '
                'parameter (e.g. "?api-version=1.0").',
                "VssVersionNotSpecifiedException",
            )
        return None

    def _access_denied(self, request: SimRequest) -> SimResponse:
        return self.devops_error(
            403,
            f"Access Denied: {request.principal} needs the following permission(s) on the resource "
            f"Library/{request.params.get('id', '')} to perform this action: Administer",
            "AccessCheckException",
            type_name="Microsoft.VisualStudio.Services.Security.AccessCheckException, "
            "Microsoft.VisualStudio.Services.WebApi",
        )

    def fault_response(self, request: SimRequest, rule: FaultRule) -> SimResponse:
        if rule.status == 429:
            retry_after = rule.retry_after if rule.retry_after is not None else 1
            return self.devops_error(
                429,
                "TF400733: The request has been canceled: Request was blocked due to exceeding usage of "
                "resource 'ServiceEndpoints' in namespace 'User'.",
                "RequestBlockedException",
                type_name="Microsoft.TeamFoundation.Framework.Server.RequestBlockedException, "
                "Microsoft.TeamFoundation.Framework.Server",
                headers={
                    "Retry-After": str(retry_after),
                    "X-RateLimit-Resource": "ServiceEndpoints/User",
                    "X-RateLimit-Delay": "0",
                    "X-RateLimit-Limit": "200",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(int(time.time()) + retry_after),
                },
            )
        headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else None
        return self.devops_error(
            rule.status,
            f"TF400898: An Internal Error Occurred. Activity Id: {uuid.uuid4()}.",
            "InternalServerErrorException",
            headers=headers,
        )

    def not_found(self, request: SimRequest) -> SimResponse:
        return self.devops_error(
            404,
            f"The controller for path '{request.path}' was not found or does not implement IController.",
            "HttpException",
            type_name="System.Web.HttpException, System.Web",
        )

    def _org_or_404(self, request: SimRequest) -> Organization:
        org = self._orgs.get(request.params["org"].lower())
        if org is None:
            raise SimHTTPError(
                self.devops_error(
                    404,
                    f"VS800075: The organization '{request.params['org']}' does not exist.",
                    "OrganizationNotFoundException",
                )
            )
        return org

    def _project_or_404(self, org: Organization, name_or_id: str) -> Project:
        project = org.project(name_or_id)
        if project is None:
            raise SimHTTPError(
                self.devops_error(
                    404,
                    f"TF200016: The following project does not exist: {name_or_id}. Verify that the "
                    "name of the project is correct and that the project exists on the specified Azure DevOps "
                    "Server.",
                    "ProjectDoesNotExistWithNameException",
                    type_name="Microsoft.TeamFoundation.Core.WebApi.ProjectDoesNotExistWithNameException, "
                    "Microsoft.TeamFoundation.Core.WebApi",
                )
            )
        return project

    # ----------------------------------------------------------------- handlers

    def _get_endpoint(self, request: SimRequest) -> SimResponse:
        org = self._org_or_404(request)
        project = self._project_or_404(org, request.params["project"])
        endpoint = self._endpoints.get(request.params["id"].lower())
        if (
            endpoint is None
            or endpoint.organization.lower() != org.name.lower()
            or not endpoint.shared_with(project)
        ):
            # The real service answers 200 with a null body here, not 404.
            return json_response(200, None)
        return json_response(200, endpoint.to_json())

    @staticmethod
    def _list_arg(request: SimRequest, name: str) -> set[str] | None:
        """A comma-separated query parameter as a lower-cased set (None when absent)."""
        value = request.arg(name)
        if value is None:
            return None
        return {part.strip().lower() for part in value.split(",") if part.strip()}

    def _list_endpoints(self, request: SimRequest) -> SimResponse:
        """Endpoints - Get Service Endpoints (the shape of the docs' sample: ``count`` and ``value``)."""
        org = self._org_or_404(request)
        project = self._project_or_404(org, request.params["project"])
        types = self._list_arg(request, "type")
        schemes = self._list_arg(request, "authSchemes")
        ids = self._list_arg(request, "endpointIds")
        names = self._list_arg(request, "endpointNames")
        owners = self._list_arg(request, "owner")
        include_failed = (request.arg("includeFailed") or "").lower() == "true"
        found = [
            e.to_json()
            for e in self._endpoints.values()
            if e.organization.lower() == org.name.lower()
            and e.shared_with(project)
            and (types is None or e.type.lower() in types)
            and (schemes is None or e.scheme.lower() in schemes)
            and (ids is None or e.id.lower() in ids)
            and (names is None or e.name.lower() in names)
            and (owners is None or "library" in owners)
            and (include_failed or e.is_ready)
        ]
        return json_response(200, {"count": len(found), "value": found})

    def _list_projects(self, request: SimRequest) -> SimResponse:
        """Projects - List: one page of ``$top`` (default 100), the next offset in ``x-ms-continuationtoken``."""
        org = self._org_or_404(request)

        def number(name: str, default: int) -> int:
            text = request.arg(name)
            if text is None or text == "":
                return default
            try:
                value = int(text)
            except ValueError:
                value = -1
            if value < 0:
                raise SimHTTPError(
                    self.devops_error(
                        400,
                        f"The value '{text}' is not valid for parameter {name}.",
                        "InvalidArgumentValueException",
                        type_name="Microsoft.TeamFoundation.Core.WebApi.InvalidArgumentValueException, "
                        "Microsoft.TeamFoundation.Core.WebApi",
                    )
                )
            return value

        top = number("$top", 100) or 100
        offset = number("continuationToken", 0) + number("$skip", 0)
        state_filter = (request.arg("stateFilter") or "wellFormed").lower()
        projects = sorted(org.projects.values(), key=lambda p: (p.name.lower(), p.id))
        if state_filter not in ("wellformed", "all"):
            projects = []  # every simulated project is wellFormed
        page = projects[offset : offset + top]
        headers = {}
        if offset + top < len(projects):
            headers["x-ms-continuationtoken"] = str(offset + top)
        return json_response(
            200,
            {"count": len(page), "value": [p.to_json(request.base_url, org.name) for p in page]},
            headers,
        )

    def _put_endpoint(self, request: SimRequest) -> SimResponse:
        org = self._org_or_404(request)
        endpoint_id = request.params["id"].lower()
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None or endpoint.organization.lower() != org.name.lower():
            return self.devops_error(
                404,
                f"Service connection with id {endpoint_id} does not exist.",
                "ServiceEndpointNotFoundException",
                type_name="Microsoft.VisualStudio.Services.ServiceEndpoints.WebApi.ServiceEndpointNotFoundException, "
                "Microsoft.VisualStudio.Services.ServiceEndpoints.WebApi",
            )
        if endpoint.administrators is not None and request.principal not in endpoint.administrators:
            return self._access_denied(request)
        try:
            body = cast_json_dict(request.json())
        except ValueError as error:
            return self.devops_error(400, str(error), "ArgumentException")
        if str(body.get("id", "")).lower() != endpoint_id:
            return self.devops_error(
                400,
                "The endpoint id in the request body does not match the id in the URL.",
                "ArgumentException",
            )
        references = body.get("serviceEndpointProjectReferences")
        if not isinstance(references, list) or not references:
            return self.devops_error(
                400,
                "Value cannot be null.\r\nParameter name: endpointProjectReferences",
                "ArgumentNullException",
                type_name="System.ArgumentNullException, mscorlib",
            )
        if str(body.get("type", "")).lower() != endpoint.type.lower():
            return self.devops_error(
                400, "The type of a service connection cannot be changed.", "InvalidServiceEndpointException"
            )
        authorization = body.get("authorization")
        if not isinstance(authorization, dict) or not isinstance(authorization.get("parameters"), dict):
            return self.devops_error(
                400,
                "Value cannot be null.\r\nParameter name: endpoint.Authorization",
                "ArgumentNullException",
                type_name="System.ArgumentNullException, mscorlib",
            )
        parameters = dict(authorization["parameters"])
        new_key = parameters.pop(endpoint.secret_parameter or "serviceprincipalkey", None)
        if new_key:  # null keeps the stored secret, as the write-only API does
            endpoint.key = str(new_key)
            endpoint.key_updates += 1
        endpoint.parameters = parameters
        endpoint.scheme = str(authorization.get("scheme") or endpoint.scheme)
        endpoint.name = str(body.get("name") or endpoint.name)
        endpoint.description = str(body.get("description") or "")
        if isinstance(body.get("data"), dict):
            endpoint.data = dict(body["data"])
        endpoint.project_refs = copy.deepcopy(references)
        if self.fail_validation > 0:
            self.fail_validation -= 1
            endpoint.is_ready = False
            endpoint.operation_state = "Failed"
            endpoint.status_message = (
                "Failed to obtain the Json Web Token(JWT) using service principal client ID. "
                "Exception Message: AADSTS7000215: Invalid client secret provided."
            )
        else:
            endpoint.is_ready = True
            endpoint.operation_state = "Ready"
            endpoint.status_message = ""
        return json_response(200, endpoint.to_json())

    # ----------------------------------------------------------------- admin HTTP

    def _admin_add_organization(self, request: SimRequest) -> SimResponse:
        body = cast_json_dict(request.json())
        organization = str(body["organization"])
        for project in body.get("projects") or []:
            self.add_project(organization, str(project))
        if "members" in body:
            members = body["members"]
            self.set_members(organization, set(members) if members is not None else None)
        return json_response(201, self.state()["organizations"].get(organization, {}))

    def _admin_add_project(self, request: SimRequest) -> SimResponse:
        body = cast_json_dict(request.json())
        project = self._project_from_json(body)
        return json_response(201, project.to_json(request.base_url, str(body["organization"])))

    def _project_from_json(self, body: JsonDict) -> Project:
        """``{"organization", "name", "id"?, "description"?, "visibility"?}``."""
        return self.add_project(
            str(body["organization"]),
            str(body["name"]),
            project_id=body.get("id"),
            description=body.get("description"),
            visibility=str(body.get("visibility") or "private"),
        )

    def _admin_add_connection(self, request: SimRequest) -> SimResponse:
        connection = self._connection_from_json(cast_json_dict(request.json()))
        return json_response(201, connection.to_json(include_key=True))

    def _connection_from_json(self, body: JsonDict) -> ServiceConnection:
        """Fields: ``organization``, ``project``, ``name``, ``servicePrincipalId`` (azurerm), ``tenantId``,
        ``key``, ``id``, ``type``, ``scheme``, ``authenticationType``, ``administrators``, ``sharedWith``,
        and for other kinds ``url``, ``parameters``, ``data``, ``secretParameter`` (null: no secret;
        by default ``serviceprincipalkey`` for the ServicePrincipal scheme, else none), ``isReady``,
        ``description``. ``servicePrincipalId`` may be left out when ``parameters`` is given."""
        admins = body.get("administrators")
        parameters = body.get("parameters")
        if parameters is None and body.get("servicePrincipalId") is None:
            raise ValueError("servicePrincipalId (or parameters) is required")
        return self.add_service_connection(
            str(body["organization"]),
            str(body["project"]),
            name=str(body["name"]),
            service_principal_id=str(body.get("servicePrincipalId") or ""),
            tenant_id=str(body.get("tenantId") or "00000000-0000-0000-0000-00000000cafe"),
            key=body.get("key", "initial-key"),
            endpoint_id=body.get("id"),
            type=str(body.get("type") or "azurerm"),
            scheme=str(body.get("scheme") or "ServicePrincipal"),
            authentication_type=str(body.get("authenticationType") or "spnKey"),
            administrators=set(admins) if admins is not None else None,
            shared_with=tuple(body.get("sharedWith") or ()),
            url=body.get("url"),
            parameters=dict(parameters) if parameters is not None else None,
            data=dict(body["data"]) if isinstance(body.get("data"), dict) else None,
            key_parameter=body.get("secretParameter", "auto"),
            is_ready=bool(body.get("isReady", True)),
            description=str(body.get("description") or ""),
        )

    def _admin_add_pat(self, request: SimRequest) -> SimResponse:
        pat = self._pat_from_json(cast_json_dict(request.json()))
        return json_response(201, {"principal": pat.principal, "scopes": sorted(pat.scopes)})

    def _pat_from_json(self, body: JsonDict) -> Pat:
        return self.add_pat(
            str(body["token"]),
            principal=str(body.get("principal") or "pat-user"),
            scopes=frozenset(body.get("scopes") or MANAGE_SCOPES),
        )
