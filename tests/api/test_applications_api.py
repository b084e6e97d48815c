"""The configuration API as the portal uses it: JSON over HTTP with a function key, on Azurite."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT

# One Entra object for every registration here: replacing a registration keeps its objectId.
OBJECT_ID = "9b0f3f7e-6a52-4f0e-8a3c-1c2d3e4f5a6b"


def registration(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "objectId": OBJECT_ID,
        "displayName": "Payroll API",
        "rotation": {"enabled": True, "secretLifetimeDays": 21, "updateThresholdHours": 1},
        "notifications": {"recipients": ["ops@contoso.com"], "thresholdAlertDays": 3},
        "integrations": [{"kind": "keyVault", "vaultUrl": "https://payroll-kv.vault.azure.net"}],
    }
    body.update(overrides)
    return body


def register(api: httpx.Client, app_id: str | None = None, **overrides: Any) -> httpx.Response:
    app_id = app_id or str(uuid.uuid4())
    return api.put(f"/applications/{app_id}", json=registration(**overrides))


def test_register_then_get_round_trips(api: httpx.Client) -> None:
    app_id = str(uuid.uuid4())
    created = register(api, app_id)
    assert created.status_code == 201, created.text
    assert created.headers["ETag"] == created.json()["etag"]
    got = api.get(f"/applications/{app_id}")
    assert got.status_code == 200
    body = got.json()
    assert body["appId"] == app_id
    assert body["rotation"] == {
        "enabled": True,
        "secretLifetimeDays": 21,
        "updateThresholdHours": 1,
        "retireUnmanagedCredentials": False,
        "recreateLeadingDashSecrets": False,
        "retireUnusedPreviousAfterHours": None,  # early retirement is opt-in
    }
    assert body["integrations"][0]["name"] == "keyVault-1"
    assert body["status"]["lastResult"] == "never"
    # Enabled and never rotated: due now, shown as a time (RFC 3339, Z), never null.
    assert body["status"]["nextUpdateAt"].endswith("Z")
    assert body["createdAt"].endswith("Z") and body["updatedAt"].endswith("Z")


def test_next_update_is_absent_for_a_disabled_application(api: httpx.Client) -> None:
    app_id = str(uuid.uuid4())
    register(api, app_id, state="Disabled")
    assert "nextUpdateAt" not in api.get(f"/applications/{app_id}").json()["status"]
    [summary] = [
        a
        for a in api.get("/applications", params={"pageSize": "100"}).json()["items"]
        if a["appId"] == app_id
    ] or [None]
    assert summary is None or summary["nextUpdateAt"] is None


def test_the_rotation_log_survives_delete(api: httpx.Client) -> None:
    app_id = register(api).json()["appId"]
    assert api.post(f"/applications/{app_id}/refresh").status_code == 202
    assert api.delete(f"/applications/{app_id}").status_code == 204
    log = api.get(f"/applications/{app_id}/log")
    assert log.status_code == 200, log.text
    assert [e["event"] for e in log.json()["items"]] == ["rotation.superseded", "rotation.requested"]
    assert api.get(f"/applications/{uuid.uuid4()}/log").status_code == 404  # never registered


def test_replace_keeps_status_and_accepts_a_get_body(api: httpx.Client) -> None:
    app_id = str(uuid.uuid4())
    register(api, app_id)
    body = api.get(f"/applications/{app_id}").json()
    body["displayName"] = "Payroll API v2"
    replaced = api.put(f"/applications/{app_id}", json=body, headers={"If-Match": body["etag"]})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["displayName"] == "Payroll API v2"
    assert replaced.json()["createdAt"] == body["createdAt"]


def test_stale_if_match_gets_412_and_changes_nothing(api: httpx.Client) -> None:
    app_id = str(uuid.uuid4())
    first = register(api, app_id).json()
    second = api.put(f"/applications/{app_id}", json=registration(displayName="Second"))
    assert second.status_code == 200
    stale = api.put(
        f"/applications/{app_id}", json=registration(displayName="Third"), headers={"If-Match": first["etag"]}
    )
    assert stale.status_code == 412
    assert stale.headers["content-type"].startswith("application/problem+json")
    assert api.get(f"/applications/{app_id}").json()["displayName"] == "Second"
    deleted = api.delete(f"/applications/{app_id}", headers={"If-Match": first["etag"]})
    assert deleted.status_code == 412


def test_if_none_match_star_is_create_only(api: httpx.Client) -> None:
    app_id = str(uuid.uuid4())
    assert (
        api.put(f"/applications/{app_id}", json=registration(), headers={"If-None-Match": "*"}).status_code
        == 201
    )
    again = api.put(f"/applications/{app_id}", json=registration(), headers={"If-None-Match": "*"})
    assert again.status_code == 412


def test_91_day_lifetime_is_refused_naming_the_field(api: httpx.Client) -> None:
    app_id = str(uuid.uuid4())
    response = register(api, app_id, rotation={"secretLifetimeDays": 91})
    assert response.status_code == 400
    problem = response.json()
    assert problem["status"] == 400
    assert problem["errors"] == [
        {
            "field": "rotation.secretLifetimeDays",
            "message": "must be a whole number from 1 to 90 days",
            "allowed": "1 to 90 days",
        }
    ]
    assert api.get(f"/applications/{app_id}").status_code == 404  # nothing half-written


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[]", "body"),
        (b"", "body"),
        (
            json.dumps(registration(rotation={"updateThresholdHours": 24})).encode(),
            "rotation.updateThresholdHours",
        ),
        (json.dumps(registration(integrations=[{"kind": "sharepoint"}])).encode(), "integrations.0.kind"),
        (json.dumps(registration(state="Paused")).encode(), "state"),
        (json.dumps(registration(objectId=42)).encode(), "objectId"),
        (json.dumps(registration(appId=str(uuid.uuid4()))).encode(), "appId"),
    ],
)
def test_bad_input_is_a_problem_naming_the_field(api: httpx.Client, body: bytes, field: str) -> None:
    app_id = str(uuid.uuid4())
    response = api.put(f"/applications/{app_id}", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert field in [error["field"] for error in response.json()["errors"]]
    assert api.get(f"/applications/{app_id}").status_code == 404


def test_oversized_body_is_413(api: httpx.Client) -> None:
    big = registration(displayName="x" * 200)
    big["padding"] = "y" * (70 * 1024)
    response = api.put(f"/applications/{uuid.uuid4()}", json=big)
    assert response.status_code == 413


def test_unknown_application_is_404(api: httpx.Client) -> None:
    missing = str(uuid.uuid4())
    for response in (
        api.get(f"/applications/{missing}"),
        api.delete(f"/applications/{missing}"),
        api.get(f"/applications/{missing}/log"),
        api.post(f"/applications/{missing}/refresh"),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["title"] == "Not found"
    assert api.get("/applications/not-a-guid").status_code == 400


def test_list_pages_with_continuation_tokens(api: httpx.Client) -> None:
    app_ids = {register(api).json()["appId"] for _ in range(5)}
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"pageSize": "2", **({"continuationToken": token} if token else {})}
        page = api.get("/applications", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= 2
        seen += [item["appId"] for item in body["items"]]
        pages += 1
        token = body["continuationToken"]
        if not token:
            break
    assert set(seen) == app_ids and len(seen) == 5
    assert pages >= 3
    summary = api.get("/applications", params={"pageSize": "1"}).json()["items"][0]
    assert {"lastUpdatedAt", "expiresAt", "nextUpdateAt", "state", "rotationEnabled", "lastResult"} <= set(
        summary
    )


@pytest.mark.parametrize("page_size", ["0", "101", "ten"])
def test_page_size_bounds(api: httpx.Client, page_size: str) -> None:
    response = api.get("/applications", params={"pageSize": page_size})
    assert response.status_code == 400
    assert response.json()["errors"][0] == {
        "field": "pageSize",
        "message": "must be a whole number",
        "allowed": "1 to 100",
    }
    assert api.get("/applications", params={"pageSize": "100"}).status_code == 200
    assert api.get("/applications", params={"continuationToken": "garbage!"}).status_code == 400


def test_delete_removes_the_application(api: httpx.Client) -> None:
    app_id = register(api).json()["appId"]
    assert api.delete(f"/applications/{app_id}").status_code == 204
    assert api.get(f"/applications/{app_id}").status_code == 404


def test_delete_takes_leave_credentials_as_true_or_false_only(api: httpx.Client) -> None:
    """``leaveCredentials`` is ``true`` or ``false``; anything else is a 400 naming it, and the
    registration stays. With nothing owed it deletes as a plain DELETE does."""
    app_id = register(api).json()["appId"]
    for value in ("yes", "1", "TRUE", ""):
        refused = api.delete(f"/applications/{app_id}", params={"leaveCredentials": value})
        assert refused.status_code == 400, value
        assert refused.json()["errors"] == [
            {
                "field": "leaveCredentials",
                "message": "must be true or false",
                "allowed": "true or false",
            }
        ]
        assert api.get(f"/applications/{app_id}").status_code == 200
    assert api.delete(f"/applications/{app_id}", params={"leaveCredentials": "true"}).status_code == 204
    assert api.get(f"/applications/{app_id}").status_code == 404


def test_manual_refresh_queues_a_job_without_secrets(api: httpx.Client, azurite: str) -> None:
    from azure.storage.queue import QueueClient

    app_id = register(api).json()["appId"]
    response = api.post(f"/applications/{app_id}/refresh", json={"compromised": True})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "queued" and accepted["compromised"] is True
    queue = QueueClient.from_connection_string(azurite, "rotations")
    messages = [json.loads(base64.b64decode(m.content)) for m in queue.peek_messages(max_messages=32)]
    job = next(m for m in messages if m["rotationId"] == accepted["rotationId"])
    assert job == {
        "appId": app_id,
        "rotationId": accepted["rotationId"],
        "reason": "manual",
        "requestedAt": job["requestedAt"],
        "compromised": True,
        "generation": job["generation"],
    }
    assert isinstance(job["generation"], int) and job["generation"] > 0  # registration_generation


def test_refreshes_while_one_is_pending_join_it_and_a_compromised_one_escalates_it(
    api: httpx.Client, azurite: str
) -> None:
    """Issue 9, failure 4: twenty concurrent refreshes are one rotation, and none vanishes."""
    from concurrent.futures import ThreadPoolExecutor

    from azure.storage.queue import QueueClient

    app_id = register(api).json()["appId"]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: api.post(f"/applications/{app_id}/refresh"), range(20)))
    assert {a.status_code for a in answers} == {202}
    ids = {a.json()["rotationId"] for a in answers}
    assert len(ids) == 1, ids  # every caller follows the same rotation
    assert sum(not a.json()["joined"] for a in answers) == 1
    [rotation_id] = ids
    escalated = api.post(f"/applications/{app_id}/refresh", json={"compromised": True})
    assert escalated.status_code == 202
    assert escalated.json() | {"log": None} == {
        "appId": app_id,
        "rotationId": rotation_id,
        "status": "queued",
        "joined": True,
        "compromised": True,
        "log": None,
    }
    status = api.get(f"/applications/{app_id}").json()["status"]
    assert status["pending"]["rotationId"] == rotation_id and status["pending"]["compromised"] is True
    queue = QueueClient.from_connection_string(azurite, "rotations")
    messages = [json.loads(base64.b64decode(m.content)) for m in queue.peek_messages(max_messages=32)]
    assert [m["rotationId"] for m in messages if m["appId"] == app_id] == [rotation_id]  # one job
    log = api.get(f"/applications/{app_id}/log").json()["items"]
    assert [e["event"] for e in log] == ["rotation.escalated", "rotation.requested"]


def test_revoking_foreign_credentials_needs_compromised(api: httpx.Client) -> None:
    app_id = register(api).json()["appId"]
    response = api.post(f"/applications/{app_id}/refresh", json={"revokeUnmanagedCredentials": True})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "revokeUnmanagedCredentials"


def test_manual_refresh_of_a_disabled_application_is_409(api: httpx.Client) -> None:
    app_id = register(api, state="Disabled").json()["appId"]
    response = api.post(f"/applications/{app_id}/refresh")
    assert response.status_code == 409
    assert "Disabled" in response.json()["detail"]


def test_rotation_log_of_a_new_application_is_empty(api: httpx.Client) -> None:
    app_id = register(api).json()["appId"]
    assert api.get(f"/applications/{app_id}/log").json() == {"items": [], "continuationToken": None}


def test_function_key_is_required(anonymous: httpx.Client, api: httpx.Client) -> None:
    assert anonymous.get("/applications").status_code == 401
    assert anonymous.get("/applications", headers={"x-functions-key": "wrong"}).status_code == 401
    assert anonymous.get("/applications", params={"code": "test-function-key"}).status_code == 200
    assert anonymous.put(f"/applications/{uuid.uuid4()}", json=registration()).status_code == 401
    assert anonymous.get("/health").json() == {"status": "ok"}


def test_openapi_document_matches_the_registered_routes(anonymous: httpx.Client) -> None:
    import azure.functions as func

    import function_app

    # A fresh app from the same blueprints: get_functions() may be called once per app.
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    for blueprint in function_app.BLUEPRINTS:
        app.register_functions(blueprint)
    served = anonymous.get("/openapi.json").json()
    assert served["openapi"] == "3.1.0"
    documented = {
        (path, method.upper())
        for path, item in served["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    }
    registered = set()
    for function in app.get_functions():
        trigger = function.get_trigger()
        if trigger.get_binding_name() == "httpTrigger":
            for method in trigger.methods:
                registered.add(("/" + trigger.route, str(getattr(method, "value", method)).upper()))
    assert documented == registered
    host_json = json.loads((ROOT / "host.json").read_text())
    assert served["servers"] == [{"url": "/" + host_json["extensions"]["http"]["routePrefix"]}]


def test_changing_the_object_id_needs_the_explicit_flag(api: httpx.Client) -> None:
    app_id = str(uuid.uuid4())
    register(api, app_id)
    other = str(uuid.uuid4())
    refused = api.put(f"/applications/{app_id}", json=registration(objectId=other))
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "objectId" in refused.json()["detail"] and "allowObjectIdChange" in refused.json()["detail"]
    assert api.get(f"/applications/{app_id}").json()["objectId"] == OBJECT_ID  # nothing written
    allowed = api.put(
        f"/applications/{app_id}", json={**registration(objectId=other), "allowObjectIdChange": True}
    )
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["objectId"] == other


SUMMARY_FIELDS = {
    "appId": lambda body: body["appId"],
    "objectId": lambda body: body["objectId"],
    "displayName": lambda body: body["displayName"],
    "state": lambda body: body["state"],
    "rotationEnabled": lambda body: body["rotation"]["enabled"],
    "lastUpdatedAt": lambda body: body["status"]["lastUpdatedAt"],
    "expiresAt": lambda body: body["status"]["expiresAt"],
    "nextUpdateAt": lambda body: body["status"].get("nextUpdateAt"),
    "lastResult": lambda body: body["status"]["lastResult"],
    "rotationInProgress": lambda body: body["status"]["inProgress"] is not None,
    "integrationCount": lambda body: len(body["integrations"]),
    "etag": lambda body: body["etag"],
}


def summary_of(body: dict[str, Any]) -> dict[str, Any]:
    """What a list entry must show of an application: the same values its GET shows."""
    return {name: pick(body) for name, pick in SUMMARY_FIELDS.items()}


def test_each_list_entry_shows_what_get_shows(api: httpx.Client) -> None:
    """Issue 11: a listing reads only Config and Status and writes out only the summary's fields;
    every entry still equals the projection of the application's own GET."""
    assert register(api).status_code == 201
    assert register(api, state="Disabled").status_code == 201
    assert register(api, rotation={"enabled": False}).status_code == 201
    two_vaults = register(
        api,
        integrations=[
            {"kind": "keyVault", "vaultUrl": "https://payroll-kv.vault.azure.net"},
            {"kind": "keyVault", "vaultUrl": "https://payroll-kv2.vault.azure.net"},
        ],
    )
    assert two_vaults.status_code == 201, two_vaults.text
    items = api.get("/applications", params={"pageSize": "100"}).json()["items"]
    assert len(items) == 4
    for item in items:
        expected = summary_of(api.get(f"/applications/{item['appId']}").json())
        # "Now" for a due application is the time of each answer.
        assert (item.pop("nextUpdateAt") is None) == (expected.pop("nextUpdateAt") is None)
        assert item == expected


def test_a_summary_writes_times_and_a_claim_as_the_full_body_does(app_host: object) -> None:
    """The summary of a rotated application with a rotation running (times with microseconds, a
    claim, integrations) equals the projection of ``application_body`` of the same row."""
    from datetime import UTC, datetime, timedelta

    from shared.domain.models import ApplicationConfig, ApplicationStatus, RotationClaim
    from shared.storage.applications import StoredApplication, format_instant, listed, listing_text
    from shared.triggers.http_api import application_body, application_summary

    now = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)
    config = ApplicationConfig.model_validate({"appId": str(uuid.uuid4()), **registration()}, strict=False)
    claim = RotationClaim(rotation_id="r1", owner="o", claimed_at=now, expires_at=now + timedelta(minutes=30))
    from shared.services import get_services

    services = get_services()
    real_clock, services.clock = services.clock, lambda: now
    try:
        for status in (
            ApplicationStatus(current_key_id="k", expires_at=now + timedelta(days=21), last_updated_at=now),
            ApplicationStatus(
                current_key_id="k",
                expires_at=now - timedelta(seconds=1),
                last_updated_at=now,
                in_progress=claim,
            ),
        ):
            stored = StoredApplication(config, status, 'W/"etag"', now, now)
            # Through the stored column's JSON, as a listing reads it.
            summary = json.loads(
                application_summary(listed(listing_text(config, status), 'W/"etag"'), format_instant(now))
            )
            assert summary == summary_of(application_body(stored))
    finally:
        services.clock = real_clock


def test_an_answer_settles_the_heap_of_the_process(api: httpx.Client) -> None:
    """Issue 11: after a route's first answer, the long-lived objects (SDKs, models) are in the
    permanent generation, which full collections skip (a full pass stalled list pages by ~60 ms)."""
    import gc

    from shared import heap

    assert api.get("/applications", params={"pageSize": "1"}).status_code == 200
    assert "list_applications" in heap._settled
    assert gc.get_freeze_count() > 0


def test_a_row_written_before_the_listing_column_is_listed_the_same(api: httpx.Client, azurite: str) -> None:
    """Rows an earlier version wrote have no ``Listing`` column: the listing reads them whole, and
    their entry is the same as for any other row, in its place among the others (key order)."""
    from azure.data.tables import TableClient, UpdateMode

    from shared.storage.applications import PARTITION, TABLE_NAME, app_row_key

    app_ids = sorted(register(api).json()["appId"] for _ in range(4))
    with TableClient.from_connection_string(azurite, TABLE_NAME) as table:
        for old in app_ids[0::2]:
            entity = table.get_entity(PARTITION, app_row_key(old))
            del entity["Listing"]
            table.update_entity(entity, mode=UpdateMode.REPLACE)
            assert "Listing" not in table.get_entity(PARTITION, app_row_key(old))
    listed = api.get("/applications").json()["items"]
    assert [item["appId"] for item in listed] == app_ids
    for item in listed:
        app_id = item["appId"]
        expected = summary_of(api.get(f"/applications/{app_id}").json())
        assert (item.pop("nextUpdateAt") is None) == (expected.pop("nextUpdateAt") is None)
        assert item == expected
