"""Entra ID: application passwords through Microsoft Graph, and proof that a secret works.

``EntraDirectory`` is the narrow interface the rotation engine uses; ``GraphDirectory`` implements
it with msgraph-sdk. The SDK's own retry middleware is switched off: it retries POSTs on 503/504,
which could mint a second secret whose text we never see. Our callers retry instead, and reconcile
by the credential's display name first.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from shared.adapters.tls import environment_sets_proxy, ssl_context
from shared.domain.secret import SecretValue
from shared.errors import ExternalServiceError, NotFoundError, ThrottledError, TransientServiceError

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

SERVICE = "graph"
PERSONAL_ACCOUNT_AUDIENCES = ("AzureADandPersonalMicrosoftAccount", "PersonalMicrosoftAccount")


@dataclass(frozen=True)
class PasswordInfo:
    key_id: str
    display_name: str | None
    hint: str | None
    start: datetime | None
    end: datetime | None

    def is_expired(self, now: datetime) -> bool:
        return self.end is not None and self.end <= now


@dataclass(frozen=True)
class NewPassword:
    info: PasswordInfo
    secret: SecretValue


@dataclass(frozen=True)
class EntraApplication:
    object_id: str
    app_id: str
    display_name: str
    sign_in_audience: str | None
    passwords: tuple[PasswordInfo, ...]
    created: datetime | None = None

    @property
    def password_cap(self) -> int | None:
        """Apps that allow personal Microsoft accounts may hold at most two passwords."""
        return 2 if self.sign_in_audience in PERSONAL_ACCOUNT_AUDIENCES else None


class EntraDirectory(Protocol):
    async def get_application(self, object_id: str) -> EntraApplication: ...

    async def add_password(self, object_id: str, display_name: str, end: datetime) -> NewPassword: ...

    async def remove_password(self, object_id: str, key_id: str) -> None: ...

    async def password_lifetime_limit(self, app: EntraApplication) -> timedelta | None:
        """The longest password lifetime the app management policies allow this app (None: no
        limit). Raises ``ExternalServiceError`` (403) when the identity may not read policies."""
        ...


class SecretVerifier(Protocol):
    async def works(self, app_id: str, secret: SecretValue) -> bool:
        """One attempt: True if Entra issues a token for the secret, False if it refuses it."""
        ...


class GraphDirectory:
    def __init__(
        self,
        credential: AsyncTokenCredential,
        graph_url: str,
        scope: str,
        *,
        timeout_seconds: float,
        ca_bundle: str | None,
    ) -> None:
        import httpx
        from kiota_authentication_azure.azure_identity_authentication_provider import (
            AzureIdentityAuthenticationProvider,
        )
        from kiota_http.middleware.options import RetryHandlerOption
        from msgraph import GraphRequestAdapter, GraphServiceClient
        from msgraph_core import GraphClientFactory

        host = urlparse(graph_url).hostname or ""
        auth = AzureIdentityAuthenticationProvider(credential, scopes=[scope], allowed_hosts=[host])
        http_client = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(timeout=timeout_seconds, verify=ssl_context(ca_bundle)),
            options={RetryHandlerOption.get_key(): RetryHandlerOption(max_retries=0, should_retry=False)},
        )
        adapter = GraphRequestAdapter(auth, client=http_client)
        # Set explicitly: a custom client otherwise yields a trailing-slash base URL.
        adapter.base_url = f"{graph_url.rstrip('/')}/v1.0"
        self._http_client = http_client
        self._client = GraphServiceClient(request_adapter=adapter)
        # Policies change rarely: each answer is kept for POLICY_CACHE_SECONDS (a stricter policy
        # meanwhile shows as a refused addPassword, which the rotation handles by searching).
        self._policy_limits: dict[str, tuple[float, timedelta | None]] = {}
        self._policies_forbidden: tuple[float, ExternalServiceError] | None = None

    async def close(self) -> None:
        await self._http_client.aclose()

    async def get_application(self, object_id: str) -> EntraApplication:
        """``GET /applications/{id}?$select=...`` (learn.microsoft.com/graph/api/application-get).

        The answer is read as JSON into our record, not into the SDK's model: the SDK builds a
        deserializer table of the whole ``application`` type for every object (about 10 ms of CPU
        each), which a rotation pays twice.
        """
        import json

        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.applications.item.application_item_request_builder import (
            ApplicationItemRequestBuilder,
        )
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        query = ApplicationItemRequestBuilder.ApplicationItemRequestBuilderGetQueryParameters(
            select=list(APPLICATION_SELECT)
        )
        builder = self._client.applications.by_application_id(object_id)
        request = builder.to_get_request_information(RequestConfiguration(query_parameters=query))
        async with _graph_errors("get application", object_id=object_id):
            raw = await builder.request_adapter.send_primitive_async(request, "bytes", {"XXX": ODataError})
        app = json.loads(raw) if raw else None
        if not isinstance(app, dict):
            raise NotFoundError("Application not found in Entra ID", object_id=object_id)
        return EntraApplication(
            object_id=str(app.get("id")),
            app_id=str(app.get("appId")),
            display_name=str(app.get("displayName") or ""),
            sign_in_audience=app.get("signInAudience"),
            passwords=password_infos(app.get("passwordCredentials")),
            created=graph_instant(app.get("createdDateTime")),
        )

    async def add_password(self, object_id: str, display_name: str, end: datetime) -> NewPassword:
        from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
            AddPasswordPostRequestBody,
        )
        from msgraph.generated.models.password_credential import PasswordCredential

        body = AddPasswordPostRequestBody(
            password_credential=PasswordCredential(display_name=display_name, end_date_time=end)
        )
        async with _graph_errors("add password", object_id=object_id):
            created = await self._client.applications.by_application_id(object_id).add_password.post(body)
        if created is None or not created.secret_text or created.key_id is None:
            raise TransientServiceError(
                "addPassword returned no secret", service=SERVICE, object_id=object_id
            )
        return NewPassword(_password_info(created), SecretValue(created.secret_text))

    async def remove_password(self, object_id: str, key_id: str) -> None:
        from uuid import UUID

        from msgraph.generated.applications.item.remove_password.remove_password_post_request_body import (
            RemovePasswordPostRequestBody,
        )

        body = RemovePasswordPostRequestBody(key_id=UUID(key_id))
        try:
            async with _graph_errors("remove password", object_id=object_id, key_id=key_id):
                await self._client.applications.by_application_id(object_id).remove_password.post(body)
        except ExternalServiceError as error:
            # Removing what is already gone is success: removal must be repeatable.
            if error.status in (400, 404) and (
                _gone_codes(error.code) or "no password credential found" in error.message.lower()
            ):
                return
            raise

    async def password_lifetime_limit(self, app: EntraApplication) -> timedelta | None:
        """The effective ``passwordLifetime`` restriction for one application.

        An app management policy assigned to the application takes precedence over the tenant
        default (``GET /applications/{id}/appManagementPolicies``, then
        ``GET /policies/defaultAppManagementPolicy``; both need ``Policy.Read.All``). Docs:
        learn.microsoft.com/graph/api/resources/tenantappmanagementpolicy and
        learn.microsoft.com/graph/api/resources/appmanagementpolicy. A restriction counts when its
        ``state`` is not ``disabled`` and the app was created after its
        ``restrictForAppsCreatedAfterDateTime`` (when set). Answers (and a 403) are kept for
        ``POLICY_CACHE_SECONDS``.
        """
        import time

        object_id = app.object_id
        now = time.monotonic()
        if self._policies_forbidden is not None and now < self._policies_forbidden[0]:
            raise self._policies_forbidden[1]
        cached = self._policy_limits.get(object_id)
        if cached is not None and now < cached[0]:
            return cached[1]
        try:
            limit = await self._read_lifetime_limit(app)
        except ExternalServiceError as error:
            if error.status == 403:
                # Without Policy.Read.All: ask again in a while, not on every rotation.
                self._policies_forbidden = (now + POLICY_CACHE_SECONDS, error)
            raise
        self._policy_limits[object_id] = (now + POLICY_CACHE_SECONDS, limit)
        return limit

    async def _read_lifetime_limit(self, app: EntraApplication) -> timedelta | None:
        object_id = app.object_id
        async with _graph_errors("read app management policies", object_id=object_id):
            assigned = await self._client.applications.by_application_id(
                object_id
            ).app_management_policies.get()
        restrictions: list[Any] = []
        for policy in (assigned.value if assigned else None) or []:
            if getattr(policy, "is_enabled", True) is False:
                continue
            restrictions.extend(getattr(policy.restrictions, "password_credentials", None) or [])
        if not restrictions:
            async with _graph_errors("read tenant app management policy", object_id=object_id):
                default = await self._client.policies.default_app_management_policy.get()
            if default is not None and default.is_enabled is not False:
                config = default.application_restrictions
                restrictions.extend(getattr(config, "password_credentials", None) or [])
        return effective_lifetime_limit(restrictions, app.created)


def effective_lifetime_limit(restrictions: list[Any], created: datetime | None) -> timedelta | None:
    """The smallest ``maxLifetime`` of the ``passwordLifetime`` restrictions that apply to an app."""
    limits: list[timedelta] = []
    for restriction in restrictions:
        kind = getattr(restriction, "restriction_type", None)
        state = getattr(restriction, "state", None)
        if str(getattr(kind, "value", kind)) != "passwordLifetime":
            continue
        if str(getattr(state, "value", state)) == "disabled":
            continue
        after = getattr(restriction, "restrict_for_apps_created_after_date_time", None)
        if after is not None and created is not None and created <= after:
            continue
        limit = getattr(restriction, "max_lifetime", None)
        if isinstance(limit, timedelta):
            limits.append(limit)
    return min(limits) if limits else None


def _gone_codes(code: str | None) -> bool:
    return code in (
        "Request_ResourceNotFound",
        "NoSuchKey",
        "KeyNotFound",
        "CannotDeleteNonexistentCredential",
    )


POLICY_CACHE_SECONDS = 15 * 60
APPLICATION_SELECT = (
    "id",
    "appId",
    "displayName",
    "signInAudience",
    "passwordCredentials",
    "createdDateTime",
)


def password_infos(credentials: Any) -> tuple[PasswordInfo, ...]:
    """``passwordCredentials`` of a Graph application as JSON (``keyId``, ``displayName``,
    ``hint``, ``startDateTime``, ``endDateTime``; learn.microsoft.com/graph/api/resources/passwordcredential)."""
    if not isinstance(credentials, list):
        return ()
    return tuple(
        PasswordInfo(
            key_id=str(p.get("keyId")),
            display_name=p.get("displayName"),
            hint=p.get("hint"),
            start=graph_instant(p.get("startDateTime")),
            end=graph_instant(p.get("endDateTime")),
        )
        for p in credentials
        if isinstance(p, dict)
    )


def graph_instant(value: Any) -> datetime | None:
    """Graph's DateTimeOffset (``2026-12-01T10:00:00Z``, fractions of up to 7 digits) in UTC."""
    if not isinstance(value, str) or not value:
        return None
    from datetime import UTC

    text = value.replace("Z", "+00:00")
    if "." in text:
        head, _, tail = text.partition(".")
        digits = "".join(ch for ch in tail if ch.isdigit())
        text = f"{head}.{digits[:6].ljust(6, '0')}{tail[len(digits) :]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _password_info(credential: Any) -> PasswordInfo:
    return PasswordInfo(
        key_id=str(credential.key_id),
        display_name=credential.display_name,
        hint=credential.hint,
        start=credential.start_date_time,
        end=credential.end_date_time,
    )


class _graph_errors:  # noqa: N801 - used as a context manager, reads like one
    """Translate msgraph/kiota/httpx failures into our error hierarchy (no secret ever included)."""

    def __init__(self, action: str, **context: Any) -> None:
        self._action = action
        self._context = context

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: Any, error: BaseException | None, tb: Any) -> bool:
        if error is None or not isinstance(error, Exception):
            return False
        import httpx
        from kiota_abstractions.api_error import APIError

        from shared.errors import RotatorError

        if isinstance(error, RotatorError):
            return False
        message = f"Graph {self._action} failed"
        if isinstance(error, APIError):
            status = getattr(error, "response_status_code", None)
            odata = getattr(error, "error", None)
            code = getattr(odata, "code", None)
            detail = getattr(odata, "message", None)
            if detail:
                message = f"{message}: {detail}"
            headers = getattr(error, "response_headers", None) or {}
            if status == 429:
                raise ThrottledError(
                    message,
                    retry_after=_retry_after(headers),
                    service=SERVICE,
                    status=status,
                    code=code,
                    **self._context,
                ) from None
            if status is not None and (status >= 500 or status == 408):
                raise TransientServiceError(
                    message, service=SERVICE, status=status, code=code, **self._context
                ) from None
            if status == 404:
                raise NotFoundError(message, code=code, **self._context) from None
            raise ExternalServiceError(
                message, service=SERVICE, status=status, code=code, **self._context
            ) from None
        if isinstance(error, httpx.TransportError | asyncio.TimeoutError):
            raise TransientServiceError(
                f"{message}: {type(error).__name__}", service=SERVICE, **self._context
            ) from None
        return False


def _retry_after(headers: Any) -> float | None:
    """Retry-After in seconds from kiota's response headers (a dict of str to a set of str)."""
    found: Any = None
    if headers is not None and hasattr(headers, "get"):
        found = headers.get("Retry-After") or headers.get("retry-after")
    if isinstance(found, list | tuple | set | frozenset):
        found = next(iter(found), None)
    try:
        return float(found) if found is not None else None
    except (TypeError, ValueError):
        return None


class TokenVerifier:
    """Proves a secret by acquiring a client-credentials token with it, as its consumers will."""

    def __init__(
        self,
        tenant_id: str,
        authority: str,
        scope: str,
        *,
        ca_bundle: str | None,
        timeout_seconds: float = 30.0,
    ) -> None:
        self._tenant_id = tenant_id
        self._authority = authority
        self._scope = scope
        self._ca_bundle = ca_bundle
        self._timeout = timeout_seconds
        self._session: Any = None

    def _transport(self) -> Any:
        """One connection pool for every proof (a credential per secret, not a TLS handshake and a
        CA load per secret); trust as everywhere else: the public roots plus ROTATOR_CA_BUNDLE."""
        import aiohttp
        from azure.core.pipeline.transport import AioHttpTransport

        if self._session is None or self._session.closed:
            trust = ssl_context(self._ca_bundle)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=trust if not isinstance(trust, bool) else True),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                # Through the environment's proxy when it names one, as every other client.
                trust_env=environment_sets_proxy(),
            )
        return AioHttpTransport(session=self._session, session_owner=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def works(self, app_id: str, secret: SecretValue) -> bool:
        from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
        from azure.identity.aio import ClientSecretCredential

        options: dict[str, Any] = {
            "authority": self._authority,
            "disable_instance_discovery": True,
            "transport": self._transport(),
        }
        credential = ClientSecretCredential(self._tenant_id, app_id, secret.reveal(), **options)
        try:
            await credential.get_token(self._scope)
            return True
        except ClientAuthenticationError as error:
            text = str(error)
            # AADSTS7000215 (invalid secret) is what Entra answers until a new secret propagates.
            if "AADSTS7000215" in text or "invalid_client" in text:
                return False
            raise TransientServiceError(
                "Token request failed", service="entra-token", app_id=app_id
            ) from None
        except ServiceRequestError:
            raise TransientServiceError(
                "Token endpoint unreachable", service="entra-token", app_id=app_id
            ) from None
        finally:
            await credential.close()
