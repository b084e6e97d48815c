"""Custom automation: runbook jobs through the ARM simulator, signed webhooks to the receiver simulator."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from typing import Any

import pytest

from shared.adapters.retry import RetryPolicy, retry
from shared.adapters.vault import credential_secret_name
from shared.errors import RotationError, ThrottledError, TransientServiceError
from shared.integrations.automation import AutomationPlugin
from tests.integrations.conftest import (
    ACCOUNT_ID,
    NEW_SECRET,
    app_logs,
    assert_secret_absent,
    current_staged,
    install_plugins,
    plugin_context,
    register_with_integrations,
)
from tests.rotation.conftest import Rotator

RUNBOOK = {
    "kind": "automation",
    "target": "runbook",
    "automationAccountId": ACCOUNT_ID,
    "runbookName": "Update-Secret",
}
WEBHOOK_SECRET = credential_secret_name("webhook", "payroll")
WEBHOOK = {"kind": "automation", "target": "webhook", "webhookSecretName": WEBHOOK_SECRET}
STRING = {"type": "System.String", "isMandatory": False}


def fast() -> AutomationPlugin:
    return AutomationPlugin(poll_interval=0.05, job_timeout=5)


def seed_runbook(arm_sim: Any, parameters: dict[str, Any] | None = None, **kwargs: Any) -> None:
    arm_sim.add_automation_account(ACCOUNT_ID)
    declared = {
        "ClientSecret": {"type": "System.String", "isMandatory": True},
        "AppId": STRING,
        "KeyId": STRING,
    }
    arm_sim.add_runbook(ACCOUNT_ID, "Update-Secret", declared if parameters is None else parameters, **kwargs)


def seed_hook(stack: Any, webhook_sim: Any, *, signing_key: str | None = None) -> Any:
    hook = webhook_sim.add_hook(signing_key=signing_key)
    stored = json.dumps({"url": hook.url, "signingKey": signing_key}) if signing_key else hook.url
    stack.keyvaults["rotator"].set_secret(WEBHOOK_SECRET, stored)
    return hook


# --------------------------------------------------------------------------- runbooks


async def test_runbook_job_receives_the_secret_and_completes(
    arm_sim: Any, arm_services: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seed_runbook(arm_sim)
    ctx = plugin_context(arm_services, RUNBOOK)
    plugin = fast()

    outcome = await plugin.deploy(ctx)
    await plugin.verify(ctx)

    [job] = arm_sim.jobs(ACCOUNT_ID)
    # Only declared parameters are sent (no RotationId/ExpiresAt here); values arrive decoded.
    assert job.parameters == {"ClientSecret": NEW_SECRET, "AppId": str(ctx.app.app_id), "KeyId": ctx.key_id}
    assert job.raw_parameters["ClientSecret"] == json.dumps(NEW_SECRET)
    assert job.status() == "Completed"
    assert outcome.details["jobName"] == job.name and outcome.details["runbook"] == "Update-Secret"
    assert_secret_absent(NEW_SECRET, outcome, logs=app_logs(caplog))


async def test_a_retried_deploy_follows_the_job_it_already_started(arm_sim: Any, arm_services: Any) -> None:
    seed_runbook(arm_sim)
    ctx = plugin_context(arm_services, RUNBOOK)

    await fast().deploy(ctx)
    await fast().deploy(ctx)

    assert len(arm_sim.jobs(ACCOUNT_ID)) == 1
    assert len(arm_sim.requests(method="PUT", path="/jobs/")) == 1


async def test_a_failed_job_fails_the_integration_with_its_exception(
    arm_sim: Any, arm_services: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seed_runbook(arm_sim)
    arm_sim.set_switches(job_outcome="Failed")

    with pytest.raises(RotationError) as caught:
        await fast().deploy(plugin_context(arm_services, RUNBOOK))

    assert caught.value.code == "JobFailed"
    assert "Simulated runbook failure" in caught.value.message
    assert_secret_absent(NEW_SECRET, caught.value, logs=app_logs(caplog))


async def test_a_job_that_runs_too_long_is_retried_later(arm_sim: Any, arm_services: Any) -> None:
    seed_runbook(arm_sim)
    arm_sim.set_switches(job_seconds=30)
    ctx = plugin_context(arm_services, RUNBOOK)

    with pytest.raises(TransientServiceError) as caught:
        await AutomationPlugin(poll_interval=0.05, job_timeout=0.2).deploy(ctx)
    assert caught.value.code == "JobStillRunning"
    assert len(arm_sim.jobs(ACCOUNT_ID)) == 1


async def test_runbook_without_the_secret_parameter_is_refused_before_any_job(
    arm_sim: Any, arm_services: Any
) -> None:
    seed_runbook(arm_sim, {"Password": STRING})
    with pytest.raises(RotationError) as caught:
        await fast().deploy(plugin_context(arm_services, RUNBOOK))
    assert caught.value.code == "RunbookParameterMissing"
    assert arm_sim.jobs(ACCOUNT_ID) == []


async def test_mandatory_parameters_the_rotator_cannot_fill_are_refused(
    arm_sim: Any, arm_services: Any
) -> None:
    seed_runbook(
        arm_sim, {"clientsecret": STRING, "TargetVault": {"type": "System.String", "isMandatory": True}}
    )
    with pytest.raises(RotationError) as caught:
        await fast().deploy(plugin_context(arm_services, RUNBOOK))
    assert caught.value.code == "RunbookParameterUnfillable"
    assert "TargetVault" in caught.value.message


async def test_unpublished_runbook_is_refused(arm_sim: Any, arm_services: Any) -> None:
    seed_runbook(arm_sim, state="New")
    with pytest.raises(RotationError) as caught:
        await fast().deploy(plugin_context(arm_services, RUNBOOK))
    assert caught.value.code == "RunbookNotPublished"


async def test_forbidden_names_the_automation_roles(arm_sim: Any, arm_services: Any) -> None:
    seed_runbook(arm_sim)
    arm_sim.set_switches(deny_access="/jobs/")

    with pytest.raises(RotationError) as caught:
        await fast().deploy(plugin_context(arm_services, RUNBOOK))
    message = caught.value.message
    assert "'Automation Operator' role" in message and "Automation Job Operator" in message
    assert ACCOUNT_ID in message


async def test_throttled_job_creation_honours_retry_after(arm_sim: Any, arm_services: Any) -> None:
    seed_runbook(arm_sim)
    arm_sim.throttle_next(1, retry_after=4, method="PUT")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    ctx = plugin_context(arm_services, RUNBOOK)
    plugin = fast()
    await retry(lambda: plugin.deploy(ctx), policy=RetryPolicy(), describe="deploy", sleep=sleep)
    assert waits == [4]
    assert len(arm_sim.jobs(ACCOUNT_ID)) == 1


# --------------------------------------------------------------------------- webhooks


async def test_webhook_gets_a_signed_payload(
    stack: Any, webhook_sim: Any, arm_services: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hook = seed_hook(stack, webhook_sim)
    ctx = plugin_context(arm_services, WEBHOOK)
    plugin = fast()

    outcome = await plugin.deploy(ctx)
    await plugin.verify(ctx)

    [delivery] = webhook_sim.deliveries(hook)
    assert delivery.accepted and delivery.signature_valid and delivery.timestamp_valid
    assert delivery.payload == {
        "deliveryId": delivery.payload["deliveryId"],
        "appId": str(ctx.app.app_id),
        "keyId": ctx.key_id,
        "rotationId": ctx.rotation_id,
        "expiresAt": ctx.expires_at.isoformat(),
        "secret": NEW_SECRET,
    }
    # A receiver verifies it with the Standard Webhooks library, as docs/operations.md shows.
    from standardwebhooks.webhooks import Webhook

    assert Webhook(hook.url.encode()).verify(delivery.body, delivery.headers) == delivery.payload
    # And by the specification's formula, recomputed independently of any library.
    message = (
        f"{delivery.headers['webhook-id']}.{delivery.headers['webhook-timestamp']}.".encode() + delivery.body
    )
    expected = base64.b64encode(hmac.new(hook.url.encode(), message, hashlib.sha256).digest()).decode()
    assert delivery.headers["webhook-signature"] == f"v1,{expected}"
    assert delivery.headers["webhook-id"].startswith("msg_")
    assert outcome.details["webhookHost"] == hook.url.split("/")[2]
    # The URL is a secret too: neither it nor the value is in the outcome or the logs.
    assert_secret_absent(NEW_SECRET, outcome, logs=app_logs(caplog))
    assert_secret_absent(hook.token, outcome, logs=app_logs(caplog))


async def test_webhook_with_a_separate_signing_key(stack: Any, webhook_sim: Any, arm_services: Any) -> None:
    hook = seed_hook(stack, webhook_sim, signing_key="a-separate-signing-key")
    await fast().deploy(plugin_context(arm_services, WEBHOOK))
    [delivery] = webhook_sim.deliveries(hook)
    assert delivery.signature_valid and delivery.payload["secret"] == NEW_SECRET


async def test_webhook_with_a_standard_whsec_signing_key(
    stack: Any, webhook_sim: Any, arm_services: Any
) -> None:
    from standardwebhooks.webhooks import Webhook

    key = "whsec_" + base64.b64encode(b"thirty-two bytes of signing key!").decode()
    hook = seed_hook(stack, webhook_sim, signing_key=key)
    ctx = plugin_context(arm_services, WEBHOOK)
    await fast().deploy(ctx)
    await fast().deploy(ctx)  # a retry: a new signature, the same webhook-id
    first, second = webhook_sim.deliveries(hook)
    assert first.signature_valid and second.signature_valid
    assert Webhook(key).verify(first.body, first.headers)["secret"] == NEW_SECRET
    assert first.headers["webhook-id"] == second.headers["webhook-id"]


async def test_webhook_redirects_are_not_followed(stack: Any, webhook_sim: Any, arm_services: Any) -> None:
    hook = seed_hook(stack, webhook_sim)
    elsewhere = webhook_sim.add_hook()
    webhook_sim.set_switches(redirect_to=elsewhere.url)

    with pytest.raises(RotationError) as caught:
        await fast().deploy(plugin_context(arm_services, WEBHOOK))

    assert caught.value.code == "WebhookRedirect"
    assert len(webhook_sim.deliveries(hook)) == 1 and webhook_sim.deliveries(elsewhere) == []
    assert hook.token not in str(caught.value) and elsewhere.token not in str(caught.value)


async def test_webhook_refusal_is_permanent_and_errors_are_retryable(
    stack: Any, webhook_sim: Any, arm_services: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hook = seed_hook(stack, webhook_sim)
    ctx = plugin_context(arm_services, WEBHOOK)
    plugin = fast()

    webhook_sim.set_switches(answer_status=410)
    with pytest.raises(RotationError) as refused:
        await plugin.deploy(ctx)
    assert refused.value.code == "WebhookHttp410"

    webhook_sim.set_switches(answer_status=200)
    webhook_sim.fail_next(1, 503)
    with pytest.raises(TransientServiceError):
        await plugin.deploy(ctx)
    webhook_sim.throttle_next(1, retry_after=9)
    with pytest.raises(ThrottledError) as throttled:
        await plugin.deploy(ctx)
    assert throttled.value.retry_after == 9

    await plugin.deploy(ctx)  # a retry re-signs with a new timestamp: not a replay
    assert [d.status for d in webhook_sim.deliveries(hook)] == [410, 200]
    for error in (refused.value, throttled.value):
        assert_secret_absent(NEW_SECRET, error)
        assert_secret_absent(hook.token, error)
    assert hook.token not in app_logs(caplog) and NEW_SECRET not in app_logs(caplog)


async def test_missing_or_unsafe_webhook_url_is_refused(
    stack: Any, webhook_sim: Any, arm_services: Any
) -> None:
    with pytest.raises(RotationError) as missing:
        await fast().deploy(plugin_context(arm_services, WEBHOOK))
    assert missing.value.code == "WebhookSecretMissing"

    stack.keyvaults["rotator"].set_secret(WEBHOOK_SECRET, "http://example.test/hook?code=abc")
    with pytest.raises(RotationError) as insecure:
        await fast().deploy(plugin_context(arm_services, WEBHOOK))
    assert insecure.value.code == "WebhookUrlInvalid"
    assert "code=abc" not in str(insecure.value)


def test_check_requires_the_webhook_secret_name(arm_services: Any) -> None:
    ctx = plugin_context(arm_services, {"kind": "automation", "target": "webhook"})
    [problem] = AutomationPlugin().check(ctx.settings, ctx.app)
    assert problem.field == "webhookSecretName"
    assert AutomationPlugin().check(plugin_context(arm_services, WEBHOOK).settings, ctx.app) == []


# --------------------------------------------------------------------------- end to end


async def test_rotation_runs_the_runbook_and_calls_the_webhook(
    arm_rotator: Rotator, arm_sim: Any, webhook_sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    entra_app = arm_rotator.seed_entra_app()
    seed_runbook(arm_sim)
    hook = seed_hook(arm_rotator.stack, webhook_sim)
    install_plugins(arm_rotator.services, fast())
    await register_with_integrations(arm_rotator, entra_app, [RUNBOOK, WEBHOOK])

    assert await arm_rotator.services.engine.handle(arm_rotator.job(entra_app.app_id)) == "rotated"

    staged = current_staged(arm_rotator, entra_app.app_id)
    [job] = arm_sim.jobs(ACCOUNT_ID)
    assert job.parameters == {
        "ClientSecret": staged.value,
        "AppId": entra_app.app_id,
        "KeyId": staged.tags["keyId"],
    }
    [delivery] = webhook_sim.deliveries(hook)
    assert delivery.signature_valid and delivery.payload["secret"] == staged.value
    assert delivery.payload["keyId"] == staged.tags["keyId"]
    status = await arm_rotator.status(entra_app.app_id)
    assert status.integrations["automation-1"].result == "succeeded"
    assert status.integrations["automation-2"].result == "succeeded"
    assert staged.value not in app_logs(caplog) and hook.token not in app_logs(caplog)
    page = await arm_rotator.services.rotation_log.list_page(entra_app.app_id, 100, None)
    assert all(
        staged.value not in e.model_dump_json() and hook.token not in e.model_dump_json() for e in page.items
    )


async def test_a_webhook_url_with_a_password_and_a_token_never_shows_them(
    stack: Any, webhook_sim: Any, arm_services: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10: userinfo, query and path tokens of a webhook URL stay out of every message."""
    from urllib.parse import urlsplit

    caplog.set_level(logging.DEBUG)
    hook = webhook_sim.add_hook(signing_key="a-signing-key")
    parts = urlsplit(hook.url)
    url = f"https://ops:PLANTED-PASSWORD-1@{parts.netloc}{parts.path}?code=PLANTED-QUERY-1"
    stack.keyvaults["rotator"].set_secret(
        WEBHOOK_SECRET, json.dumps({"url": url, "signingKey": "a-signing-key"})
    )
    ctx = plugin_context(arm_services, WEBHOOK)
    webhook_sim.set_switches(answer_status=410)
    with pytest.raises(RotationError) as refused:
        await fast().deploy(ctx)
    webhook_sim.set_switches(answer_status=200)
    outcome = await fast().deploy(ctx)
    texts = [
        str(refused.value),
        refused.value.message,
        outcome.summary,
        json.dumps(outcome.details),
        app_logs(caplog),
    ]
    for planted in ("PLANTED-PASSWORD-1", "PLANTED-QUERY-1", hook.token, "ops:"):
        for text in texts:
            assert planted not in text
    assert parts.hostname in outcome.summary
