"""Settings: every value the app reads from its environment, typed and validated once.

``SETTINGS`` is the single list of what the app reads. It drives validation here, the sample
``local.settings.sample.json``, the README table and the deployment test that checks the Bicep
template sets each deployed setting under the same name. Errors name the setting and what is
allowed, and never echo the value (a connection string can hold a key).

Every external base URL is a setting with the public cloud as default, so sovereign clouds and the
local simulators need no code change.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlparse

from shared.errors import ConfigurationError

SettingKind = Literal["url", "str", "int", "uuid", "path", "bool"]

# Token audiences per cloud, never derived from a configured URL (a proxy or alias would get a
# wrong one from Entra). learn.microsoft.com/graph/deployments (Graph national clouds) and
# learn.microsoft.com/azure/azure-government/compare-azure-government-global-azure, .../china.
CLOUD_AUDIENCES: dict[str, dict[str, str]] = {
    "AzureCloud": {"graph": "https://graph.microsoft.com", "arm": "https://management.azure.com"},
    "AzureUSGovernment": {
        "graph": "https://graph.microsoft.us",
        "arm": "https://management.usgovcloudapi.net",
    },
    "AzureChinaCloud": {
        "graph": "https://microsoftgraph.chinacloudapi.cn",
        "arm": "https://management.chinacloudapi.cn",
    },
}


@dataclass(frozen=True)
class SettingSpec:
    name: str
    kind: SettingKind
    description: str
    default: str | None = None
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None
    # Whether a deployment sets it (the Bicep test checks these); local-only settings are not.
    deployed: bool = True
    local_example: str | None = None
    # The values a "str" setting may take (None: any).
    choices: tuple[str, ...] | None = None


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "AzureWebJobsStorage",
        "str",
        "Storage for tables and queues: a connection string locally; in Azure use the identity-based "
        "form AzureWebJobsStorage__accountName (plus __credential=managedidentity and __clientId).",
        deployed=False,
        local_example="UseDevelopmentStorage=true",
    ),
    SettingSpec(
        "AzureWebJobsStorage__tableServiceUri",
        "url",
        "Table service URI for identity-based connections (the account's primaryEndpoints.table; "
        "right in every cloud, sovereign ones included).",
    ),
    SettingSpec(
        "AzureWebJobsStorage__queueServiceUri",
        "url",
        "Queue service URI for identity-based connections (the account's primaryEndpoints.queue).",
    ),
    SettingSpec(
        "AzureWebJobsStorage__accountName",
        "str",
        "Storage account name for identity-based connections in the public cloud only (it implies "
        "core.windows.net); the service URIs above take precedence.",
        deployed=False,
    ),
    SettingSpec(
        "AzureWebJobsStorage__clientId",
        "str",
        "Client id of the user-assigned managed identity used for storage.",
    ),
    SettingSpec(
        "ROTATOR_TENANT_ID",
        "uuid",
        "Entra tenant id of the applications the rotator manages.",
        required=True,
        local_example="00000000-0000-0000-0000-00000000cafe",
    ),
    SettingSpec(
        "ROTATOR_VAULT_URL",
        "url",
        "The rotator's own Key Vault, where each new secret is staged before it is deployed.",
        required=True,
        local_example="https://localhost:8443",
    ),
    SettingSpec(
        "ROTATOR_MANAGED_IDENTITY_CLIENT_ID",
        "str",
        "Client id of the user-assigned managed identity the rotator signs in with (unset: system-assigned).",
    ),
    SettingSpec(
        "ROTATOR_CREDENTIAL",
        "str",
        "How the rotator signs in: auto (a managed identity where the host provides one, "
        "IDENTITY_ENDPOINT; otherwise the developer chain), managedidentity, default (azure-identity's "
        "DefaultAzureCredential without managed identity: environment, workload identity, Azure CLI, "
        "azd, PowerShell) or cli (Azure CLI).",
        default="auto",
        deployed=False,
        choices=("auto", "managedidentity", "default", "cli"),
    ),
    SettingSpec(
        "ROTATOR_CLOUD",
        "str",
        "The Azure cloud (Bicep's environment().name): picks the token audiences of Microsoft Graph "
        "and Resource Manager.",
        default="AzureCloud",
        choices=tuple(CLOUD_AUDIENCES),
    ),
    SettingSpec(
        "ROTATOR_GRAPH_SCOPE",
        "str",
        "Token scope for Microsoft Graph (unset: the cloud's, e.g. https://graph.microsoft.com/.default; "
        "set it for a national deployment such as https://dod-graph.microsoft.us/.default).",
        deployed=False,
    ),
    SettingSpec(
        "ROTATOR_ARM_SCOPE",
        "str",
        "Token scope for Azure Resource Manager (unset: the cloud's, e.g. https://management.azure.com/.default).",
        deployed=False,
    ),
    SettingSpec(
        "ROTATOR_GRAPH_URL",
        "url",
        "Microsoft Graph base URL (without /v1.0).",
        default="https://graph.microsoft.com",
    ),
    SettingSpec(
        "ROTATOR_LOGIN_AUTHORITY",
        "url",
        "Entra ID login authority, used to prove a new secret works.",
        default="https://login.microsoftonline.com",
    ),
    SettingSpec(
        "ROTATOR_ARM_URL",
        "url",
        "Azure Resource Manager base URL (Logic App connections, App Service, Automation).",
        default="https://management.azure.com",
    ),
    SettingSpec(
        "ROTATOR_DEVOPS_URL",
        "url",
        "Azure DevOps base URL (organizations are paths below it).",
        default="https://dev.azure.com",
    ),
    SettingSpec(
        "ROTATOR_VERCEL_URL",
        "url",
        "Vercel REST API base URL.",
        default="https://api.vercel.com",
    ),
    SettingSpec(
        "ROTATOR_ACS_ENDPOINT",
        "url",
        "Azure Communication Services endpoint for email (unset: email is off).",
    ),
    SettingSpec(
        "ROTATOR_EMAIL_SENDER",
        "str",
        "Sender address of notification emails (a verified ACS sender, e.g. DoNotReply@<domain>).",
    ),
    SettingSpec(
        "ROTATOR_CREDENTIAL_PREFIX",
        "str",
        "Display-name prefix of every credential the rotator creates; it only ever retires its own.",
        default="secret-rotator",
    ),
    SettingSpec(
        "ROTATOR_CLAIM_TIMEOUT_MINUTES",
        "int",
        "After this long a rotation claim whose worker died is taken over.",
        default="30",
        minimum=5,
        maximum=240,
    ),
    SettingSpec(
        "ROTATOR_VERIFY_TIMEOUT_SECONDS",
        "int",
        "How long to keep trying a new secret through Entra's propagation delay before giving up "
        "(at most 480: a rotation's job must end within host.json's functionTimeout of 10 minutes).",
        default="180",
        minimum=10,
        maximum=480,
    ),
    SettingSpec(
        "ROTATOR_HTTP_TIMEOUT_SECONDS",
        "int",
        "Timeout of every outbound HTTP call.",
        default="30",
        minimum=1,
        maximum=300,
    ),
    SettingSpec(
        "ROTATOR_GRAPH_WRITES_PER_SECOND",
        "int",
        "Graph password writes per second for the whole rotator, shared by every instance (Graph allows "
        "3,000 per 150 s per app and tenant; the default keeps below it with a burst of 25 seconds' worth).",
        default="16",
        minimum=1,
        maximum=19,
        deployed=False,
    ),
    SettingSpec(
        "ROTATOR_EMAILS_PER_HOUR",
        "int",
        "Emails per hour for the whole rotator, shared by every instance (ACS allows 100 per hour for a "
        "new resource; raise it with your quota).",
        default="90",
        minimum=1,
        maximum=100000,
        deployed=False,
    ),
    SettingSpec(
        "ROTATOR_ARM_WRITES_PER_SECOND",
        "int",
        "Azure Resource Manager writes per second for the whole rotator, shared by every instance (ARM "
        "refills 10 per second per principal).",
        default="8",
        minimum=1,
        maximum=10,
        deployed=False,
    ),
    SettingSpec(
        "ROTATOR_API_AUTH",
        "str",
        "How API callers authenticate: functionKey (the Functions host checks a function key and "
        "answers a missing or wrong one with an empty 401 before any app code runs) or entra (the "
        "routes are anonymous to the host and the app accepts only Microsoft Entra ID access tokens "
        "for ROTATOR_API_AUDIENCE that carry the ROTATOR_API_ROLE app role; 401 and 403 are "
        "problem+json).",
        default="functionKey",
        choices=("functionKey", "entra"),
    ),
    SettingSpec(
        "ROTATOR_API_AUDIENCE",
        "str",
        "With ROTATOR_API_AUTH=entra: the audience of the API's access tokens, the client id of the "
        "API's app registration (v2.0 tokens carry it as aud; set accessTokenAcceptedVersion to 2).",
    ),
    SettingSpec(
        "ROTATOR_API_ROLE",
        "str",
        "With ROTATOR_API_AUTH=entra: the app role a caller needs (the roles claim of its token).",
        default="SecretRotation.Manage",
    ),
    SettingSpec(
        "ROTATOR_CA_BUNDLE",
        "path",
        "Extra CA certificate file to trust (the local simulators' throwaway CA). Unset in Azure.",
        deployed=False,
    ),
)

SETTINGS_BY_NAME = {spec.name: spec for spec in SETTINGS}
# A claim outlives the longest step (the verification wait) by this much.
CLAIM_MARGIN_SECONDS = 120


@dataclass(frozen=True)
class StorageSettings:
    """Where the tables and queues live: a connection string, or an account reached by identity."""

    connection_string: str | None
    account_name: str | None
    client_id: str | None
    table_service_uri: str | None = None
    queue_service_uri: str | None = None

    @property
    def table_endpoint(self) -> str:
        return self.table_service_uri or f"https://{self.account_name}.table.core.windows.net"

    @property
    def queue_endpoint(self) -> str:
        return self.queue_service_uri or f"https://{self.account_name}.queue.core.windows.net"


@dataclass(frozen=True)
class Settings:
    storage: StorageSettings
    tenant_id: str
    vault_url: str
    managed_identity_client_id: str | None
    graph_url: str
    login_authority: str
    arm_url: str
    devops_url: str
    vercel_url: str
    acs_endpoint: str | None
    email_sender: str | None
    credential_prefix: str
    claim_timeout_minutes: int
    verify_timeout_seconds: int
    http_timeout_seconds: int
    ca_bundle: str | None
    credential: str
    cloud: str
    graph_scope_override: str | None
    arm_scope_override: str | None
    graph_writes_per_second: int
    emails_per_hour: int
    arm_writes_per_second: int
    api_auth: str = "functionKey"
    api_audience: str | None = None
    api_role: str = "SecretRotation.Manage"

    @property
    def email_enabled(self) -> bool:
        return bool(self.acs_endpoint and self.email_sender)

    @property
    def graph_scope(self) -> str:
        """Microsoft Graph's token scope: the setting, or the cloud's audience (never the URL's)."""
        return self.graph_scope_override or f"{CLOUD_AUDIENCES[self.cloud]['graph']}/.default"

    @property
    def arm_scope(self) -> str:
        """Resource Manager's token scope: the setting, or the cloud's audience."""
        return self.arm_scope_override or f"{CLOUD_AUDIENCES[self.cloud]['arm']}/.default"


def credential_kind(setting: str, environ: Mapping[str, str]) -> str:
    """Which credential to build: ``managedidentity``, ``default`` or ``cli``.

    ``auto`` takes the managed identity where the host provides one (App Service and Functions set
    ``IDENTITY_ENDPOINT``, learn "How to use managed identities for App Service and Azure
    Functions"), and otherwise the developer chain (a laptop pointed at a real tenant).
    """
    if setting != "auto":
        return setting
    return "managedidentity" if environ.get("IDENTITY_ENDPOINT") or environ.get("MSI_ENDPOINT") else "default"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ``ConfigurationError`` naming each bad one."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    problems: list[str] = []
    for spec in SETTINGS:
        raw = env.get(spec.name, "").strip() or spec.default
        try:
            values[spec.name] = _parse(spec, raw)
        except ValueError as error:
            problems.append(f"{spec.name}: {error}")
    storage_connection = values.get("AzureWebJobsStorage")
    storage_account = values.get("AzureWebJobsStorage__accountName")
    service_uris = (
        values.get("AzureWebJobsStorage__tableServiceUri"),
        values.get("AzureWebJobsStorage__queueServiceUri"),
    )
    if not storage_connection and not storage_account and not all(service_uris):
        problems.append(
            "AzureWebJobsStorage: set a connection string, or for an identity-based connection "
            "AzureWebJobsStorage__tableServiceUri and __queueServiceUri (or __accountName)"
        )
    claim, verify = values.get("ROTATOR_CLAIM_TIMEOUT_MINUTES"), values.get("ROTATOR_VERIFY_TIMEOUT_SECONDS")
    if isinstance(claim, int) and isinstance(verify, int) and verify + CLAIM_MARGIN_SECONDS > claim * 60:
        problems.append(
            "ROTATOR_CLAIM_TIMEOUT_MINUTES: must exceed ROTATOR_VERIFY_TIMEOUT_SECONDS by at least "
            f"{CLAIM_MARGIN_SECONDS} seconds, or a rotation still verifying could be taken over"
        )
    if values.get("ROTATOR_API_AUTH") == "entra" and not values.get("ROTATOR_API_AUDIENCE"):
        problems.append("ROTATOR_API_AUDIENCE: required when ROTATOR_API_AUTH is entra (the API's client id)")
    if bool(values.get("ROTATOR_ACS_ENDPOINT")) != bool(values.get("ROTATOR_EMAIL_SENDER")):
        problems.append("ROTATOR_EMAIL_SENDER: set it together with ROTATOR_ACS_ENDPOINT (or neither)")
    if problems:
        raise ConfigurationError("Invalid settings: " + "; ".join(problems))

    def text(name: str) -> str | None:
        value = values.get(name)
        return str(value) if value is not None else None

    def number(name: str) -> int:
        value = values[name]
        assert isinstance(value, int)
        return value

    return Settings(
        storage=StorageSettings(
            connection_string=text("AzureWebJobsStorage"),
            account_name=text("AzureWebJobsStorage__accountName"),
            client_id=text("AzureWebJobsStorage__clientId"),
            table_service_uri=text("AzureWebJobsStorage__tableServiceUri"),
            queue_service_uri=text("AzureWebJobsStorage__queueServiceUri"),
        ),
        tenant_id=str(values["ROTATOR_TENANT_ID"]),
        vault_url=str(values["ROTATOR_VAULT_URL"]),
        managed_identity_client_id=text("ROTATOR_MANAGED_IDENTITY_CLIENT_ID"),
        graph_url=str(values["ROTATOR_GRAPH_URL"]),
        login_authority=str(values["ROTATOR_LOGIN_AUTHORITY"]),
        arm_url=str(values["ROTATOR_ARM_URL"]),
        devops_url=str(values["ROTATOR_DEVOPS_URL"]),
        vercel_url=str(values["ROTATOR_VERCEL_URL"]),
        acs_endpoint=text("ROTATOR_ACS_ENDPOINT"),
        email_sender=text("ROTATOR_EMAIL_SENDER"),
        credential_prefix=str(values["ROTATOR_CREDENTIAL_PREFIX"]),
        claim_timeout_minutes=number("ROTATOR_CLAIM_TIMEOUT_MINUTES"),
        verify_timeout_seconds=number("ROTATOR_VERIFY_TIMEOUT_SECONDS"),
        http_timeout_seconds=number("ROTATOR_HTTP_TIMEOUT_SECONDS"),
        ca_bundle=text("ROTATOR_CA_BUNDLE"),
        credential=str(values["ROTATOR_CREDENTIAL"]),
        cloud=str(values["ROTATOR_CLOUD"]),
        graph_scope_override=text("ROTATOR_GRAPH_SCOPE"),
        arm_scope_override=text("ROTATOR_ARM_SCOPE"),
        graph_writes_per_second=number("ROTATOR_GRAPH_WRITES_PER_SECOND"),
        emails_per_hour=number("ROTATOR_EMAILS_PER_HOUR"),
        arm_writes_per_second=number("ROTATOR_ARM_WRITES_PER_SECOND"),
        api_auth=str(values["ROTATOR_API_AUTH"]),
        api_audience=text("ROTATOR_API_AUDIENCE"),
        api_role=str(values["ROTATOR_API_ROLE"]),
    )


def _parse(spec: SettingSpec, raw: str | None) -> object:
    if raw is None:
        if spec.required:
            raise ValueError("required but not set")
        return None
    if spec.kind == "int":
        try:
            number = int(raw)
        except ValueError:
            raise ValueError(f"must be a whole number from {spec.minimum} to {spec.maximum}") from None
        if (spec.minimum is not None and number < spec.minimum) or (
            spec.maximum is not None and number > spec.maximum
        ):
            raise ValueError(f"must be from {spec.minimum} to {spec.maximum}")
        return number
    if spec.kind == "url":
        parsed = urlparse(raw)
        if parsed.scheme not in ("https", "http") or not parsed.netloc:
            raise ValueError("must be an absolute https:// URL")
        if parsed.scheme == "http" and parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("must use https:// (plain http is accepted for loopback simulators only)")
        return raw.rstrip("/")
    if spec.kind == "uuid":
        import uuid

        try:
            return str(uuid.UUID(raw))
        except ValueError:
            raise ValueError("must be a GUID such as 00000000-0000-0000-0000-000000000000") from None
    if spec.kind == "path":
        if not os.path.isfile(raw):
            raise ValueError("must name an existing file")
        return raw
    if spec.kind == "str":
        if spec.choices is not None and raw not in spec.choices:
            raise ValueError(f"must be one of {', '.join(spec.choices)}")
        if spec.name.endswith("_SCOPE") and not (
            raw.endswith("/.default") and "://" in raw or raw.count("-") == 4
        ):
            raise ValueError("must be a scope such as https://graph.microsoft.com/.default")
        if spec.name == "ROTATOR_CREDENTIAL_PREFIX" and (
            len(raw) > 40 or ":" in raw or not raw.isprintable()
        ):
            raise ValueError("must be 1 to 40 printable characters without ':'")
        return raw
    raise AssertionError(f"unknown setting kind {spec.kind}")
