"""Consumer discovery over ARM after a real rotation: API connections by client id, App Service
settings by the staged secret's digest and by Key Vault reference, Key Vault secrets by appId tag;
one of each kind covered and one not, and never a value in the answer."""

from __future__ import annotations

import json

from shared.discovery.consumers import discover
from tests.integrations.conftest import ARM_GROUP, CONNECTION_ID, register_with_integrations
from tests.rotation.conftest import Rotator

RESOURCE_GROUP = ARM_GROUP.removesuffix("/providers")
OTHER_CONNECTION = f"{ARM_GROUP}/Microsoft.Web/connections/payroll-reports"
SITE = f"{ARM_GROUP}/Microsoft.Web/sites/payroll-web"


async def test_discovery_finds_each_arm_consumer_and_says_which_are_covered(arm_rotator: Rotator) -> None:
    stack, services = arm_rotator.stack, arm_rotator.services
    arm, vault = stack.arm, stack.keyvaults["destination"]
    entra_app = arm_rotator.seed_entra_app(passwords=[])
    arm.add_connection(CONNECTION_ID, client_id=entra_app.app_id)
    arm.add_connection(OTHER_CONNECTION, client_id=entra_app.app_id)  # nobody told the rotator
    arm.add_connection(f"{ARM_GROUP}/Microsoft.Web/connections/unrelated", client_id="another-app")
    secret_name = f"payroll-{entra_app.app_id[:8]}"
    vault.set_secret(
        secret_name, "old", tags={"managedBy": "entra-secret-rotator", "appId": entra_app.app_id}
    )
    # A site whose Key Vault reference an integration refreshes; someone also pasted the secret
    # itself into another setting, which nothing updates.
    site = arm.add_site(
        SITE,
        {
            "SECRET_REF": f"@Microsoft.KeyVault(SecretUri={vault.url.rstrip('/')}/secrets/{secret_name}/)",
            "JOBS_REF": f"@Microsoft.KeyVault(SecretUri={vault.url.rstrip('/')}/secrets/{secret_name})",
            "UNRELATED": "plain-value",
        },
    )
    await register_with_integrations(
        arm_rotator,
        entra_app,
        [
            {"kind": "logicAppConnection", "name": "reports-connection", "resourceId": CONNECTION_ID},
            {"kind": "keyVault", "name": "kv", "vaultUrl": vault.url, "secretName": secret_name},
            {
                "kind": "appService",
                "name": "web-reference",
                "resourceId": SITE,
                "mode": "keyVaultReference",
                "settingName": "SECRET_REF",
            },
        ],
    )
    assert await services.engine.handle(arm_rotator.job(entra_app.app_id)) == "rotated"
    [credential] = arm_rotator.managed(entra_app)
    site.settings["AZURE_CLIENT_SECRET"] = credential.secret_text
    vault.set_secret("legacy-copy", "old", tags={"appId": entra_app.app_id})

    stored = await services.applications.get(entra_app.app_id)
    found = await discover(services, stored, resource_groups=[RESOURCE_GROUP])
    body = json.dumps(found.to_json())
    by_resource = {c.resource.lower(): c for c in found.consumers}

    covered = by_resource[CONNECTION_ID.lower()]
    assert covered.kind == "logicAppConnection" and covered.covered_by == "reports-connection"
    missed = by_resource[OTHER_CONNECTION.lower()]
    assert missed.covered_by is None and missed.evidence == "clientId"
    assert missed.integration == {"kind": "logicAppConnection", "resourceId": missed.resource}
    assert not any("unrelated" in r for r in by_resource)

    setting = by_resource[f"{SITE}#AZURE_CLIENT_SECRET".lower()]
    assert setting.kind == "appServiceSetting" and setting.evidence == "secretDigest:current"
    assert setting.integration == {
        "kind": "appService",
        "resourceId": SITE,
        "mode": "appSetting",
        "settingName": "AZURE_CLIENT_SECRET",
    }
    reference = by_resource[f"{SITE}#SECRET_REF".lower()]
    assert reference.evidence == "keyVaultReference" and reference.covered_by == "web-reference"
    assert reference.integration is None
    other = by_resource[f"{SITE}#JOBS_REF".lower()]
    assert other.covered_by is None
    assert other.integration == {
        "kind": "appService",
        "resourceId": SITE,
        "mode": "keyVaultReference",
        "settingName": "JOBS_REF",
    }
    assert f"{SITE}#UNRELATED".lower() not in by_resource

    secrets = {c.name: c for c in found.consumers if c.kind == "keyVaultSecret"}
    assert secrets[secret_name].covered_by == "kv"
    assert secrets["legacy-copy"].covered_by is None and secrets["legacy-copy"].evidence == "appIdTag"

    assert found.gaps == []
    assert credential.secret_text not in body and "plain-value" not in body
    assert RESOURCE_GROUP in found.scanned["resourceGroups"]


async def test_site_settings_the_rotator_may_not_read_are_a_gap_naming_the_role(arm_rotator: Rotator) -> None:
    stack, services = arm_rotator.stack, arm_rotator.services
    entra_app = arm_rotator.seed_entra_app(passwords=[])
    stack.arm.add_connection(CONNECTION_ID, client_id=entra_app.app_id)
    stack.arm.add_site(SITE, {"X": "y"})
    await register_with_integrations(
        arm_rotator, entra_app, [{"kind": "logicAppConnection", "resourceId": CONNECTION_ID}]
    )
    stack.arm.apply_switch("deny_access", "config/appsettings")
    stored = await services.applications.get(entra_app.app_id)
    found = await discover(services, stored)
    [gap] = [g for g in found.gaps if g.scope == SITE]
    assert gap.permission is not None and "Website Contributor" in gap.permission
    assert [c.kind for c in found.consumers] == ["logicAppConnection"]
