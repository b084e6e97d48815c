"""Key Vault secrets: the rotator's own vault (staging) and, later, destination vaults.

Staging layout in the rotator's vault: one secret per rotation, ``app-{appId}-{rotationId}``,
tagged ``appId``, ``keyId``, ``rotationId`` and ``stage`` (pending → current → previous, or
failed). The engine records the version id the write returns and reads that version directly, so
a lookup costs one GET however many rotations came before; a rotation resumed after a crash finds
its secret by its own name, never by listing. Secrets of rotations older than the current and the
previous one are deleted (Key Vault keeps them soft-deleted for its retention period).
Applications staged before this layout (one secret ``app-{appId}`` with a version per rotation)
are still read, by tag, until their next rotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from shared.adapters.tls import azure_transport
from shared.domain.secret import SecretValue
from shared.errors import ExternalServiceError, NotFoundError, ThrottledError, TransientServiceError

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.keyvault.secrets.aio import SecretClient

SERVICE = "keyvault"
MANAGED_BY = "entra-secret-rotator"


@dataclass(frozen=True)
class VaultSecret:
    name: str
    version: str
    value: SecretValue
    tags: dict[str, str]
    expires_on: datetime | None


def same_vault(url: str, other: str) -> bool:
    """Whether two vault URLs name one vault (host and port; host names compare case-insensitively)."""
    first, second = urlparse(url), urlparse(other)
    return (first.hostname or "").lower() == (second.hostname or "").lower() and first.port == second.port


def staging_name(app_id: str, rotation_id: str | None = None) -> str:
    """``app-{appId}-{rotationId}`` (``app-{appId}``: the layout before per-rotation secrets)."""
    return f"app-{app_id}-{rotation_id}" if rotation_id else f"app-{app_id}"


class VaultClient:
    """A narrow, error-translating wrapper over one vault's SecretClient."""

    def __init__(
        self,
        vault_url: str,
        credential: AsyncTokenCredential,
        *,
        timeout_seconds: float,
        ca_bundle: str | None,
    ) -> None:
        from azure.keyvault.secrets.aio import SecretClient

        host = urlparse(vault_url).hostname or ""
        options: dict[str, Any] = {
            "connection_timeout": timeout_seconds,
            "read_timeout": timeout_seconds,
            "retry_total": 3,
            # The challenge's resource must match the vault's domain, except for local simulators.
            "verify_challenge_resource": host not in ("localhost", "127.0.0.1"),
            "transport": azure_transport(ca_bundle, timeout_seconds=timeout_seconds),
        }
        self.vault_url = vault_url
        self._client: SecretClient = SecretClient(vault_url, credential, **options)

    async def close(self) -> None:
        await self._client.close()

    async def set(
        self,
        name: str,
        value: SecretValue,
        *,
        tags: dict[str, str],
        content_type: str | None = None,
        expires_on: datetime | None = None,
    ) -> str:
        async with _vault_errors("set secret", self.vault_url, name):
            result = await self._client.set_secret(
                name, value.reveal(), tags=tags, content_type=content_type, expires_on=expires_on
            )
        return str(result.properties.version)

    async def get(self, name: str, version: str | None = None) -> VaultSecret | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            async with _vault_errors("get secret", self.vault_url, name):
                secret = await self._client.get_secret(name, version)
        except NotFoundError:
            return None
        except ResourceNotFoundError:
            return None
        if secret.value is None:
            return None
        return VaultSecret(
            name=name,
            version=str(secret.properties.version),
            value=SecretValue(secret.value),
            tags=dict(secret.properties.tags or {}),
            expires_on=secret.properties.expires_on,
        )

    async def find_version(self, name: str, **tags: str) -> VaultSecret | None:
        """The newest version whose tags include ``tags``."""
        from azure.core.exceptions import ResourceNotFoundError

        matches: list[Any] = []
        try:
            async with _vault_errors("list secret versions", self.vault_url, name):
                async for properties in self._client.list_properties_of_secret_versions(name):
                    found = properties.tags or {}
                    if all(found.get(key) == value for key, value in tags.items()):
                        matches.append(properties)
        except (NotFoundError, ResourceNotFoundError):
            return None
        if not matches:
            return None
        newest = max(matches, key=lambda p: p.created_on or datetime.min)
        return await self.get(name, str(newest.version))

    async def secret_tags(self) -> list[tuple[str, dict[str, str]]]:
        """Every secret's name and current tags (listing returns no values; needs the list
        permission: Key Vault Reader, which reads names and tags, never values)."""
        found: list[tuple[str, dict[str, str]]] = []
        async with _vault_errors("list secrets", self.vault_url, "*"):
            # Not retried: it serves interactive discovery, whose caller may ask again.
            async for properties in self._client.list_properties_of_secrets(retry_total=0):
                if properties.name:
                    found.append((str(properties.name), dict(properties.tags or {})))
        return found

    async def newest_tags(self, name: str) -> dict[str, str] | None:
        """Tags of the newest version, read from the version list (allowed even when it is disabled)."""
        newest: Any = None
        async with _vault_errors("list secret versions", self.vault_url, name):
            async for properties in self._client.list_properties_of_secret_versions(name):
                if newest is None or (properties.created_on or datetime.min) > (
                    newest.created_on or datetime.min
                ):
                    newest = properties
        return dict(newest.tags or {}) if newest is not None else None

    async def deleted_tags(self, name: str) -> dict[str, str] | None:
        """Tags of a soft-deleted secret, or None if there is none by that name."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            async with _vault_errors("get deleted secret", self.vault_url, name):
                deleted = await self._client.get_deleted_secret(name)
        except (NotFoundError, ResourceNotFoundError):
            return None
        return dict(deleted.properties.tags or {})

    async def recover(self, name: str) -> None:
        """Recover a soft-deleted secret (needs the recover permission, in Key Vault Secrets Officer)."""
        async with _vault_errors("recover deleted secret", self.vault_url, name):
            await self._client.recover_deleted_secret(name)

    async def delete(self, name: str) -> None:
        """Delete a secret (all versions); soft-deleted where the vault has soft delete. Idempotent."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            async with _vault_errors("delete secret", self.vault_url, name):
                # The aio client's delete waits (polling) until the deletion is done.
                await self._client.delete_secret(name)
        except (NotFoundError, ResourceNotFoundError):
            return

    async def update_tags(
        self, name: str, version: str, tags: dict[str, str], *, enabled: bool = True
    ) -> None:
        async with _vault_errors("update secret", self.vault_url, name):
            await self._client.update_secret_properties(name, version, tags=tags, enabled=enabled)


class _vault_errors:  # noqa: N801 - used as a context manager
    def __init__(self, action: str, vault_url: str, name: str) -> None:
        self._action = action
        self._context: dict[str, Any] = {"vault": vault_url, "secret_name": name}

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: Any, error: BaseException | None, tb: Any) -> bool:
        from azure.core.exceptions import (
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        if error is None or not isinstance(error, Exception):
            return False
        message = f"Key Vault {self._action} failed"
        if isinstance(error, ResourceNotFoundError):
            raise NotFoundError(message, **self._context) from None
        if isinstance(error, HttpResponseError):
            status = error.status_code
            odata = getattr(error, "error", None)
            # The inner code says what a 403/409 really is: ForbiddenByRbac, ForbiddenByPolicy,
            # ForbiddenByFirewall, SecretDisabled, ObjectIsDeletedButRecoverable (Key Vault's error
            # reference: learn.microsoft.com/azure/key-vault/general/rest-error-codes).
            inner = getattr(odata, "innererror", None)
            inner_code = inner.get("code") if isinstance(inner, dict) else None
            code = inner_code or getattr(odata, "code", None)
            if status == 429:
                retry_after = None
                if error.response is not None:
                    header = error.response.headers.get("Retry-After")
                    retry_after = float(header) if header and header.isdigit() else None
                raise ThrottledError(
                    message,
                    retry_after=retry_after,
                    service=SERVICE,
                    status=status,
                    code=code,
                    **self._context,
                ) from None
            if status is not None and status >= 500:
                raise TransientServiceError(
                    message, service=SERVICE, status=status, code=code, **self._context
                ) from None
            raise ExternalServiceError(
                message, service=SERVICE, status=status, code=code, **self._context
            ) from None
        if isinstance(error, ServiceRequestError | ServiceResponseError):
            raise TransientServiceError(message, service=SERVICE, **self._context) from None
        return False


class StagingVault:
    """The rotator's own vault, where every new secret is written before anything else happens.

    Implements the engine's ``StagingStore`` port (``shared.rotation.ports``).
    """

    def __init__(self, vault: VaultClient) -> None:
        self._vault = vault

    async def stage(
        self, app_id: str, rotation_id: str, key_id: str, secret: SecretValue, expires_on: datetime | None
    ) -> str:
        """Write the secret; returns the new version id (Key Vault's ``SetSecret`` answer)."""
        return await self._vault.set(
            staging_name(app_id, rotation_id),
            secret,
            tags={
                "managedBy": MANAGED_BY,
                "appId": app_id,
                "keyId": key_id,
                "rotationId": rotation_id,
                "stage": "pending",
            },
            content_type="application/x-entra-client-secret",
            expires_on=expires_on,
        )

    async def get(self, app_id: str, rotation_id: str, version: str | None = None) -> VaultSecret | None:
        """One GET: the given version of a rotation's secret, or its latest; None if absent."""
        return await self._vault.get(staging_name(app_id, rotation_id), version)

    async def find_legacy(self, app_id: str, key_id: str) -> VaultSecret | None:
        """A secret staged under the single-secret layout (before per-rotation secrets), by keyId."""
        return await self._vault.find_version(staging_name(app_id), keyId=key_id)

    async def set_stage(self, staged: VaultSecret, stage: str) -> None:
        if staged.tags.get("stage") == stage:
            return
        await self._vault.update_tags(
            staged.name, staged.version, {**staged.tags, "stage": stage}, enabled=stage != "failed"
        )

    async def discard(self, app_id: str, rotation_id: str) -> None:
        """Delete a rotation's staged secret (pruning); nothing happens if it is already gone."""
        await self._vault.delete(staging_name(app_id, rotation_id))


def credential_secret_name(*parts: str) -> str:
    """Name in the rotator's vault for a credential an integration needs (PAT, token, webhook URL).

    Integration names that would share one are refused at the PUT
    (``shared.domain.fields.integration_name_key``)."""
    from shared.domain.fields import vault_name

    return vault_name("cred", *parts)
