"""The ACS Email simulator's wire behaviour, over raw HTTPS (httpx) and through the real SDK."""

from __future__ import annotations

import ssl
import uuid
from typing import Any

import httpx
import pytest

from simulators.acs import ACS_RESOURCE, AcsEmailSimulator

MESSAGE = {
    "senderAddress": "DoNotReply@rotator.simulator.local",
    "content": {"subject": "Hello", "plainText": "text body", "html": "<p>html body</p>"},
    "recipients": {
        "to": [{"address": "ops@contoso.com", "displayName": "Ops"}],
        "bcc": [{"address": "a@b.io"}],
    },
    "userEngagementTrackingDisabled": True,
}


@pytest.fixture
def client(stack: Any, acs: AcsEmailSimulator) -> Any:
    token = stack.issuer.issue("rotator", ACS_RESOURCE).token
    with httpx.Client(
        base_url=acs.url,
        verify=ssl.create_default_context(cafile=str(stack.ca_pem)),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ) as http:
        yield http


def test_send_answers_202_with_an_operation_to_poll_then_running_then_succeeded(
    client: httpx.Client, acs: AcsEmailSimulator
) -> None:
    acs.set_switches(retry_after_seconds=20)
    sent = client.post("/emails:send", params={"api-version": "2023-03-31"}, json=MESSAGE)
    assert sent.status_code == 202
    body = sent.json()
    assert body["status"] == "Running" and uuid.UUID(body["id"])
    assert sent.headers["retry-after"] == "20"
    location = sent.headers["Operation-Location"]
    assert location == f"{acs.url}/emails/operations/{body['id']}?api-version=2023-03-31"

    first = client.get(location)
    assert first.status_code == 200 and first.json() == {"id": body["id"], "status": "Running"}
    assert first.headers["retry-after"] == "20"
    second = client.get(location)
    assert second.json() == {"id": body["id"], "status": "Succeeded"}
    assert "retry-after" not in second.headers

    [email] = acs.outbox()
    assert email.to == ["ops@contoso.com"] and email.bcc == ["a@b.io"]
    assert email.plain_text == "text body" and email.html == "<p>html body</p>"
    state = client.get("/_sim/state").json()
    assert state["outbox"][0]["subject"] == "Hello" and state["outbox"][0]["status"] == "Succeeded"
    assert client.get("/_sim/outbox").json()[0]["operationId"] == body["id"]


def test_the_same_operation_id_is_one_operation(client: httpx.Client, acs: AcsEmailSimulator) -> None:
    operation = str(uuid.uuid4())
    headers = {"Operation-Id": operation}
    for _ in range(3):
        answer = client.post(
            "/emails:send", params={"api-version": "2025-09-01"}, json=MESSAGE, headers=headers
        )
        assert answer.status_code == 202 and answer.json()["id"] == operation
    [email] = acs.outbox()
    assert email.sends == 3


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"senderAddress": "not-an-address"}, "InvalidSenderAddress"),
        ({"content": {"subject": "", "plainText": "x"}}, "EmptySubject"),
        ({"content": {"subject": "s"}}, "EmptyContent"),
        ({"recipients": {"to": []}}, "EmptyRecipients"),
        ({"recipients": {"to": [{"address": "nobody"}]}}, "InvalidEmailAddress"),
    ],
)
def test_invalid_messages_are_refused(
    client: httpx.Client, acs: AcsEmailSimulator, change: dict[str, Any], code: str
) -> None:
    answer = client.post("/emails:send", params={"api-version": "2025-09-01"}, json={**MESSAGE, **change})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == code and answer.headers["x-ms-error-code"] == code
    assert acs.outbox() == []


def test_sender_must_be_allowed_when_senders_are_configured(
    client: httpx.Client, acs: AcsEmailSimulator
) -> None:
    client.post("/_sim/switches", json={"senders": ["other@contoso.com"]}).raise_for_status()
    answer = client.post("/emails:send", params={"api-version": "2025-09-01"}, json=MESSAGE)
    assert answer.json()["error"]["code"] == "InvalidSenderUserName"


def test_auth_and_api_version(stack: Any, acs: AcsEmailSimulator) -> None:
    with httpx.Client(
        base_url=acs.url, verify=ssl.create_default_context(cafile=str(stack.ca_pem)), timeout=10
    ) as http:
        params = {"api-version": "2025-09-01"}
        assert http.post("/emails:send", params=params, json=MESSAGE).status_code == 401
        vault_token = stack.issuer.issue("rotator", "https://vault.azure.net").token
        wrong = http.post(
            "/emails:send", params=params, json=MESSAGE, headers={"Authorization": f"Bearer {vault_token}"}
        )
        assert wrong.status_code == 401 and "audience" in wrong.json()["error"]["message"]
        hmac = http.post(
            "/emails:send", params=params, json=MESSAGE, headers={"Authorization": "HMAC-SHA256 x"}
        )
        assert hmac.status_code == 401
        # The SDK's scope has a double slash; Entra normalises it to the same audience.
        token = stack.issuer.issue("rotator", "https://communication.azure.com//.default").token
        auth = {"Authorization": f"Bearer {token}"}
        assert http.post("/emails:send", json=MESSAGE, headers=auth).json()["error"]["code"] == (
            "MissingApiVersionParameter"
        )
        unknown = http.post("/emails:send", params={"api-version": "1999-01-01"}, json=MESSAGE, headers=auth)
        assert unknown.json()["error"]["code"] == "UnsupportedApiVersion"


def test_throttle_and_fault_switches(client: httpx.Client, acs: AcsEmailSimulator) -> None:
    client.post("/_sim/switches", json={"throttle": {"count": 1, "retry_after": 7}}).raise_for_status()
    throttled = client.post("/emails:send", params={"api-version": "2025-09-01"}, json=MESSAGE)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    acs.fail_next(1, 503)
    assert client.post("/emails:send", params={"api-version": "2025-09-01"}, json=MESSAGE).status_code == 503
    assert client.post("/emails:send", params={"api-version": "2025-09-01"}, json=MESSAGE).status_code == 202
    assert len(acs.outbox()) == 1


def test_failed_delivery_switch(client: httpx.Client, acs: AcsEmailSimulator) -> None:
    client.post("/_sim/switches", json={"fail_delivery": 1, "polls_until_done": 0}).raise_for_status()
    sent = client.post("/emails:send", params={"api-version": "2025-09-01"}, json=MESSAGE)
    polled = client.get(sent.headers["Operation-Location"]).json()
    assert polled["status"] == "Failed" and polled["error"]["code"] == "EmailDropped"


async def test_the_real_sdk_sends_and_polls_with_a_managed_identity_token(
    stack: Any, acs: AcsEmailSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.communication.email.aio import EmailClient
    from azure.identity.aio import ManagedIdentityCredential

    for name, value in stack.msi.environment().items():
        monkeypatch.setenv(name, value)
    credential = ManagedIdentityCredential()
    client = EmailClient(acs.url, credential, connection_verify=str(stack.ca_pem), retry_total=0)
    try:
        poller = await client.begin_send(MESSAGE, polling_interval=0.05)
        result = await poller.result()
    finally:
        await client.close()
        await credential.close()
    assert result["status"] == "Succeeded"
    [email] = acs.outbox()
    assert email.principal is not None and email.api_version == "2025-09-01"
    assert [(r.method, r.status) for r in acs.requests()] == [("POST", 202), ("GET", 200), ("GET", 200)]
