"""The domain: an application registration, its rotation settings, status, log entries and jobs.

JSON on the wire is camelCase (what the portal sends); Python attributes are snake_case. Input is
validated strictly (no "21" for 21, no unknown fields) so a typo is a clear 400, not a silent default.
Ranges follow the product documentation: secret lifetime 1–90 days, update threshold 1–23 hours.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

LIFETIME_DAYS = (1, 90)
THRESHOLD_HOURS = (1, 23)
THRESHOLD_ALERT_DAYS = (1, 30)
MAX_RECIPIENTS = 20
MAX_INTEGRATIONS = 20


def rfc3339(moment: datetime) -> str:
    """One timestamp format for every answer: RFC 3339 in UTC with ``Z`` (as pydantic writes them)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True, eq=False)
class Checked(BeforeValidator):
    """A validator that also states its constraint in the JSON schema (so the OpenAPI document,
    generated from these models, says what the API accepts: ranges, patterns, lengths)."""

    json_schema: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> Any:
        generated = handler(schema)
        generated.update(self.json_schema)
        return generated


def int_range(low: int, high: int, unit: str) -> BeforeValidator:
    """An int check whose every error (wrong type or out of range) states the allowed range."""

    allowed = f"{low} to {high} {unit}"

    def check(value: object) -> int:
        # JSON has one number type: 21.0 is the whole number 21 (JSON Schema's "integer" says so
        # too), while "21", true and 21.5 are not.
        if type(value) is float and value.is_integer():
            value = int(value)
        if type(value) is not int or not low <= value <= high:
            raise PydanticCustomError("range", "must be a whole number from {allowed}", {"allowed": allowed})
        return value

    return Checked(check, json_schema={"type": "integer", "minimum": low, "maximum": high})


def matches(
    pattern: str, description: str, *, max_length: int | None = None, json_pattern: str | None = None
) -> BeforeValidator:
    """A string check for ``pattern``; the error says what is allowed, not what was sent.

    ``json_pattern``: the pattern for the JSON schema when ``pattern`` uses what JSON-schema tools
    do not support (look-aheads); ``max_length`` then states the bound the look-ahead enforced.
    """

    compiled = re.compile(pattern)

    def check(value: object) -> str:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise PydanticCustomError("pattern", "must be {allowed}", {"allowed": description})
        return value

    schema: dict[str, Any] = {
        "pattern": f"^(?:{json_pattern or pattern})$",
        "description": f"Must be {description}.",
    }
    if max_length is not None:
        schema["maxLength"] = max_length
    return Checked(check, json_schema=schema)


def schema_rules(**extra: Any) -> Any:
    """``json_schema_extra`` that adds cross-field rules (``if``/``then``/``else``) to a model's JSON
    schema and merges ``properties`` into the generated ones, so the OpenAPI document states what
    the model validators enforce."""

    def apply(schema: dict[str, Any]) -> None:
        for key, value in extra.items():
            if key == "properties":
                for name, override in value.items():
                    schema.setdefault("properties", {}).setdefault(name, {}).update(override)
            else:
                schema[key] = value

    return apply


class Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,
        frozen=True,
    )

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class StatusModel(Model):
    """What the rotator itself records. Fields a newer version added are ignored when read, so
    instances of two versions can share the table during a deployment."""

    model_config = ConfigDict(extra="ignore")


# Patterns use explicit classes, not \s or \w, which mean different things in Python and in the
# ECMA dialect of JSON Schema: what the OpenAPI document says is exactly what is accepted.
_SUB = r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[-A-Za-z0-9_.()]{1,90}/providers/"

LifetimeDays = Annotated[int, int_range(*LIFETIME_DAYS, "days")]
ThresholdHours = Annotated[int, int_range(*THRESHOLD_HOURS, "hours")]
AlertDays = Annotated[int, int_range(*THRESHOLD_ALERT_DAYS, "days")]
DisplayName = Annotated[
    str, matches(r"[^\x00-\x1f]{1,256}", "1 to 256 characters without control characters")
]
IntegrationName = Annotated[
    str, matches(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", "1 to 64 letters, digits, '.', '_' or '-'")
]
EmailAddress = Annotated[
    str,
    matches(
        r"(?=.{3,254}$)[^@\x00-\x20\x7f-\x9f\u2028\u2029<>\"',;]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+",
        "an email address of at most 254 characters, such as ops@contoso.com",
        max_length=254,
        json_pattern=r"[^@\x00-\x20\x7f-\x9f\u2028\u2029<>\"',;]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+",
    ),
]
GroupId = Annotated[str, matches(r"[a-z0-9][a-z0-9-]{0,62}", "1 to 63 lowercase letters, digits or '-'")]
KeyVaultSecretName = Annotated[str, matches(r"[0-9a-zA-Z-]{1,127}", "1 to 127 letters, digits or '-'")]
HttpsUrl = Annotated[
    str,
    matches(
        r"(?=.{1,2048}$)https://[^\x00-\x20\x7f-\x9f\u2028\u2029/?#]{1,253}(/[^\x00-\x20\x7f-\x9f\u2028\u2029?#]*)?",
        "an https:// URL of at most 2048 characters",
        max_length=2048,
        json_pattern=r"https://[^\x00-\x20\x7f-\x9f\u2028\u2029/?#]{1,253}(/[^\x00-\x20\x7f-\x9f\u2028\u2029?#]*)?",
    ),
]
DevOpsOrganization = Annotated[
    str, matches(r"[A-Za-z0-9][A-Za-z0-9-]{0,49}", "an Azure DevOps organization name")
]
DevOpsProject = Annotated[str, matches(r"[^\x00-\x1f/\\]{1,64}", "a project name of 1 to 64 characters")]
VercelProject = Annotated[str, matches(r"[A-Za-z0-9._-]{1,100}", "a Vercel project id or name")]
EnvVarName = Annotated[str, matches(r"[A-Za-z_][A-Za-z0-9_]{0,255}", "an environment variable name")]
GitBranch = Annotated[str, matches(r"[^\x00-\x20\x7f-\x9f\u2028\u2029]{1,250}", "a git branch name")]
ConnectionResourceId = Annotated[
    str,
    matches(
        _SUB + r"Microsoft\.Web/connections/[-A-Za-z0-9_.]{1,80}", "a Microsoft.Web/connections resource id"
    ),
]
SiteResourceId = Annotated[
    str,
    matches(
        _SUB + r"Microsoft\.Web/sites/[-A-Za-z0-9_]{1,60}(/slots/[-A-Za-z0-9_]{1,59})?",
        "a Microsoft.Web/sites resource id (optionally /slots/<slot>)",
    ),
]
AppSettingName = Annotated[str, matches(r"[A-Za-z0-9_.:-]{1,256}", "an app setting name")]
AutomationAccountId = Annotated[
    str,
    matches(
        _SUB + r"Microsoft\.Automation/automationAccounts/[-A-Za-z0-9_]{1,50}",
        "a Microsoft.Automation/automationAccounts resource id",
    ),
]
KeyVaultResourceId = Annotated[
    str,
    matches(
        _SUB + r"Microsoft\.KeyVault/vaults/[-A-Za-z0-9_]{3,24}", "a Microsoft.KeyVault/vaults resource id"
    ),
]
RunbookName = Annotated[str, matches(r"[A-Za-z][-A-Za-z0-9_]{0,62}", "a runbook name")]
ParameterName = Annotated[str, matches(r"[A-Za-z_][A-Za-z0-9_]{0,127}", "a parameter name")]


class ApplicationState(StrEnum):
    ACTIVE = "Active"
    DISABLED = "Disabled"


class RotationSettings(Model):
    enabled: bool = False
    secret_lifetime_days: LifetimeDays = 21
    update_threshold_hours: ThresholdHours = 1
    # Credentials the rotator did not create are never removed unless the operator opts in here.
    retire_unmanaged_credentials: bool = False
    # A secret starting with '-' is read as an option by many command-line consumers: re-create it
    # before delivery (otherwise it is delivered, with a warning in the log).
    recreate_leading_dash_secrets: bool = False


class NotificationSettings(Model):
    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            **{
                "if": {
                    "properties": {"includeSecretInEmail": {"const": True}},
                    "required": ["includeSecretInEmail"],
                },
                "then": {
                    "properties": {"acknowledgeSecretInEmailRisk": {"const": True}},
                    "required": ["acknowledgeSecretInEmailRisk"],
                },
            }
        )
    )

    recipients: Annotated[list[EmailAddress], Field(max_length=MAX_RECIPIENTS)] = []
    notify_on_rotation: bool = True
    notify_on_failure: bool = True
    threshold_alert_days: AlertDays | None = None
    include_secret_in_email: bool = False
    # Email is not end-to-end encrypted: sending the secret needs this explicit acknowledgement.
    acknowledge_secret_in_email_risk: bool = False

    @model_validator(mode="after")
    def _secret_in_email_needs_acknowledgement(self) -> NotificationSettings:
        if self.include_secret_in_email and not self.acknowledge_secret_in_email_risk:
            raise PydanticCustomError(
                "acknowledgement",
                "includeSecretInEmail needs acknowledgeSecretInEmailRisk set to true",
                {
                    "field": "acknowledgeSecretInEmailRisk",
                    "allowed": "true when includeSecretInEmail is true",
                },
            )
        return self


class IntegrationBase(Model):
    name: IntegrationName | None = None
    enabled: bool = True


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
    # Let the rotator grant itself "Key Vault Secrets Officer" on this vault when it may
    # (it needs the vault's resource id for that, and a role-assignment right on it).
    grant_access: bool = False
    vault_resource_id: KeyVaultResourceId | None = None


class AzureDevOpsIntegration(IntegrationBase):
    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            **{
                "if": {"properties": {"authentication": {"const": "pat"}}, "required": ["authentication"]},
                "then": {"required": ["personalAccessToken"]},
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


class VercelIntegration(IntegrationBase):
    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            **{
                "properties": {"targets": {"uniqueItems": True}},
                "if": {"properties": {"gitBranch": {"type": "string"}}, "required": ["gitBranch"]},
                "then": {"properties": {"targets": {"const": ["preview"]}}},
            }
        )
    )

    kind: Literal["vercel"]
    project_id: VercelProject
    env_var_name: EnvVarName
    targets: Annotated[
        list[Literal["production", "preview", "development"]], Field(min_length=1, max_length=3)
    ]
    git_branch: GitBranch | None = None
    redeploy: bool = False

    @model_validator(mode="after")
    def _targets_unique(self) -> VercelIntegration:
        if len(set(self.targets)) != len(self.targets):
            raise PydanticCustomError(
                "unique",
                "targets must not repeat",
                {"field": "targets", "allowed": "production, preview, development"},
            )
        if self.git_branch is not None and self.targets != ["preview"]:
            raise PydanticCustomError(
                "git_branch",
                "gitBranch needs targets ['preview']",
                {"field": "gitBranch", "allowed": "targets: ['preview']"},
            )
        return self


class LogicAppConnectionIntegration(IntegrationBase):
    kind: Literal["logicAppConnection"]
    resource_id: ConnectionResourceId


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


class AutomationIntegration(IntegrationBase):
    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            **{
                "if": {"properties": {"target": {"const": "runbook"}}, "required": ["target"]},
                "then": {
                    "properties": {
                        "automationAccountId": {"type": "string"},
                        "runbookName": {"type": "string"},
                    },
                    "required": ["automationAccountId", "runbookName"],
                },
                "else": {"required": ["webhookUrl"]},
            }
        )
    )

    kind: Literal["automation"]
    target: Literal["runbook", "webhook"]
    automation_account_id: AutomationAccountId | None = None
    runbook_name: RunbookName | None = None
    parameter_name: ParameterName = "ClientSecret"
    # Name of the webhook URL's secret in the rotator's own vault (the URL itself is a secret).
    webhook_secret_name: KeyVaultSecretName | None = None

    @model_validator(mode="after")
    def _target_fields(self) -> AutomationIntegration:
        if self.target == "runbook" and not (self.automation_account_id and self.runbook_name):
            raise PydanticCustomError(
                "required",
                "a runbook target needs automationAccountId and runbookName",
                {"field": "runbookName", "allowed": "automationAccountId and runbookName"},
            )
        return self


Integration = Annotated[
    KeyVaultIntegration
    | AzureDevOpsIntegration
    | VercelIntegration
    | LogicAppConnectionIntegration
    | AppServiceIntegration
    | AutomationIntegration,
    Field(discriminator="kind"),
]
INTEGRATION_KINDS = (
    "keyVault",
    "azureDevOps",
    "vercel",
    "logicAppConnection",
    "appService",
    "automation",
)


class ApplicationConfig(Model):
    """What the operator registers: the Entra application and how its secret rotates."""

    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            **{
                "if": {
                    "properties": {
                        "integrations": {"contains": {"properties": {"kind": {"const": "vercel"}}}}
                    },
                    "required": ["integrations"],
                },
                "then": {"properties": {"groupId": {"type": "string"}}, "required": ["groupId"]},
            }
        )
    )

    app_id: UUID
    object_id: UUID
    display_name: DisplayName
    state: ApplicationState = ApplicationState.ACTIVE
    group_id: GroupId | None = None
    rotation: RotationSettings = RotationSettings()
    notifications: NotificationSettings = NotificationSettings()
    integrations: Annotated[list[Integration], Field(max_length=MAX_INTEGRATIONS)] = []

    @model_validator(mode="before")
    @classmethod
    def _name_integrations(cls, data: Any) -> Any:
        # Each integration gets a stable name (its results are recorded under it): default kind-N.
        if isinstance(data, dict) and isinstance(data.get("integrations"), list):
            named = []
            for index, item in enumerate(data["integrations"], start=1):
                if isinstance(item, dict) and not item.get("name") and isinstance(item.get("kind"), str):
                    item = {**item, "name": f"{item['kind']}-{index}"}
                named.append(item)
            data = {**data, "integrations": named}
        return data

    @model_validator(mode="after")
    def _integration_names_unique(self) -> ApplicationConfig:
        names = [integration.name for integration in self.integrations]
        if len(set(names)) != len(names):
            raise PydanticCustomError(
                "unique",
                "integration names must be unique",
                {"field": "integrations", "allowed": "distinct names"},
            )
        if any(isinstance(i, VercelIntegration) for i in self.integrations) and not self.group_id:
            raise PydanticCustomError(
                "group",
                "a vercel integration needs the application's groupId",
                {"field": "groupId", "allowed": "a group id"},
            )
        return self

    @property
    def is_schedulable(self) -> bool:
        return self.rotation.enabled and self.state == ApplicationState.ACTIVE


class RotationResult(StrEnum):
    NEVER = "never"
    SUCCEEDED = "succeeded"
    DEGRADED = "degraded"  # the secret rotated but at least one integration has not received it yet
    FAILED = "failed"


class ErrorInfo(StatusModel):
    code: str
    message: str
    step: str | None = None
    at: datetime


class JobReason(StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"
    RETRY = "retry"


class RotationStep(StrEnum):
    """Where a claimed rotation stands, persisted with the claim so any worker can resume it.

    The order is the protocol's; every step's handler checks its own precondition and is safe to
    run again. From ``DELIVERING`` on the rotation only moves forward: a destination may already
    hold the new secret, so nothing removes the new credential any more.
    """

    CLAIMED = "claimed"  # lease taken; no credential yet
    CREATED = "created"  # addPassword answered; keyId recorded, secret not yet staged
    STAGED = "staged"  # secret in the rotator's vault; its version id recorded
    VERIFIED = "verified"  # Entra issues tokens for the new secret
    DELIVERING = "delivering"  # destinations are being written (forward only from here)
    DELIVERED = "delivered"  # every destination attempted; the new credential is current
    RETIRED = "retired"  # revocation (compromised) and superseded credentials handled
    NOTIFYING = "notifying"  # the notice is recorded as sent before sending: at most once
    MAINTENANCE = "maintenance"  # not a rotation: retry destinations, revoke, retire, clean up


STEP_ORDER = tuple(RotationStep)


def step_index(step: RotationStep) -> int:
    return STEP_ORDER.index(step)


def is_forward_only(step: RotationStep) -> bool:
    """Whether a destination may already hold this rotation's secret (then nothing rolls back)."""
    return step_index(RotationStep.DELIVERING) <= step_index(step) < step_index(RotationStep.MAINTENANCE)


class RotationOutcome(StrEnum):
    """How a rotation id ends. Every rotation id the API returns ends with exactly one of these."""

    SUCCEEDED = "succeeded"  # every destination holds the new secret
    DEGRADED = "degraded"  # the new secret is current; a destination or a clean-up is retried
    FAILED = "failed"  # no new secret; the previous one is untouched
    MERGED = "merged"  # the request joined another rotation (named in the log entry)
    SUPERSEDED = "superseded"  # a newer rotation happened first; this one never touched anything


class RotationClaim(StatusModel):
    rotation_id: str
    # Which invocation holds the claim; a takeover changes it, so a slow old worker's writes fail.
    owner: str
    claimed_at: datetime
    expires_at: datetime
    step: RotationStep = RotationStep.CLAIMED
    compromised: bool = False
    # Revoke credentials the rotator did not create too (only on the caller's explicit request).
    revoke_unmanaged: bool = False
    generation: int = 0
    # Set as the protocol goes: the new credential, its staged version, addPassword attempts.
    key_id: str | None = None
    key_hint: str | None = None
    staged_version: str | None = None
    create_attempts: int = 0
    notified: bool = False
    warnings: list[str] = []


class PendingRotation(StatusModel):
    """A rotation that is queued but not yet claimed; later requests join it instead of queueing."""

    rotation_id: str
    requested_at: datetime
    reason: JobReason
    compromised: bool = False
    revoke_unmanaged: bool = False


class PendingRevocation(StatusModel):
    """Compromised mode waits for every destination to confirm the new secret before revoking."""

    rotation_id: str
    key_id: str
    revoke_unmanaged: bool = False


class IntegrationStatus(StatusModel):
    result: Literal["succeeded", "failed", "pending"]
    at: datetime
    key_id: str | None = None
    error: ErrorInfo | None = None
    # The newest credential this destination confirmed holding, and credentials sent to it since
    # without confirmation (it may hold any of them): none of these may be removed.
    confirmed_key_id: str | None = None
    unconfirmed_key_ids: list[str] = []

    def key_ids_in_use(self) -> set[str]:
        return {k for k in (self.confirmed_key_id, *self.unconfirmed_key_ids) if k}


class ApplicationStatus(StatusModel):
    """What the rotator records about an application; only the engine writes it."""

    current_key_id: str | None = None
    last_updated_at: datetime | None = None
    expires_at: datetime | None = None
    next_update_at: datetime | None = None
    last_result: RotationResult = RotationResult.NEVER
    last_error: ErrorInfo | None = None
    last_rotation_id: str | None = None
    in_progress: RotationClaim | None = None
    # A job for this app is on the queue since then (so the timer does not enqueue it again).
    enqueued_at: datetime | None = None
    integrations: dict[str, IntegrationStatus] = {}
    # When failed integrations should be tried again from the staged secret.
    retry_at: datetime | None = None
    # When the credential this rotation superseded expires, to be removed then.
    retire_at: datetime | None = None
    threshold_alert_sent_for: str | None = None
    # Rotations claimed so far: a job queued before the latest one started can never roll back.
    generation: int = 0
    # The current credential's rotation and staged version (read by version id, never listed), and
    # the credential it superseded (kept live until it expires) with its rotation.
    current_rotation_id: str | None = None
    current_version: str | None = None
    previous_key_id: str | None = None
    previous_rotation_id: str | None = None
    pending: PendingRotation | None = None
    pending_revocation: PendingRevocation | None = None
    # Credentials this rotator created that must go (failed rotations); removal is retried.
    cleanup_key_ids: list[str] = []
    # The last rotation ids that ended (a re-delivered job for one of them is acknowledged).
    recent_rotation_ids: list[str] = []
    # Failed rotations in a row: scheduled retries back off (``shared.domain.schedule``).
    consecutive_failures: int = 0
    # When the last failure alert went out (the same failure is alerted again only after a day).
    failure_alerted_at: datetime | None = None


class LogLevel(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class RotationLogEntry(Model):
    at: datetime
    app_id: str
    rotation_id: str | None
    event: str
    level: LogLevel
    message: str
    step: str | None = None
    integration: str | None = None
    key_id: str | None = None
    code: str | None = None
    details: dict[str, Any] = {}


class RotationJob(Model):
    """A queue message. It names what to rotate; it never carries a secret.

    ``generation`` is the application's generation when the job was queued: a job older than the
    application's latest rotation is acknowledged as superseded and never touches anything.
    """

    app_id: str
    rotation_id: str
    reason: JobReason
    requested_at: datetime
    compromised: bool = False
    generation: int | None = None


class RefreshRequest(Model):
    """Body of a manual refresh.

    ``compromised`` revokes the rotator's other passwords once every destination confirmed the new
    one; ``revokeUnmanagedCredentials`` (with ``compromised``) revokes the passwords the rotator did
    not create as well. Without it those are listed in the outcome, never removed.
    """

    # The cross-field rule below, stated for the OpenAPI document too.
    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            **{
                "if": {
                    "properties": {"revokeUnmanagedCredentials": {"const": True}},
                    "required": ["revokeUnmanagedCredentials"],
                },
                "then": {"properties": {"compromised": {"const": True}}, "required": ["compromised"]},
            }
        )
    )

    compromised: bool = False
    revoke_unmanaged_credentials: bool = False

    @model_validator(mode="after")
    def _revoke_needs_compromised(self) -> RefreshRequest:
        if self.revoke_unmanaged_credentials and not self.compromised:
            raise PydanticCustomError(
                "compromised",
                "revokeUnmanagedCredentials needs compromised set to true",
                {"field": "revokeUnmanagedCredentials", "allowed": "true only with compromised: true"},
            )
        return self


class VercelGroupSettings(Model):
    """A group's Vercel access. The token itself lives in the rotator's vault, never here."""

    team_id: Annotated[str, matches(r"[A-Za-z0-9_-]{1,100}", "a Vercel team id")] | None = None
    # Name of the token's secret in the rotator's own vault (set by the API from the write-only token).
    token_secret_name: KeyVaultSecretName | None = None


class Group(Model):
    """Applications that share settings, such as one Vercel account (the portal's "group")."""

    group_id: GroupId
    display_name: DisplayName
    vercel: VercelGroupSettings | None = None
