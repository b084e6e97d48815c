"""Azure Key Vault destination: the new secret as a new version of a secret the rotator manages.

Ownership: every version the rotator writes is tagged ``managedBy`` and ``appId``. A secret that
exists without the ``managedBy`` tag belongs to someone else and is left alone unless the
integration says ``adoptExisting``; one tagged for another application is never written (two
applications must never write the same secret). The default secret name is the display name made
valid for Key Vault plus the first 8 characters of the appId, so it is unique per application even
when the display name reduces to nothing safe. The rotator's own vault is never a destination
(``shared.rotation.checks``), so no integration can overwrite a staged secret or a stored credential.
Writing is skipped when the latest version already holds this key (a retried deploy is a no-op).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict

from shared.adapters.vault import MANAGED_BY, same_vault
from shared.domain.fields import (
    HttpsUrl,
    IntegrationBase,
    KeyVaultResourceId,
    KeyVaultSecretName,
    schema_rules,
)
from shared.errors import ExternalServiceError, FieldProblem, RotationError, TransientServiceError
from shared.integrations.base import DeployContext, DeployOutcome, WriteOnlyField

if TYPE_CHECKING:
    from shared.domain.models import ApplicationConfig

CONTENT_TYPE = "application/x-entra-client-secret"
SECRETS_OFFICER_ROLE = "Key Vault Secrets Officer"
# Built-in role definition id of "Key Vault Secrets Officer".
SECRETS_OFFICER_ROLE_ID = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
ROLE_ASSIGNMENTS_API_VERSION = "2022-04-01"
GRANT_PROPAGATION_WAITS = (2.0, 5.0, 10.0)


def default_secret_name(display_name: str, app_id: str) -> str:
    """``<display name as letters, digits and '-'>-<first 8 of appId>`` (Key Vault: at most 127)."""
    name = re.sub(r"-{2,}", "-", re.sub(r"[^0-9A-Za-z-]+", "-", display_name)).strip("-")
    suffix = app_id.lower()[:8]
    return (
        f"{name[: 127 - len(suffix) - 1].rstrip('-')}-{suffix}" if name else f"client-secret-{app_id.lower()}"
    )


def secret_name(settings: KeyVaultIntegration, app: ApplicationConfig) -> str:
    return settings.secret_name or default_secret_name(app.display_name, str(app.app_id))


def token_object_id(token: str) -> str:
    """The ``oid`` claim of our own access token: the rotator identity's principal id."""
    import base64
    import json

    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims["oid"])
    except (IndexError, KeyError, ValueError) as error:
        raise RotationError(
            "Cannot tell the rotator's principal id from its token", step="deploy", code="PrincipalUnknown"
        ) from error


async def rotator_principal(services: Any) -> str:
    """The rotator identity's principal (object) id, from its own ARM token."""
    token = await services.credential.get_token(services.settings.arm_scope)
    return token_object_id(token.token)


async def grant_secrets_officer(services: Any, vault_resource_id: str) -> str:
    """Assign 'Key Vault Secrets Officer' on the vault to the rotator itself; returns its principal id."""
    import uuid

    from shared.adapters.arm import ArmClient, ArmTarget

    principal = await rotator_principal(services)
    subscription = vault_resource_id.split("/")[2]
    role_definition = f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{SECRETS_OFFICER_ROLE_ID}"
    # Deterministic name: granting twice is one assignment (ARM answers 409 RoleAssignmentExists).
    name = uuid.uuid5(
        uuid.NAMESPACE_URL, f"{vault_resource_id.lower()}|{principal}|{SECRETS_OFFICER_ROLE_ID}"
    )
    target = ArmTarget(
        vault_resource_id,
        f"Key Vault '{vault_resource_id.rsplit('/', 1)[-1]}'",
        "User Access Administrator",
        role_note="or Role Based Access Control Administrator, to assign roles on the vault",
    )
    await ArmClient(services).request(
        "PUT",
        f"{vault_resource_id}/providers/Microsoft.Authorization/roleAssignments/{name}",
        ROLE_ASSIGNMENTS_API_VERSION,
        target,
        action="assign a role on",
        body={
            "properties": {
                "roleDefinitionId": role_definition,
                "principalId": principal,
                "principalType": "ServicePrincipal",
            }
        },
        accept=(409,),
    )
    return principal


ACCESS_POLICY_API_VERSION = "2023-07-01"
# What the rotator needs in an access-policy vault: write a version, read it back to verify, find
# its own versions, and recover a soft-deleted secret of its own.
ACCESS_POLICY_SECRET_PERMISSIONS = ("get", "list", "set", "recover")
KEY_VAULT_CONTRIBUTOR = "Key Vault Contributor"


async def grant_access_policy(services: Any, vault_resource_id: str) -> str:
    """Add an access policy for the rotator itself (secrets get/list/set/recover) to a vault that
    uses access policies; returns its principal id.

    Vaults - Update Access Policy, ``operationKind`` ``add`` (merges with an existing policy of the
    same principal): learn.microsoft.com/rest/api/keyvault/keyvault/vaults/update-access-policy.
    Needs ``Microsoft.KeyVault/vaults/accessPolicies/write`` (Key Vault Contributor)."""
    from shared.adapters.arm import ArmClient, ArmTarget

    principal = await rotator_principal(services)
    target = ArmTarget(
        vault_resource_id,
        f"Key Vault '{vault_resource_id.rsplit('/', 1)[-1]}'",
        KEY_VAULT_CONTRIBUTOR,
        role_note="or another role with Microsoft.KeyVault/vaults/accessPolicies/write, to add an access policy",
    )
    await ArmClient(services).request(
        "PUT",
        f"{vault_resource_id}/accessPolicies/add",
        ACCESS_POLICY_API_VERSION,
        target,
        action="add an access policy to",
        body={
            "properties": {
                "accessPolicies": [
                    {
                        "tenantId": services.settings.tenant_id,
                        "objectId": principal,
                        "permissions": {"secrets": list(ACCESS_POLICY_SECRET_PERMISSIONS)},
                    }
                ]
            }
        },
    )
    return principal


class KeyVaultIntegration(IntegrationBase):
    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            **{
                "if": {"properties": {"grantAccess": {"const": True}}, "required": ["grantAccess"]},
                "then": {
                    "properties": {"vaultResourceId": {"type": "string"}},
                    "required": ["vaultResourceId"],
                },
            }
        )
    )

    kind: Literal["keyVault"]
    vault_url: HttpsUrl
    secret_name: KeyVaultSecretName | None = None
    # A secret the rotator did not create is left alone unless the operator says to adopt it.
    adopt_existing: bool = False
    # Let the rotator grant itself access to this vault when it may: "Key Vault Secrets Officer"
    # in an RBAC vault, an access policy (secrets get/list/set/recover) in an access-policy vault
    # (it needs the vault's resource id, and the right to assign roles or write access policies there).
    grant_access: bool = False
    vault_resource_id: KeyVaultResourceId | None = None


class KeyVaultPlugin:
    kind = "keyVault"
    settings_model = KeyVaultIntegration
    write_only: tuple[WriteOnlyField, ...] = ()
    troubleshooting: tuple[str, ...] = (
        "Key Vault: verify access policies or RBAC permissions: the rotator's managed identity needs "
        "'Key Vault Secrets Officer' on the vault (or a set/get access policy), and the vault's network "
        "rules must let it in.",
        "If the secret exists but was not created by the rotator, set adoptExisting or choose another name.",
    )

    def check(self, settings: Any, app: ApplicationConfig) -> list[FieldProblem]:
        if settings.grant_access and not settings.vault_resource_id:
            return [
                FieldProblem(
                    "vaultResourceId",
                    "is required when grantAccess is true (the role is assigned on it)",
                    "a Microsoft.KeyVault/vaults resource id",
                )
            ]
        return []

    def describe(self, settings: Any, app: ApplicationConfig) -> str:
        name = secret_name(settings, app)
        adopt = " (adopting it if it is not managed yet)" if settings.adopt_existing else ""
        return f"write a new version of secret '{name}' in {settings.vault_url}{adopt}"

    async def deploy(self, context: DeployContext) -> DeployOutcome:
        settings: KeyVaultIntegration = context.settings
        name = secret_name(settings, context.app)
        try:
            return await self._write(context, name)
        except ExternalServiceError as error:
            if error.status != 403:
                raise
            # Only a missing permission is a permission problem: never self-grant for the others.
            if error.code == "ForbiddenByFirewall":
                raise RotationError(
                    f"The firewall of {settings.vault_url} refuses the rotator (ForbiddenByFirewall): allow its "
                    "network (or its private endpoint), or trusted Microsoft services, on the vault",
                    step="deploy",
                    code="ForbiddenByFirewall",
                ) from None
            by_policy = error.code == "ForbiddenByPolicy"
            if by_policy and not (settings.grant_access and settings.vault_resource_id):
                raise RotationError(
                    f"{settings.vault_url} uses access policies and none lets the rotator's identity get, list and "
                    "set secrets (ForbiddenByPolicy): add an access policy with those secret permissions, or set "
                    "grantAccess and vaultResourceId to let the rotator add it where it may",
                    step="deploy",
                    code="ForbiddenByPolicy",
                ) from None
            if error.code not in (None, "Forbidden", "ForbiddenByRbac", "ForbiddenByPolicy"):
                raise RotationError(
                    f"{settings.vault_url} refused the rotator ({error.code}): {error.message}",
                    step="deploy",
                    code=error.code,
                ) from None
            if not (settings.grant_access and settings.vault_resource_id):
                raise RotationError(
                    f"Access denied to {settings.vault_url}: the rotator's identity needs the "
                    f"'{SECRETS_OFFICER_ROLE}' role on this vault (or secrets get/set in its access policy); "
                    "set grantAccess and vaultResourceId to let the rotator assign it where it may",
                    step="deploy",
                    code="KeyVaultForbidden",
                ) from None
        if by_policy:
            principal = await grant_access_policy(context.services, settings.vault_resource_id)
            grant = f"an access policy (secrets {', '.join(ACCESS_POLICY_SECRET_PERMISSIONS)})"
        else:
            principal = await grant_secrets_officer(context.services, settings.vault_resource_id)
            grant = f"'{SECRETS_OFFICER_ROLE}'"
        # Role assignments take a while to reach the vault: retry the write, then leave it to the engine.
        for delay in (0.0, *GRANT_PROPAGATION_WAITS):
            await context.services.sleep(delay)
            try:
                outcome = await self._write(context, name)
            except ExternalServiceError as error:
                if error.status == 403:
                    continue
                raise
            granted = f"granted {grant} on {settings.vault_resource_id} to the rotator's identity (principal {principal})"
            return DeployOutcome(outcome.summary, [granted, *outcome.warnings], outcome.details)
        raise TransientServiceError(
            f"Granted {grant} on {settings.vault_url}; waiting for it to take effect",
            service="keyvault",
        )

    async def _write(self, context: DeployContext, name: str) -> DeployOutcome:
        settings: KeyVaultIntegration = context.settings
        own = getattr(getattr(context.services, "settings", None), "vault_url", None)
        if own and same_vault(settings.vault_url, own):
            raise RotationError(
                "The rotator's own vault is never a destination (it holds staged secrets and credentials)",
                step="deploy",
                code="RotatorVaultNotADestination",
            )
        vault = context.services.vault(settings.vault_url)
        notes: list[str] = []
        try:
            latest = await vault.get(name)
            tags = latest.tags if latest is not None else None
        except ExternalServiceError as error:
            if error.code != "SecretDisabled":
                raise
            # The latest version is disabled (not a permission problem): a new version may still be
            # written, once its tags say whose it is.
            latest, tags = None, await vault.newest_tags(name)
            notes.append(
                f"the latest version of secret '{name}' was disabled; a new, enabled version was written"
            )
        if tags is not None:
            owner = tags.get("appId")
            if tags.get("managedBy") == MANAGED_BY and owner and owner.lower() != str(context.app.app_id):
                raise RotationError(
                    f"Secret '{name}' in {settings.vault_url} holds the secret of another application "
                    f"({owner}); choose another secretName",
                    step="deploy",
                    code="SecretOwnedByAnotherApplication",
                )
            if tags.get("managedBy") != MANAGED_BY and not settings.adopt_existing:
                raise RotationError(
                    f"Secret '{name}' in {settings.vault_url} is not managed by the rotator; "
                    "set adoptExisting to take it over",
                    step="deploy",
                    code="SecretNotManaged",
                )
            if latest is not None and tags.get("keyId") == context.key_id and latest.value == context.secret:
                return DeployOutcome(f"secret '{name}' already holds this key", details={"secretName": name})
        new_tags = {
            "managedBy": MANAGED_BY,
            "appId": str(context.app.app_id),
            "keyId": context.key_id,
            "rotationId": context.rotation_id,
        }
        try:
            version = await vault.set(
                name, context.secret, tags=new_tags, content_type=CONTENT_TYPE, expires_on=context.expires_at
            )
        except ExternalServiceError as error:
            if error.code != "ObjectIsDeletedButRecoverable":
                raise
            notes.append(await self._recover(context, vault, name))
            version = await vault.set(
                name, context.secret, tags=new_tags, content_type=CONTENT_TYPE, expires_on=context.expires_at
            )
        adopted = tags is not None and tags.get("managedBy") != MANAGED_BY
        warnings = [f"adopted secret '{name}', which the rotator did not create"] if adopted else []
        warnings += notes
        return DeployOutcome(
            f"wrote version {version} of secret '{name}'",
            warnings=warnings,
            details={"secretName": name, "version": version},
        )

    async def _recover(self, context: DeployContext, vault: Any, name: str) -> str:
        """A soft-deleted secret by this name: recover it if it is ours (and we may), else say what to do."""
        settings: KeyVaultIntegration = context.settings
        deleted = await vault.deleted_tags(name) or {}
        ours = deleted.get("managedBy") == MANAGED_BY and deleted.get("appId", "").lower() == str(
            context.app.app_id
        )
        advice = (
            f"Secret '{name}' in {settings.vault_url} is deleted but recoverable (soft-deleted): recover it, or "
            "purge it, so the rotator can write it"
        )
        if not (ours or settings.adopt_existing):
            raise RotationError(advice, step="deploy", code="SecretDeletedButRecoverable")
        try:
            await vault.recover(name)
        except ExternalServiceError as error:
            if error.status == 403:
                raise RotationError(
                    advice + " (the rotator may not recover it: it needs the secrets recover permission)",
                    step="deploy",
                    code="SecretDeletedButRecoverable",
                ) from None
            raise
        # Recovery completes asynchronously; a write before it is done is answered 409 again.
        for delay in (0.0, *GRANT_PROPAGATION_WAITS):
            await context.services.sleep(delay)
            if await vault.deleted_tags(name) is None:
                break
        return f"recovered soft-deleted secret '{name}' before writing the new version"

    async def verify(self, context: DeployContext) -> None:
        settings: KeyVaultIntegration = context.settings
        name = secret_name(settings, context.app)
        latest = await context.services.vault(settings.vault_url).get(name)
        if latest is None or latest.tags.get("keyId") != context.key_id or latest.value != context.secret:
            raise RotationError(
                f"Secret '{name}' does not hold the new key after writing it",
                step="verify",
                code="VerifyFailed",
            )


PLUGIN = KeyVaultPlugin()
