"""TLS trust and transport for outbound calls: the public roots, plus an extra CA when one is
configured; proxy settings from the environment only when the environment has any."""

from __future__ import annotations

import os
import ssl
from functools import cache
from pathlib import Path
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


@cache
def environment_sets_proxy() -> bool:
    """Whether this process's environment names a proxy (``HTTP(S)_PROXY``, ``ALL_PROXY``, ...,
    as ``urllib.request.getproxies`` reads them) or has a netrc file (``NETRC`` or ``~/.netrc``).

    aiohttp's ``trust_env`` looks both up again on every request, on a worker thread (aiohttp 3.10+
    ``ClientSession._request``: ``get_env_proxy_for_url`` and ``netrc_from_env``), which costs more
    CPU than the request itself; without any of them that lookup can only find nothing.
    """
    import urllib.request

    if urllib.request.getproxies():
        return True
    netrc = os.environ.get("NETRC")
    candidates = [Path(netrc)] if netrc else [Path.home() / ".netrc", Path.home() / "_netrc"]
    return any(path.is_file() for path in candidates)


def azure_transport(ca_bundle: str | None, *, timeout_seconds: float) -> Any:
    """A new azure-core transport for one Azure SDK client (the client owns and closes it), whose
    connect and read timeouts are ``timeout_seconds``.

    The timeouts are the transport's own: a client given a transport does not pass its
    ``connection_timeout``/``read_timeout`` keywords on to it (azure-core ``AsyncPipelineClient``
    builds ``AioHttpTransport(**kwargs)`` only when it makes the transport; the transport's send
    falls back to its ``ConnectionConfiguration``, 300 s by default). Found from the outside: a Key
    Vault write the server held for 40 s blocked a rotation for 40 s with a 5 s setting.

    Trust is the same as every other call: the public roots plus ROTATOR_CA_BUNDLE. The SDKs'
    ``connection_verify=<path>`` would instead trust only that file and build a new TLS context for
    every request (so no pooled connection is reused): azure-core's AioHttpTransport
    ``_build_ssl_config`` calls ``ssl.create_default_context(cafile=...)`` per request.
    Proxy settings come from the environment (``use_env_settings``, the SDK's default) only when
    it names any (``environment_sets_proxy``).
    """
    from azure.core.pipeline.transport import AioHttpTransport

    options = {
        "use_env_settings": environment_sets_proxy(),
        "connection_timeout": timeout_seconds,
        "read_timeout": timeout_seconds,
    }
    if not ca_bundle:
        return AioHttpTransport(**options)
    context = ssl_context(ca_bundle)

    class _Transport(AioHttpTransport):  # type: ignore[misc]
        def _build_ssl_config(self, cert: Any, verify: Any) -> Any:
            return verify if verify is False or cert else context

    return _Transport(**options)
