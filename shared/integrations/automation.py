"""Custom automation: hand the new secret to an Azure Automation runbook, or to a signed webhook.

Runbook (target ``runbook``)
    ``GET {account}/runbooks/{name}`` first: the runbook must be published and must declare the secret's
    parameter (``parameterName``, default ``ClientSecret``). ``AppId``, ``KeyId``, ``RotationId`` and
    ``ExpiresAt`` are passed too, each only if the runbook declares it (names match case-insensitively),
    and a mandatory parameter the rotator cannot fill is refused before anything runs. Then
    ``PUT {account}/jobs/{jobName}?api-version=2023-11-01`` with
    ``{"properties": {"runbook": {"name"}, "parameters": {...}, "runOn": ""}}`` (azure-rest-api-specs
    automation 2023-11-01 examples/job/createJob.json). Parameter values are JSON-encoded strings, as
    Az.Automation sends them (Azure/azure-powershell#3354, azure-automation-ise-addon#105). The job name
    is derived from the rotation, key and integration, so a retried deploy finds and follows the job it
    already started instead of running the runbook twice. The job is polled until ``Completed``;
    ``Failed``/``Stopped``/``Suspended``/``Blocked`` fail the integration with the job's exception text.
    Note: job parameters are visible to anyone who can read the account's jobs; the runbook should also
    avoid writing the value to its output streams. The rotator's identity needs **Automation Operator**
    on the account (or Automation Job Operator plus Automation Runbook Operator on the runbook).

Webhook (target ``webhook``)
    The webhook URL is itself a secret: it lives in the rotator's vault under ``webhookSecretName`` (the
    API stores it there) and appears in no log, error or outcome (only its host does). The rotator POSTs
    ``{"deliveryId", "appId", "keyId", "rotationId", "expiresAt", "secret"}`` as compact JSON, signed to
    the Standard Webhooks specification (standardwebhooks.com, github.com/standard-webhooks), with its
    reference library (PyPI ``standardwebhooks``)::

        webhook-id: msg_<32 hex>        the same for every retry of one delivery (rotation, key, integration)
        webhook-timestamp: <Unix seconds>
        webhook-signature: v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<raw body>")>

    The key is the webhook URL exactly as stored in the rotator's vault (its UTF-8 bytes): the receiver
    was given that URL, so it already shares the key and nothing else has to be distributed. If the
    vault secret is instead a JSON object ``{"url": ..., "signingKey": ...}``, the signingKey is the key
    (a ``whsec_<base64>`` value is decoded as the specification says; any other text is used as UTF-8
    bytes). A receiver verifies with any Standard Webhooks library (``Webhook(key).verify(body,
    headers)``: constant-time comparison, timestamps within five minutes) and de-duplicates on
    ``webhook-id`` to act only once. docs/operations.md has a snippet to copy.
    Any 2xx is success (the receiver acknowledged it; verify has nothing more to check). Redirects are
    never followed; 429/5xx/timeouts are retried; other answers fail the integration.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from shared.adapters.arm import ArmClient, ArmTarget, obj, resource_name
from shared.adapters.http import retry_after_seconds
from shared.domain.fields import (
    AutomationAccountId,
    IntegrationBase,
    KeyVaultSecretName,
    ParameterName,
    RunbookName,
    schema_rules,
)
from shared.domain.secret import SecretValue
from shared.errors import (
    ExternalServiceError,
    FieldProblem,
    RotationError,
    ThrottledError,
    TransientServiceError,
)
from shared.integrations.base import DeployContext, DeployOutcome, WriteOnlyField
from shared.redaction import redact_host

if TYPE_CHECKING:
    from shared.domain.models import ApplicationConfig

logger = logging.getLogger("rotator.integrations.automation")

API_VERSION = "2023-11-01"
OPERATOR_ROLE = "Automation Operator"
OPERATOR_ROLE_NOTE = "or 'Automation Job Operator' plus 'Automation Runbook Operator' on the runbook"
COMPLETED = "completed"
# A job in one of these will not complete without someone's help.
FAILED_STATES = {"failed", "stopped", "suspended", "blocked", "stopping", "suspending", "removing"}
EXTRA_PARAMETERS = ("AppId", "KeyId", "RotationId", "ExpiresAt")
JOB_NAMESPACE = uuid.UUID("6f1f6a3e-2b8e-4f7c-9d51-3a0c4b7e9f21")
# Standard Webhooks headers (standardwebhooks.com).
ID_HEADER = "webhook-id"
SIGNATURE_HEADER = "webhook-signature"
TIMESTAMP_HEADER = "webhook-timestamp"
WEBHOOK_SERVICE = "webhook"


def job_name_for(context: DeployContext) -> str:
    """A job name stable across retries of one delivery (same rotation, key and integration)."""
    settings: AutomationIntegration = context.settings
    seed = f"{settings.automation_account_id}|{settings.runbook_name}|{settings.name}|{context.rotation_id}|{context.key_id}"
    return str(uuid.uuid5(JOB_NAMESPACE, seed.lower()))


def signing_key(key: bytes) -> str | bytes:
    """The Standard Webhooks key: a ``whsec_`` secret as the specification encodes it, else raw bytes."""
    text = key.decode("utf-8", "replace")
    return text if text.startswith("whsec_") else key


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature`` for one message, by the Standard Webhooks reference library."""
    from datetime import UTC, datetime

    from standardwebhooks.webhooks import Webhook

    return Webhook(signing_key(key)).sign(
        message_id, datetime.fromtimestamp(timestamp, UTC), body.decode("utf-8")
    )


def message_id(context: DeployContext) -> str:
    """``webhook-id``: one per delivery of a secret to this integration, the same for every retry."""
    settings: AutomationIntegration = context.settings
    seed = f"webhook|{settings.name}|{context.rotation_id}|{context.key_id}"
    return "msg_" + uuid.uuid5(JOB_NAMESPACE, seed.lower()).hex


class _RedactUrls(logging.Filter):
    """Keeps webhook URLs (secrets) out of httpx's own request log lines."""

    def __init__(self) -> None:
        super().__init__()
        self.secret_urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secret_urls and isinstance(record.args, tuple):
            record.args = tuple(
                _redacted(str(arg)) if str(arg) in self.secret_urls else arg for arg in record.args
            )
        return True


def _redacted(url: str) -> str:
    from shared.redaction import redact_url

    return redact_url(url)


_URL_FILTER = _RedactUrls()
logging.getLogger("httpx").addFilter(_URL_FILTER)


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
                # The URL on the way in, or the reference to it the API stored (a GET body sent back).
                "else": {"anyOf": [{"required": ["webhookUrl"]}, {"required": ["webhookSecretName"]}]},
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


class AutomationPlugin:
    kind = "automation"
    settings_model = AutomationIntegration
    write_only: tuple[WriteOnlyField, ...] = (
        WriteOnlyField(
            "webhookUrl",
            "webhookSecretName",
            "webhook",
            "The webhook URL (a secret); stored in the rotator's vault (webhookSecretName), never returned.",
            https=True,
        ),
    )
    troubleshooting: tuple[str, ...] = (
        "Automation: for a runbook, check that it exists and is published and that the rotator's identity "
        "may start jobs on the account ('Automation Job Operator').",
        "For a webhook, check that the webhook has not expired; store a new URL through the API if it has.",
    )

    def __init__(self, *, poll_interval: float = 5.0, job_timeout: float = 300.0) -> None:
        self._poll_interval = poll_interval
        self._job_timeout = job_timeout

    def check(self, settings: Any, app: ApplicationConfig) -> list[FieldProblem]:
        if settings.target == "webhook" and not settings.webhook_secret_name:
            return [
                FieldProblem(
                    "webhookSecretName",
                    "is required for a webhook target (the API stores the webhook URL in the rotator's vault)",
                    "the name of the vault secret that holds the webhook URL",
                )
            ]
        return []

    def describe(self, settings: Any, app: ApplicationConfig) -> str:
        if settings.target == "runbook":
            return (
                f"run runbook '{settings.runbook_name}' in Automation account "
                f"'{resource_name(settings.automation_account_id)}' with the secret as parameter "
                f"'{settings.parameter_name}', and wait for it to complete"
            )
        return "POST the secret to the webhook stored in the rotator's vault, signed with HMAC-SHA256"

    async def deploy(self, context: DeployContext) -> DeployOutcome:
        settings: AutomationIntegration = context.settings
        if settings.target == "runbook":
            return await self._run_runbook(context)
        return await self._call_webhook(context)

    async def verify(self, context: DeployContext) -> None:
        settings: AutomationIntegration = context.settings
        if settings.target == "webhook":
            return  # a 2xx answer was the receiver's acknowledgement
        client = ArmClient(context.services, redact=context.secret)
        target = self._account_target(settings, "verify")
        job = await client.json(
            "GET",
            f"{settings.automation_account_id}/jobs/{job_name_for(context)}",
            API_VERSION,
            target,
            action="read the job in",
        )
        status = _job_status(job)
        if status.lower() != COMPLETED:
            raise RotationError(
                f"Runbook job for '{settings.runbook_name}' is {status}, not Completed",
                step="verify",
                code=f"Job{status}",
            )

    # ----------------------------------------------------------------- runbook

    @staticmethod
    def _account_target(settings: AutomationIntegration, step: str = "deploy") -> ArmTarget:
        assert settings.automation_account_id is not None
        return ArmTarget(
            settings.automation_account_id,
            f"Automation account '{resource_name(settings.automation_account_id)}'",
            OPERATOR_ROLE,
            step,
            role_note=OPERATOR_ROLE_NOTE,
        )

    async def _run_runbook(self, context: DeployContext) -> DeployOutcome:
        settings: AutomationIntegration = context.settings
        assert settings.automation_account_id is not None and settings.runbook_name is not None
        client = ArmClient(context.services, redact=context.secret)
        account = settings.automation_account_id
        target = self._account_target(settings)
        runbook_target = ArmTarget(
            f"{account}/runbooks/{settings.runbook_name}",
            f"runbook '{settings.runbook_name}'",
            OPERATOR_ROLE,
            role_note=OPERATOR_ROLE_NOTE,
        )
        runbook = await client.json(
            "GET", runbook_target.resource_id, API_VERSION, runbook_target, action="read"
        )
        parameters = self._job_parameters(runbook, settings, context)
        name = job_name_for(context)
        job_path = f"{account}/jobs/{name}"
        found = await client.request(
            "GET", job_path, API_VERSION, target, action="read a job in", accept=(404,)
        )
        if found.status_code == 404:
            body = {
                "properties": {
                    "runbook": {"name": settings.runbook_name},
                    "parameters": parameters,
                    "runOn": "",
                }
            }
            # A 409 means an earlier attempt created it and lost the answer: follow that job.
            await client.request(
                "PUT", job_path, API_VERSION, target, action="start a job in", body=body, accept=(409,)
            )
        else:
            logger.info("runbook job %s already exists (a retried delivery): following it", name)
        job = await self._wait_for_job(client, job_path, target, settings.runbook_name)
        details = {
            "account": resource_name(account),
            "runbook": settings.runbook_name,
            "jobName": name,
            "jobId": (job.get("properties") or {}).get("jobId"),
        }
        return DeployOutcome(f"runbook '{settings.runbook_name}' completed (job {name})", details=details)

    @staticmethod
    def _job_parameters(
        runbook: dict[str, Any], settings: AutomationIntegration, context: DeployContext
    ) -> dict[str, str]:
        properties = obj(runbook.get("properties"))
        state = str(properties.get("state") or "")
        if state.lower() == "new":
            raise RotationError(
                f"Runbook '{settings.runbook_name}' has never been published",
                step="deploy",
                code="RunbookNotPublished",
            )
        declared = obj(properties.get("parameters"))
        by_lower = {str(key).lower(): str(key) for key in declared}
        secret_name = by_lower.get(settings.parameter_name.lower())
        if secret_name is None:
            raise RotationError(
                f"Runbook '{settings.runbook_name}' declares no parameter '{settings.parameter_name}' to "
                "receive the secret",
                step="deploy",
                code="RunbookParameterMissing",
            )
        values: dict[str, str] = {secret_name: context.secret.reveal()}
        extras = {
            "appid": str(context.app.app_id),
            "keyid": context.key_id,
            "rotationid": context.rotation_id,
            "expiresat": context.expires_at.isoformat() if context.expires_at else "",
        }
        for lowered, value in extras.items():
            if lowered in by_lower and value:
                values[by_lower[lowered]] = value
        missing = [
            key
            for key, spec in declared.items()
            if isinstance(spec, dict) and spec.get("isMandatory") and key not in values
        ]
        if missing:
            raise RotationError(
                f"Runbook '{settings.runbook_name}' has mandatory parameters the rotator cannot fill: "
                + ", ".join(sorted(missing)),
                step="deploy",
                code="RunbookParameterUnfillable",
            )
        # Values are JSON-encoded, as Az.Automation sends them (a bare "123" would become a number).
        return {key: json.dumps(value) for key, value in values.items()}

    async def _wait_for_job(
        self, client: ArmClient, job_path: str, target: ArmTarget, runbook: str
    ) -> dict[str, Any]:
        deadline = time.monotonic() + self._job_timeout
        while True:
            job = await client.json("GET", job_path, API_VERSION, target, action="read a job in")
            status = _job_status(job)
            if status.lower() == COMPLETED:
                return job
            if status.lower() in FAILED_STATES:
                properties = obj(job.get("properties"))
                exception = client.scrub(str(properties.get("exception") or ""))
                raise RotationError(
                    f"Runbook '{runbook}' job ended {status}" + (f": {exception}" if exception else ""),
                    step="deploy",
                    code=f"Job{status}",
                )
            if time.monotonic() + self._poll_interval > deadline:
                # The job keeps running; a retried deploy finds it by name and keeps following it.
                raise TransientServiceError(
                    f"Runbook '{runbook}' job is still {status} after {self._job_timeout:.0f}s",
                    service="automation",
                    code="JobStillRunning",
                )
            await client.sleep(self._poll_interval)

    # ----------------------------------------------------------------- webhook

    async def _call_webhook(self, context: DeployContext) -> DeployOutcome:
        import httpx

        settings: AutomationIntegration = context.settings
        services = context.services
        url, key = await self._webhook_secret(context)
        host = redact_host(url)
        timestamp = int(services.clock().timestamp())
        delivery_message = message_id(context)
        payload = {
            # Unique per attempt, so a quick retry is never mistaken for a replay of the same request.
            "deliveryId": str(uuid.uuid4()),
            "appId": str(context.app.app_id),
            "keyId": context.key_id,
            "rotationId": context.rotation_id,
            "expiresAt": context.expires_at.isoformat() if context.expires_at else None,
            "secret": context.secret.reveal(),
        }
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            ID_HEADER: delivery_message,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(key, delivery_message, timestamp, body),
        }
        # httpx logs each request's URL at INFO: the filter masks this one (as given and as httpx prints it).
        masked = {url, str(httpx.URL(url))}
        _URL_FILTER.secret_urls.update(masked)
        try:
            response = await services.http.post(url, content=body, headers=headers, follow_redirects=False)
        except httpx.TimeoutException:
            raise TransientServiceError(
                f"Webhook at {host} did not answer in time", service=WEBHOOK_SERVICE
            ) from None
        except httpx.TransportError as error:
            # The exception text can carry the URL: only its type is kept.
            raise TransientServiceError(
                f"Webhook at {host} could not be reached ({type(error).__name__})", service=WEBHOOK_SERVICE
            ) from None
        finally:
            _URL_FILTER.secret_urls.difference_update(masked)
        status = response.status_code
        if 200 <= status < 300:
            return DeployOutcome(
                f"webhook at {host} acknowledged the new secret (HTTP {status})",
                details={
                    "webhookHost": host,
                    "status": status,
                    "webhookSecretName": settings.webhook_secret_name,
                },
            )
        if 300 <= status < 400:
            raise RotationError(
                f"Webhook at {host} answered with a redirect (HTTP {status}); redirects are not followed",
                step="deploy",
                code="WebhookRedirect",
            )
        if status == 429:
            raise ThrottledError(
                f"Webhook at {host} is throttling",
                retry_after=retry_after_seconds(response.headers),
                service=WEBHOOK_SERVICE,
                status=status,
            )
        if status >= 500 or status == 408:
            raise TransientServiceError(
                f"Webhook at {host} failed (HTTP {status})", service=WEBHOOK_SERVICE, status=status
            )
        # The body is not quoted: a receiver might echo what it was sent.
        raise RotationError(
            f"Webhook at {host} refused the delivery (HTTP {status})",
            step="deploy",
            code=f"WebhookHttp{status}",
        )

    async def _webhook_secret(self, context: DeployContext) -> tuple[str, bytes]:
        """The webhook URL and the HMAC key, from the rotator's own vault."""
        settings: AutomationIntegration = context.settings
        services = context.services
        name = settings.webhook_secret_name
        if not name:
            raise RotationError(
                "The webhook integration has no webhookSecretName",
                step="deploy",
                code="IntegrationMisconfigured",
            )
        try:
            stored = await services.vault(services.settings.vault_url).get(name)
        except ExternalServiceError as error:
            if error.status == 403:
                raise RotationError(
                    f"Access denied to secret '{name}' in the rotator's vault",
                    step="deploy",
                    code="VaultForbidden",
                ) from None
            raise
        if stored is None:
            raise RotationError(
                f"Secret '{name}' (the webhook URL) is missing from the rotator's vault",
                step="deploy",
                code="WebhookSecretMissing",
            )
        url, key = _url_and_key(stored.value)
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.netloc:
            raise RotationError(
                f"Secret '{name}' does not hold an https:// webhook URL",
                step="deploy",
                code="WebhookUrlInvalid",
            )
        return url, key


def _url_and_key(value: SecretValue) -> tuple[str, bytes]:
    text = value.reveal().strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("url"), str):
            url = data["url"].strip()
            signing_key = data.get("signingKey")
            key = signing_key if isinstance(signing_key, str) and signing_key else url
            return url, key.encode("utf-8")
    return text, text.encode("utf-8")


def _job_status(job: dict[str, Any]) -> str:
    properties = obj(job.get("properties"))
    return str(properties.get("status") or "Unknown")


PLUGIN = AutomationPlugin()
