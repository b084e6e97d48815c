"""Webhook receiver simulator (HTTPS): records deliveries and checks the rotator's signature.

``add_hook()`` registers a receiver at ``/hooks/{token}``; its URL (``hook.url``) is the secret the
operator stores in the rotator's vault, and, by the rotator's contract (``shared.integrations.automation``),
also the HMAC key unless a separate ``signing_key`` is given. Each POST is checked as a careful receiver
would, by the Standard Webhooks specification (standardwebhooks.com; the signature recomputed with its
reference library, PyPI ``standardwebhooks``): ``webhook-timestamp`` within ``tolerance_seconds`` of
the simulated clock, ``webhook-signature: v1,<base64 HMAC-SHA256(key, "<webhook-id>.<timestamp>.<body>")>``
compared in constant time, and a signature seen before refused as a replay (409). A bad or missing
signature answers 401.
Accepted deliveries answer ``answer_status`` (default 200).

Switches: ``answer_status`` (e.g. 400 or 410 for a permanent refusal), ``redirect_to`` (answer 307 with
that ``Location``; the rotator must not follow it), ``tolerance_seconds``, and the base ``throttle``
(429 + ``Retry-After``), ``fail_next`` (5xx) and ``latency_seconds``. Every delivery, secret included,
is visible through ``deliveries()`` and ``GET /_sim/state``.
"""

from __future__ import annotations

import hmac
import json
import secrets
import ssl
from dataclasses import dataclass, field
from typing import Any

from .base import (
    JsonDict,
    SimClock,
    SimRequest,
    SimResponse,
    SimulatorServer,
    cast_json_dict,
    empty_response,
    json_response,
)

ID_HEADER = "webhook-id"
SIGNATURE_HEADER = "webhook-signature"
TIMESTAMP_HEADER = "webhook-timestamp"


@dataclass
class Delivery:
    hook: str
    headers: dict[str, str]
    body: bytes
    payload: Any
    signature_valid: bool
    timestamp_valid: bool
    accepted: bool
    status: int

    def state_json(self) -> JsonDict:
        return {
            "hook": self.hook,
            "headers": self.headers,
            "payload": self.payload,
            "signatureValid": self.signature_valid,
            "timestampValid": self.timestamp_valid,
            "accepted": self.accepted,
            "status": self.status,
        }


@dataclass
class Hook:
    token: str
    base_url: str
    signing_key: str | None = None
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.base_url}/hooks/{self.token}"

    @property
    def key(self) -> bytes:
        return (self.signing_key or self.url).encode("utf-8")


class WebhookSimulator(SimulatorServer):
    kind = "webhook"

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None,
        clock: SimClock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "webhook",
    ) -> None:
        super().__init__(name=name, host=host, port=port, ssl_context=ssl_context, clock=clock)
        self.hooks: dict[str, Hook] = {}
        self._seen: set[str] = set()
        self._set_defaults()
        self.route("POST", r"/hooks/(?P<token>[A-Za-z0-9_-]+)", self._receive)
        self.admin_route("POST", "/hooks", self._admin_add_hook)

    def _set_defaults(self) -> None:
        self.answer_status = 200
        self.redirect_to: str | None = None
        self.tolerance_seconds = 300

    def _admin_add_hook(self, request: SimRequest) -> SimResponse:
        body = cast_json_dict(request.json()) if request.body else {}
        hook = self.add_hook(signing_key=body.get("signingKey"))
        return json_response(201, {"url": hook.url})

    # ----------------------------------------------------------------- Python admin API

    def add_hook(self, *, signing_key: str | None = None, token: str | None = None) -> Hook:
        """A receiver; the server must be running (its URL includes the port). ``token``: restore one."""
        hook = Hook(token or secrets.token_urlsafe(24), self.url, signing_key)
        with self._lock:
            self.hooks[hook.token] = hook
        return hook

    def deliveries(self, hook: Hook | None = None) -> list[Delivery]:
        with self._lock:
            hooks = [hook] if hook is not None else list(self.hooks.values())
            return [d for h in hooks for d in h.deliveries]

    # ----------------------------------------------------------------- switches, state, reset

    def apply_switch(self, name: str, value: Any) -> bool:
        if name == "answer_status":
            self.answer_status = int(value or 200)
        elif name == "redirect_to":
            self.redirect_to = str(value) if value else None
        elif name == "tolerance_seconds":
            self.tolerance_seconds = int(value)
        else:
            return False
        return True

    def switches(self) -> JsonDict:
        data = super().switches()
        data.update(
            {
                "answer_status": self.answer_status,
                "redirect_to": self.redirect_to,
                "tolerance_seconds": self.tolerance_seconds,
            }
        )
        return data

    def state(self) -> JsonDict:
        with self._lock:
            return {
                "hooks": {
                    token: {"url": hook.url, "deliveries": [d.state_json() for d in hook.deliveries]}
                    for token, hook in self.hooks.items()
                },
                "switches": self.switches(),
            }

    def reset(self) -> None:
        with self._lock:
            super().reset()
            self.hooks.clear()
            self._seen.clear()
            self._set_defaults()

    def endpoints(self) -> JsonDict:
        return {"webhook_url": self.url}

    # ----------------------------------------------------------------- receiving

    def _receive(self, request: SimRequest) -> SimResponse:
        hook = self.hooks.get(request.params["token"])
        if hook is None:
            return json_response(404, {"error": "unknown hook"})
        timestamp = request.header(TIMESTAMP_HEADER) or ""
        given = request.header(SIGNATURE_HEADER) or ""
        signature_valid = _signature_matches(
            hook.key, request.header(ID_HEADER) or "", timestamp, request.body, given
        )
        try:
            skew = abs(self.clock.timestamp() - int(timestamp))
            timestamp_valid = skew <= self.tolerance_seconds
        except ValueError:
            timestamp_valid = False
        try:
            payload = json.loads(request.body) if request.body else None
        except ValueError:
            payload = None
        replay = signature_valid and given in self._seen
        if not (signature_valid and timestamp_valid):
            status, response = 401, json_response(401, {"error": "invalid signature or timestamp"})
        elif replay:
            status, response = 409, json_response(409, {"error": "replayed delivery"})
        elif self.redirect_to:
            status, response = 307, empty_response(307, {"Location": self.redirect_to})
        else:
            status = self.answer_status
            response = json_response(status, {"received": status < 300})
        if signature_valid and not replay:
            self._seen.add(given)
        hook.deliveries.append(
            Delivery(
                hook=hook.token,
                headers=dict(request.headers),
                body=request.body,
                payload=payload,
                signature_valid=signature_valid,
                timestamp_valid=timestamp_valid,
                accepted=200 <= status < 300,
                status=status,
            )
        )
        return response


def _signature_matches(key: bytes, message_id: str, timestamp: str, body: bytes, given: str) -> bool:
    """Whether any ``v1,`` signature in ``given`` is the Standard Webhooks signature of the message."""
    import base64
    from datetime import UTC, datetime

    from standardwebhooks.webhooks import Webhook

    if not (message_id and timestamp.isdigit() and given):
        return False
    text = key.decode("utf-8", "replace")
    webhook = Webhook(text if text.startswith("whsec_") else key)
    try:
        expected = webhook.sign(message_id, datetime.fromtimestamp(int(timestamp), UTC), body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, OverflowError):
        return False
    expected_bytes = base64.b64decode(expected.split(",", 1)[1])
    for candidate in given.split(" "):
        version, _, value = candidate.partition(",")
        try:
            if version == "v1" and hmac.compare_digest(base64.b64decode(value), expected_bytes):
                return True
        except ValueError:
            continue
    return False
