"""The domain: an application registration, its rotation settings, status, log entries and jobs.

JSON on the wire is camelCase (what the portal sends); Python attributes are snake_case. Input is
validated strictly (no "21" for 21, no unknown fields) so a typo is a clear 400, not a silent default.
Ranges follow the product documentation: secret lifetime 1–90 days, update threshold 1–23 hours.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union
from uuid import UUID

from pydantic import ConfigDict, Field, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from shared.domain.fields import (
    MAX_INTEGRATIONS,
    MAX_RECIPIENTS,
    AlertDays,
    DisplayName,
    EmailAddress,
    GroupId,
    IntegrationBase,
    KeyVaultSecretName,
    LifetimeDays,
    Model,
    StatusModel,
    ThresholdHours,
    UnusedHours,
    integration_name_key,
    is_request,
    matches,
    schema_rules,
)
from shared.domain.fields import rfc3339 as rfc3339
from shared.integrations.registry import PLUGINS, settings_models


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
    # Opt-in early retirement: remove the superseded (previous) credential before it expires once
    # every destination confirmed the new secret and Graph's sign-in report shows it unused for this
    # many hours since then (needs AuditLog.Read.All; without it, retirement stays at expiry).
    retire_unused_previous_after_hours: UnusedHours | None = None


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


# The registry builds the union from the plugins' declared settings models: a new integration is one
# module and one registration line (shared.integrations.registry), nothing here.
_SETTINGS_MODELS = settings_models()
if TYPE_CHECKING:
    Integration = IntegrationBase
else:
    Integration = Annotated[Union[_SETTINGS_MODELS], Field(discriminator="kind")]  # noqa: UP007
INTEGRATION_KINDS = tuple(plugin.kind for plugin in PLUGINS)
NAME_KEY_RULE = (
    "a name no other integration of the application has when letter case is ignored and each run "
    "of '.', '_' and '-' reads as one '-' (at the ends as none)"
)
_GROUP_KINDS = [plugin.kind for plugin in PLUGINS if plugin.settings_model.requires_group]


class ApplicationConfig(Model):
    """What the operator registers: the Entra application and how its secret rotates."""

    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            **{
                "if": {
                    "properties": {
                        "integrations": {"contains": {"properties": {"kind": {"enum": _GROUP_KINDS}}}}
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
    def _integration_names_unique(self, info: ValidationInfo) -> ApplicationConfig:
        # A name becomes keys (its credential's vault secret name, delivery ids) that ignore case
        # and read '.', '_' and '-' alike: names that differ only there would share a credential.
        # That check is for requests only: a registration stored before it still loads.
        names: set[str | None] = set()
        keys: set[str] = set()
        for index, integration in enumerate(self.integrations):
            name, key = integration.name, integration_name_key(integration.name or "")
            if name in names or (key in keys and is_request(info)):
                raise PydanticCustomError(
                    "unique",
                    "integration names must be distinct, ignoring letter case, '.', '_' and '-'",
                    {"field": f"integrations.{index}.name", "allowed": NAME_KEY_RULE},
                )
            names.add(name)
            keys.add(key)
        needing = next((i.kind for i in self.integrations if i.requires_group), None)
        if needing is not None and not self.group_id:
            raise PydanticCustomError(
                "group",
                f"a {needing} integration needs the application's groupId",
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


# The log events that end a rotation id (``details.outcome`` holds its ``RotationOutcome``).
TERMINAL_EVENTS = frozenset(
    {"rotation.completed", "rotation.failed", "rotation.merged", "rotation.superseded"}
)


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
    # Entra ID's endDateTime for the new credential, as addPassword answered: what destinations
    # and the schedule receive, whatever happens to the staged copy's ``exp`` in the vault.
    key_end: datetime | None = None
    staged_version: str | None = None
    create_attempts: int = 0
    # The last addPassword of this rotation whose answer never came (it may still be applied).
    unanswered_create_at: datetime | None = None
    # Retryable failures this rotation paused for (across deliveries and takeovers): bounded, so a
    # failure that never clears ends the rotation (``rotation.failed``, alert, backoff) instead of
    # pausing forever.
    pauses: int = 0
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


# How long a service may still apply a write whose answer never came (a timeout, a 5xx). None of
# the write APIs the rotator calls takes a precondition that would refuse such a write when it
# lands late: no If-Match in their REST specifications (azure-rest-api-specs: Microsoft.Web
# WebApps.json UpdateApplicationSettings, logicAppsManagementClient.json Connections_CreateOrUpdate,
# Microsoft.Automation variable.json and webhook.json, KeyVault secrets.json SetSecret;
# vsts-rest-api-specs serviceEndpoint.json; vercel.com/docs/rest-api/projects/edit-an-environment-
# variable; ARM leaves ETags to each provider: azure-resource-manager-rpc v1.0/Addendum.md). So the
# rotator keeps what such a write carried this long, then writes the current secret again
# (``LateWrite``) or removes the credential it created (``LateCreate``).
LATE_WRITE_WINDOW = timedelta(minutes=15)


class LateWrite(StatusModel):
    """A write of ``key_id`` started at ``at`` whose outcome was never known: the service may
    apply it until ``at + LATE_WRITE_WINDOW``, over a newer secret written since."""

    key_id: str
    at: datetime

    def settles_at(self) -> datetime:
        return self.at + LATE_WRITE_WINDOW


class LateCreate(StatusModel):
    """A rotation whose addPassword got no answer at ``at``: Entra may still create a credential
    named for it, which nothing would use; maintenance removes it once the window has passed."""

    rotation_id: str
    at: datetime

    def settles_at(self) -> datetime:
        return self.at + LATE_WRITE_WINDOW


class IntegrationStatus(StatusModel):
    result: Literal["succeeded", "failed", "pending"]
    at: datetime
    key_id: str | None = None
    error: ErrorInfo | None = None
    # The newest credential this destination confirmed holding, and credentials sent to it since
    # without confirmation (it may hold any of them): none of these may be removed.
    confirmed_key_id: str | None = None
    unconfirmed_key_ids: list[str] = []
    # Writes that may still land (``LateWrite``): their credentials may not be removed either, until
    # a write of the current secret that began after their window has succeeded.
    late_writes: list[LateWrite] = []

    def key_ids_in_use(self) -> set[str]:
        return {k for k in (self.confirmed_key_id, *self.unconfirmed_key_ids) if k} | {
            w.key_id for w in self.late_writes
        }

    def late_writes_settle_at(self) -> datetime | None:
        """When the last write that may still land can land no more (None: there is none)."""
        return max((w.settles_at() for w in self.late_writes), default=None)


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


def registration_generation(registered_at: datetime) -> int:
    """The generation an application starts with when registered at ``registered_at`` (Unix
    microseconds): above every generation an earlier registration of the same app id reached (one
    per rotation), so a job queued for that one is never taken for this one's."""
    return int(registered_at.timestamp() * 1_000_000)


class UnloggedOutcome(StatusModel):
    """A rotation's terminal log entry, written in the same app row write that ended the rotation
    and kept there until the rotation log holds it (``shared.rotation.events.settle_outcomes``):
    a crash or a failed log write between the two cannot lose a rotation's outcome. The fields
    are a ``RotationLogEntry``'s; the log row's key is derived from them, so writing it again
    changes nothing."""

    at: datetime
    app_id: str
    rotation_id: str
    event: str
    level: LogLevel
    message: str
    step: str | None = None
    code: str | None = None
    key_id: str | None = None
    details: dict[str, Any] = {}

    def entry(self) -> RotationLogEntry:
        return RotationLogEntry(**dict(self))


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
    # Credentials this rotator created that must go, whose removal Entra ID refused so far (a failed
    # rotation's, or a superseded one): maintenance retries them every pass.
    cleanup_key_ids: list[str] = []
    # The last rotation ids that ended (a re-delivered job for one of them is acknowledged).
    recent_rotation_ids: list[str] = []
    # Failed rotations in a row: scheduled retries back off (``shared.domain.schedule``).
    consecutive_failures: int = 0
    # When the last failure alert went out (the same failure is alerted again only after a day).
    failure_alerted_at: datetime | None = None
    # Rotations whose addPassword may still land (``LateCreate``): swept by maintenance.
    late_creates: list[LateCreate] = []
    # Terminal log entries of rotations this row ended that the log does not hold yet (normally
    # for the moment between the two writes; after a crash, until the next reader settles them).
    unlogged: list[UnloggedOutcome] = []

    def owes_removals(self) -> bool:
        """Credentials still wait for the rotator to remove them from Entra ID: a failed
        rotation's (``cleanup_key_ids``), what an unanswered addPassword may yet create
        (``late_creates``), or those a compromised rotation revokes once every destination holds
        the new secret (``pending_revocation``). Until they are gone the timer must come back, even
        while the application is disabled, and its registration may not be deleted (nothing else
        would remove them)."""
        return bool(self.cleanup_key_ids or self.late_creates or self.pending_revocation)


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
