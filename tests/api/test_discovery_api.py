"""Destination pickers, consumer discovery, the plan's blast radius and sign-in evidence, through the
HTTP API against the simulated Azure DevOps, Vercel, Key Vault and Graph (ARM: test_discovery_arm)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.api.test_applications_api import registration

VERCEL_TOKEN = "vercel-token-discovery-0123456789"


def _org() -> str:
    return f"org{uuid.uuid4().hex[:10]}"


def _all_pages(api: httpx.Client, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(20):
        response = api.get(path, params={**params, **({"continuationToken": token} if token else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        token = body["continuationToken"]
        if token is None:
            return items
    raise AssertionError("paging did not end")


def test_devops_projects_are_listed_page_by_page(api: httpx.Client, sim_stack: Any) -> None:
    org = _org()
    names = [f"project-{i}" for i in range(5)]
    for name in names:
        sim_stack.devops.add_project(org, name)
    first = api.get("/destinations/devOpsProjects", params={"organization": org, "pageSize": 2})
    assert first.status_code == 200, first.text
    assert len(first.json()["items"]) == 2 and first.json()["continuationToken"]
    items = _all_pages(api, "/destinations/devOpsProjects", {"organization": org, "pageSize": 2})
    assert sorted(i["name"] for i in items) == names
    assert all(set(i) == {"id", "name"} for i in items)


def test_service_connections_say_which_the_rotator_can_update_and_why_not(
    api: httpx.Client, sim_stack: Any
) -> None:
    org, app_id = _org(), str(uuid.uuid4())
    devops = sim_stack.devops
    devops.add_service_connection(org, "web", name="prod-arm", service_principal_id=app_id, key="k")
    devops.add_service_connection(
        org,
        "web",
        name="federated",
        service_principal_id=app_id,
        scheme="WorkloadIdentityFederation",
        key=None,
    )
    devops.add_service_connection(org, "web", name="gh", service_principal_id=app_id, type="github", key=None)
    items = _all_pages(
        api, "/destinations/devOpsServiceConnections", {"organization": org, "project": "web", "pageSize": 1}
    )
    by_name = {i["name"]: i for i in items}
    assert by_name["prod-arm"]["supported"] is True and "reason" not in by_name["prod-arm"]
    assert by_name["prod-arm"]["servicePrincipalId"] == app_id
    assert by_name["federated"]["supported"] is False
    assert "workload identity federation" in by_name["federated"]["reason"]
    assert by_name["gh"]["supported"] is False and "github" in by_name["gh"]["reason"]
    assert "k" not in {str(v) for i in items for v in i.values()}


def test_an_organization_the_identity_is_not_in_answers_403_naming_what_to_grant(
    api: httpx.Client, sim_stack: Any
) -> None:
    org = _org()
    sim_stack.devops.add_project(org, "web")
    sim_stack.devops.set_members(org, {"somebody-else"})
    response = api.get("/destinations/devOpsProjects", params={"organization": org})
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    assert org in response.json()["detail"] and "grant" in response.json()["detail"]


def _vercel_group(api: httpx.Client, sim_stack: Any, team: str) -> str:
    group_id = f"web-{uuid.uuid4().hex[:8]}"
    sim_stack.vercel.add_token(VERCEL_TOKEN, team)
    created = api.put(
        f"/groups/{group_id}", json={"displayName": "Web", "vercel": {"teamId": team, "token": VERCEL_TOKEN}}
    )
    assert created.status_code == 201, created.text
    return group_id


def test_vercel_projects_of_a_group_are_listed_with_its_token(api: httpx.Client, sim_stack: Any) -> None:
    team = f"team_{uuid.uuid4().hex[:8]}"
    group_id = _vercel_group(api, sim_stack, team)
    created = [sim_stack.vercel.add_project(f"site-{i}", team_id=team).id for i in range(3)]
    sim_stack.vercel.add_project("other-team-site", team_id="team_other")
    items = _all_pages(api, "/destinations/vercelProjects", {"groupId": group_id, "pageSize": 2})
    assert sorted(i["id"] for i in items) == sorted(created)
    assert VERCEL_TOKEN not in str(items)


def test_a_group_without_a_vercel_token_is_a_409_and_an_unknown_one_a_404(api: httpx.Client) -> None:
    group_id = f"plain-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/groups/{group_id}", json={"displayName": "Plain"}).status_code == 201
    assert api.get("/destinations/vercelProjects", params={"groupId": group_id}).status_code == 409
    assert api.get("/destinations/vercelProjects", params={"groupId": "no-such-group"}).status_code == 404


def test_picker_input_is_checked_and_named(api: httpx.Client) -> None:
    cases = [
        ("/destinations/keyVaults", {}, "subscriptionId"),
        ("/destinations/keyVaults", {"subscriptionId": "not-a-guid"}, "subscriptionId"),
        ("/destinations/appServices", {"subscriptionId": str(uuid.uuid4())}, "resourceGroup"),
        ("/destinations/devOpsProjects", {"organization": "-bad"}, "organization"),
        (
            "/destinations/devOpsProjects",
            {"organization": "contoso", "continuationToken": "x"},
            "continuationToken",
        ),
        ("/destinations/runbooks", {"automationAccountId": "/subscriptions/x"}, "automationAccountId"),
        ("/destinations/vercelProjects", {"groupId": "UPPER"}, "groupId"),
        ("/destinations/devOpsProjects", {"organization": "contoso", "pageSize": "500"}, "pageSize"),
        ("/destinations/subscriptions", {"bogus": "1"}, "query.bogus"),
    ]
    for path, params, field in cases:
        response = api.get(path, params=params)
        assert response.status_code == 400, (path, params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in response.json()["errors"]], (path, response.text)


def test_a_token_from_one_picker_does_not_continue_another(api: httpx.Client, sim_stack: Any) -> None:
    org = _org()
    for i in range(3):
        sim_stack.devops.add_project(org, f"p{i}")
    token = api.get("/destinations/devOpsProjects", params={"organization": org, "pageSize": 1}).json()[
        "continuationToken"
    ]
    team = f"team_{uuid.uuid4().hex[:8]}"
    group_id = _vercel_group(api, sim_stack, team)
    response = api.get(
        "/destinations/vercelProjects", params={"groupId": group_id, "continuationToken": token}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "continuationToken"


@pytest.mark.parametrize("cursor", ["\ud800", "caf\u00e9", "a\nb", "\u0000"])
def test_a_token_whose_cursor_no_url_can_carry_is_a_400(
    api: httpx.Client, sim_stack: Any, cursor: str
) -> None:
    """Found by schemathesis: a token of the right picker whose cursor is a lone surrogate was
    passed on to httpx, which cannot encode it (a 500). Cursors are printable ASCII or refused."""
    import base64
    import json

    group_id = _vercel_group(api, sim_stack, f"team_{uuid.uuid4().hex[:8]}")
    raw = json.dumps({"k": "vercelProjects", "v": cursor}).encode()  # ensure_ascii: escapes survive
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    response = api.get(
        "/destinations/vercelProjects", params={"groupId": group_id, "continuationToken": token}
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == "continuationToken"


# --------------------------------------------------------------------------- consumers


def _consumers(api: httpx.Client, app_id: str, **params: str) -> dict[str, Any]:
    response = api.get(f"/applications/{app_id}/consumers", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_devops_consumers_found_by_service_principal_one_covered_one_not(
    api: httpx.Client, sim_stack: Any
) -> None:
    org, app_id = _org(), str(uuid.uuid4())
    devops = sim_stack.devops
    covered = devops.add_service_connection(org, "web", name="covered", service_principal_id=app_id)
    missed = devops.add_service_connection(org, "web", name="forgotten", service_principal_id=app_id)
    devops.add_service_connection(org, "web", name="another-app", service_principal_id=str(uuid.uuid4()))
    integration = {
        "kind": "azureDevOps",
        "name": "pipelines",
        "organization": org,
        "project": "web",
        "serviceConnectionId": covered.id,
    }
    assert (
        api.put(f"/applications/{app_id}", json=registration(integrations=[integration])).status_code == 201
    )

    body = _consumers(api, app_id)
    found = {c["name"]: c for c in body["items"] if c["kind"] == "azureDevOpsServiceConnection"}
    assert set(found) == {"covered", "forgotten"}
    assert found["covered"]["covered"] is True and found["covered"]["coveredBy"] == "pipelines"
    assert found["covered"]["integration"] is None
    assert found["forgotten"]["covered"] is False and found["forgotten"]["evidence"] == "servicePrincipalId"
    suggestion = found["forgotten"]["integration"]
    assert suggestion == {
        "kind": "azureDevOps",
        "organization": org,
        "project": "web",
        "serviceConnectionId": missed.id,
    }
    # Ready to PUT: added to the registration, it is accepted and then covers the consumer.
    current = api.get(f"/applications/{app_id}").json()
    current["integrations"].append({**suggestion, "name": "forgotten"})
    assert api.put(f"/applications/{app_id}", json=current).status_code == 200
    again = {c["name"]: c for c in _consumers(api, app_id)["items"]}
    assert again["forgotten"]["coveredBy"] == "forgotten"

    # The dry run shows the same blast radius.
    plan = api.get(f"/applications/{app_id}/plan").json()
    assert {c["name"] for c in plan["blastRadius"]["updated"]} >= {"covered", "forgotten"}
    assert (
        api.get(f"/applications/{app_id}/plan", params={"consumers": "false"}).json().get("blastRadius")
        is None
    )


def test_the_plan_shows_consumers_the_next_rotation_leaves_behind(api: httpx.Client, sim_stack: Any) -> None:
    org, app_id = _org(), str(uuid.uuid4())
    covered = sim_stack.devops.add_service_connection(org, "ops", name="deploy", service_principal_id=app_id)
    sim_stack.devops.add_service_connection(org, "ops", name="nightly", service_principal_id=app_id)
    integration = {
        "kind": "azureDevOps",
        "organization": org,
        "project": "ops",
        "serviceConnectionId": covered.id,
    }
    assert (
        api.put(f"/applications/{app_id}", json=registration(integrations=[integration])).status_code == 201
    )
    radius = api.get(f"/applications/{app_id}/plan").json()["blastRadius"]
    assert [c["name"] for c in radius["updated"]] == ["deploy"]
    assert [c["name"] for c in radius["notUpdated"]] == ["nightly"]
    assert radius["notUpdated"][0]["integration"]["serviceConnectionId"]


def test_key_vault_secrets_tagged_with_the_app_are_consumers(api: httpx.Client, sim_stack: Any) -> None:
    app_id = str(uuid.uuid4())
    vault = sim_stack.keyvaults["destination"]
    vault.set_secret(
        f"covered-{app_id[:8]}", "v", tags={"managedBy": "entra-secret-rotator", "appId": app_id}
    )
    vault.set_secret(f"legacy-{app_id[:8]}", "v", tags={"appId": app_id.upper()})
    vault.set_secret(f"other-{app_id[:8]}", "v", tags={"appId": str(uuid.uuid4())})
    integration = {
        "kind": "keyVault",
        "name": "kv",
        "vaultUrl": vault.url,
        "secretName": f"covered-{app_id[:8]}",
    }
    assert (
        api.put(f"/applications/{app_id}", json=registration(integrations=[integration])).status_code == 201
    )
    found = {c["name"]: c for c in _consumers(api, app_id)["items"] if c["kind"] == "keyVaultSecret"}
    assert set(found) == {f"covered-{app_id[:8]}", f"legacy-{app_id[:8]}"}
    assert found[f"covered-{app_id[:8]}"]["coveredBy"] == "kv"
    legacy = found[f"legacy-{app_id[:8]}"]
    assert legacy["covered"] is False and legacy["evidence"] == "appIdTag"
    assert legacy["integration"] == {
        "kind": "keyVault",
        "vaultUrl": vault.url.rstrip("/"),
        "secretName": f"legacy-{app_id[:8]}",
        "adoptExisting": True,
    }


def test_vercel_variables_of_the_group_are_matched_by_name(api: httpx.Client, sim_stack: Any) -> None:
    team = f"team_{uuid.uuid4().hex[:8]}"
    group_id = _vercel_group(api, sim_stack, team)
    site = sim_stack.vercel.add_project("site", team_id=team)
    docs = sim_stack.vercel.add_project("docs", team_id=team)
    for project in (site, docs):
        sim_stack.vercel.add_env(project.id, "AZURE_CLIENT_SECRET", "old", target=["production"])
    sim_stack.vercel.add_env(docs.id, "UNRELATED", "x", target=["production"])
    app_id = str(uuid.uuid4())
    integration = {
        "kind": "vercel",
        "name": "site",
        "projectId": site.id,
        "envVarName": "AZURE_CLIENT_SECRET",
        "targets": ["production"],
    }
    body = registration(groupId=group_id, integrations=[integration])
    assert api.put(f"/applications/{app_id}", json=body).status_code == 201
    found = {
        c["resource"]: c for c in _consumers(api, app_id)["items"] if c["kind"] == "vercelEnvironmentVariable"
    }
    assert set(found) == {f"{site.id}/AZURE_CLIENT_SECRET", f"{docs.id}/AZURE_CLIENT_SECRET"}
    assert found[f"{site.id}/AZURE_CLIENT_SECRET"]["coveredBy"] == "site"
    missed = found[f"{docs.id}/AZURE_CLIENT_SECRET"]
    assert missed["confidence"] == "name" and "by name only" in missed["reason"]
    assert missed["integration"]["projectId"] == docs.id


def test_a_scope_the_rotator_may_not_read_is_a_gap_not_a_failure(api: httpx.Client, sim_stack: Any) -> None:
    org, app_id = _org(), str(uuid.uuid4())
    sim_stack.devops.add_project(org, "locked")
    sim_stack.devops.set_members(org, {"somebody-else"})
    assert _register(api, app_id)
    body = _consumers(api, app_id, devOpsProject=f"{org}/locked")
    [gap] = [g for g in body["gaps"] if g["scope"] == f"{org}/locked"]
    assert gap["permission"] and org in gap["permission"]
    assert f"{org}/locked" in body["scanned"]["devOpsProjects"]


def _register(api: httpx.Client, app_id: str) -> bool:
    response = api.put(f"/applications/{app_id}", json=registration(integrations=[]))
    return response.status_code == 201


def test_consumer_scopes_are_checked(api: httpx.Client) -> None:
    app_id = str(uuid.uuid4())
    assert _register(api, app_id)
    for params, field in (
        ({"resourceGroupId": "/subscriptions/x/resourceGroups/y"}, "resourceGroupId"),
        ({"devOpsProject": "contoso"}, "devOpsProject"),
        ({"devOpsProject": ",".join(f"o/p{i}" for i in range(21))}, "devOpsProject"),
    ):
        response = api.get(f"/applications/{app_id}/consumers", params=params)
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["field"] == field
    assert api.get(f"/applications/{uuid.uuid4()}/consumers").status_code == 404


# --------------------------------------------------------------------------- sign-in evidence


def test_credential_usage_shows_the_last_sign_in_and_403_names_the_permission(
    api: httpx.Client, sim_stack: Any
) -> None:
    from datetime import UTC, datetime

    entra_app = sim_stack.entra.add_application(
        "Usage API", passwords=[{"displayName": "hand-made", "secretText": "s-0123456789"}]
    )
    [password] = sim_stack.entra.get_application(entra_app.object_id).passwords
    used = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    sim_stack.entra.record_sign_in(entra_app.object_id, password.key_id, used)
    body = registration(objectId=entra_app.object_id, integrations=[])
    assert api.put(f"/applications/{entra_app.app_id}", json=body).status_code == 201

    response = api.get(f"/applications/{entra_app.app_id}/credentialUsage")
    assert response.status_code == 200, response.text
    [item] = response.json()["items"]
    assert item["keyId"] == password.key_id and item["lastSignInAt"] == "2026-11-30T08:00:00Z"
    assert item["managed"] is False and item["role"] == "other"
    assert "s-0123456789" not in response.text

    sim_stack.entra.apply_switch("sign_in_activity_readable", False)
    try:
        denied = api.get(f"/applications/{entra_app.app_id}/credentialUsage")
    finally:
        sim_stack.entra.apply_switch("sign_in_activity_readable", True)
    assert denied.status_code == 403
    assert denied.headers["content-type"].startswith("application/problem+json")
    assert "AuditLog.Read.All" in denied.json()["detail"]
