"""Write-only credentials, groups and the dry run, through the HTTP API."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from tests.api.test_applications_api import registration

PAT = "pat-planted-0123456789-abcdefghijklmnop"
VERCEL_TOKEN = "vercel-token-planted-0123456789"


def devops_integration(**extra: Any) -> dict[str, Any]:
    return {
        "kind": "azureDevOps",
        "name": "pipelines",
        "organization": "contoso",
        "project": "payroll",
        "serviceConnectionId": str(uuid.uuid4()),
        **extra,
    }


def test_a_pat_is_stored_in_the_rotators_vault_and_never_returned(api: httpx.Client, sim_stack: Any) -> None:
    app_id = str(uuid.uuid4())
    response = api.put(
        f"/applications/{app_id}",
        json=registration(integrations=[devops_integration(personalAccessToken=PAT)]),
    )
    assert response.status_code == 201, response.text
    integration = response.json()["integrations"][0]
    assert integration["authentication"] == "pat"
    # A name of its own for each credential stored: derived from what it belongs to, then random.
    assert re.fullmatch(f"cred-{app_id}-pipelines-pat-[0-9a-f]{{16}}", integration["patSecretName"])
    assert PAT not in response.text
    assert PAT not in api.get(f"/applications/{app_id}").text
    stored = sim_stack.keyvaults["rotator"].get_secret(integration["patSecretName"])
    assert stored.value == PAT and stored.tags["purpose"] == "integration-credential"

    # Sending the GET body back keeps the reference; pointing it elsewhere is refused.
    body = api.get(f"/applications/{app_id}").json()
    assert api.put(f"/applications/{app_id}", json=body).status_code == 200
    body["integrations"][0]["patSecretName"] = f"app-{uuid.uuid4()}"
    refused = api.put(f"/applications/{app_id}", json=body)
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["field"] == "integrations.0.patSecretName"


def test_a_bad_credential_is_refused_without_writing_anything(api: httpx.Client, sim_stack: Any) -> None:
    app_id = str(uuid.uuid4())
    response = api.put(
        f"/applications/{app_id}",
        json=registration(integrations=[devops_integration(personalAccessToken=12345)]),
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "integrations.0.personalAccessToken"
    assert api.get(f"/applications/{app_id}").status_code == 404


def test_groups_keep_the_vercel_token_write_only(api: httpx.Client, sim_stack: Any) -> None:
    group_id = f"web-{uuid.uuid4().hex[:8]}"
    created = api.put(
        f"/groups/{group_id}",
        json={"displayName": "Web team", "vercel": {"teamId": "team_abc", "token": VERCEL_TOKEN}},
    )
    assert created.status_code == 201, created.text
    token_name = created.json()["vercel"]["tokenSecretName"]
    assert created.json()["vercel"] == {"teamId": "team_abc", "tokenSecretName": token_name}
    assert re.fullmatch(f"cred-group-{group_id}-vercel-token-[0-9a-f]{{16}}", token_name)
    assert VERCEL_TOKEN not in created.text
    assert VERCEL_TOKEN not in api.get(f"/groups/{group_id}").text
    assert group_id in [g["groupId"] for g in api.get("/groups").json()["items"]]
    vault = sim_stack.keyvaults["rotator"]
    assert vault.get_secret(token_name).value == VERCEL_TOKEN
    assert (
        api.put(f"/groups/{group_id}", json={"displayName": "x", "vercel": {"token": ""}}).status_code == 400
    )
    assert api.put("/groups/Not_Valid", json={"displayName": "x"}).status_code == 400
    assert api.delete(f"/groups/{group_id}").status_code == 204
    assert api.get(f"/groups/{group_id}").status_code == 404


def test_put_refuses_what_every_rotation_would_refuse(api: httpx.Client) -> None:
    """Issue 10: PUT, the plan and the rotation run the same checks; nothing is written on a 400."""
    app_id = str(uuid.uuid4())
    cases = {
        "integrations.0.patSecretName": [devops_integration(authentication="pat")],
        "integrations.0.vaultResourceId": [
            {"kind": "keyVault", "vaultUrl": "https://payroll-kv.vault.azure.net", "grantAccess": True}
        ],
        "integrations.0.webhookSecretName": [{"kind": "automation", "target": "webhook"}],
    }
    for field, integrations in cases.items():
        response = api.put(f"/applications/{app_id}", json=registration(integrations=integrations))
        assert response.status_code == 400, response.text
        assert field in [e["field"] for e in response.json()["errors"]]
    unknown_group = api.put(f"/applications/{app_id}", json=registration(groupId="no-such-group"))
    assert unknown_group.status_code == 400
    assert [e["field"] for e in unknown_group.json()["errors"]] == ["groupId"]
    assert api.get(f"/applications/{app_id}").status_code == 404  # nothing was written


def test_a_group_in_use_cannot_be_deleted_and_the_plan_reports_a_missing_group(
    api: httpx.Client, azurite: str, sim_stack: Any
) -> None:
    from azure.data.tables import TableClient

    group_id = f"web-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/groups/{group_id}", json={"displayName": "Web team"}).status_code == 201
    app_id = str(uuid.uuid4())
    assert api.put(f"/applications/{app_id}", json=registration(groupId=group_id)).status_code == 201
    refused = api.delete(f"/groups/{group_id}")
    assert refused.status_code == 409 and app_id in refused.json()["detail"]
    assert api.get(f"/groups/{group_id}").status_code == 200

    # Removed behind the API's back (by hand in the table): the dry run says so, and calls nothing.
    TableClient.from_connection_string(azurite, "applications").delete_entity("group", group_id)
    before = len(sim_stack.entra.requests())
    plan = api.get(f"/applications/{app_id}/plan")
    assert plan.status_code == 200, plan.text
    body = plan.json()
    assert body["ready"] is False
    assert [p["field"] for p in body["problems"]] == ["groupId"]
    assert len(sim_stack.entra.requests()) == before  # nothing was asked of Entra / Graph


def test_dry_run_describes_each_destination_without_calling_graph(api: httpx.Client, sim_stack: Any) -> None:
    app_id = str(uuid.uuid4())
    created = api.put(
        f"/applications/{app_id}",
        json=registration(
            integrations=[
                {
                    "kind": "keyVault",
                    "vaultUrl": "https://payroll-kv.vault.azure.net",
                    "secretName": "payroll",
                },
                devops_integration(authentication="pat", personalAccessToken=PAT),
            ]
        ),
    )
    assert created.status_code == 201, created.text
    before = len(sim_stack.entra.requests())
    plan = api.get(f"/applications/{app_id}/plan")
    assert plan.status_code == 200, plan.text
    body = plan.json()
    assert body["wouldRotateNow"] is True and body["ready"] is True
    assert body["integrations"][0]["action"].startswith("write a new version of secret 'payroll'")
    assert body["integrations"][1]["problems"] == []
    assert len(sim_stack.entra.requests()) == before  # nothing was asked of Entra / Graph


def test_answers_with_stored_credential_references_satisfy_the_documented_schema(
    api: httpx.Client, sim_stack: Any
) -> None:
    """Found by schemathesis (stateful): a PAT integration's answer carries ``patSecretName``, not the
    write-only PAT, and the document required the PAT whenever ``authentication`` was ``pat``."""
    import jsonschema_rs

    app_id = str(uuid.uuid4())
    integrations = [
        devops_integration(personalAccessToken=PAT),
        {"kind": "automation", "target": "webhook", "webhookUrl": "https://hooks.example/abc?token=planted"},
    ]
    created = api.put(f"/applications/{app_id}", json=registration(integrations=integrations))
    assert created.status_code == 201, created.text
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    validator = jsonschema_rs.validator_for(
        {"$ref": "#/components/schemas/Application", "components": {"schemas": schemas}}
    )
    for body in (created.json(), api.get(f"/applications/{app_id}").json()):
        assert [str(e) for e in validator.iter_errors(body)] == []
    # And the GET body, sent back as a PUT, is a valid request by the same document.
    request_validator = jsonschema_rs.validator_for(
        {"$ref": "#/components/schemas/ApplicationInput", "components": {"schemas": schemas}}
    )
    sent_back = api.get(f"/applications/{app_id}").json()
    assert [str(e) for e in request_validator.iter_errors(sent_back)] == []
    assert api.put(f"/applications/{app_id}", json=sent_back).status_code == 200


def put_json(api: httpx.Client, path: str, body: Any) -> httpx.Response:
    """PUT ``body`` as ASCII JSON (escapes, so a lone surrogate can be sent at all)."""
    import json

    return api.put(path, content=json.dumps(body), headers={"Content-Type": "application/json"})


def test_a_credential_an_http_request_cannot_carry_is_refused_and_named(
    api: httpx.Client, sim_stack: Any
) -> None:
    """Schemathesis (seed 31337) stored a Vercel token with non-ASCII characters; the Vercel
    picker then failed with a 500 building the Authorization header. Every write-only credential
    is a token for a header or a URL: visible ASCII, checked at the PUT (400 naming the field),
    nothing stored."""
    from shared.credentials import CREDENTIAL_SYNTAX

    vault = sim_stack.keyvaults["rotator"]
    for bad in ("tok\u00e9n", "two words", "line\nbreak", "\x00", "\ud800"):
        group_id = f"web-{uuid.uuid4().hex[:8]}"
        refused = put_json(api, f"/groups/{group_id}", {"displayName": "Web", "vercel": {"token": bad}})
        assert refused.status_code == 400, (bad, refused.text)
        assert refused.json()["errors"][0]["field"] == "vercel.token"
        assert refused.json()["errors"][0]["allowed"] == CREDENTIAL_SYNTAX
        assert api.get(f"/groups/{group_id}").status_code == 404
        assert not [name for name in vault.secret_names() if name.startswith(f"cred-group-{group_id}-")]
        app_id = str(uuid.uuid4())
        for integration, field in (
            (devops_integration(personalAccessToken=bad), "personalAccessToken"),
            (
                {"kind": "automation", "name": "hook", "webhookUrl": f"https://hooks.example/{bad}"},
                "webhookUrl",
            ),
        ):
            refused = put_json(api, f"/applications/{app_id}", registration(integrations=[integration]))
            assert refused.status_code == 400, (bad, field, refused.text)
            assert refused.json()["errors"][0]["field"] == f"integrations.0.{field}"
            assert api.get(f"/applications/{app_id}").status_code == 404


def test_a_stored_token_a_header_cannot_carry_is_a_409_not_a_500(api: httpx.Client, sim_stack: Any) -> None:
    """A token an earlier version stored unchecked: the picker answers 409 saying to set it again."""
    group_id = f"web-{uuid.uuid4().hex[:8]}"
    created = api.put(f"/groups/{group_id}", json={"displayName": "Web", "vercel": {"token": VERCEL_TOKEN}})
    assert created.status_code == 201
    sim_stack.keyvaults["rotator"].set_secret(created.json()["vercel"]["tokenSecretName"], "tok\u00e9n")
    answer = api.get("/destinations/vercelProjects", params={"groupId": group_id})
    assert answer.status_code == 409, answer.text
    assert "set it again" in answer.json()["detail"] and "tok\u00e9n" not in answer.text
