"""Azure DevOps destination: the key of an azurerm service connection that signs in with a secret.

The REST API is used directly (plain httpx): the ``azure-devops`` SDK resolves every URL through
``OPTIONS /_apis`` location discovery, which would add round trips and a lot to simulate.

* ``GET  {devops}/{org}/{project}/_apis/serviceendpoint/endpoints/{id}`` reads the connection. An
  unknown id (or one not shared with the project) answers ``200`` with a ``null`` body.
* ``PUT  {devops}/{org}/_apis/serviceendpoint/endpoints/{id}`` (organization level, no project)
  takes the whole ServiceEndpoint back. Secrets are write-only (GET returns them as ``null``), so
  the object read is sent back with the new key filled in, ``serviceEndpointProjectReferences``
  included (DevOps refuses an update without them).

Ownership: a connection whose ``serviceprincipalid`` is another application is refused, since
writing this application's secret into it would break it. Verifying cannot read the key back; it
checks that the connection is ready and still names this application.
"""

from __future__ import annotations

import base64
import copy
import logging
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote
from uuid import UUID

from pydantic import ConfigDict

from shared.adapters.http import clip, retry_after_seconds
from shared.domain.fields import (
    DevOpsOrganization,
    DevOpsProject,
    IntegrationBase,
    KeyVaultSecretName,
    schema_rules,
)
from shared.errors import (
    FieldProblem,
    RotationError,
    ThrottledError,
    TransientServiceError,
)
from shared.integrations.base import DeployContext, DeployOutcome, WriteOnlyField

if TYPE_CHECKING:
    import httpx

    from shared.domain.models import ApplicationConfig
    from shared.domain.secret import SecretValue

logger = logging.getLogger("rotator.integrations.azuredevops")

SERVICE = "azuredevops"
# The Azure DevOps resource (application) id: tokens for it are what the REST API accepts.
DEVOPS_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"
DEVOPS_SCOPE = f"{DEVOPS_RESOURCE}/.default"
API_VERSION = "7.1"
MANAGE_PERMISSION = (
    "the rotator's identity needs the Endpoint Administrator role on the service connection "
    "(or the project's service connections), or a PAT with the vso.serviceendpoint_manage scope"
)


class AzureDevOpsIntegration(IntegrationBase):
    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            **{
                "if": {"properties": {"authentication": {"const": "pat"}}, "required": ["authentication"]},
                # The PAT on the way in, or the reference to it the API stored (a GET body sent back).
                "then": {"anyOf": [{"required": ["personalAccessToken"]}, {"required": ["patSecretName"]}]},
            }
        )
    )

    kind: Literal["azureDevOps"]
    organization: DevOpsOrganization
    project: DevOpsProject
    service_connection_id: UUID
    authentication: Literal["managedIdentity", "pat"] = "managedIdentity"
    # Name of the PAT's secret in the rotator's own vault (set by the API, never the PAT itself).
    pat_secret_name: KeyVaultSecretName | None = None


class AzureDevOpsPlugin:
    kind = "azureDevOps"
    settings_model = AzureDevOpsIntegration
    write_only: tuple[WriteOnlyField, ...] = (
        WriteOnlyField(
            "personalAccessToken",
            "patSecretName",
            "pat",
            "A PAT for authentication: pat; stored in the rotator's vault (patSecretName), never returned.",
            defaults=(("authentication", "pat"),),
        ),
    )
    troubleshooting: tuple[str, ...] = (
        "Azure DevOps: check that the service connection still exists and that the PAT is valid "
        "(not expired or revoked, scope 'Service Connections (Read, query & manage)').",
        "With managed-identity authentication, the rotator's identity must be a user of the organization "
        "and an Administrator of the service connection.",
    )

    def check(self, settings: Any, app: ApplicationConfig) -> list[FieldProblem]:
        problems: list[FieldProblem] = []
        if settings.authentication == "pat" and not settings.pat_secret_name:
            problems.append(
                FieldProblem(
                    "patSecretName",
                    "is required when authentication is pat (send the PAT so the API stores it)",
                    "the name of the PAT's secret in the rotator's vault",
                )
            )
        return problems

    def describe(self, settings: Any, app: ApplicationConfig) -> str:
        how = "a PAT" if settings.authentication == "pat" else "the rotator's managed identity"
        return (
            f"set the service principal key of service connection {settings.service_connection_id} "
            f"in Azure DevOps {settings.organization}/{settings.project} (signing in with {how})"
        )

    async def deploy(self, context: DeployContext) -> DeployOutcome:
        settings: AzureDevOpsIntegration = context.settings
        session = _Session(context)
        endpoint = await session.get_endpoint(step="deploy")
        _check_owned(endpoint, settings, context.app, step="deploy")
        name = str(endpoint.get("name") or settings.service_connection_id)

        body = copy.deepcopy(endpoint)
        parameters = body["authorization"]["parameters"]
        parameters["serviceprincipalkey"] = context.secret.reveal()
        parameters["authenticationType"] = "spnKey"
        updated = await session.put_endpoint(body)

        if str(updated.get("id", "")).lower() != str(settings.service_connection_id).lower():
            raise RotationError(
                f"Azure DevOps answered the update of service connection '{name}' with another object",
                step="deploy",
                code="DevOpsUnexpectedResponse",
            )
        logger.info(
            "updated service connection %s in %s", settings.service_connection_id, settings.organization
        )
        return DeployOutcome(
            f"set the key of service connection '{name}' in {settings.organization}/{settings.project}",
            details={
                "organization": settings.organization,
                "project": settings.project,
                "serviceConnectionId": str(settings.service_connection_id),
                "serviceConnectionName": name,
            },
        )

    async def verify(self, context: DeployContext) -> None:
        settings: AzureDevOpsIntegration = context.settings
        endpoint = await _Session(context).get_endpoint(step="verify")
        # Someone may have repointed the connection meanwhile; then our key is not what it uses.
        _check_owned(endpoint, settings, context.app, step="verify")
        name = str(endpoint.get("name") or settings.service_connection_id)
        status = endpoint.get("operationStatus") or {}
        state = str(status.get("state") or "") if isinstance(status, dict) else ""
        if state.lower() == "failed":
            message = clip(str(status.get("statusMessage") or "no reason given"), context.secret)
            raise RotationError(
                f"Service connection '{name}' is in a failed state after the update: {message}",
                step="verify",
                code="ServiceConnectionFailed",
            )
        if endpoint.get("isReady") is not True:
            if state.lower() in ("inprogress", "pending"):
                # DevOps is still processing the update: worth another look shortly.
                raise TransientServiceError(
                    f"Service connection '{name}' is not ready yet ({state})", service=SERVICE
                )
            raise RotationError(
                f"Service connection '{name}' is not ready after the update (isReady is false)",
                step="verify",
                code="ServiceConnectionNotReady",
            )


def _check_owned(
    endpoint: dict[str, Any], settings: AzureDevOpsIntegration, app: ApplicationConfig, *, step: str
) -> None:
    """Refuse any connection that is not an azurerm service-principal-key connection of this app."""
    name = endpoint.get("name") or str(settings.service_connection_id)
    kind = str(endpoint.get("type") or "")
    if kind.lower() != "azurerm":
        raise RotationError(
            f"Service connection '{name}' is of type '{kind}'; only azurerm service connections "
            "that sign in with a service principal key can be rotated",
            step=step,
            code="ServiceConnectionUnsupported",
        )
    authorization = endpoint.get("authorization")
    if not isinstance(authorization, dict) or not isinstance(authorization.get("parameters"), dict):
        raise RotationError(
            f"Service connection '{name}' has no authorization parameters to update",
            step=step,
            code="ServiceConnectionUnsupported",
        )
    scheme = str(authorization.get("scheme") or "")
    if scheme.lower() != "serviceprincipal":
        raise RotationError(
            f"Service connection '{name}' signs in with '{scheme}', which has no secret to rotate; "
            "only the ServicePrincipal scheme with a key is supported",
            step=step,
            code="ServiceConnectionUnsupported",
        )
    parameters = authorization["parameters"]
    auth_type = str(parameters.get("authenticationType") or "spnKey")
    if auth_type.lower() != "spnkey":
        raise RotationError(
            f"Service connection '{name}' signs in with '{auth_type}', not a service principal key",
            step=step,
            code="ServiceConnectionUnsupported",
        )
    principal = str(parameters.get("serviceprincipalid") or "")
    if principal.lower() != str(app.app_id).lower():
        raise RotationError(
            f"Service connection '{name}' signs in as application '{principal or 'unknown'}', not "
            f"{app.app_id}: writing this application's secret into it would break it",
            step=step,
            code="ServiceConnectionPrincipalMismatch",
        )


class _Session:
    """The calls of one deploy or verify, with the authentication the integration names."""

    def __init__(self, context: DeployContext) -> None:
        self._context = context
        self._settings: AzureDevOpsIntegration = context.settings
        services = context.services
        self._http: httpx.AsyncClient = services.http
        self._base = services.settings.devops_url.rstrip("/")
        self._org = quote(self._settings.organization, safe="")
        self._project = quote(self._settings.project, safe="")
        self._id = str(self._settings.service_connection_id)

    async def get_endpoint(self, *, step: str) -> dict[str, Any]:
        url = f"{self._base}/{self._org}/{self._project}/_apis/serviceendpoint/endpoints/{self._id}"
        data = await self._call("GET", url, None, step=step, action="read")
        if data is None:
            # DevOps answers 200 with a null body for an id it does not know in this project.
            raise RotationError(
                f"Service connection {self._id} not found in {self._settings.organization}/"
                f"{self._settings.project} (or not shared with that project, or not visible to the rotator)",
                step=step,
                code="ServiceConnectionNotFound",
            )
        if not isinstance(data, dict):
            raise RotationError(
                "Azure DevOps answered with something that is not a service connection",
                step=step,
                code="DevOpsUnexpectedResponse",
            )
        return data

    async def put_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self._base}/{self._org}/_apis/serviceendpoint/endpoints/{self._id}"
        data = await self._call("PUT", url, body, step="deploy", action="update")
        if not isinstance(data, dict):
            raise RotationError(
                "Azure DevOps answered the update with something that is not a service connection",
                step="deploy",
                code="DevOpsUnexpectedResponse",
            )
        return data

    async def _headers(self, step: str) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            # Without this DevOps answers an unauthenticated call with 203 and a sign-in page.
            "X-TFS-FedAuthRedirect": "Suppress",
        }
        if self._settings.authentication == "pat":
            pat = await self._pat(step)
            token = base64.b64encode(f":{pat.reveal()}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        else:
            from azure.core.exceptions import ClientAuthenticationError

            try:
                access = await self._context.services.credential.get_token(DEVOPS_SCOPE)
            except ClientAuthenticationError:
                raise RotationError(
                    "The rotator's managed identity could not get a token for Azure DevOps",
                    step=step,
                    code="DevOpsTokenUnavailable",
                ) from None
            headers["Authorization"] = f"Bearer {access.token}"
        return headers

    async def _pat(self, step: str) -> SecretValue:
        name = self._settings.pat_secret_name
        if not name:
            raise RotationError(
                "authentication is pat but patSecretName is not set", step=step, code="DevOpsPatMissing"
            )
        services = self._context.services
        stored = await services.vault(services.settings.vault_url).get(name)
        if stored is None:
            raise RotationError(
                f"The PAT secret '{name}' is missing from the rotator's vault; send the PAT again",
                step=step,
                code="DevOpsPatMissing",
            )
        value: SecretValue = stored.value
        return value

    async def _call(
        self, method: str, url: str, body: dict[str, Any] | None, *, step: str, action: str
    ) -> Any:
        import httpx

        headers = await self._headers(step)
        try:
            response = await self._http.request(
                method, url, params={"api-version": API_VERSION}, json=body, headers=headers
            )
        except httpx.TimeoutException:
            raise TransientServiceError(
                f"Azure DevOps did not answer the {action} in time", service=SERVICE
            ) from None
        except httpx.TransportError as error:
            raise TransientServiceError(
                f"Could not reach Azure DevOps ({type(error).__name__})", service=SERVICE
            ) from None
        return self._result(response, step=step, action=action)

    def _result(self, response: httpx.Response, *, step: str, action: str) -> Any:
        status = response.status_code
        content_type = response.headers.get("content-type", "")
        where = f"service connection {self._id} in {self._settings.organization}/{self._settings.project}"
        if status == 203 or (200 <= status < 300 and "html" in content_type.lower()):
            # A sign-in page instead of JSON: the credentials were not accepted.
            raise RotationError(
                f"Azure DevOps did not accept the rotator's credentials ({action} of {where}): "
                + self._who_fix(401),
                step=step,
                code="DevOpsUnauthorized",
            )
        if 200 <= status < 300:
            if not response.content.strip():
                return None
            try:
                return response.json()
            except ValueError:
                raise RotationError(
                    f"Azure DevOps answered the {action} of {where} with invalid JSON",
                    step=step,
                    code="DevOpsUnexpectedResponse",
                ) from None
        message, type_key = self._error_of(response)
        detail = f" ({message})" if message else ""
        if status == 429:
            raise ThrottledError(
                f"Azure DevOps throttled the {action} of {where}{detail}",
                retry_after=retry_after_seconds(response.headers),
                service=SERVICE,
                status=status,
                code=type_key or "TooManyRequests",
            )
        if status >= 500:
            raise TransientServiceError(
                f"Azure DevOps failed the {action} of {where} with {status}{detail}",
                service=SERVICE,
                status=status,
                code=type_key,
            )
        if status in (401, 403):
            raise RotationError(
                f"Azure DevOps refused the {action} of {where} ({status}{': ' + message if message else ''}): "
                + self._who_fix(status),
                step=step,
                code="DevOpsUnauthorized" if status == 401 else "DevOpsForbidden",
            )
        if status == 404:
            raise RotationError(
                f"Azure DevOps: service connection not found: {where}{detail}",
                step=step,
                code="ServiceConnectionNotFound",
            )
        raise RotationError(
            f"Azure DevOps refused the {action} of {where} with {status}{detail}",
            step=step,
            code=type_key or "DevOpsRequestRefused",
        )

    def _who_fix(self, status: int) -> str:
        if status == 401:
            if self._settings.authentication == "pat":
                return (
                    "the PAT is invalid, expired, revoked or lacks the vso.serviceendpoint_manage "
                    "scope; store a new one"
                )
            return (
                "the rotator's managed identity must be added as a user of the organization "
                f"'{self._settings.organization}'"
            )
        return MANAGE_PERMISSION

    def _error_of(self, response: httpx.Response) -> tuple[str, str | None]:
        """DevOps errors: ``{"message": ..., "typeKey": ...}`` (values never echo the request)."""
        try:
            data = response.json()
        except ValueError:
            return "", None
        if not isinstance(data, dict):
            return "", None
        type_key = data.get("typeKey")
        return clip(str(data.get("message") or ""), self._context.secret), (
            str(type_key) if type_key else None
        )


PLUGIN = AzureDevOpsPlugin()
