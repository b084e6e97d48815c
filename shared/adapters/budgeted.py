"""Adapters that spend a shared rate budget (``shared.storage.budget``) before each write, and
pause it for every instance when the service answers 429 with ``Retry-After``.

They wrap the narrow interfaces the engine and the notifier already use, so the budget is one
decision made where the clients are built (``shared.services``), not in each caller.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.errors import ThrottledError

if TYPE_CHECKING:
    from shared.adapters.entra import EntraApplication, EntraDirectory, NewPassword
    from shared.notifications.email import EmailTransport, OutgoingEmail
    from shared.storage.budget import RateBudget


async def pause_on_throttle(budget: RateBudget, error: ThrottledError) -> None:
    """A 429 pauses the whole budget for its ``Retry-After`` (every instance waits, not one call)."""
    if error.retry_after is not None and error.retry_after > 0 and getattr(error, "service", "") != "budget":
        await budget.pause(error.retry_after)


class BudgetedDirectory:
    """``EntraDirectory`` whose password writes take a token of the Graph write budget first."""

    def __init__(self, inner: EntraDirectory, budget: RateBudget) -> None:
        self._inner = inner
        self._budget = budget

    async def get_application(self, object_id: str) -> EntraApplication:
        return await self._inner.get_application(object_id)

    async def add_password(self, object_id: str, display_name: str, end: datetime) -> NewPassword:
        await self._budget.acquire()
        try:
            return await self._inner.add_password(object_id, display_name, end)
        except ThrottledError as error:
            await pause_on_throttle(self._budget, error)
            raise

    async def remove_password(self, object_id: str, key_id: str) -> None:
        await self._budget.acquire()
        try:
            await self._inner.remove_password(object_id, key_id)
        except ThrottledError as error:
            await pause_on_throttle(self._budget, error)
            raise

    async def password_lifetime_limit(self, app: EntraApplication) -> timedelta | None:
        return await self._inner.password_lifetime_limit(app)


class BudgetedEmailTransport:
    """``EmailTransport`` whose sends take a token of the email budget first."""

    def __init__(self, inner: EmailTransport, budget: RateBudget) -> None:
        self._inner = inner
        self._budget = budget

    async def send(self, email: OutgoingEmail) -> str:
        await self._budget.acquire()
        try:
            return await self._inner.send(email)
        except ThrottledError as error:
            await pause_on_throttle(self._budget, error)
            raise
