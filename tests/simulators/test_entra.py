"""The Entra simulator through the real msgraph-sdk and azure-identity clients, over real sockets."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_http.middleware.options import RetryHandlerOption
from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.applications.item.remove_password.remove_password_post_request_body import (
    RemovePasswordPostRequestBody,
)
from msgraph.generated.applications_with_app_id.applications_with_app_id_request_builder import (
    ApplicationsWithAppIdRequestBuilder,
)
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_credential import PasswordCredential

from simulators import GRAPH_RESOURCE, SimulatorStack

from .graph_helpers import graph_client

GRAPH_SCOPE = f"{GRAPH_RESOURCE}/.default"


def add_password_body(display_name: str, end: datetime | None = None) -> AddPasswordPostRequestBody:
    return AddPasswordPostRequestBody(
        password_credential=PasswordCredential(display_name=display_name, end_date_time=end)
    )


def secret_credential(stack: SimulatorStack, app_id: str, secret: str) -> ClientSecretCredential:
    return ClientSecretCredential(
        stack.tenant_id,
        app_id,
        secret,
        authority=stack.entra.authority,
        disable_instance_discovery=True,
        connection_verify=str(stack.ca_pem),
    )


# ----------------------------------------------------------------------------- Graph: reads


async def test_get_application_by_object_id_and_app_id(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("payroll", passwords=[{"displayName": "old", "secretText": "s3cret"}])
    async with graph_client(stack) as gc:
        by_id = await gc.applications.by_application_id(app.object_id).get()
        query = ApplicationsWithAppIdRequestBuilder.ApplicationsWithAppIdRequestBuilderGetQueryParameters(
            select=["id", "appId", "passwordCredentials"]
        )
        by_app_id = await gc.applications_with_app_id(app.app_id).get(
            request_configuration=RequestConfiguration(query_parameters=query)
        )
    assert by_id is not None and by_app_id is not None
    assert by_id.id == app.object_id and by_id.app_id == app.app_id
    assert by_id.display_name == "payroll" and by_id.sign_in_audience == "AzureADMyOrg"
    [credential] = by_id.password_credentials or []
    assert credential.display_name == "old" and credential.hint == "s3c" and credential.secret_text is None
    assert credential.key_id == uuid.UUID(app.passwords[0].key_id)
    # $select projects the object, as Graph does.
    assert by_app_id.id == app.object_id and by_app_id.display_name is None
    assert len(by_app_id.password_credentials or []) == 1
    # The simulator saw the MSI principal's token.
    assert {r.principal for r in stack.entra.requests(path="^/v1.0/")} == {"rotator"}


async def test_list_applications_pages_with_next_link(stack: SimulatorStack) -> None:
    for index in range(5):
        stack.entra.add_application(f"app-{index}")
    query = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
        top=2, select=["id", "displayName"]
    )
    names: list[str] = []
    pages = 0
    async with graph_client(stack) as gc:
        page = await gc.applications.get(request_configuration=RequestConfiguration(query_parameters=query))
        while page is not None:
            pages += 1
            names += [app.display_name or "" for app in page.value or []]
            if not page.odata_next_link:
                break
            page = await gc.applications.with_url(page.odata_next_link).get()
    assert pages == 3
    assert names == [f"app-{index}" for index in range(5)]


async def test_unknown_application_is_odata_error_404(stack: SimulatorStack) -> None:
    missing = str(uuid.uuid4())
    async with graph_client(stack) as gc:
        with pytest.raises(ODataError) as caught:
            await gc.applications.by_application_id(missing).get()
    assert caught.value.response_status_code == 404
    assert caught.value.error is not None and caught.value.error.code == "Request_ResourceNotFound"
    assert missing in (caught.value.error.message or "")


async def test_graph_refuses_missing_and_wrong_audience_tokens(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("payroll")
    url = f"{stack.entra.url}/v1.0/applications/{app.object_id}"
    async with httpx.AsyncClient(verify=stack.tls.client_context()) as http:
        anonymous = await http.get(url, headers={"client-request-id": "abc"})
        vault_token = stack.entra.token_for(audience="https://vault.azure.net")
        wrong = await http.get(url, headers={"Authorization": f"Bearer {vault_token}"})
        right = await http.get(url, headers={"Authorization": f"Bearer {stack.entra.token_for()}"})
    assert anonymous.status_code == 401
    error = anonymous.json()["error"]
    assert error["code"] == "InvalidAuthenticationToken"
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    assert error["innerError"]["client-request-id"] == "abc"
    assert wrong.status_code == 401
    assert right.status_code == 200 and right.json()["passwordCredentials"] == []


# ----------------------------------------------------------------------------- Graph: writes


async def test_add_and_remove_password(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("payroll")
    before = datetime.now(UTC)
    async with graph_client(stack) as gc:
        added = await gc.applications.by_application_id(app.object_id).add_password.post(
            add_password_body("secret-rotator-1")
        )
        assert added is not None and added.secret_text is not None and added.key_id is not None
        fetched = await gc.applications.by_application_id(app.object_id).get()
        assert fetched is not None
        [listed] = fetched.password_credentials or []
        await gc.applications.by_application_id(app.object_id).remove_password.post(
            RemovePasswordPostRequestBody(key_id=added.key_id)
        )
    assert len(added.secret_text) == 40 and added.hint == added.secret_text[:3]
    assert added.display_name == "secret-rotator-1" and added.custom_key_identifier is None
    assert added.start_date_time is not None and added.end_date_time is not None
    assert added.start_date_time >= before - timedelta(seconds=1)
    assert timedelta(days=729) < added.end_date_time - added.start_date_time <= timedelta(days=731)
    assert listed.key_id == added.key_id and listed.secret_text is None
    assert stack.entra.get_application(app.app_id).passwords == []
    assert [r.status for r in stack.entra.requests(method="POST", path="Password$")] == [200, 204]


async def test_remove_unknown_key_id_is_bad_request(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("payroll")
    key_id = uuid.uuid4()
    async with graph_client(stack) as gc:
        with pytest.raises(ODataError) as caught:
            await gc.applications.by_application_id(app.object_id).remove_password.post(
                RemovePasswordPostRequestBody(key_id=key_id)
            )
    assert caught.value.response_status_code == 400
    assert caught.value.error is not None
    assert f"No password credential found with keyId {key_id}" in (caught.value.error.message or "")


async def test_lifetime_policy_rejects_long_and_default_lifetimes(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("payroll")
    stack.entra.set_switches(max_lifetime=180 * 86400)
    async with graph_client(stack) as gc:
        items = gc.applications.by_application_id(app.object_id)
        with pytest.raises(ODataError) as default_end:
            await items.add_password.post(add_password_body("default-end"))
        with pytest.raises(ODataError) as long_end:
            await items.add_password.post(add_password_body("long", datetime.now(UTC) + timedelta(days=365)))
        allowed = await items.add_password.post(
            add_password_body("ok", datetime.now(UTC) + timedelta(days=90))
        )
    for caught in (default_end, long_end):
        assert caught.value.response_status_code == 400
        assert caught.value.error is not None
        assert caught.value.error.code == "CredentialInvalidLifetimeAsPerAppPolicy"
        [detail] = caught.value.error.details or []
        assert (detail.code, detail.target) == ("InvalidKeyEndDate", "EndDate")
    assert allowed is not None and allowed.display_name == "ok"
    assert [p.display_name for p in stack.entra.get_application(app.object_id).passwords] == ["ok"]


async def test_personal_account_apps_hold_at_most_two_passwords(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("consumer", sign_in_audience="AzureADandPersonalMicrosoftAccount")
    async with graph_client(stack) as gc:
        items = gc.applications.by_application_id(app.object_id)
        await items.add_password.post(add_password_body("one"))
        await items.add_password.post(add_password_body("two"))
        with pytest.raises(ODataError) as caught:
            await items.add_password.post(add_password_body("three"))
    assert caught.value.response_status_code == 400
    assert caught.value.error is not None
    assert caught.value.error.message == (
        "Not allowed to add 3 passwords. You can only add a maximum of 2 passwords."
    )


async def test_throttled_write_is_retried_after_retry_after(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("payroll")
    stack.entra.throttle_writes(1, retry_after=1)
    started = time.monotonic()
    async with graph_client(stack) as gc:
        added = await gc.applications.by_application_id(app.object_id).add_password.post(
            add_password_body("x")
        )
    assert added is not None
    assert time.monotonic() - started >= 1.0
    assert [r.status for r in stack.entra.requests(method="POST")] == [429, 200]
    assert len(stack.entra.get_application(app.object_id).passwords) == 1


async def test_throttle_body_and_headers_are_graphs(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("payroll")
    stack.entra.throttle_writes(1, retry_after=7)
    async with httpx.AsyncClient(verify=stack.tls.client_context()) as http:
        response = await http.post(
            f"{stack.entra.url}/v1.0/applications/{app.object_id}/addPassword",
            json={"passwordCredential": {"displayName": "x"}},
            headers={"Authorization": f"Bearer {stack.entra.token_for()}"},
        )
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.headers["x-ms-throttle-information"] == "WriteLimitExceeded"
    assert response.json()["error"]["code"] == "Request_ThrottledTemporarily"


async def test_the_write_quota_refuses_writes_beyond_it_in_a_sliding_window(stack: SimulatorStack) -> None:
    """``write_quota``: Graph's identity write limit (learn.microsoft.com/graph/throttling-limits),
    here 3 per 60 s; refused writes are counted apart and leave the window as it was."""
    app = stack.entra.add_application("payroll")
    stack.entra.set_switches(write_quota={"limit": 3, "window_seconds": 60})
    try:
        async with httpx.AsyncClient(verify=stack.tls.client_context()) as http:
            statuses, retry_after = [], []
            for number in range(5):
                response = await http.post(
                    f"{stack.entra.url}/v1.0/applications/{app.object_id}/addPassword",
                    json={"passwordCredential": {"displayName": f"w{number}"}},
                    headers={"Authorization": f"Bearer {stack.entra.token_for()}"},
                )
                statuses.append(response.status_code)
                retry_after.append(response.headers.get("Retry-After"))
        assert statuses == [200, 200, 200, 429, 429]
        assert all(59 <= int(seconds) <= 60 for seconds in retry_after[3:])
        switches = stack.entra.switches()
        assert (switches["writes_accepted"], switches["writes_peak"], switches["writes_throttled"]) == (
            3,
            3,
            2,
        )
        assert len(stack.entra.get_application(app.object_id).passwords) == 3
    finally:
        stack.entra.set_switches(write_quota=None)


async def test_commit_then_fail_makes_the_sdk_retry_mint_a_duplicate(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("payroll")
    stack.entra.commit_then_fail(1, status=504, retry_after=1)
    async with graph_client(stack) as gc:
        added = await gc.applications.by_application_id(app.object_id).add_password.post(
            add_password_body("secret-rotator-2026")
        )
    assert added is not None
    passwords = stack.entra.get_application(app.object_id).passwords
    # The first attempt created a password whose answer was "lost"; the retry created another.
    assert [p.display_name for p in passwords] == ["secret-rotator-2026"] * 2
    assert str(added.key_id) == passwords[1].key_id
    assert [(r.status, r.fault) for r in stack.entra.requests(method="POST")] == [
        (504, "commit-then-504"),
        (200, None),
    ]


async def test_commit_then_fail_without_retry_leaves_a_committed_password(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("payroll")
    stack.entra.set_switches(commit_then_fail={"count": 1, "status": 503})
    no_retry = RequestConfiguration(options=[RetryHandlerOption(should_retry=False)])
    async with graph_client(stack) as gc:
        with pytest.raises(ODataError) as caught:
            await gc.applications.by_application_id(app.object_id).add_password.post(
                add_password_body("secret-rotator-x"), request_configuration=no_retry
            )
    assert caught.value.response_status_code == 503
    assert [p.display_name for p in stack.entra.get_application(app.object_id).passwords] == [
        "secret-rotator-x"
    ]


async def test_fail_next_answers_5xx_for_matching_requests_only(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("payroll")
    # 500 is not in kiota's retry set, so the SDK surfaces it at once.
    stack.entra.set_switches(fail_next={"count": 1, "status": 500, "method": "GET", "path": "/applications/"})
    async with graph_client(stack) as gc:
        with pytest.raises(ODataError) as caught:
            await gc.applications.by_application_id(app.object_id).get()
        again = await gc.applications.by_application_id(app.object_id).get()
    assert caught.value.response_status_code == 500
    assert caught.value.error is not None and caught.value.error.code == "Service_InternalServerError"
    assert again is not None and again.id == app.object_id


async def test_latency_slows_answers(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("payroll")
    stack.entra.set_switches(latency_seconds=0.3)
    async with graph_client(stack) as gc:
        await gc.applications.by_application_id(app.object_id).get()  # token + first call
        started = time.monotonic()
        await gc.applications.by_application_id(app.object_id).get()
    assert time.monotonic() - started >= 0.3


# ----------------------------------------------------------------------------- token endpoint


async def test_new_secret_works_only_after_the_propagation_delay(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("payroll")
    stack.entra.set_switches(propagation_delay_seconds=1.5)
    async with graph_client(stack) as gc:
        added = await gc.applications.by_application_id(app.object_id).add_password.post(
            add_password_body("new")
        )
    assert added is not None and added.secret_text is not None
    credential = secret_credential(stack, app.app_id, added.secret_text)
    with pytest.raises(ClientAuthenticationError) as caught:
        credential.get_token(GRAPH_SCOPE)
    assert "AADSTS7000215" in str(caught.value)
    time.sleep(1.6)
    # Same credential: MSAL caches 400s for 60 s, but a 401 invalid_client is not cached.
    token = credential.get_token(GRAPH_SCOPE)
    check = stack.issuer.check(f"Bearer {token.token}", [GRAPH_RESOURCE])
    assert check.ok and check.token is not None and check.token.principal == app.app_id
    assert stack.entra.get_application(app.object_id).passwords[0].sign_ins == 1


async def test_async_credential_and_removed_expired_broken_secrets(stack: SimulatorStack) -> None:
    now = datetime.now(UTC)
    app = stack.entra.add_application(
        "payroll",
        passwords=[
            {"displayName": "current", "secretText": "current-secret"},
            {
                "displayName": "expiring",
                "secretText": "expiring-secret",
                "endDateTime": now + timedelta(days=1),
            },
            {"displayName": "doomed", "secretText": "doomed-secret"},
        ],
    )

    async def token_error(secret: str) -> str:
        async with AsyncClientSecretCredential(
            stack.tenant_id,
            app.app_id,
            secret,
            authority=stack.entra.authority,
            disable_instance_discovery=True,
            connection_verify=str(stack.ca_pem),
        ) as credential:
            try:
                await credential.get_token(GRAPH_SCOPE)
            except ClientAuthenticationError as exc:
                return str(exc)
        return "ok"

    assert await token_error("current-secret") == "ok"
    stack.entra.remove_password(app.app_id, app.passwords[2].key_id)
    assert "AADSTS7000215" in await token_error("doomed-secret")
    stack.clock.advance(2 * 86400)  # past the expiring secret's end
    assert "AADSTS7000222" in await token_error("expiring-secret")
    stack.clock.offset_seconds = 0
    stack.entra.set_switches(broken_new_secrets=True)
    async with graph_client(stack) as gc:
        added = await gc.applications.by_application_id(app.object_id).add_password.post(
            add_password_body("bad")
        )
    assert added is not None and added.secret_text is not None
    assert "AADSTS7000215" in await token_error(added.secret_text)
    assert "AADSTS700016" in await token_error_for_unknown_app(stack)


async def token_error_for_unknown_app(stack: SimulatorStack) -> str:
    async with AsyncClientSecretCredential(
        stack.tenant_id,
        str(uuid.uuid4()),
        "whatever",
        authority=stack.entra.authority,
        disable_instance_discovery=True,
        connection_verify=str(stack.ca_pem),
    ) as credential:
        with pytest.raises(ClientAuthenticationError) as caught:
            await credential.get_token(GRAPH_SCOPE)
    return str(caught.value)


def test_token_endpoint_wire_format(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("payroll", passwords=[{"secretText": "pw"}])
    base = stack.entra.url
    with httpx.Client(verify=stack.tls.client_context()) as http:
        config = http.get(f"{base}/{stack.tenant_id}/v2.0/.well-known/openid-configuration").json()
        good = http.post(
            config["token_endpoint"],
            data={
                "grant_type": "client_credentials",
                "client_id": app.app_id,
                "client_secret": "pw",
                "scope": "https://vault.azure.net/.default",
            },
        )
        bad = http.post(
            config["token_endpoint"],
            data={
                "grant_type": "client_credentials",
                "client_id": app.app_id,
                "client_secret": "no",
                "scope": "x/.default",
            },
        )
        unknown_tenant = http.get(f"{base}/{uuid.uuid4()}/v2.0/.well-known/openid-configuration")
    assert config["token_endpoint"] == f"{base}/{stack.tenant_id}/oauth2/v2.0/token"
    assert config["issuer"] == f"{base}/{stack.tenant_id}/v2.0"
    assert {"authorization_endpoint", "device_authorization_endpoint"} <= set(config)
    body = good.json()
    assert good.status_code == 200 and body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert stack.issuer.check(f"Bearer {body['access_token']}", ["https://vault.azure.net"]).ok
    assert bad.status_code == 401
    assert bad.json()["error"] == "invalid_client" and bad.json()["error_codes"] == [7000215]
    assert unknown_tenant.status_code == 400


# ----------------------------------------------------------------------------- admin HTTP API


def test_admin_http_endpoints(stack: SimulatorStack) -> None:
    admin = f"{stack.entra.url}/_sim"
    with httpx.Client(verify=stack.tls.client_context()) as http:
        created = http.post(
            f"{admin}/applications",
            json={
                "displayName": "seeded",
                "signInAudience": "PersonalMicrosoftAccount",
                "passwordCredentials": [{"displayName": "old", "secretText": "known"}],
            },
        )
        assert created.status_code == 201
        app_id = created.json()["appId"]
        switches = http.post(f"{admin}/switches", json={"max_lifetime": 3600, "throttle_writes": 2}).json()
        state = http.get(f"{admin}/state").json()
        unknown = http.post(f"{admin}/switches", json={"no_such_switch": 1})
        http.post(f"{admin}/reset")
        after_reset = http.get(f"{admin}/state").json()
    assert switches["max_lifetime"] == 3600
    assert switches["faults"][0]["remaining"] == 2 and switches["faults"][0]["status"] == 429
    [app] = state["applications"]
    assert app["appId"] == app_id and app["passwordCredentials"][0]["secretText"] == "known"
    assert unknown.status_code == 400
    assert after_reset["applications"] == [] and after_reset["switches"]["max_lifetime"] is None


async def test_app_id_forms_of_add_and_remove_password_over_raw_http(stack: SimulatorStack) -> None:
    app = stack.entra.add_application("payroll")
    headers = {"Authorization": f"Bearer {stack.entra.token_for()}"}
    # A token whose audience is the simulator's own URL (a scope derived from a Graph base URL) is
    # refused, as real Graph refuses any audience but its own (issue 12).
    derived = {"Authorization": f"Bearer {stack.entra.token_for(audience=f'{stack.entra.url}/.default')}"}
    base = f"{stack.entra.url}/v1.0/applications(appId='{app.app_id}')"
    async with httpx.AsyncClient(verify=stack.tls.client_context(), headers=headers) as http:
        refused = await http.post(f"{base}/addPassword", json={}, headers=derived)
        assert refused.status_code == 401
        added = await http.post(f"{base}/addPassword", json={})  # the body is optional
        removed = await http.post(f"{base}/removePassword", json={"keyId": added.json()["keyId"]})
        again = await http.post(f"{base}/removePassword", json={"keyId": added.json()["keyId"]})
    assert added.status_code == 200
    credential = added.json()
    assert credential["secretText"] and credential["customKeyIdentifier"] is None
    assert credential["endDateTime"].endswith("Z") and len(credential["endDateTime"]) == 28
    assert removed.status_code == 204 and removed.content == b""
    assert again.status_code == 400
