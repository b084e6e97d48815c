"""The Key Vault simulator through the real azure-keyvault-secrets clients (sync and aio)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential, ManagedIdentityCredential
from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets.aio import SecretClient as AsyncSecretClient

from simulators import SimulatorStack


def sync_client(stack: SimulatorStack, vault: str = "rotator") -> SecretClient:
    return SecretClient(
        stack.keyvaults[vault].url,
        ManagedIdentityCredential(),
        verify_challenge_resource=False,
        connection_verify=str(stack.ca_pem),
    )


def test_challenge_then_set_get_versions_and_tags(stack: SimulatorStack) -> None:
    client = sync_client(stack)
    first = client.set_secret("payroll-secret", "v1", content_type="text/plain", tags={"owner": "rotator"})
    second = client.set_secret("payroll-secret", "v2", tags={"keyId": "abc"})
    latest = client.get_secret("payroll-secret")
    old = client.get_secret("payroll-secret", first.properties.version)
    assert latest.value == "v2" and latest.properties.version == second.properties.version
    assert latest.properties.tags == {"keyId": "abc"} and latest.properties.content_type is None
    assert old.value == "v1" and old.properties.content_type == "text/plain"
    assert old.properties.tags == {"owner": "rotator"}
    assert latest.properties.vault_url.rstrip("/") == stack.keyvaults["rotator"].url
    assert latest.properties.created_on is not None and latest.properties.enabled is True
    assert latest.properties.recovery_level == "Recoverable+Purgeable"

    updated = client.update_secret_properties(
        "payroll-secret", first.properties.version, enabled=False, tags={"retired": "yes"}
    )
    assert updated.enabled is False and updated.tags == {"retired": "yes"}
    with pytest.raises(HttpResponseError) as disabled:
        client.get_secret("payroll-secret", first.properties.version)
    assert disabled.value.status_code == 403

    versions = {p.version: p.enabled for p in client.list_properties_of_secret_versions("payroll-secret")}
    assert versions == {first.properties.version: False, second.properties.version: True}
    # The SDK's first request had no token (and no body): 401 challenge, then the real call.
    log = stack.keyvaults["rotator"].requests()
    assert (log[0].status, log[0].principal) == (401, None)
    assert (log[1].method, log[1].status, log[1].principal) == ("PUT", 200, "rotator")
    gets = [r.path for r in log if r.method == "GET"]
    assert gets[0] == "/secrets/payroll-secret/"  # get latest: note the trailing slash

    state = stack.keyvaults["rotator"].state()["secrets"]["payroll-secret"]
    assert [v["value"] for v in state] == ["v1", "v2"]


def test_list_paging_and_not_found(stack: SimulatorStack) -> None:
    vault = stack.keyvaults["demo"]
    for index in range(30):
        vault.set_secret(f"s-{index}", str(index))
    client = sync_client(stack, "demo")
    names = [p.name for p in client.list_properties_of_secrets()]
    assert sorted(names) == sorted(f"s-{index}" for index in range(30))
    assert any("skiptoken" in r.raw_path for r in vault.requests(path="^/secrets/?$"))
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_secret("nope")
    assert missing.value.error is not None and missing.value.error.code == "SecretNotFound"
    with pytest.raises(HttpResponseError) as bad_name:
        client.set_secret("bad_name", "x")
    assert bad_name.value.status_code == 400
    assert bad_name.value.error is not None and bad_name.value.error.code == "BadParameter"


def test_delete_recover_and_purge(stack: SimulatorStack) -> None:
    client = sync_client(stack)
    client.set_secret("temp", "value")
    deleted = client.begin_delete_secret("temp").result()
    assert deleted.recovery_id is not None and deleted.deleted_date is not None
    with pytest.raises(ResourceNotFoundError):
        client.get_secret("temp")
    with pytest.raises(HttpResponseError) as conflict:
        client.set_secret("temp", "again")
    assert conflict.value.status_code == 409
    client.begin_recover_deleted_secret("temp").result()
    assert client.get_secret("temp").value == "value"
    client.begin_delete_secret("temp").result()
    client.purge_deleted_secret("temp")
    assert list(client.list_deleted_secrets()) == []
    assert stack.keyvaults["rotator"].secret_names() == []


def test_token_endpoint_credential_works_for_the_vault(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("reader", passwords=[{"secretText": "reader-secret"}])
    credential = ClientSecretCredential(
        stack.tenant_id,
        app.app_id,
        "reader-secret",
        authority=stack.entra.authority,
        disable_instance_discovery=True,
        connection_verify=str(stack.ca_pem),
    )
    client = SecretClient(
        stack.keyvaults["rotator"].url,
        credential,
        verify_challenge_resource=False,
        connection_verify=str(stack.ca_pem),
    )
    client.set_secret("from-app", "x")
    assert stack.keyvaults["rotator"].requests(method="PUT")[-1].principal == app.app_id


async def test_async_client_deny_throttle_and_fail(stack: SimulatorStack) -> None:
    vault = stack.keyvaults["rotator"]
    async with (
        AsyncManagedIdentityCredential() as credential,
        AsyncSecretClient(
            vault.url, credential, verify_challenge_resource=False, connection_verify=str(stack.ca_pem)
        ) as client,
    ):
        await client.set_secret("async-secret", "one")
        assert (await client.get_secret("async-secret")).value == "one"

        vault.set_switches(deny_access=True)
        with pytest.raises(HttpResponseError) as denied:
            await client.get_secret("async-secret")
        assert denied.value.status_code == 403
        assert denied.value.error is not None and denied.value.error.code == "Forbidden"
        assert "ForbiddenByRbac" in str(denied.value)
        vault.set_switches(deny_access=False)

        vault.set_switches(throttle={"count": 1, "retry_after": 1})
        vault.fail_next(1, 503, method="PUT", retry_after=1)
        await client.set_secret("async-secret", "two")
        assert (await client.get_secret("async-secret")).value == "two"
    statuses = [(r.method, r.status) for r in vault.requests()[-4:]]
    # azure-core's retry policy honoured both Retry-After answers.
    assert statuses == [("PUT", 429), ("PUT", 503), ("PUT", 200), ("GET", 200)]
    assert [v.value for v in vault.versions("async-secret")] == ["one", "two"]
