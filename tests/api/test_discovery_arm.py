"""The ARM pickers through the HTTP API against the ARM simulator: subscriptions, Key Vaults with
their permission model, API connections, sites, Automation accounts and runbooks; paging; 403."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.test_discovery_api import _all_pages


@pytest.fixture
def arm(sim_stack: Any) -> Iterator[Any]:
    """The ARM simulator, put back as it was (vault places and models included) afterwards."""
    yield sim_stack.arm
    sim_stack.arm.reset()


def _ids() -> tuple[str, str]:
    return str(uuid.uuid4()), f"rg-{uuid.uuid4().hex[:8]}"


def test_key_vaults_show_their_permission_model_and_whether_the_rotator_may_write(
    api: httpx.Client, arm: Any, sim_stack: Any
) -> None:
    subscription, group = _ids()
    arm.set_vault("destination", subscription_id=subscription, resource_group=group)
    arm.set_vault("rotator", subscription_id=subscription, resource_group=group)
    params = {"subscriptionId": subscription, "resourceGroup": group}
    vaults = {v["name"]: v for v in _all_pages(api, "/destinations/keyVaults", params)}
    assert set(vaults) == {"destination", "rotator"}
    destination = vaults["destination"]
    assert destination["permissionModel"] == "rbac" and destination["canWriteSecrets"] is True
    assert destination["vaultUrl"].rstrip("/") == sim_stack.keyvaults["destination"].url.rstrip("/")
    assert destination["selectable"] is True
    own = vaults["rotator"]
    assert own["selectable"] is False and "never a destination" in own["reason"]

    # An access-policy vault without a policy for the rotator: not writable until one is added.
    arm.set_vault("destination", enable_rbac_authorization=False, access_policies=[])
    [destination] = [
        v for v in _all_pages(api, "/destinations/keyVaults", params) if v["name"] == "destination"
    ]
    assert destination["permissionModel"] == "accessPolicy" and destination["canWriteSecrets"] is False
    principal = sim_stack.msi.principal
    arm.set_vault(
        "destination",
        access_policies=[
            {
                "tenantId": sim_stack.tenant_id,
                "objectId": principal,
                "permissions": {"secrets": ["get", "set"]},
            }
        ],
    )
    [destination] = [
        v for v in _all_pages(api, "/destinations/keyVaults", params) if v["name"] == "destination"
    ]
    assert destination["canWriteSecrets"] is True


def test_key_vaults_page_through_the_subscription(api: httpx.Client, arm: Any) -> None:
    subscription, group = _ids()
    arm.set_vault("destination", subscription_id=subscription, resource_group=group)
    arm.set_vault("rotator", subscription_id=subscription, resource_group=f"{group}-2")
    arm.apply_switch("list_page_size", 1)
    first = api.get("/destinations/keyVaults", params={"subscriptionId": subscription})
    assert first.status_code == 200, first.text
    assert len(first.json()["items"]) == 1 and first.json()["continuationToken"]
    names = [v["name"] for v in _all_pages(api, "/destinations/keyVaults", {"subscriptionId": subscription})]
    assert sorted(names) == ["destination", "rotator"]


def test_resource_group_pickers_list_connections_sites_accounts_and_runbooks(
    api: httpx.Client, arm: Any
) -> None:
    subscription, group = _ids()
    scope = f"/subscriptions/{subscription}/resourceGroups/{group}"
    app_id = str(uuid.uuid4())
    arm.add_connection(f"{scope}/providers/Microsoft.Web/connections/payroll-kv", client_id=app_id)
    arm.add_site(f"{scope}/providers/Microsoft.Web/sites/payroll-web", {"A": "1"})
    arm.add_site(f"{scope}/providers/Microsoft.Web/sites/payroll-jobs", kind="functionapp,linux")
    account_id = f"{scope}/providers/Microsoft.Automation/automationAccounts/ops"
    arm.add_automation_account(account_id)
    arm.add_runbook(account_id, "Rotate-Downstream", description="updates the legacy box")
    params = {"subscriptionId": subscription, "resourceGroup": group, "pageSize": 1}

    [connection] = _all_pages(api, "/destinations/logicAppConnections", params)
    assert connection["name"] == "payroll-kv" and connection["clientId"] == app_id
    assert "old-connection-secret" not in str(connection)
    sites = {s["name"]: s for s in _all_pages(api, "/destinations/appServices", params)}
    assert sites["payroll-jobs"]["kind"] == "functionapp,linux" and sites["payroll-web"]["kind"] == "app"
    assert "1" not in {str(v) for v in sites["payroll-web"].values()}  # no setting values
    [account] = _all_pages(api, "/destinations/automationAccounts", params)
    assert account["resourceId"].lower() == account_id.lower()
    [runbook] = _all_pages(api, "/destinations/runbooks", {"automationAccountId": account_id})
    assert runbook["name"] == "Rotate-Downstream" and runbook["state"] == "Published"
    subscriptions = _all_pages(api, "/destinations/subscriptions", {})
    assert subscription in {s["subscriptionId"] for s in subscriptions}


def test_a_resource_group_the_rotator_may_not_read_is_a_403_naming_the_role(
    api: httpx.Client, arm: Any
) -> None:
    subscription, group = _ids()
    arm.add_site(f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Web/sites/x")
    arm.apply_switch("deny_access", group)
    response = api.get(
        "/destinations/appServices", params={"subscriptionId": subscription, "resourceGroup": group}
    )
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "Reader" in response.json()["detail"] and group in response.json()["detail"]


def test_an_unknown_resource_group_is_a_404_and_a_foreign_next_link_is_refused(
    api: httpx.Client, arm: Any
) -> None:
    from shared.discovery.rest import encode_token

    subscription, group = _ids()
    params = {"subscriptionId": subscription, "resourceGroup": group}
    assert api.get("/destinations/logicAppConnections", params=params).status_code == 404
    # A token carrying a nextLink to another host (or another list) never sends the bearer token there.
    for link in (
        f"https://evil.example/subscriptions/{subscription}/providers/Microsoft.KeyVault/vaults",
        f"{arm.url}/subscriptions/{subscription}/providers/Microsoft.Web/sites",
    ):
        token = encode_token("keyVaults", link)
        response = api.get(
            "/destinations/keyVaults", params={"subscriptionId": subscription, "continuationToken": token}
        )
        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "continuationToken"
