"""App Service consumers: app settings and Key Vault references, through the ARM simulator over TLS."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest

from shared.adapters.retry import RetryPolicy, retry
from shared.domain.models import JobReason
from shared.errors import RotationError, TransientServiceError
from shared.integrations.app_service import AppServicePlugin, parse_reference
from tests.integrations.conftest import (
    NEW_SECRET,
    SITE_ID,
    app_logs,
    assert_secret_absent,
    current_staged,
    install_plugins,
    plugin_context,
    register_with_integrations,
)
from tests.rotation.conftest import Rotator

SLOT_ID = f"{SITE_ID}/slots/staging"
OLD = "old-app-secret-value"


def setting(services: Any, *, resource_id: str = SITE_ID, **extra: Any) -> Any:
    integration = {"kind": "appService", "resourceId": resource_id, "settingName": "CLIENT_SECRET", **extra}
    return plugin_context(services, integration)


def reference_to(vault: Any, name: str, version: str = "") -> str:
    return f"@Microsoft.KeyVault(SecretUri={vault.url}/secrets/{name}/{version})"


async def test_app_setting_is_replaced_and_every_other_setting_kept(
    arm_sim: Any, arm_services: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    others = {"FUNCTIONS_WORKER_RUNTIME": "python", "Db__Host": "db.internal", "EMPTY": ""}
    arm_sim.add_site(SLOT_ID, {**others, "client_secret": OLD})  # matched case-insensitively
    ctx = setting(arm_services, resource_id=SLOT_ID, restart=True)
    plugin = AppServicePlugin()

    outcome = await plugin.deploy(ctx)
    await plugin.verify(ctx)

    site = arm_sim.site(SLOT_ID)
    assert site.settings == {**others, "client_secret": NEW_SECRET}
    assert site.setting_writes == 1 and site.restarts == 1
    assert outcome.details == {
        "site": "slot 'staging' of site 'payroll-api'",
        "setting": "client_secret",
        "mode": "appSetting",
        "restarted": True,
    }
    assert_secret_absent(NEW_SECRET, outcome, logs=app_logs(caplog))


async def test_a_repeated_deploy_does_not_write_again(arm_sim: Any, arm_services: Any) -> None:
    arm_sim.add_site(SITE_ID, {"OTHER": "x"})
    ctx = setting(arm_services)

    first = await AppServicePlugin().deploy(ctx)
    second = await AppServicePlugin().deploy(ctx)

    assert "added app setting 'CLIENT_SECRET'" in first.summary
    assert "already holds this key" in second.summary
    assert arm_sim.site(SITE_ID).setting_writes == 1
    assert arm_sim.site(SITE_ID).restarts == 0


async def test_a_key_vault_reference_is_never_overwritten_with_the_value(
    arm_sim: Any, arm_services: Any
) -> None:
    vault = arm_sim.keyvaults["destination"]
    arm_sim.add_site(SITE_ID, {"CLIENT_SECRET": reference_to(vault, "payroll")})

    with pytest.raises(RotationError) as caught:
        await AppServicePlugin().deploy(setting(arm_services))
    assert caught.value.code == "SettingIsKeyVaultReference"
    assert arm_sim.site(SITE_ID).setting_writes == 0


async def test_verify_notices_a_value_that_did_not_stick(arm_sim: Any, arm_services: Any) -> None:
    arm_sim.add_site(SITE_ID, {"CLIENT_SECRET": OLD})
    with pytest.raises(RotationError) as caught:
        await AppServicePlugin().verify(setting(arm_services))
    assert caught.value.code == "VerifyFailed"
    assert OLD not in str(caught.value)


async def test_key_vault_reference_is_refreshed_now_and_resolves_the_new_version(
    arm_sim: Any, arm_services: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    vault = arm_sim.keyvaults["destination"]
    vault.set_secret("payroll-client-secret", OLD)
    arm_sim.add_site(SITE_ID, {"CLIENT_SECRET": reference_to(vault, "payroll-client-secret"), "OTHER": "x"})
    ctx = setting(arm_services, mode="keyVaultReference")
    # What the keyVault integration (listed before this one) did: a new version holding the key.
    new = vault.set_secret("payroll-client-secret", NEW_SECRET, tags={"keyId": ctx.key_id})
    assert arm_sim.site(SITE_ID).effective()["CLIENT_SECRET"] == OLD  # App Service caches references
    plugin = AppServicePlugin()

    outcome = await plugin.deploy(ctx)
    await plugin.verify(ctx)

    site = arm_sim.site(SITE_ID)
    assert site.refreshes == 1 and site.setting_writes == 0
    assert site.effective()["CLIENT_SECRET"] == NEW_SECRET
    assert site.references["CLIENT_SECRET"].active_version == new.version
    assert outcome.details["secretName"] == "payroll-client-secret"
    assert_secret_absent(NEW_SECRET, outcome, logs=app_logs(caplog))


async def test_reference_verify_fails_when_the_referenced_secret_lacks_the_new_key(
    arm_sim: Any, arm_services: Any
) -> None:
    vault = arm_sim.keyvaults["destination"]
    vault.set_secret("payroll-client-secret", OLD)
    arm_sim.add_site(SITE_ID, {"CLIENT_SECRET": reference_to(vault, "payroll-client-secret")})
    ctx = setting(arm_services, mode="keyVaultReference")
    plugin = AppServicePlugin()

    await plugin.deploy(ctx)
    with pytest.raises(RotationError) as caught:
        await plugin.verify(ctx)
    assert caught.value.code == "ReferencedSecretNotUpdated"


async def test_reference_verify_waits_while_the_site_still_resolves_an_older_version(
    arm_sim: Any, arm_services: Any
) -> None:
    vault = arm_sim.keyvaults["destination"]
    vault.set_secret("payroll-client-secret", OLD)
    arm_sim.add_site(SITE_ID, {"CLIENT_SECRET": reference_to(vault, "payroll-client-secret")})
    ctx = setting(arm_services, mode="keyVaultReference")
    vault.set_secret("payroll-client-secret", NEW_SECRET, tags={"keyId": ctx.key_id})

    # No refresh yet: the cached, older version is what the site uses.
    with pytest.raises(TransientServiceError) as caught:
        await AppServicePlugin().verify(ctx)
    assert caught.value.code == "ReferenceNotRefreshed"


async def test_reference_pinned_to_a_version_is_refused(arm_sim: Any, arm_services: Any) -> None:
    vault = arm_sim.keyvaults["destination"]
    version = vault.set_secret("payroll-client-secret", OLD).version
    arm_sim.add_site(SITE_ID, {"CLIENT_SECRET": reference_to(vault, "payroll-client-secret", version)})

    with pytest.raises(RotationError) as caught:
        await AppServicePlugin().deploy(setting(arm_services, mode="keyVaultReference"))
    assert caught.value.code == "ReferencePinsVersion"
    assert arm_sim.site(SITE_ID).refreshes == 0


async def test_unresolvable_reference_fails_verify_with_its_status(arm_sim: Any, arm_services: Any) -> None:
    vault = arm_sim.keyvaults["destination"]
    vault.set_secret("payroll-client-secret", OLD)
    arm_sim.add_site(SITE_ID, {"CLIENT_SECRET": reference_to(vault, "payroll-client-secret")})
    arm_sim.set_switches(kv_reference_status="AccessToKeyVaultDenied")
    ctx = setting(arm_services, mode="keyVaultReference")

    await AppServicePlugin().deploy(ctx)
    with pytest.raises(RotationError) as caught:
        await AppServicePlugin().verify(ctx)
    assert caught.value.code == "KeyVaultReferenceAccessToKeyVaultDenied"


async def test_all_references_mode_refreshes_and_checks_every_reference(
    arm_sim: Any, arm_services: Any
) -> None:
    vault = arm_sim.keyvaults["destination"]
    vault.set_secret("a", "1")
    vault.set_secret("b", "2")
    arm_sim.add_site(SITE_ID, {"A": reference_to(vault, "a"), "B": reference_to(vault, "b"), "C": "plain"})
    ctx = plugin_context(
        arm_services, {"kind": "appService", "resourceId": SITE_ID, "mode": "keyVaultReference"}
    )

    await AppServicePlugin().deploy(ctx)
    await AppServicePlugin().verify(ctx)
    assert arm_sim.site(SITE_ID).refreshes == 1

    arm_sim.set_switches(kv_reference_status="SecretNotFound")
    await AppServicePlugin().deploy(ctx)
    with pytest.raises(RotationError):
        await AppServicePlugin().verify(ctx)


async def test_forbidden_names_website_contributor(arm_sim: Any, arm_services: Any) -> None:
    arm_sim.add_site(SITE_ID, {"CLIENT_SECRET": OLD})
    arm_sim.set_switches(deny_access=True)

    with pytest.raises(RotationError) as caught:
        await AppServicePlugin().deploy(setting(arm_services))
    assert "'Website Contributor' role" in caught.value.message
    assert SITE_ID in caught.value.message


async def test_throttling_and_server_errors_are_retried(arm_sim: Any, arm_services: Any) -> None:
    arm_sim.add_site(SITE_ID, {"CLIENT_SECRET": OLD})
    arm_sim.throttle_next(1, retry_after=3, path="appsettings/list")
    arm_sim.fail_next(1, 500, method="PUT")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    ctx = setting(arm_services)
    plugin = AppServicePlugin()
    await retry(
        lambda: plugin.deploy(ctx), policy=RetryPolicy(base_delay=0.01), describe="deploy", sleep=sleep
    )

    assert waits[0] == 3 and len(waits) == 2  # Retry-After honoured, then a short backoff after the 500
    assert arm_sim.site(SITE_ID).settings["CLIENT_SECRET"] == NEW_SECRET


async def test_missing_site_is_a_clear_error(arm_sim: Any, arm_services: Any) -> None:
    with pytest.raises(RotationError) as caught:
        await AppServicePlugin().deploy(setting(arm_services))
    assert caught.value.code == "ResourceNotFound"
    assert "site 'payroll-api' was not found" in caught.value.message


def test_reference_parsing() -> None:
    parsed = parse_reference("@Microsoft.KeyVault(VaultName=kv;SecretName=s;SecretVersion=v1)")
    assert parsed is not None and (parsed.vault_name, parsed.secret_name, parsed.version) == ("kv", "s", "v1")
    parsed = parse_reference("@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/s)")
    assert parsed is not None and parsed.vault_url == "https://kv.vault.azure.net" and parsed.version is None
    assert parse_reference("@Microsoft.KeyVault(nonsense)") is None
    assert parse_reference("plain") is None


async def test_rotation_delivers_to_an_app_setting_and_through_a_key_vault_reference(
    arm_rotator: Rotator, arm_sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    destination = arm_rotator.stack.keyvaults["destination"]
    entra_app = arm_rotator.seed_entra_app()
    other_site = f"{SITE_ID}-worker"
    arm_sim.add_site(SITE_ID, {"CLIENT_SECRET": OLD, "OTHER": "kept"})
    reference = reference_to(destination, "payroll-api")
    install_plugins(arm_rotator.services, AppServicePlugin())
    await register_with_integrations(
        arm_rotator,
        entra_app,
        [
            {"kind": "keyVault", "vaultUrl": destination.url, "secretName": "payroll-api"},
            {"kind": "appService", "resourceId": SITE_ID, "settingName": "CLIENT_SECRET", "restart": True},
            {
                "kind": "appService",
                "resourceId": other_site,
                "mode": "keyVaultReference",
                "settingName": "Secret",
            },
        ],
    )
    destination.set_secret("payroll-api", OLD, tags={"managedBy": "entra-secret-rotator"})
    arm_sim.add_site(other_site, {"Secret": reference})

    assert await arm_rotator.services.engine.handle(arm_rotator.job(entra_app.app_id)) == "rotated"

    staged = current_staged(arm_rotator, entra_app.app_id)
    assert arm_sim.site(SITE_ID).settings == {"CLIENT_SECRET": staged.value, "OTHER": "kept"}
    assert arm_sim.site(SITE_ID).restarts == 1
    assert arm_sim.site(other_site).effective()["Secret"] == staged.value
    status = await arm_rotator.status(entra_app.app_id)
    assert {name: result.result for name, result in status.integrations.items()} == {
        "keyVault-1": "succeeded",
        "appService-2": "succeeded",
        "appService-3": "succeeded",
    }
    assert staged.value not in app_logs(caplog)


async def test_a_write_that_lands_late_never_leaves_the_site_on_a_removed_secret(
    stack: Any, azurite: str, clean_storage: None, monkeypatch: pytest.MonkeyPatch, arm_sim: Any
) -> None:
    """Found from the outside: a rotation's first app-settings PUT timed out and its retry wrote
    the secret; the abandoned PUT landed 40 s later, after the next rotation had written a newer
    one, and the rotation after that removed the older secret from Entra (its destination had
    confirmed the newer one), leaving the site on a secret that no longer existed. None of the
    destinations' APIs takes a precondition that would refuse the late write, so the rotator keeps
    every secret an unanswered write carried until ``LATE_WRITE_WINDOW`` has passed and a write of
    the current secret that began after it has succeeded."""
    from shared.domain.models import LATE_WRITE_WINDOW
    from tests.rotation.conftest import rotator_with
    from tests.rotation.test_engine import token_works

    settings = {"ROTATOR_ARM_URL": arm_sim.url, "ROTATOR_HTTP_TIMEOUT_SECONDS": "1"}
    async with rotator_with(stack, azurite, monkeypatch, **settings) as rotator:
        services, clock = rotator.services, rotator.clock
        entra_app = rotator.seed_entra_app(passwords=[])
        arm_sim.add_site(SITE_ID, {"CLIENT_SECRET": OLD})
        install_plugins(services, AppServicePlugin())
        await register_with_integrations(
            rotator,
            entra_app,
            [{"kind": "appService", "resourceId": SITE_ID, "settingName": "CLIENT_SECRET"}],
        )
        held = arm_sim.hold_next(1, method="PUT", path="config/appsettings$")

        def site_value() -> str:
            return str(arm_sim.site(SITE_ID).settings["CLIENT_SECRET"])

        assert await services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
        first = current_staged(rotator, entra_app.app_id)
        [late] = (await rotator.status(entra_app.app_id)).integrations["appService-1"].late_writes
        assert late.key_id == first.tags["keyId"]
        assert await services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
        assert site_value() == current_staged(rotator, entra_app.app_id).value
        held.set()  # the first rotation's abandoned write lands now, over the newer secret
        for _ in range(100):
            if site_value() == first.value:
                break
            await asyncio.sleep(0.05)
        assert site_value() == first.value

        # A third rotation the site refuses: the secret the site really holds must stay.
        arm_sim.fail_next(1000, 400, method="PUT", path="config/appsettings$")
        assert await services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
        assert first.tags["keyId"] in {p.key_id for p in rotator.managed(entra_app)}
        assert token_works(rotator, entra_app.app_id, site_value())

        # Once the window has passed, maintenance writes the current secret again; the next
        # rotation may then remove the secret the late write carried.
        arm_sim.clear_faults()
        clock.advance(LATE_WRITE_WINDOW + timedelta(minutes=1))
        assert (await services.scanner.scan()).enqueued == {"retryIntegrations": 1}
        assert await services.engine.handle(rotator.job(entra_app.app_id, JobReason.RETRY)) == "delivered"
        current = current_staged(rotator, entra_app.app_id)
        assert site_value() == current.value
        assert (await rotator.status(entra_app.app_id)).integrations["appService-1"].late_writes == []
        assert await services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
        assert first.tags["keyId"] not in {p.key_id for p in rotator.managed(entra_app)}
        assert token_works(rotator, entra_app.app_id, site_value())
