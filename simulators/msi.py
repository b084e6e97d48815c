"""Managed identity endpoint, App Service flavour (plain HTTP, like the real one on localhost).

azure-identity picks the App Service protocol when ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``
are set (and ``IDENTITY_SERVER_THUMBPRINT`` is not). Both the sync credential (through MSAL's
``ManagedIdentityClient``) and the aio one (its own pipeline) then send::

    GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=<scope minus /.default>[&client_id=..]
    X-IDENTITY-HEADER: {IDENTITY_HEADER}

and read ``access_token``, ``expires_on`` (Unix seconds, a string on App Service), ``resource``
(the aio client caches by it: a missing ``resource`` is a KeyError) and ``token_type``.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from .base import JsonDict, SimClock, SimRequest, SimResponse, SimulatorServer, TokenIssuer, json_response

TOKEN_PATH = "/msi/token"
API_VERSION = "2019-08-01"
DEFAULT_PRINCIPAL = "rotator"
DEFAULT_CLIENT_ID = "00000000-0000-0000-0000-0000000a11ce"


class ManagedIdentitySimulator(SimulatorServer):
    """Issues tokens for the app's own identity (principal ``rotator``) for any resource.

    Any ``client_id`` / ``object_id`` / ``mi_res_id`` is accepted (a user-assigned identity's
    id is echoed back as ``client_id``); the switch ``deny`` refuses every token request.
    """

    kind = "msi"

    def __init__(
        self,
        *,
        issuer: TokenIssuer,
        identity_header: str | None = None,
        principal: str = DEFAULT_PRINCIPAL,
        client_id: str = DEFAULT_CLIENT_ID,
        clock: SimClock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "msi",
    ) -> None:
        super().__init__(name=name, host=host, port=port, ssl_context=None, clock=clock)
        self.issuer = issuer
        self.identity_header = identity_header or secrets.token_hex(16)
        self.principal = principal
        self.client_id = client_id
        self.deny = False
        self.route("GET", TOKEN_PATH, self._token)

    @property
    def endpoint(self) -> str:
        """The value for ``IDENTITY_ENDPOINT``."""
        return self.url + TOKEN_PATH

    def environment(self) -> dict[str, str]:
        """Environment variables that make azure-identity use this endpoint."""
        return {"IDENTITY_ENDPOINT": self.endpoint, "IDENTITY_HEADER": self.identity_header}

    def endpoints(self) -> JsonDict:
        return {"msi_endpoint": self.endpoint, "msi_header": self.identity_header}

    def switches(self) -> JsonDict:
        data = super().switches()
        data["deny"] = self.deny
        return data

    def apply_switch(self, name: str, value: Any) -> bool:
        if name == "deny":
            self.deny = bool(value)
            return True
        return False

    def reset(self) -> None:
        with self._lock:
            super().reset()
            self.deny = False

    def state(self) -> JsonDict:
        return {
            "endpoint": self.endpoint,
            "principal": self.principal,
            "clientId": self.client_id,
            "tokens": [
                {"principal": t.principal, "audience": t.audience, "expiresOn": t.expires_on}
                for t in self.issuer.issued()
                if t.principal == self.principal
            ],
            "switches": self.switches(),
        }

    @staticmethod
    def _error(status: int, message: str) -> SimResponse:
        # App Service's error shape (MSAL turns it into "invalid_scope: <statusCode>, <message>").
        return json_response(
            status, {"statusCode": status, "message": message, "correlationId": secrets.token_hex(8)}
        )

    def _token(self, request: SimRequest) -> SimResponse:
        header = request.header("x-identity-header") or ""
        if not hmac.compare_digest(header.encode(), self.identity_header.encode()):
            return self._error(401, "The X-IDENTITY-HEADER is missing or incorrect.")
        if request.arg("api-version") != API_VERSION:
            return self._error(
                400, f"Unsupported api-version {request.arg('api-version')!r}; use {API_VERSION}."
            )
        resource = request.arg("resource")
        if not resource:
            return self._error(400, "The 'resource' query parameter is required.")
        if self.deny:
            return self._error(400, "Identity not found or not allowed.")
        client_id = request.arg("client_id") or self.client_id
        issued = self.issuer.issue(self.principal, resource, client_id=client_id)
        request.principal = self.principal
        return json_response(
            200,
            {
                "access_token": issued.token,
                "expires_on": str(issued.expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id,
            },
        )
