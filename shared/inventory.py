"""Expiry inventory: every application the rotator can see, with the expiry of each password.

Not only the registered (managed) applications: the point is to find secrets nobody rotates before
they expire. Reading every application needs the Graph application permission
``Application.Read.All`` (or a broader one); without it Graph answers 403
``Authorization_RequestDenied`` and the inventory says which permission is missing.

Graph is read with ``GET /v1.0/applications?$select=id,appId,displayName,passwordCredentials&$top=N``
and followed with ``@odata.nextLink``; only the ``$skiptoken`` of that link goes into the
continuation token this API returns, so a client cannot point the rotator at another URL.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, quote, urlparse

from shared.adapters.entra import PasswordInfo, _graph_errors, password_infos
from shared.adapters.retry import RetryPolicy, retry
from shared.domain.models import rfc3339
from shared.errors import ExternalServiceError, FieldProblem, ValidationError

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from shared.storage.applications import ApplicationStore

SERVICE = "graph"
REQUIRED_PERMISSION = "Application.Read.All"
SELECT = ("id", "appId", "displayName", "passwordCredentials")
PAGE_SIZE = (1, 999)  # Graph's $top range for applications
EXPIRY_WINDOW_DAYS = (1, 365)
DEFAULT_EXPIRY_WINDOW_DAYS = 30


@dataclass(frozen=True)
class DirectoryApplication:
    object_id: str
    app_id: str
    display_name: str
    passwords: tuple[PasswordInfo, ...]


@dataclass(frozen=True)
class DirectoryPage:
    applications: list[DirectoryApplication]
    skip_token: str | None


class ApplicationReader(Protocol):
    async def list_applications(self, page_size: int, skip_token: str | None) -> DirectoryPage: ...


class GraphApplicationReader:
    """Pages through ``/applications`` with msgraph-sdk (the same client setup as ``GraphDirectory``)."""

    def __init__(
        self,
        credential: AsyncTokenCredential,
        graph_url: str,
        scope: str,
        *,
        timeout_seconds: float,
        ca_bundle: str | None,
        retry_policy: RetryPolicy = RetryPolicy(
            attempts=3, base_delay=1.0, max_delay=5.0, max_retry_after=10.0
        ),
    ) -> None:
        self._credential = credential
        self._graph_url = graph_url.rstrip("/")
        self._scope = scope
        self._timeout = timeout_seconds
        self._ca_bundle = ca_bundle
        self._policy = retry_policy
        self._client: Any = None
        self._http_client: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
            import httpx
            from kiota_authentication_azure.azure_identity_authentication_provider import (
                AzureIdentityAuthenticationProvider,
            )
            from kiota_http.middleware.options import RetryHandlerOption
            from msgraph import GraphRequestAdapter, GraphServiceClient
            from msgraph_core import GraphClientFactory

            from shared.adapters.tls import ssl_context

            host = urlparse(self._graph_url).hostname or ""
            auth = AzureIdentityAuthenticationProvider(
                self._credential, scopes=[self._scope], allowed_hosts=[host]
            )
            # SDK retries off: an API request must not sit through minutes of Retry-After; ours are short.
            self._http_client = GraphClientFactory.create_with_default_middleware(
                client=httpx.AsyncClient(timeout=self._timeout, verify=ssl_context(self._ca_bundle)),
                options={RetryHandlerOption.get_key(): RetryHandlerOption(max_retries=0, should_retry=False)},
            )
            adapter = GraphRequestAdapter(auth, client=self._http_client)
            adapter.base_url = f"{self._graph_url}/v1.0"
            self._client = GraphServiceClient(request_adapter=adapter)
        return self._client

    async def close(self) -> None:
        if self._http_client is not None:
            await self._http_client.aclose()
            self._http_client = None
            self._client = None

    async def list_applications(self, page_size: int, skip_token: str | None) -> DirectoryPage:
        return await retry(
            lambda: self._list_once(page_size, skip_token),
            policy=self._policy,
            describe="list applications",
        )

    async def _list_once(self, page_size: int, skip_token: str | None) -> DirectoryPage:
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        client = self._get_client()
        if skip_token is None:
            query = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
                select=list(SELECT), top=page_size
            )
            builder = client.applications
            request = builder.to_get_request_information(RequestConfiguration(query_parameters=query))
        else:
            # The request builder has no $skiptoken parameter: continue with the link's form.
            url = (
                f"{self._graph_url}/v1.0/applications?$select={','.join(SELECT)}"
                f"&$top={page_size}&$skiptoken={quote(skip_token, safe='')}"
            )
            builder = client.applications.with_url(url)
            request = builder.to_get_request_information()
        try:
            async with _graph_errors("list applications"):
                # The page as bytes: parsing 100 applications with their credentials into SDK models
                # costs tens of ms of CPU, so it is parsed in a worker thread (the event loop keeps
                # serving other requests) into our own small records.
                raw = await builder.request_adapter.send_primitive_async(
                    request, "bytes", {"XXX": ODataError}
                )
        except ExternalServiceError as error:
            if error.status == 403:
                raise missing_permission_error(error) from None
            raise
        return await asyncio.to_thread(parse_application_page, raw or b"{}")


def parse_application_page(raw: bytes) -> DirectoryPage:
    """A Graph ``GET /applications`` page (``value``, ``@odata.nextLink``) as ``DirectoryPage``.

    Shape: learn.microsoft.com/graph/api/application-list (application resource, passwordCredential
    resource: ``keyId``, ``displayName``, ``hint``, ``startDateTime``, ``endDateTime``).
    """
    import json

    data = json.loads(raw)
    applications = []
    for app in data.get("value") or []:
        if not isinstance(app, dict):
            continue
        applications.append(
            DirectoryApplication(
                object_id=str(app.get("id")),
                app_id=str(app.get("appId")),
                display_name=str(app.get("displayName") or ""),
                passwords=password_infos(app.get("passwordCredentials")),
            )
        )
    next_link = data.get("@odata.nextLink")
    return DirectoryPage(applications, _skip_token(next_link if isinstance(next_link, str) else None))


def missing_permission_error(error: ExternalServiceError | None = None) -> ExternalServiceError:
    """The rotator's identity may not list applications: name the permission to grant."""
    return ExternalServiceError(
        f"The rotator's identity may not list the tenant's applications: grant it the Microsoft Graph "
        f"application permission {REQUIRED_PERMISSION} (with admin consent) to see every application's "
        "secret expiry.",
        service=SERVICE,
        status=403,
        code="InsufficientPermission",
        missing_permission=REQUIRED_PERMISSION,
        graph_code=error.code if error is not None else None,
    )


def _skip_token(next_link: str | None) -> str | None:
    if not next_link:
        return None
    for key, values in parse_qs(urlparse(next_link).query).items():
        if key.lstrip("$").lower() == "skiptoken" and values:
            return values[0]
    return None


def encode_continuation(skip_token: str | None) -> str | None:
    if not skip_token:
        return None
    return base64.urlsafe_b64encode(skip_token.encode()).decode().rstrip("=")


def decode_continuation(token: str | None) -> str | None:
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode()).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        text = ""
    if not text or not text.isprintable():
        raise ValidationError(
            "Invalid continuation token",
            [
                FieldProblem(
                    "continuationToken", "is not a token this API returned", "a token from a previous page"
                )
            ],
        )
    return text


@dataclass(frozen=True)
class PasswordExpiry:
    key_id: str
    display_name: str | None
    hint: str | None
    start: datetime | None
    end: datetime | None
    expired: bool
    expiring_soon: bool
    managed_by_rotator: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "keyId": self.key_id,
            "displayName": self.display_name,
            "hint": self.hint,
            "startDateTime": rfc3339(self.start) if self.start else None,
            "endDateTime": rfc3339(self.end) if self.end else None,
            "expired": self.expired,
            "expiringSoon": self.expiring_soon,
            "managedByRotator": self.managed_by_rotator,
        }


@dataclass(frozen=True)
class InventoryItem:
    app_id: str
    object_id: str
    display_name: str
    registered: bool | None  # None when the registry was not consulted
    passwords: tuple[PasswordExpiry, ...]

    @property
    def expiring_soon(self) -> bool:
        return any(p.expiring_soon for p in self.passwords)

    @property
    def next_expiry(self) -> datetime | None:
        ends = [p.end for p in self.passwords if p.end is not None and not p.expired]
        return min(ends) if ends else None

    def to_json(self) -> dict[str, Any]:
        next_expiry = self.next_expiry
        return {
            "appId": self.app_id,
            "objectId": self.object_id,
            "displayName": self.display_name,
            "registered": self.registered,
            "expiringSoon": self.expiring_soon,
            "nextExpiry": rfc3339(next_expiry) if next_expiry else None,
            "passwords": [p.to_json() for p in self.passwords],
        }


@dataclass(frozen=True)
class InventoryPage:
    items: list[InventoryItem]
    continuation_token: str | None
    expiring_within_days: int
    generated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "items": [item.to_json() for item in self.items],
            "continuationToken": self.continuation_token,
            "expiringWithinDays": self.expiring_within_days,
            "generatedAt": rfc3339(self.generated_at),
        }


class InventoryService:
    """Lists applications and flags passwords that expire within N days (or have expired)."""

    def __init__(
        self,
        reader: ApplicationReader,
        clock: Callable[[], datetime],
        *,
        credential_prefix: str,
        applications: ApplicationStore | None = None,
    ) -> None:
        self._reader = reader
        self._clock = clock
        self._prefix = credential_prefix + ":"
        self._applications = applications

    async def list(
        self, expiring_within_days: int, page_size: int, continuation: str | None
    ) -> InventoryPage:
        problems: builtins.list[FieldProblem] = []
        if not EXPIRY_WINDOW_DAYS[0] <= expiring_within_days <= EXPIRY_WINDOW_DAYS[1]:
            problems.append(
                FieldProblem(
                    "expiringWithinDays",
                    "is out of range",
                    f"{EXPIRY_WINDOW_DAYS[0]} to {EXPIRY_WINDOW_DAYS[1]}",
                )
            )
        if not PAGE_SIZE[0] <= page_size <= PAGE_SIZE[1]:
            problems.append(FieldProblem("pageSize", "is out of range", f"{PAGE_SIZE[0]} to {PAGE_SIZE[1]}"))
        if problems:
            raise ValidationError("Invalid inventory query", problems)
        skip_token = decode_continuation(continuation)
        try:
            page = await self._reader.list_applications(page_size, skip_token)
        except ExternalServiceError as error:
            if skip_token is not None and error.status == 400:
                # Graph refused the skip token: it did not come from a page this API returned.
                raise ValidationError(
                    "Invalid continuation token",
                    [
                        FieldProblem(
                            "continuationToken",
                            "is not a token this API returned",
                            "a token from a previous page",
                        )
                    ],
                ) from None
            raise
        now = self._clock()
        horizon = now + timedelta(days=expiring_within_days)
        registered = await self._registered([app.app_id for app in page.applications])
        items = [
            InventoryItem(
                app_id=app.app_id,
                object_id=app.object_id,
                display_name=app.display_name,
                registered=None if registered is None else app.app_id.lower() in registered,
                passwords=tuple(
                    sorted(
                        (self._expiry(p, now, horizon) for p in app.passwords),
                        key=lambda p: (p.end is None, p.end or now),
                    )
                ),
            )
            for app in page.applications
        ]
        return InventoryPage(items, encode_continuation(page.skip_token), expiring_within_days, now)

    def _expiry(self, password: PasswordInfo, now: datetime, horizon: datetime) -> PasswordExpiry:
        end = password.end
        expired = end is not None and end <= now
        return PasswordExpiry(
            key_id=password.key_id,
            display_name=password.display_name,
            hint=password.hint,
            start=password.start,
            end=end,
            expired=expired,
            expiring_soon=end is not None and not expired and end <= horizon,
            managed_by_rotator=(password.display_name or "").startswith(self._prefix),
        )

    async def _registered(self, app_ids: Sequence[str]) -> set[str] | None:
        """Which of ``app_ids`` are registered (lower case): ``ApplicationStore.registered``, which
        reads keys only, not a registration's row."""
        store = self._applications
        if store is None:
            return None
        return await store.registered(app_ids)


def expiry_window(raw: str | None) -> int:
    """The ``expiringWithinDays`` query parameter (default 30)."""
    from shared.api.http import int_param

    return int_param(raw, "expiringWithinDays", *EXPIRY_WINDOW_DAYS, DEFAULT_EXPIRY_WINDOW_DAYS)


__all__ = [
    "REQUIRED_PERMISSION",
    "ApplicationReader",
    "DirectoryApplication",
    "DirectoryPage",
    "GraphApplicationReader",
    "InventoryItem",
    "InventoryPage",
    "InventoryService",
    "expiry_window",
    "missing_permission_error",
]
