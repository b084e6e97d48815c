"""Regression tests for the failures of issue 9, each over the real stack: msgraph-sdk, azure-identity
and azure-keyvault-secrets against the simulators, state in Azurite. The numbers are the issue's."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from shared.domain.models import TERMINAL_EVENTS, ApplicationConfig, JobReason, RotationJob, RotationResult
from tests.integrations.conftest import receive_job
from tests.rotation.conftest import UNMANAGED_SECRET, Rotator
from tests.rotation.test_engine import staged_versions, token_works

CAPPED = "AzureADandPersonalMicrosoftAccount"


async def register(
    rotator: Rotator, entra_app: Any, *, destination: bool = False, **rotation: Any
) -> ApplicationConfig:
    integrations = []
    if destination:
        integrations = [
            {
                "kind": "keyVault",
                "name": "kv",
                "vaultUrl": rotator.stack.keyvaults["destination"].url,
                "secretName": f"s-{entra_app.app_id}",
            }
        ]
    config = ApplicationConfig.model_validate(
        {
            "appId": entra_app.app_id,
            "objectId": entra_app.object_id,
            "displayName": entra_app.display_name,
            "rotation": {"enabled": True, "secretLifetimeDays": 21, "updateThresholdHours": 1, **rotation},
            "integrations": integrations,
        },
        strict=False,
    )
    await rotator.services.registry.put(config, if_match=None, create_only=False)
    return config


async def refresh(rotator: Rotator, app_id: str, **options: Any) -> RotationJob:
    """A manual refresh through the registry, as the API makes it; returns the job it queued."""
    outcome = await rotator.services.registry.request_refresh(
        app_id, compromised=options.pop("compromised", False), **options
    )
    jobs = await rotator.queued_jobs()
    job = next((j for j in jobs if j.rotation_id == outcome.rotation_id), None)
    assert job is not None, "a refresh that answers with a new rotation queues its job"
    return job


def destination_value(rotator: Rotator, app_id: str) -> str:
    return str(rotator.stack.keyvaults["destination"].versions(f"s-{app_id}")[-1].value)


async def events(rotator: Rotator, app_id: str) -> list[Any]:
    page = await rotator.services.rotation_log.list_page(app_id, 200, None)
    return list(reversed(page.items))


def graph_writes(rotator: Rotator) -> int:
    return len(
        [
            r
            for r in rotator.stack.entra.requests(method="POST")
            if r.path.endswith(("addPassword", "removePassword"))
        ]
    )


# 1 ---------------------------------------------------------------------------------------------------
async def test_1_a_refusal_after_delivery_never_removes_the_delivered_secret(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app, destination=True)
    assert await rotator.services.engine.handle(await refresh(rotator, entra_app.app_id)) == "rotated"
    [first] = rotator.managed(entra_app)

    job = await refresh(rotator, entra_app.app_id, compromised=True)
    rotator.stack.entra.fail_next(1, 403, method="POST", path=r"/removePassword$")
    assert await rotator.services.engine.handle(job) == "rotated"

    new = next(p for p in rotator.managed(entra_app) if p.key_id != first.key_id)
    assert destination_value(rotator, entra_app.app_id) == new.secret_text
    assert token_works(rotator, entra_app.app_id, new.secret_text)  # the delivered secret still works
    status = await rotator.status(entra_app.app_id)
    assert status.current_key_id == new.key_id and status.last_result == RotationResult.DEGRADED
    assert status.pending_revocation is not None and status.retry_at is not None
    log = await events(rotator, entra_app.app_id)
    assert "rotation.failed" not in [e.event for e in log]
    [completed] = [e for e in log if e.event == "rotation.completed" and e.rotation_id == job.rotation_id]
    assert completed.details["outcome"] == "degraded"

    # The timer retries the revocation; the new secret is never touched.
    rotator.clock.advance(timedelta(minutes=16))
    assert (await rotator.services.scanner.scan()).enqueued == {"retryIntegrations": 1}
    [retry] = await rotator.queued_jobs()
    assert await rotator.services.engine.handle(retry) == "delivered"
    assert [p.key_id for p in rotator.managed(entra_app)] == [new.key_id]
    status = await rotator.status(entra_app.app_id)
    assert status.pending_revocation is None and status.last_result == RotationResult.SUCCEEDED


# 2 ---------------------------------------------------------------------------------------------------
async def test_2_a_redelivered_older_job_never_rolls_the_application_back(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app, destination=True)
    job_a = await refresh(rotator, entra_app.app_id)
    assert await rotator.services.engine.handle(job_a) == "rotated"
    job_b = await refresh(rotator, entra_app.app_id, compromised=True)
    assert await rotator.services.engine.handle(job_b) == "rotated"
    status = await rotator.status(entra_app.app_id)
    [b] = rotator.managed(entra_app)  # compromised: A's credential was revoked
    writes, started = graph_writes(rotator), time.monotonic()

    assert await rotator.services.engine.handle(job_a) == "rotation already finished"
    # Even once A's id is no longer remembered, its generation is older than the application's.
    forgotten = job_a.model_copy(update={"rotation_id": "an-id-long-forgotten"})
    assert await rotator.services.engine.handle(forgotten) == "superseded"

    assert time.monotonic() - started < 5  # no verify timeout waited out
    assert graph_writes(rotator) == writes  # nothing touched Entra
    after = await rotator.status(entra_app.app_id)
    assert after.current_key_id == status.current_key_id == b.key_id
    assert destination_value(rotator, entra_app.app_id) == b.secret_text
    assert after.last_result == RotationResult.SUCCEEDED
    superseded = [e for e in await events(rotator, entra_app.app_id) if e.event == "rotation.superseded"]
    assert [e.rotation_id for e in superseded] == ["an-id-long-forgotten"]


# 3 ---------------------------------------------------------------------------------------------------
async def test_3_compromised_mode_waits_for_every_destination_before_revoking(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app()  # with a hand-made credential
    await register(rotator, entra_app, destination=True)
    assert await rotator.services.engine.handle(await refresh(rotator, entra_app.app_id)) == "rotated"
    [first] = rotator.managed(entra_app)

    destination = rotator.stack.keyvaults["destination"]
    destination.deny_access = True
    job = await refresh(rotator, entra_app.app_id, compromised=True)
    assert await rotator.services.engine.handle(job) == "rotated"
    # The destination still holds the first secret: it must keep working.
    assert destination_value(rotator, entra_app.app_id) == first.secret_text
    assert token_works(rotator, entra_app.app_id, first.secret_text)
    status = await rotator.status(entra_app.app_id)
    assert status.pending_revocation is not None and status.last_result == RotationResult.DEGRADED
    assert "credential.revocationDeferred" in [e.event for e in await events(rotator, entra_app.app_id)]

    destination.deny_access = False
    rotator.clock.advance(timedelta(minutes=16))
    await rotator.services.scanner.scan()
    [retry] = await rotator.queued_jobs()
    assert await rotator.services.engine.handle(retry) == "delivered"
    [current] = rotator.managed(entra_app)
    assert current.key_id == status.current_key_id
    assert destination_value(rotator, entra_app.app_id) == current.secret_text
    assert not token_works(rotator, entra_app.app_id, first.secret_text)  # revoked once delivered
    # Not created by the rotator and no opt-in: still valid, and listed.
    assert token_works(rotator, entra_app.app_id, UNMANAGED_SECRET)
    revoked = [e for e in await events(rotator, entra_app.app_id) if e.event == "credential.revokedAll"]
    assert revoked[-1].details["foreignStillValid"][0]["displayName"] == "hand-made"


# 4 ---------------------------------------------------------------------------------------------------
async def test_4_every_refresh_answer_is_followed_to_a_terminal_outcome(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app)
    outcomes = [
        await rotator.services.registry.request_refresh(entra_app.app_id, compromised=False) for _ in range(5)
    ]
    escalated = await rotator.services.registry.request_refresh(entra_app.app_id, compromised=True)
    ids = {o.rotation_id for o in [*outcomes, escalated]}
    assert len(ids) == 1 and escalated.joined and escalated.compromised
    [job] = await rotator.queued_jobs()
    assert await rotator.services.engine.handle(job) == "rotated"
    log = await events(rotator, entra_app.app_id)
    [completed] = [e for e in log if e.event == "rotation.completed"]
    assert completed.rotation_id in ids and completed.details["compromised"] is True
    # A refresh while a rotation runs joins it too (same id), it is not skipped silently.
    assert (await rotator.status(entra_app.app_id)).in_progress is None


# 5 ---------------------------------------------------------------------------------------------------
async def test_5_a_capped_app_full_of_the_rotators_own_credentials_still_rotates(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app(audience=CAPPED, passwords=[])
    await register(rotator, entra_app)
    for _ in range(2):
        assert await rotator.services.engine.handle(await refresh(rotator, entra_app.app_id)) == "rotated"
    assert len(rotator.passwords(entra_app)) == 2  # current + previous, both the rotator's
    assert await rotator.services.engine.handle(await refresh(rotator, entra_app.app_id)) == "rotated"
    assert (
        await rotator.services.engine.handle(await refresh(rotator, entra_app.app_id, compromised=True))
        == "rotated"
    )
    status = await rotator.status(entra_app.app_id)
    assert status.last_result == RotationResult.SUCCEEDED
    assert status.current_key_id in {p.key_id for p in rotator.passwords(entra_app)}


async def test_5_the_cap_error_names_the_real_remedy(rotator: Rotator) -> None:
    end = (rotator.clock() + timedelta(days=30)).isoformat()
    entra_app = rotator.seed_entra_app(
        audience=CAPPED,
        passwords=[
            {"displayName": "a", "secretText": UNMANAGED_SECRET, "endDateTime": end},
            {"displayName": "b", "secretText": UNMANAGED_SECRET + "-b", "endDateTime": end},
        ],
    )
    await register(rotator, entra_app)
    assert await rotator.services.engine.handle(await refresh(rotator, entra_app.app_id)) == "failed"
    error = (await rotator.status(entra_app.app_id)).last_error
    assert error is not None and error.code == "CredentialCapReached"
    assert "remove one by hand" in error.message and "retireUnmanagedCredentials" not in error.message


# 6 ---------------------------------------------------------------------------------------------------
async def test_6_a_staged_secret_that_cannot_be_read_back_fails_after_bounded_attempts(
    rotator: Rotator,
) -> None:
    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app)
    vault = rotator.stack.keyvaults["rotator"]
    vault.fail_next(10, 404, method="GET", path=r"/secrets/app-")
    started = time.monotonic()
    assert await rotator.services.engine.handle(await refresh(rotator, entra_app.app_id)) == "failed"
    assert time.monotonic() - started < 20
    adds = [r for r in rotator.stack.entra.requests(method="POST") if r.path.endswith("addPassword")]
    assert len(adds) == 3  # MAX_CREATE_ATTEMPTS, then a clear failure
    assert rotator.managed(entra_app) == []  # each was removed
    status = await rotator.status(entra_app.app_id)
    assert status.last_error is not None and status.last_error.code == "StagingFailed"
    assert status.in_progress is None and status.consecutive_failures == 1
    # The timer does not start it again at once: failed rotations back off.
    rotator.stack.keyvaults["rotator"].clear_faults()
    assert (await rotator.services.scanner.scan()).enqueued == {}
    rotator.clock.advance(timedelta(minutes=16))
    assert (await rotator.services.scanner.scan()).enqueued == {"rotate": 1}


async def test_6_staged_lookups_do_not_grow_with_past_rotations(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app)
    vault = rotator.stack.keyvaults["rotator"]
    counts = []
    for _ in range(6):
        before = len(vault.requests())
        assert await rotator.services.engine.handle(await refresh(rotator, entra_app.app_id)) == "rotated"
        made = vault.requests()[before:]
        assert [r for r in made if r.path.endswith("/versions")] == []  # by version id, never listed
        counts.append(len(made))
    assert counts[2] == counts[5] <= 8  # steady: the sixth rotation costs what the third did
    # Staged secrets exist for the live credentials only: current + previous.
    live = {v.tags["keyId"] for v in staged_versions(rotator, entra_app.app_id)}
    assert live == {p.key_id for p in rotator.managed(entra_app)} and len(live) == 2


# 7 ---------------------------------------------------------------------------------------------------
async def test_7_an_object_id_of_another_application_writes_nothing(rotator: Rotator) -> None:
    mine = rotator.seed_entra_app(passwords=[])
    other = rotator.seed_entra_app(passwords=[])
    wrong = type("Pair", (), {"app_id": mine.app_id, "object_id": other.object_id, "display_name": "Mixed"})()
    await register(rotator, wrong)
    started = time.monotonic()
    assert await rotator.services.engine.handle(await refresh(rotator, mine.app_id)) == "failed"
    assert time.monotonic() - started < 5  # refused before any write, no verify timeout
    assert rotator.passwords(other) == [] and rotator.passwords(mine) == []
    error = (await rotator.status(mine.app_id)).last_error
    assert error is not None and error.code == "ApplicationIdMismatch" and other.app_id in error.message


# 8 ---------------------------------------------------------------------------------------------------
async def test_8_a_ten_day_policy_gives_ten_days_less_the_skew_margin(rotator: Rotator) -> None:
    rotator.stack.entra.max_lifetime_seconds = 10 * 86400
    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app, secretLifetimeDays=21)
    assert await rotator.services.engine.handle(await refresh(rotator, entra_app.app_id)) == "rotated"
    [new] = rotator.managed(entra_app)
    days = (new.end - rotator.clock()).total_seconds() / 86400
    assert 9.98 < days < 10
    capped = next(e for e in await events(rotator, entra_app.app_id) if e.event == "policy.capped")
    assert capped.details["source"] == "search" and "21" in capped.message


async def test_8_a_readable_policy_is_used_directly(rotator: Rotator) -> None:
    rotator.stack.entra.max_lifetime_seconds = 10 * 86400
    rotator.stack.entra.policies_readable = True
    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app, secretLifetimeDays=21)
    assert await rotator.services.engine.handle(await refresh(rotator, entra_app.app_id)) == "rotated"
    refused = [
        r
        for r in rotator.stack.entra.requests(method="POST")
        if r.path.endswith("addPassword") and r.status >= 400
    ]
    assert refused == []  # no probing: the policy said 10 days
    capped = next(e for e in await events(rotator, entra_app.app_id) if e.event == "policy.capped")
    assert capped.details["source"] == "policy"


async def test_8_a_cap_equal_to_the_request_with_clock_skew_is_not_halved(rotator: Rotator) -> None:
    rotator.stack.entra.max_lifetime_seconds = 21 * 86400
    rotator.stack.entra.clock.offset_seconds += 120  # Entra's clock runs two minutes ahead of ours
    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app, secretLifetimeDays=21)
    assert await rotator.services.engine.handle(await refresh(rotator, entra_app.app_id)) == "rotated"
    [new] = rotator.managed(entra_app)
    assert (new.end - rotator.clock()).total_seconds() / 86400 > 20.99
    assert "policy.capped" not in [e.event for e in await events(rotator, entra_app.app_id)]


# 10 --------------------------------------------------------------------------------------------------
async def test_10_superseded_credentials_do_not_pile_up(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app, destination=True)
    for _ in range(24):
        assert await rotator.services.engine.handle(await refresh(rotator, entra_app.app_id)) == "rotated"
    live = rotator.managed(entra_app)
    status = await rotator.status(entra_app.app_id)
    assert {p.key_id for p in live} == {status.current_key_id, status.previous_key_id}
    assert len(staged_versions(rotator, entra_app.app_id)) == 2


async def test_10_a_credential_a_failing_destination_holds_is_kept(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app, destination=True)
    assert await rotator.services.engine.handle(await refresh(rotator, entra_app.app_id)) == "rotated"
    [held] = rotator.managed(entra_app)
    rotator.stack.keyvaults["destination"].deny_access = True
    for _ in range(3):
        assert await rotator.services.engine.handle(await refresh(rotator, entra_app.app_id)) == "rotated"
    assert destination_value(rotator, entra_app.app_id) == held.secret_text
    assert token_works(rotator, entra_app.app_id, held.secret_text)  # never removed while in use
    # The refused writes may have landed (a lost answer looks the same): those are kept too.
    assert held.key_id in {p.key_id for p in rotator.managed(entra_app)}


async def test_scheduled_job_queued_before_a_manual_rotation_is_superseded(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app)
    stale = RotationJob(
        app_id=entra_app.app_id,
        rotation_id="scheduled-long-ago",
        reason=JobReason.SCHEDULED,
        requested_at=rotator.clock(),
        generation=(await rotator.status(entra_app.app_id)).generation,  # queued as registered
    )
    assert await rotator.services.engine.handle(await refresh(rotator, entra_app.app_id)) == "rotated"
    assert await rotator.services.engine.handle(stale) == "superseded"
    assert len(rotator.managed(entra_app)) == 1


async def test_a_secret_starting_with_a_dash_is_flagged_or_recreated(rotator: Rotator) -> None:
    """Issue 10: a leading '-' breaks command-line consumers; warned, or re-created when opted in."""
    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app)
    rotator.stack.entra.leading_dash_secrets = 1
    assert await rotator.services.engine.handle(await refresh(rotator, entra_app.app_id)) == "rotated"
    [warned] = rotator.managed(entra_app)
    assert warned.secret_text.startswith("-")
    assert "secret.leadingDash" in [e.event for e in await events(rotator, entra_app.app_id)]

    other = rotator.seed_entra_app(passwords=[])
    await register(rotator, other, recreateLeadingDashSecrets=True)
    rotator.stack.entra.leading_dash_secrets = 2
    assert await rotator.services.engine.handle(await refresh(rotator, other.app_id)) == "rotated"
    [replaced] = rotator.managed(other)
    assert not replaced.secret_text.startswith("-")
    assert token_works(rotator, other.app_id, replaced.secret_text)
    log = [e.event for e in await events(rotator, other.app_id)]
    assert log.count("secret.recreated") == 2 and "secret.leadingDash" not in log


async def test_a_retryable_failure_that_never_clears_ends_the_rotation_after_bounded_pauses(
    rotator: Rotator,
) -> None:
    """Found from the outside: with Graph answering 503 to every addPassword, the rotation paused,
    went to the poison queue after five deliveries, and the timer took its stale claim over again,
    endlessly: no ``rotation.failed``, no failure count, no alert, while the secret aged. Now the
    pauses are counted on the claim; at ``MAX_PAUSES`` the rotation fails like any other error."""
    from shared.errors import TransientServiceError
    from shared.rotation.engine import MAX_PAUSES

    async def no_wait(seconds: float) -> None:  # the backoff between attempts is not under test
        return None

    assert "engine" not in vars(rotator.services)  # built below, with this sleep
    rotator.services.sleep = no_wait
    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app)
    rotator.stack.entra.fail_next(10_000, 503, method="POST", path=r"addPassword$")
    job = await refresh(rotator, entra_app.app_id)
    outcomes = []
    for _ in range(MAX_PAUSES + 2):
        try:
            outcomes.append(await rotator.services.engine.handle(job))
        except TransientServiceError:
            outcomes.append("paused")
            # The next delivery, or the timer's takeover once the host gives the message up.
            assert (await rotator.status(entra_app.app_id)).in_progress is not None
    assert outcomes[: MAX_PAUSES - 1] == ["paused"] * (MAX_PAUSES - 1)
    assert outcomes[MAX_PAUSES - 1] == "failed"
    assert outcomes[MAX_PAUSES:] == ["rotation already finished"] * 2
    status = await rotator.status(entra_app.app_id)
    assert status.in_progress is None and status.consecutive_failures == 1
    assert status.last_error is not None and f"Gave up after {MAX_PAUSES}" in status.last_error.message
    log = await rotator.log_events(entra_app.app_id)
    assert log.count("rotation.paused") == MAX_PAUSES - 1 and log.count("rotation.failed") == 1
    assert rotator.managed(entra_app) == []  # nothing created, nothing left behind
    # It is retried later with the failure backoff, as any failed rotation.
    rotator.stack.entra.clear_faults()
    rotator.clock.advance(timedelta(minutes=16))
    assert (await rotator.services.scanner.scan()).enqueued == {"rotate": 1}


async def test_a_credential_an_unanswered_add_password_creates_late_is_removed(
    stack: Any, azurite: str, clean_storage: None, monkeypatch: Any
) -> None:
    """Found from the outside: an addPassword that timed out was applied by Entra after the
    rotation had created (and delivered) another: a second credential named for the rotation,
    never staged, left until the next rotation weeks later. The unanswered attempt is recorded;
    once it can land no more (``LATE_WRITE_WINDOW``), maintenance removes what it created."""
    import asyncio

    from shared.domain.models import LATE_WRITE_WINDOW
    from tests.rotation.conftest import rotator_with

    async with rotator_with(stack, azurite, monkeypatch, ROTATOR_HTTP_TIMEOUT_SECONDS="1") as rotator:
        services, clock = rotator.services, rotator.clock
        entra_app = rotator.seed_entra_app(passwords=[])
        await register(rotator, entra_app)
        held = stack.entra.hold_next(1, method="POST", path=r"addPassword$")
        job = await refresh(rotator, entra_app.app_id)
        assert await services.engine.handle(job) == "rotated"
        [used] = rotator.managed(entra_app)
        held.set()  # Entra applies the abandoned addPassword now
        for _ in range(100):
            if len(rotator.managed(entra_app)) == 2:
                break
            await asyncio.sleep(0.05)
        stray = [p for p in rotator.managed(entra_app) if p.key_id != used.key_id]
        assert len(stray) == 1 and stray[0].display_name == used.display_name  # named for the rotation
        status = await rotator.status(entra_app.app_id)
        assert [late.rotation_id for late in status.late_creates] == [job.rotation_id]

        clock.advance(LATE_WRITE_WINDOW + timedelta(minutes=1))
        assert (await services.scanner.scan()).enqueued == {"retryIntegrations": 1}
        retry = rotator.job(entra_app.app_id, JobReason.RETRY)
        assert await services.engine.handle(retry) == "delivered"
        assert [p.key_id for p in rotator.managed(entra_app)] == [used.key_id]
        assert token_works(rotator, entra_app.app_id, used.secret_text)  # the one in use stays
        status = await rotator.status(entra_app.app_id)
        assert status.late_creates == [] and status.retry_at is None
        assert "credential.retired" in await rotator.log_events(entra_app.app_id)


async def rotated_while_graph_is_down(rotator: Rotator) -> tuple[Any, RotationJob, list[str]]:
    """A registered application whose refresh's job is delivered ``MAX_PAUSES`` times while every
    Graph call answers 503 (the waits between attempts skipped); returns the Entra application,
    the job and each delivery's outcome (``paused`` for a delivery that raised to be retried)."""
    from shared.errors import TransientServiceError
    from shared.rotation.engine import MAX_PAUSES

    async def no_wait(seconds: float) -> None:
        return None

    rotator.services.sleep = no_wait
    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app)
    rotator.stack.entra.fail_next(100_000, 503, path=r"^/(v1\.0|beta)/")
    job = await refresh(rotator, entra_app.app_id)
    outcomes = []
    for _ in range(MAX_PAUSES):
        try:
            outcomes.append(await rotator.services.engine.handle(job))
        except TransientServiceError:
            outcomes.append("paused")
    return entra_app, job, outcomes


async def test_a_rotation_out_of_pauses_fails_even_while_entra_cannot_be_read(rotator: Rotator) -> None:
    """The failure cleanup reads Entra to find the rotation's credentials; with all of Graph down
    that read failed too, so a rotation out of pauses could still never fail. It fails now, and
    what it may have created is found by name at maintenance once Graph answers again."""
    from shared.rotation.engine import MAX_PAUSES

    entra_app, job, outcomes = await rotated_while_graph_is_down(rotator)
    outcomes.append(await rotator.services.engine.handle(job))
    assert outcomes[MAX_PAUSES - 1 :] == ["failed", "rotation already finished"]
    status = await rotator.status(entra_app.app_id)
    assert status.in_progress is None and status.consecutive_failures == 1
    assert [late.rotation_id for late in status.late_creates] == [job.rotation_id]
    assert "rotation.failed" in await rotator.log_events(entra_app.app_id)

    # Graph answers again: the failure's backoff retries the rotation, then maintenance sweeps.
    rotator.stack.entra.clear_faults()
    for expected, outcome in (("rotate", "rotated"), ("retryIntegrations", "delivered")):
        rotator.clock.advance(timedelta(minutes=16))
        assert (await rotator.services.scanner.scan()).enqueued == {expected: 1}
        assert await rotator.services.engine.handle(await receive_job(rotator.services)) == outcome
    status = await rotator.status(entra_app.app_id)
    assert status.late_creates == [] and status.retry_at is None
    assert [p.key_id for p in rotator.managed(entra_app)] == [status.current_key_id]


async def test_a_job_queued_before_the_application_was_deleted_and_registered_again_changes_nothing(
    rotator: Rotator,
) -> None:
    """Found driving a running stack: refresh (202), DELETE, register again, then the queued job
    ran a rotation nobody asked for on the new registration, and its id got a second terminal
    record after the deletion's "superseded". A registration's generation starts at its time."""
    entra_app = rotator.seed_entra_app(passwords=[])
    config = await register(rotator, entra_app)
    job = await refresh(rotator, entra_app.app_id)
    stored = await rotator.services.applications.get(entra_app.app_id)
    await rotator.services.registry.delete(entra_app.app_id, if_match=None)
    rotator.clock.advance(timedelta(seconds=1))
    await rotator.services.registry.put(config, if_match=None, create_only=False)
    writes = graph_writes(rotator)
    assert await rotator.services.engine.handle(job) == "from an earlier registration"
    assert graph_writes(rotator) == writes and rotator.managed(entra_app) == []
    again = await rotator.services.applications.get(entra_app.app_id)
    assert again.status.in_progress is None and again.status.generation > stored.status.generation
    records = [e for e in await events(rotator, entra_app.app_id) if e.rotation_id == job.rotation_id]
    assert [
        e.event
        for e in records
        if e.event in ("rotation.superseded", "rotation.completed", "rotation.started")
    ] == ["rotation.superseded"]


async def test_a_put_that_meets_a_removal_registers_the_application(rotator: Rotator) -> None:
    """Found driving a running stack: a PUT without If-Match racing a DELETE answered 404 and left
    the application unregistered; it now registers it (what a PUT without If-Match asks for). With
    If-Match it is a 412."""
    from shared.registry import PreconditionFailed

    entra_app = rotator.seed_entra_app(passwords=[])
    config = await register(rotator, entra_app)
    registry, applications = rotator.services.registry, rotator.services.applications
    original = applications.find

    async def find_then_removed(app_id: str) -> Any:
        found = await original(app_id)
        if found is not None and not removed:
            removed.append(app_id)
            await registry.delete(app_id, if_match=None)  # lands between the PUT's read and write
        return found

    removed: list[str] = []
    applications.find = find_then_removed  # type: ignore[method-assign]
    try:
        result = await registry.put(config, if_match=None, create_only=False)
        assert result.created and removed == [entra_app.app_id]
        assert (await applications.get(entra_app.app_id)).config == config
        removed.clear()
        etag = (await applications.get(entra_app.app_id)).etag
        try:
            await registry.put(config, if_match=etag, create_only=False)
            raise AssertionError("a PUT with If-Match on a removed application must fail")
        except PreconditionFailed as refused:
            assert "removed" in str(refused)
        assert await original(entra_app.app_id) is None
    finally:
        applications.find = original  # type: ignore[method-assign]


# Every rotation id ends in the log exactly once --------------------------------------------------------
class WorkerStopped(BaseException):
    """The worker process died here (no ``except Exception`` sees it, as with a killed process)."""


def engine_stopping_after(rotator: Rotator, step: str) -> Any:
    """An engine on the same services whose worker dies right after ``step`` (a checkpoint)."""
    services = rotator.services

    def stop(reached: str) -> None:
        if reached == step:
            raise WorkerStopped(reached)

    services.__dict__.pop("engine", None)
    services.checkpoint = stop
    try:
        return services.engine
    finally:
        services.__dict__.pop("engine", None)
        services.checkpoint = None


async def terminal_outcomes(rotator: Rotator, app_id: str, rotation_id: str) -> list[str]:
    return [
        e.details["outcome"]
        for e in await events(rotator, app_id)
        if e.rotation_id == rotation_id and e.event in TERMINAL_EVENTS
    ]


class UnreachableTable:
    """The real TableClient of the rotation log, unreachable: every request fails before it is
    sent, as when the network or the storage account is down (azure-core's ServiceRequestError)."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def __getattr__(self, name: str) -> Any:
        from azure.core.exceptions import ServiceRequestError

        method = getattr(self._table, name)
        if name not in ("create_entity", "upsert_entity", "query_entities", "list_entities"):
            return method

        def unreachable(*args: Any, **kwargs: Any) -> Any:
            raise ServiceRequestError("storage unreachable (test)")

        return unreachable


@contextlib.asynccontextmanager
async def rotation_log_unavailable(rotator: Rotator) -> AsyncIterator[None]:
    """The rotation log refuses every read and write until the block ends (what it holds stays)."""
    store = rotator.services.rotation_log
    table = store._table
    store._table = UnreachableTable(table)  # type: ignore[assignment]
    try:
        yield
    finally:
        store._table = table


async def test_the_schedule_follows_entra_ids_end_date_not_the_staged_copys(rotator: Rotator) -> None:
    """Found in review: a rotation recorded the application's expiry from the ``exp`` of its
    staged secret in the rotator's vault. A staged copy whose expiry was removed there left
    ``expiresAt`` empty, which the schedule reads as never rotated: due at once, a new credential
    every timer pass. The retire step records Entra ID's end date for the new credential (from
    the read it makes anyway), so the next rotation is scheduled from it. Found in a later review:
    destinations received that copy's expiry too (a Key Vault secret without ``exp``); the claim
    keeps the end date addPassword answered, and destinations get it."""
    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app, destination=True)
    job = await refresh(rotator, entra_app.app_id)
    with contextlib.suppress(WorkerStopped):
        await engine_stopping_after(rotator, "staged").handle(job)
    staged = staged_versions(rotator, entra_app.app_id)
    assert len(staged) == 1 and staged[0].expires is not None
    staged[0].expires = None  # the vault's copy loses its expiry (the simulator's state)
    rotator.clock.advance(timedelta(minutes=31))  # the stopped worker's claim has expired
    assert (await rotator.services.scanner.scan()).enqueued == {"takeOver": 1}
    assert await rotator.services.engine.handle(await receive_job(rotator.services)) == "rotated"
    [new] = rotator.managed(entra_app)
    status = await rotator.status(entra_app.app_id)
    assert status.current_key_id == new.key_id and new.end is not None
    assert status.expires_at is not None and abs((status.expires_at - new.end).total_seconds()) < 1
    delivered = rotator.stack.keyvaults["destination"].versions(f"s-{entra_app.app_id}")[-1]
    assert delivered.expires is not None and abs(delivered.expires - new.end.timestamp()) < 1
    rotator.clock.advance(timedelta(minutes=16))
    assert (await rotator.services.scanner.scan()).enqueued == {}  # not due again
    assert len(rotator.managed(entra_app)) == 1


async def test_a_log_that_refuses_a_rotations_outcome_gets_it_from_the_jobs_next_delivery(
    rotator: Rotator,
) -> None:
    """Found under kills of a running stack: a rotation's end was written to its app row, then its
    log entry failed (or the process died first), and the job was acknowledged: the 202'd rotation
    id never got its terminal outcome. The outcome now goes into the app row's write that ends the
    rotation (``unlogged``) and stays there until the log holds it; the job is not acknowledged
    before that."""
    from shared.errors import TransientServiceError

    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app)
    job = await refresh(rotator, entra_app.app_id)
    async with rotation_log_unavailable(rotator):
        try:
            await rotator.services.engine.handle(job)
            raise AssertionError("a job whose outcome is not in the log must be delivered again")
        except TransientServiceError:
            pass
        status = await rotator.status(entra_app.app_id)
        assert status.in_progress is None and status.last_result == RotationResult.SUCCEEDED
        assert [(o.rotation_id, o.details["outcome"]) for o in status.unlogged] == [
            (job.rotation_id, "succeeded")
        ]
    assert await rotator.services.engine.handle(job) == "rotation already finished"
    assert await terminal_outcomes(rotator, entra_app.app_id, job.rotation_id) == ["succeeded"]
    assert (await rotator.status(entra_app.app_id)).unlogged == []
    # Delivered once more (at-least-once queues): still one outcome.
    assert await rotator.services.engine.handle(job) == "rotation already finished"
    assert await terminal_outcomes(rotator, entra_app.app_id, job.rotation_id) == ["succeeded"]


async def test_an_outcome_whose_job_was_given_up_is_logged_by_the_timer(rotator: Rotator) -> None:
    """Found by review: when the log refused a rotation's outcome on every delivery of its job,
    the host gave the job up (poison queue) and the outcome stayed in the app row until the
    application's next claim, weeks later: the 202'd rotation id had no outcome meanwhile. A row
    holding outcomes is now due for the timer ``requeue_after`` after the oldest, and the scan
    writes them to the log."""
    from shared.errors import TransientServiceError

    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app)
    job = await refresh(rotator, entra_app.app_id)
    async with rotation_log_unavailable(rotator):
        for _ in range(5):  # every delivery the host makes before it gives the job up
            try:
                await rotator.services.engine.handle(job)
                raise AssertionError("a job whose outcome is not in the log must be delivered again")
            except TransientServiceError:
                pass
    assert [o.rotation_id for o in (await rotator.status(entra_app.app_id)).unlogged] == [job.rotation_id]
    assert await terminal_outcomes(rotator, entra_app.app_id, job.rotation_id) == []

    rotator.clock.advance(rotator.services.schedule_policy.requeue_after + timedelta(minutes=1))
    report = await rotator.services.scanner.scan()
    assert (report.enqueued, report.settled, report.skipped) == ({}, 1, 0)  # the scan wrote it
    assert await terminal_outcomes(rotator, entra_app.app_id, job.rotation_id) == ["succeeded"]
    status = await rotator.status(entra_app.app_id)
    assert status.unlogged == [] and status.last_result == RotationResult.SUCCEEDED


async def test_a_delete_while_a_stopped_workers_claim_holds_is_refused_until_the_rotation_ends(
    rotator: Rotator,
) -> None:
    """Found under kills of a running stack: a DELETE after the worker holding a rotation's claim
    died (its claim expired) removed the application, so the rotation never ended: its id got no
    terminal outcome, and the credential it had created stayed in Entra ID untracked. A DELETE is
    now refused (409) while any claim holds; the timer resumes the rotation, then DELETE works."""
    from shared.errors import ConflictError

    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app)
    job = await refresh(rotator, entra_app.app_id)
    try:
        await engine_stopping_after(rotator, "staged").handle(job)
        raise AssertionError("the worker was to stop after staging")
    except WorkerStopped:
        pass
    rotator.clock.advance(timedelta(minutes=31))  # the dead worker's claim has expired
    registry = rotator.services.registry
    try:
        await registry.delete(entra_app.app_id, if_match=None)
        raise AssertionError("a DELETE while a rotation holds its claim must be refused")
    except ConflictError as refused:
        assert "worker stopped at step staged" in refused.message
    assert await rotator.services.applications.find(entra_app.app_id) is not None
    assert (await rotator.services.scanner.scan()).enqueued == {"takeOver": 1}
    assert await rotator.services.engine.handle(await receive_job(rotator.services)) == "rotated"
    await registry.delete(entra_app.app_id, if_match=None)
    assert await terminal_outcomes(rotator, entra_app.app_id, job.rotation_id) == ["succeeded"]
    [credential] = rotator.managed(entra_app)  # the rotation's own, current: nothing stray
    assert credential.display_name == f"secret-rotator:{job.rotation_id}"


async def test_a_delete_that_cannot_log_a_queued_rotations_end_keeps_it_until_it_can(
    rotator: Rotator,
) -> None:
    """The DELETE of an application with a queued rotation recorded "superseded" after removing
    the row: a crash in between lost the 202'd id's outcome. It now ends the queued rotation in
    the row first and writes the log before removing the row; when the log refuses, nothing is
    removed (503), and the job or the next DELETE writes the one outcome."""
    from shared.errors import TransientServiceError

    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app)
    job = await refresh(rotator, entra_app.app_id)
    registry = rotator.services.registry
    async with rotation_log_unavailable(rotator):
        try:
            await registry.delete(entra_app.app_id, if_match=None)
            raise AssertionError("a DELETE that cannot log the queued rotation's end must not remove it")
        except TransientServiceError:
            pass
    status = await rotator.status(entra_app.app_id)
    assert status.pending is None and [o.rotation_id for o in status.unlogged] == [job.rotation_id]
    writes = graph_writes(rotator)
    assert await rotator.services.engine.handle(job) == "rotation already finished"
    assert graph_writes(rotator) == writes  # the ended rotation never runs
    await registry.delete(entra_app.app_id, if_match=None)
    assert await rotator.services.applications.find(entra_app.app_id) is None
    assert await terminal_outcomes(rotator, entra_app.app_id, job.rotation_id) == ["superseded"]


async def failed_while_removal_is_refused(rotator: Rotator, *, refusals: int) -> tuple[Any, Any]:
    """A registered application whose rotation failed (its new secret never works) while Entra ID
    refused the next ``refusals`` removals: (the Entra application, the credential it left)."""
    from shared.rotation.engine import EngineSettings

    engine = rotator.services.engine

    async def skip(seconds: float) -> None:
        rotator.clock.advance(timedelta(seconds=seconds))

    engine._sleep = skip
    engine._settings = EngineSettings(
        credential_prefix="secret-rotator", claim_timeout=timedelta(minutes=30), verify_timeout_seconds=4
    )
    rotator.stack.entra.broken_new_secrets = True  # the new secret never works: the rotation fails
    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app)
    rotator.stack.entra.fail_next(refusals, 403, method="POST", path=r"/removePassword$")
    assert await engine.handle(await refresh(rotator, entra_app.app_id)) == "failed"
    [stray] = rotator.managed(entra_app)
    return entra_app, stray


async def test_a_delete_while_a_failed_rotations_credential_waits_for_removal_is_refused_until_it_is_gone(
    rotator: Rotator,
) -> None:
    """Found by review: a rotation that failed after its addPassword, whose credential Entra ID
    would not remove at once, keeps it on ``cleanupKeyIds`` for the timer. A DELETE then removed
    the registration, the only record of that credential: it stayed in Entra ID, valid and
    untraced. A DELETE is now refused (409) while credentials of ours wait to be removed, also
    once rotation is disabled; the timer removes them (disabled or not), then DELETE works."""
    from shared.errors import ConflictError

    entra_app, stray = await failed_while_removal_is_refused(rotator, refusals=1)
    status = await rotator.status(entra_app.app_id)
    assert status.cleanup_key_ids == [stray.key_id] and status.retry_at is not None
    assert status.last_error is not None and f"did not remove its credential yet (keyId {stray.key_id})" in (
        status.last_error.message
    )

    await register(rotator, entra_app, enabled=False)  # disabled: nothing rotates, cleanup goes on
    registry = rotator.services.registry
    try:
        await registry.delete(entra_app.app_id, if_match=None)
        raise AssertionError("a DELETE while a credential of ours waits for removal must be refused")
    except ConflictError as refused:
        assert stray.key_id in refused.message and "wait for the rotator to remove" in refused.message
    assert [p.key_id for p in rotator.managed(entra_app)] == [stray.key_id]

    rotator.clock.advance(timedelta(minutes=16))
    assert (await rotator.services.scanner.scan()).enqueued == {"retryIntegrations": 1}
    await rotator.services.engine.handle(await receive_job(rotator.services))
    assert rotator.managed(entra_app) == []
    assert (await rotator.status(entra_app.app_id)).cleanup_key_ids == []
    await registry.delete(entra_app.app_id, if_match=None)
    assert await rotator.services.applications.find(entra_app.app_id) is None


async def test_a_delete_with_leave_credentials_names_what_entra_would_not_remove_before_the_row_goes(
    rotator: Rotator,
) -> None:
    """Found in review: while Entra ID keeps refusing to remove a credential of the rotator's (the
    rotator lost its permission on the application), every DELETE was refused (409) and the
    registration could not be removed at all. ``leaveCredentials`` deletes it anyway, removes
    nothing, and first writes a log entry naming the credential left behind (traceable); while the
    log cannot take it, nothing is deleted."""
    from shared.errors import ConflictError, TransientServiceError
    from shared.registry import CREDENTIALS_LEFT

    entra_app, stray = await failed_while_removal_is_refused(rotator, refusals=50)  # keeps refusing
    registry = rotator.services.registry
    try:
        await registry.delete(entra_app.app_id, if_match=None)
        raise AssertionError("a plain DELETE while a credential of ours waits for removal must be refused")
    except ConflictError as refused:
        assert "leaveCredentials=true" in refused.message
    async with rotation_log_unavailable(rotator):
        try:
            await registry.delete(entra_app.app_id, if_match=None, leave_credentials=True)
            raise AssertionError("a DELETE whose record of what it leaves cannot be written must not delete")
        except TransientServiceError:
            pass
    assert await rotator.services.applications.find(entra_app.app_id) is not None
    await registry.delete(entra_app.app_id, if_match=None, leave_credentials=True)
    assert await rotator.services.applications.find(entra_app.app_id) is None
    assert [p.key_id for p in rotator.managed(entra_app)] == [stray.key_id]  # left, not removed
    noted = [e for e in await events(rotator, entra_app.app_id) if e.event == CREDENTIALS_LEFT]
    assert len(noted) == 1  # the retried DELETE wrote the entry once
    assert noted[0].details["cleanupKeyIds"] == [stray.key_id] and stray.key_id in noted[0].message


async def test_a_superseded_credential_entra_would_not_remove_is_retried_at_the_next_pass(
    rotator: Rotator,
) -> None:
    """Found by the generated lifecycle test once it looked at Entra ID: a rotation's removal of a
    superseded credential (neither current nor previous) that Entra refused became a warning, and
    the timer's pass that followed retried only destinations. The credential, valid and used by
    nobody, stayed until the previous one's retirement weeks later, and a DELETE meanwhile left it
    for good. It now goes on ``cleanupKeyIds``: the next pass removes it, and a DELETE waits."""
    from shared.errors import ConflictError

    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app)
    engine = rotator.services.engine
    assert await engine.handle(await refresh(rotator, entra_app.app_id)) == "rotated"
    [first] = rotator.managed(entra_app)
    assert await engine.handle(await refresh(rotator, entra_app.app_id)) == "rotated"
    rotator.stack.entra.fail_next(1, 403, method="POST", path=r"/removePassword$")
    assert await engine.handle(await refresh(rotator, entra_app.app_id)) == "rotated"
    status = await rotator.status(entra_app.app_id)
    assert first.key_id not in (status.current_key_id, status.previous_key_id)
    assert first.key_id in [p.key_id for p in rotator.managed(entra_app)]
    assert status.cleanup_key_ids == [first.key_id] and status.retry_at is not None
    try:
        await rotator.services.registry.delete(entra_app.app_id, if_match=None)
        raise AssertionError("a DELETE while a superseded credential waits for removal must be refused")
    except ConflictError as refused:
        assert first.key_id in refused.message

    rotator.clock.advance(timedelta(minutes=16))
    assert (await rotator.services.scanner.scan()).enqueued == {"retryIntegrations": 1}
    assert await engine.handle(await receive_job(rotator.services)) == "delivered"
    status = await rotator.status(entra_app.app_id)
    assert status.cleanup_key_ids == [] and status.retry_at is None
    assert sorted(p.key_id for p in rotator.managed(entra_app)) == sorted(
        [status.current_key_id, status.previous_key_id]
    )
    await rotator.services.registry.delete(entra_app.app_id, if_match=None)


async def test_a_compromised_rotations_revocation_goes_on_while_disabled_and_blocks_delete(
    rotator: Rotator,
) -> None:
    """Found by review: a compromised rotation whose revocation Entra refused for the moment
    keeps it for the timer (``pendingRevocation``); disabling the application stopped the timer
    from looking (so the compromised credential stayed valid), and a DELETE dropped it outright.
    The revocation now goes on while the application is disabled, and a DELETE is refused (409)
    until it is done."""
    from shared.errors import ConflictError

    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app, destination=True)
    assert await rotator.services.engine.handle(await refresh(rotator, entra_app.app_id)) == "rotated"
    [compromised] = rotator.managed(entra_app)
    job = await refresh(rotator, entra_app.app_id, compromised=True)
    rotator.stack.entra.fail_next(1, 403, method="POST", path=r"/removePassword$")
    assert await rotator.services.engine.handle(job) == "rotated"
    assert (await rotator.status(entra_app.app_id)).pending_revocation is not None

    await register(rotator, entra_app, destination=True, enabled=False)
    registry = rotator.services.registry
    try:
        await registry.delete(entra_app.app_id, if_match=None)
        raise AssertionError("a DELETE while a compromised credential waits for revocation must be refused")
    except ConflictError as refused:
        assert job.rotation_id in refused.message and "compromised" in refused.message
    assert compromised.key_id in [p.key_id for p in rotator.managed(entra_app)]

    rotator.clock.advance(timedelta(minutes=16))
    assert (await rotator.services.scanner.scan()).enqueued == {"retryIntegrations": 1}
    assert await rotator.services.engine.handle(await receive_job(rotator.services)) == "delivered"
    assert compromised.key_id not in [p.key_id for p in rotator.managed(entra_app)]
    assert (await rotator.status(entra_app.app_id)).pending_revocation is None
    await registry.delete(entra_app.app_id, if_match=None)
    assert await rotator.services.applications.find(entra_app.app_id) is None


async def test_an_unanswered_add_password_of_a_disabled_application_is_still_swept_and_blocks_delete(
    rotator: Rotator,
) -> None:
    """Found by review: what an unanswered addPassword may create late (``lateCreates``) was
    swept only while rotation was enabled (the timer skipped a disabled application's
    ``retryAt`` unless ``cleanupKeyIds`` was set), and a DELETE dropped it outright: a
    credential Entra ID applied late stayed untraced. Both now treat it as a credential of ours
    waiting for removal."""
    from shared.domain.models import LATE_WRITE_WINDOW
    from shared.errors import ConflictError
    from shared.rotation.engine import MAX_PAUSES

    entra_app, job, outcomes = await rotated_while_graph_is_down(rotator)
    assert outcomes == ["paused"] * (MAX_PAUSES - 1) + ["failed"]
    status = await rotator.status(entra_app.app_id)
    assert [late.rotation_id for late in status.late_creates] == [job.rotation_id]

    await register(rotator, entra_app, enabled=False)
    registry = rotator.services.registry
    try:
        await registry.delete(entra_app.app_id, if_match=None)
        raise AssertionError("a DELETE while an addPassword may still land must be refused")
    except ConflictError as refused:
        assert "unanswered addPassword" in refused.message

    rotator.stack.entra.clear_faults()
    rotator.clock.advance(LATE_WRITE_WINDOW + timedelta(minutes=1))
    assert (await rotator.services.scanner.scan()).enqueued == {"retryIntegrations": 1}
    await rotator.services.engine.handle(await receive_job(rotator.services))
    status = await rotator.status(entra_app.app_id)
    assert status.late_creates == [] and status.cleanup_key_ids == []
    await registry.delete(entra_app.app_id, if_match=None)
    assert await rotator.services.applications.find(entra_app.app_id) is None


async def test_a_copy_of_a_job_whose_rotation_ended_long_ago_adds_no_second_outcome(
    rotator: Rotator, monkeypatch: Any
) -> None:
    """Found by the rotation model once it counted outcomes: a copy of a job delivered after its
    rotation's id had left ``recentRotationIds`` (the last 20) was logged "superseded" after its
    "succeeded". A job that is not the queued one now looks its id up in the log first."""
    from shared.rotation import lease

    monkeypatch.setattr(lease, "RECENT_ROTATIONS", 1)
    entra_app = rotator.seed_entra_app(passwords=[])
    await register(rotator, entra_app)
    first = await refresh(rotator, entra_app.app_id)
    assert await rotator.services.engine.handle(first) == "rotated"
    second = await refresh(rotator, entra_app.app_id)
    assert await rotator.services.engine.handle(second) == "rotated"
    assert first.rotation_id not in (await rotator.status(entra_app.app_id)).recent_rotation_ids
    assert await rotator.services.engine.handle(first) == "rotation already finished"
    assert await terminal_outcomes(rotator, entra_app.app_id, first.rotation_id) == ["succeeded"]
