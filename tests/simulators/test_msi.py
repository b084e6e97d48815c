"""The App Service managed-identity endpoint through the real azure-identity credentials."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CredentialUnavailableError, ManagedIdentityCredential
from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential

from simulators import SimulatorStack


def test_sync_credential_gets_a_token_for_any_resource(stack: SimulatorStack) -> None:
    credential = ManagedIdentityCredential()
    graph = credential.get_token("https://graph.microsoft.com/.default")
    vault = credential.get_token("https://vault.azure.net/.default")
    for token, audience in ((graph, "https://graph.microsoft.com"), (vault, "https://vault.azure.net")):
        check = stack.issuer.check(f"Bearer {token.token}", [audience])
        assert check.ok and check.token is not None and check.token.principal == "rotator"
    [first, second] = stack.msi.requests()
    assert first.status == 200 and "api-version=2019-08-01" in first.raw_path
    assert "resource=https://graph.microsoft.com" in unquote(first.raw_path) and second.status == 200


async def test_async_credential_with_user_assigned_client_id(stack: SimulatorStack) -> None:
    async with AsyncManagedIdentityCredential(client_id="11111111-2222-3333-4444-555555555555") as credential:
        token = await credential.get_token("https://vault.azure.net/.default")
        cached = await credential.get_token("https://vault.azure.net/.default")
    assert cached.token == token.token  # cached by the "resource" we echo back
    issued = stack.issuer.lookup(token.token)
    assert issued is not None and issued.client_id == "11111111-2222-3333-4444-555555555555"
    [request] = stack.msi.requests()
    assert "client_id=11111111-2222-3333-4444-555555555555" in request.raw_path


async def test_wrong_identity_header_is_refused(
    stack: SimulatorStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")
    async with AsyncManagedIdentityCredential() as credential:
        with pytest.raises(ClientAuthenticationError):
            await credential.get_token("https://vault.azure.net/.default")
    with pytest.raises((ClientAuthenticationError, CredentialUnavailableError)):
        ManagedIdentityCredential().get_token("https://vault.azure.net/.default")
    assert {r.status for r in stack.msi.requests()} == {401}
