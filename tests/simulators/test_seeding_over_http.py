"""Every integration kind's destination can be seeded over HTTP (issue 12), so a stack in another
process (``python -m simulators``) can be set up for each kind, as ``make run`` shows."""

from __future__ import annotations

import httpx

from simulators.stack import SimulatorStack

SCOPE = "/subscriptions/00000000-0000-4000-8000-0000000000de/resourceGroups/rg-demo/providers"


def test_arm_destinations_and_webhooks_are_seeded_through_admin_routes(stack: SimulatorStack) -> None:
    connection = f"{SCOPE}/Microsoft.Web/connections/kv"
    site = f"{SCOPE}/Microsoft.Web/sites/func"
    account = f"{SCOPE}/Microsoft.Automation/automationAccounts/auto"
    import ssl

    with httpx.Client(verify=ssl.create_default_context(cafile=str(stack.ca_pem)), timeout=10) as client:
        arm = stack.arm.url
        assert (
            client.post(
                f"{arm}/_sim/connections", json={"resourceId": connection, "clientId": "app"}
            ).status_code
            == 201
        )
        assert (
            client.post(f"{arm}/_sim/sites", json={"resourceId": site, "settings": {"A": "1"}}).status_code
            == 201
        )
        assert client.post(f"{arm}/_sim/automationAccounts", json={"resourceId": account}).status_code == 201
        runbook = {
            "accountId": account,
            "name": "Rotate",
            "parameters": {"ClientSecret": {"type": "System.String"}},
        }
        assert client.post(f"{arm}/_sim/runbooks", json=runbook).status_code == 201
        hook = client.post(f"{stack.webhook.url}/_sim/hooks", json={})
        assert hook.status_code == 201 and hook.json()["url"].startswith(stack.webhook.url)
    assert stack.arm.connection(connection).parameters["token:clientId"] == "app"
    assert stack.arm.site(site).settings == {"A": "1"}
    assert "rotate" in stack.arm.accounts[account.lower()].runbooks


def test_a_seed_document_sets_up_the_arm_destinations(stack: SimulatorStack) -> None:
    account = f"{SCOPE}/Microsoft.Automation/automationAccounts/seeded"
    stack.seed(
        {
            "arm": {
                "connections": [{"resourceId": f"{SCOPE}/Microsoft.Web/connections/seeded", "clientId": "c"}],
                "sites": [{"resourceId": f"{SCOPE}/Microsoft.Web/sites/seeded"}],
                "automationAccounts": [{"resourceId": account, "runbooks": [{"name": "R"}]}],
            }
        }
    )
    assert stack.arm.site(f"{SCOPE}/Microsoft.Web/sites/seeded").settings == {}
    assert "r" in stack.arm.accounts[account.lower()].runbooks
