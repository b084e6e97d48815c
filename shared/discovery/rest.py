"""One read-only GET against a management API, with its failures in the rotator's error catalogue,
and the opaque continuation tokens the pickers hand out.

Reads are not retried here: a picker is interactive, and the portal may ask again (a 429 or 5xx
surfaces as ``ThrottledError`` / ``TransientServiceError``). The timeout is the shared HTTP client's.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.adapters.http import retry_after_seconds
from shared.errors import (
    ExternalServiceError,
    FieldProblem,
    NotFoundError,
    PermissionMissingError,
    ThrottledError,
    TransientServiceError,
    ValidationError,
)

if TYPE_CHECKING:
    import httpx

MAX_TOKEN_LENGTH = 4096


@dataclass(frozen=True)
class Answer:
    """A JSON answer and the response headers a pager may need (``x-ms-continuationtoken``)."""

    body: Any
    headers: dict[str, str]


async def get_json(
    http: httpx.AsyncClient,
    url: str,
    *,
    method: str = "GET",
    params: dict[str, str] | None,
    headers: dict[str, str],
    service: str,
    what: str,
    permission: str,
) -> Answer:
    """``GET url`` (or a read-only ``POST`` list action); 401/403 -> ``PermissionMissingError(permission)``, 400/404 -> ``NotFoundError``,
    429 -> ``ThrottledError``, 5xx / timeouts / connection errors -> ``TransientServiceError``.

    ``what`` names the thing read in messages ("Key Vaults of subscription ..."); no response body
    text is quoted (it may echo the request)."""
    import httpx

    try:
        response = await http.request(method, url, params=params, headers=headers, follow_redirects=False)
    except httpx.TimeoutException:
        raise TransientServiceError(
            f"{service} did not answer in time while listing {what}", service=service
        ) from None
    except httpx.TransportError as error:
        raise TransientServiceError(
            f"Could not reach {service} to list {what} ({type(error).__name__})", service=service
        ) from None
    status = response.status_code
    content_type = response.headers.get("content-type", "").lower()
    # Azure DevOps answers an unauthenticated call with 203 and a sign-in page.
    if status in (401, 403) or status == 203 or (status == 200 and "html" in content_type):
        raise PermissionMissingError(
            f"The rotator may not list {what}", permission=permission, service=service, status=status
        )
    if status in (400, 404):
        # What was asked for does not exist there (or is not a valid name there): not a failure of ours.
        raise NotFoundError(f"{what} not found")
    if status == 429:
        raise ThrottledError(
            f"{service} throttled listing {what}",
            retry_after=retry_after_seconds(response.headers),
            service=service,
            status=status,
        )
    if status >= 500:
        raise TransientServiceError(
            f"{service} failed listing {what} ({status})", service=service, status=status
        )
    if not 200 <= status < 300:
        raise ExternalServiceError(
            f"{service} refused listing {what} ({status})", service=service, status=status
        )
    try:
        body = response.json() if response.content.strip() else None
    except ValueError:
        raise ExternalServiceError(
            f"{service} answered with invalid JSON listing {what}", service=service
        ) from None
    return Answer(body, {key.lower(): value for key, value in response.headers.items()})


def encode_token(kind: str, value: str) -> str:
    """An opaque continuation token: which picker it belongs to and the service's own cursor."""
    raw = json.dumps({"k": kind, "v": value}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_token(token: str | None, kind: str) -> str | None:
    """The service cursor inside a token this picker handed out; 400 naming ``continuationToken``."""
    if token is None:
        return None
    problem = ValidationError(
        "Invalid continuation token",
        [
            FieldProblem(
                "continuationToken", "is not a token this operation returned", "a token from a previous page"
            )
        ],
    )
    if len(token) > MAX_TOKEN_LENGTH:
        raise problem
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise problem from None
    if not isinstance(data, dict) or data.get("k") != kind or not isinstance(data.get("v"), str):
        raise problem
    value = str(data["v"])
    # The services' cursors are printable ASCII (a number, an opaque token, a percent-encoded URL);
    # JSON can smuggle in anything else, such as a lone surrogate no URL can carry.
    if not (value.isascii() and value.isprintable()):
        raise problem
    return value


def same_origin_path(url: str, base: str, path_prefix: str) -> bool:
    """Whether a ``nextLink`` stays on ``base``'s host and under ``path_prefix`` (case-insensitive,
    as ARM paths are): a token must never aim the rotator's bearer token anywhere else."""
    theirs, ours = urlsplit(url), urlsplit(base)
    return (theirs.scheme, theirs.netloc.lower()) == (
        ours.scheme,
        ours.netloc.lower(),
    ) and theirs.path.lower().startswith(path_prefix.lower())
