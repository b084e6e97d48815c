from datetime import UTC, datetime, timedelta

from shared.domain.models import ApplicationConfig, ApplicationStatus, RotationClaim
from shared.domain.schedule import EPOCH, Attention, SchedulePolicy, attention_at, attention_needed, is_due

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
POLICY = SchedulePolicy(claim_timeout=timedelta(minutes=30), requeue_after=timedelta(minutes=30))


def config(**rotation: object) -> ApplicationConfig:
    return ApplicationConfig.model_validate(
        {
            "appId": "11111111-1111-1111-1111-111111111111",
            "objectId": "22222222-2222-2222-2222-222222222222",
            "displayName": "App",
            "rotation": {"enabled": True, "secretLifetimeDays": 21, "updateThresholdHours": 2, **rotation},
        },
        strict=False,
    )


def test_never_rotated_is_due_at_once() -> None:
    assert is_due(config(), ApplicationStatus(), NOW)
    assert attention_at(config(), ApplicationStatus(), POLICY) == EPOCH


def test_due_exactly_threshold_before_expiry() -> None:
    status = ApplicationStatus(expires_at=NOW + timedelta(hours=2))
    assert is_due(config(), status, NOW)
    assert not is_due(config(), status, NOW - timedelta(seconds=1))
    assert attention_at(config(), status, POLICY) == NOW


def test_disabled_or_inactive_never_due() -> None:
    assert not is_due(config(enabled=False), ApplicationStatus(), NOW)
    assert attention_at(config(enabled=False), ApplicationStatus(), POLICY) is None


def test_running_claim_is_looked_at_when_it_goes_stale() -> None:
    claim = RotationClaim(rotation_id="r", owner="w1", claimed_at=NOW, expires_at=NOW + timedelta(minutes=30))
    status = ApplicationStatus(in_progress=claim)
    assert attention_at(config(), status, POLICY) == claim.expires_at
    assert attention_needed(config(), status, POLICY, NOW) == Attention.NOTHING
    assert attention_needed(config(), status, POLICY, claim.expires_at) == Attention.TAKE_OVER


def test_enqueued_job_is_requeued_only_after_the_lease() -> None:
    status = ApplicationStatus(enqueued_at=NOW)
    assert attention_needed(config(), status, POLICY, NOW + timedelta(minutes=29)) == Attention.NOTHING
    assert attention_needed(config(), status, POLICY, NOW + timedelta(minutes=30)) == Attention.REQUEUE


def test_failed_integrations_are_retried_at_retry_time() -> None:
    status = ApplicationStatus(expires_at=NOW + timedelta(days=20), retry_at=NOW + timedelta(minutes=15))
    assert attention_at(config(), status, POLICY) == NOW + timedelta(minutes=15)
    assert (
        attention_needed(config(), status, POLICY, NOW + timedelta(minutes=15))
        == Attention.RETRY_INTEGRATIONS
    )


def test_threshold_alert_comes_days_before_the_update_once_per_key() -> None:
    app = ApplicationConfig.model_validate(
        {
            **config().model_dump(by_alias=True, mode="json"),
            "notifications": {"recipients": ["ops@contoso.com"], "thresholdAlertDays": 3},
        },
        strict=False,
    )
    status = ApplicationStatus(current_key_id="k1", expires_at=NOW + timedelta(days=10, hours=2))
    alert = NOW + timedelta(days=7)
    assert attention_at(app, status, POLICY) == alert
    assert attention_needed(app, status, POLICY, alert) == Attention.ALERT
    sent = status.model_copy(update={"threshold_alert_sent_for": "k1"})
    assert attention_at(app, sent, POLICY) == NOW + timedelta(days=10)


def test_the_superseded_credential_is_retired_when_it_expires() -> None:
    status = ApplicationStatus(expires_at=NOW + timedelta(days=20), retire_at=NOW + timedelta(hours=1))
    assert attention_at(config(), status, POLICY) == NOW + timedelta(hours=1)
    assert attention_needed(config(), status, POLICY, NOW) == Attention.NOTHING
    assert attention_needed(config(), status, POLICY, NOW + timedelta(hours=1)) == Attention.RETIRE


def test_renewing_a_claim_does_not_move_its_attention_time() -> None:
    """Issue 11: every step renews the claim; the attention time (the index row's key) stays put,
    so a step writes only the application row, not an index move as well."""
    claim = RotationClaim(rotation_id="r", owner="w1", claimed_at=NOW, expires_at=NOW + timedelta(minutes=30))
    first = attention_at(config(), ApplicationStatus(in_progress=claim), POLICY)
    renewed = claim.model_copy(update={"expires_at": NOW + timedelta(minutes=50)})
    assert attention_at(config(), ApplicationStatus(in_progress=renewed), POLICY) == first
    # A scan at that moment finds the renewed claim alive: nothing to do, no takeover.
    assert (
        attention_needed(config(), ApplicationStatus(in_progress=renewed), POLICY, first) == Attention.NOTHING
    )
    # Released early (a finished or given-up claim expires now): looked at then.
    released = claim.model_copy(update={"expires_at": NOW + timedelta(minutes=1)})
    assert attention_at(config(), ApplicationStatus(in_progress=released), POLICY) == NOW + timedelta(
        minutes=1
    )
