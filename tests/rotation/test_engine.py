"""The rotation protocol end to end at the service level: real msgraph-sdk, azure-identity and
azure-keyvault-secrets clients against the simulators, and Azurite for state."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

import pytest

from shared.domain.models import TERMINAL_EVENTS, JobReason, RotationResult
from tests.rotation.conftest import UNMANAGED_SECRET, Rotator


def token_works(rotator: Rotator, app_id: str, secret: str) -> bool:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ClientSecretCredential

    settings = rotator.services.settings
    credential = ClientSecretCredential(
        settings.tenant_id,
        app_id,
        secret,
        authority=settings.login_authority,
        disable_instance_discovery=True,
        connection_verify=settings.ca_bundle,
    )
    try:
        credential.get_token(settings.graph_scope)
        return True
    except ClientAuthenticationError:
        return False
    finally:
        credential.close()


def staged_versions(rotator: Rotator, app_id: str) -> list[Any]:
    """Every live staged version of the application (one secret per rotation: app-<appId>-<rotationId>)."""
    vault = rotator.stack.keyvaults["rotator"]
    names = [n for n in vault.secret_names() if n.lower().startswith(f"app-{app_id}-".lower())]
    return [version for name in names for version in vault.versions(name)]


async def test_manual_rotation_creates_stages_verifies_and_records(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app()
    await rotator.register(entra_app)
    job = rotator.job(entra_app.app_id)

    assert await rotator.services.engine.handle(job) == "rotated"

    [new] = rotator.managed(entra_app)
    assert new.display_name == f"secret-rotator:{job.rotation_id}"
    assert (new.end - rotator.clock()).days in (20, 21)
    assert token_works(rotator, entra_app.app_id, new.secret_text)
    # The hand-made credential is untouched and still works.
    assert any(p.secret_text == UNMANAGED_SECRET for p in rotator.passwords(entra_app))
    assert token_works(rotator, entra_app.app_id, UNMANAGED_SECRET)

    status = await rotator.status(entra_app.app_id)
    assert status.current_key_id == new.key_id
    assert status.last_result == RotationResult.SUCCEEDED
    assert status.in_progress is None and status.last_rotation_id == job.rotation_id
    assert status.expires_at is not None and abs((status.expires_at - new.end).total_seconds()) < 1

    [version] = staged_versions(rotator, entra_app.app_id)
    assert version.value == new.secret_text
    assert version.tags["stage"] == "current" and version.tags["keyId"] == new.key_id
    assert version.tags["rotationId"] == job.rotation_id

    events = await rotator.log_events(entra_app.app_id)
    assert events == [
        "rotation.started",
        "secret.created",
        "secret.staged",
        "secret.verified",
        "rotation.completed",
    ]


async def test_two_copies_of_the_same_job_rotate_once(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app()
    await rotator.register(entra_app)
    job = rotator.job(entra_app.app_id)

    results = await asyncio.gather(rotator.services.engine.handle(job), rotator.services.engine.handle(job))
    assert sorted(results) == sorted([f"rotation {job.rotation_id} is in progress", "rotated"])
    # A third copy arriving later finds the work done.
    assert await rotator.services.engine.handle(job) == "rotation already finished"
    assert len(rotator.managed(entra_app)) == 1


async def test_a_second_rotation_while_one_runs_is_skipped(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app()
    await rotator.register(entra_app)
    first, second = rotator.job(entra_app.app_id), rotator.job(entra_app.app_id)
    outcomes = await asyncio.gather(
        rotator.services.engine.handle(first), rotator.services.engine.handle(second)
    )
    assert sorted(outcomes)[0].startswith("rotat")
    assert len(rotator.managed(entra_app)) == 1


async def test_scheduled_job_for_a_not_due_application_does_nothing(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app()
    await rotator.register(entra_app)
    await rotator.services.engine.handle(rotator.job(entra_app.app_id))
    outcome = await rotator.services.engine.handle(rotator.job(entra_app.app_id, JobReason.SCHEDULED))
    assert outcome == "not due"
    assert len(rotator.managed(entra_app)) == 1


async def test_propagation_delay_of_20_seconds_is_waited_out(rotator: Rotator) -> None:
    rotator.stack.entra.propagation_delay_seconds = 20
    entra_app = rotator.seed_entra_app()
    await rotator.register(entra_app)
    started = time.monotonic()
    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
    assert time.monotonic() - started >= 19
    page = await rotator.services.rotation_log.list_page(entra_app.app_id, 50, None)
    verified = next(e for e in page.items if e.event == "secret.verified")
    assert "attempts" in verified.message


async def test_a_secret_that_never_works_fails_cleanly(
    rotator: Rotator, azurite: str, monkeypatch: Any
) -> None:
    from shared.rotation.engine import EngineSettings

    rotator.stack.entra.broken_new_secrets = True
    entra_app = rotator.seed_entra_app()
    await rotator.register(entra_app)
    engine = rotator.services.engine
    monkeypatch.setattr(
        engine,
        "_settings",
        EngineSettings(
            credential_prefix="secret-rotator", claim_timeout=timedelta(minutes=30), verify_timeout_seconds=4
        ),
    )
    assert await engine.handle(rotator.job(entra_app.app_id)) == "failed"

    assert rotator.managed(entra_app) == []  # the new credential was removed
    assert [p.secret_text for p in rotator.passwords(entra_app)] == [UNMANAGED_SECRET]
    status = await rotator.status(entra_app.app_id)
    assert status.last_result == RotationResult.FAILED
    assert status.last_error is not None and status.last_error.code == "SecretNeverWorked"
    assert status.in_progress is None and status.current_key_id is None
    # Its staged copy is deleted: nothing of a failed rotation stays usable.
    assert staged_versions(rotator, entra_app.app_id) == []
    assert "rotation.failed" in await rotator.log_events(entra_app.app_id)


async def test_tenant_policy_caps_the_lifetime_with_a_warning(rotator: Rotator) -> None:
    rotator.stack.entra.max_lifetime_seconds = 30 * 86400
    entra_app = rotator.seed_entra_app()
    await rotator.register(entra_app, secretLifetimeDays=60)
    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
    [new] = rotator.managed(entra_app)
    assert 29 <= (new.end - rotator.clock()).total_seconds() / 86400 <= 30
    page = await rotator.services.rotation_log.list_page(entra_app.app_id, 50, None)
    capped = next(e for e in page.items if e.event == "policy.capped")
    assert capped.code == "CredentialInvalidLifetimeAsPerAppPolicy"
    # The largest lifetime the policy allows, less the clock-skew margin: not a round-number step.
    assert capped.details == {"requestedDays": 60, "appliedDays": 29.99, "source": "search"}


async def test_two_password_cap_refuses_early_when_nothing_can_go(rotator: Rotator) -> None:
    end = (rotator.clock() + timedelta(days=30)).isoformat()
    entra_app = rotator.seed_entra_app(
        audience="AzureADandPersonalMicrosoftAccount",
        passwords=[
            {"displayName": "a", "secretText": UNMANAGED_SECRET, "endDateTime": end},
            {"displayName": "b", "secretText": UNMANAGED_SECRET + "-b", "endDateTime": end},
        ],
    )
    await rotator.register(entra_app)
    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) == "failed"
    assert len(rotator.passwords(entra_app)) == 2
    status = await rotator.status(entra_app.app_id)
    assert status.last_error is not None and status.last_error.code == "CredentialCapReached"
    assert "credential.capReached" in await rotator.log_events(entra_app.app_id)


async def test_two_password_cap_makes_room_by_retiring_an_expired_managed_credential(
    rotator: Rotator,
) -> None:
    now = rotator.clock()
    entra_app = rotator.seed_entra_app(
        audience="AzureADandPersonalMicrosoftAccount",
        passwords=[
            {
                "displayName": "hand-made",
                "secretText": UNMANAGED_SECRET,
                "endDateTime": (now + timedelta(days=9)).isoformat(),
            },
            {
                "displayName": "secret-rotator:old-rotation",
                "secretText": "expired-managed-secret-000000",
                "startDateTime": (now - timedelta(days=30)).isoformat(),
                "endDateTime": (now - timedelta(days=1)).isoformat(),
            },
        ],
    )
    await rotator.register(entra_app)
    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
    names = sorted(p.display_name for p in rotator.passwords(entra_app))
    assert names[0] == "hand-made" and names[1].startswith("secret-rotator:") and len(names) == 2
    assert "secret-rotator:old-rotation" not in names


async def test_throttling_is_honoured_with_retry_after(rotator: Rotator) -> None:
    rotator.stack.entra.throttle_writes(2, retry_after=2)
    entra_app = rotator.seed_entra_app()
    await rotator.register(entra_app)
    started = time.monotonic()
    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
    assert time.monotonic() - started >= 4  # two 429s, each waited for its Retry-After
    assert len(rotator.managed(entra_app)) == 1


async def test_a_lost_add_password_answer_leaves_no_duplicate(rotator: Rotator) -> None:
    rotator.stack.entra.commit_then_fail(1, status=504)
    entra_app = rotator.seed_entra_app()
    await rotator.register(entra_app)
    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
    [new] = rotator.managed(entra_app)
    assert token_works(rotator, entra_app.app_id, new.secret_text)
    assert "credential.duplicateRemoved" in await rotator.log_events(entra_app.app_id)


async def test_compromised_mode_revokes_the_rotators_credentials_and_lists_foreign_ones(
    rotator: Rotator,
) -> None:
    entra_app = rotator.seed_entra_app()
    await rotator.register(entra_app)
    await rotator.services.engine.handle(rotator.job(entra_app.app_id))
    [first] = rotator.managed(entra_app)
    outcome = await rotator.services.registry.request_refresh(entra_app.app_id, compromised=True)
    job = rotator.job(entra_app.app_id, compromised=True).model_copy(
        update={"rotation_id": outcome.rotation_id}
    )
    assert await rotator.services.engine.handle(job) == "rotated"
    [only] = rotator.managed(entra_app)
    assert only.display_name == f"secret-rotator:{job.rotation_id}" and only.key_id != first.key_id
    # The hand-made credential is not the rotator's: without the opt-in it stays, and is reported.
    assert token_works(rotator, entra_app.app_id, UNMANAGED_SECRET)
    page = await rotator.services.rotation_log.list_page(entra_app.app_id, 50, None)
    revoked = next(e for e in page.items if e.event == "credential.revokedAll")
    assert revoked.details["revokedKeyIds"] == [first.key_id]
    assert [c["displayName"] for c in revoked.details["foreignStillValid"]] == ["hand-made"]


async def test_compromised_mode_with_the_opt_in_revokes_every_other_password(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app()
    await rotator.register(entra_app)
    outcome = await rotator.services.registry.request_refresh(
        entra_app.app_id, compromised=True, revoke_unmanaged=True
    )
    job = rotator.job(entra_app.app_id, compromised=True).model_copy(
        update={"rotation_id": outcome.rotation_id}
    )
    assert await rotator.services.engine.handle(job) == "rotated"
    [only] = rotator.passwords(entra_app)
    assert only.display_name == f"secret-rotator:{job.rotation_id}"
    assert not token_works(rotator, entra_app.app_id, UNMANAGED_SECRET)


async def test_next_rotation_retires_the_expired_managed_credential(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app(passwords=[])
    await rotator.register(entra_app, secretLifetimeDays=1, updateThresholdHours=1)
    await rotator.services.engine.handle(rotator.job(entra_app.app_id))
    [first] = rotator.managed(entra_app)
    rotator.clock.advance(timedelta(hours=23, minutes=1))  # due: 1 hour before expiry
    assert (
        await rotator.services.engine.handle(rotator.job(entra_app.app_id, JobReason.SCHEDULED)) == "rotated"
    )
    assert len(rotator.managed(entra_app)) == 2  # the old one still works until it expires
    rotator.clock.advance(timedelta(hours=23))
    assert (
        await rotator.services.engine.handle(rotator.job(entra_app.app_id, JobReason.SCHEDULED)) == "rotated"
    )
    key_ids = {p.key_id for p in rotator.managed(entra_app)}
    assert first.key_id not in key_ids and len(key_ids) == 2


CRASH_POINTS = [
    "created",
    "staged_written",
    "staged",
    "verified",
    "deployed",
    "delivered",
    "retired",
    "notified",
    "outcome_written",  # the row holds the rotation's end; the log does not yet
    "finished",
]
# Crash points after the claim was released: the message's next delivery finds the rotation ended.
ENDED = ("outcome_written", "finished")


@pytest.mark.parametrize("crash_after", CRASH_POINTS)
async def test_a_worker_killed_after_any_step_ends_with_one_working_credential(
    rotator: Rotator, crash_after: str, azurite: str
) -> None:
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.rotation.conftest import rotator_environment

    entra_app = rotator.seed_entra_app()
    await rotator.register(entra_app)
    services = rotator.services
    job = rotator.job(entra_app.app_id)

    # A real worker process, killed (os._exit) right after the step.
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.rotation.crash_worker",
        json.dumps(rotator_environment(azurite, rotator.stack)),
        job.model_dump_json(by_alias=True),
        crash_after,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, stderr = await worker.communicate()
    assert worker.returncode == 137, stderr.decode()[-2000:]

    # The host redelivers the message: the dead worker's lease still runs, so it is acknowledged.
    if crash_after not in ENDED:
        assert await services.engine.handle(job) == f"rotation {job.rotation_id} is in progress"
    # Time passes; the timer finds the stale claim and enqueues a takeover of the same rotation.
    rotator.clock.advance(timedelta(minutes=31))
    report = await services.scanner.scan()
    if crash_after in ENDED:
        assert report.enqueued == {}
        assert await services.engine.handle(job) == "rotation already finished"
    else:
        assert report.enqueued == {"takeOver": 1}
        assert await services.engine.handle(job) == "rotated"

    [credential] = rotator.managed(entra_app)  # exactly one, named for the original rotation
    assert credential.display_name == f"secret-rotator:{job.rotation_id}"
    assert token_works(rotator, entra_app.app_id, credential.secret_text)
    status = await rotator.status(entra_app.app_id)
    assert status.current_key_id == credential.key_id and status.in_progress is None
    current = [v for v in staged_versions(rotator, entra_app.app_id) if v.tags["stage"] == "current"]
    assert [v.value for v in current] == [credential.secret_text]
    # The rotation id ends in the log once, however the crash fell (the one promise the API makes).
    log = (await services.rotation_log.list_page(entra_app.app_id, 200, None)).items
    ended = [
        e.details["outcome"] for e in log if e.rotation_id == job.rotation_id and e.event in TERMINAL_EVENTS
    ]
    assert ended == ["succeeded"] and status.unlogged == []


async def test_the_superseded_credential_is_removed_once_it_expires(rotator: Rotator) -> None:
    entra_app = rotator.seed_entra_app(passwords=[])
    await rotator.register(entra_app, secretLifetimeDays=1, updateThresholdHours=2)
    await rotator.services.engine.handle(rotator.job(entra_app.app_id))
    [first] = rotator.managed(entra_app)
    rotator.clock.advance(timedelta(hours=22, minutes=1))  # due: 2 hours before expiry
    assert (await rotator.services.scanner.scan()).enqueued == {"rotate": 1}
    [job] = await rotator.queued_jobs()
    assert job.reason == JobReason.SCHEDULED
    assert await rotator.services.engine.handle(job) == "rotated"
    status = await rotator.status(entra_app.app_id)
    assert status.retire_at is not None and status.retire_at > first.end
    assert len(rotator.managed(entra_app)) == 2  # zero downtime: the old one works until it expires

    rotator.clock.advance(timedelta(hours=1))
    assert (await rotator.services.scanner.scan()).enqueued == {}  # not expired yet
    rotator.clock.advance(timedelta(hours=1))
    assert (await rotator.services.scanner.scan()).enqueued == {"retire": 1}
    [job] = await rotator.queued_jobs()
    assert await rotator.services.engine.handle(job) == "delivered"
    [current] = rotator.managed(entra_app)
    assert (
        current.key_id != first.key_id
        and current.key_id == (await rotator.status(entra_app.app_id)).current_key_id
    )
    assert (await rotator.status(entra_app.app_id)).retire_at is None
    assert "credential.retired" in await rotator.log_events(entra_app.app_id)


async def test_a_scan_drains_every_due_application_page_by_page(
    rotator: Rotator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11: no fixed cap per scan. With pages of 4, 11 due applications are all enqueued in one
    scan, each read once. While their jobs wait in the queue, a second scan reads each again (the
    queued mark leaves the index row early, one entity write instead of a batch) and neither
    enqueues nor writes anything; once the jobs have run, a scan reads none of them."""
    from shared.rotation import scanner

    monkeypatch.setattr(scanner, "DUE_PAGE_SIZE", 4)
    apps = [rotator.seed_entra_app() for _ in range(11)]
    for entra_app in apps:
        await rotator.register(entra_app)
    report = await rotator.services.scanner.scan()
    assert report.rows_read == 11 and sum(report.enqueued.values()) == 11 and not report.truncated
    jobs = await rotator.queued_jobs()
    assert sorted(job.app_id for job in jobs) == sorted(a.app_id for a in apps)
    marked = {a.app_id: (await rotator.services.applications.get(a.app_id)).etag for a in apps}
    caplog.clear()  # only the second scan's record
    with caplog.at_level(logging.INFO, logger="rotator.scanner"):
        again = await rotator.services.scanner.scan()
    assert again.rows_read == 11 and again.enqueued == {} and again.skipped == 11
    [completed] = [r for r in caplog.records if getattr(r, "event", None) == "scan.completed"]
    assert (completed.rowsRead, completed.enqueued, completed.skipped) == (11, 0, 11)  # type: ignore[attr-defined]
    assert marked == {a.app_id: (await rotator.services.applications.get(a.app_id)).etag for a in apps}
    for job in jobs:
        assert await rotator.services.engine.handle(job) == "rotated"
    after = await rotator.services.scanner.scan()
    assert after.rows_read == 0 and after.enqueued == {}


async def test_a_scan_past_its_time_budget_stops_between_pages(
    rotator: Rotator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan stops starting pages once its budget is spent (it must end before the next run);
    what it did not reach is read by the next scan (which also looks again at the three whose jobs
    are still queued, and leaves them be)."""
    from shared.rotation import scanner

    monkeypatch.setattr(scanner, "DUE_PAGE_SIZE", 3)
    apps = [rotator.seed_entra_app() for _ in range(7)]
    for entra_app in apps:
        await rotator.register(entra_app)
    services = rotator.services
    hurried = scanner.Scanner(
        services.applications,
        services.rotation_queue,
        services.schedule_policy,
        services.alerter,
        services.clock,
        events=services.events,
        time_budget_seconds=0,
    )
    first = await hurried.scan()
    assert first.truncated and first.rows_read == 3
    rest = await services.scanner.scan()
    assert rest.rows_read == 7 and sum(rest.enqueued.values()) == 4 and rest.skipped == 3


async def test_registered_answers_for_many_ids_with_key_only_reads(rotator: Rotator) -> None:
    """Issue 11: the inventory asks which of a page's application ids are registered with key-only
    point reads (an "or" filter would scan the partition), not a read and a parse of each row."""
    apps = [rotator.seed_entra_app() for _ in range(17)]
    for entra_app in apps[:16]:
        await rotator.register(entra_app)
    unknown = [f"00000000-0000-4000-8000-{n:012d}" for n in range(20)]
    asked = [a.app_id for a in apps] + unknown
    found = await rotator.services.applications.registered(asked)
    assert found == {a.app_id for a in apps[:16]}


def test_a_graph_application_page_is_parsed_into_records() -> None:
    import json

    from shared.inventory import parse_application_page

    page = {
        "@odata.nextLink": "https://graph.microsoft.com/v1.0/applications?$top=2&$skiptoken=RFNwdAIAAQAAAA",
        "value": [
            {
                "id": "o1",
                "appId": "a1",
                "displayName": "One",
                "passwordCredentials": [
                    {
                        "keyId": "k1",
                        "displayName": "d",
                        "hint": "abc",
                        "startDateTime": "2026-11-01T10:00:00Z",
                        "endDateTime": "2026-12-01T10:00:00.1234567Z",
                    }
                ],
            },
            {"id": "o2", "appId": "a2", "displayName": None, "passwordCredentials": []},
        ],
    }
    parsed = parse_application_page(json.dumps(page).encode())
    assert [a.app_id for a in parsed.applications] == ["a1", "a2"]
    [password] = parsed.applications[0].passwords
    assert password.end is not None and password.end.microsecond == 123456 and password.end.tzinfo is not None
    assert password.start is not None and password.start.day == 1
    assert parsed.skip_token == "RFNwdAIAAQAAAA"


async def test_a_rotation_reads_the_application_from_graph_twice(rotator: Rotator) -> None:
    """Issue 11: Graph reads per rotation stay two (identity and credentials, then retirement);
    a rotation's many steps do not each read the application again."""
    entra_app = rotator.seed_entra_app()
    await rotator.register(entra_app)
    entra = rotator.stack.entra
    before = len(entra.requests(method="GET", path=r"/v1\.0/applications/[^/]+$"))
    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
    reads = len(entra.requests(method="GET", path=r"/v1\.0/applications/[^/]+$")) - before
    assert reads == 2


async def test_the_claim_is_renewed_while_a_long_verification_waits(
    rotator: Rotator, monkeypatch: Any
) -> None:
    """Issue 12: the claim was renewed only between steps, so a verification wait longer than a
    third of the claim timeout risked a takeover. With a 9-second claim and 8 seconds of
    propagation delay, the claim is renewed during the wait and the rotation ends normally."""
    import dataclasses

    rotator.stack.entra.propagation_delay_seconds = 8
    entra_app = rotator.seed_entra_app()
    await rotator.register(entra_app)
    engine = rotator.services.engine
    monkeypatch.setattr(
        engine, "_settings", dataclasses.replace(engine._settings, claim_timeout=timedelta(seconds=9))
    )
    renewals = 0
    original = engine._lease.write

    async def counting(run: Any, *, claim: Any = None, **kwargs: Any) -> None:
        nonlocal renewals
        if claim == {} and not kwargs:
            renewals += 1
        await original(run, claim=claim, **kwargs)

    monkeypatch.setattr(engine._lease, "write", counting)
    assert await engine.handle(rotator.job(entra_app.app_id)) == "rotated"
    assert renewals >= 1
