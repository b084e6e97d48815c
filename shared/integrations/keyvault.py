"""Azure Key Vault destination: the new secret as a new version of a secret the rotator manages.

Ownership: every version the rotator writes is tagged ``managedBy``. A secret that exists without
that tag belongs to someone else and is left alone unless the integration says ``adoptExisting``.
Writing is skipped when the latest version already holds this key (a retried deploy is a no-op).
"""

from __future__ import annotations

import re
from typing import Any

from shared.adapters.vault import MANAGED_BY
from shared.domain.models import ApplicationConfig, KeyVaultIntegration
from shared.errors import ExternalServiceError, FieldProblem, RotationError
from shared.integrations.base import DeployContext, DeployOutcome

CONTENT_TYPE = "application/x-entra-client-secret"
SECRETS_OFFICER_ROLE = "Key Vault Secrets Officer"


def default_secret_name(display_name: str) -> str:
    """The application's name made valid for Key Vault: letters, digits and '-', at most 127."""
    name = re.sub(r"[^0-9A-Za-z-]+", "-", display_name).strip("-")
    return re.sub(r"-{2,}", "-", name)[:127] or "client-secret"


def secret_name(settings: KeyVaultIntegration, app: ApplicationConfig) -> str:
    return settings.secret_name or default_secret_name(app.display_name)


class KeyVaultPlugin:
    kind = "keyVault"

    def check(self, settings: Any, app: ApplicationConfig) -> list[FieldProblem]:
        return []

    def describe(self, settings: Any, app: ApplicationConfig) -> str:
        name = secret_name(settings, app)
        adopt = " (adopting it if it is not managed yet)" if settings.adopt_existing else ""
        return f"write a new version of secret '{name}' in {settings.vault_url}{adopt}"

    async def deploy(self, context: DeployContext) -> DeployOutcome:
        settings: KeyVaultIntegration = context.settings
        name = secret_name(settings, context.app)
        vault = context.services.vault(settings.vault_url)
        try:
            latest = await vault.get(name)
            if latest is not None:
                if latest.tags.get("managedBy") != MANAGED_BY and not settings.adopt_existing:
                    raise RotationError(
                        f"Secret '{name}' in {settings.vault_url} is not managed by the rotator; "
                        "set adoptExisting to take it over",
                        step="deploy",
                        code="SecretNotManaged",
                    )
                if latest.tags.get("keyId") == context.key_id and latest.value == context.secret:
                    return DeployOutcome(
                        f"secret '{name}' already holds this key", details={"secretName": name}
                    )
            version = await vault.set(
                name,
                context.secret,
                tags={
                    "managedBy": MANAGED_BY,
                    "appId": str(context.app.app_id),
                    "keyId": context.key_id,
                    "rotationId": context.rotation_id,
                },
                content_type=CONTENT_TYPE,
                expires_on=context.expires_at,
            )
        except ExternalServiceError as error:
            if error.status == 403:
                raise RotationError(
                    f"Access denied to {settings.vault_url}: the rotator's identity needs the "
                    f"'{SECRETS_OFFICER_ROLE}' role on this vault (or secrets get/set in its access policy)",
                    step="deploy",
                    code="KeyVaultForbidden",
                ) from None
            raise
        adopted = latest is not None and latest.tags.get("managedBy") != MANAGED_BY
        warnings = [f"adopted secret '{name}', which the rotator did not create"] if adopted else []
        return DeployOutcome(
            f"wrote version {version} of secret '{name}'",
            warnings=warnings,
            details={"secretName": name, "version": version},
        )

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
