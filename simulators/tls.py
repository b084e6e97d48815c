"""A throwaway certificate authority for the HTTPS simulators.

The Key Vault SDK refuses bearer tokens over plain http and azure-identity refuses an http
authority, so the simulators must speak TLS. ``trustme`` mints a CA and a server certificate
in-process; clients trust it through ``ca.pem`` (``connection_verify=``, ``REQUESTS_CA_BUNDLE``,
``httpx.AsyncClient(verify=...)``).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme

DEFAULT_HOSTNAMES: tuple[str, ...] = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TlsBundle:
    """Files of one throwaway CA and the server certificate it issued."""

    directory: Path
    ca_pem: Path
    cert_pem: Path
    key_pem: Path

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for a simulator server (one may be shared by several servers)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_pem, self.key_pem)
        return context

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts only the throwaway CA (for ad-hoc clients in tests)."""
        return ssl.create_default_context(cafile=str(self.ca_pem))


def create_tls_bundle(
    directory: Path | str, hostnames: Sequence[str] = DEFAULT_HOSTNAMES, *, reuse: bool = False
) -> TlsBundle:
    """Create a CA and a server certificate for ``hostnames``; write them as PEM files to ``directory``.

    Files: ``ca.pem`` (trust this), ``server-cert.pem`` (leaf + chain), ``server-key.pem`` (0600).
    A fresh CA is made on every call, unless ``reuse`` and the three files are already there (a
    restarted local stack keeps its CA, so what trusted it before still does).
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    existing = TlsBundle(
        directory=target,
        ca_pem=target / "ca.pem",
        cert_pem=target / "server-cert.pem",
        key_pem=target / "server-key.pem",
    )
    if reuse and all(path.exists() for path in (existing.ca_pem, existing.cert_pem, existing.key_pem)):
        return existing
    ca = trustme.CA(organization_name="Secret rotator simulators")
    leaf = ca.issue_cert(*hostnames)

    ca_pem = target / "ca.pem"
    cert_pem = target / "server-cert.pem"
    key_pem = target / "server-key.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert_pem.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    # The key is throwaway, but there is no reason to leave it world-readable.
    fd = os.open(key_pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(leaf.private_key_pem.bytes())
    return TlsBundle(directory=target, ca_pem=ca_pem, cert_pem=cert_pem, key_pem=key_pem)
