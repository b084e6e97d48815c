"""Azure Resource Manager over plain REST, with the rotator's managed identity.

Shared by the integrations that act on ARM resources (Logic App connections, App Service, Automation,
Key Vault role grants). No azure-mgmt-* dependency: azure-mgmt-web ships no ``Microsoft.Web/connections``
operations, and generic REST is simpler to simulate and test.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.adapters.http import clip, retry_after_seconds
from shared.errors import ExternalServiceError, RotationError, ThrottledError, TransientServiceError

if TYPE_CHECKING:
    import httpx

    from shared.domain.secret import SecretValue

WRITE_METHODS = frozenset({"PUT", "POST", "PATCH", "DELETE"})
logger = logging.getLogger("rotator.arm")

ARM_SERVICE = "arm"
_ASYNC_DONE = {"succeeded"}
_ASYNC_FAILED = {"failed", "canceled", "cancelled"}


@dataclass(frozen=True)
class ArmTarget:
    """What an ARM call is about, for error messages (never a secret)."""

    resource_id: str
    label: str  # e.g. "API connection 'payroll-kv'"
    role: str  # the built-in role the rotator's identity needs on the resource
    step: str = "deploy"
    role_note: str | None = None  # an alternative to that role, if any

    def at(self, step: str) -> ArmTarget:
        return replace(self, step=step)


def resource_name(resource_id: str) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


def arm_error(response: httpx.Response) -> tuple[str | None, str]:
    """ARM's ``{"error": {"code", "message"}}`` (some providers omit the wrapper)."""
    try:
        payload = response.json()
    except ValueError:
        return None, response.reason_phrase or f"HTTP {response.status_code}"
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            code = error.get("code")
            message = error.get("message") or response.reason_phrase
            return (str(code) if code else None), str(message or "")
    return None, response.reason_phrase or f"HTTP {response.status_code}"


class ArmClient:
    """Bearer-token REST calls to ARM that translate failures into the rotator's errors.

    * 429 -> ``ThrottledError`` with the ``Retry-After`` seconds; 5xx, 409 (another operation in
      progress), timeouts and connection errors -> ``TransientServiceError`` (the engine retries).
    * 403 -> ``RotationError`` naming the role the rotator's identity needs on the resource.
    * 404 and other 4xx -> ``RotationError`` with ARM's code and message (any secret value scrubbed).
    * 201/202 with ``Azure-AsyncOperation`` or ``Location`` -> ``wait()`` polls, bounded by
      ``lro_timeout``, honouring ``Retry-After``; the token is only ever sent to the ARM host.
    """

    def __init__(
        self,
        services: Any,
        *,
        redact: SecretValue | None = None,
        lro_timeout: float = 120.0,
        max_poll_delay: float = 10.0,
        default_poll_delay: float = 2.0,
    ) -> None:
        self._services = services
        self._base = str(services.settings.arm_url).rstrip("/")
        self._scope = str(services.settings.arm_scope)
        self._redact = redact
        self._lro_timeout = lro_timeout
        self._max_poll_delay = max_poll_delay
        self._default_poll_delay = default_poll_delay

    # ----------------------------------------------------------------- requests

    def url(self, path_or_url: str, api_version: str | None) -> str:
        if path_or_url.startswith(("https://", "http://")):
            self._check_origin(path_or_url)
            return path_or_url
        url = f"{self._base}{path_or_url}"
        return f"{url}?api-version={api_version}" if api_version else url

    def _check_origin(self, url: str) -> None:
        # A poll URL comes from a response header: never send the bearer token to another host.
        theirs, ours = urlsplit(url), urlsplit(self._base)
        if (theirs.scheme, theirs.netloc.lower()) != (ours.scheme, ours.netloc.lower()):
            raise RotationError(
                "ARM answered with a polling URL on another host; the rotator does not follow it",
                step="deploy",
                code="ArmUnexpectedHost",
            )

    async def sleep(self, seconds: float) -> None:
        await self._services.sleep(seconds)

    async def _headers(self) -> dict[str, str]:
        token = await self._services.credential.get_token(self._scope)
        return {"Authorization": f"Bearer {token.token}", "Accept": "application/json"}

    async def request(
        self,
        method: str,
        path_or_url: str,
        api_version: str | None,
        target: ArmTarget,
        *,
        action: str,
        body: Any = None,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        """One call; returns 2xx answers and the statuses in ``accept``, raises for the rest."""
        import httpx

        url = self.url(path_or_url, api_version)
        headers = await self._headers()
        budget = self._services.arm_write_budget if method.upper() in WRITE_METHODS else None
        if budget is not None:
            # ARM's write quota is per principal: one budget for every instance.
            await budget.acquire()
        try:
            response: httpx.Response = await self._services.http.request(
                method, url, json=body, headers=headers, follow_redirects=False
            )
        except httpx.TimeoutException as error:
            raise TransientServiceError(
                f"ARM call to {action} {target.label} timed out",
                service=ARM_SERVICE,
                resource=target.resource_id,
                error=type(error).__name__,
            ) from None
        except httpx.TransportError as error:
            raise TransientServiceError(
                f"ARM call to {action} {target.label} failed to connect",
                service=ARM_SERVICE,
                resource=target.resource_id,
                error=type(error).__name__,
            ) from None
        status = response.status_code
        logger.info("ARM %s %s -> %d", method, target.label, status)
        if 200 <= status < 300 or status in accept:
            return response
        if status == 429 and budget is not None:
            delay = retry_after_seconds(response.headers)
            if delay:
                await budget.pause(delay)
        self._raise_for(response, target, action)
        raise AssertionError("unreachable")

    async def json(
        self,
        method: str,
        path_or_url: str,
        api_version: str | None,
        target: ArmTarget,
        *,
        action: str,
        body: Any = None,
    ) -> dict[str, Any]:
        response = await self.request(method, path_or_url, api_version, target, action=action, body=body)
        return _json_object(response)

    def scrub(self, text: str, limit: int = 300) -> str:
        """A service's message made safe for logs: the secret (if echoed) removed, length capped."""
        return clip(text, self._redact, limit=limit)

    def _raise_for(self, response: httpx.Response, target: ArmTarget, action: str) -> None:
        status = response.status_code
        code, message = arm_error(response)
        message = self.scrub(message)
        what = f"ARM refused to {action} {target.label}"
        context: dict[str, Any] = {"service": ARM_SERVICE, "status": status, "code": code}
        if status == 429:
            raise ThrottledError(
                f"ARM throttled the call to {action} {target.label}",
                retry_after=retry_after_seconds(response.headers),
                resource=target.resource_id,
                **context,
            )
        if status >= 500 or status in (408, 409):
            # 409 from ARM is almost always "another operation is in progress on this resource".
            raise TransientServiceError(
                f"{what} for now: {status} {code or 'error'}: {message}",
                resource=target.resource_id,
                **context,
            )
        if status == 403:
            alternative = f" ({target.role_note})" if target.role_note else ""
            raise RotationError(
                f"Access denied to {target.label} ({target.resource_id}): the rotator's identity needs the "
                f"'{target.role}' role on it{alternative}",
                step=target.step,
                code=code or "AuthorizationFailed",
            )
        if status == 401:
            raise ExternalServiceError(
                f"ARM did not accept the rotator's token to {action} {target.label}: {message}",
                resource=target.resource_id,
                **context,
            )
        if status == 404:
            raise RotationError(
                f"{target.label} was not found ({target.resource_id})",
                step=target.step,
                code=code or "ResourceNotFound",
            )
        raise RotationError(
            f"{what}: {code or status}: {message}", step=target.step, code=code or str(status)
        )

    # ----------------------------------------------------------------- long-running operations

    async def wait(self, response: httpx.Response, target: ArmTarget, *, action: str) -> httpx.Response:
        """Follow a 201/202 answer to its end; returns the final response (the first if synchronous)."""
        if response.status_code not in (201, 202):
            return response
        async_url = response.headers.get("Azure-AsyncOperation")
        location = response.headers.get("Location")
        poll_url = async_url or location
        if not poll_url:
            return response
        self._check_origin(poll_url)
        deadline = time.monotonic() + self._lro_timeout
        current = response
        while True:
            delay = retry_after_seconds(current.headers)
            delay = self._default_poll_delay if delay is None else delay
            delay = min(delay, self._max_poll_delay)
            if time.monotonic() + delay > deadline:
                raise TransientServiceError(
                    f"ARM is still working to {action} {target.label} after {self._lro_timeout:.0f}s",
                    service=ARM_SERVICE,
                    resource=target.resource_id,
                )
            await self._services.sleep(delay)
            current = await self.request("GET", poll_url, None, target, action=f"follow {action}")
            if async_url:
                payload = _json_object(current)
                state = str(payload.get("status") or "").lower()
                if state in _ASYNC_DONE:
                    return current
                if state in _ASYNC_FAILED:
                    error = obj(payload.get("error"))
                    code = str(error.get("code") or state.capitalize())
                    message = self.scrub(str(error.get("message") or ""))
                    raise RotationError(
                        f"ARM could not {action} {target.label}: {code}: {message}".rstrip(": "),
                        step=target.step,
                        code=code,
                    )
            elif current.status_code != 202:
                return current


def obj(value: Any) -> dict[str, Any]:
    """A JSON value narrowed to an object (``{}`` for anything else)."""
    return value if isinstance(value, dict) else {}


def _json_object(response: httpx.Response) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
