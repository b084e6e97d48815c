"""Entra ID simulator: Microsoft Graph v1.0 ``applications`` and the OAuth2 token endpoint, one HTTPS server.

Graph side (what msgraph-sdk sends): read applications by object id or ``appId``, list them
with ``$top``/``$skiptoken``/simple ``$filter``, ``addPassword`` and ``removePassword``, with
Graph's error bodies. Token side (what MSAL / azure-identity send): OIDC discovery and the
``client_credentials`` grant, which succeeds only with a *current, propagated* password of the
app, so rotation code can prove a new secret works exactly as it would against Entra.

Sign-in report (Graph beta): ``GET /beta/reports/appCredentialSignInActivities`` (``$filter`` with
``appId eq '...'`` or ``keyId eq '...'``, ``$top``, ``$skiptoken`` through ``@odata.nextLink``) and
``GET /beta/reports/appCredentialSignInActivities/{id}``. Every token the token endpoint issues for
a client secret records that credential's last sign-in (sim clock); only credentials that signed in
appear, as in the real report. ``POST /_sim/applications/{ref}/signIns`` sets or clears one.

Switches model the awkward parts of the real service: the app-management lifetime policy, the
two-password cap of personal-account apps, throttling, lost responses (commit then 5xx),
slow answers, the new-secret propagation delay, secrets that never work, and a movable clock.
"""

from __future__ import annotations

import base64
import collections
import hmac
import math
import re
import secrets
import ssl
import string
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

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
    parse_datetime,
    scope_to_audience,
)

DEFAULT_TENANT_ID = "00000000-0000-0000-0000-00000000cafe"
GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Graph's well-known resource app id
PERSONAL_ACCOUNT_AUDIENCES = frozenset({"AzureADandPersonalMicrosoftAccount", "PersonalMicrosoftAccount"})
SIGN_IN_AUDIENCES = frozenset({"AzureADMyOrg", "AzureADMultipleOrgs"}) | PERSONAL_ACCOUNT_AUDIENCES
DEFAULT_PASSWORD_LIFETIME_YEARS = 2
_SECRET_ALPHABET = string.ascii_letters + string.digits + "~._-"
_GRAPH_PREFIXES = ("/v1.0/", "/beta/")
_SIGN_IN_REPORT = r"/beta/reports/appCredentialSignInActivities"
# Well-known first-party resource app ids, for a sign-in record's resourceId (the audience's app).
_RESOURCE_APP_IDS = {
    GRAPH_RESOURCE: GRAPH_APP_ID,
    "https://vault.azure.net": "cfa8b339-82a2-471a-a3c9-0fc0be7a4093",
    "https://management.azure.com": "797f4846-ba00-4fd7-ba43-dac1f8f63013",
    "https://management.core.windows.net": "797f4846-ba00-4fd7-ba43-dac1f8f63013",
}
_APP_BY_ID = r"/v1\.0/applications/(?P<object_id>[^/()]+)"
_APP_BY_APP_ID = r"/v1\.0/applications\(appId='(?P<app_id>[^']*)'\)"


def _is_graph(path: str) -> bool:
    return path.startswith(_GRAPH_PREFIXES)


def resource_app_id(audience: str) -> str:
    """The app id of the resource a token was issued for (a stable made-up one for unknown audiences)."""
    audience = scope_to_audience(audience)
    try:
        return str(uuid.UUID(audience))
    except ValueError:
        pass
    known = _RESOURCE_APP_IDS.get(audience.lower())
    return known or str(uuid.uuid5(uuid.NAMESPACE_URL, audience.lower()))


def graph_datetime(value: datetime) -> str:
    """Graph's JSON timestamp: UTC with 7 fraction digits and ``Z`` (parses in msgraph-sdk)."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond:06d}0Z"


def _add_years(value: datetime, years: int) -> datetime:
    try:
        return value.replace(year=value.year + years)
    except ValueError:  # 29 February
        return value.replace(year=value.year + years, day=28)


def generate_secret_text() -> str:
    """A 40-character secret shaped like Entra's (``xxx8Q~...``; alphabet letters, digits, ``~._-``)."""
    head = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(3))
    tail = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(34))
    return f"{head}8Q~{tail}"


@dataclass
class PasswordCredential:
    key_id: str
    display_name: str | None
    secret_text: str
    start: datetime
    end: datetime
    created_at: datetime  # sim clock
    usable_from: datetime  # sim clock: created_at + the propagation delay in force at creation
    broken: bool = False  # added while broken_new_secrets was on: never works at the token endpoint
    sign_ins: int = 0
    last_sign_in: datetime | None = None

    @property
    def hint(self) -> str:
        return self.secret_text[:3]

    def graph_json(self, *, include_secret: bool = False) -> JsonDict:
        return {
            "customKeyIdentifier": None,
            "displayName": self.display_name,
            "endDateTime": graph_datetime(self.end),
            "hint": self.hint,
            "keyId": self.key_id,
            "secretText": self.secret_text if include_secret else None,
            "startDateTime": graph_datetime(self.start),
        }

    def state_json(self) -> JsonDict:
        data = self.graph_json(include_secret=True)
        data.update(
            {
                "createdAt": graph_datetime(self.created_at),
                "usableFrom": graph_datetime(self.usable_from),
                "broken": self.broken,
                "signIns": self.sign_ins,
                "lastSignIn": graph_datetime(self.last_sign_in) if self.last_sign_in else None,
            }
        )
        return data


@dataclass
class CredentialSignIn:
    """One row of the appCredentialSignInActivities report: a credential's last sign-in.

    Shape: learn.microsoft.com/graph/api/resources/appcredentialsigninactivity?view=graph-rest-beta
    (id, keyId, keyType, keyUsage, appId, appObjectId, servicePrincipalObjectId, resourceId,
    credentialOrigin, expirationDateTime, createdDateTime, signInActivity). Kept per (appId, keyId)
    apart from the app object, as the report is built from sign-in logs: removing the password does
    not remove its row. The documented ``id`` is base64 of ``{keyId}|{credentialOrigin}``.
    """

    app_id: str
    app_object_id: str
    app_display_name: str
    key_id: str
    created: datetime
    expires: datetime
    last_sign_in: datetime
    request_id: str
    resource_id: str
    key_type: str = "clientSecret"

    @property
    def id(self) -> str:
        return base64.b64encode(f"{self.key_id}|application".encode()).decode("ascii")

    def graph_json(self) -> JsonDict:
        return {
            "id": self.id,
            "keyId": self.key_id,
            "keyType": self.key_type,
            "keyUsage": "sign",
            "appId": self.app_id,
            "appDisplayName": self.app_display_name,
            "appObjectId": self.app_object_id,
            # No service principals are modelled: a stable id derived from the app's.
            "servicePrincipalObjectId": str(uuid.uuid5(uuid.NAMESPACE_OID, self.app_object_id.lower())),
            "resourceId": self.resource_id,
            "credentialOrigin": "application",
            "expirationDateTime": graph_datetime(self.expires),
            "createdDateTime": graph_datetime(self.created),
            "signInActivity": {
                "lastSignInDateTime": graph_datetime(self.last_sign_in),
                "lastSignInRequestId": self.request_id,
            },
        }


@dataclass
class Application:
    object_id: str
    app_id: str
    display_name: str
    sign_in_audience: str
    created: datetime
    passwords: list[PasswordCredential] = field(default_factory=list)

    def password(self, key_id: str) -> PasswordCredential | None:
        return next((p for p in self.passwords if p.key_id.lower() == key_id.lower()), None)

    def graph_json(self) -> JsonDict:
        return {
            "id": self.object_id,
            "deletedDateTime": None,
            "appId": self.app_id,
            "createdDateTime": graph_datetime(self.created),
            "displayName": self.display_name,
            "publisherDomain": "simulator.onmicrosoft.com",
            "signInAudience": self.sign_in_audience,
            "tags": [],
            "keyCredentials": [],
            "passwordCredentials": [p.graph_json() for p in self.passwords],
        }

    def state_json(self) -> JsonDict:
        return {
            "id": self.object_id,
            "appId": self.app_id,
            "displayName": self.display_name,
            "signInAudience": self.sign_in_audience,
            "passwordCredentials": [p.state_json() for p in self.passwords],
        }


class EntraSimulator(SimulatorServer):
    """Graph ``/v1.0/applications`` + ``/{tenant}/oauth2/v2.0/token`` on one HTTPS server.

    Switches (attributes, ``set_switches(...)`` or ``POST /_sim/switches``):

    * ``max_lifetime`` - seconds or None: addPassword with endDateTime - now above it (the
      default 2-year end included) gets 400 ``CredentialInvalidLifetimeAsPerAppPolicy``.
    * ``policies_readable`` - whether ``GET /policies/defaultAppManagementPolicy`` and
      ``GET /applications/{id}/appManagementPolicies`` answer (Policy.Read.All) or 403; the
      tenant default policy carries ``max_lifetime`` as a ``passwordLifetime`` restriction.
    * ``leading_dash_secrets`` - the next N new secrets start with ``-``.
    * ``msa_password_limit`` - passwords an app with a personal-account audience may hold (2).
    * ``throttle_writes`` - next N addPassword/removePassword get 429 + ``Retry-After``.
    * ``write_quota`` - ``{"limit", "window_seconds"}`` or None: addPassword/removePassword beyond
      ``limit`` in any sliding ``window_seconds`` get 429 ``Request_ThrottledTemporarily`` with
      ``Retry-After`` (the seconds until the oldest counted write leaves the window) and
      ``x-ms-throttle-information: WriteLimitExceeded``, as Graph enforces 3,000 writes per 150 s
      per app and tenant (learn.microsoft.com/graph/throttling-limits, identity and access).
      Refused writes are not counted; ``writes_throttled`` in the state counts them,
      ``writes_accepted`` the others and ``writes_peak`` the most in one window at any moment
      (all three start again from zero when ``write_quota`` is set).
    * ``fail_next`` - next N requests matching method/path get a 5xx (base switch).
    * ``commit_then_fail`` - next N addPassword create the password, then answer 504/503.
    * ``latency_seconds`` / ``clock_offset_seconds`` - base switches.
    * ``propagation_delay_seconds`` - a new password is refused at the token endpoint until
      created + delay.
    * ``broken_new_secrets`` - passwords added while on never work at the token endpoint.
    * ``sign_in_activity_readable`` - whether ``GET /beta/reports/appCredentialSignInActivities``
      answers (AuditLog.Read.All, learn.microsoft.com/graph/api/reportroot-list-appcredentialsigninactivities
      ?view=graph-rest-beta) or 403 ``Authorization_RequestDenied`` (default True).
    """

    kind = "entra"

    def __init__(
        self,
        *,
        issuer: TokenIssuer,
        ssl_context: ssl.SSLContext | None,
        tenant_id: str = DEFAULT_TENANT_ID,
        clock: SimClock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "entra",
    ) -> None:
        super().__init__(name=name, host=host, port=port, ssl_context=ssl_context, clock=clock)
        self.issuer = issuer
        self.tenant_id = tenant_id
        self._apps: dict[str, Application] = {}
        # The sign-in report's rows, by (appId, keyId) lower-cased; insertion order is list order.
        self._sign_ins: dict[tuple[str, str], CredentialSignIn] = {}
        # Protected web APIs: audience -> {client appId (lower) -> app roles assigned to it}. A token
        # for one of these is a signed JWT (RS256), as Entra issues for a web API.
        self._apis: dict[str, dict[str, list[str]]] = {}
        self._signing_key: Any = None
        self._reset_switches()

        self.route("GET", r"/v1\.0/applications", self._list_applications)
        self.route("GET", _APP_BY_ID, self._get_application)
        self.route("GET", _APP_BY_APP_ID, self._get_application)
        self.route("POST", _APP_BY_ID + "/addPassword", self._add_password)
        self.route("POST", _APP_BY_APP_ID + "/addPassword", self._add_password)
        self.route("POST", _APP_BY_ID + "/removePassword", self._remove_password)
        self.route("GET", _APP_BY_ID + "/appManagementPolicies", self._app_management_policies)
        self.route("GET", r"/v1\.0/policies/defaultAppManagementPolicy", self._default_app_management_policy)
        self.route("POST", _APP_BY_APP_ID + "/removePassword", self._remove_password)
        self.route("GET", _SIGN_IN_REPORT + "/?", self._list_sign_in_activities)
        self.route("GET", _SIGN_IN_REPORT + r"/(?P<activity_id>[^/]+)", self._get_sign_in_activity)

        self.route(
            "GET", r"/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration", self._openid_configuration
        )
        self.route("GET", r"/(?P<tenant>[^/]+)/\.well-known/openid-configuration", self._openid_configuration)
        self.route("GET", r"/(?P<tenant>[^/]+)/discovery(?:/v2\.0)?/keys", self._signing_keys)
        self.route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", self._token)
        self.route("POST", r"/(?P<tenant>[^/]+)/oauth2/token", self._token)  # v1 form (resource=)

        self.admin_route("POST", "/applications", self._admin_add_application)
        self.admin_route("GET", "/applications/(?P<ref>[^/]+)", self._admin_get_application)
        self.admin_route("DELETE", "/applications/(?P<ref>[^/]+)", self._admin_delete_application)
        self.admin_route("POST", "/applications/(?P<ref>[^/]+)/passwords", self._admin_add_password)
        self.admin_route(
            "DELETE", "/applications/(?P<ref>[^/]+)/passwords/(?P<key_id>[^/]+)", self._admin_remove_pw
        )
        self.admin_route("POST", "/applications/(?P<ref>[^/]+)/signIns", self._admin_sign_in)
        self.admin_route("POST", "/token", self._admin_issue_token)
        self.admin_route("POST", "/apis", self._admin_expose_api)
        self.admin_route("POST", "/apiTokens", self._admin_api_token)

    def _reset_switches(self) -> None:
        self.max_lifetime_seconds: float | None = None
        # Whether the caller may read app management policies (Policy.Read.All); 403 otherwise.
        self.policies_readable = False
        # The next N new secrets start with '-' (Entra's alphabet has it; it breaks CLI consumers).
        self.leading_dash_secrets = 0
        self.msa_password_limit = 2
        self.propagation_delay_seconds = 0.0
        self.broken_new_secrets = False
        self.write_quota: tuple[int, float] | None = None
        self._writes: collections.deque[float] = collections.deque()
        self.writes_throttled = 0
        self.writes_accepted = 0  # counted against write_quota since it was set
        self.writes_peak = 0  # the most counted in one window at any moment
        # AuditLog.Read.All granted: the sign-in report answers (403 when False).
        self.sign_in_activity_readable = True

    # ----------------------------------------------------------------- Python admin API

    @property
    def authority(self) -> str:
        """The ``authority=`` for azure-identity credentials (tenant goes separately)."""
        return self.url

    def add_application(
        self,
        display_name: str,
        *,
        app_id: str | None = None,
        object_id: str | None = None,
        sign_in_audience: str = "AzureADMyOrg",
        passwords: Iterable[Mapping[str, Any]] = (),
    ) -> Application:
        """Register an application; ``passwords`` take Graph-like keys, e.g.
        ``{"displayName": "old", "secretText": "known", "endDateTime": datetime | str}``.
        Seeded passwords work at the token endpoint at once (no propagation delay)."""
        if sign_in_audience not in SIGN_IN_AUDIENCES:
            raise ValueError(f"unknown signInAudience {sign_in_audience!r}")
        with self._lock:
            app = Application(
                object_id=object_id or str(uuid.uuid4()),
                app_id=app_id or str(uuid.uuid4()),
                display_name=display_name,
                sign_in_audience=sign_in_audience,
                created=self.clock.now(),
            )
            for existing in self._apps.values():
                if (
                    app.object_id.lower() == existing.object_id.lower()
                    or app.app_id.lower() == existing.app_id.lower()
                ):
                    raise ValueError(
                        f"application id or appId already exists: {app.object_id} / {app.app_id}"
                    )
            self._apps[app.object_id] = app
            for spec in passwords:
                self._seed_password(app, spec)
            return app

    def _seed_password(self, app: Application, spec: Mapping[str, Any]) -> PasswordCredential:
        def when(key: str) -> datetime | None:
            value = spec.get(key)
            if value is None or isinstance(value, datetime):
                return value
            return parse_datetime(str(value))

        credential = self.add_password(
            app.object_id,
            spec.get("displayName"),
            secret_text=spec.get("secretText"),
            start=when("startDateTime"),
            end=when("endDateTime"),
            key_id=spec.get("keyId"),
        )
        last_sign_in = when("lastSignInDateTime")
        if last_sign_in is not None:
            self.record_sign_in(app.object_id, credential.key_id, last_sign_in)
        return credential

    def add_password(
        self,
        application: str,
        display_name: str | None = None,
        *,
        secret_text: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        key_id: str | None = None,
        usable_immediately: bool = True,
    ) -> PasswordCredential:
        """Add a password directly (no policy checks, no faults); ``application`` = object id or appId."""
        with self._lock:
            app = self.get_application(application)
            now = self.clock.now()
            start = start or now
            end = end or _add_years(start, DEFAULT_PASSWORD_LIFETIME_YEARS)
            credential = PasswordCredential(
                key_id=key_id or str(uuid.uuid4()),
                display_name=display_name,
                secret_text=secret_text or generate_secret_text(),
                start=start,
                end=end,
                created_at=now,
                usable_from=now
                if usable_immediately
                else now + timedelta(seconds=self.propagation_delay_seconds),
                broken=False if usable_immediately else self.broken_new_secrets,
            )
            app.passwords.append(credential)
            return credential

    def remove_password(self, application: str, key_id: str) -> None:
        with self._lock:
            app = self.get_application(application)
            credential = app.password(key_id)
            if credential is None:
                raise KeyError(key_id)
            app.passwords.remove(credential)

    def get_application(self, ref: str) -> Application:
        """By object id or appId (case-insensitive); KeyError if unknown."""
        with self._lock:
            for app in self._apps.values():
                if ref.lower() in (app.object_id.lower(), app.app_id.lower()):
                    return app
        raise KeyError(ref)

    def applications(self) -> list[Application]:
        with self._lock:
            return list(self._apps.values())

    def remove_application(self, ref: str) -> None:
        with self._lock:
            app = self.get_application(ref)
            del self._apps[app.object_id]

    def record_sign_in(
        self,
        application: str,
        key_id: str,
        at: datetime | None,
        *,
        resource: str = GRAPH_RESOURCE,
        request_id: str | None = None,
    ) -> CredentialSignIn | None:
        """Set (or with ``at=None`` clear) a password's last sign-in, as the report shows it.

        ``application`` = object id or appId; KeyError if the app or its password is unknown."""
        with self._lock:
            app = self.get_application(application)
            credential = app.password(key_id)
            if credential is None:
                raise KeyError(key_id)
            row_key = (app.app_id.lower(), credential.key_id.lower())
            credential.last_sign_in = at
            if at is None:
                self._sign_ins.pop(row_key, None)
                return None
            row = CredentialSignIn(
                app_id=app.app_id,
                app_object_id=app.object_id,
                app_display_name=app.display_name,
                key_id=credential.key_id,
                created=credential.created_at,
                expires=credential.end,
                last_sign_in=at.astimezone(UTC),
                request_id=request_id or str(uuid.uuid4()),
                resource_id=resource_app_id(resource),
            )
            self._sign_ins[row_key] = row
            return row

    def sign_in_activities(self) -> list[CredentialSignIn]:
        """The report's rows (credentials that signed in), in report order."""
        with self._lock:
            return list(self._sign_ins.values())

    def token_for(self, principal: str = "rotator", audience: str = GRAPH_RESOURCE) -> str:
        """Mint a token directly (tests that call Graph with raw HTTP)."""
        return self.issuer.issue(principal, audience, tenant_id=self.tenant_id).token

    def throttle_writes(self, count: int = 1, *, retry_after: int = 1) -> None:
        """Next ``count`` addPassword/removePassword calls get 429 with ``Retry-After``."""
        self.throttle_next(
            count, retry_after=retry_after, method="POST", path=r"/(addPassword|removePassword)$"
        )

    def commit_then_fail(self, count: int = 1, *, status: int = 504, retry_after: int | None = None) -> None:
        """Next ``count`` addPassword calls create the password, then answer ``status`` (a lost response)."""
        self.fail_next(
            count, status, method="POST", path=r"/addPassword$", retry_after=retry_after, after_commit=True
        )

    # ----------------------------------------------------------------- protected web APIs
    # Tokens for a web API are JWTs signed with the tenant's key, published as a JWK set at
    # ``{tenant}/discovery/v2.0/keys`` (the ``jwks_uri`` of the OpenID configuration); the API
    # checks the signature, ``aud``, ``iss``, ``exp`` and the ``roles`` claim, which lists the app
    # roles assigned to the calling client (learn.microsoft.com/entra/identity-platform/access-tokens,
    # .../access-token-claims-reference, .../howto-add-app-roles-in-apps).

    def expose_api(self, audience: str, assignments: Mapping[str, list[str]] | None = None) -> None:
        """Make ``audience`` a protected web API; ``assignments``: client appId -> app role values."""
        with self._lock:
            self._apis[audience] = {k.lower(): list(v) for k, v in (assignments or {}).items()}

    def _key(self) -> Any:
        if self._signing_key is None:
            from cryptography.hazmat.primitives.asymmetric import rsa

            self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._signing_key

    def signing_kid(self) -> str:
        import hashlib

        from cryptography.hazmat.primitives import serialization

        public = (
            self._key()
            .public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        return hashlib.sha256(public).hexdigest()[:32]

    def jwks(self) -> JsonDict:
        import json as jsonlib

        import jwt

        jwk = jsonlib.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key().public_key()))
        return {"keys": [{**jwk, "kid": self.signing_kid(), "use": "sig", "alg": "RS256"}]}

    def api_token(
        self,
        audience: str,
        *,
        client_id: str,
        roles: list[str] | None = None,
        issuer_base: str | None = None,
        lifetime_seconds: int = 3600,
        signing_key: Any = None,
    ) -> str:
        """A v2.0 access token for a web API, signed RS256 (``signing_key``: another key, for tests
        of a forged token)."""
        import jwt

        now = int(self.clock.now().timestamp())
        claims: JsonDict = {
            "aud": audience,
            "iss": f"{(issuer_base or self.url).rstrip('/')}/{self.tenant_id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_seconds,
            "azp": client_id,
            "azpacr": "1",
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{client_id.lower()}")),
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{client_id.lower()}")),
            "tid": self.tenant_id,
            "ver": "2.0",
        }
        if roles:
            claims["roles"] = list(roles)
        return jwt.encode(
            claims, signing_key or self._key(), algorithm="RS256", headers={"kid": self.signing_kid()}
        )

    def _signing_keys(self, request: SimRequest) -> SimResponse:
        if not self._tenant_known(request.params["tenant"]):
            return self.aad_error(request, 400, "invalid_tenant", 90002, "Tenant not found.")
        return json_response(200, self.jwks())

    def _admin_expose_api(self, request: SimRequest) -> SimResponse:
        body = cast_json_dict(request.json())
        assignments = body.get("assignments") or {}
        self.expose_api(str(body["audience"]), {str(k): [str(r) for r in v] for k, v in assignments.items()})
        return json_response(201, {"audience": body["audience"]})

    def _admin_api_token(self, request: SimRequest) -> SimResponse:
        body = cast_json_dict(request.json())
        token = self.api_token(
            str(body["audience"]),
            client_id=str(body.get("clientId") or uuid.uuid4()),
            roles=[str(r) for r in body.get("roles") or []],
            issuer_base=request.base_url,
            lifetime_seconds=int(body.get("lifetimeSeconds") or 3600),
        )
        return json_response(200, {"access_token": token, "token_type": "Bearer"})

    def state(self) -> JsonDict:
        with self._lock:
            return {
                "tenantId": self.tenant_id,
                "now": graph_datetime(self.clock.now()),
                "applications": [app.state_json() for app in self._apps.values()],
                "credentialSignIns": [row.graph_json() for row in self._sign_ins.values()],
                "switches": self.switches(),
            }

    def reset(self) -> None:
        with self._lock:
            super().reset()
            self._apps.clear()
            self._sign_ins.clear()
            self._apis.clear()
            self._reset_switches()
            self.clock.offset_seconds = 0

    def switches(self) -> JsonDict:
        with self._lock:
            data = super().switches()
            data.update(
                {
                    "max_lifetime": self.max_lifetime_seconds,
                    "msa_password_limit": self.msa_password_limit,
                    "propagation_delay_seconds": self.propagation_delay_seconds,
                    "broken_new_secrets": self.broken_new_secrets,
                    "write_quota": (
                        None
                        if self.write_quota is None
                        else {"limit": self.write_quota[0], "window_seconds": self.write_quota[1]}
                    ),
                    "writes_throttled": self.writes_throttled,
                    "writes_accepted": self.writes_accepted,
                    "writes_peak": self.writes_peak,
                    "sign_in_activity_readable": self.sign_in_activity_readable,
                }
            )
            return data

    def apply_switch(self, name: str, value: Any) -> bool:
        if name in ("max_lifetime", "max_lifetime_seconds"):
            self.max_lifetime_seconds = None if value is None else float(value)
        elif name == "policies_readable":
            self.policies_readable = bool(value)
        elif name == "leading_dash_secrets":
            self.leading_dash_secrets = int(value)
        elif name == "msa_password_limit":
            self.msa_password_limit = int(value)
        elif name == "propagation_delay_seconds":
            self.propagation_delay_seconds = float(value or 0)
        elif name == "broken_new_secrets":
            self.broken_new_secrets = bool(value)
        elif name == "sign_in_activity_readable":
            self.sign_in_activity_readable = bool(value)
        elif name == "write_quota":
            self.write_quota = (
                None if value is None else (int(value["limit"]), float(value["window_seconds"]))
            )
            self._writes.clear()
            self.writes_throttled = 0
            self.writes_accepted = 0
            self.writes_peak = 0
        elif name == "throttle_writes":
            count, retry_after = (
                (value, 1) if isinstance(value, int) else (value["count"], value.get("retry_after", 1))
            )
            self.throttle_writes(int(count), retry_after=int(retry_after))
        elif name == "commit_then_fail":
            spec = {"count": value} if isinstance(value, int) else dict(value)
            retry_after = spec.get("retry_after")
            self.commit_then_fail(
                int(spec.get("count", 1)),
                status=int(spec.get("status", 504)),
                retry_after=None if retry_after is None else int(retry_after),
            )
        else:
            return False
        return True

    def endpoints(self) -> JsonDict:
        return {
            "graph_url": self.url,
            "login_authority": self.authority,
            "tenant_id": self.tenant_id,
        }

    # ----------------------------------------------------------------- Graph helpers

    def graph_audiences(self, request: SimRequest) -> list[str]:
        # Graph's own audiences only, as Entra issues them (learn.microsoft.com/graph/auth): a token
        # for "https://<this host>/.default" is refused, as real Graph would refuse it.
        return [GRAPH_RESOURCE, GRAPH_APP_ID]

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        if not _is_graph(request.path):
            return None  # the token endpoint is anonymous
        check = self.issuer.check(request.header("authorization"), self.graph_audiences(request))
        if check.ok and check.token is not None:
            request.principal = check.token.principal
            return None
        message = {
            "missing": "Access token is empty.",
            "unknown": "IDX14100: JWT is not well formed, there are no dots (.).",
            "expired": "Lifetime validation failed, the token is expired.",
            "audience": "Access token validation failure. Invalid audience.",
        }.get(check.error or "", "Access token validation failure.")
        return self.graph_error(
            request,
            401,
            "InvalidAuthenticationToken",
            message,
            headers={
                "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
                f'oauth2/authorize", client_id="{GRAPH_APP_ID}"'
            },
        )

    def graph_error(
        self,
        request: SimRequest,
        status: int,
        code: str,
        message: str,
        *,
        details: list[JsonDict] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> SimResponse:
        """An error body exactly in Graph's shape, with ``innerError`` ids and date."""
        request_id = str(uuid.uuid4())
        client_request_id = request.header("client-request-id") or request_id
        error: JsonDict = {"code": code, "message": message}
        if details is not None:
            error["details"] = details
        error["innerError"] = {
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": request_id,
            "client-request-id": client_request_id,
        }
        merged = {"request-id": request_id, "client-request-id": client_request_id}
        merged.update(headers or {})
        return json_response(status, {"error": error}, merged)

    def graph_ok(self, request: SimRequest, payload: JsonDict, status: int = 200) -> SimResponse:
        request_id = str(uuid.uuid4())
        return json_response(
            status,
            payload,
            {
                "request-id": request_id,
                "client-request-id": request.header("client-request-id") or request_id,
            },
        )

    def fault_response(self, request: SimRequest, rule: FaultRule) -> SimResponse:
        headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
        if not _is_graph(request.path):
            return self.aad_error(
                request,
                rule.status,
                "temporarily_unavailable",
                90033 if rule.status != 429 else 50196,
                "A transient error has occurred. Please try again.",
                headers=headers,
            )
        if rule.status == 429:
            # Directory (identity & access) throttling code and message, plus the throttle headers.
            headers.update(
                {
                    "x-ms-throttle-scope": f"Tenant_Application/ReadWrite/simulator/{self.tenant_id}",
                    "x-ms-throttle-information": "WriteLimitExceeded",
                }
            )
            seconds = rule.retry_after if rule.retry_after is not None else 1
            return self.graph_error(
                request,
                429,
                "Request_ThrottledTemporarily",
                f"Your request is throttled temporarily. Please try after {seconds} seconds.",
                headers=headers,
            )
        code, message = {
            500: ("Service_InternalServerError", "Encountered an internal server error."),
            502: ("BadGateway", "Bad gateway."),
            503: ("serviceNotAvailable", "Service is temporarily unavailable. Please try again later."),
            504: ("GatewayTimeout", "The gateway did not receive a response in time."),
        }.get(rule.status, ("UnknownError", ""))
        return self.graph_error(request, rule.status, code, message, headers=headers)

    def not_found(self, request: SimRequest) -> SimResponse:
        if _is_graph(request.path):
            return self.graph_error(
                request,
                400,
                "BadRequest",
                f"Resource not found for the segment '{request.path.rsplit('/', 1)[-1]}'.",
            )
        return super().not_found(request)

    def _resolve(self, request: SimRequest) -> Application:
        """The application addressed by ``{id}`` or ``(appId='...')``, else Graph's 404."""
        object_id = request.params.get("object_id")
        app_id = request.params.get("app_id")
        with self._lock:
            for app in self._apps.values():
                if object_id is not None and app.object_id.lower() == object_id.lower():
                    return app
                if app_id is not None and app.app_id.lower() == app_id.lower():
                    return app
        ref = object_id if object_id is not None else f"appId='{app_id}'"
        raise SimHTTPError(
            self.graph_error(
                request,
                404,
                "Request_ResourceNotFound",
                f"Resource '{ref}' does not exist or one of its queried reference-property objects are not present.",
            )
        )

    @staticmethod
    def _select(payload: JsonDict, select: str | None) -> JsonDict:
        if not select:
            return payload
        wanted = {name.strip().lower() for name in select.split(",") if name.strip()}
        return {key: value for key, value in payload.items() if key.lower() in wanted}

    def _bad_request(
        self, request: SimRequest, message: str, code: str = "Request_BadRequest"
    ) -> SimHTTPError:
        return SimHTTPError(self.graph_error(request, 400, code, message))

    def _body(self, request: SimRequest) -> JsonDict:
        try:
            return cast_json_dict(request.json())
        except ValueError as exc:
            raise self._bad_request(request, f"Invalid request body: {exc}", "BadRequest") from exc

    # ----------------------------------------------------------------- Graph handlers

    # ----------------------------------------------------------------- app management policies
    # Shapes: learn.microsoft.com/graph/api/tenantappmanagementpolicy-get (tenantAppManagementPolicy
    # with applicationRestrictions.passwordCredentials[] of passwordCredentialConfiguration:
    # restrictionType, maxLifetime as an ISO 8601 duration, restrictForAppsCreatedAfterDateTime,
    # state) and learn.microsoft.com/graph/api/application-list-appmanagementpolicies (a
    # collection of appManagementPolicy; none is assigned here). Both need Policy.Read.All.

    def _policy_denied(self, request: SimRequest) -> SimResponse | None:
        if self.policies_readable:
            return None
        return self.graph_error(
            request, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )

    def _default_app_management_policy(self, request: SimRequest) -> SimResponse:
        denied = self._policy_denied(request)
        if denied is not None:
            return denied
        restrictions = []
        if self.max_lifetime_seconds is not None:
            restrictions.append(
                {
                    "restrictionType": "passwordLifetime",
                    "maxLifetime": _iso_duration(self.max_lifetime_seconds),
                    "restrictForAppsCreatedAfterDateTime": None,
                    "state": "enabled",
                }
            )
        payload = {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#policies/defaultAppManagementPolicy/$entity",
            "id": "00000000-0000-0000-0000-000000000000",
            "displayName": "Default app management tenant policy",
            "description": "Default tenant policy that enforces app management restrictions on applications.",
            "isEnabled": True,
            "applicationRestrictions": {"passwordCredentials": restrictions, "keyCredentials": []},
            "servicePrincipalRestrictions": {"passwordCredentials": [], "keyCredentials": []},
        }
        return self.graph_ok(request, payload)

    def _app_management_policies(self, request: SimRequest) -> SimResponse:
        self._resolve(request)
        denied = self._policy_denied(request)
        if denied is not None:
            return denied
        return self.graph_ok(
            request,
            {
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#policies/appManagementPolicies",
                "value": [],
            },
        )

    def _get_application(self, request: SimRequest) -> SimResponse:
        app = self._resolve(request)
        payload = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#applications/$entity"}
        payload.update(self._select(app.graph_json(), request.arg("$select")))
        return self.graph_ok(request, payload)

    _FILTER_EQ = re.compile(r"^\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*$")
    _FILTER_STARTSWITH = re.compile(r"^\s*startswith\(\s*(\w+)\s*,\s*'((?:[^']|'')*)'\s*\)\s*$")
    _FILTER_FIELDS = {"id": "object_id", "appid": "app_id", "displayname": "display_name"}

    def _filter(
        self, request: SimRequest, apps: list[Application], expression: str | None
    ) -> list[Application]:
        if not expression:
            return apps
        for pattern, prefix_only in ((self._FILTER_EQ, False), (self._FILTER_STARTSWITH, True)):
            found = pattern.match(expression)
            if found and found.group(1).lower() in self._FILTER_FIELDS:
                attribute = self._FILTER_FIELDS[found.group(1).lower()]
                wanted = found.group(2).replace("''", "'").lower()
                selected = []
                for app in apps:
                    actual = str(getattr(app, attribute)).lower()
                    if actual.startswith(wanted) if prefix_only else actual == wanted:
                        selected.append(app)
                return selected
        raise self._bad_request(request, "Unsupported query.", "Request_UnsupportedQuery")

    def _list_applications(self, request: SimRequest) -> SimResponse:
        top_text = request.arg("$top", "100") or "100"
        if not top_text.isdigit() or not 1 <= int(top_text) <= 999:
            raise self._bad_request(
                request,
                f"Invalid page size specified: '{top_text}'. Must be between 1 and 999 inclusive.",
                "Request_UnsupportedQuery",
            )
        top = int(top_text)
        skip_token = request.arg("$skiptoken")
        offset = 0
        if skip_token:
            if not (skip_token.startswith("sim") and skip_token[3:].isdigit()):
                raise self._bad_request(request, "Invalid skip token.", "Request_BadRequest")
            offset = int(skip_token[3:])
        with self._lock:
            apps = sorted(self._apps.values(), key=lambda a: (a.created, a.object_id))
        apps = self._filter(request, apps, request.arg("$filter"))
        page = apps[offset : offset + top]
        select = request.arg("$select")
        payload: JsonDict = {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#applications",
            "value": [self._select(app.graph_json(), select) for app in page],
        }
        if offset + top < len(apps):
            query = f"$top={top}&$skiptoken=sim{offset + top}"
            if request.arg("$filter"):
                query += "&$filter=" + _quote(request.arg("$filter") or "")
            if select:
                query += "&$select=" + _quote(select)
            payload["@odata.nextLink"] = f"{request.base_url}/v1.0/applications?{query}"
        return self.graph_ok(request, payload)

    # ----------------------------------------------------------------- sign-in report (beta)
    # learn.microsoft.com/graph/api/reportroot-list-appcredentialsigninactivities?view=graph-rest-beta:
    # GET /reports/appCredentialSignInActivities with $top and $filter (appId eq / keyId eq in the
    # examples), a collection of appCredentialSignInActivity; needs AuditLog.Read.All (least
    # privileged). Get one: learn.microsoft.com/graph/api/appcredentialsigninactivity-get?view=graph-rest-beta.

    _REPORT_CONTEXT = "https://graph.microsoft.com/beta/$metadata#reports/appCredentialSignInActivities"
    _REPORT_FILTER_FIELDS = {"appid": "app_id", "keyid": "key_id", "appobjectid": "app_object_id"}

    def _report_denied(self, request: SimRequest) -> None:
        if not self.sign_in_activity_readable:
            raise SimHTTPError(
                self.graph_error(
                    request,
                    403,
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation.",
                )
            )

    def _list_sign_in_activities(self, request: SimRequest) -> SimResponse:
        self._report_denied(request)
        top_text = request.arg("$top", "100") or "100"
        if not top_text.isdigit() or not 1 <= int(top_text) <= 999:
            raise self._bad_request(
                request,
                f"Invalid page size specified: '{top_text}'. Must be between 1 and 999 inclusive.",
                "Request_UnsupportedQuery",
            )
        top = int(top_text)
        skip_token = request.arg("$skiptoken")
        offset = 0
        if skip_token:
            if not (skip_token.startswith("sim") and skip_token[3:].isdigit()):
                raise self._bad_request(request, "Invalid skip token.", "Request_BadRequest")
            offset = int(skip_token[3:])
        rows = self.sign_in_activities()
        expression = request.arg("$filter")
        if expression:
            found = self._FILTER_EQ.match(expression)
            if not found or found.group(1).lower() not in self._REPORT_FILTER_FIELDS:
                raise self._bad_request(request, "Unsupported query.", "Request_UnsupportedQuery")
            attribute = self._REPORT_FILTER_FIELDS[found.group(1).lower()]
            wanted = found.group(2).replace("''", "'").lower()
            rows = [row for row in rows if str(getattr(row, attribute)).lower() == wanted]
        page = rows[offset : offset + top]
        payload: JsonDict = {
            "@odata.context": self._REPORT_CONTEXT,
            "value": [row.graph_json() for row in page],
        }
        if offset + top < len(rows):
            query = f"$top={top}&$skiptoken=sim{offset + top}"
            if expression:
                query += "&$filter=" + _quote(expression)
            payload["@odata.nextLink"] = (
                f"{request.base_url}/beta/reports/appCredentialSignInActivities?{query}"
            )
        return self.graph_ok(request, payload)

    def _get_sign_in_activity(self, request: SimRequest) -> SimResponse:
        self._report_denied(request)
        wanted = request.params["activity_id"]
        row = next((r for r in self.sign_in_activities() if r.id == wanted), None)
        if row is None:
            raise SimHTTPError(
                self.graph_error(
                    request,
                    404,
                    "Request_ResourceNotFound",
                    f"Resource '{wanted}' does not exist or one of its queried reference-property objects "
                    "are not present.",
                )
            )
        payload: JsonDict = {"@odata.context": self._REPORT_CONTEXT + "/$entity"}
        payload.update(row.graph_json())
        return self.graph_ok(request, payload)

    def _within_write_quota(self, request: SimRequest) -> None:
        """Count a password write against ``write_quota``; 429 when the window is full."""
        if self.write_quota is None:
            return
        limit, window = self.write_quota
        now = time.monotonic()
        while self._writes and self._writes[0] <= now - window:
            self._writes.popleft()
        if len(self._writes) >= limit:
            self.writes_throttled += 1
            seconds = max(1, math.ceil(self._writes[0] + window - now))
            raise SimHTTPError(
                self.graph_error(
                    request,
                    429,
                    "Request_ThrottledTemporarily",
                    f"Your request is throttled temporarily. Please try after {seconds} seconds.",
                    headers={
                        "Retry-After": str(seconds),
                        "x-ms-throttle-scope": f"Tenant_Application/ReadWrite/simulator/{self.tenant_id}",
                        "x-ms-throttle-information": "WriteLimitExceeded",
                    },
                )
            )
        self._writes.append(now)
        self.writes_accepted += 1
        self.writes_peak = max(self.writes_peak, len(self._writes))

    def _add_password(self, request: SimRequest) -> SimResponse:
        self._within_write_quota(request)
        app = self._resolve(request)
        body = self._body(request)
        spec = body.get("passwordCredential") or {}
        if not isinstance(spec, dict):
            raise self._bad_request(request, "Invalid value for property 'passwordCredential'.")
        now = self.clock.now()

        def when(key: str) -> datetime | None:
            value = spec.get(key)
            if value is None:
                return None
            try:
                return parse_datetime(str(value))
            except ValueError as exc:
                raise self._bad_request(request, f"Invalid value specified for property '{key}'.") from exc

        start = when("startDateTime") or now
        end = when("endDateTime") or _add_years(start, DEFAULT_PASSWORD_LIFETIME_YEARS)
        if end <= start:
            raise self._bad_request(request, "Key credential end date must be after its start date.")
        if self.max_lifetime_seconds is not None and (end - now).total_seconds() > self.max_lifetime_seconds:
            policy_id = "00000000-0000-0000-0000-00000000a11c"
            return self.graph_error(
                request,
                400,
                "CredentialInvalidLifetimeAsPerAppPolicy",
                f"Credential lifetime exceeds the max value allowed as per assigned policy '{policy_id}'.",
                details=[
                    {
                        "code": "InvalidKeyEndDate",
                        "message": "Key credential end date is invalid.",
                        "target": "EndDate",
                    }
                ],
            )
        if (
            app.sign_in_audience in PERSONAL_ACCOUNT_AUDIENCES
            and len(app.passwords) >= self.msa_password_limit
        ):
            # Message verbatim from real reports; the error *code* is not confirmed anywhere we
            # could read, so Graph's generic Request_BadRequest is a stand-in.
            limit = self.msa_password_limit
            return self.graph_error(
                request,
                400,
                "Request_BadRequest",
                f"Not allowed to add {len(app.passwords) + 1} passwords. "
                f"You can only add a maximum of {limit} passwords.",
            )
        display_name = spec.get("displayName")
        secret_text = generate_secret_text()
        if self.leading_dash_secrets > 0:
            self.leading_dash_secrets -= 1
            secret_text = "-" + secret_text[1:]
        credential = PasswordCredential(
            key_id=str(uuid.uuid4()),
            display_name=None if display_name is None else str(display_name),
            secret_text=secret_text,
            start=start,
            end=end,
            created_at=now,
            usable_from=now + timedelta(seconds=self.propagation_delay_seconds),
            broken=self.broken_new_secrets,
        )
        app.passwords.append(credential)
        payload = {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.passwordCredential"
        }
        payload.update(credential.graph_json(include_secret=True))
        return self.graph_ok(request, payload)

    def _remove_password(self, request: SimRequest) -> SimResponse:
        self._within_write_quota(request)
        app = self._resolve(request)
        key_id = self._body(request).get("keyId")
        try:
            key = str(uuid.UUID(str(key_id)))
        except ValueError as exc:
            raise self._bad_request(
                request, f"Invalid value specified for property 'keyId': '{key_id}'."
            ) from exc
        credential = app.password(key)
        if credential is None:
            # Real Graph answers 400 with this message (seen in Vault's Azure plugin and field
            # reports); the code is not documented, Request_BadRequest is Graph's generic one.
            raise self._bad_request(request, f"No password credential found with keyId {key}.")
        app.passwords.remove(credential)
        request_id = str(uuid.uuid4())
        return SimResponse(
            204,
            b"",
            {
                "request-id": request_id,
                "client-request-id": request.header("client-request-id") or request_id,
            },
        )

    # ----------------------------------------------------------------- token endpoint

    def _tenant_known(self, tenant: str) -> bool:
        return tenant.lower() == self.tenant_id.lower()

    def aad_error(
        self,
        request: SimRequest,
        status: int,
        error: str,
        code: int,
        description: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> SimResponse:
        """An error in the token endpoint's shape (``error``, ``error_description`` with AADSTS, ...)."""
        trace_id = str(uuid.uuid4())
        correlation_id = request.header("client-request-id") or str(uuid.uuid4())
        timestamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        body = {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {timestamp}",
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        }
        return json_response(status, body, headers)

    def _openid_configuration(self, request: SimRequest) -> SimResponse:
        tenant = request.params["tenant"]
        if not self._tenant_known(tenant):
            return self.aad_error(request, 400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        base = f"{request.base_url}/{tenant}"
        v2 = "/v2.0/" in request.path
        suffix = "/v2.0" if v2 else ""
        return json_response(
            200,
            {
                "token_endpoint": f"{base}/oauth2{suffix}/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery{suffix}/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{request.base_url}/{self.tenant_id}{suffix}",
                "request_uri_parameter_supported": False,
                "authorization_endpoint": f"{base}/oauth2{suffix}/authorize",
                "device_authorization_endpoint": f"{base}/oauth2{suffix}/devicecode",
                "end_session_endpoint": f"{base}/oauth2{suffix}/logout",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "oid"],
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
            },
        )

    def _token(self, request: SimRequest) -> SimResponse:
        tenant = request.params["tenant"]
        if not self._tenant_known(tenant):
            return self.aad_error(request, 400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        form = request.form()
        if form.get("grant_type") != "client_credentials":
            return self.aad_error(
                request,
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{form.get('grant_type')}'.",
            )
        if "/oauth2/v2.0/" in request.path:
            scopes = form.get("scope", "").split()
            if len(scopes) != 1 or not scopes[0].endswith("/.default"):
                return self.aad_error(
                    request,
                    400,
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {form.get('scope', '')} is not valid. Client credential flows "
                    "must have a scope value with /.default suffixed to the resource identifier.",
                )
            audience = scope_to_audience(scopes[0])
        else:
            audience = scope_to_audience(form.get("resource", ""))
        client_id = form.get("client_id", "")
        try:
            app = self.get_application(client_id)
        except KeyError:
            # Entra answers 400 here, which MSAL caches for 60 s: retrying at once changes nothing.
            return self.aad_error(
                request,
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
            )
        secret = form.get("client_secret")
        if not secret:
            return self.aad_error(
                request,
                401,
                "invalid_client",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
            )
        now = self.clock.now()
        match = next(
            (p for p in app.passwords if hmac.compare_digest(p.secret_text.encode(), secret.encode())),
            None,
        )
        if match is not None and match.end <= now:
            return self.aad_error(
                request,
                401,
                "invalid_client",
                7000222,
                f"The provided client secret keys for app '{app.app_id}' are expired. Visit the Azure portal "
                "to create new keys for your app.",
            )
        if match is None or match.broken or now < match.start or now < match.usable_from:
            # Also the answer while a new secret is still propagating: Entra does not tell them apart.
            return self.aad_error(
                request,
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                f"value, not the client secret ID, for a secret added to app '{app.app_id}'.",
            )
        match.sign_ins += 1
        # Entra answers with x-ms-request-id; the report's lastSignInRequestId names that request.
        request_id = str(uuid.uuid4())
        self.record_sign_in(app.object_id, match.key_id, now, resource=audience, request_id=request_id)
        lifetime = self.issuer.lifetime_seconds
        with self._lock:
            api = self._apis.get(audience)
        if api is not None:
            token = self.api_token(
                audience,
                client_id=app.app_id,
                roles=api.get(app.app_id.lower()),
                issuer_base=request.base_url,
                lifetime_seconds=lifetime,
            )
        else:
            token = self.issuer.issue(
                app.app_id, audience, client_id=app.app_id, tenant_id=self.tenant_id
            ).token
        return json_response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            },
            {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache", "x-ms-request-id": request_id},
        )

    # ----------------------------------------------------------------- admin HTTP handlers

    def _admin_app(self, request: SimRequest) -> Application:
        try:
            return self.get_application(request.params["ref"])
        except KeyError:
            raise SimHTTPError(
                json_response(404, {"error": f"no application {request.params['ref']}"})
            ) from None

    def _admin_add_application(self, request: SimRequest) -> SimResponse:
        body = cast_json_dict(request.json())
        app = self.add_application(
            str(body["displayName"]),
            app_id=body.get("appId"),
            object_id=body.get("id"),
            sign_in_audience=body.get("signInAudience", "AzureADMyOrg"),
            passwords=body.get("passwordCredentials") or [],
        )
        return json_response(201, app.state_json())

    def _admin_get_application(self, request: SimRequest) -> SimResponse:
        return json_response(200, self._admin_app(request).state_json())

    def _admin_delete_application(self, request: SimRequest) -> SimResponse:
        self.remove_application(self._admin_app(request).object_id)
        return SimResponse(204)

    def _admin_add_password(self, request: SimRequest) -> SimResponse:
        app = self._admin_app(request)
        credential = self._seed_password(app, cast_json_dict(request.json()))
        return json_response(201, credential.state_json())

    def _admin_remove_pw(self, request: SimRequest) -> SimResponse:
        try:
            self.remove_password(self._admin_app(request).object_id, request.params["key_id"])
        except KeyError:
            return json_response(404, {"error": f"no password {request.params['key_id']}"})
        return SimResponse(204)

    def _admin_sign_in(self, request: SimRequest) -> SimResponse:
        """``{"keyId", "at": ISO time or null, "resource"?}``: set or clear a password's last sign-in."""
        app = self._admin_app(request)
        body = cast_json_dict(request.json())
        key_id = str(body["keyId"])
        at = body.get("at")
        try:
            row = self.record_sign_in(
                app.object_id,
                key_id,
                None if at is None else parse_datetime(str(at)),
                resource=str(body.get("resource") or GRAPH_RESOURCE),
            )
        except KeyError:
            return json_response(404, {"error": f"no password {key_id}"})
        if row is None:
            return SimResponse(204)
        return json_response(200, row.graph_json())

    def _admin_issue_token(self, request: SimRequest) -> SimResponse:
        body = cast_json_dict(request.json())
        issued = self.issuer.issue(
            str(body.get("principal", "rotator")),
            str(body.get("audience", GRAPH_RESOURCE)),
            tenant_id=self.tenant_id,
        )
        return json_response(200, {"access_token": issued.token, "expires_on": issued.expires_on})


def _iso_duration(seconds: float) -> str:
    """ISO 8601 duration as Graph writes maxLifetime (``P10D``, ``P1DT2H``)."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if v)
    return f"P{days}D" + (f"T{time}" if time else "") if days or not time else f"PT{time}"


def _quote(value: str) -> str:
    return quote(value, safe="")
