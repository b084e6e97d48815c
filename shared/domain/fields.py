"""Field types and bases shared by the domain models and the integration plugins' settings models.

Each constrained type validates strictly and states its constraint in the JSON schema, so the
OpenAPI document (generated from the models) says exactly what the API accepts.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

LIFETIME_DAYS = (1, 90)
THRESHOLD_HOURS = (1, 23)
# Early retirement waits at least a day: Graph's sign-in activity report is aggregated and lags.
UNUSED_HOURS = (24, 2160)
THRESHOLD_ALERT_DAYS = (1, 30)
MAX_RECIPIENTS = 20
MAX_INTEGRATIONS = 20
# Key Vault secret names: 1 to 127 letters, digits and '-', compared ignoring case.
VAULT_NAME_LENGTH = 127

# The validation context of a request body (``shared.api.http.parse_model`` passes it). A rule
# tightened after data was stored applies to requests only: a row stored under the older rule
# still loads (the engine keeps rotating it and GET shows it), and its next PUT must follow the
# new rule. Without this, one such row would make reads of it, and of every page holding it, fail.
REQUEST_CONTEXT = "request"


def is_request(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get(REQUEST_CONTEXT))


def vault_name(*parts: str) -> str:
    """The Key Vault secret name made of ``parts``: each run of characters other than letters,
    digits and '-' becomes one '-', parts are joined by '-', at most 127 characters."""
    text = "-".join(re.sub(r"[^0-9A-Za-z-]+", "-", part).strip("-") for part in parts)
    return re.sub(r"-{2,}", "-", text)[:VAULT_NAME_LENGTH]


def integration_name_key(name: str) -> str:
    """What tells an application's integrations apart wherever a name becomes a key: the name as
    it appears in its credential's vault secret name (``cred-<appId>-<this>-<suffix>-<random>``),
    in the letter case Key Vault ignores (the automation job name and webhook-id are derived from
    the lower-cased name too). Distinct keys give distinct credential names: the name part is never
    shortened (``INTEGRATION_NAME_LENGTH``)."""
    return vault_name(name).lower()


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
    pattern: str,
    description: str,
    *,
    max_length: int | None = None,
    json_pattern: str | None = None,
    stored_pattern: str | None = None,
) -> BeforeValidator:
    """A string check for ``pattern``; the error says what is allowed, not what was sent.

    ``json_pattern``: the pattern for the JSON schema when ``pattern`` uses what JSON-schema tools
    do not support (look-aheads); ``max_length`` then states the bound the look-ahead enforced.
    ``stored_pattern``: the older, looser rule stored data is still read with (``REQUEST_CONTEXT``).
    """

    compiled = re.compile(pattern)
    stored = re.compile(stored_pattern) if stored_pattern is not None else compiled

    def check(value: object, info: ValidationInfo) -> str:
        rule = compiled if is_request(info) else stored
        if not isinstance(value, str) or not rule.fullmatch(value):
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
UnusedHours = Annotated[int, int_range(*UNUSED_HOURS, "hours")]
AlertDays = Annotated[int, int_range(*THRESHOLD_ALERT_DAYS, "days")]
# Control characters are C0, DEL and C1 (as for email addresses); names stored before DEL and C1
# were refused still load.
DisplayName = Annotated[
    str,
    matches(
        r"[^\x00-\x1f\x7f-\x9f]{1,256}",
        "1 to 256 characters without control characters",
        stored_pattern=r"[^\x00-\x1f]{1,256}",
    ),
]
# At most 64 characters: the name part of the longest credential name (cred-<appId>-<name>-...)
# then ends at character 106, before the 110 a credential name is shortened to for its random
# suffix (shared.credentials), so it is never cut and distinct name keys (integration_name_key)
# give distinct names; tests/unit/test_models.py checks this for every plugin. Limiting the name
# was chosen over comparing shortened forms, which would refuse names for a rule nobody sees.
INTEGRATION_NAME_LENGTH = 64
IntegrationName = Annotated[
    str,
    matches(
        rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{INTEGRATION_NAME_LENGTH - 1}}}",
        f"1 to {INTEGRATION_NAME_LENGTH} letters, digits, '.', '_' or '-'",
    ),
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
# The authority is what every URL parser here reads the same way (urllib's urlsplit refuses
# brackets outside IPv6, a port that is not 0-65535, and non-ASCII that NFKC-normalises to a
# delimiter): optional userinfo, an ASCII host name, an optional port.
_PORT = r"(?::(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
_AUTHORITY = r"(?:[!$&'()*+,;=:%._~A-Za-z0-9-]{1,256}@)?[A-Za-z0-9._-]{1,253}" + _PORT
_URL_PATH = r"(/[^\x00-\x20\x7f-\x9f\u2028\u2029?#]*)?"
HttpsUrl = Annotated[
    str,
    matches(
        r"(?=.{1,2048}$)https://" + _AUTHORITY + _URL_PATH,
        "an https:// URL (ASCII host name, optional port, no query) of at most 2048 characters",
        max_length=2048,
        json_pattern=r"https://" + _AUTHORITY + _URL_PATH,
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


class IntegrationBase(Model):
    """What every integration's settings model has. A plugin's model narrows ``kind`` to its own
    ``Literal`` (the discriminator of the ``Integration`` union the registry builds)."""

    # Delivery needs the application's group (its shared credentials), so PUT requires groupId.
    requires_group: ClassVar[bool] = False

    kind: str
    name: IntegrationName | None = None
    enabled: bool = True
