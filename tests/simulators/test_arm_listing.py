"""The ARM simulator's read side: Subscriptions - List, the Key Vault management plane (Get, List,
Update Access Policy and its effect on the data plane), Permissions - List and the lists of API
connections, Web Apps, Automation accounts and runbooks, all over real HTTPS with ARM tokens."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient

from simulators import SimulatorStack
from simulators.arm import ARM_RESOURCE, DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION

SUB = "11111111-2222-3333-4444-555555555555"
RG = f"/subscriptions/{SUB}/resourceGroups/payroll-rg"
PROVIDERS = f"{RG}/providers"
DEFAULT_RG = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{DEFAULT_RESOURCE_GROUP}"
OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
VERSIONS = {
    "subscriptions": "2022-12-01",
    "vaults": "2023-07-01",
    "permissions": "2022-04-01",
    "connections": "2016-06-01",
    "web": "2023-12-01",
    "automation": "2023-11-01",
}


@pytest.fixture
def arm(stack: SimulatorStack) -> Iterator[httpx.Client]:
    """An HTTPS client for the ARM simulator with a management token for principal ``rotator``
    (the oid the managed identity's tokens carry, so ARM and Key Vault see the same caller)."""
    token = stack.issuer.issue("rotator", ARM_RESOURCE).token
    verify = ssl.create_default_context(cafile=str(stack.ca_pem))
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=stack.arm.url, verify=verify, headers=headers, timeout=10) as client:
        yield client


def get(client: httpx.Client, path: str, api: str, **params: str) -> httpx.Response:
    return client.get(path, params={"api-version": VERSIONS[api], **params})


def all_pages(client: httpx.Client, path: str, api: str, **params: str) -> tuple[list[Any], int]:
    """Every item of a list, following nextLink; and how many pages it took."""
    response = get(client, path, api, **params)
    items, pages = [], 0
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["value"]
        pages += 1
        if "nextLink" not in body:
            return items, pages
        link = body["nextLink"]
        assert link.startswith(str(client.base_url).rstrip("/") + "/")  # an absolute URL on this server
        response = client.get(link)


@pytest.fixture(autouse=True)
def _forget_key_vault_challenges(stack: SimulatorStack) -> Iterator[None]:
    """The SDK caches each vault's auth challenge process-wide: forget ours, so a later test still
    sees its client's first, unauthenticated probe."""
    yield
    from azure.keyvault.secrets._shared import http_challenge_cache

    for vault in stack.keyvaults.values():
        http_challenge_cache.remove_challenge_for_url(vault.url)


def secret_client(stack: SimulatorStack, vault: str) -> SecretClient:
    return SecretClient(
        stack.keyvaults[vault].url,
        ManagedIdentityCredential(),
        verify_challenge_resource=False,
        connection_verify=str(stack.ca_pem),
    )


def inner_code(error: HttpResponseError) -> str | None:
    inner = getattr(error.error, "innererror", None)
    return inner.get("code") if isinstance(inner, dict) else None


# ----------------------------------------------------------------- subscriptions


def test_subscriptions_are_the_seeded_ones_and_those_in_resource_ids(
    stack: SimulatorStack, arm: httpx.Client
) -> None:
    stack.arm.add_subscription("aaaaaaaa-0000-0000-0000-000000000001", display_name="Payroll prod")
    seeded = arm.post("/_sim/subscriptions", json={"subscriptionId": "bbbbbbbb-0000-0000-0000-000000000002"})
    assert seeded.status_code == 201
    stack.arm.add_site(f"{PROVIDERS}/Microsoft.Web/sites/payroll-api")

    items, _ = all_pages(arm, "/subscriptions", "subscriptions")

    by_id = {s["subscriptionId"]: s for s in items}
    assert set(by_id) == {
        "aaaaaaaa-0000-0000-0000-000000000001",
        "bbbbbbbb-0000-0000-0000-000000000002",
        SUB,  # from the site's id
        DEFAULT_SUBSCRIPTION,  # where the stack's vaults live unless seeded elsewhere
    }
    prod = by_id["aaaaaaaa-0000-0000-0000-000000000001"]
    assert prod["id"] == "/subscriptions/aaaaaaaa-0000-0000-0000-000000000001"
    assert (prod["displayName"], prod["state"], prod["tenantId"]) == (
        "Payroll prod",
        "Enabled",
        stack.tenant_id,
    )
    assert [s["subscriptionId"] for s in stack.arm.state()["subscriptions"]] == [
        s["subscriptionId"] for s in items
    ]


def test_every_list_pages_with_a_next_link_on_this_server(stack: SimulatorStack, arm: httpx.Client) -> None:
    for index in range(5):
        stack.arm.add_site(f"{PROVIDERS}/Microsoft.Web/sites/site-{index}")
    stack.arm.add_subscription("cccccccc-0000-0000-0000-000000000003")
    assert arm.post("/_sim/switches", json={"list_page_size": 2}).json()["list_page_size"] == 2

    first = get(arm, f"{PROVIDERS}/Microsoft.Web/sites", "web").json()
    assert len(first["value"]) == 2
    link = urlsplit(first["nextLink"])
    assert f"{link.scheme}://{link.netloc}" == stack.arm.url
    assert link.path == f"{PROVIDERS}/Microsoft.Web/sites"
    assert parse_qs(link.query) == {"api-version": [VERSIONS["web"]], "$skiptoken": ["2"]}

    sites, pages = all_pages(arm, f"{PROVIDERS}/Microsoft.Web/sites", "web")
    assert sorted(s["name"] for s in sites) == [f"site-{i}" for i in range(5)] and pages == 3
    subscriptions, pages = all_pages(arm, "/subscriptions", "subscriptions")
    assert len(subscriptions) == 3 and pages == 2  # the seeded one, the sites', the vaults'


def test_deny_access_refuses_every_read(stack: SimulatorStack, arm: httpx.Client) -> None:
    stack.arm.add_site(f"{PROVIDERS}/Microsoft.Web/sites/payroll-api")
    stack.arm.set_switches(deny_access="Microsoft\\.KeyVault")
    refused = get(arm, f"{DEFAULT_RG}/providers/Microsoft.KeyVault/vaults", "vaults")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "AuthorizationFailed"
    assert "'Microsoft.KeyVault/vaults/read' over scope" in refused.json()["error"]["message"]
    assert get(arm, f"{PROVIDERS}/Microsoft.Web/sites", "web").status_code == 200

    stack.arm.set_switches(deny_access=True)
    for path, api in (
        ("/subscriptions", "subscriptions"),
        (f"{DEFAULT_RG}/providers/Microsoft.KeyVault/vaults/rotator", "vaults"),
        (
            f"{DEFAULT_RG}/providers/Microsoft.KeyVault/vaults/rotator/providers/Microsoft.Authorization/permissions",
            "permissions",
        ),
        (f"{PROVIDERS}/Microsoft.Web/connections", "connections"),
        (f"{PROVIDERS}/Microsoft.Web/sites", "web"),
        (f"{PROVIDERS}/Microsoft.Automation/automationAccounts", "automation"),
    ):
        answer = get(arm, path, api)
        assert (answer.status_code, answer.json()["error"]["code"]) == (403, "AuthorizationFailed"), path


def test_a_list_in_an_unknown_scope_is_not_found(stack: SimulatorStack, arm: httpx.Client) -> None:
    stack.arm.add_site(f"{PROVIDERS}/Microsoft.Web/sites/payroll-api")
    missing_group = get(arm, f"/subscriptions/{SUB}/resourceGroups/nope/providers/Microsoft.Web/sites", "web")
    assert (missing_group.status_code, missing_group.json()["error"]["code"]) == (
        404,
        "ResourceGroupNotFound",
    )
    missing_sub = get(
        arm, "/subscriptions/99999999-0000-0000-0000-000000000000/providers/Microsoft.Web/sites", "web"
    )
    assert (missing_sub.status_code, missing_sub.json()["error"]["code"]) == (404, "SubscriptionNotFound")
    # A group with something else in it lists nothing of this kind.
    assert get(arm, f"{PROVIDERS}/Microsoft.Automation/automationAccounts", "automation").json() == {
        "value": []
    }


# ----------------------------------------------------------------- key vaults


def test_vault_get_and_lists_have_the_documented_shape(stack: SimulatorStack, arm: httpx.Client) -> None:
    stack.arm.set_vault("demo", subscription_id=SUB, resource_group="payroll-rg", tags={"team": "payroll"})

    rotator = get(arm, f"{DEFAULT_RG}/providers/Microsoft.KeyVault/vaults/rotator", "vaults")
    assert rotator.status_code == 200
    body = rotator.json()
    assert body["id"] == f"{DEFAULT_RG}/providers/Microsoft.KeyVault/vaults/rotator"
    assert (body["name"], body["type"], body["location"], body["tags"]) == (
        "rotator",
        "Microsoft.KeyVault/vaults",
        "westeurope",
        {},
    )
    properties = body["properties"]
    assert properties["tenantId"] == stack.tenant_id
    assert properties["sku"] == {"family": "A", "name": "standard"}
    assert properties["vaultUri"] == stack.keyvaults["rotator"].url + "/"
    assert properties["enableRbacAuthorization"] is True and properties["accessPolicies"] == []

    demo, _ = all_pages(arm, f"{PROVIDERS}/Microsoft.KeyVault/vaults", "vaults")
    assert [(v["name"], v["tags"]) for v in demo] == [("demo", {"team": "payroll"})]
    assert (
        demo[0]["id"] == stack.arm.vault_resource_id("demo") == f"{PROVIDERS}/Microsoft.KeyVault/vaults/demo"
    )
    by_subscription, _ = all_pages(
        arm, f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.KeyVault/vaults", "vaults"
    )
    assert [v["name"] for v in by_subscription] == ["rotator"]

    # $top: the page size of both vault lists (the rest follows through nextLink).
    stack.arm.set_vault("demo", subscription_id=DEFAULT_SUBSCRIPTION, resource_group=DEFAULT_RESOURCE_GROUP)
    page = get(arm, f"{DEFAULT_RG}/providers/Microsoft.KeyVault/vaults", "vaults", **{"$top": "1"}).json()
    assert len(page["value"]) == 1 and parse_qs(urlsplit(page["nextLink"]).query)["$top"] == ["1"]
    assert (
        len(all_pages(arm, f"{DEFAULT_RG}/providers/Microsoft.KeyVault/vaults", "vaults", **{"$top": "1"})[0])
        == 2
    )

    # A vault with a seeded place is only there; one without (rotator) answers at any id, as the
    # ids tests built before vaults had a place expect.
    wrong_group = get(arm, f"{RG}/providers/Microsoft.KeyVault/vaults/demo", "vaults")
    assert (wrong_group.status_code, wrong_group.json()["error"]["code"]) == (404, "ResourceNotFound")
    anywhere = get(arm, f"{RG}/providers/Microsoft.KeyVault/vaults/rotator", "vaults")
    assert anywhere.status_code == 200
    assert anywhere.json()["id"] == f"{RG}/providers/Microsoft.KeyVault/vaults/rotator"


def test_an_access_policy_opens_an_access_policy_vault(stack: SimulatorStack, arm: httpx.Client) -> None:
    seeded = arm.post("/_sim/vaults", json={"name": "demo", "enableRbacAuthorization": False})
    assert seeded.status_code == 200 and seeded.json()["properties"]["enableRbacAuthorization"] is False
    vault_id = stack.arm.vault_resource_id("demo")
    client = secret_client(stack, "demo")

    with pytest.raises(HttpResponseError) as refused:
        client.set_secret("payroll", "v1")
    assert refused.value.status_code == 403 and inner_code(refused.value) == "ForbiddenByPolicy"
    assert "does not have secrets set permission" in str(refused.value.message)

    policy = {"tenantId": stack.tenant_id, "objectId": "rotator", "permissions": {"secrets": ["set"]}}
    added = arm.put(
        f"{vault_id}/accessPolicies/add",
        params={"api-version": VERSIONS["vaults"]},
        json={"properties": {"accessPolicies": [policy]}},
    )
    assert added.status_code == 200
    assert added.json() == {
        "id": f"{vault_id}/accessPolicies/",
        "type": "Microsoft.KeyVault/vaults/accessPolicies",
        "properties": {"accessPolicies": [policy]},
    }

    assert client.set_secret("payroll", "v1").value == "v1"  # the real SDK's write now succeeds
    with pytest.raises(HttpResponseError) as no_get:
        client.get_secret("payroll")  # "set" is not "get"
    assert inner_code(no_get.value) == "ForbiddenByPolicy"

    # add merges permissions into the same principal's entry
    more = {**policy, "permissions": {"secrets": ["get", "list"]}}
    assert (
        arm.put(
            f"{vault_id}/accessPolicies/add",
            params={"api-version": VERSIONS["vaults"]},
            json={"properties": {"accessPolicies": [more]}},
        ).status_code
        == 200
    )
    assert client.get_secret("payroll").value == "v1"
    vault = get(arm, vault_id, "vaults").json()
    assert vault["properties"]["accessPolicies"] == [
        {**policy, "permissions": {"secrets": ["set", "get", "list"]}}
    ]

    # remove takes permissions away; replace sets them
    arm.put(
        f"{vault_id}/accessPolicies/remove",
        params={"api-version": VERSIONS["vaults"]},
        json={"properties": {"accessPolicies": [{**policy, "permissions": {"secrets": ["set"]}}]}},
    )
    with pytest.raises(HttpResponseError):
        client.set_secret("payroll", "v2")
    arm.put(
        f"{vault_id}/accessPolicies/replace",
        params={"api-version": VERSIONS["vaults"]},
        json={"properties": {"accessPolicies": [{**policy, "permissions": {"secrets": ["all"]}}]}},
    )
    assert client.set_secret("payroll", "v2").value == "v2"
    assert stack.keyvaults["demo"].state()["accessPolicies"] == [
        {**policy, "permissions": {"secrets": ["all"]}}
    ]

    bad = arm.put(
        f"{vault_id}/accessPolicies/add",
        params={"api-version": VERSIONS["vaults"]},
        json={"properties": {"accessPolicies": [{"objectId": "x", "permissions": {}}]}},
    )
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "BadRequest")


def test_a_role_assignment_does_not_open_an_access_policy_vault(
    stack: SimulatorStack, arm: httpx.Client
) -> None:
    stack.arm.set_vault("demo", enable_rbac_authorization=False)
    vault_id = stack.arm.vault_resource_id("demo")
    assignment = {
        "properties": {
            "roleDefinitionId": f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{OFFICER}",
            "principalId": "rotator",
            "principalType": "ServicePrincipal",
        }
    }
    created = arm.put(
        f"{vault_id}/providers/Microsoft.Authorization/roleAssignments/00000000-0000-0000-0000-0000000000a1",
        params={"api-version": "2022-04-01"},
        json=assignment,
    )
    assert created.status_code == 201

    with pytest.raises(HttpResponseError) as refused:
        secret_client(stack, "demo").set_secret("payroll", "v1")
    assert refused.value.status_code == 403 and inner_code(refused.value) == "ForbiddenByPolicy"
    permissions = get(arm, f"{vault_id}/providers/Microsoft.Authorization/permissions", "permissions").json()
    assert all(entry["dataActions"] == [] for entry in permissions["value"])


def test_permissions_follow_role_assignments_on_an_rbac_vault(
    stack: SimulatorStack, arm: httpx.Client
) -> None:
    vault = stack.keyvaults["demo"]
    vault_id = stack.arm.vault_resource_id("demo")
    permissions_path = f"{vault_id}/providers/Microsoft.Authorization/permissions"

    open_vault = get(arm, permissions_path, "permissions").json()["value"]
    assert {"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []} in open_vault
    assert any("Microsoft.KeyVault/vaults/secrets/*" in e["dataActions"] for e in open_vault)

    vault.deny_access = True  # no role for the caller yet
    closed = get(arm, permissions_path, "permissions").json()
    assert closed == {
        "value": [{"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []}]
    }
    group_permissions = get(
        arm, f"{DEFAULT_RG}/providers/Microsoft.Authorization/permissions", "permissions"
    ).json()
    assert all(e["dataActions"] == [] for e in group_permissions["value"])

    assignment = {
        "properties": {
            "roleDefinitionId": f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{OFFICER}",
            "principalId": "rotator",
        }
    }
    assert (
        arm.put(
            f"{DEFAULT_RG}/providers/Microsoft.Authorization/roleAssignments/00000000-0000-0000-0000-0000000000b2",
            params={"api-version": "2022-04-01"},
            json=assignment,
        ).status_code
        == 201
    )
    granted = get(arm, permissions_path, "permissions").json()["value"]
    assert any("Microsoft.KeyVault/vaults/secrets/*" in e["dataActions"] for e in granted)
    group_granted = get(
        arm, f"{DEFAULT_RG}/providers/Microsoft.Authorization/permissions", "permissions"
    ).json()
    assert any(e["dataActions"] for e in group_granted["value"])
    missing = get(
        arm,
        f"{RG}/providers/Microsoft.KeyVault/vaults/nope/providers/Microsoft.Authorization/permissions",
        "permissions",
    )
    assert missing.status_code == 404
    # The group's Secrets Officer assignment opens the RBAC vault's data plane too.
    assert vault.deny_access is False
    assert secret_client(stack, "demo").set_secret("opened", "v").value == "v"


# ----------------------------------------------------------------- the destinations' lists


def test_connections_sites_accounts_and_runbooks_are_listed(stack: SimulatorStack, arm: httpx.Client) -> None:
    stack.arm.add_connection(
        f"{PROVIDERS}/Microsoft.Web/connections/payroll-kv", client_id="app-1", secret="s3cr3t-value"
    )
    stack.arm.add_connection(
        f"/subscriptions/{SUB}/resourceGroups/other/providers/Microsoft.Web/connections/x", client_id="app-2"
    )
    arm.post(
        "/_sim/sites",
        json={"resourceId": f"{PROVIDERS}/Microsoft.Web/sites/payroll-func", "kind": "functionapp,linux"},
    )
    stack.arm.add_site(f"{PROVIDERS}/Microsoft.Web/sites/payroll-api")
    stack.arm.add_site(f"{PROVIDERS}/Microsoft.Web/sites/payroll-api/slots/staging")
    account = f"{PROVIDERS}/Microsoft.Automation/automationAccounts/ops"
    stack.arm.seed(
        {
            "automationAccounts": [
                {
                    "resourceId": account,
                    "runbooks": [
                        {"name": "Update-Secret", "description": "Rotates a secret"},
                        {"name": "Other"},
                    ],
                }
            ]
        }
    )

    connections = get(arm, f"{PROVIDERS}/Microsoft.Web/connections", "connections")
    assert "s3cr3t-value" not in connections.text
    [connection] = connections.json()["value"]
    single = get(arm, f"{PROVIDERS}/Microsoft.Web/connections/payroll-kv", "connections").json()
    assert (
        connection == single
        and connection["properties"]["nonSecretParameterValues"]["token:clientId"] == "app-1"
    )
    top = get(arm, f"{PROVIDERS}/Microsoft.Web/connections", "connections", **{"$top": "1"}).json()
    assert len(top["value"]) == 1 and "nextLink" not in top

    sites = get(arm, f"{PROVIDERS}/Microsoft.Web/sites", "web").json()["value"]
    assert {s["name"]: s["kind"] for s in sites} == {
        "payroll-func": "functionapp,linux",
        "payroll-api": "app",
    }
    api = next(s for s in sites if s["name"] == "payroll-api")
    assert api["type"] == "Microsoft.Web/sites" and api["location"] == "westeurope"
    assert api["properties"]["state"] == "Running" and api["properties"]["enabled"] is True
    assert api["properties"]["defaultHostName"] == "payroll-api.azurewebsites.net"
    with_slots = get(
        arm, f"/subscriptions/{SUB}/providers/Microsoft.Web/sites", "web", includeSlots="true"
    ).json()
    assert "payroll-api/staging" in [s["name"] for s in with_slots["value"]]

    [listed] = get(arm, f"{PROVIDERS}/Microsoft.Automation/automationAccounts", "automation").json()["value"]
    assert (listed["id"], listed["name"], listed["type"]) == (
        account,
        "ops",
        "Microsoft.Automation/AutomationAccounts",
    )
    by_subscription = get(
        arm, f"/subscriptions/{SUB}/providers/Microsoft.Automation/automationAccounts", "automation"
    )
    assert [a["name"] for a in by_subscription.json()["value"]] == ["ops"]
    runbooks = get(arm, f"{account}/runbooks", "automation").json()["value"]
    assert [
        (r["name"], r["type"], r["properties"]["runbookType"], r["properties"]["state"]) for r in runbooks
    ] == [
        ("Update-Secret", "Microsoft.Automation/AutomationAccounts/Runbooks", "PowerShell", "Published"),
        ("Other", "Microsoft.Automation/AutomationAccounts/Runbooks", "PowerShell", "Published"),
    ]
    assert (
        runbooks[0]["properties"]["description"] == "Rotates a secret"
        and "description" not in runbooks[1]["properties"]
    )
    missing = get(arm, f"{PROVIDERS}/Microsoft.Automation/automationAccounts/nope/runbooks", "automation")
    assert missing.status_code == 404


def test_seeding_state_and_reset(stack: SimulatorStack) -> None:
    policy = {"tenantId": stack.tenant_id, "objectId": "someone", "permissions": {"secrets": ["get"]}}
    stack.seed(
        {
            "arm": {
                "subscriptions": [{"subscriptionId": SUB, "displayName": "Payroll", "state": "Warned"}],
                "vaults": [
                    {
                        "name": "demo",
                        "subscriptionId": SUB,
                        "resourceGroup": "payroll-rg",
                        "location": "northeurope",
                        "enableRbacAuthorization": False,
                        "accessPolicies": [policy],
                    }
                ],
            }
        }
    )
    state = stack.arm.state()
    assert state["vaults"]["demo"] == {
        "resourceId": f"{PROVIDERS}/Microsoft.KeyVault/vaults/demo",
        "location": "northeurope",
        "tags": {},
        "enableRbacAuthorization": False,
        "accessPolicies": [policy],
    }
    assert {"subscriptionId": SUB, "displayName": "Payroll", "state": "Warned"}.items() <= next(
        s for s in state["subscriptions"] if s["subscriptionId"] == SUB
    ).items()
    assert stack.keyvaults["demo"].enable_rbac_authorization is False
    with pytest.raises(ValueError, match="no Key Vault simulator named"):
        stack.arm.seed({"vaults": [{"name": "elsewhere"}]})

    stack.reset()
    assert (
        stack.arm.state()["vaults"]["demo"]["resourceId"]
        == f"{DEFAULT_RG}/providers/Microsoft.KeyVault/vaults/demo"
    )
    assert (
        stack.keyvaults["demo"].enable_rbac_authorization is True
        and stack.keyvaults["demo"].access_policies == []
    )
    assert [s["subscriptionId"] for s in stack.arm.state()["subscriptions"]] == [DEFAULT_SUBSCRIPTION]
    assert stack.arm.switches()["list_page_size"] == 100
