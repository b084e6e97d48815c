"""Every rotation id the API answers 202 with ends in the log with exactly one terminal outcome,
and no credential the rotator created is left behind, whatever happens around it: generated
sequences of refreshes (plain and compromised), DELETEs (with and without If-Match, with and
without ``leaveCredentials``), registrations
again (rotation enabled or disabled), job deliveries (duplicated, or with the worker killed after
any step), the rotation log refusing writes, Entra ID refusing removals, new secrets that never
work, and the timer, against the real stores on Azurite and the simulated Entra ID and Key Vault,
through the real SDKs.

Checked after every step: no rotation id has two terminal entries; a DELETE is refused while a
rotation holds its claim or credentials wait for the rotator to remove them. After the sequence,
the faults end and the queue is worked until nothing is left (time passes, the timer takes over
stopped workers and retries removals): every accepted id has its one outcome; a registered
application holds no claim, no queued rotation, no outcome the log lacks and no removal still
owed, and its recorded expiry is Entra ID's end date for its current credential; and every
credential of the rotator's in Entra ID is the current or previous one of the
registration, or was when a DELETE removed it, or is named by the log entry of a DELETE that left
it (``leaveCredentials``).

``ROTATOR_OUTCOME_EXAMPLES`` sets the number of generated cases (default 30).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from shared.domain.models import TERMINAL_EVENTS, ApplicationConfig, RotationJob
from shared.errors import ConflictError, NotFoundError, RotatorError
from shared.registry import CREDENTIALS_LEFT, PreconditionFailed
from shared.storage.queue import QUEUE_NAME, parse_job
from tests.rotation.azurite_store import generated
from tests.rotation.conftest import Rotator, rotator_with
from tests.rotation.test_engine import CRASH_POINTS
from tests.rotation.test_regressions import WorkerStopped, engine_stopping_after, rotation_log_unavailable

EXAMPLES = int(os.environ.get("ROTATOR_OUTCOME_EXAMPLES", "30"))

step = st.one_of(
    st.tuples(st.just("refresh"), st.booleans()),
    # If-Match or not; after the claim of a worker killed meanwhile has expired, or not;
    # leaveCredentials or not.
    st.tuples(st.just("delete"), st.booleans(), st.booleans(), st.booleans()),
    st.tuples(st.just("register"), st.booleans()),  # rotation enabled or disabled
    st.tuples(
        st.just("deliver"),
        st.integers(0, 5),
        st.booleans(),  # keep a copy: the host delivers the message again later
        st.one_of(st.none(), st.sampled_from(CRASH_POINTS)),
    ),
    # A whole rotation requested and its worker killed after a step: reaches claims held by a
    # stopped worker, and outcomes in the row, in few steps.
    st.tuples(st.just("refresh, worker killed"), st.booleans(), st.sampled_from(CRASH_POINTS)),
    st.tuples(st.just("deliver during a log outage"), st.integers(0, 5)),
    st.tuples(st.just("delete during a log outage"), st.booleans()),
    st.tuples(st.just("timer")),
    st.tuples(st.just("Entra refuses removals"), st.integers(1, 3)),
    # A whole rotation requested and worked while Entra ID refuses removals and/or never accepts
    # the new secret: reaches failed rotations and removals still owed in few steps.
    st.tuples(st.just("refresh under Entra faults"), st.booleans(), st.booleans(), st.integers(0, 2)),
    st.tuples(st.just("new secrets never work"), st.booleans()),
    # A rotation that fails while Entra ID refuses to remove its credential, then a DELETE (with
    # leaveCredentials or not): reaches a DELETE while a removal is owed in few steps.
    st.tuples(st.just("failed rotation, then DELETE"), st.booleans()),
)


class Lifecycle:
    """One application's registrations, requests and jobs (the host's messages, as it holds them)."""

    def __init__(self, rotator: Rotator) -> None:
        self.rotator = rotator
        self.entra_app = rotator.stack.entra.add_application("Lifecycle", passwords=[])
        self.config = ApplicationConfig.model_validate(
            {
                "appId": self.entra_app.app_id,
                "objectId": self.entra_app.object_id,
                "displayName": "Lifecycle",
                "rotation": {"enabled": True, "secretLifetimeDays": 21, "updateThresholdHours": 1},
            },
            strict=False,
        )
        self.accepted: set[str] = set()
        self.jobs: list[RotationJob] = []
        # The current and previous credentials of each registration a DELETE removed: destinations
        # may use them, so they stay.
        self.kept: set[str] = set()
        # What the log entry of a DELETE with leaveCredentials named: key ids, and rotation ids
        # (an unanswered addPassword's credential is named for its rotation).
        self.left_keys: set[str] = set()
        self.left_rotations: set[str] = set()

    @property
    def app_id(self) -> str:
        return str(self.entra_app.app_id)

    async def pull(self) -> None:
        """Messages on the queue into the host's hands (delivered by ``deliver``); those for the
        applications of earlier examples (which the timer still scans) are dropped."""
        client = self.rotator.services.queue_client(QUEUE_NAME)
        async for message in client.receive_messages(messages_per_page=32, visibility_timeout=5):
            job = parse_job(message.content)
            if job.app_id == self.app_id:
                self.jobs.append(job)
            await client.delete_message(message)

    async def register(self, enabled: bool = True) -> None:
        rotation = self.config.rotation.model_copy(update={"enabled": enabled})
        config = self.config.model_copy(update={"rotation": rotation})
        await self.rotator.services.registry.put(config, if_match=None, create_only=False)

    async def refresh(self, compromised: bool) -> None:
        try:
            outcome = await self.rotator.services.registry.request_refresh(
                self.app_id, compromised=compromised
            )
        except (NotFoundError, ConflictError):
            return  # not registered, or answered 409: nothing was promised
        self.accepted.add(outcome.rotation_id)  # 202
        await self.pull()

    async def delete(self, if_match: bool, leave: bool = False) -> None:
        registry, applications = self.rotator.services.registry, self.rotator.services.applications
        stored = await applications.find(self.app_id)
        if stored is None:
            return
        claimed = stored.status.in_progress is not None
        try:
            await registry.delete(
                self.app_id, if_match=stored.etag if if_match else None, leave_credentials=leave
            )
        except PreconditionFailed:
            return
        except ConflictError:
            now = (await applications.get(self.app_id)).status
            if claimed or now.in_progress is not None:
                event("DELETE refused: a rotation holds its claim")
            else:
                assert not leave, "a DELETE with leaveCredentials refused with no rotation claimed"
                assert stored.status.owes_removals() or now.owes_removals(), "a DELETE refused for no reason"
                event("DELETE refused: credentials wait for removal")
            return
        event("DELETE ended a queued rotation" if stored.status.pending else "DELETE")
        assert not claimed, "a DELETE removed an application whose rotation held its claim"
        assert await applications.find(self.app_id) is None
        self.kept |= {k for k in (stored.status.current_key_id, stored.status.previous_key_id) if k}
        if stored.status.owes_removals():
            assert leave, "a DELETE dropped credentials still to be removed"
            await self.note_what_was_left()

    async def note_what_was_left(self) -> None:
        """What the log entry of the DELETE that just left credentials in Entra ID names."""
        page = await self.rotator.services.rotation_log.list_page(self.app_id, 500, None)
        entry = next((e for e in page.items if e.event == CREDENTIALS_LEFT), None)
        assert entry is not None, "a DELETE left credentials without a log entry naming them"
        event("DELETE left credentials in Entra ID")
        self.left_keys |= set(entry.details["cleanupKeyIds"])
        self.left_rotations |= set(entry.details["unansweredRotationIds"])
        if entry.details["pendingRevocation"] is not None:
            # "All but" the compromised rotation's credential: every one of ours there now.
            self.left_keys |= {p.key_id for p in self.rotator.managed(self.entra_app)}

    async def deliver(self, index: int, keep_copy: bool, crash: str | None) -> None:
        if not self.jobs:
            return
        job = self.jobs[index % len(self.jobs)]
        if not keep_copy:
            self.jobs.remove(job)
        engine = self.rotator.services.engine if crash is None else engine_stopping_after(self.rotator, crash)
        try:
            event("job: " + re.sub("[0-9a-f-]{36}", "…", await engine.handle(job)))
        except WorkerStopped as stopped:
            event(f"worker killed after {stopped}")
            if not keep_copy:
                self.jobs.append(job)
        except RotatorError as error:
            event(f"job raised {type(error).__name__}")
            if not keep_copy:
                self.jobs.append(job)  # not acknowledged: the message is delivered again
        await self.pull()

    async def timer(self) -> None:
        self.rotator.clock.advance(timedelta(minutes=31))  # past any claim's lease
        await self.rotator.services.scanner.scan()
        await self.pull()

    async def outcomes(self) -> Counter[str]:
        page = await self.rotator.services.rotation_log.list_page(self.app_id, 500, None)
        return Counter(str(e.rotation_id) for e in page.items if e.event in TERMINAL_EVENTS)

    async def check_no_id_ended_twice(self, steps: Any) -> None:
        twice = [r for r, count in (await self.outcomes()).items() if count > 1]
        assert not twice, f"rotation ids with two terminal outcomes: {twice} after {steps}"

    async def drain(self) -> None:
        for _ in range(12):
            await self.timer()
            for _ in range(12):
                if not self.jobs:
                    break
                await self.deliver(0, False, None)
            stored = await self.rotator.services.applications.find(self.app_id)
            idle = stored is None or not (
                stored.status.in_progress or stored.status.pending or stored.status.owes_removals()
            )
            if idle and not self.jobs:
                return

    def check_nothing_stray(self, status: Any, steps: Any) -> None:
        """Every credential of the rotator's is the registration's current or previous one, or was
        when a DELETE removed the registration."""
        allowed = self.kept | self.left_keys
        if status is not None:
            allowed |= {k for k in (status.current_key_id, status.previous_key_id) if k}
        stray = [
            p.display_name
            for p in self.rotator.managed(self.entra_app)
            if p.key_id not in allowed and not any(r in (p.display_name or "") for r in self.left_rotations)
        ]
        assert not stray, f"credentials of the rotator's nobody traces: {stray} after {steps}"


async def run(
    stack: Any, azurite: str, monkeypatch: pytest.MonkeyPatch, steps: list[tuple[Any, ...]]
) -> None:
    stack.reset()
    async with rotator_with(stack, azurite, monkeypatch) as rotator:

        async def time_passes(seconds: float) -> None:  # the verification's waits, without waiting
            rotator.clock.advance(timedelta(seconds=seconds))

        rotator.services.sleep = time_passes
        await rotator.services.queue_client(QUEUE_NAME).clear_messages()
        life = Lifecycle(rotator)
        await life.register()
        for number, (kind, *args) in enumerate(steps):
            if kind == "refresh":
                await life.refresh(args[0])
            elif kind == "delete":
                if args[1]:
                    rotator.clock.advance(timedelta(minutes=31))
                await life.delete(args[0], args[2])
            elif kind == "refresh, worker killed":
                await life.refresh(args[0])
                await life.deliver(len(life.jobs) - 1, False, args[1])
            elif kind == "register":
                await life.register(args[0])
            elif kind == "deliver":
                await life.deliver(args[0], args[1], args[2])
            elif kind == "deliver during a log outage":
                async with rotation_log_unavailable(rotator):
                    await life.deliver(args[0], False, None)
            elif kind == "delete during a log outage":
                async with rotation_log_unavailable(rotator):
                    try:
                        await life.delete(False, args[0])
                    except RotatorError:
                        pass  # answered 503: nothing was removed
            elif kind == "refresh under Entra faults":
                compromised, never_works, refused = args
                stack.entra.broken_new_secrets = never_works
                if refused:
                    stack.entra.fail_next(refused, 403, method="POST", path=r"/removePassword$")
                await life.refresh(compromised)
                await life.deliver(len(life.jobs) - 1, False, None)
                stack.entra.broken_new_secrets = False
            elif kind == "failed rotation, then DELETE":
                stack.entra.broken_new_secrets = True
                stack.entra.fail_next(3, 403, method="POST", path=r"/removePassword$")
                await life.refresh(False)
                await life.deliver(len(life.jobs) - 1, False, None)
                stack.entra.broken_new_secrets = False
                await life.delete(False, args[0])
            elif kind == "Entra refuses removals":
                stack.entra.fail_next(args[0], 403, method="POST", path=r"/removePassword$")
            elif kind == "new secrets never work":
                stack.entra.broken_new_secrets = args[0]
            else:
                await life.timer()
            await life.check_no_id_ended_twice(steps[: number + 1])
        stack.entra.clear_faults()
        stack.entra.broken_new_secrets = False
        await life.drain()
        ended = await life.outcomes()
        missing = life.accepted - set(ended)
        assert not missing, f"accepted rotation ids without a terminal outcome: {missing} after {steps}"
        await life.check_no_id_ended_twice(steps)
        stored = await rotator.services.applications.find(life.app_id)
        if stored is not None:
            status = stored.status
            assert status.in_progress is None and status.pending is None and status.unlogged == [], steps
            assert not status.owes_removals(), steps
            current = [p for p in rotator.passwords(life.entra_app) if p.key_id == status.current_key_id]
            if current:  # the schedule follows Entra ID's end date for the current credential
                assert status.expires_at == current[0].end, steps
        life.check_nothing_stray(None if stored is None else stored.status, steps)


@generated(EXAMPLES)
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_every_accepted_rotation_ends_in_the_log_exactly_once(
    sim_stack: Any, azurite: str, clean_storage: None, monkeypatch: pytest.MonkeyPatch, steps: list[Any]
) -> None:
    asyncio.run(run(sim_stack, azurite, monkeypatch, steps))
