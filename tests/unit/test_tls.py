"""One trust for every outbound call (issue 11 and 12): the public roots plus ROTATOR_CA_BUNDLE,
in one TLS context per process, so pooled connections are reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters.tls import azure_transport, environment_sets_proxy, ssl_context


def test_without_a_bundle_the_sdks_keep_their_defaults() -> None:
    assert ssl_context(None) is True
    transport = azure_transport(None, timeout_seconds=5)
    assert transport._build_ssl_config(None, True) is True  # azure-core's own default trust
    assert azure_transport(None, timeout_seconds=5) is not transport  # each client owns (and closes) its own


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No proxy variable and a home without a netrc file."""
    import os

    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    environment_sets_proxy.cache_clear()
    yield tmp_path
    environment_sets_proxy.cache_clear()


def test_proxy_settings_are_read_per_request_only_when_the_environment_has_any(
    bare_environment: Path,
) -> None:
    """Issue 11: aiohttp's trust_env looks up proxies and netrc again on every request, on a worker
    thread, costing more CPU than the request; with nothing to find, the transports skip it."""
    assert environment_sets_proxy() is False
    assert azure_transport(None, timeout_seconds=5)._use_env_settings is False


@pytest.mark.parametrize(
    "variable",
    ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "ALL_PROXY"],
)
def test_a_proxy_in_the_environment_is_still_honoured(
    bare_environment: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "http://proxy.example:3128")
    assert environment_sets_proxy() is True
    assert azure_transport(None, timeout_seconds=5)._use_env_settings is True


@pytest.mark.parametrize("where", ["home", "NETRC"])
def test_a_netrc_file_is_still_honoured(
    bare_environment: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    netrc = bare_environment / (".netrc" if where == "home" else "credentials-file")
    netrc.write_text("machine example.org login user password pass\n")
    if where == "NETRC":
        monkeypatch.setenv("NETRC", str(netrc))
    assert environment_sets_proxy() is True
    assert azure_transport(None, timeout_seconds=5)._use_env_settings is True


def test_a_bundle_adds_to_the_public_roots_and_one_context_serves_every_request(tmp_path: Path) -> None:
    import certifi

    # Any valid CA certificate will do as "the extra one": take the first from certifi's file.
    first = certifi.contents().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    bundle = tmp_path / "extra-ca.pem"
    bundle.write_text(first)
    context = ssl_context(str(bundle))
    assert not isinstance(context, bool)
    assert len(context.get_ca_certs()) > 100  # the public roots are still trusted
    transport = azure_transport(str(bundle), timeout_seconds=5)
    # azure-core asks per request; the answer is the same context each time (connections pool).
    assert transport._build_ssl_config(None, True) is context
    assert transport._build_ssl_config(None, True) is transport._build_ssl_config(None, str(bundle))
    assert transport._build_ssl_config(None, False) is False


def test_every_client_takes_its_trust_from_the_one_builder() -> None:
    """Issue 12: ROTATOR_CA_BUNDLE meant "add" for some clients and "replace" for others. Every TLS
    setting in the deployed code now comes from ``shared.adapters.tls`` (public roots plus the
    bundle): no client is given a CA file path, builds its own context, or turns checking off."""
    import re

    from tests.conftest import ROOT

    offenders = []
    for path in Path(ROOT, "shared").rglob("*.py"):
        if path.name == "tls.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(
                r"connection_verify|create_default_context|SSLContext\(|verify=False|ssl=False", line
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
            for argument in re.findall(r"\b(?:verify|ssl)=([^,)]+)", line):
                if not re.match(r"(ssl_context\(|trust\b|True\b)", argument.strip()):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


@pytest.mark.parametrize("proxy", [None, "http://proxy.example:3128"])
def test_the_token_verifier_uses_the_environment_proxy_as_every_other_client(
    bare_environment: Path, monkeypatch: pytest.MonkeyPatch, proxy: str | None
) -> None:
    """Its aiohttp session followed aiohttp's default (no proxy ever) while the SDK clients followed
    the environment: one rule for both now."""
    import asyncio

    from shared.adapters.entra import TokenVerifier

    if proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy)

    async def trusts_environment() -> bool:
        verifier = TokenVerifier("t", "https://login.example", "s/.default", ca_bundle=None)
        try:
            verifier._transport()
            return bool(verifier._session.trust_env)
        finally:
            await verifier.close()

    assert asyncio.run(trusts_environment()) is (proxy is not None)
