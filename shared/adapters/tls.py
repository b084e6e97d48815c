"""TLS trust for outbound calls: the public roots, plus an extra CA when one is configured."""

from __future__ import annotations

import ssl
from functools import cache
from typing import Any


@cache
def ssl_context(ca_bundle: str | None) -> ssl.SSLContext | bool:
    """``True`` (library defaults) in Azure; with ROTATOR_CA_BUNDLE, defaults plus that CA."""
    if not ca_bundle:
        return True
    import certifi

    context = ssl.create_default_context(cafile=certifi.where())
    context.load_verify_locations(cafile=ca_bundle)
    return context


def azure_transport(ca_bundle: str | None) -> Any:
    """An azure-core transport for Azure SDK clients with the same trust as every other call: the
    public roots plus ROTATOR_CA_BUNDLE (None without one: the SDK's own default).

    The SDKs' ``connection_verify=<path>`` would instead trust only that file and build a new TLS
    context for every request (so no pooled connection is reused): azure-core's AioHttpTransport
    ``_build_ssl_config`` calls ``ssl.create_default_context(cafile=...)`` per request.
    """
    if not ca_bundle:
        return None
    from azure.core.pipeline.transport import AioHttpTransport

    context = ssl_context(ca_bundle)

    class _Transport(AioHttpTransport):  # type: ignore[misc]
        def _build_ssl_config(self, cert: Any, verify: Any) -> Any:
            return verify if verify is False or cert else context

    return _Transport()
