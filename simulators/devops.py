"""Azure DevOps service connections simulator (HTTPS), the part of the REST API the rotator uses.

* ``GET {org}/{project}/_apis/serviceendpoint/endpoints/{id}?api-version=..`` returns the
  ServiceEndpoint with its secrets as ``null`` (write-only, like the real service). An id that is
  unknown or not shared with the project answers ``200`` with a ``null`` body, as DevOps does
  (MicrosoftDocs/vsts-rest-api-specs#285).
* ``PUT {org}/_apis/serviceendpoint/endpoints/{id}?api-version=..`` (organization level) takes
  the whole object. ``serviceEndpointProjectReferences`` is required; a ``null`` key keeps the
  stored one; the answer is the updated object, key ``null`` again.

Auth: ``Bearer`` tokens from the stack's ``TokenIssuer`` for the DevOps resource
(``499b84ac-1321-427f-aa17-267ca6975798``), or ``Basic`` with a PAT registered here (any user name).
Without ``X-TFS-FedAuthRedirect: Suppress`` an unauthenticated call gets ``203`` and a sign-in page,
as browsers do; with it, ``401``. Errors use DevOps's body (``$id``, ``message``, ``typeName``,
``typeKey``, ``errorCode``, ``eventId``).

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

    def shared_with(self, project: Project) -> bool:
        return any(ref.get("projectReference", {}).get("id") == project.id for ref in self.project_refs)

    def to_json(self, *, include_key: bool = False) -> JsonDict:
        parameters = dict(self.parameters)
        # Write-only: the real service never returns the key.
        parameters["serviceprincipalkey"] = self.key if include_key else None
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

        self.admin_route("POST", "/organizations", self._admin_add_organization)
        self.admin_route("POST", "/serviceconnections", self._admin_add_connection)
        self.admin_route("POST", "/pats", self._admin_add_pat)

    # ----------------------------------------------------------------- Python admin API

    def add_project(self, organization: str, project: str, *, project_id: str | None = None) -> Project:
        with self._lock:
            org = self._orgs.setdefault(organization.lower(), Organization(organization))
            existing = org.projects.get(project.lower())
            if existing is not None:
                return existing
            created = Project((project_id or str(uuid.uuid4())).lower(), project)
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
    ) -> ServiceConnection:
        """Seed an azurerm service connection (the shape ``az devops service-endpoint azurerm create`` makes)."""
        with self._lock:
            projects = [self.add_project(organization, p) for p in (project, *shared_with)]
            connection = ServiceConnection(
                id=(endpoint_id or str(uuid.uuid4())).lower(),
                organization=organization,
                name=name,
                type=type,
                url="https://management.azure.com/",
                scheme=scheme,
                parameters={
                    "tenantid": tenant_id,
                    "serviceprincipalid": service_principal_id,
                    "authenticationType": authentication_type,
                },
                key=key,
                data={
                    "subscriptionId": subscription_id,
                    "subscriptionName": "Simulated subscription",
                    "environment": "AzureCloud",
                    "scopeLevel": "Subscription",
                    "creationMode": "Manual",
                },
                project_refs=[
                    {"projectReference": {"id": p.id, "name": p.name}, "name": name, "description": ""}
                    for p in projects
                ],
                administrators=administrators,
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
        """Load ``{"serviceConnections": [...], "pats": [...], "members": {org: [...]}}`` (the
        objects take the fields of ``POST /_sim/serviceconnections`` and ``POST /_sim/pats``)."""
        for spec in data.get("serviceConnections") or []:
            self._connection_from_json(dict(spec))
        for spec in data.get("pats") or []:
            self._pat_from_json(dict(spec))
        for organization, members in (data.get("members") or {}).items():
            self.set_members(organization, set(members) if members is not None else None)

    def state(self) -> JsonDict:
        with self._lock:
            return {
                "organizations": {
                    org.name: {
                        "projects": {p.name: p.id for p in org.projects.values()},
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

    # ----------------------------------------------------------------- handlers

    def _get_endpoint(self, request: SimRequest) -> SimResponse:
        org = self._org_or_404(request)
        project = org.project(request.params["project"])
        if project is None:
            return self.devops_error(
                404,
                f"TF200016: The following project does not exist: {request.params['project']}. Verify that the "
                "name of the project is correct and that the project exists on the specified Azure DevOps Server.",
                "ProjectDoesNotExistWithNameException",
                type_name="Microsoft.TeamFoundation.Core.WebApi.ProjectDoesNotExistWithNameException, "
                "Microsoft.TeamFoundation.Core.WebApi",
            )
        endpoint = self._endpoints.get(request.params["id"].lower())
        if (
            endpoint is None
            or endpoint.organization.lower() != org.name.lower()
            or not endpoint.shared_with(project)
        ):
            # The real service answers 200 with a null body here, not 404.
            return json_response(200, None)
        return json_response(200, endpoint.to_json())

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
        new_key = parameters.pop("serviceprincipalkey", None)
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

    def _admin_add_connection(self, request: SimRequest) -> SimResponse:
        connection = self._connection_from_json(cast_json_dict(request.json()))
        return json_response(201, connection.to_json(include_key=True))

    def _connection_from_json(self, body: JsonDict) -> ServiceConnection:
        admins = body.get("administrators")
        return self.add_service_connection(
            str(body["organization"]),
            str(body["project"]),
            name=str(body["name"]),
            service_principal_id=str(body["servicePrincipalId"]),
            tenant_id=str(body.get("tenantId") or "00000000-0000-0000-0000-00000000cafe"),
            key=body.get("key", "initial-key"),
            endpoint_id=body.get("id"),
            type=str(body.get("type") or "azurerm"),
            scheme=str(body.get("scheme") or "ServicePrincipal"),
            authentication_type=str(body.get("authenticationType") or "spnKey"),
            administrators=set(admins) if admins is not None else None,
            shared_with=tuple(body.get("sharedWith") or ()),
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
