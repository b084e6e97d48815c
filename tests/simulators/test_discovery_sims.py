"""The discovery routes of the Entra, Azure DevOps and Vercel simulators, over real HTTPS.

* Entra: ``GET /beta/reports/appCredentialSignInActivities`` fed by real client-secret token requests.
* Azure DevOps: Projects - List (``x-ms-continuationtoken`` paging) and Endpoints - Get Service Endpoints.
* Vercel: Find projects (``GET /v10/projects``, ``pagination.next`` passed back as ``until``).
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.identity import ClientSecretCredential

from simulators import GRAPH_RESOURCE, SimulatorStack
from simulators.devops import DEVOPS_RESOURCE
from simulators.entra import GRAPH_APP_ID, graph_datetime

REPORT = "/beta/reports/appCredentialSignInActivities"
ACTIVITY_KEYS = {
    "id",
    "keyId",
    "keyType",
    "keyUsage",
    "appId",
    "appDisplayName",
    "appObjectId",
    "servicePrincipalObjectId",
    "resourceId",
    "credentialOrigin",
    "expirationDateTime",
    "createdDateTime",
    "signInActivity",
}
KEY_VAULT_APP_ID = "cfa8b339-82a2-471a-a3c9-0fc0be7a4093"
ORG = "contoso"
SUPPRESS = {"X-TFS-FedAuthRedirect": "Suppress"}


def client(stack: SimulatorStack, base_url: str, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, verify=stack.tls.client_context(), headers=headers)


def sign_in(
    stack: SimulatorStack, app_id: str, secret: str, scope: str = f"{GRAPH_RESOURCE}/.default"
) -> None:
    """A real client-secret token request through azure-identity (MSAL), as an app signing in."""
    credential = ClientSecretCredential(
        stack.tenant_id,
        app_id,
        secret,
        authority=stack.entra.authority,
        disable_instance_discovery=True,
        connection_verify=str(stack.ca_pem),
    )
    assert credential.get_token(scope).token


def graph(stack: SimulatorStack) -> httpx.Client:
    return client(stack, stack.entra.url, Authorization=f"Bearer {stack.entra.token_for()}")


# ----------------------------------------------------------------------------- Entra sign-in report


def test_token_requests_with_a_secret_feed_the_sign_in_report(stack: SimulatorStack) -> None:
    stack.entra.set_switches(clock_offset_seconds=30 * 86400)  # the report uses the simulator clock
    app = stack.entra.add_application(
        "payroll",
        passwords=[
            {"displayName": "a", "secretText": "secret-a"},
            {"displayName": "b", "secretText": "secret-b"},
            {"displayName": "c", "secretText": "secret-c"},
            {"displayName": "never used", "secretText": "secret-d"},
        ],
    )
    other = stack.entra.add_application("other", passwords=[{"secretText": "other-secret"}])
    before = stack.entra.clock.now()
    sign_in(stack, app.app_id, "secret-a")
    sign_in(stack, app.app_id, "secret-b", "https://vault.azure.net/.default")
    sign_in(stack, app.app_id, "secret-c")
    sign_in(stack, other.app_id, "other-secret")
    after = stack.entra.clock.now()

    rows: list[dict[str, Any]] = []
    pages = 0
    with graph(stack) as http:
        answer = http.get(REPORT, params={"$filter": f"appId eq '{app.app_id}'", "$top": "2"})
        while True:
            assert answer.status_code == 200
            body = answer.json()
            pages += 1
            assert body["@odata.context"] == (
                "https://graph.microsoft.com/beta/$metadata#reports/appCredentialSignInActivities"
            )
            rows += body["value"]
            if "@odata.nextLink" not in body:
                break
            assert body["@odata.nextLink"].startswith(f"{stack.entra.url}{REPORT}?")
            answer = http.get(body["@odata.nextLink"])
        unfiltered = http.get(REPORT).json()["value"]

    assert pages == 2
    by_name = {p.display_name: p for p in app.passwords}
    assert [r["keyId"] for r in rows] == [by_name[n].key_id for n in ("a", "b", "c")]  # never used: absent
    row = rows[0]
    assert set(row) == ACTIVITY_KEYS
    assert row["appId"] == app.app_id and row["appObjectId"] == app.object_id
    assert row["appDisplayName"] == "payroll"
    assert row["keyType"] == "clientSecret" and row["keyUsage"] == "sign"
    assert row["credentialOrigin"] == "application"
    assert base64.b64decode(row["id"]).decode() == f"{by_name['a'].key_id}|application"
    assert row["expirationDateTime"] == graph_datetime(by_name["a"].end)
    assert row["createdDateTime"] == graph_datetime(by_name["a"].created_at)
    assert row["resourceId"] == GRAPH_APP_ID and rows[1]["resourceId"] == KEY_VAULT_APP_ID
    last = datetime.fromisoformat(row["signInActivity"]["lastSignInDateTime"].replace("0Z", "+00:00"))
    assert before <= last <= after  # simulator time, a month ahead of the wall clock
    assert last > datetime.now(UTC) + timedelta(days=29)
    assert uuid.UUID(row["signInActivity"]["lastSignInRequestId"])
    assert len(unfiltered) == 4 and unfiltered[-1]["appId"] == other.app_id
    # The simulator's own view agrees.
    state = stack.entra.state()
    assert [r["keyId"] for r in state["credentialSignIns"]][:3] == [r["keyId"] for r in rows]
    assert stack.entra.get_application(app.object_id).passwords[0].last_sign_in == last


def test_token_endpoint_names_the_request_the_report_shows(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("payroll", passwords=[{"secretText": "pw"}])
    with client(stack, stack.entra.url) as http:
        token = http.post(
            f"/{stack.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": app.app_id,
                "client_secret": "pw",
                "scope": f"{GRAPH_RESOURCE}/.default",
            },
        )
        refused = http.post(
            f"/{stack.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": app.app_id,
                "client_secret": "wrong",
                "scope": f"{GRAPH_RESOURCE}/.default",
            },
        )
    assert token.status_code == 200 and refused.status_code == 401
    [row] = stack.entra.state()["credentialSignIns"]
    assert row["signInActivity"]["lastSignInRequestId"] == token.headers["x-ms-request-id"]
    # Another good sign-in moves the time on and stays one row.
    stack.entra.set_switches(clock_offset_seconds=3600)
    sign_in(stack, app.app_id, "pw")
    [again] = stack.entra.state()["credentialSignIns"]
    assert again["signInActivity"]["lastSignInDateTime"] > row["signInActivity"]["lastSignInDateTime"]


def test_sign_in_report_errors_permission_and_get_by_id(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("payroll", passwords=[{"secretText": "pw"}])
    sign_in(stack, app.app_id, "pw")
    with graph(stack) as http:
        [row] = http.get(REPORT, params={"$filter": f"keyId eq '{app.passwords[0].key_id}'"}).json()["value"]
        one = http.get(f"{REPORT}/{row['id']}")
        missing = http.get(f"{REPORT}/bm9uZXxhcHBsaWNhdGlvbg==")
        unsupported = http.get(REPORT, params={"$filter": "keyType eq 'clientSecret'"})
        bad_top = http.get(REPORT, params={"$top": "0"})
        stack.entra.set_switches(sign_in_activity_readable=False)
        denied = http.get(
            REPORT, params={"$filter": f"appId eq '{app.app_id}'"}, headers={"client-request-id": "c1"}
        )
        denied_one = http.get(f"{REPORT}/{row['id']}")
    with client(stack, stack.entra.url) as anonymous:
        unauthenticated = anonymous.get(REPORT)

    assert one.status_code == 200
    assert one.json()["@odata.context"].endswith("#reports/appCredentialSignInActivities/$entity")
    assert {k: v for k, v in one.json().items() if k != "@odata.context"} == row
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "Request_ResourceNotFound"
    assert (
        unsupported.status_code == 400 and unsupported.json()["error"]["code"] == "Request_UnsupportedQuery"
    )
    assert bad_top.status_code == 400
    assert denied.status_code == 403 and denied_one.status_code == 403
    error = denied.json()["error"]
    assert error["code"] == "Authorization_RequestDenied"
    assert error["message"] == "Insufficient privileges to complete the operation."
    assert error["innerError"]["client-request-id"] == "c1"
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert stack.entra.switches()["sign_in_activity_readable"] is False


def test_sign_in_admin_route_seed_state_and_reset(stack: SimulatorStack) -> None:
    key_id = str(uuid.uuid4())
    stack.seed(
        {
            "applications": [
                {
                    "displayName": "seeded",
                    "passwordCredentials": [
                        {"secretText": "s1", "keyId": key_id, "lastSignInDateTime": "2030-01-02T03:04:05Z"},
                        {"secretText": "s2"},
                    ],
                }
            ]
        }
    )
    [app] = stack.entra.applications()
    second = app.passwords[1].key_id
    with client(stack, stack.entra.url) as admin:
        set_one = admin.post(
            f"/_sim/applications/{app.app_id}/signIns", json={"keyId": second, "at": "2030-02-01T00:00:00Z"}
        )
        unknown = admin.post(
            f"/_sim/applications/{app.app_id}/signIns", json={"keyId": str(uuid.uuid4()), "at": None}
        )
        with graph(stack) as http:
            listed = http.get(REPORT, params={"$filter": f"appId eq '{app.app_id}'"}).json()["value"]
        cleared = admin.post(
            f"/_sim/applications/{app.object_id}/signIns", json={"keyId": key_id, "at": None}
        )
        state = admin.get("/_sim/state").json()
        admin.post("/_sim/reset")
        after_reset = admin.get("/_sim/state").json()

    assert set_one.status_code == 200 and set_one.json()["keyId"] == second
    assert unknown.status_code == 404
    assert [(r["keyId"], r["signInActivity"]["lastSignInDateTime"]) for r in listed] == [
        (key_id, "2030-01-02T03:04:05.0000000Z"),
        (second, "2030-02-01T00:00:00.0000000Z"),
    ]
    assert cleared.status_code == 204
    assert [r["keyId"] for r in state["credentialSignIns"]] == [second]
    assert state["applications"][0]["passwordCredentials"][0]["lastSignIn"] is None
    assert after_reset["credentialSignIns"] == []
    assert after_reset["switches"]["sign_in_activity_readable"] is True


# ----------------------------------------------------------------------------- Azure DevOps


def devops_bearer(stack: SimulatorStack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.issuer.issue('rotator', DEVOPS_RESOURCE).token}", **SUPPRESS}


def pat(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"x:{token}".encode()).decode(), **SUPPRESS}


def seed_devops(stack: SimulatorStack, app_id: str) -> None:
    stack.devops.seed(
        {
            "projects": [
                {
                    "organization": ORG,
                    "name": "Payroll",
                    "description": "Payroll services",
                    "visibility": "private",
                },
                {"organization": ORG, "name": "Alpha"},
            ],
            "serviceConnections": [
                {
                    "organization": ORG,
                    "project": "Payroll",
                    "name": "payroll-spn",
                    "servicePrincipalId": app_id,
                    "id": "00000000-0000-4000-8000-00000000000a",
                    "key": "k1",
                    "sharedWith": ["Shared"],
                },
                {
                    "organization": ORG,
                    "project": "Payroll",
                    "name": "payroll-wif",
                    "servicePrincipalId": app_id,
                    "scheme": "WorkloadIdentityFederation",
                    "id": "00000000-0000-4000-8000-00000000000b",
                },
                {
                    "organization": ORG,
                    "project": "Payroll",
                    "name": "payroll-msi",
                    "servicePrincipalId": app_id,
                    "scheme": "ManagedServiceIdentity",
                    "id": "00000000-0000-4000-8000-00000000000c",
                },
                {
                    "organization": ORG,
                    "project": "Payroll",
                    "name": "github",
                    "type": "github",
                    "scheme": "Token",
                    "parameters": {},
                    "secretParameter": "AccessToken",
                    "key": "ghp_secret",
                    "id": "00000000-0000-4000-8000-00000000000d",
                },
                {
                    "organization": ORG,
                    "project": "Payroll",
                    "name": "broken",
                    "servicePrincipalId": str(uuid.uuid4()),
                    "isReady": False,
                    "id": "00000000-0000-4000-8000-00000000000e",
                },
                {
                    "organization": ORG,
                    "project": "Zeta",  # a project only a connection names
                    "name": "zeta-spn",
                    "servicePrincipalId": app_id,
                },
            ],
            "pats": [
                {"token": "pat-endpoints", "scopes": ["vso.serviceendpoint"]},
                {"token": "pat-projects", "scopes": ["vso.project"]},
            ],
        }
    )


def test_devops_projects_list_pages_with_the_continuation_header(stack: SimulatorStack) -> None:
    seed_devops(stack, str(uuid.uuid4()))
    url = stack.devops.url
    with client(stack, url) as admin:
        added = admin.post(
            "/_sim/projects", json={"organization": ORG, "name": "Beta", "visibility": "public"}
        )
    pages: list[list[dict[str, Any]]] = []
    tokens: list[str | None] = []
    with client(stack, url, **devops_bearer(stack)) as http:
        params = {"api-version": "7.1", "$top": "2"}
        while True:
            answer = http.get(f"/{ORG}/_apis/projects", params=params)
            assert answer.status_code == 200
            body = answer.json()
            assert body["count"] == len(body["value"])
            pages.append(body["value"])
            tokens.append(answer.headers.get("x-ms-continuationtoken"))
            if tokens[-1] is None:
                break
            params = {"api-version": "7.1", "$top": "2", "continuationToken": tokens[-1]}
        everything = http.get(f"/{ORG}/_apis/projects", params={"api-version": "7.1"})
        unknown_org = http.get("/nowhere/_apis/projects", params={"api-version": "7.1"})

    assert added.status_code == 201 and added.json()["visibility"] == "public"
    names = [p["name"] for page in pages for p in page]
    assert names == ["Alpha", "Beta", "Payroll", "Shared", "Zeta"]  # Shared and Zeta come from connections
    assert [len(page) for page in pages] == [2, 2, 1] and tokens == ["2", "4", None]
    payroll = pages[1][0]
    assert set(payroll) == {
        "id",
        "name",
        "description",
        "url",
        "state",
        "revision",
        "visibility",
        "lastUpdateTime",
    }
    assert payroll["description"] == "Payroll services" and payroll["state"] == "wellFormed"
    assert payroll["url"] == f"{url}/{ORG}/_apis/projects/{payroll['id']}"
    assert payroll["lastUpdateTime"].endswith("Z") and payroll["visibility"] == "private"
    assert "description" not in pages[0][0]
    assert "x-ms-continuationtoken" not in everything.headers and everything.json()["count"] == 5
    assert unknown_org.status_code == 404 and unknown_org.json()["typeKey"] == "OrganizationNotFoundException"
    assert {p["name"] for p in stack.devops.state()["organizations"][ORG]["projectDetails"]} == set(names)


def test_devops_service_endpoint_list_shows_schemes_without_secrets(stack: SimulatorStack) -> None:
    app_id = str(uuid.uuid4())
    seed_devops(stack, app_id)
    path = f"/{ORG}/Payroll/_apis/serviceendpoint/endpoints"
    with client(stack, stack.devops.url, **devops_bearer(stack)) as http:
        listed = http.get(path, params={"api-version": "7.1"}).json()
        single = http.get(
            f"{path}/00000000-0000-4000-8000-00000000000a", params={"api-version": "7.1"}
        ).json()
        failed_too = http.get(path, params={"api-version": "7.1", "includeFailed": "true"}).json()
        wif = http.get(
            path, params={"api-version": "7.1", "authSchemes": "WorkloadIdentityFederation"}
        ).json()
        github = http.get(path, params={"api-version": "7.1", "type": "GitHub"}).json()
        by_ids = http.get(
            path,
            params={
                "api-version": "7.1",
                "endpointIds": "00000000-0000-4000-8000-00000000000a,00000000-0000-4000-8000-00000000000c",
            },
        ).json()
        shared = http.get(
            f"/{ORG}/Shared/_apis/serviceendpoint/endpoints", params={"api-version": "7.1"}
        ).json()
        no_project = http.get(f"/{ORG}/Nope/_apis/serviceendpoint/endpoints", params={"api-version": "7.1"})

    assert listed["count"] == 4 == len(listed["value"])
    by_name = {e["name"]: e for e in listed["value"]}
    assert set(by_name) == {"payroll-spn", "payroll-wif", "payroll-msi", "github"}  # not the failed one
    assert by_name["payroll-spn"] == single  # exactly what the single GET shows
    spn = by_name["payroll-spn"]["authorization"]
    assert spn["scheme"] == "ServicePrincipal"
    assert spn["parameters"] == {
        "tenantid": "00000000-0000-0000-0000-00000000cafe",
        "serviceprincipalid": app_id,
        "authenticationType": "spnKey",
        "serviceprincipalkey": None,
    }
    wif_auth = by_name["payroll-wif"]["authorization"]
    assert wif_auth["scheme"] == "WorkloadIdentityFederation"
    assert wif_auth["parameters"]["serviceprincipalid"] == app_id
    assert "serviceprincipalkey" not in wif_auth["parameters"]
    assert by_name["payroll-msi"]["authorization"]["parameters"] == {
        "tenantid": "00000000-0000-0000-0000-00000000cafe"
    }
    assert by_name["github"]["type"] == "github"
    assert by_name["github"]["authorization"] == {"parameters": {"AccessToken": None}, "scheme": "Token"}
    assert "ghp_secret" not in str(listed) and "k1" not in str(listed)
    assert failed_too["count"] == 5
    [broken] = [e for e in failed_too["value"] if e["name"] == "broken"]
    assert broken["isReady"] is False and broken["operationStatus"]["state"] == "Failed"
    assert [e["name"] for e in wif["value"]] == ["payroll-wif"]
    assert [e["name"] for e in github["value"]] == ["github"]
    assert {e["name"] for e in by_ids["value"]} == {"payroll-spn", "payroll-msi"}
    assert [e["name"] for e in shared["value"]] == ["payroll-spn"]
    assert no_project.status_code == 404
    assert no_project.json()["typeKey"] == "ProjectDoesNotExistWithNameException"
    # The stored secrets stay visible to tests through the state.
    state = stack.devops.state()["serviceConnections"]
    assert state["00000000-0000-4000-8000-00000000000d"]["authorization"]["parameters"] == {
        "AccessToken": "ghp_secret"
    }


def test_devops_list_routes_refuse_like_the_single_get(stack: SimulatorStack) -> None:
    seed_devops(stack, str(uuid.uuid4()))
    projects = f"/{ORG}/_apis/projects"
    endpoints = f"/{ORG}/Payroll/_apis/serviceendpoint/endpoints"
    version = {"api-version": "7.1"}
    with client(stack, stack.devops.url) as http:
        browser = http.get(projects, params=version)
        anonymous = http.get(endpoints, params=version, headers=SUPPRESS)
        endpoints_with_endpoint_pat = http.get(endpoints, params=version, headers=pat("pat-endpoints"))
        projects_with_endpoint_pat = http.get(projects, params=version, headers=pat("pat-endpoints"))
        projects_with_project_pat = http.get(projects, params=version, headers=pat("pat-projects"))
        endpoints_with_project_pat = http.get(endpoints, params=version, headers=pat("pat-projects"))
        no_version = http.get(projects, headers=devops_bearer(stack))
        stack.devops.set_switches(deny_access=True)
        denied_projects = http.get(projects, params=version, headers=devops_bearer(stack))
        denied_endpoints = http.get(endpoints, params=version, headers=devops_bearer(stack))
        stack.devops.set_switches(deny_access=False)
        stack.devops.set_members(ORG, {"someone-else"})
        not_member = http.get(projects, params=version, headers=devops_bearer(stack))

    assert browser.status_code == 203 and "Sign In" in browser.text
    assert anonymous.status_code == 401 and anonymous.json()["typeKey"] == "UnauthorizedRequestException"
    assert endpoints_with_endpoint_pat.status_code == 200
    assert projects_with_endpoint_pat.status_code == 401 and "vso.project" in projects_with_endpoint_pat.text
    assert projects_with_project_pat.status_code == 200
    assert endpoints_with_project_pat.status_code == 401
    assert no_version.status_code == 400 and no_version.json()["typeKey"] == "VssVersionNotSpecifiedException"
    assert denied_projects.status_code == 403 and denied_endpoints.status_code == 403
    assert denied_projects.json()["typeKey"] == "AccessCheckException"
    assert not_member.status_code == 401


# ----------------------------------------------------------------------------- Vercel


def seed_vercel(stack: SimulatorStack) -> None:
    stack.vercel.seed(
        {
            "tokens": [
                {"token": "tok-web", "teamIds": ["team_web"]},
                {"token": "tok-me"},
                {"token": "tok-other", "teamIds": ["team_other"]},
            ],
            "projects": [
                *(
                    {
                        "name": f"web-{i}",
                        "teamId": "team_web",
                        "id": f"prj_web{i}",
                        "updatedAt": 1_700_000_000_000 + i,
                    }
                    for i in range(5)
                ),
                {
                    "name": "admin-portal",
                    "teamId": "team_web",
                    "framework": "nextjs",
                    "updatedAt": 1_690_000_000_000,
                },
                {"name": "elsewhere", "teamId": "team_other"},
                {"name": "my-blog"},
            ],
        }
    )


def test_vercel_find_projects_pages_with_until(stack: SimulatorStack) -> None:
    seed_vercel(stack)
    stack.vercel.add_env("prj_web4", "API_KEY", "v1", target=["production"])
    seen: list[str] = []
    bodies: list[dict[str, Any]] = []
    with client(stack, stack.vercel.url, Authorization="Bearer tok-web") as http:
        params = {"teamId": "team_web", "limit": "2"}
        while True:
            answer = http.get("/v10/projects", params=params)
            assert answer.status_code == 200
            body = answer.json()
            bodies.append(body)
            seen += [p["name"] for p in body["projects"]]
            if body["pagination"]["next"] is None:
                break
            params = {"teamId": "team_web", "limit": "2", "until": str(body["pagination"]["next"])}
        with_from = http.get(
            "/v10/projects",
            params={"teamId": "team_web", "limit": "2", "from": str(bodies[0]["pagination"]["next"])},
        ).json()
        searched = http.get("/v10/projects", params={"teamId": "team_web", "search": "ADMIN"}).json()
        envs = http.get("/v10/projects/prj_web4/env", params={"teamId": "team_web"})
    with client(stack, stack.vercel.url, Authorization="Bearer tok-me") as http:
        personal = http.get("/v10/projects").json()

    assert seen == ["web-4", "web-3", "web-2", "web-1", "web-0", "admin-portal"]  # newest updatedAt first
    first = bodies[0]
    assert first["pagination"] == {"count": 2, "next": 1_700_000_000_003, "prev": 1_700_000_000_004}
    assert bodies[-1]["pagination"]["next"] is None and bodies[-1]["pagination"]["count"] == 2
    project = first["projects"][0]
    assert {"id", "name", "accountId", "framework", "createdAt", "updatedAt"} <= set(project)
    assert project["id"] == "prj_web4" and project["accountId"] == "team_web"
    assert project["updatedAt"] == 1_700_000_000_004 and project["framework"] is None
    assert [p["name"] for p in with_from["projects"]] == ["web-2", "web-1"]
    assert [(p["name"], p["framework"]) for p in searched["projects"]] == [("admin-portal", "nextjs")]
    assert envs.status_code == 200 and [e["key"] for e in envs.json()["envs"]] == ["API_KEY"]
    assert [(p["name"], p["accountId"]) for p in personal["projects"]] == [("my-blog", "simulated-user")]
    assert personal["pagination"] == {
        "count": 1,
        "next": None,
        "prev": personal["projects"][0]["updatedAt"],
    }


def test_vercel_find_projects_refusals(stack: SimulatorStack) -> None:
    seed_vercel(stack)
    with client(stack, stack.vercel.url) as http:
        missing = http.get("/v10/projects", params={"teamId": "team_web"})
        unknown = http.get(
            "/v10/projects", params={"teamId": "team_web"}, headers={"Authorization": "Bearer nope"}
        )
        other_team = http.get(
            "/v10/projects", params={"teamId": "team_other"}, headers={"Authorization": "Bearer tok-web"}
        )
        bad_limit = http.get(
            "/v10/projects",
            params={"teamId": "team_web", "limit": "0"},
            headers={"Authorization": "Bearer tok-web"},
        )
        bad_until = http.get(
            "/v10/projects",
            params={"teamId": "team_web", "until": "yesterday"},
            headers={"Authorization": "Bearer tok-web"},
        )
        stack.vercel.set_switches(deny_access=True)
        denied = http.get(
            "/v10/projects", params={"teamId": "team_web"}, headers={"Authorization": "Bearer tok-web"}
        )

    assert missing.status_code == 401 and missing.json()["error"]["code"] == "not_authenticated"
    assert unknown.status_code == 403 and unknown.json()["error"]["invalidToken"] is True
    assert other_team.status_code == 403 and other_team.json()["error"]["code"] == "forbidden"
    assert bad_limit.status_code == 400 and bad_until.status_code == 400
    assert bad_limit.json()["error"]["code"] == "bad_request"
    assert denied.status_code == 403


@pytest.mark.parametrize("limit", ["1", "100"])
def test_vercel_find_projects_limit_bounds(stack: SimulatorStack, limit: str) -> None:
    seed_vercel(stack)
    with client(stack, stack.vercel.url, Authorization="Bearer tok-web") as http:
        body = http.get("/v10/projects", params={"teamId": "team_web", "limit": limit}).json()
    assert body["pagination"]["count"] == min(int(limit), 6)
    assert (body["pagination"]["next"] is None) == (limit == "100")
