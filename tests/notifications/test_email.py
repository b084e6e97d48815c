"""Notification emails end to end: the engine and the timer, a real ACS ``EmailClient`` (aio, managed
identity token) over TLS to the ACS Email simulator, Azurite for state."""

from __future__ import annotations

import html
import logging
import uuid
from datetime import timedelta
from typing import Any

import pytest

from shared.domain.models import JobReason, RotationResult
from shared.domain.secret import SecretValue
from shared.errors import ValidationError
from shared.notifications.email import EmailSendError, OutgoingEmail, operation_id
from shared.notifications.templates import EmailContent
from shared.rotation.engine import RotationSummary
from tests.notifications.conftest import RECIPIENTS, SENDER, EmailRotator, build_notifier, days


def keyvault_integration(rotator: EmailRotator, name: str = "payroll-kv") -> dict[str, Any]:
    return {"kind": "keyVault", "name": name, "vaultUrl": rotator.stack.keyvaults["destination"].url}


async def test_rotation_sends_one_notice_with_what_when_expiry_and_each_integration(
    email_rotator: EmailRotator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    entra_app = email_rotator.seed_entra_app()
    config = await email_rotator.register_app(entra_app, integrations=[keyvault_integration(email_rotator)])
    job = email_rotator.job(entra_app.app_id)

    assert await email_rotator.services.engine.handle(job) == "rotated"

    [email] = email_rotator.acs.outbox()
    status = await email_rotator.status(entra_app.app_id)
    [new] = email_rotator.managed(entra_app)
    assert email.sender == SENDER and email.to == RECIPIENTS
    assert email.status == "Succeeded" and email.sends == 1
    assert email.tracking_disabled is True
    assert email.subject == "[Secret rotation] Payroll API: new client secret"
    text, body = email.plain_text, email.html
    assert text is not None and body is not None
    for expected in (
        "Client secret rotated: Payroll API",
        entra_app.app_id,
        "Key ID",
        new.key_id,
        f"{new.hint}...",
        job.rotation_id,
        "payroll-kv (keyVault): delivered and verified",
    ):
        assert expected in text and html.escape(expected) in body
    assert status.expires_at is not None
    assert status.expires_at.strftime("%Y-%m-%d %H:%M UTC") in text
    assert "(in 20 days)" in text or "(in 21 days)" in text
    # Never the secret, unless asked for: not in the email, not in any log record.
    secret = email_rotator.staged_secret(entra_app.app_id)
    assert secret == new.secret_text
    assert secret not in text and secret not in body and secret not in email.subject
    assert secret not in caplog.text
    assert "WARNING" not in text
    assert "notification.sent" in await email_rotator.log_events(entra_app.app_id)
    assert config.notifications.notify_on_rotation


async def test_the_secret_is_sent_only_when_acknowledged_and_the_email_says_so_at_the_top(
    email_rotator: EmailRotator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    entra_app = email_rotator.seed_entra_app()
    await email_rotator.register_app(
        entra_app, notifications={"includeSecretInEmail": True, "acknowledgeSecretInEmailRisk": True}
    )
    assert await email_rotator.services.engine.handle(email_rotator.job(entra_app.app_id)) == "rotated"

    [email] = email_rotator.acs.outbox()
    secret = email_rotator.staged_secret(entra_app.app_id)
    assert email.plain_text is not None and email.html is not None
    assert email.plain_text.startswith("WARNING: This email contains the new client secret of Payroll API.")
    first_paragraph = email.html.split("<body", 1)[1].split("</p>", 1)[0]
    assert "WARNING:" in first_paragraph and "contains the new client secret" in first_paragraph
    assert secret in email.plain_text and html.escape(secret) in email.html
    assert secret not in email.subject and email.subject.endswith("(contains the secret)")
    # The value left only in the email body: no log record carries it.
    assert secret not in caplog.text
    page = await email_rotator.services.rotation_log.list_page(entra_app.app_id, 50, None)
    assert all(secret not in entry.model_dump_json() for entry in page.items)
    sent = next(e for e in page.items if e.event == "notification.sent")
    assert sent.message.endswith("with the secret")


def test_the_api_refuses_include_secret_without_the_acknowledgement() -> None:
    from shared.api.http import parse_model
    from shared.domain.models import NotificationSettings

    with pytest.raises(ValidationError) as refused:
        parse_model(NotificationSettings, {"recipients": RECIPIENTS, "includeSecretInEmail": True})
    fields = {problem.field for problem in refused.value.problems}
    assert "acknowledgeSecretInEmailRisk" in fields


async def test_a_summary_carrying_a_secret_is_not_mailed_without_the_setting(
    email_rotator: EmailRotator,
) -> None:
    """Defence in depth: the notifier checks the settings too, not only the engine."""
    entra_app = email_rotator.seed_entra_app()
    config = await email_rotator.register_app(entra_app)
    planted = "planted-secret-Value-0123456789~abcdefghij"
    summary = RotationSummary(app_id=entra_app.app_id, rotation_id="r-1", secret=SecretValue(planted))
    await email_rotator.notifier.rotation_succeeded(config, summary)
    [email] = email_rotator.acs.outbox()
    assert planted not in (email.plain_text or "") and planted not in (email.html or "")


async def test_failed_rotation_sends_a_failure_alert_with_what_to_check(email_rotator: EmailRotator) -> None:
    entra_app = email_rotator.seed_entra_app()
    await email_rotator.register_app(entra_app)
    email_rotator.stack.entra.remove_application(entra_app.object_id)  # gone from Entra ID

    assert await email_rotator.services.engine.handle(email_rotator.job(entra_app.app_id)) == "failed"

    [email] = email_rotator.acs.outbox()  # the failure alert only, no rotation notice
    assert email.subject == "[Secret rotation] ACTION NEEDED: rotation of Payroll API failed"
    text = email.plain_text or ""
    assert "Secret rotation failed: Payroll API" in text
    assert "(NotFound)" in text
    assert "no longer exists in Entra ID" in text
    assert "What to check" in text
    # The documentation's troubleshooting steps.
    assert "Check that the application state is Active." in text
    assert "Check the application log for the specific error details" in text
    assert "Try a manual rotation to isolate the issue" in text
    assert "What to check" in (email.html or "")


async def test_a_failure_that_repeats_alerts_once_then_on_change_or_daily(
    email_rotator: EmailRotator,
) -> None:
    """Issue 10: not an alert every 15 minutes for the same failure."""
    entra_app = email_rotator.seed_entra_app()
    await email_rotator.register_app(entra_app)
    email_rotator.stack.entra.remove_application(entra_app.object_id)
    engine = email_rotator.services.engine
    for minutes in (0, 15, 30, 45):
        email_rotator.clock.advance(timedelta(minutes=minutes and 15))
        assert await engine.handle(email_rotator.job(entra_app.app_id)) == "failed"
    assert len(email_rotator.acs.outbox()) == 1
    assert "notification.suppressed" in await email_rotator.log_events(entra_app.app_id)
    email_rotator.clock.advance(timedelta(days=1))
    assert await engine.handle(email_rotator.job(entra_app.app_id)) == "failed"
    assert len(email_rotator.acs.outbox()) == 2  # a day later, the same failure is alerted again
    # Another reason is alerted at once.
    other = email_rotator.seed_entra_app()
    stored = await email_rotator.services.applications.get(entra_app.app_id)
    moved = stored.config.model_copy(update={"object_id": uuid.UUID(other.object_id)})
    await email_rotator.services.applications.save(stored, moved, stored.status, email_rotator.clock())
    assert await engine.handle(email_rotator.job(entra_app.app_id)) == "failed"  # ApplicationIdMismatch
    assert len(email_rotator.acs.outbox()) == 3


async def test_failure_alerts_can_be_switched_off(email_rotator: EmailRotator) -> None:
    entra_app = email_rotator.seed_entra_app()
    await email_rotator.register_app(entra_app, notifications={"notifyOnFailure": False})
    email_rotator.stack.entra.remove_application(entra_app.object_id)
    assert await email_rotator.services.engine.handle(email_rotator.job(entra_app.app_id)) == "failed"
    assert email_rotator.acs.outbox() == []


async def test_an_integration_failure_sends_the_notice_and_an_alert_with_that_kinds_steps(
    email_rotator: EmailRotator,
) -> None:
    email_rotator.stack.keyvaults["destination"].deny_access = True
    entra_app = email_rotator.seed_entra_app()
    await email_rotator.register_app(entra_app, integrations=[keyvault_integration(email_rotator)])

    assert await email_rotator.services.engine.handle(email_rotator.job(entra_app.app_id)) == "rotated"
    status = await email_rotator.status(entra_app.app_id)
    assert status.last_result == RotationResult.DEGRADED

    notice, alert = email_rotator.acs.outbox()
    assert notice.subject == "[Secret rotation] Payroll API: new client secret, 1 integration failed"
    assert "payroll-kv (keyVault): FAILED" in (notice.plain_text or "")
    assert alert.subject == (
        "[Secret rotation] ACTION NEEDED: 1 integration of Payroll API did not receive the new secret"
    )
    text = alert.plain_text or ""
    assert "payroll-kv (keyVault)" in text
    assert "Key Vault: verify access policies or RBAC permissions" in text  # the documented step
    assert "Try a manual rotation to isolate the issue" in text
    assert "Azure DevOps" not in text  # only the failed kind's steps
    secret = email_rotator.staged_secret(entra_app.app_id)
    assert all(secret not in (m.plain_text or "") + (m.html or "") for m in (notice, alert))


async def test_threshold_alert_is_sent_once_per_secret_not_every_scan(email_rotator: EmailRotator) -> None:
    entra_app = email_rotator.seed_entra_app()
    await email_rotator.register_app(entra_app, notifications={"thresholdAlertDays": 7})
    services = email_rotator.services
    assert await services.engine.handle(email_rotator.job(entra_app.app_id)) == "rotated"
    email_rotator.acs.clear_outbox()
    status = await email_rotator.status(entra_app.app_id)

    await services.scanner.scan()  # not due yet
    assert email_rotator.acs.outbox() == []

    email_rotator.clock.advance(days(14))  # 21-day secret: rotation in 7 days less an hour
    report = await services.scanner.scan()
    assert report.alerts == 1
    [alert] = email_rotator.acs.outbox()
    # Subject and body agree on the time actually left (7 days less the 1-hour threshold).
    assert alert.subject == "[Secret rotation] Payroll API: secret rotation in 6 days"
    assert "(in 6 days)" in (alert.plain_text or "")
    assert alert.to == RECIPIENTS
    text = alert.plain_text or ""
    assert "Secret rotation approaching: Payroll API" in text
    assert "(in 6 days)" in text  # next rotation: expiry minus the 1-hour threshold
    assert status.expires_at is not None and status.expires_at.strftime("%Y-%m-%d %H:%M UTC") in text
    assert (await email_rotator.status(entra_app.app_id)).threshold_alert_sent_for == status.current_key_id

    for step in (timedelta(minutes=15), timedelta(days=1), timedelta(days=2)):
        email_rotator.clock.advance(step)
        assert (await services.scanner.scan()).alerts == 0
    assert len(email_rotator.acs.outbox()) == 1


async def test_a_failed_threshold_alert_is_tried_again_at_the_next_scan(email_rotator: EmailRotator) -> None:
    entra_app = email_rotator.seed_entra_app()
    await email_rotator.register_app(entra_app, notifications={"thresholdAlertDays": 3})
    services = email_rotator.services
    await services.engine.handle(email_rotator.job(entra_app.app_id))
    email_rotator.acs.clear_outbox()
    email_rotator.clock.advance(days(18))

    email_rotator.acs.fail_next(10, 503, method="POST")
    assert (await services.scanner.scan()).alerts == 0
    assert email_rotator.acs.outbox() == []
    assert "notification.failed" in await email_rotator.log_events(entra_app.app_id)
    assert (await email_rotator.status(entra_app.app_id)).threshold_alert_sent_for is None

    email_rotator.acs.clear_faults()
    email_rotator.clock.advance(timedelta(minutes=15))
    assert (await services.scanner.scan()).alerts == 1
    assert len(email_rotator.acs.outbox()) == 1


async def test_no_recipients_means_no_email_and_the_alert_counts_as_done(email_rotator: EmailRotator) -> None:
    entra_app = email_rotator.seed_entra_app()
    config = await email_rotator.register_app(entra_app, notifications={"recipients": []})
    await email_rotator.services.engine.handle(email_rotator.job(entra_app.app_id))
    stored = await email_rotator.services.applications.get(entra_app.app_id)
    assert await email_rotator.notifier.threshold_alert(stored, email_rotator.clock()) is True
    assert email_rotator.acs.outbox() == [] and config.notifications.recipients == []


async def test_email_failure_is_logged_and_never_blocks_the_rotation(
    email_rotator: EmailRotator, caplog: pytest.LogCaptureFixture
) -> None:
    email_rotator.acs.fail_next(20, 500, method="POST")
    entra_app = email_rotator.seed_entra_app()
    await email_rotator.register_app(entra_app)

    assert await email_rotator.services.engine.handle(email_rotator.job(entra_app.app_id)) == "rotated"

    status = await email_rotator.status(entra_app.app_id)
    assert status.last_result == RotationResult.SUCCEEDED and status.in_progress is None
    assert email_rotator.acs.outbox() == []
    assert "notification.failed" in await email_rotator.log_events(entra_app.app_id)
    # Retried a bounded number of times (3 attempts, as configured), then given up.
    assert len(email_rotator.acs.requests(method="POST", path="emails:send")) == 3
    assert "rotation email for" in caplog.text and "not sent" in caplog.text


async def test_throttled_send_is_retried_after_retry_after(email_rotator: EmailRotator) -> None:
    email_rotator.acs.throttle_next(1, retry_after=1, method="POST")
    entra_app = email_rotator.seed_entra_app()
    await email_rotator.register_app(entra_app)
    assert await email_rotator.services.engine.handle(email_rotator.job(entra_app.app_id)) == "rotated"
    statuses = [r.status for r in email_rotator.acs.requests(method="POST")]
    assert statuses == [429, 202]
    assert len(email_rotator.acs.outbox()) == 1


async def test_a_repeated_notification_is_deduplicated_by_its_operation_id(
    email_rotator: EmailRotator,
) -> None:
    """A rotation resumed after a crash notifies again: ACS sees the same Operation-Id, mails once."""
    entra_app = email_rotator.seed_entra_app()
    config = await email_rotator.register_app(entra_app)
    summary = RotationSummary(app_id=entra_app.app_id, rotation_id="rotation-1", key_id="k", hint="abc")
    await email_rotator.notifier.rotation_succeeded(config, summary)
    await email_rotator.notifier.rotation_succeeded(config, summary)
    [email] = email_rotator.acs.outbox()
    assert email.sends == 2
    assert email.operation_id == operation_id("rotation", entra_app.app_id, "rotation-1", "")


async def test_a_delivery_that_fails_at_acs_is_reported_not_retried(email_rotator: EmailRotator) -> None:
    notifier = build_notifier(email_rotator.services, email_rotator.acs)
    email_rotator.acs.fail_delivery_next()
    email = OutgoingEmail(
        sender=SENDER,
        to=("ops@contoso.com",),
        content=EmailContent("subject", "text", "<p>html</p>"),
        operation_id=operation_id("test"),
        kind="rotation",
    )
    with pytest.raises(EmailSendError) as failed:
        await notifier._transport.send(email)
    assert failed.value.code == "EmailDropped"
    assert len(email_rotator.acs.requests(method="POST")) == 1


async def test_scheduled_rotation_sends_the_notice_too(email_rotator: EmailRotator) -> None:
    entra_app = email_rotator.seed_entra_app()
    await email_rotator.register_app(entra_app)
    await email_rotator.services.engine.handle(email_rotator.job(entra_app.app_id))
    email_rotator.acs.clear_outbox()
    email_rotator.clock.advance(days(21))  # past the next update time
    assert (await email_rotator.services.scanner.scan()).enqueued
    [job] = await email_rotator.queued_jobs()
    assert job.reason == JobReason.SCHEDULED
    assert await email_rotator.services.engine.handle(job) == "rotated"
    assert len(email_rotator.emails("new client secret")) == 1


async def test_a_threshold_alert_acs_refuses_for_good_is_not_sent_every_scan(
    email_rotator: EmailRotator,
) -> None:
    entra_app = email_rotator.seed_entra_app()
    await email_rotator.register_app(entra_app, notifications={"thresholdAlertDays": 3})
    services = email_rotator.services
    await services.engine.handle(email_rotator.job(entra_app.app_id))
    email_rotator.clock.advance(days(18))

    email_rotator.acs.fail_delivery_next()  # accepted, then dropped
    assert (await services.scanner.scan()).alerts == 1  # marked: the same message would fail again
    page = await services.rotation_log.list_page(entra_app.app_id, 20, None)
    failed = next(e for e in page.items if e.event == "notification.failed")
    assert failed.code == "EmailDropped" and failed.message.endswith("not retried")
    email_rotator.clock.advance(timedelta(minutes=15))
    assert (await services.scanner.scan()).alerts == 0
    assert len(email_rotator.acs.requests(method="POST")) == 2  # the rotation notice and the alert


async def test_a_rotation_resumed_after_its_notice_does_not_email_twice(email_rotator: EmailRotator) -> None:
    """Issue 9, failure 9: the notice is recorded as sent before sending, so a resume never re-sends."""

    class WorkerKilled(BaseException):
        pass

    killed: list[str] = []

    def checkpoint(step: str) -> None:
        if step == "notified" and not killed:
            killed.append(step)
            raise WorkerKilled()

    services = email_rotator.services
    services.__dict__.pop("engine", None)
    services.checkpoint = checkpoint
    entra_app = email_rotator.seed_entra_app()
    await email_rotator.register_app(entra_app)
    job = email_rotator.job(entra_app.app_id)
    with pytest.raises(WorkerKilled):
        await services.engine.handle(job)
    assert len(email_rotator.acs.outbox()) == 1
    assert (await email_rotator.status(entra_app.app_id)).in_progress is not None

    email_rotator.clock.advance(timedelta(minutes=31))  # the dead worker's claim goes stale
    assert (await services.scanner.scan()).enqueued == {"takeOver": 1}
    [takeover] = await email_rotator.queued_jobs()
    assert await services.engine.handle(takeover) == "rotated"

    [email] = email_rotator.acs.outbox()
    assert email.sends == 1  # not sent again (not even deduplicated by ACS: never sent)
    status = await email_rotator.status(entra_app.app_id)
    assert status.in_progress is None and status.last_result == RotationResult.SUCCEEDED
