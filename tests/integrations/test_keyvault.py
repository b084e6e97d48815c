"""Key Vault destination: new versions of a secret the rotator manages, ownership, access grants."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from shared.domain.models import ApplicationConfig
from tests.rotation.conftest import Rotator

VAULT_RESOURCE_ID = (
    "/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/rg-payroll"
    "/providers/Microsoft.KeyVault/vaults/destination"
)


async def register_with_vault(rotator: Rotator, entra_app: Any, **integration: Any) -> ApplicationConfig:
    config = ApplicationConfig.model_validate(
        {
            "appId": entra_app.app_id,
            "objectId": entra_app.object_id,
            "displayName": "Payroll API (prod)",
            "rotation": {"enabled": True},
            "integrations": [
                {"kind": "keyVault", "vaultUrl": rotator.stack.keyvaults["destination"].url, **integration}
            ],
        },
        strict=False,
    )
    await rotator.services.registry.put(config, if_match=None, create_only=False)
    return config


async def rotate(rotator: Rotator, entra_app: Any) -> str:
    return await rotator.services.engine.handle(rotator.job(entra_app.app_id))


async def test_writes_a_tagged_version_named_after_the_application(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app()
    await register_with_vault(rotator, entra_app)
    assert await rotate(rotator, entra_app) == "rotated"

    [credential] = rotator.managed(entra_app)
    # The display name made valid for Key Vault, plus the appId's first 8 characters: unique per app.
    [version] = rotator.stack.keyvaults["destination"].versions(f"Payroll-API-prod-{entra_app.app_id[:8]}")
    assert version.value == credential.secret_text
    assert version.content_type == "application/x-entra-client-secret"
    assert version.tags == {
        "managedBy": "entra-secret-rotator",
        "appId": entra_app.app_id,
        "keyId": credential.key_id,
        "rotationId": version.tags["rotationId"],
    }
    assert version.expires is not None and abs(version.expires - credential.end.timestamp()) < 2
    status = await rotator.status(entra_app.app_id)
    assert status.integrations["keyVault-1"].result == "succeeded"


async def test_a_secret_the_rotator_does_not_manage_is_left_alone(rotator: Rotator) -> None:
    vault = rotator.stack.keyvaults["destination"]
    vault.set_secret("payroll", "someone-elses-value-0001", tags={"owner": "team-a"})
    entra_app = rotator.seed_entra_app()
    await register_with_vault(rotator, entra_app, secretName="payroll")

    assert await rotate(rotator, entra_app) == "rotated"  # the secret rotated; this destination did not

    assert [v.value for v in vault.versions("payroll")] == ["someone-elses-value-0001"]
    status = await rotator.status(entra_app.app_id)
    assert status.last_result == "degraded"
    result = status.integrations["keyVault-1"]
    assert result.result == "failed" and result.error is not None and result.error.code == "SecretNotManaged"


async def test_adopting_an_existing_secret_is_explicit_and_logged(rotator: Rotator) -> None:
    vault = rotator.stack.keyvaults["destination"]
    vault.set_secret("payroll", "someone-elses-value-0001")
    entra_app = rotator.seed_entra_app()
    await register_with_vault(rotator, entra_app, secretName="payroll", adoptExisting=True)
    assert await rotate(rotator, entra_app) == "rotated"
    [credential] = rotator.managed(entra_app)
    assert vault.get_secret("payroll").value == credential.secret_text
    page = await rotator.services.rotation_log.list_page(entra_app.app_id, 50, None)
    assert any(e.event == "integration.warning" and "adopted" in e.message for e in page.items)


async def test_access_denied_names_the_role_and_the_vault(rotator: Rotator) -> None:
    vault = rotator.stack.keyvaults["destination"]
    vault.deny_access = True
    entra_app = rotator.seed_entra_app()
    await register_with_vault(rotator, entra_app)
    assert await rotate(rotator, entra_app) == "rotated"
    error = (await rotator.status(entra_app.app_id)).integrations["keyVault-1"].error
    assert error is not None and error.code == "KeyVaultForbidden"
    assert "'Key Vault Secrets Officer'" in error.message and vault.url in error.message


async def test_the_rotator_grants_itself_access_where_allowed_and_logs_it(
    rotator: Rotator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    vault = rotator.stack.keyvaults["destination"]
    vault.deny_access = True
    entra_app = rotator.seed_entra_app()
    await register_with_vault(rotator, entra_app, grantAccess=True, vaultResourceId=VAULT_RESOURCE_ID)

    assert await rotate(rotator, entra_app) == "rotated"

    [assignment] = rotator.stack.arm.role_assignments.values()
    assert assignment["scope"] == VAULT_RESOURCE_ID
    assert assignment["roleDefinitionId"].endswith("/roleDefinitions/b86a8fe4-44ce-4948-aee5-eccb2c155cd7")
    assert assignment["principalId"] == "rotator"  # the oid of the rotator's own token
    [credential] = rotator.managed(entra_app)
    assert vault.get_secret(f"Payroll-API-prod-{entra_app.app_id[:8]}").value == credential.secret_text
    page = await rotator.services.rotation_log.list_page(entra_app.app_id, 50, None)
    assert any(
        e.event == "integration.warning" and "granted 'Key Vault Secrets Officer'" in e.message
        for e in page.items
    )
    assert credential.secret_text not in caplog.text


async def test_on_an_access_policy_vault_the_rotator_adds_itself_an_access_policy(
    rotator: Rotator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    arm, vault = rotator.stack.arm, rotator.stack.keyvaults["destination"]
    vault_id = arm.set_vault("destination", enable_rbac_authorization=False, access_policies=[])
    entra_app = rotator.seed_entra_app()
    await register_with_vault(rotator, entra_app, grantAccess=True, vaultResourceId=vault_id)

    assert await rotate(rotator, entra_app) == "rotated"

    assert arm.role_assignments == {}  # a role gives no data access in an access-policy vault
    [policy] = vault.access_policies
    assert policy["objectId"] == rotator.stack.msi.principal
    assert set(policy["permissions"]["secrets"]) == {"get", "list", "set", "recover"}
    [credential] = rotator.managed(entra_app)
    assert vault.get_secret(f"Payroll-API-prod-{entra_app.app_id[:8]}").value == credential.secret_text
    page = await rotator.services.rotation_log.list_page(entra_app.app_id, 50, None)
    assert any(
        e.event == "integration.warning"
        and "granted an access policy (secrets get, list, set, recover)" in e.message
        for e in page.items
    )
    assert credential.secret_text not in caplog.text


async def test_an_access_policy_vault_without_grant_access_names_the_policy_to_add(rotator: Rotator) -> None:
    rotator.stack.arm.set_vault("destination", enable_rbac_authorization=False, access_policies=[])
    entra_app = rotator.seed_entra_app()
    await register_with_vault(rotator, entra_app)
    assert await rotate(rotator, entra_app) == "rotated"  # degraded: the vault keeps its old secret
    result = (await rotator.status(entra_app.app_id)).integrations["keyVault-1"]
    assert result.result == "failed" and result.error is not None
    assert result.error.code == "ForbiddenByPolicy"
    assert "access policy" in result.error.message and "grantAccess" in result.error.message
    assert rotator.stack.keyvaults["destination"].access_policies == []


async def test_grant_without_the_vault_resource_id_fails_before_touching_entra(rotator: Rotator) -> None:
    import pytest

    from shared.domain.models import ApplicationStatus
    from shared.errors import ValidationError

    entra_app = rotator.seed_entra_app()
    with pytest.raises(ValidationError) as refused:  # PUT runs the rotation's own checks
        await register_with_vault(rotator, entra_app, grantAccess=True)
    assert [p.field for p in refused.value.problems] == ["integrations.0.vaultResourceId"]
    # Stored behind the API's back (or valid once, then a plugin changed): the rotation refuses it too.
    config = ApplicationConfig.model_validate(
        {
            "appId": entra_app.app_id,
            "objectId": entra_app.object_id,
            "displayName": "Payroll API (prod)",
            "rotation": {"enabled": True},
            "integrations": [
                {
                    "kind": "keyVault",
                    "vaultUrl": rotator.stack.keyvaults["destination"].url,
                    "grantAccess": True,
                }
            ],
        },
        strict=False,
    )
    await rotator.services.applications.create(config, ApplicationStatus(), rotator.clock())
    before = len(rotator.stack.entra.requests(method="POST"))
    assert await rotate(rotator, entra_app) == "failed"
    assert len(rotator.stack.entra.requests(method="POST")) == before  # no addPassword was sent
    status = await rotator.status(entra_app.app_id)
    assert status.last_error is not None and status.last_error.code == "IntegrationMisconfigured"
    assert "vaultResourceId" in status.last_error.message


async def test_a_second_delivery_of_the_same_key_writes_nothing(rotator: Rotator) -> None:
    from datetime import timedelta

    from shared.domain.models import JobReason

    entra_app = rotator.seed_entra_app()
    await register_with_vault(rotator, entra_app)
    await rotate(rotator, entra_app)
    # Pretend the destination failed: the retry cycle delivers the staged secret again.
    stored = await rotator.services.applications.get(entra_app.app_id)
    failed = stored.status.integrations["keyVault-1"].model_copy(update={"result": "failed"})
    await rotator.services.applications.save(
        stored,
        stored.config,
        stored.status.model_copy(
            update={
                "integrations": {"keyVault-1": failed},
                "retry_at": rotator.clock() + timedelta(minutes=15),
            }
        ),
        rotator.clock(),
    )
    rotator.clock.advance(timedelta(minutes=16))
    outcome = await rotator.services.engine.handle(rotator.job(entra_app.app_id, JobReason.RETRY))
    assert outcome == "delivered"
    assert (
        len(rotator.stack.keyvaults["destination"].versions(f"Payroll-API-prod-{entra_app.app_id[:8]}")) == 1
    )
    assert len(rotator.managed(entra_app)) == 1
    assert (await rotator.status(entra_app.app_id)).last_result == "succeeded"


async def test_two_applications_never_write_the_same_secret(rotator: Rotator) -> None:
    """Issue 10: a secret tagged for another appId is refused, whatever adoptExisting says."""
    first, second = rotator.seed_entra_app(), rotator.seed_entra_app()
    await register_with_vault(rotator, first, secretName="shared-name")
    assert await rotate(rotator, first) == "rotated"
    await register_with_vault(rotator, second, secretName="shared-name", adoptExisting=True)
    assert await rotate(rotator, second) == "rotated"  # the secret rotated; this destination did not
    vault = rotator.stack.keyvaults["destination"]
    assert {v.tags["appId"] for v in vault.versions("shared-name")} == {first.app_id}
    result = (await rotator.status(second.app_id)).integrations["keyVault-1"]
    assert result.error is not None and result.error.code == "SecretOwnedByAnotherApplication"


async def test_default_names_stay_unique_when_display_names_reduce_to_nothing(rotator: Rotator) -> None:
    from shared.integrations.keyvault import default_secret_name

    a, b = "11111111-2222-3333-4444-555555555555", "99999999-2222-3333-4444-555555555555"
    assert default_secret_name("給与システム", a) != default_secret_name("給与システム", b)
    assert default_secret_name("給与システム", a) == f"client-secret-{a}"
    assert default_secret_name("Payroll API", a) == "Payroll-API-11111111"
    long = default_secret_name("x" * 300, a)
    assert len(long) <= 127 and long.endswith("-11111111")


async def test_the_rotators_own_vault_is_never_a_destination(rotator: Rotator) -> None:
    import pytest

    from shared.domain.models import ApplicationStatus
    from shared.errors import ValidationError

    entra_app = rotator.seed_entra_app()
    own = rotator.stack.keyvaults["rotator"]
    config = ApplicationConfig.model_validate(
        {
            "appId": entra_app.app_id,
            "objectId": entra_app.object_id,
            "displayName": "Attacker",
            "rotation": {"enabled": True},
            # Aimed at a stored credential: a group's Vercel token, another app's PAT.
            "integrations": [
                {"kind": "keyVault", "vaultUrl": own.url + "/", "secretName": "cred-group-web-vercel-token"}
            ],
        },
        strict=False,
    )
    with pytest.raises(ValidationError) as refused:
        await rotator.services.registry.put(config, if_match=None, create_only=False)
    assert [p.field for p in refused.value.problems] == ["integrations.0.vaultUrl"]
    # Even stored behind the API's back, the rotation refuses before touching Entra, and writes nothing.
    own.set_secret("cred-group-web-vercel-token", "vercel-token-value")
    await rotator.services.applications.create(config, ApplicationStatus(), rotator.clock())
    assert await rotate(rotator, entra_app) == "failed"
    assert [v.value for v in own.versions("cred-group-web-vercel-token")] == ["vercel-token-value"]
    assert rotator.managed(entra_app) == []


async def test_a_disabled_latest_version_is_not_a_permission_problem(rotator: Rotator) -> None:
    """Issue 10: Key Vault allows a new version over a disabled one; the rotator writes it."""
    entra_app = rotator.seed_entra_app()
    await register_with_vault(rotator, entra_app, secretName="payroll")
    assert await rotate(rotator, entra_app) == "rotated"
    vault = rotator.stack.keyvaults["destination"]
    vault.versions("payroll")[-1].enabled = False  # someone disabled it
    assert await rotate(rotator, entra_app) == "rotated"
    status = await rotator.status(entra_app.app_id)
    assert status.integrations["keyVault-1"].result == "succeeded"
    latest = vault.versions("payroll")[-1]
    assert latest.enabled and latest.tags["keyId"] == status.current_key_id
    page = await rotator.services.rotation_log.list_page(entra_app.app_id, 50, None)
    warnings = [e.message for e in page.items if e.event == "integration.warning"]
    assert any("was disabled" in w for w in warnings)


async def test_a_firewall_refusal_is_named_and_never_self_granted(rotator: Rotator, stack: Any) -> None:
    entra_app = rotator.seed_entra_app()
    vault = rotator.stack.keyvaults["destination"]
    await register_with_vault(rotator, entra_app, grantAccess=True, vaultResourceId=VAULT_RESOURCE_ID)
    vault.deny_access = True
    for reason, code in (("firewall", "ForbiddenByFirewall"),):
        vault.deny_reason = reason
        before = len(stack.arm.requests(method="PUT"))
        assert await rotate(rotator, entra_app) == "rotated"
        assert len(stack.arm.requests(method="PUT")) == before  # no role assignment attempted
        result = (await rotator.status(entra_app.app_id)).integrations["keyVault-1"]
        assert result.result == "failed" and result.error is not None and result.error.code == code
        page = await rotator.services.rotation_log.list_page(entra_app.app_id, 50, None)
        assert code in [e.code for e in page.items if e.event == "integration.failed"]


async def test_a_soft_deleted_secret_of_ours_is_recovered_and_someone_elses_is_reported(
    rotator: Rotator,
) -> None:
    vault = rotator.stack.keyvaults["destination"]
    entra_app = rotator.seed_entra_app()
    await register_with_vault(rotator, entra_app, secretName="payroll")
    assert await rotate(rotator, entra_app) == "rotated"
    vault.soft_delete("payroll")
    assert await rotate(rotator, entra_app) == "rotated"
    status = await rotator.status(entra_app.app_id)
    assert status.integrations["keyVault-1"].result == "succeeded"
    assert vault.versions("payroll")[-1].tags["keyId"] == status.current_key_id
    assert "payroll" not in [n.lower() for n in vault.deleted_names()]

    vault.set_secret("theirs", "their-value", tags={"owner": "team-b"})
    vault.soft_delete("theirs")
    other = rotator.seed_entra_app()
    await register_with_vault(rotator, other, secretName="theirs")
    assert await rotate(rotator, other) == "rotated"
    result = (await rotator.status(other.app_id)).integrations["keyVault-1"]
    assert result.error is not None and result.error.code == "SecretDeletedButRecoverable"
    assert "recover it, or purge it" in result.error.message


async def test_a_vault_call_gives_up_after_the_configured_timeout(rotator: Rotator) -> None:
    """Found from the outside: with ROTATOR_HTTP_TIMEOUT_SECONDS=5, a vault that held a write for
    40 s held the rotation 40 s. The client's timeouts never reached its transport (azure-core uses
    a given transport's own, 300 s by default); now every Azure SDK transport is built with them."""
    import time

    from shared.adapters.vault import VaultClient
    from shared.errors import ExternalServiceError

    vault = rotator.stack.keyvaults["destination"]
    client = VaultClient(
        vault.url,
        rotator.services.credential,
        timeout_seconds=0.3,
        ca_bundle=rotator.services.settings.ca_bundle,
    )
    try:
        assert await client.get("warm-up-the-token") is None  # the token is fetched before the hold
        vault.set_switches(latency_seconds=5)
        started = time.monotonic()
        with pytest.raises(ExternalServiceError):
            await client.get("held-by-the-vault")
        # Four attempts (retry_total 3) of 0.3 s and azure-core's backoff; 5 s each without the fix.
        assert time.monotonic() - started < 12
    finally:
        vault.set_switches(latency_seconds=0)
        await client.close()
