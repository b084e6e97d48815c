"""Entra credentials: create within the tenant's policy, make room under the cap, and remove only
what may go.

Ownership: a password whose display name starts with ``<prefix>:`` was created by the rotator;
any other is *foreign* and is removed only when the operator opted in (the application's
``retireUnmanagedCredentials`` for expired ones, the refresh's ``revokeUnmanagedCredentials`` in
compromised mode).

In use: a credential is *in use* while it is the current one, the one being created, or one that a
destination confirmed or may hold (``IntegrationStatus.key_ids_in_use``). Nothing in use is ever
removed, except by a compromised revocation, which waits until every destination confirmed the
new secret.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from shared.adapters.entra import EntraApplication, EntraDirectory, NewPassword, PasswordInfo
from shared.adapters.retry import RetryPolicy, retry
from shared.domain.models import ApplicationConfig, ApplicationStatus, rfc3339
from shared.errors import ExternalServiceError, RotationError, outcome_unknown

logger = logging.getLogger("rotator.credentials")

T = TypeVar("T")

POLICY_ERROR = "CredentialInvalidLifetimeAsPerAppPolicy"
# Our clock and Entra's differ a little: a lifetime right at a policy's limit is asked for this much
# shorter, so a request equal to the limit is not refused for a few seconds of skew.
CLOCK_SKEW_MARGIN = timedelta(minutes=10)


@dataclass(frozen=True)
class Lifetime:
    """The end date asked for, and what capped it (for the log)."""

    end: datetime
    requested_days: int
    applied: timedelta
    capped_by: str | None  # "policy" (read), "search" (found by refusals), or None


class Credentials:
    def __init__(
        self,
        directory: EntraDirectory,
        *,
        prefix: str,
        retry_policy: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]],
        clock: Callable[[], datetime],
    ) -> None:
        self.directory = directory
        self.prefix = prefix
        self._retry_policy = retry_policy
        self._sleep = sleep
        self._clock = clock

    # --- reading ------------------------------------------------------------------------------
    def name_for(self, rotation_id: str) -> str:
        return f"{self.prefix}:{rotation_id}"

    def is_ours(self, password: PasswordInfo) -> bool:
        return (password.display_name or "").startswith(f"{self.prefix}:")

    def rotation_of(self, password: PasswordInfo) -> str | None:
        """The rotation id in one of our credentials' names (``<prefix>:<rotationId>``)."""
        return (password.display_name or "")[len(self.prefix) + 1 :] if self.is_ours(password) else None

    async def call(self, operation: Callable[[], Awaitable[T]], describe: str) -> T:
        return await retry(operation, policy=self._retry_policy, describe=describe, sleep=self._sleep)

    async def read(self, config: ApplicationConfig) -> EntraApplication:
        """The application, after checking it is the registered one (appId and objectId agree)."""
        object_id = str(config.object_id)
        app = await self.call(lambda: self.directory.get_application(object_id), "read application")
        if app.app_id.lower() != str(config.app_id).lower():
            raise RotationError(
                f"Object id {object_id} belongs to application {app.app_id}, not to the registered appId "
                f"{config.app_id}: fix the registration's objectId; nothing was written",
                step="create",
                code="ApplicationIdMismatch",
            )
        return app

    async def remove(self, object_id: str, key_id: str, describe: str) -> None:
        await self.call(partial(self.directory.remove_password, object_id, key_id), describe)

    # --- creating -----------------------------------------------------------------------------
    async def lifetime(self, config: ApplicationConfig, app: EntraApplication) -> Lifetime:
        """The end date to ask for: the requested lifetime, or the policy's limit when it is lower."""
        requested = config.rotation.secret_lifetime_days
        now = self._clock()
        wanted = timedelta(days=requested)
        try:
            limit = await self.directory.password_lifetime_limit(app)
        except ExternalServiceError as error:
            # 403 without Policy.Read.All (or the call is not served): find the limit by refusals.
            logger.info("app management policy not readable (%s); searching by refusals", error.code)
            return Lifetime(now + wanted, requested, wanted, None)
        if limit is None or limit >= wanted:
            return Lifetime(now + wanted, requested, wanted, None)
        applied = limit - CLOCK_SKEW_MARGIN
        return Lifetime(now + applied, requested, applied, "policy")

    async def add(
        self,
        config: ApplicationConfig,
        name: str,
        lifetime: Lifetime,
        *,
        removed: list[str],
        unanswered: list[datetime],
    ) -> tuple[NewPassword, Lifetime]:
        """``addPassword`` within the tenant's policy; a refusal for the lifetime shortens it.
        ``removed`` gets the key ids of duplicates removed, ``unanswered`` the time of each attempt
        whose answer never came (Entra may still apply it).

        Without a readable policy the longest accepted lifetime is searched: the request less the
        clock-skew margin, then one day less at a time (a refusal creates nothing), so a 10-day
        limit gives 10 days less the margin, never a round-number step below it.
        """
        object_id = str(config.object_id)
        now = self._clock()
        candidates = [lifetime]
        if lifetime.capped_by is None:
            candidates.append(
                Lifetime(
                    lifetime.end - CLOCK_SKEW_MARGIN,
                    lifetime.requested_days,
                    lifetime.applied - CLOCK_SKEW_MARGIN,
                    None,
                )
            )
            for days in range(lifetime.requested_days - 1, 0, -1):
                applied = timedelta(days=days) - CLOCK_SKEW_MARGIN
                candidates.append(Lifetime(now + applied, lifetime.requested_days, applied, "search"))
        for index, candidate in enumerate(candidates):
            try:
                return await self._add_once(object_id, name, candidate.end, removed, unanswered), candidate
            except ExternalServiceError as error:
                if error.code == POLICY_ERROR and index + 1 < len(candidates):
                    continue
                if error.code == POLICY_ERROR:
                    raise RotationError(
                        "The tenant's app management policy refuses even a one-day password lifetime",
                        step="create",
                        code=POLICY_ERROR,
                    ) from None
                if error.status == 400 and "password" in error.message.lower():
                    raise RotationError(
                        "Entra refused another password: the application's password cap is reached",
                        step="create",
                        code="CredentialCapReached",
                    ) from None
                raise
        raise AssertionError("unreachable: the candidate list is never empty")

    async def _add_once(
        self, object_id: str, name: str, end: datetime, removed: list[str], unanswered: list[datetime]
    ) -> NewPassword:
        attempt = 1
        while True:
            started = self._clock()
            try:
                return await self.directory.add_password(object_id, name, end)
            except Exception as error:
                if outcome_unknown(error):
                    unanswered.append(started)
                delay = self._retry_policy.delay(attempt, error)
                if delay is None:
                    raise
                # A lost answer may have created a credential whose text we never saw: remove it.
                removed += await self.remove_named(object_id, name)
                await self._sleep(delay)
                attempt += 1

    async def remove_named(self, object_id: str, name: str) -> list[str]:
        """Remove the credentials named ``name`` (this rotation's, being created); their key ids."""
        app = await self.call(lambda: self.directory.get_application(object_id), "read application")
        removed = []
        for password in app.passwords:
            if password.display_name == name:
                await self.remove(object_id, password.key_id, "remove unstaged credential")
                removed.append(password.key_id)
        return removed

    # --- what may go --------------------------------------------------------------------------
    def orphans(
        self, app: EntraApplication, config: ApplicationConfig, status: ApplicationStatus, rotation_id: str
    ) -> list[PasswordInfo]:
        """Credentials named for ``rotation_id`` that nothing uses (their text was lost in a crash,
        or with a lost answer): they may always be removed."""
        name, in_use = self.name_for(rotation_id), self.in_use(config, status)
        return [p for p in app.passwords if p.display_name == name and p.key_id not in in_use]

    def in_use(self, config: ApplicationConfig, status: ApplicationStatus, *extra: str | None) -> set[str]:
        keys = {k for k in (status.current_key_id, *extra) if k}
        for name, result in status.integrations.items():
            if name in {i.name for i in config.integrations}:
                keys |= result.key_ids_in_use()
        return keys

    def superseded(
        self,
        app: EntraApplication,
        config: ApplicationConfig,
        status: ApplicationStatus,
        *,
        keep_previous: bool,
    ) -> list[PasswordInfo]:
        """The rotator's own credentials that no one uses: not current, not in use by a destination,
        and (with ``keep_previous``) not the previous one, which stays live until it expires."""
        keep = self.in_use(config, status, status.previous_key_id if keep_previous else None)
        return [p for p in app.passwords if self.is_ours(p) and p.key_id not in keep]

    def expired_foreign(self, app: EntraApplication, config: ApplicationConfig) -> list[PasswordInfo]:
        if not config.rotation.retire_unmanaged_credentials:
            return []
        now = self._clock()
        return [p for p in app.passwords if not self.is_ours(p) and p.is_expired(now)]

    async def make_room(
        self, app: EntraApplication, config: ApplicationConfig, status: ApplicationStatus
    ) -> list[PasswordInfo]:
        """Under the two-password cap, remove what may go to fit one more; the removed credentials.

        First expired credentials (ours; foreign ones with the opt-in), then the rotator's own
        credentials no destination uses (the previous one included: a manual or compromised
        rotation needs its slot). Refuses with the real remedy when nothing may go.
        """
        cap = app.password_cap
        if cap is None or len(app.passwords) < cap:
            return []
        now = self._clock()
        expired = [p for p in app.passwords if p.is_expired(now) and self.is_ours(p)]
        candidates = [*expired, *self.expired_foreign(app, config)]
        candidates += [
            p for p in self.superseded(app, config, status, keep_previous=False) if p not in candidates
        ]
        needed = len(app.passwords) - cap + 1
        if len(candidates) < needed:
            raise RotationError(
                self._cap_remedy(app, config, status, cap), step="create", code="CredentialCapReached"
            )
        removed = candidates[:needed]
        for password in removed:
            await self.remove(app.object_id, password.key_id, "make room under the password cap")
        return removed

    def _cap_remedy(
        self, app: EntraApplication, config: ApplicationConfig, status: ApplicationStatus, cap: int
    ) -> str:
        held = [
            name
            for name, result in status.integrations.items()
            if result.result != "succeeded" and name in {i.name for i in config.integrations}
        ]
        ours = [p for p in app.passwords if self.is_ours(p) and p.key_id != status.current_key_id]
        if ours and held:
            return (
                f"The application allows at most {cap} passwords. The rotator's previous credential is "
                f"still used by {', '.join(sorted(held))}, whose delivery of the current secret failed: "
                "fix that destination (its error is in the log) so the retry delivers the current secret, "
                "then rotate again"
            )
        foreign = [p.display_name or p.key_id for p in app.passwords if not self.is_ours(p)]
        return (
            f"The application allows at most {cap} passwords and {len(foreign)} of them were not created "
            f"by the rotator ({', '.join(sorted(foreign))}): remove one by hand in Entra ID, or let the "
            "rotator replace it with a compromised refresh and revokeUnmanagedCredentials"
        )

    def revocable(
        self, app: EntraApplication, key_id: str, *, include_foreign: bool
    ) -> tuple[list[PasswordInfo], list[PasswordInfo]]:
        """Compromised mode: what to revoke (every other password we own; foreign ones only with
        the opt-in) and the foreign credentials left valid."""
        others = [p for p in app.passwords if p.key_id != key_id]
        revoke = [p for p in others if self.is_ours(p) or include_foreign]
        kept = [p for p in others if not self.is_ours(p) and not include_foreign]
        return revoke, kept


def describe(passwords: list[PasswordInfo]) -> list[dict[str, Any]]:
    """Log-safe identification of credentials (ids, names, hints, expiry: never a value)."""
    return [
        {
            "keyId": p.key_id,
            "displayName": p.display_name,
            "hint": p.hint,
            "endDateTime": rfc3339(p.end) if p.end else None,
        }
        for p in passwords
    ]
