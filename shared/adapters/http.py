"""Small helpers for REST destinations: reading Retry-After, and making service messages log-safe."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Any

from shared.domain.secret import SecretValue

MAX_MESSAGE = 300


def retry_after_seconds(headers: Any) -> float | None:
    """``Retry-After`` as seconds (a number or an HTTP date), or None."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def clip(text: str, *secrets: SecretValue | None, limit: int = MAX_MESSAGE) -> str:
    """A service's message fit for our logs: short, and never holding a secret or a credential-
    bearing URL (defence in depth: some services echo the request in their errors)."""
    from shared.redaction import redact_text

    text = redact_text(text, secrets).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
