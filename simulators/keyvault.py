"""Key Vault secrets simulator (HTTPS; one server per vault), as azure-keyvault-secrets 4.12 uses it.

Auth follows the real challenge flow: the SDK's first request carries no token and no body;
we answer 401 with ``WWW-Authenticate: Bearer authorization=".../<tenant>", resource="https://vault.azure.net"``;
the SDK re-sends with a token for ``https://vault.azure.net/.default`` which must come from the
shared ``TokenIssuer``. Any api-version is accepted (4.12 sends ``2026-04-01``).

Secrets: set (new version), get latest (``/secrets/{name}/`` and without the slash) or a version,
update a version's attributes/tags/contentType, list secrets and versions (``nextLink`` paging),
soft delete, get/list/purge/recover deleted secrets. Times are Unix seconds on the shared clock.

Authorization model (learn.microsoft.com/azure/key-vault/general/rbac-access-policy): a vault is an
RBAC vault (``enable_rbac_authorization``, the default) or an access-policy vault. In an access-policy
vault a caller (the ``oid`` of its token) may use an operation only if ``access_policies`` holds an
entry for it with the secret permission the operation needs (get, list, set, delete, recover, purge
or ``all``; learn.microsoft.com/azure/key-vault/general/assign-access-policy), else 403 with inner
code ``ForbiddenByPolicy``. Both properties belong to the management plane: the ARM simulator sets
them (``Vaults - Update Access Policy`` and its ``vaults`` seed).
"""

from __future__ import annotations

import re
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
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
    empty_response,
    json_response,
)

VAULT_RESOURCE = "https://vault.azure.net"
SECRET_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
RECOVERY_LEVEL = "Recoverable+Purgeable"
RECOVERABLE_DAYS = 90
MAX_VALUE_BYTES = 25 * 1024
DEFAULT_PAGE_SIZE = 25
_NAME = r"(?P<name>[^/]+)"
_VERSION = r"(?P<version>[^/]+)"


@dataclass
class SecretVersion:
    name: str
    version: str
    value: str
    content_type: str | None
    tags: dict[str, str] | None
    enabled: bool
    not_before: int | None
    expires: int | None
    created: int
    updated: int

    def attributes(self) -> JsonDict:
        attributes: JsonDict = {"enabled": self.enabled}
        if self.not_before is not None:
            attributes["nbf"] = self.not_before
        if self.expires is not None:
            attributes["exp"] = self.expires
        attributes.update(
            {
                "created": self.created,
                "updated": self.updated,
                "recoveryLevel": RECOVERY_LEVEL,
                "recoverableDays": RECOVERABLE_DAYS,
            }
        )
        return attributes

    def bundle(self, base_url: str, *, include_value: bool = True) -> JsonDict:
        data: JsonDict = {}
        if include_value:
            data["value"] = self.value
        if self.content_type is not None:
            data["contentType"] = self.content_type
        data["id"] = f"{base_url}/secrets/{self.name}/{self.version}"
        data["attributes"] = self.attributes()
        if self.tags is not None:
            data["tags"] = dict(self.tags)
        return data

    def item(self, item_id: str) -> JsonDict:
        data: JsonDict = {"id": item_id, "attributes": self.attributes()}
        if self.content_type is not None:
            data["contentType"] = self.content_type
        if self.tags is not None:
            data["tags"] = dict(self.tags)
        return data

    def state_json(self) -> JsonDict:
        return {
            "version": self.version,
            "value": self.value,
            "contentType": self.content_type,
            "tags": self.tags,
            "attributes": self.attributes(),
        }


@dataclass
class DeletedSecret:
    versions: list[SecretVersion]
    deleted_date: int
    scheduled_purge_date: int


class KeyVaultSimulator(SimulatorServer):
    """One vault. Switches: ``deny_access`` (403 after auth, with the inner code of ``deny_reason``:
    ``rbac`` -> ForbiddenByRbac, ``policy`` -> ForbiddenByPolicy, ``firewall`` -> ForbiddenByFirewall),
    ``throttle`` (next N -> 429 + Retry-After), ``fail_next`` (next N -> 5xx), ``latency_seconds``.
    In an access-policy vault (``enable_rbac_authorization`` false) a caller without the needed secret
    permission in ``access_policies`` is refused as ``deny_reason`` ``policy`` refuses everyone.

    Documented behaviours it follows (learn.microsoft.com/azure/key-vault/general/rest-error-codes and
    /azure/key-vault/general/soft-delete-overview): reading a disabled version answers 403 with inner
    code ``SecretDisabled`` while listing versions and setting a new version still work; setting a
    soft-deleted name answers 409 ``Conflict`` with inner code ``ObjectIsDeletedButRecoverable``
    until the secret is recovered (``POST /deletedsecrets/{name}/recover``) or purged."""

    kind = "keyvault"

    def __init__(
        self,
        *,
        issuer: TokenIssuer,
        ssl_context: ssl.SSLContext | None,
        tenant_id: str,
        name: str = "keyvault",
        clock: SimClock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        authority_host: str = "https://login.microsoftonline.com",
    ) -> None:
        super().__init__(name=name, host=host, port=port, ssl_context=ssl_context, clock=clock)
        self.issuer = issuer
        self.tenant_id = tenant_id
        self.authority_host = authority_host.rstrip("/")
        self.deny_access = False
        # Why access is denied: "rbac" (no role), "policy" (an access-policy vault) or "firewall".
        self.deny_reason = "rbac"
        # Management-plane properties (set through the ARM simulator): see the module docstring.
        self.enable_rbac_authorization = True
        self.access_policies: list[JsonDict] = []  # [{tenantId, objectId, permissions: {secrets: [...]}}]
        self._secrets: dict[str, list[SecretVersion]] = {}
        self._deleted: dict[str, DeletedSecret] = {}

        self.route("GET", r"/secrets/?", self._list_secrets)
        self.route("PUT", rf"/secrets/{_NAME}/?", self._set_secret)
        self.route("DELETE", rf"/secrets/{_NAME}/?", self._delete_secret)
        self.route("GET", rf"/secrets/{_NAME}/versions/?", self._list_versions)
        self.route("GET", rf"/secrets/{_NAME}/?", self._get_secret)
        self.route("GET", rf"/secrets/{_NAME}/{_VERSION}/?", self._get_secret)
        self.route("PATCH", rf"/secrets/{_NAME}/?", self._update_secret)
        self.route("PATCH", rf"/secrets/{_NAME}/{_VERSION}/?", self._update_secret)
        self.route("GET", r"/deletedsecrets/?", self._list_deleted)
        self.route("GET", rf"/deletedsecrets/{_NAME}/?", self._get_deleted)
        self.route("DELETE", rf"/deletedsecrets/{_NAME}/?", self._purge_deleted)
        self.route("POST", rf"/deletedsecrets/{_NAME}/recover/?", self._recover_deleted)

        self.admin_route("POST", "/secrets", self._admin_set_secret)

    # ----------------------------------------------------------------- Python admin API

    def set_secret(
        self,
        name: str,
        value: str,
        *,
        content_type: str | None = None,
        tags: Mapping[str, str] | None = None,
        enabled: bool = True,
        not_before: int | None = None,
        expires: int | None = None,
        version: str | None = None,
        created: int | None = None,
        updated: int | None = None,
    ) -> SecretVersion:
        """Add a version directly (seeding; no auth, no faults). ``version``, ``created``,
        ``updated`` (Unix seconds): restore a known version as it was."""
        if not SECRET_NAME.match(name):
            raise ValueError(f"invalid secret name {name!r}")
        with self._lock:
            if name.lower() in self._deleted:
                raise ValueError(f"secret {name!r} is deleted but recoverable")
            now = self.clock.timestamp()
            secret = SecretVersion(
                name=self._canonical_name(name),
                version=version or uuid.uuid4().hex,
                value=value,
                content_type=content_type,
                tags=dict(tags) if tags is not None else None,
                enabled=enabled,
                not_before=not_before,
                expires=expires,
                created=now if created is None else created,
                updated=now if updated is None else updated,
            )
            self._secrets.setdefault(name.lower(), []).append(secret)
            return secret

    def get_secret(self, name: str, version: str | None = None) -> SecretVersion:
        """Latest (or a given) version, disabled ones included; KeyError if absent."""
        with self._lock:
            versions = self._secrets[name.lower()]
            if version is None:
                return versions[-1]
            return next(v for v in versions if v.version == version.lower())

    def versions(self, name: str) -> list[SecretVersion]:
        with self._lock:
            return list(self._secrets.get(name.lower(), []))

    def secret_names(self) -> list[str]:
        with self._lock:
            return [versions[-1].name for versions in self._secrets.values()]

    def soft_delete(self, name: str) -> None:
        """Delete a secret as ``DELETE /secrets/{name}`` does (seeding; it stays recoverable)."""
        with self._lock:
            versions = self._secrets.pop(name.lower())
            now = self.clock.timestamp()
            self._deleted[name.lower()] = DeletedSecret(versions, now, now + RECOVERABLE_DAYS * 86400)

    def versions_named(self, prefix: str, *, include_deleted: bool = False) -> list[SecretVersion]:
        """Every version of every secret whose name starts with ``prefix`` (test inspection)."""
        with self._lock:
            found: list[SecretVersion] = []
            for key, versions in self._secrets.items():
                if key.startswith(prefix.lower()):
                    found.extend(versions)
            if include_deleted:
                for key, deleted in self._deleted.items():
                    if key.startswith(prefix.lower()):
                        found.extend(deleted.versions)
            return found

    def policy_permits(self, principal: str, permission: str) -> bool:
        """Whether an access policy gives ``principal`` (an object id) this secret permission."""
        for policy in self.access_policies:
            if str(policy.get("objectId", "")).lower() != principal.lower():
                continue
            granted = {str(p).lower() for p in (policy.get("permissions") or {}).get("secrets") or []}
            if permission in granted or "all" in granted:
                return True
        return False

    def deleted_names(self) -> list[str]:
        with self._lock:
            return [deleted.versions[-1].name for deleted in self._deleted.values()]

    def state(self) -> JsonDict:
        with self._lock:
            return {
                "name": self.name,
                "vaultUrl": self.url,
                "secrets": {v[-1].name: [s.state_json() for s in v] for v in self._secrets.values()},
                "deleted": {
                    d.versions[-1].name: [s.state_json() for s in d.versions] for d in self._deleted.values()
                },
                "enableRbacAuthorization": self.enable_rbac_authorization,
                "accessPolicies": [dict(p) for p in self.access_policies],
                "switches": self.switches(),
            }

    def reset(self) -> None:
        with self._lock:
            super().reset()
            self._secrets.clear()
            self._deleted.clear()
            self.deny_access = False
            self.deny_reason = "rbac"
            self.enable_rbac_authorization = True
            self.access_policies = []

    def switches(self) -> JsonDict:
        data = super().switches()
        data["deny_access"] = self.deny_access
        data["deny_reason"] = self.deny_reason
        return data

    def apply_switch(self, name: str, value: Any) -> bool:
        if name == "deny_access":
            self.deny_access = bool(value)
            return True
        if name == "deny_reason":
            if value not in ("rbac", "policy", "firewall"):
                raise ValueError("deny_reason: rbac, policy or firewall")
            self.deny_reason = str(value)
            return True
        return False

    def endpoints(self) -> JsonDict:
        return {"vault_url": self.url}

    # ----------------------------------------------------------------- protocol helpers

    def _canonical_name(self, name: str) -> str:
        # Names are case-insensitive; the first spelling is kept, as Key Vault does.
        existing = self._secrets.get(name.lower())
        return existing[0].name if existing else name

    @staticmethod
    def kv_error(
        status: int, code: str, message: str, *, inner: str | None = None, headers: Any = None
    ) -> SimResponse:
        error: JsonDict = {"code": code, "message": message}
        if inner is not None:
            error["innererror"] = {"code": inner}
        return json_response(status, {"error": error}, headers)

    def _challenge(self, message: str) -> SimResponse:
        header = f'Bearer authorization="{self.authority_host}/{self.tenant_id}", resource="{VAULT_RESOURCE}"'
        return self.kv_error(401, "Unauthorized", message, headers={"WWW-Authenticate": header})

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        check = self.issuer.check(request.header("authorization"), [VAULT_RESOURCE])
        if not check.ok or check.token is None:
            message = {
                "missing": "AKV10000: Request is missing a Bearer or PoP token.",
                "expired": "AKV10022: Invalid token: the token is expired.",
                "audience": f"AKV10022: Invalid audience. Expected {VAULT_RESOURCE}.",
            }.get(check.error or "", "AKV10032: Invalid issuer.")
            return self._challenge(message)
        request.principal = check.token.principal
        reason = self.deny_reason if self.deny_access else None
        permission = _policy_permission(request)
        if (
            reason is None
            and not self.enable_rbac_authorization
            and not self.policy_permits(check.token.principal, permission)
        ):
            reason = "policy"  # an access-policy vault, and no policy grants this caller the permission
        if reason == "firewall":
            # learn.microsoft.com/azure/key-vault/general/network-security (403 ForbiddenByFirewall).
            return self.kv_error(
                403,
                "Forbidden",
                "Client address is not authorized and caller is not a trusted service.\r\n"
                f"Client address: 127.0.0.1\r\nCaller: oid={check.token.principal}\r\nVault: {self.name};location=simulator",
                inner="ForbiddenByFirewall",
            )
        if reason == "policy":
            # learn.microsoft.com/azure/key-vault/general/troubleshooting-access-issues (403 ForbiddenByPolicy).
            return self.kv_error(
                403,
                "Forbidden",
                f"The user, group or application 'oid={check.token.principal}' does not have secrets "
                f"{permission} permission on key vault '{self.name};location=simulator'. For help resolving "
                "this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
                inner="ForbiddenByPolicy",
            )
        if reason is not None:
            return self.kv_error(
                403,
                "Forbidden",
                "Caller is not authorized to perform action on resource.\r\n"
                "If role assignments, deny assignments or role definitions were changed recently, please observe "
                f"propagation time.\r\nCaller: oid={check.token.principal}\r\n"
                f"Action: '{_rbac_action(request)}'\r\nResource: '/vaults/{self.name}'\r\n"
                "Assignment: (not found)\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\n"
                f"Vault: {self.name};location=simulator\r\n",
                inner="ForbiddenByRbac",
            )
        if not request.arg("api-version"):
            return self.kv_error(400, "BadParameter", "The 'api-version' query parameter is missing.")
        return None

    def fault_response(self, request: SimRequest, rule: FaultRule) -> SimResponse:
        headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
        if rule.status == 429:
            return self.kv_error(
                429,
                "Throttled",
                "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
                headers=headers,
            )
        code = {500: "InternalServerError", 503: "ServiceUnavailable", 504: "GatewayTimeout"}.get(
            rule.status, "Error"
        )
        return self.kv_error(rule.status, code, "The service is temporarily unavailable.", headers=headers)

    def not_found(self, request: SimRequest) -> SimResponse:
        return self.kv_error(404, "NotFound", f"The requested path {request.path} was not found.")

    def _name(self, request: SimRequest) -> str:
        name = request.params["name"]
        if not SECRET_NAME.match(name):
            raise SimHTTPError(
                self.kv_error(400, "BadParameter", f"The request URI contains an invalid name: {name}")
            )
        return name

    def _not_found(self, name: str, version: str | None = None) -> SimHTTPError:
        ref = f"{name}/{version}" if version else name
        return SimHTTPError(
            self.kv_error(
                404,
                "SecretNotFound",
                f"A secret with (name/id) {ref} was not found in this key vault. If you recently deleted this "
                "secret you may be able to recover it using the correct recovery command. For help resolving this "
                "issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
            )
        )

    def _versions_of(self, name: str) -> list[SecretVersion]:
        versions = self._secrets.get(name.lower())
        if not versions:
            raise self._not_found(name)
        return versions

    def _version(self, request: SimRequest, name: str) -> SecretVersion:
        versions = self._versions_of(name)
        version = request.params.get("version")
        if version is None:
            return versions[-1]
        found = next((v for v in versions if v.version == version.lower()), None)
        if found is None:
            raise self._not_found(name, version)
        return found

    def _body(self, request: SimRequest) -> JsonDict:
        try:
            return cast_json_dict(request.json())
        except ValueError as exc:
            raise SimHTTPError(
                self.kv_error(400, "BadParameter", f"The request body is invalid: {exc}")
            ) from exc

    @staticmethod
    def _apply_attributes(secret: SecretVersion, attributes: Any) -> None:
        if not isinstance(attributes, dict):
            return
        if attributes.get("enabled") is not None:
            secret.enabled = bool(attributes["enabled"])
        if "nbf" in attributes:
            secret.not_before = None if attributes["nbf"] is None else int(attributes["nbf"])
        if "exp" in attributes:
            secret.expires = None if attributes["exp"] is None else int(attributes["exp"])

    def _page(self, request: SimRequest, items: list[JsonDict], path: str) -> SimResponse:
        """One page of ``items`` with a ``nextLink`` carrying the offset, as Key Vault pages."""
        size_text = request.arg("maxresults") or str(DEFAULT_PAGE_SIZE)
        if not size_text.isdigit() or not 1 <= int(size_text) <= 25:
            return self.kv_error(400, "BadParameter", "maxresults must be between 1 and 25.")
        size = int(size_text)
        skip_text = request.arg("$skiptoken") or "0"
        offset = int(skip_text) if skip_text.isdigit() else 0
        payload: JsonDict = {"value": items[offset : offset + size], "nextLink": None}
        if offset + size < len(items):
            api_version = quote(request.arg("api-version") or "", safe="")
            payload["nextLink"] = (
                f"{request.base_url}{path}?api-version={api_version}&$skiptoken={offset + size}&maxresults={size}"
            )
        return json_response(200, payload)

    # ----------------------------------------------------------------- handlers

    def _set_secret(self, request: SimRequest) -> SimResponse:
        name = self._name(request)
        body = self._body(request)
        value = body.get("value")
        if not isinstance(value, str):
            return self.kv_error(400, "BadParameter", "Property 'value' is required and must be a string.")
        if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
            return self.kv_error(
                400, "BadParameter", "Secret value exceeds the maximum allowed size of 25 KB."
            )
        if name.lower() in self._deleted:
            return self.kv_error(
                409,
                "Conflict",
                f"Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; "
                "in this state, the secret can only be recovered or purged.",
                inner="ObjectIsDeletedButRecoverable",
            )
        tags = body.get("tags")
        secret = self.set_secret(
            name,
            value,
            content_type=body.get("contentType"),
            tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else None,
        )
        self._apply_attributes(secret, body.get("attributes"))
        return json_response(200, secret.bundle(request.base_url))

    def _get_secret(self, request: SimRequest) -> SimResponse:
        name = self._name(request)
        secret = self._version(request, name)
        if not secret.enabled:
            return self.kv_error(
                403, "Forbidden", "Operation get is not allowed on a disabled secret.", inner="SecretDisabled"
            )
        return json_response(200, secret.bundle(request.base_url))

    def _update_secret(self, request: SimRequest) -> SimResponse:
        name = self._name(request)
        secret = self._version(request, name)
        body = self._body(request)
        if "contentType" in body:
            secret.content_type = body["contentType"]
        if "tags" in body:
            tags = body["tags"]
            secret.tags = {str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else None
        self._apply_attributes(secret, body.get("attributes"))
        secret.updated = self.clock.timestamp()
        return json_response(200, secret.bundle(request.base_url, include_value=False))

    def _list_secrets(self, request: SimRequest) -> SimResponse:
        base = request.base_url
        items = [
            versions[-1].item(f"{base}/secrets/{versions[-1].name}") for versions in self._secrets.values()
        ]
        return self._page(request, items, "/secrets")

    def _list_versions(self, request: SimRequest) -> SimResponse:
        name = self._name(request)
        base = request.base_url
        versions = self._versions_of(name)
        items = [v.item(f"{base}/secrets/{v.name}/{v.version}") for v in versions]
        return self._page(request, items, f"/secrets/{versions[-1].name}/versions")

    def _deleted_bundle(self, request: SimRequest, deleted: DeletedSecret) -> JsonDict:
        latest = deleted.versions[-1]
        data = latest.bundle(request.base_url, include_value=False)
        data.update(
            {
                "recoveryId": f"{request.base_url}/deletedsecrets/{latest.name}",
                "deletedDate": deleted.deleted_date,
                "scheduledPurgeDate": deleted.scheduled_purge_date,
            }
        )
        return data

    def _delete_secret(self, request: SimRequest) -> SimResponse:
        name = self._name(request)
        versions = self._versions_of(name)
        now = self.clock.timestamp()
        deleted = DeletedSecret(versions, now, now + RECOVERABLE_DAYS * 86400)
        del self._secrets[name.lower()]
        self._deleted[name.lower()] = deleted
        return json_response(200, self._deleted_bundle(request, deleted))

    def _deleted_or_404(self, name: str) -> DeletedSecret:
        deleted = self._deleted.get(name.lower())
        if deleted is None:
            raise SimHTTPError(self.kv_error(404, "SecretNotFound", f"Deleted Secret not found: {name}"))
        return deleted

    def _get_deleted(self, request: SimRequest) -> SimResponse:
        name = self._name(request)
        return json_response(200, self._deleted_bundle(request, self._deleted_or_404(name)))

    def _list_deleted(self, request: SimRequest) -> SimResponse:
        items = []
        for deleted in self._deleted.values():
            bundle = self._deleted_bundle(request, deleted)
            bundle["id"] = f"{request.base_url}/secrets/{deleted.versions[-1].name}"
            items.append(bundle)
        return self._page(request, items, "/deletedsecrets")

    def _purge_deleted(self, request: SimRequest) -> SimResponse:
        name = self._name(request)
        self._deleted_or_404(name)
        del self._deleted[name.lower()]
        return empty_response(204)

    def _recover_deleted(self, request: SimRequest) -> SimResponse:
        name = self._name(request)
        deleted = self._deleted_or_404(name)
        del self._deleted[name.lower()]
        self._secrets[name.lower()] = deleted.versions
        return json_response(200, deleted.versions[-1].bundle(request.base_url, include_value=False))

    # ----------------------------------------------------------------- admin HTTP

    def _admin_set_secret(self, request: SimRequest) -> SimResponse:
        body = cast_json_dict(request.json())
        attributes = body.get("attributes") or {}
        secret = self.set_secret(
            str(body["name"]),
            str(body["value"]),
            content_type=body.get("contentType"),
            tags=body.get("tags"),
            enabled=bool(attributes.get("enabled", True)),
            not_before=attributes.get("nbf"),
            expires=attributes.get("exp"),
        )
        return json_response(201, secret.state_json())


def _policy_permission(request: SimRequest) -> str:
    """The access-policy secret permission an operation needs (each operation's page in
    learn.microsoft.com/rest/api/keyvault/secrets names it: Get Secrets / Get Secret Versions / Get
    Deleted Secrets need ``list``; Update Secret needs ``set``; Purge ``purge``; Recover ``recover``)."""
    segments = [s for s in request.path.lower().split("/") if s]
    if segments and segments[0] == "deletedsecrets":
        if request.method == "DELETE":
            return "purge"
        if request.method == "POST":
            return "recover"
        return "list" if len(segments) == 1 else "get"
    if request.method == "GET":
        listing = len(segments) == 1 or (len(segments) == 3 and segments[2] == "versions")
        return "list" if listing else "get"
    return {"PUT": "set", "PATCH": "set", "DELETE": "delete"}.get(request.method, "get")


def _rbac_action(request: SimRequest) -> str:
    verb = {
        "GET": "getSecret/action",
        "PUT": "setSecret/action",
        "PATCH": "update/action",
        "DELETE": "delete",
        "POST": "recover/action",
    }.get(request.method, "read")
    return f"Microsoft.KeyVault/vaults/secrets/{verb}"
