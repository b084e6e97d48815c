"""Email through Azure Communication Services, with the rotator's managed identity.

``AcsEmailTransport`` is the narrow interface over ``azure.communication.email.aio.EmailClient``:
one call sends one message and waits (bounded) for the send operation to finish. Errors become the
rotator's hierarchy and never carry the message body (which may hold a secret).

* Auth: the SDK asks the credential for ``https://communication.azure.com//.default`` (sic, in
  azure-communication-email's ``get_authentication_policy``); the deployment disables access keys.
* Idempotency: every message carries a deterministic ``Operation-Id`` (a UUID derived from what it
  is about), which ACS treats as the operation's identity: a retried or repeated send - the
  engine resuming a rotation after a crash, say - does not mail twice.
* Retries: the SDK's own retries are off; ``EmailNotifier`` retries throttling (honouring
  ``Retry-After``) and 5xx a bounded number of times, inside an overall deadline.
* Polling: the send answers 202 and a ``retry-after``; the poller honours it, for at most
  ``poll_timeout_seconds``. An operation still running then was accepted: it counts as sent.

``EmailNotifier`` implements the engine's ``Notifier`` (rotation notice, failure alerts) and the
timer's ``ThresholdAlerter``. It never logs a body, and registers an included secret with the
telemetry guard so no log record can carry it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared.adapters.retry import RetryPolicy, retry
from shared.domain.models import ApplicationConfig, LogLevel
from shared.domain.schedule import next_update_at
from shared.errors import ExternalServiceError, ThrottledError, TransientServiceError, is_retryable
from shared.notifications import templates
from shared.notifications.templates import EmailContent

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from shared.rotation.engine import RotationSummary
    from shared.rotation.events import EventRecorder
    from shared.storage.applications import ApplicationStore, StoredApplication

logger = logging.getLogger("rotator.notifications")

SERVICE = "acs-email"
# Operation ids are UUIDv5 in this namespace: the same notification always gets the same id.
OPERATION_NAMESPACE = uuid.UUID("6c1d3c1e-5a0f-4f7e-9a57-5d2f0c0a7e11")


class EmailSendError(ExternalServiceError):
    """An email could not be sent (after retries). Never carries the message.

    ``transient`` says whether trying later may help (throttling, 5xx, timeouts) or not (ACS
    refused the message or dropped it).
    """

    transient = False


@dataclass(frozen=True)
class OutgoingEmail:
    sender: str
    to: tuple[str, ...]
    content: EmailContent
    operation_id: str
    kind: str  # rotation | failure | integrations | threshold (for logs and telemetry)

    def payload(self) -> dict[str, Any]:
        """The ACS ``EmailMessage`` JSON."""
        return {
            "senderAddress": self.sender,
            "recipients": {"to": [{"address": address} for address in self.to]},
            "content": {
                "subject": self.content.subject,
                "plainText": self.content.text,
                "html": self.content.html,
            },
            # No tracking pixels or rewritten links in security notices.
            "userEngagementTrackingDisabled": True,
        }


class EmailTransport(Protocol):
    async def send(self, email: OutgoingEmail) -> str:
        """Send one email; returns the operation's final (or last seen) status."""
        ...


class AcsEmailTransport:
    """``EmailTransport`` over the ACS Email SDK (aio), built lazily on first send."""

    def __init__(
        self,
        endpoint: str,
        credential: AsyncTokenCredential,
        *,
        timeout_seconds: float,
        ca_bundle: str | None = None,
        poll_timeout_seconds: float = 30.0,
        polling_interval_seconds: float = 5.0,
    ) -> None:
        self._endpoint = endpoint
        self._credential = credential
        self._timeout = timeout_seconds
        self._ca_bundle = ca_bundle
        self._poll_timeout = poll_timeout_seconds
        self._polling_interval = polling_interval_seconds
        self._client: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
            from azure.communication.email.aio import EmailClient

            options: dict[str, Any] = {
                "connection_timeout": self._timeout,
                "read_timeout": self._timeout,
                # Retries are the notifier's (bounded, with a deadline); the poller's GETs fail fast.
                "retry_total": 0,
            }
            from shared.adapters.tls import azure_transport

            options["transport"] = azure_transport(self._ca_bundle, timeout_seconds=self._timeout)
            self._client = EmailClient(self._endpoint, self._credential, **options)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def send(self, email: OutgoingEmail) -> str:
        client = self._get_client()
        async with _acs_errors(email.kind):
            poller = await client.begin_send(
                email.payload(),
                operation_id=email.operation_id,
                polling_interval=self._polling_interval,
            )
        try:
            async with _acs_errors(email.kind):
                result = await asyncio.wait_for(poller.result(), timeout=self._poll_timeout)
        except TimeoutError:
            # Accepted (202) but not finished yet: ACS delivers it; waiting longer would only hold
            # up the rotation.
            logger.info(
                "email %s accepted; final status not known after %.0fs", email.kind, self._poll_timeout
            )
            return "Running"
        status = str((result or {}).get("status", "Unknown"))
        if status != "Succeeded":
            raise EmailSendError(f"ACS reported the email as {status}", service=SERVICE, code=status)
        return status


class _acs_errors:  # noqa: N801 - used as a context manager
    """Translate azure-core errors into ours; the SDK's own text is dropped (it may quote a request)."""

    def __init__(self, kind: str) -> None:
        self._kind = kind

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: Any, error: BaseException | None, tb: Any) -> bool:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        if error is None or not isinstance(error, Exception) or isinstance(error, ExternalServiceError):
            return False
        message = f"Sending the {self._kind} email failed"
        if isinstance(error, ClientAuthenticationError) and getattr(error, "status_code", None) is None:
            # No HTTP status: the managed identity could not get a token.
            failure = EmailSendError(f"{message}: no token for ACS", service=SERVICE, code="NoToken")
            failure.transient = True  # the identity endpoint may answer next time
            raise failure from None
        if isinstance(error, HttpResponseError):
            status = error.status_code
            code = getattr(getattr(error, "error", None), "code", None)
            if code is None and error.response is not None:
                code = error.response.headers.get("x-ms-error-code")
            if status == 429:
                raise ThrottledError(
                    message, retry_after=_retry_after(error), service=SERVICE, status=status, code=code
                ) from None
            if status is not None and (status >= 500 or status == 408):
                raise TransientServiceError(message, service=SERVICE, status=status, code=code) from None
            if status is None or status < 400:
                # The poller surfaces a Failed operation (e.g. EmailDropped) with the poll's 200:
                # final, not retried.
                raise EmailSendError(
                    f"{message}: {code or 'operation failed'}", service=SERVICE, code=code
                ) from None
            raise EmailSendError(message, service=SERVICE, status=status, code=code) from None
        if isinstance(error, ServiceRequestError | ServiceResponseError | asyncio.TimeoutError):
            raise TransientServiceError(f"{message}: {type(error).__name__}", service=SERVICE) from None
        return False


def _retry_after(error: Any) -> float | None:
    response = getattr(error, "response", None)
    header = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(header) if header else None
    except ValueError:
        return None


def operation_id(*parts: str) -> str:
    """A stable ACS Operation-Id for one notification (so repeats are deduplicated by ACS)."""
    return str(uuid.uuid5(OPERATION_NAMESPACE, "|".join(parts)))


class EmailNotifier:
    """Rotation notices, failure alerts and threshold alerts to an application's recipients."""

    def __init__(
        self,
        transport: EmailTransport,
        *,
        sender_address: str,
        clock: Callable[[], datetime],
        events: EventRecorder | None = None,
        applications: ApplicationStore | None = None,
        retry_policy: RetryPolicy = RetryPolicy(
            attempts=4, base_delay=2.0, max_delay=15.0, max_retry_after=30.0
        ),
        deadline_seconds: float = 150.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        register_secret: Callable[[Any], None] | None = None,
    ) -> None:
        self._transport = transport
        self._sender = sender_address
        self._clock = clock
        self._events = events
        self._applications = applications
        self._policy = retry_policy
        self._deadline = deadline_seconds
        self._sleep = sleep
        if register_secret is None:
            from shared.observability import register_secret as register

            register_secret = register
        self._register_secret = register_secret

    # --- Notifier (called by the engine; an exception is recorded there, never blocks) ----------
    async def rotation_succeeded(self, app: ApplicationConfig, summary: RotationSummary) -> None:
        settings = app.notifications
        if not settings.recipients:
            return
        now = self._clock()
        errors: list[EmailSendError] = []
        if settings.notify_on_rotation:
            secret = (
                summary.secret
                if settings.include_secret_in_email and settings.acknowledge_secret_in_email_risk
                else None
            )
            if secret is not None:
                self._register_secret(secret)
            content = templates.rotation_email(
                app,
                rotation_id=summary.rotation_id,
                rotated_at=now,
                expires_at=summary.expires_at,
                key_id=summary.key_id,
                hint=summary.hint,
                integrations=summary.integrations,
                warnings=summary.warnings,
                compromised=summary.compromised,
                secret=secret,
            )
            await self._try(app, summary.rotation_id, "rotation", content, errors)
        failed = [name for name, status in summary.integrations.items() if status.result == "failed"]
        if settings.notify_on_failure and failed:
            content = templates.integrations_failed_email(
                app,
                rotation_id=summary.rotation_id,
                rotated_at=now,
                expires_at=summary.expires_at,
                key_id=summary.key_id,
                integrations=summary.integrations,
            )
            await self._try(app, summary.rotation_id, "integrations", content, errors)
        if errors:
            raise errors[0]

    async def rotation_failed(self, app: ApplicationConfig, summary: RotationSummary) -> None:
        settings = app.notifications
        if not settings.recipients or not settings.notify_on_failure:
            return
        now = self._clock()
        content = templates.rotation_failed_email(
            app,
            rotation_id=summary.rotation_id,
            error=summary.error,
            failed_at=now,
            current_expires_at=await self._current_expiry(str(app.app_id)),
            warnings=summary.warnings,
        )
        errors: list[EmailSendError] = []
        await self._try(app, summary.rotation_id, "failure", content, errors)
        if errors:
            raise errors[0]

    # --- ThresholdAlerter (called by the timer; True marks the alert sent for this secret) ------
    async def threshold_alert(self, stored: StoredApplication, now: datetime) -> bool:
        app, status = stored.config, stored.status
        settings = app.notifications
        if not settings.recipients or settings.threshold_alert_days is None:
            return True  # nobody to tell: mark it done, or the timer would ask every 15 minutes
        content = templates.threshold_email(
            app,
            now=now,
            next_rotation_at=next_update_at(app, status),
            expires_at=status.expires_at,
            alert_days=settings.threshold_alert_days,
            last_result=status.last_result,
        )
        errors: list[EmailSendError] = []
        # One alert per secret: the id names the current key, so a repeat is deduplicated by ACS.
        await self._try(app, None, "threshold", content, errors, key=status.current_key_id or "none")
        if errors:
            error = errors[0]
            # A transient failure is tried again at the next scan; one ACS refused for good is not
            # (the same message would be refused every 15 minutes until the rotation).
            await self._record(
                app,
                None,
                "notification.failed",
                f"Threshold alert email failed ({error.code or type(error).__name__}); "
                + ("the next scan tries again" if error.transient else "not retried"),
                level=LogLevel.WARNING,
                code=error.code,
            )
            return not error.transient
        return True

    # --- sending -------------------------------------------------------------------------------
    async def _try(
        self,
        app: ApplicationConfig,
        rotation_id: str | None,
        kind: str,
        content: EmailContent,
        errors: list[EmailSendError],
        *,
        key: str | None = None,
    ) -> None:
        """Send one email with bounded retries; a failure is logged and collected, not raised."""
        app_id = str(app.app_id)
        email = OutgoingEmail(
            sender=self._sender,
            to=tuple(app.notifications.recipients),
            content=content,
            operation_id=operation_id(kind, app_id, rotation_id or "", key or ""),
            kind=kind,
        )
        try:
            async with asyncio.timeout(self._deadline):
                status = await retry(
                    lambda: self._transport.send(email),
                    policy=self._policy,
                    describe=f"send {kind} email",
                    sleep=self._sleep,
                )
        except Exception as error:  # noqa: BLE001 - every failure is reported the same way
            failure = _as_send_error(error, kind)
            logger.warning(
                "%s email for %s not sent: %s (%s)",
                kind,
                app_id,
                type(error).__name__,
                failure.code or "no code",
                extra={"appId": app_id, "rotationId": rotation_id, "emailKind": kind},
            )
            errors.append(failure)
            return
        await self._record(
            app,
            rotation_id,
            "notification.sent",
            f"Emailed the {kind} {'alert' if kind != 'rotation' else 'notice'} to "
            f"{len(email.to)} recipient{'s' if len(email.to) != 1 else ''} ({status})"
            + (" with the secret" if content.contains_secret else ""),
        )

    async def _record(
        self,
        app: ApplicationConfig,
        rotation_id: str | None,
        event: str,
        message: str,
        *,
        level: LogLevel = LogLevel.INFO,
        code: str | None = None,
    ) -> None:
        if self._events is None:
            return
        await self._events.record(
            str(app.app_id), rotation_id, event, message, level=level, step="notify", code=code
        )

    async def _current_expiry(self, app_id: str) -> datetime | None:
        if self._applications is None:
            return None
        try:
            stored = await self._applications.find(app_id)
        except Exception:  # noqa: BLE001 - the alert goes out without the expiry rather than not at all
            return None
        return stored.status.expires_at if stored else None


def _as_send_error(error: BaseException, kind: str) -> EmailSendError:
    if isinstance(error, EmailSendError):
        return error
    if isinstance(error, ExternalServiceError):
        failure = EmailSendError(
            f"Sending the {kind} email failed", service=SERVICE, status=error.status, code=error.code
        )
    elif isinstance(error, TimeoutError):
        failure = EmailSendError(f"Sending the {kind} email timed out", service=SERVICE, code="Timeout")
    else:
        failure = EmailSendError(
            f"Sending the {kind} email failed", service=SERVICE, code=type(error).__name__
        )
    failure.transient = is_retryable(error) or isinstance(error, TimeoutError | ConnectionError)
    return failure


__all__ = [
    "AcsEmailTransport",
    "EmailNotifier",
    "EmailSendError",
    "EmailTransport",
    "OutgoingEmail",
    "operation_id",
]
