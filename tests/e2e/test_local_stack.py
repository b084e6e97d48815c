"""End to end through the local Functions host: HTTP API, the 15-minute timer and the queue
worker, on Azurite and the simulators — and a scan of everything captured for secret values."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.config import load_settings
from shared.services import Services, set_services
from tests.conftest import ROOT, base_environment, identity_credential
from tests.rotation.conftest import UNMANAGED_SECRET, FakeClock

KEY = "e2e-function-key"


class Harness:
    def __init__(self, host: Any, stack: Any, clock: FakeClock, azurite: str) -> None:
        self.host = host
        self.stack = stack
        self.clock = clock
        self.azurite = azurite
        self.responses: list[str] = []
        self.http = httpx.Client(
            base_url=f"{host.base_url.rstrip('/')}/api", headers={"x-functions-key": KEY}
        )

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, timeout=60, **kwargs)
        self.responses.append(response.text)
        return response

    def register(self, *, enabled: bool = True) -> Any:
        entra_app = self.stack.entra.add_application(
            f"App {uuid.uuid4().hex[:6]}",
            passwords=[
                {
                    "displayName": "hand-made",
                    "secretText": UNMANAGED_SECRET,
                    "endDateTime": (self.clock() + timedelta(days=60)).isoformat(),
                }
            ],
        )
        response = self.call(
            "PUT",
            f"/applications/{entra_app.app_id}",
            json={
                "objectId": entra_app.object_id,
                "displayName": entra_app.display_name,
                "rotation": {"enabled": enabled, "secretLifetimeDays": 21, "updateThresholdHours": 1},
                "integrations": [
                    {
                        "kind": "keyVault",
                        "vaultUrl": self.stack.keyvaults["destination"].url,
                        "secretName": f"s-{entra_app.app_id}",
                    }
                ],
            },
        )
        assert response.status_code == 201, response.text
        return entra_app

    def status(self, app_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/applications/{app_id}").json()["status"])

    def managed(self, entra_app: Any) -> list[Any]:
        app = self.stack.entra.get_application(entra_app.object_id)
        return [p for p in app.passwords if (p.display_name or "").startswith("secret-rotator:")]

    def run_timer(self) -> None:
        self.host.fire_timer("scan_due_rotations")
        self.host.drain("rotations", timeout=120)


def everything_the_rotator_wrote(harness: Harness, caplog: pytest.LogCaptureFixture) -> list[str]:
    """API responses, log records (the simulators' own excluded), every table entity and queue message."""
    from azure.data.tables import TableServiceClient
    from azure.storage.queue import QueueServiceClient

    captured: list[str] = list(harness.responses)
    for record in caplog.records:
        if record.name.startswith("simulators"):
            continue  # a simulated receiver's own access log is not the rotator's
        captured.append(record.getMessage())
        captured.append(repr(record.__dict__))
    tables = TableServiceClient.from_connection_string(harness.azurite)
    for table in tables.list_tables():
        for entity in tables.get_table_client(table.name).list_entities():
            captured.append(json.dumps(dict(entity), default=str))
    queues = QueueServiceClient.from_connection_string(harness.azurite)
    for queue in queues.list_queues():
        for message in queues.get_queue_client(queue.name).peek_messages(max_messages=32):
            captured.append(message.content)
            captured.append(base64.b64decode(message.content + "==").decode(errors="replace"))
    return captured


@pytest.fixture
def harness(azurite: str, stack: Any, clean_storage: None) -> Iterator[Harness]:
    import function_app
    from devhost import DevHostThread, load_host_json

    clock = FakeClock(stack)
    env = base_environment(azurite, **stack.app_settings(), ROTATOR_VERIFY_TIMEOUT_SECONDS="30")
    services = Services(load_settings(env), clock=clock, credential=identity_credential(stack))
    set_services(services)
    try:
        # The project's host.json, with retries 30 s apart shortened so poisoning takes seconds.
        config = load_host_json(Path(ROOT, "host.json"))
        config = replace(config, queues=replace(config.queues, visibility_timeout=timedelta(seconds=1)))
        with DevHostThread(
            function_app.app,
            function_key=KEY,
            host_config=config,
            settings={"AzureWebJobsStorage": azurite},
            queue_poll_seconds=0.2,
        ) as host:
            harness = Harness(host, stack, clock, azurite)
            yield harness
            harness.http.close()
            host.run_coroutine(services.close())
            host.run_coroutine(services.credential.close())
    finally:
        set_services(None)


def test_timer_rotates_due_applications_and_leaves_the_rest(harness: Harness) -> None:
    due = harness.register()
    disabled = harness.register(enabled=False)

    harness.run_timer()

    [credential] = harness.managed(due)
    status = harness.status(due.app_id)
    assert status["lastResult"] == "succeeded" and status["currentKeyId"] == credential.key_id
    assert status["integrations"]["keyVault-1"]["result"] == "succeeded"
    destination = harness.stack.keyvaults["destination"].get_secret(f"s-{due.app_id}")
    assert destination.value == credential.secret_text
    assert harness.managed(disabled) == []
    assert harness.status(disabled.app_id)["lastResult"] == "never"

    # Not due again until threshold hours before expiry; then the timer rotates it.
    harness.run_timer()
    assert len(harness.managed(due)) == 1
    harness.clock.advance(timedelta(days=21) - timedelta(minutes=59))
    harness.run_timer()
    assert len(harness.managed(due)) == 2
    assert harness.status(due.app_id)["currentKeyId"] != credential.key_id


def test_manual_refresh_rotates_at_once_and_the_log_tells_the_story(harness: Harness) -> None:
    entra_app = harness.register()
    accepted = harness.call("POST", f"/applications/{entra_app.app_id}/refresh").json()
    harness.host.drain("rotations", timeout=120)

    [credential] = harness.managed(entra_app)
    assert credential.display_name == f"secret-rotator:{accepted['rotationId']}"
    log = harness.call("GET", f"/applications/{entra_app.app_id}/log").json()["items"]
    assert [entry["event"] for entry in log][0] == "rotation.completed"
    assert {entry["rotationId"] for entry in log} == {accepted["rotationId"]}
    assert "integration.deployed" in [entry["event"] for entry in log]


def test_a_bad_queue_message_ends_in_the_poison_queue(harness: Harness) -> None:
    from azure.storage.queue import QueueClient, TextBase64EncodePolicy

    queue = QueueClient.from_connection_string(
        harness.azurite, "rotations", message_encode_policy=TextBase64EncodePolicy()
    )
    queue.send_message(json.dumps({"appId": "x"}))
    harness.host.drain("rotations", timeout=120)
    poison = QueueClient.from_connection_string(harness.azurite, "rotations-poison")
    bodies = [base64.b64decode(m.content).decode() for m in poison.peek_messages(max_messages=32)]
    assert json.dumps({"appId": "x"}) in bodies


def test_no_secret_value_appears_anywhere(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:

    caplog.set_level(logging.INFO)
    first = harness.register()
    harness.call("POST", f"/applications/{first.app_id}/refresh")
    second = harness.register()
    harness.host.drain("rotations", timeout=120)
    harness.run_timer()  # second is due (never rotated)
    harness.call("POST", f"/applications/{first.app_id}/refresh", json={"compromised": True})
    harness.host.drain("rotations", timeout=120)
    for app in (first, second):
        harness.call("GET", f"/applications/{app.app_id}")
        harness.call("GET", f"/applications/{app.app_id}/log")
        harness.call("GET", f"/applications/{app.app_id}/plan")
    harness.call("GET", "/applications")

    secrets = {UNMANAGED_SECRET}
    for app in (first, second):
        staged = harness.stack.keyvaults["rotator"].versions_named(f"app-{app.app_id}-", include_deleted=True)
        secrets |= {v.value for v in staged}
    assert len(secrets) >= 4  # the planted one + three rotations

    everything = "\n".join(everything_the_rotator_wrote(harness, caplog))
    assert len(everything) > 10_000
    for secret in secrets:
        assert secret not in everything


def test_no_credential_planted_in_any_field_appears_anywhere(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10: a secret planted in every credential field (PAT, Vercel token, webhook URL path,
    query and userinfo) is found nowhere: logs, tables, queues, API responses, emails."""
    from urllib.parse import urlsplit

    caplog.set_level(logging.DEBUG)
    planted = {
        "pat": "PLANTED-PAT-0a1b2c3d4e5f6g7h8i9j",
        "token": "PLANTED-VERCEL-TOKEN-0a1b2c3d4e5f",
        "password": "PLANTED-USERINFO-PASSWORD-77",
        "path": "PLANTEDPATHTOKEN0a1b2c3d4e5f6g7h",
        "query": "PLANTED-QUERY-TOKEN-0a1b2c3d",
    }
    group = harness.call(
        "PUT", "/groups/leak-test", json={"displayName": "Leak", "vercel": {"token": planted["token"]}}
    )
    assert group.status_code in (200, 201), group.text
    webhook_host = urlsplit(harness.stack.webhook.url).netloc
    webhook_url = (
        f"https://ops:{planted['password']}@{webhook_host}/hooks/{planted['path']}?code={planted['query']}"
    )
    entra_app = harness.stack.entra.add_application("Leak test", passwords=[])
    registered = harness.call(
        "PUT",
        f"/applications/{entra_app.app_id}",
        json={
            "objectId": entra_app.object_id,
            "displayName": "Leak test",
            "groupId": "leak-test",
            "rotation": {"enabled": True},
            "notifications": {"recipients": ["ops@contoso.com"]},
            "integrations": [
                {
                    "kind": "azureDevOps",
                    "organization": "contoso",
                    "project": "payroll",
                    "serviceConnectionId": str(uuid.uuid4()),
                    "authentication": "pat",
                    "personalAccessToken": planted["pat"],
                },
                {"kind": "automation", "target": "webhook", "webhookUrl": webhook_url},
                {
                    "kind": "vercel",
                    "projectId": "prj_missing",
                    "envVarName": "CLIENT_SECRET",
                    "targets": ["production"],
                },
            ],
        },
    )
    assert registered.status_code == 201, registered.text
    assert harness.call("POST", f"/applications/{entra_app.app_id}/refresh").status_code == 202
    harness.host.drain("rotations", timeout=120)
    harness.call("GET", f"/applications/{entra_app.app_id}")
    harness.call("GET", f"/applications/{entra_app.app_id}/log")
    harness.call("GET", f"/applications/{entra_app.app_id}/plan")
    harness.call("GET", "/groups/leak-test")
    status = harness.status(entra_app.app_id)
    assert status["lastResult"] == "degraded"  # every destination failed, and said why
    assert {r["result"] for r in status["integrations"].values()} == {"failed"}

    captured = everything_the_rotator_wrote(harness, caplog)
    emails = harness.stack.acs.outbox()
    assert emails, "the failure alert was sent"
    for email in emails:
        captured += [email.subject, email.plain_text or "", email.html or ""]
    everything = "\n".join(captured)
    for name, value in planted.items():
        assert value not in everything, name
