"""API authentication with Microsoft Entra ID access tokens (``ROTATOR_API_AUTH=entra``).

With function keys (the default) the Functions host checks the key and answers 401 itself, with an
empty body, before any app code runs. With ``entra`` the routes are anonymous to the host
(``function_app.py``) and every API call passes ``EntraTokenValidator.authorize`` first, so a
missing or bad token gets a problem+json 401 (with ``WWW-Authenticate: Bearer``, RFC 6750) and a
token without the app role a problem+json 403.

A token is accepted when (learn.microsoft.com/entra/identity-platform/access-tokens#validate-tokens):
its RS256 signature checks against a key of the tenant's JWK set
(``{authority}/{tenant}/discovery/v2.0/keys``), ``aud`` is ``ROTATOR_API_AUDIENCE``, ``iss`` is
``{authority}/{tenant}/v2.0`` (v2.0 tokens), ``exp``/``nbf`` hold (60 s of clock skew), and
``roles`` holds ``ROTATOR_API_ROLE`` (an app role assigned to the caller:
learn.microsoft.com/entra/identity-platform/howto-add-app-roles-in-apps).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

from shared.errors import AccessDeniedError, AuthenticationError, ExternalServiceError

if TYPE_CHECKING:
    import httpx

# The JWK set is read again after this long, or sooner (at most once a minute) for an unknown kid.
KEYS_MAX_AGE_SECONDS = 24 * 3600
KEYS_MIN_REFRESH_SECONDS = 60
CLOCK_SKEW_SECONDS = 60


def entra_mode(environ: dict[str, str] | None = None) -> bool:
    """Whether ``ROTATOR_API_AUTH`` is ``entra`` (read at import by ``function_app.py``, which
    must not load the settings machinery for it)."""
    value = (environ if environ is not None else os.environ).get("ROTATOR_API_AUTH", "functionKey")
    return value.strip().lower() == "entra"


class EntraTokenValidator:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        authority: str,
        tenant_id: str,
        audience: str,
        role: str,
        clock: Any = time.time,
    ) -> None:
        self._http = http
        base = f"{authority.rstrip('/')}/{tenant_id}"
        self._jwks_url = f"{base}/discovery/v2.0/keys"
        self._issuer = f"{base}/v2.0"
        self._audience = audience
        self._role = role
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def authorize(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims; ``AuthenticationError`` (401) or ``AccessDeniedError`` (403)."""
        import jwt

        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("A Microsoft Entra ID access token is required (Authorization: Bearer)")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("The access token is not a JWT", error="invalid_token") from None
        if header.get("alg") != "RS256":
            raise AuthenticationError("The access token is not signed with RS256", error="invalid_token")
        key = await self._key(str(header.get("kid") or ""))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self._audience,
                issuer=self._issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iat", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("The access token has expired", error="invalid_token") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError(
                "The access token is for another audience", error="invalid_token"
            ) from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError(
                "The access token is from another issuer", error="invalid_token"
            ) from None
        except jwt.PyJWTError:
            raise AuthenticationError("The access token is not valid", error="invalid_token") from None
        roles = claims.get("roles")
        if not isinstance(roles, list) or self._role not in roles:
            raise AccessDeniedError(f"The caller needs the '{self._role}' app role on the rotator's API")
        return claims

    async def _key(self, kid: str) -> Any:
        now = self._clock()
        if kid not in self._keys or now - self._fetched_at > KEYS_MAX_AGE_SECONDS:
            async with self._lock:
                stale = now - self._fetched_at > KEYS_MAX_AGE_SECONDS
                if (kid not in self._keys and now - self._fetched_at > KEYS_MIN_REFRESH_SECONDS) or stale:
                    await self._fetch(now)
        if kid not in self._keys:
            raise AuthenticationError("The access token is signed with an unknown key", error="invalid_token")
        return self._keys[kid]

    async def _fetch(self, now: float) -> None:
        import httpx
        import jwt

        try:
            response = await self._http.get(self._jwks_url, headers={"Accept": "application/json"})
            response.raise_for_status()
            keys = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as error:
            raise ExternalServiceError(
                f"Could not read the tenant's signing keys ({type(error).__name__})", service="entra"
            ) from None
        self._keys = {str(k.key_id): k.key for k in keys.keys if k.key_id}
        self._fetched_at = now
