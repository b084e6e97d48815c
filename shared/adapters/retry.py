"""Bounded retries with exponential backoff and jitter that honour Retry-After."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from shared.errors import ThrottledError, is_retryable

T = TypeVar("T")
logger = logging.getLogger("rotator.retry")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0
    # A Retry-After longer than this is not waited for inside one invocation: the caller fails
    # and the job is retried later (a Functions invocation should not sleep for minutes).
    max_retry_after: float = 120.0

    def delay(self, attempt: int, error: BaseException) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        if attempt >= self.attempts or not is_retryable(error):
            return None
        if isinstance(error, ThrottledError) and error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.max_retry_after else None
        backoff = min(self.max_delay, self.base_delay * float(2 ** (attempt - 1)))
        return backoff * (0.5 + random.random() / 2)


async def retry(
    operation: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    describe: str,
    sleep: Sleep = asyncio.sleep,
) -> T:
    attempt = 1
    while True:
        try:
            return await operation()
        except Exception as error:
            delay = policy.delay(attempt, error)
            if delay is None:
                raise
            logger.info(
                "retrying %s in %.1fs after %s (attempt %d of %d)",
                describe,
                delay,
                type(error).__name__,
                attempt,
                policy.attempts,
            )
            await sleep(delay)
            attempt += 1
