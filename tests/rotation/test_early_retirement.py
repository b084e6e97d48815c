"""Opt-in early retirement: the superseded credential goes before it expires only on evidence (Graph's
sign-in activity report, simulated) that nothing used it since every destination confirmed the new
secret; refused while it is still in use, while a destination has not confirmed, and without the
AuditLog.Read.All permission."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.domain.models import ApplicationConfig
from tests.rotation.conftest import Rotator

UNUSED_HOURS = 24


async def _register(
    rotator: Rotator, entra_app: Any, integrations: list[dict[str, Any]] | None = None
) -> None:
    config = ApplicationConfig.model_validate(
        {
            "appId": entra_app.app_id,
            "objectId": entra_app.object_id,
            "displayName": entra_app.display_name,
            "rotation": {
                "enabled": True,
                "secretLifetimeDays": 30,
                "retireUnusedPreviousAfterHours": UNUSED_HOURS,
            },
            "integrations": integrations or [],
        },
        strict=False,
    )
    await rotator.services.registry.put(config, if_match=None, create_only=False)


async def _rotate_twice(rotator: Rotator, entra_app: Any) -> tuple[Any, Any]:
    """Two manual rotations: the first credential is now the previous one."""
    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) in ("rotated", "degraded")
    [first] = rotator.managed(entra_app)
    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) in ("rotated", "degraded")
    [second] = [p for p in rotator.managed(entra_app) if p.key_id != first.key_id]
    status = await rotator.status(entra_app.app_id)
    assert status.previous_key_id == first.key_id and status.current_key_id == second.key_id
    return first, second


async def _retire_pass(rotator: Rotator) -> str:
    assert (await rotator.services.scanner.scan()).enqueued == {"retire": 1}
    [job] = await rotator.queued_jobs()
    return await rotator.services.engine.handle(job)


async def test_an_unused_previous_credential_is_retired_early_once_every_destination_confirmed(
    rotator: Rotator,
) -> None:
    entra_app = rotator.seed_entra_app(passwords=[])
    await _register(rotator, entra_app)
    first, second = await _rotate_twice(rotator, entra_app)
    status = await rotator.status(entra_app.app_id)
    # Looked at after the configured quiet time, long before the previous credential expires.
    assert status.retire_at is not None and status.retire_at < first.end - timedelta(days=20)

    rotator.clock.advance(timedelta(hours=UNUSED_HOURS - 1))
    assert (await rotator.services.scanner.scan()).enqueued == {}
    rotator.clock.advance(timedelta(hours=1, minutes=1))
    assert await _retire_pass(rotator) == "delivered"

    assert [p.key_id for p in rotator.managed(entra_app)] == [second.key_id]
    status = await rotator.status(entra_app.app_id)
    assert status.previous_key_id is None and status.retire_at is None
    events = await rotator.log_events(entra_app.app_id)
    assert "credential.unusedEvidence" in events and "credential.retired" in events


async def test_early_retirement_is_refused_while_the_previous_credential_still_signs_in(
    rotator: Rotator,
) -> None:
    entra_app = rotator.seed_entra_app(passwords=[])
    await _register(rotator, entra_app)
    first, second = await _rotate_twice(rotator, entra_app)

    rotator.clock.advance(timedelta(hours=12))
    used_at = rotator.clock()
    # A consumer nobody configured still signs in with the old secret, after the rotation.
    rotator.stack.entra.record_sign_in(entra_app.object_id, first.key_id, used_at)
    rotator.clock.advance(timedelta(hours=12, minutes=1))
    assert await _retire_pass(rotator) == "delivered"

    assert {p.key_id for p in rotator.managed(entra_app)} == {first.key_id, second.key_id}
    status = await rotator.status(entra_app.app_id)
    assert status.previous_key_id == first.key_id
    assert status.retire_at is not None
    assert abs((status.retire_at - (used_at + timedelta(hours=UNUSED_HOURS))).total_seconds()) < 2
    page = await rotator.services.rotation_log.list_page(entra_app.app_id, 50, None)
    [still] = [e for e in page.items if e.event == "credential.stillInUse"]
    assert still.key_id == first.key_id and still.level == "warning"

    # Quiet for the configured hours since that last use: now it goes.
    rotator.clock.advance(status.retire_at - rotator.clock() + timedelta(minutes=1))
    assert await _retire_pass(rotator) == "delivered"
    assert [p.key_id for p in rotator.managed(entra_app)] == [second.key_id]


async def test_without_audit_log_read_the_previous_credential_waits_for_its_expiry(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app(passwords=[])
    await _register(rotator, entra_app)
    first, _second = await _rotate_twice(rotator, entra_app)
    rotator.stack.entra.apply_switch("sign_in_activity_readable", False)

    rotator.clock.advance(timedelta(hours=UNUSED_HOURS, minutes=1))
    assert await _retire_pass(rotator) == "delivered"

    assert first.key_id in {p.key_id for p in rotator.managed(entra_app)}
    status = await rotator.status(entra_app.app_id)
    assert status.previous_key_id == first.key_id
    assert status.retire_at is not None and status.retire_at >= first.end
    page = await rotator.services.rotation_log.list_page(entra_app.app_id, 50, None)
    [unavailable] = [e for e in page.items if e.event == "credential.earlyRetirementUnavailable"]
    assert "AuditLog.Read.All" in unavailable.message


async def test_early_retirement_waits_for_every_destination_to_confirm_the_new_secret(
    rotator: Rotator,
) -> None:
    entra_app = rotator.seed_entra_app(passwords=[])
    vault = rotator.stack.keyvaults["destination"]
    await _register(
        rotator, entra_app, [{"kind": "keyVault", "vaultUrl": vault.url, "secretName": "payroll"}]
    )
    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
    [first] = rotator.managed(entra_app)
    vault.deny_access = True  # the second rotation cannot reach the vault, which keeps the old secret
    await rotator.services.engine.handle(rotator.job(entra_app.app_id))
    status = await rotator.status(entra_app.app_id)
    assert status.previous_key_id == first.key_id
    assert status.integrations["keyVault-1"].confirmed_key_id == first.key_id

    rotator.clock.advance(timedelta(hours=UNUSED_HOURS, minutes=1))
    assert (await rotator.services.scanner.scan()).enqueued
    for job in await rotator.queued_jobs():
        await rotator.services.engine.handle(job)

    assert first.key_id in {p.key_id for p in rotator.managed(entra_app)}  # the vault still holds it
    assert "credential.earlyRetirementWaiting" in await rotator.log_events(entra_app.app_id)
    assert (await rotator.status(entra_app.app_id)).retire_at is not None  # it looks again later
