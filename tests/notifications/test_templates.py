"""Email content: both bodies say the same thing, HTML escapes everything, subjects never hold a secret."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.domain.models import ApplicationConfig, ErrorInfo, IntegrationStatus, RotationResult
from shared.domain.secret import SecretValue
from shared.notifications import templates

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def app(display_name: str = "Payroll API", **extra: object) -> ApplicationConfig:
    return ApplicationConfig.model_validate(
        {
            "appId": "11111111-1111-1111-1111-111111111111",
            "objectId": "22222222-2222-2222-2222-222222222222",
            "displayName": display_name,
            "integrations": [
                {"kind": "keyVault", "name": "kv", "vaultUrl": "https://kv.vault.azure.net"},
                {
                    "kind": "azureDevOps",
                    "name": "devops",
                    "organization": "contoso",
                    "project": "payroll",
                    "serviceConnectionId": "33333333-3333-3333-3333-333333333333",
                },
            ],
            **extra,
        },
        strict=False,
    )


def failed(message: str, code: str = "Forbidden") -> IntegrationStatus:
    return IntegrationStatus(
        result="failed", at=NOW, error=ErrorInfo(code=code, message=message, step="deploy", at=NOW)
    )


def test_html_escapes_every_value_and_text_keeps_it_readable() -> None:
    hostile = '<script>alert("x")</script> & Co'
    content = templates.rotation_email(
        app(hostile),
        rotation_id="r<1>",
        rotated_at=NOW,
        expires_at=NOW + timedelta(days=21),
        key_id="k",
        hint="a<b",
        integrations={"kv": failed("<img src=x onerror=alert(1)>")},
        warnings=["policy <capped>"],
    )
    assert "<script>" not in content.html and "<img" not in content.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in content.html
    assert "&lt;img src=x onerror=alert(1)&gt;" in content.html
    assert "policy &lt;capped&gt;" in content.html
    assert hostile in content.text and "<img src=x onerror=alert(1)>" in content.text
    assert "\n" not in content.subject


def test_secret_is_escaped_in_html_and_announced_first() -> None:
    secret = SecretValue('abc8Q~<tag>&"quoted"')
    content = templates.rotation_email(
        app(),
        rotation_id="r",
        rotated_at=NOW,
        expires_at=None,
        key_id=None,
        hint=None,
        integrations={},
        secret=secret,
    )
    assert content.contains_secret
    assert content.text.startswith("WARNING: This email contains the new client secret")
    assert "abc8Q~&lt;tag&gt;&amp;&quot;quoted&quot;" in content.html
    assert secret.reveal() not in content.html and secret.reveal() in content.text
    assert secret.reveal() not in content.subject
    body = content.html.split("<body", 1)[1]
    assert body.index("WARNING") < body.index("<h2>")


def test_without_a_secret_nothing_warns_and_nothing_is_revealed() -> None:
    content = templates.rotation_email(
        app(), rotation_id="r", rotated_at=NOW, expires_at=None, key_id="k", hint="abc", integrations={}
    )
    assert not content.contains_secret and "WARNING" not in content.text
    assert "No integrations are configured" in content.text


def test_integration_alert_lists_each_failed_kinds_steps_only() -> None:
    content = templates.integrations_failed_email(
        app(),
        rotation_id="r",
        rotated_at=NOW,
        expires_at=NOW + timedelta(days=21),
        key_id="k",
        integrations={
            "kv": IntegrationStatus(result="succeeded", at=NOW),
            "devops": failed("Service connection not found", "NotFound"),
        },
    )
    assert "1 integration of Payroll API" in content.subject
    assert "devops (azureDevOps)" in content.text
    assert "check that the service connection still exists and that the PAT is valid" in content.text
    assert "Key Vault:" not in content.text  # kv succeeded


def test_every_integration_kind_has_troubleshooting_steps() -> None:
    from shared.domain.models import INTEGRATION_KINDS

    for kind in INTEGRATION_KINDS:
        steps = templates.integration_steps(kind, "app")
        assert len(steps) >= 3, kind
        assert steps[0].startswith("Check the application log") and steps[-1].startswith(
            "Try a manual rotation"
        )


def test_rotation_failure_advice_follows_the_error_code() -> None:
    error = ErrorInfo(
        code="CredentialInvalidLifetimeAsPerAppPolicy", message="lifetime refused", step="create", at=NOW
    )
    content = templates.rotation_failed_email(
        app(), rotation_id="r", error=error, failed_at=NOW, current_expires_at=NOW + timedelta(days=2)
    )
    assert "lower secretLifetimeDays" in content.text
    assert "Current secret expires: 2025-03-03 12:00 UTC (in 2 days)" in content.text.replace("  ", " ")


def test_threshold_email_names_next_rotation_and_integrations() -> None:
    content = templates.threshold_email(
        app(notifications={"recipients": ["a@b.io"], "thresholdAlertDays": 7}),
        now=NOW,
        next_rotation_at=NOW + timedelta(days=7),
        expires_at=NOW + timedelta(days=7, hours=1),
        alert_days=7,
        last_result=RotationResult.SUCCEEDED,
    )
    assert content.subject == "[Secret rotation] Payroll API: secret rotation in 7 days"
    late = templates.threshold_email(
        app(notifications={"recipients": ["a@b.io"], "thresholdAlertDays": 7}),
        now=NOW,
        next_rotation_at=NOW + timedelta(days=2, hours=3),
        expires_at=NOW + timedelta(days=2, hours=4),
        alert_days=7,
        last_result=RotationResult.SUCCEEDED,
    )
    assert late.subject.endswith("secret rotation in 2 days") and "(in 2 days)" in late.text
    assert "kv (keyVault)" in content.text and "devops (azureDevOps)" in content.text
    assert "2025-03-08 12:00 UTC (in 7 days)" in content.text
