"""TLS trust for outbound calls: the public roots, plus an extra CA when one is configured."""

from __future__ import annotations

import ssl
from functools import cache


@cache
def ssl_context(ca_bundle: str | None) -> ssl.SSLContext | bool:
    """``True`` (library defaults) in Azure; with ROTATOR_CA_BUNDLE, defaults plus that CA."""
    if not ca_bundle:
        return True
    import certifi

    context = ssl.create_default_context(cafile=certifi.where())
    context.load_verify_locations(cafile=ca_bundle)
    return context
