"""App Service / Function App consumers of the secret: an app setting, or a Key Vault reference.

``appSetting`` mode: the secret is the value of one app setting of a site (or slot).
``POST {site}/config/appsettings/list`` reads them all; ``PUT {site}/config/appsettings`` *replaces the
whole set*, so every other setting is sent back untouched with the new value (a setting name is matched
case-insensitively and keeps its spelling). A setting that holds a ``@Microsoft.KeyVault(...)`` reference
is never overwritten with a plain value: that mode is ``keyVaultReference``.

``keyVaultReference`` mode: the site reads the secret from Key Vault through a reference, which App
Service caches and refetches only every 24 hours. Deploy asks for an immediate refetch with the documented
``POST {site}/config/configreferences/appsettings/refresh`` (learn.microsoft.com, "Use Key Vault references
as app settings", section *Understand rotation*). Verify reads
``GET {site}/config/configreferences/appsettings/{name}``: the status must be ``Resolved``, and when the
reference's ``activeVersion`` is reported it must be the referenced secret's newest version, which must
hold the new key (so a keyVault integration that delivers the secret belongs before this one). A reference
pinned to one version can never pick up a rotated secret and is refused.

``restart`` additionally restarts the site (``POST {site}/restart``) after the update. Any configuration
change restarts the app anyway, per the same document; an explicit restart also reloads in-memory state.
The rotator's identity needs **Website Contributor** on the site.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from shared.adapters.arm import ArmClient, ArmTarget, obj
from shared.domain.fields import AppSettingName, IntegrationBase, SiteResourceId, schema_rules
from shared.errors import (
    ExternalServiceError,
    FieldProblem,
    NotFoundError,
    RotationError,
    TransientServiceError,
)
from shared.integrations.base import DeployContext, DeployOutcome, WriteOnlyField

if TYPE_CHECKING:
    from shared.domain.models import ApplicationConfig

logger = logging.getLogger("rotator.integrations.appservice")

API_VERSION = "2024-04-01"
WEBSITE_CONTRIBUTOR = "Website Contributor"
KEY_VAULT_REFERENCE = "@microsoft.keyvault("
RESOLVED = "resolved"
# Statuses that may still change on their own shortly after a refresh.
PENDING_STATUSES = {"", "initialized", "fetchtimedout"}


@dataclass(frozen=True)
class KeyVaultReference:
    """A parsed ``@Microsoft.KeyVault(SecretUri=...)`` or ``(VaultName=...;SecretName=...)`` reference."""

    vault_url: str | None
    vault_name: str | None
    secret_name: str
    version: str | None


def is_key_vault_reference(value: str | None) -> bool:
    return bool(value) and str(value).strip().lower().startswith(KEY_VAULT_REFERENCE)


def parse_reference(value: str) -> KeyVaultReference | None:
    text = value.strip()
    if not is_key_vault_reference(text) or not text.endswith(")"):
        return None
    fields: dict[str, str] = {}
    for part in text[len(KEY_VAULT_REFERENCE) : -1].split(";"):
        key, sep, item = part.partition("=")
        if sep:
            fields[key.strip().lower()] = item.strip()
    if "secreturi" in fields:
        parsed = urlsplit(fields["secreturi"])
        segments = [s for s in parsed.path.split("/") if s]
        if len(segments) < 2 or segments[0].lower() != "secrets" or not parsed.netloc:
            return None
        return KeyVaultReference(
            f"{parsed.scheme}://{parsed.netloc}",
            None,
            segments[1],
            segments[2] if len(segments) > 2 else None,
        )
    if fields.get("vaultname") and fields.get("secretname"):
        return KeyVaultReference(
            None, fields["vaultname"], fields["secretname"], fields.get("secretversion") or None
        )
    return None


def site_label(resource_id: str) -> str:
    parts = resource_id.rstrip("/").split("/")
    lowered = [p.lower() for p in parts]
    site = parts[lowered.index("sites") + 1] if "sites" in lowered else parts[-1]
    if "slots" in lowered:
        return f"slot '{parts[lowered.index('slots') + 1]}' of site '{site}'"
    return f"site '{site}'"


def _find_key(settings: dict[str, str], name: str) -> str | None:
    if name in settings:
        return name
    return next((key for key in settings if key.lower() == name.lower()), None)


def _same(stored: str | None, secret: Any) -> bool:
    if stored is None:
        return False
    return hmac.compare_digest(stored.encode("utf-8"), secret.reveal().encode("utf-8"))


class AppServiceIntegration(IntegrationBase):
    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            **{
                "if": {
                    "anyOf": [
                        {"not": {"required": ["mode"]}},
                        {"properties": {"mode": {"const": "appSetting"}}, "required": ["mode"]},
                    ]
                },
                "then": {"properties": {"settingName": {"type": "string"}}, "required": ["settingName"]},
            }
        )
    )

    kind: Literal["appService"]
    resource_id: SiteResourceId
    mode: Literal["appSetting", "keyVaultReference"] = "appSetting"
    setting_name: AppSettingName | None = None
    restart: bool = False

    @model_validator(mode="after")
    def _setting_name_for_app_setting(self) -> AppServiceIntegration:
        if self.mode == "appSetting" and not self.setting_name:
            raise PydanticCustomError(
                "required",
                "settingName is required when mode is appSetting",
                {"field": "settingName", "allowed": "an app setting name"},
            )
        return self


class AppServicePlugin:
    kind = "appService"
    settings_model = AppServiceIntegration
    write_only: tuple[WriteOnlyField, ...] = ()
    troubleshooting: tuple[str, ...] = (
        "App Service: check that the site (or slot) still exists, that the rotator's identity has "
        "'Website Contributor' on it, and that the setting name is right.",
        "For a Key Vault reference, the app's own identity must be able to read the secret; the portal "
        "shows the reference status under Environment variables.",
    )

    def __init__(self, *, lro_timeout: float = 120.0) -> None:
        self._lro_timeout = lro_timeout

    def check(self, settings: Any, app: ApplicationConfig) -> list[FieldProblem]:
        return []

    def describe(self, settings: Any, app: ApplicationConfig) -> str:
        label = site_label(settings.resource_id)
        restart = " and restart it" if settings.restart else ""
        if settings.mode == "appSetting":
            return f"set app setting '{settings.setting_name}' of {label}{restart}"
        which = f"'{settings.setting_name}'" if settings.setting_name else "all Key Vault references"
        return (
            f"refresh {which} of {label} so it reads the new secret now{restart} "
            "(deliver the secret to the referenced vault first)"
        )

    def _target(self, settings: AppServiceIntegration, step: str = "deploy") -> ArmTarget:
        return ArmTarget(settings.resource_id, site_label(settings.resource_id), WEBSITE_CONTRIBUTOR, step)

    async def _list_settings(
        self, client: ArmClient, settings: AppServiceIntegration, target: ArmTarget
    ) -> dict[str, str]:
        payload = await client.json(
            "POST",
            f"{settings.resource_id}/config/appsettings/list",
            API_VERSION,
            target,
            action="list app settings of",
        )
        properties = payload.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {str(key): "" if value is None else str(value) for key, value in properties.items()}

    # ----------------------------------------------------------------- deploy

    async def deploy(self, context: DeployContext) -> DeployOutcome:
        settings: AppServiceIntegration = context.settings
        client = ArmClient(context.services, redact=context.secret, lro_timeout=self._lro_timeout)
        target = self._target(settings)
        if settings.mode == "appSetting":
            outcome = await self._deploy_setting(client, settings, target, context)
        else:
            outcome = await self._deploy_reference(client, settings, target)
        if settings.restart:
            await client.request(
                "POST", f"{settings.resource_id}/restart", API_VERSION, target, action="restart"
            )
            outcome.details["restarted"] = True
        return outcome

    async def _deploy_setting(
        self, client: ArmClient, settings: AppServiceIntegration, target: ArmTarget, context: DeployContext
    ) -> DeployOutcome:
        assert settings.setting_name is not None  # the model requires it in this mode
        current = await self._list_settings(client, settings, target)
        key = _find_key(current, settings.setting_name) or settings.setting_name
        existing = current.get(key)
        label = site_label(settings.resource_id)
        if is_key_vault_reference(existing):
            raise RotationError(
                f"App setting '{key}' of {label} is a Key Vault reference; it was left unchanged "
                "(use mode keyVaultReference and deliver the secret to the referenced vault)",
                step="deploy",
                code="SettingIsKeyVaultReference",
            )
        details: dict[str, Any] = {"site": label, "setting": key, "mode": "appSetting"}
        if _same(existing, context.secret):
            return DeployOutcome(f"app setting '{key}' of {label} already holds this key", details=details)
        # The PUT replaces the whole set: send every other setting back untouched.
        payload = {**current, key: context.secret.reveal()}
        response = await client.request(
            "PUT",
            f"{settings.resource_id}/config/appsettings",
            API_VERSION,
            target,
            action="update app settings of",
            body={"properties": payload},
        )
        await client.wait(response, target, action="update app settings of")
        verb = "replaced" if existing is not None else "added"
        return DeployOutcome(
            f"{verb} app setting '{key}' of {label} ({len(current) - (existing is not None)} other settings kept)",
            details=details,
        )

    async def _deploy_reference(
        self, client: ArmClient, settings: AppServiceIntegration, target: ArmTarget
    ) -> DeployOutcome:
        label = site_label(settings.resource_id)
        details: dict[str, Any] = {"site": label, "mode": "keyVaultReference"}
        if settings.setting_name:
            current = await self._list_settings(client, settings, target)
            key = _find_key(current, settings.setting_name)
            if key is None:
                raise RotationError(
                    f"{label} has no app setting '{settings.setting_name}'",
                    step="deploy",
                    code="SettingNotFound",
                )
            reference = parse_reference(current[key]) if is_key_vault_reference(current[key]) else None
            if reference is None:
                raise RotationError(
                    f"App setting '{key}' of {label} is not a Key Vault reference "
                    "(use mode appSetting to write the value itself)",
                    step="deploy",
                    code="SettingNotKeyVaultReference",
                )
            if reference.version:
                raise RotationError(
                    f"App setting '{key}' of {label} references one fixed version of secret "
                    f"'{reference.secret_name}', so it can never pick up a rotated secret; "
                    "remove the version from the reference",
                    step="deploy",
                    code="ReferencePinsVersion",
                )
            details.update({"setting": key, "secretName": reference.secret_name})
        await client.request(
            "POST",
            f"{settings.resource_id}/config/configreferences/appsettings/refresh",
            API_VERSION,
            target,
            action="refresh Key Vault references of",
        )
        which = f"reference '{details['setting']}'" if "setting" in details else "Key Vault references"
        return DeployOutcome(f"asked {label} to refetch its {which} now", details=details)

    # ----------------------------------------------------------------- verify

    async def verify(self, context: DeployContext) -> None:
        settings: AppServiceIntegration = context.settings
        client = ArmClient(context.services, redact=context.secret)
        target = self._target(settings, "verify")
        label = site_label(settings.resource_id)
        if settings.mode == "appSetting":
            assert settings.setting_name is not None
            current = await self._list_settings(client, settings, target)
            key = _find_key(current, settings.setting_name)
            if key is None or not _same(current.get(key), context.secret):
                raise RotationError(
                    f"App setting '{settings.setting_name}' of {label} does not hold the new secret after "
                    "writing it",
                    step="verify",
                    code="VerifyFailed",
                )
            return
        base = f"{settings.resource_id}/config/configreferences/appsettings"
        if settings.setting_name:
            item = await client.json(
                "GET",
                f"{base}/{settings.setting_name}",
                API_VERSION,
                target,
                action="read the Key Vault reference of",
            )
            items = [item]
        else:
            listing = await client.json(
                "GET", base, API_VERSION, target, action="list Key Vault references of"
            )
            items = [i for i in listing.get("value", []) if isinstance(i, dict)]
        for item in items:
            self._check_resolved(item, label, client)
        if settings.setting_name:
            await self._check_active_version(items[0], settings.setting_name, label, context)

    @staticmethod
    def _check_resolved(item: dict[str, Any], label: str, client: ArmClient) -> None:
        properties = obj(item.get("properties"))
        name = str(item.get("name") or "").rsplit("/", 1)[-1] or "?"
        status = str(properties.get("status") or "")
        if status.lower() == RESOLVED:
            return
        details = client.scrub(str(properties.get("details") or ""))
        message = f"Key Vault reference '{name}' of {label} is {status or 'not resolved'}" + (
            f": {details}" if details else ""
        )
        if status.lower() in PENDING_STATUSES:
            raise TransientServiceError(message, service="appservice", code=status or None)
        raise RotationError(message, step="verify", code=f"KeyVaultReference{status}")

    async def _check_active_version(
        self, item: dict[str, Any], setting: str, label: str, context: DeployContext
    ) -> None:
        """The site resolves the newest version, and that version holds the new key."""
        properties = obj(item.get("properties"))
        active = properties.get("activeVersion")
        reference = parse_reference(str(properties.get("reference") or ""))
        secret_name = properties.get("secretName") or (reference.secret_name if reference else None)
        vault_url = reference.vault_url if reference else None
        vault_name = properties.get("vaultName") or (reference.vault_name if reference else None)
        if vault_url is None and vault_name:
            vault_url = _vault_url_for(str(vault_name), context.services.settings.vault_url)
        if not active or not secret_name or not vault_url:
            return  # nothing to compare with: the Resolved status is all there is
        try:
            latest = await context.services.vault(vault_url).get(str(secret_name))
        except (ExternalServiceError, NotFoundError) as error:
            logger.info("cannot read the referenced secret to compare versions: %s", type(error).__name__)
            return
        if latest is None:
            return
        if latest.tags.get("keyId") != context.key_id and latest.value != context.secret:
            raise RotationError(
                f"Key Vault reference '{setting}' of {label} points at secret '{secret_name}', which does not "
                "hold the new key; deliver it there first (list the keyVault integration before this one)",
                step="verify",
                code="ReferencedSecretNotUpdated",
            )
        if str(active).lower() != latest.version.lower():
            raise TransientServiceError(
                f"{label} still resolves an older version of secret '{secret_name}'",
                service="appservice",
                code="ReferenceNotRefreshed",
            )


def _vault_url_for(vault_name: str, rotator_vault_url: str) -> str | None:
    # VaultName= references: the vault DNS suffix of this cloud, taken from the rotator's own vault.
    host = urlsplit(rotator_vault_url).hostname or ""
    _, dot, suffix = host.partition(".")
    if not dot or not suffix.startswith("vault."):
        return None
    return f"https://{vault_name}.{suffix}"


PLUGIN = AppServicePlugin()
