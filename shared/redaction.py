"""The one redactor for URLs and credentials, used wherever text leaves the process: logs, the
rotation log table (and so the API and emails, which read it), and messages from destinations.

A URL keeps its scheme, host and port, and the path segments that cannot be credentials; it loses
its userinfo (``user:password@``), its query and fragment (``?token=...``), and any path segment
that looks like a token (long, or mixing letters and digits, as Slack-style or Automation webhook
paths carry). ``https://ops:hunter2@hooks.example.com/services/T0/B0/XyZ123abcDEF456?code=1`` becomes
``https://hooks.example.com/services/T0/B0/***?***``. Secrets known by value are replaced too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from shared.domain.secret import SecretValue

MASK = "***"
# scheme://..., up to whitespace, quotes or angle brackets (how URLs end inside messages).
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s\"'<>`]+")
# A path segment that may be a credential: long, or letters mixed with digits beyond an id's length.
_TOKEN_LIKE = re.compile(r"(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9_\-.~%+=]{12,}|[A-Za-z0-9_\-.~%+=]{32,}")


def redact_url(url: str) -> str:
    """``url`` without userinfo, query, fragment or token-like path segments."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    path = "/".join(MASK if _TOKEN_LIKE.fullmatch(segment) else segment for segment in parts.path.split("/"))
    tail = "?" + MASK if parts.query or parts.fragment else ""
    return f"{parts.scheme}://{host}{port}{path}{tail}"


def redact_host(url: str) -> str:
    """Host and port only (``hooks.example.com:8443``), never userinfo: for naming a destination."""
    try:
        parts = urlsplit(url)
        return (parts.hostname or MASK) + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return MASK


def redact_text(text: str, secrets: Iterable[SecretValue | str | None] = ()) -> str:
    """Every URL in ``text`` redacted, and every given secret replaced by ``***``."""
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, SecretValue) else secret
        if value:
            text = text.replace(value, MASK)
    return _URL.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    # Punctuation that ends a sentence or a clause is not part of the URL ("... at https://h:1: ...").
    url = match.group(0)
    trimmed = url.rstrip(".,;:!?)]}")
    return redact_url(trimmed) + url[len(trimmed) :]


def redact_value(value: Any) -> Any:
    """``redact_text`` applied to every string inside JSON-like data (details of a log entry)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    return value
