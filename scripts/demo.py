"""The demo data `make run` starts with: one Entra application, registered with integrations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

DEMO_APP_ID = "6f1c2b9e-0d1a-4c55-9a3e-5d3c2f1a0b01"
DEMO_OBJECT_ID = "2b7d4e10-8c3f-4f6a-b1d2-7e9a0c4d5f02"
DEMO_DISPLAY_NAME = "Demo Payroll API"
DEMO_GROUP_ID = "web-team"
DEMO_VERCEL_TEAM = "team_demo"
DEMO_VERCEL_PROJECT = "payroll-web"
# The demo's Vercel token: it exists only inside the local simulator.
DEMO_VERCEL_TOKEN = "demo-vercel-token-local-only"  # noqa: S105
# The second demo application: delivered through Azure Resource Manager and a webhook.
OPS_APP_ID = "6f1c2b9e-0d1a-4c55-9a3e-5d3c2f1a0b03"
OPS_OBJECT_ID = "2b7d4e10-8c3f-4f6a-b1d2-7e9a0c4d5f04"
OPS_DISPLAY_NAME = "Demo Ops Automation"
DEMO_SCOPE = "/subscriptions/00000000-0000-4000-8000-0000000000de/resourceGroups/rg-demo/providers"
OPS_CONNECTION_ID = f"{DEMO_SCOPE}/Microsoft.Web/connections/keyvault-ops"
OPS_SITE_ID = f"{DEMO_SCOPE}/Microsoft.Web/sites/ops-func"
OPS_ACCOUNT_ID = f"{DEMO_SCOPE}/Microsoft.Automation/automationAccounts/ops-automation"
OPS_RUNBOOK = "Update-Consumers"


def tune_simulators(stack: Any) -> None:
    """Quicker answers for a demo: the email service's poll delay is 5 s by default."""
    stack.acs.set_switches(retry_after_seconds=1)


async def register_demo(base_url: str, auth_headers: dict[str, str], stack: Any) -> dict[str, Any]:
    """Seed the Entra simulator and register the demo application through the API, as a user would."""
    stack.entra.add_application(
        DEMO_DISPLAY_NAME,
        app_id=DEMO_APP_ID,
        object_id=DEMO_OBJECT_ID,
        passwords=[
            {
                "displayName": "created by hand",
                "secretText": "demo-hand-made-secret-do-not-use-0001",
                "endDateTime": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            }
        ],
    )
    stack.vercel.add_token(DEMO_VERCEL_TOKEN, DEMO_VERCEL_TEAM)
    stack.vercel.add_project(DEMO_VERCEL_PROJECT, team_id=DEMO_VERCEL_TEAM)
    stack.vercel.add_deployment(DEMO_VERCEL_PROJECT)
    demo_vault = stack.keyvaults["demo"].url
    body: dict[str, Any] = {
        "objectId": DEMO_OBJECT_ID,
        "displayName": DEMO_DISPLAY_NAME,
        "rotation": {"enabled": True, "secretLifetimeDays": 21, "updateThresholdHours": 1},
        "notifications": {"recipients": ["platform-team@contoso.example"], "thresholdAlertDays": 3},
        "groupId": DEMO_GROUP_ID,
        "integrations": [
            {
                "kind": "keyVault",
                "name": "payroll-vault",
                "vaultUrl": demo_vault,
                "secretName": "payroll-client-secret",
            },
            {
                "kind": "vercel",
                "name": "payroll-web",
                "projectId": DEMO_VERCEL_PROJECT,
                "envVarName": "AZURE_CLIENT_SECRET",
                "targets": ["production", "preview"],
                "redeploy": True,
            },
        ],
    }
    watch = [
        f"Key Vault 'demo' ({demo_vault}) receives secret 'payroll-client-secret': "
        f"curl -sk {demo_vault}/_sim/state",
        f"Vercel project '{DEMO_VERCEL_PROJECT}' receives AZURE_CLIENT_SECRET and a new production deployment: "
        f"curl -sk {stack.vercel.url}/_sim/state",
        f"Emails to platform-team@contoso.example land in the simulated ACS outbox: curl -sk {stack.acs.url}/_sim/outbox",
    ]
    async with httpx.AsyncClient(base_url=f"{base_url}/api", headers=auth_headers, timeout=30) as client:
        # The group holds the Vercel token (write-only: the API stores it in the rotator's vault).
        group = await client.put(
            f"/groups/{DEMO_GROUP_ID}",
            json={
                "displayName": "Web team",
                "vercel": {"teamId": DEMO_VERCEL_TEAM, "token": DEMO_VERCEL_TOKEN},
            },
        )
        group.raise_for_status()
        response = await client.put(f"/applications/{DEMO_APP_ID}", json=body)
        response.raise_for_status()
        registered: dict[str, Any] = response.json()
    registered["watch"] = watch
    return registered


async def register_operations_demo(base_url: str, auth_headers: dict[str, str], stack: Any) -> dict[str, Any]:
    """The second demo: a Logic App API connection, an App Service setting, an Automation runbook
    and a signed webhook, all seeded in the simulators (as their admin routes would over HTTP)."""
    stack.entra.add_application(
        OPS_DISPLAY_NAME,
        app_id=OPS_APP_ID,
        object_id=OPS_OBJECT_ID,
        passwords=[
            {
                "displayName": "created by hand",
                "secretText": "demo-ops-hand-made-secret-do-not-use-02",
                "endDateTime": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            }
        ],
    )
    stack.arm.add_connection(OPS_CONNECTION_ID, client_id=OPS_APP_ID, tenant_id=stack.tenant_id)
    stack.arm.add_site(OPS_SITE_ID, {"WEBSITE_RUN_FROM_PACKAGE": "1"})
    stack.arm.add_automation_account(OPS_ACCOUNT_ID)
    stack.arm.add_runbook(
        OPS_ACCOUNT_ID, OPS_RUNBOOK, {"ClientSecret": {"type": "System.String", "isMandatory": True}}
    )
    hook = stack.webhook.add_hook()
    body: dict[str, Any] = {
        "objectId": OPS_OBJECT_ID,
        "displayName": OPS_DISPLAY_NAME,
        "rotation": {"enabled": True, "secretLifetimeDays": 21, "updateThresholdHours": 1},
        "integrations": [
            {"kind": "logicAppConnection", "name": "keyvault-ops", "resourceId": OPS_CONNECTION_ID},
            {
                "kind": "appService",
                "name": "ops-func",
                "resourceId": OPS_SITE_ID,
                "settingName": "AZURE_CLIENT_SECRET",
            },
            {
                "kind": "automation",
                "name": "runbook",
                "target": "runbook",
                "automationAccountId": OPS_ACCOUNT_ID,
                "runbookName": OPS_RUNBOOK,
            },
            {"kind": "automation", "name": "webhook", "target": "webhook", "webhookUrl": hook.url},
        ],
    }
    async with httpx.AsyncClient(base_url=f"{base_url}/api", headers=auth_headers, timeout=30) as client:
        response = await client.put(f"/applications/{OPS_APP_ID}", json=body)
        response.raise_for_status()
        registered: dict[str, Any] = response.json()
    registered["watch"] = [
        "The Logic App connection, the App Service setting and the runbook jobs (Resource Manager): "
        f"curl -sk {stack.arm.url}/_sim/state",
        f"The signed webhook deliveries (Standard Webhooks): curl -sk {stack.webhook.url}/_sim/state",
    ]
    return registered


LOCAL_PORTAL_SECRET = "local-portal-secret-not-for-production"  # noqa: S105 - a simulated portal


def local_portal(stack: Any, audience: str, role: str) -> tuple[str, str]:
    """For ROTATOR_API_AUTH=entra locally: the simulated Entra ID exposes the rotator's API and a
    "Local portal" app holding ``role``; its client id and the curl that gets it a token."""
    portal = stack.entra.add_application(
        "Local portal", passwords=[{"displayName": "local", "secretText": LOCAL_PORTAL_SECRET}]
    )
    stack.entra.expose_api(audience, {portal.app_id: [role]})
    token_url = f"{stack.entra.url}/{stack.entra.tenant_id}/oauth2/v2.0/token"
    curl = (
        f"curl -s --cacert {stack.ca_pem} {token_url} -d grant_type=client_credentials "
        f"-d client_id={portal.app_id} -d client_secret={LOCAL_PORTAL_SECRET} -d scope={audience}/.default"
    )
    return portal.app_id, curl


def portal_token(stack: Any, audience: str, client_id: str) -> str:
    """A token for the local portal, as its curl would get it."""
    import httpx

    token_url = f"{stack.entra.url}/{stack.entra.tenant_id}/oauth2/v2.0/token"
    response = httpx.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": LOCAL_PORTAL_SECRET,
            "scope": f"{audience}/.default",
        },
        verify=str(stack.ca_pem),
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])
