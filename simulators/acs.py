"""Azure Communication Services Email simulator (HTTPS), as azure-communication-email 1.x uses it.

Wire behaviour (azure-rest-api-specs ``communication/data-plane/Email/stable/2023-03-31`` and
``2025-09-01``, the versions the SDK sends):

* ``POST /emails:send?api-version=...`` with an Entra bearer token for
  ``https://communication.azure.com`` (the SDK asks for ``https://communication.azure.com//.default``).
  The body is validated (sender, subject, a body, at least one recipient); the answer is
  ``202 {"id", "status": "Running"}`` with ``Operation-Location`` (the operation URL) and
  ``retry-after`` (seconds until the client should poll).
* An ``Operation-Id`` header names the operation. Sending again with the same id queues nothing
  new and answers with that operation: callers use it as an idempotency key, so a retried send
  never mails twice.
* ``GET /emails/operations/{id}?api-version=...`` answers ``Running`` (with ``retry-after``)
  until the operation has been polled ``polls_until_done`` times, then ``Succeeded`` (or
  ``Failed`` with ``EmailDropped`` when the ``fail_delivery`` switch was on for that send).

Errors use the service's shape, ``{"error": {"code", "message"}}`` plus ``x-ms-error-code``.

Every accepted message lands in the outbox (``outbox()`` in Python, ``GET /_sim/outbox`` and
``GET /_sim/state`` over HTTP) with both bodies, so tests and the demo can read what was sent.

Switches (``set_switches(...)`` / ``POST /_sim/switches``): ``retry_after_seconds``,
``polls_until_done``, ``fail_delivery`` (next N sends end ``Failed``), ``senders`` (allowed
sender addresses; empty list = any), plus the base ``throttle`` (429 + Retry-After),
``fail_next`` (5xx), ``latency_seconds`` and ``clock_offset_seconds``.
"""

from __future__ import annotations

import re
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any

from .base import (
    FaultRule,
    JsonDict,
    SimClock,
    SimHTTPError,
    SimRequest,
    SimResponse,
    SimulatorServer,
    TokenIssuer,
    json_response,
)

ACS_RESOURCE = "https://communication.azure.com"
API_VERSIONS = frozenset({"2023-03-31", "2024-07-01-preview", "2025-01-15-preview", "2025-09-01"})
# The service caps a request (attachments included) at 10 MB.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
MAX_RECIPIENTS = 50
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class SentEmail:
    """One accepted message, as the simulator holds it."""

    operation_id: str
    sender: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    plain_text: str | None
    html: str | None
    headers: dict[str, str]
    reply_to: list[str]
    tracking_disabled: bool | None
    api_version: str
    accepted_at: str
    principal: str | None
    status: str = "Running"
    polls: int = 0
    fail: bool = False
    error: JsonDict | None = None
    sends: int = 1  # how many POSTs carried this Operation-Id (1 unless a client retried)

    @property
    def recipients(self) -> list[str]:
        return [*self.to, *self.cc, *self.bcc]

    def operation_json(self) -> JsonDict:
        data: JsonDict = {"id": self.operation_id, "status": self.status}
        if self.error is not None:
            data["error"] = self.error
        return data

    def state_json(self) -> JsonDict:
        return {
            "operationId": self.operation_id,
            "status": self.status,
            "senderAddress": self.sender,
            "to": self.to,
            "cc": self.cc,
            "bcc": self.bcc,
            "subject": self.subject,
            "plainText": self.plain_text,
            "html": self.html,
            "headers": self.headers,
            "replyTo": self.reply_to,
            "userEngagementTrackingDisabled": self.tracking_disabled,
            "apiVersion": self.api_version,
            "acceptedAt": self.accepted_at,
            "principal": self.principal,
            "sends": self.sends,
            "error": self.error,
        }


@dataclass
class _Switches:
    retry_after_seconds: int = 5
    polls_until_done: int = 1
    fail_delivery: int = 0
    senders: list[str] = field(default_factory=list)


class AcsEmailSimulator(SimulatorServer):
    """ACS Email data plane: send (a long-running operation) and poll, with an outbox."""

    kind = "acs"

    def __init__(
        self,
        *,
        issuer: TokenIssuer,
        ssl_context: ssl.SSLContext | None,
        clock: SimClock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "acs",
    ) -> None:
        super().__init__(name=name, host=host, port=port, ssl_context=ssl_context, clock=clock)
        self.issuer = issuer
        self._switches = _Switches()
        self._operations: dict[str, SentEmail] = {}
        self._outbox: list[SentEmail] = []

        self.route("POST", r"/emails:send", self._send)
        self.route("GET", r"/emails/operations/(?P<operation_id>[^/]+)", self._get_operation)
        self.admin_route("GET", "/outbox", self._admin_outbox)
        self.admin_route("DELETE", "/outbox", self._admin_clear_outbox)

    # ----------------------------------------------------------------- Python admin API

    def outbox(self) -> list[SentEmail]:
        """Accepted messages, oldest first (one entry per Operation-Id)."""
        with self._lock:
            return list(self._outbox)

    def clear_outbox(self) -> None:
        with self._lock:
            self._outbox.clear()
            self._operations.clear()

    def operation(self, operation_id: str) -> SentEmail | None:
        with self._lock:
            return self._operations.get(operation_id.lower())

    @property
    def retry_after_seconds(self) -> int:
        return self._switches.retry_after_seconds

    @property
    def polls_until_done(self) -> int:
        return self._switches.polls_until_done

    def fail_delivery_next(self, count: int = 1) -> None:
        """The next ``count`` accepted sends end in ``Failed`` (``EmailDropped``)."""
        with self._lock:
            self._switches.fail_delivery += count

    def state(self) -> JsonDict:
        with self._lock:
            return {
                "endpoint": self.url if self.running else None,
                "outbox": self._outbox_json(),
                "switches": self.switches(),
            }

    def reset(self) -> None:
        with self._lock:
            super().reset()
            self._switches = _Switches()
            self._operations.clear()
            self._outbox.clear()

    def switches(self) -> JsonDict:
        with self._lock:
            data = super().switches()
            data.update(
                {
                    "retry_after_seconds": self._switches.retry_after_seconds,
                    "polls_until_done": self._switches.polls_until_done,
                    "fail_delivery": self._switches.fail_delivery,
                    "senders": list(self._switches.senders),
                }
            )
            return data

    def apply_switch(self, name: str, value: Any) -> bool:
        if name == "retry_after_seconds":
            self._switches.retry_after_seconds = max(0, int(value or 0))
        elif name == "polls_until_done":
            self._switches.polls_until_done = max(0, int(value or 0))
        elif name == "fail_delivery":
            self._switches.fail_delivery = max(0, int(value or 0))
        elif name == "senders":
            if value is None:
                value = []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("senders: expected a list of addresses")
            self._switches.senders = [v.lower() for v in value]
        else:
            return False
        return True

    def endpoints(self) -> JsonDict:
        return {"acs_endpoint": self.url}

    def app_settings(self, sender: str = "DoNotReply@rotator.simulator.local") -> dict[str, str]:
        """Settings that point the rotator's email at this simulator (names from shared/config.py)."""
        return {"ROTATOR_ACS_ENDPOINT": self.url, "ROTATOR_EMAIL_SENDER": sender}

    # ----------------------------------------------------------------- wire helpers

    @staticmethod
    def acs_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> SimResponse:
        merged = {"x-ms-error-code": code}
        merged.update(headers or {})
        return json_response(status, {"error": {"code": code, "message": message}}, merged)

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        authorization = request.header("authorization") or ""
        if authorization.upper().startswith("HMAC-SHA256"):
            # The deployment disables local (access-key) auth: only Entra tokens are accepted.
            return self.acs_error(401, "Unauthorized", "Local authentication is disabled for this resource.")
        check = self.issuer.check(authorization, [ACS_RESOURCE])
        if not check.ok or check.token is None:
            message = {
                "missing": "Authorization header is missing.",
                "expired": "The access token has expired.",
                "audience": f"The access token audience is invalid; expected {ACS_RESOURCE}.",
            }.get(check.error or "", "The access token is invalid.")
            return self.acs_error(401, "Unauthorized", message)
        request.principal = check.token.principal
        version = request.arg("api-version")
        if not version:
            return self.acs_error(
                400, "MissingApiVersionParameter", "The api-version query parameter is required."
            )
        if version not in API_VERSIONS:
            return self.acs_error(
                400,
                "UnsupportedApiVersion",
                f"The api-version '{version}' is not supported; use one of {', '.join(sorted(API_VERSIONS))}.",
            )
        return None

    def fault_response(self, request: SimRequest, rule: FaultRule) -> SimResponse:
        headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
        if rule.status == 429:
            return self.acs_error(429, "TooManyRequests", "Rate limit exceeded; retry later.", headers)
        code = {
            500: "InternalServerError",
            502: "BadGateway",
            503: "ServiceUnavailable",
            504: "GatewayTimeout",
        }
        return self.acs_error(
            rule.status, code.get(rule.status, "Error"), "The service is temporarily unavailable.", headers
        )

    def not_found(self, request: SimRequest) -> SimResponse:
        return self.acs_error(404, "NotFound", f"No route for {request.path}.")

    def _operation_location(self, request: SimRequest, operation_id: str) -> str:
        version = request.arg("api-version") or "2023-03-31"
        return f"{request.base_url}/emails/operations/{operation_id}?api-version={version}"

    def _running_headers(self, request: SimRequest, operation_id: str) -> dict[str, str]:
        return {
            "Operation-Location": self._operation_location(request, operation_id),
            "retry-after": str(self._switches.retry_after_seconds),
        }

    # ----------------------------------------------------------------- handlers

    def _send(self, request: SimRequest) -> SimResponse:
        if len(request.body) > MAX_REQUEST_BYTES:
            return self.acs_error(413, "RequestTooLarge", "The request exceeds the 10 MB limit.")
        try:
            body = request.json()
        except ValueError:
            return self.acs_error(400, "BadRequest", "The request body is not valid JSON.")
        if not isinstance(body, dict):
            return self.acs_error(400, "BadRequest", "The request body must be a JSON object.")
        operation_id = (request.header("operation-id") or "").strip()
        if operation_id:
            try:
                operation_id = str(uuid.UUID(operation_id))
            except ValueError:
                return self.acs_error(400, "InvalidOperationId", "Operation-Id must be a GUID.")
            existing = self._operations.get(operation_id)
            if existing is not None:
                # Same Operation-Id: the same operation, nothing queued again.
                existing.sends += 1
                headers = self._running_headers(request, operation_id) if existing.status == "Running" else {}
                return json_response(202, existing.operation_json(), headers)
        else:
            operation_id = str(uuid.uuid4())
        message = self._validated(body, request, operation_id)
        if self._switches.fail_delivery > 0:
            self._switches.fail_delivery -= 1
            message.fail = True
        self._operations[operation_id] = message
        self._outbox.append(message)
        return json_response(202, message.operation_json(), self._running_headers(request, operation_id))

    def _validated(self, body: JsonDict, request: SimRequest, operation_id: str) -> SentEmail:
        def bad(code: str, text: str) -> SimHTTPError:
            return SimHTTPError(self.acs_error(400, code, text))

        sender = body.get("senderAddress")
        if not isinstance(sender, str) or not _ADDRESS.match(sender):
            raise bad("InvalidSenderAddress", "senderAddress must be an email address.")
        if self._switches.senders and sender.lower() not in self._switches.senders:
            raise bad("InvalidSenderUserName", "senderAddress is not a verified sender of a linked domain.")
        content = body.get("content")
        if (
            not isinstance(content, dict)
            or not isinstance(content.get("subject"), str)
            or not content["subject"]
        ):
            raise bad("EmptySubject", "content.subject is required.")
        plain_text, html = content.get("plainText"), content.get("html")
        if not plain_text and not html:
            raise bad("EmptyContent", "content.plainText or content.html is required.")
        recipients = body.get("recipients")
        if not isinstance(recipients, dict):
            raise bad("EmptyRecipients", "recipients.to is required.")
        lists: dict[str, list[str]] = {}
        for kind in ("to", "cc", "bcc"):
            entries = recipients.get(kind) or []
            if not isinstance(entries, list):
                raise bad("InvalidRecipients", f"recipients.{kind} must be a list.")
            addresses = []
            for entry in entries:
                address = entry.get("address") if isinstance(entry, dict) else None
                if not isinstance(address, str) or not _ADDRESS.match(address):
                    raise bad("InvalidEmailAddress", f"recipients.{kind} holds an invalid address.")
                addresses.append(address)
            lists[kind] = addresses
        if not lists["to"] and not lists["cc"] and not lists["bcc"]:
            raise bad("EmptyRecipients", "At least one recipient is required.")
        if sum(len(v) for v in lists.values()) > MAX_RECIPIENTS:
            raise bad("TooManyRecipients", f"At most {MAX_RECIPIENTS} recipients are allowed.")
        headers = body.get("headers") or {}
        reply_to = [e.get("address", "") for e in body.get("replyTo") or [] if isinstance(e, dict)]
        return SentEmail(
            operation_id=operation_id,
            sender=sender,
            to=lists["to"],
            cc=lists["cc"],
            bcc=lists["bcc"],
            subject=str(content["subject"]),
            plain_text=plain_text if isinstance(plain_text, str) else None,
            html=html if isinstance(html, str) else None,
            headers={str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {},
            reply_to=reply_to,
            tracking_disabled=body.get("userEngagementTrackingDisabled"),
            api_version=request.arg("api-version") or "",
            accepted_at=self.clock.now().isoformat(),
            principal=request.principal,
        )

    def _get_operation(self, request: SimRequest) -> SimResponse:
        operation_id = request.params["operation_id"].lower()
        message = self._operations.get(operation_id)
        if message is None:
            return self.acs_error(404, "NotFound", f"Operation '{operation_id}' was not found.")
        if message.status == "Running":
            message.polls += 1
            if message.polls > self._switches.polls_until_done:
                if message.fail:
                    message.status = "Failed"
                    message.error = {
                        "code": "EmailDropped",
                        "message": "Email was dropped after several attempts to deliver.",
                    }
                else:
                    message.status = "Succeeded"
        headers = (
            {"retry-after": str(self._switches.retry_after_seconds)} if message.status == "Running" else {}
        )
        return json_response(200, message.operation_json(), headers)

    def _outbox_json(self) -> list[JsonDict]:
        with self._lock:
            return [message.state_json() for message in self._outbox]

    def _admin_outbox(self, request: SimRequest) -> SimResponse:
        return json_response(200, self._outbox_json())

    def _admin_clear_outbox(self, request: SimRequest) -> SimResponse:
        self.clear_outbox()
        return SimResponse(204)
