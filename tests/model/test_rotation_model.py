"""Model-based test of the rotation engine: generated interleavings against in-memory ports.

Hypothesis drives the real ``RotationEngine``, ``RegistryService`` and ``Scanner`` through the fakes
in ``tests.model.fakes`` with scheduled, manual and compromised requests (with and without the
foreign-credential opt-in), duplicate and re-delivered old jobs, a crash after any step,
429/5xx/timeouts/refusals on every port, lost addPassword answers, destinations that refuse,
capped applications and foreign credentials. After every step it checks:

I1  every destination holds a secret whose credential the rotator has not removed (or one that had
    expired when it was removed);
I2  ``currentKeyId`` (by creation order) and the generation never go back;
I3  every credential with the rotator's prefix is staged, or is being created or removed (named by
    the claim, or listed for clean-up);
I4  no foreign credential is removed without an opt-in;
I5  (after draining) every rotation id the API returned ends in the log with a terminal outcome,
    and no rotation id with two (crashes between a rotation's end and its log entry, and a log
    that refuses writes, included);
and that no rotation sends its notice twice.

``ROTATOR_MODEL_EXAMPLES`` sets the number of generated cases (default 1,000 in ``make test``).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from shared.adapters.retry import RetryPolicy
from shared.domain.models import ApplicationConfig, ApplicationStatus
from shared.domain.schedule import SchedulePolicy
from shared.errors import ConflictError, RotatorError
from shared.integrations.base import PluginRegistry
from shared.registry import RegistryService
from shared.rotation.engine import TERMINAL_EVENTS, EngineSettings, RotationEngine
from shared.rotation.scanner import LogOnlyAlerter, Scanner
from tests.model import fakes

PREFIX = "secret-rotator"
EARLY_RETIREMENT_EVENTS = (
    "credential.unusedEvidence",
    "credential.stillInUse",
    "credential.earlyRetirementWaiting",
    "credential.earlyRetirementUnavailable",
)
CLAIM_TIMEOUT = timedelta(minutes=30)
CHECKPOINTS = [
    "created",
    "staged_written",
    "staged",
    "verified",
    "deployed",
    "delivered",
    "retired",
    "notified",
    "outcome_written",
    "finished",
]
EXAMPLES = int(os.environ.get("ROTATOR_MODEL_EXAMPLES", "1000"))


class RotationModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.accepted: set[str] = set()
        self.revoke_opt_in = False
        self.current_seq = 0
        self.generation = 0
        self.crash_at: str | None = None

    # --- set-up -------------------------------------------------------------------------------------
    @initialize(
        seed=st.integers(0, 2**32),
        capped=st.booleans(),
        foreign=st.integers(0, 2),
        retire_unmanaged=st.booleans(),
        destinations=st.integers(0, 2),
        policy_days=st.sampled_from([None, None, 1, 2]),
        policy_readable=st.booleans(),
        early_retirement=st.sampled_from([None, 24]),
        sign_ins_readable=st.booleans(),
    )
    def setup(
        self,
        seed: int,
        capped: bool,
        foreign: int,
        retire_unmanaged: bool,
        destinations: int,
        policy_days: int | None,
        policy_readable: bool,
        early_retirement: int | None,
        sign_ins_readable: bool,
    ) -> None:
        self.clock = fakes.Clock()
        self.faults = fakes.Faults(seed)
        self.directory = fakes.Directory(self.clock, self.faults)
        self.directory.max_lifetime = timedelta(days=policy_days) if policy_days else None
        self.directory.policy_readable = policy_readable
        self.staging = fakes.Staging(self.faults)
        policy = SchedulePolicy(claim_timeout=CLAIM_TIMEOUT, requeue_after=CLAIM_TIMEOUT)
        self.applications = fakes.Applications(policy)
        self.queue = fakes.Queue()
        self.events = fakes.Events(self.clock)
        self.destinations = fakes.Destinations(self.faults)
        self.notifier = fakes.Notifier(self.faults)
        plugins = PluginRegistry()
        plugins.register(self.destinations)
        self.app = self.directory.add_app("AzureADandPersonalMicrosoftAccount" if capped else "AzureADMyOrg")
        for index in range(foreign):
            seeded = self.directory.seed_password(
                self.app, f"hand-made-{index}", self.clock() + timedelta(days=30)
            )
            if index == 0:
                for name in [f"dest-{n}" for n in range(destinations)]:
                    self.destinations.held[name] = seeded.secret
        self.retire_unmanaged = retire_unmanaged
        self.sign_ins = fakes.SignIns()
        self.sign_ins.readable = sign_ins_readable
        self.early_retirement = early_retirement
        config = ApplicationConfig.model_validate(
            {
                "appId": self.app.app_id,
                "objectId": self.app.object_id,
                "displayName": "Model app",
                "rotation": {
                    "enabled": True,
                    "secretLifetimeDays": 3,
                    "updateThresholdHours": 2,
                    "retireUnmanagedCredentials": retire_unmanaged,
                    "retireUnusedPreviousAfterHours": early_retirement,
                },
                "integrations": [
                    {"kind": "keyVault", "name": f"dest-{n}", "vaultUrl": "https://d.vault.azure.net"}
                    for n in range(destinations)
                ],
            },
            strict=False,
        )
        self.config = config
        self.loop.run_until_complete(self.applications.create(config, ApplicationStatus(), self.clock()))

        async def sleep(seconds: float) -> None:
            self.clock.advance(timedelta(seconds=seconds))

        def checkpoint(step: str) -> None:
            if self.crash_at == step:
                self.crash_at = None
                raise fakes.Crash(step)

        self.engine = RotationEngine(
            applications=self.applications,
            events=self.events,
            directory=self.directory,
            verifier=fakes.Verifier(self.directory, self.faults),
            staging=self.staging,
            plugins=plugins,
            notifier=self.notifier,
            settings=EngineSettings(
                credential_prefix=PREFIX,
                claim_timeout=CLAIM_TIMEOUT,
                verify_timeout_seconds=30,
                retry_policy=RetryPolicy(attempts=3, base_delay=0.1, max_delay=1),
            ),
            clock=self.clock,
            sleep=sleep,
            checkpoint=checkpoint,
            sign_ins=self.sign_ins,
        )
        self.registry = RegistryService(
            self.applications,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            self.queue,  # type: ignore[arg-type]
            self.clock,
            events=self.events,
        )
        self.scanner = Scanner(
            self.applications,  # type: ignore[arg-type]
            self.queue,  # type: ignore[arg-type]
            policy,
            LogOnlyAlerter(self.events),  # type: ignore[arg-type]
            self.clock,
            events=self.events,
        )

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        try:
            if hasattr(self, "engine"):
                self.drain()
                self.check_terminal_outcomes()
        finally:
            self.loop.close()

    # --- rules ----------------------------------------------------------------------------------------
    @rule(compromised=st.booleans(), revoke=st.booleans())
    def refresh(self, compromised: bool, revoke: bool) -> None:
        revoke = revoke and compromised
        try:
            outcome = self.run(
                self.registry.request_refresh(
                    self.app.app_id, compromised=compromised, revoke_unmanaged=revoke
                )
            )
        except ConflictError:
            return
        self.accepted.add(outcome.rotation_id)
        if revoke:
            self.revoke_opt_in = True

    @rule()
    def scan(self) -> None:
        self.run(self.scanner.scan())

    @rule(compromised=st.booleans())
    def refresh_and_work_the_queue(self, compromised: bool) -> None:
        """A whole rotation in one step (faults still apply), so cases reach many rotations."""
        self.refresh(compromised, False)
        for _ in range(6):
            if not self.queue.jobs:
                break
            self.deliver(0, False, None)

    @rule(hours=st.sampled_from([6, 25]))
    def the_timer_runs_for(self, hours: int) -> None:
        """Hours of hourly timer passes, each job worked (faults still apply): reaches the
        maintenance passes (retries, retirement, early retirement) in few steps."""
        for _ in range(hours):
            self.clock.advance(timedelta(hours=1))
            self.scan()
            for _ in range(6):
                if not self.queue.jobs:
                    break
                self.deliver(0, False, None)

    @precondition(lambda self: bool(self.queue.jobs))
    @rule(
        index=st.integers(0, 10),
        keep_copy=st.booleans(),
        crash=st.one_of(st.none(), st.none(), st.sampled_from(CHECKPOINTS)),
    )
    def deliver(self, index: int, keep_copy: bool, crash: str | None) -> None:
        job = self.queue.jobs[index % len(self.queue.jobs)]
        if not keep_copy:  # keep_copy: the same message is delivered again later (at-least-once)
            self.queue.jobs.remove(job)
        self.crash_at = crash
        try:
            self.run(self.engine.handle(job))
        except fakes.Crash:
            self.queue.jobs.append(job)  # the host makes the message visible again
        except RotatorError:
            self.queue.jobs.append(job)  # raised to have the job retried
        finally:
            self.crash_at = None

    @precondition(lambda self: bool(self.queue.jobs))
    @rule(index=st.integers(0, 10))
    def the_host_gives_up_a_job(self, index: int) -> None:
        """The job's delivery count ran out (the host moves it to the poison queue): whatever it
        left (a pending rotation, a claim, outcomes the log lacks) is the timer's to finish."""
        self.queue.jobs.pop(index % len(self.queue.jobs))

    @precondition(lambda self: bool(self.queue.history))
    @rule(index=st.integers(0, 50))
    def redeliver_an_old_job(self, index: int) -> None:
        self.queue.jobs.append(self.queue.history[index % len(self.queue.history)])

    @rule(minutes=st.sampled_from([1, 16, 31, 120, 24 * 60]))
    def time_passes(self, minutes: int) -> None:
        self.clock.advance(timedelta(minutes=minutes))

    @rule(rate=st.sampled_from([0.0, 0.0, 0.1, 0.3]))
    def set_fault_rate(self, rate: float) -> None:
        self.faults.rate = rate

    @precondition(lambda self: bool(self.config.integrations))
    @rule(index=st.integers(0, 1))
    def toggle_broken_destination(self, index: int) -> None:
        name = self.config.integrations[index % len(self.config.integrations)].name
        assert name is not None
        self.destinations.broken ^= {name}

    @precondition(lambda self: bool(self.app.passwords))
    @rule(index=st.integers(0, 5))
    def a_consumer_signs_in(self, index: int) -> None:
        """Any consumer, configured or not, signs in with one of the application's credentials."""
        password = self.app.passwords[index % len(self.app.passwords)]
        if password.end > self.clock():
            self.sign_ins.uses[password.key_id.lower()] = self.clock()

    @rule()
    def lose_the_next_staged_write(self) -> None:
        self.staging.lose_next_write = True

    @rule(writes=st.integers(1, 3))
    def the_log_refuses_outcomes(self, writes: int) -> None:
        """The rotation log is unavailable for the next ``writes`` terminal outcomes."""
        self.events.fail_settles = writes

    # --- invariants -----------------------------------------------------------------------------------
    def status(self) -> ApplicationStatus:
        return self.applications.rows[self.app.app_id].status

    @invariant()
    def i1_destinations_hold_credentials_that_were_not_removed(self) -> None:
        if not hasattr(self, "destinations"):
            return
        removed = {p.secret: (p, at) for p, at in self.directory.removed}
        for name, secret in self.destinations.held.items():
            if secret in removed:
                password, at = removed[secret]
                assert password.end <= at, f"{name} holds a credential the rotator removed while it worked"

    @invariant()
    def i2_current_key_and_generation_never_go_back(self) -> None:
        if not hasattr(self, "applications"):
            return
        status = self.status()
        assert status.generation >= self.generation
        self.generation = status.generation
        if status.current_key_id:
            seq = next((p.seq for p in self.all_passwords() if p.key_id == status.current_key_id), None)
            if seq is not None:
                assert seq >= self.current_seq, "currentKeyId moved back to an older credential"
                self.current_seq = seq

    @invariant()
    def i3_every_credential_of_ours_is_staged_or_being_handled(self) -> None:
        if not hasattr(self, "applications"):
            return
        status = self.status()
        claim = status.in_progress
        staged = self.staging.staged_key_ids()
        for password in self.app.passwords:
            if not (password.display_name or "").startswith(PREFIX + ":"):
                continue
            handled = (
                password.key_id in staged
                or password.key_id in status.cleanup_key_ids
                or (
                    claim is not None
                    and (
                        claim.key_id == password.key_id
                        or password.display_name == f"{PREFIX}:{claim.rotation_id}"
                    )
                )
            )
            assert handled, f"stray credential {password.display_name}"

    @invariant()
    def i4_no_foreign_credential_removed_without_opt_in(self) -> None:
        if not hasattr(self, "directory"):
            return
        for password, at in self.directory.removed:
            if (password.display_name or "").startswith(PREFIX + ":"):
                continue
            expired_opt_in = self.retire_unmanaged and password.end <= at
            assert expired_opt_in or self.revoke_opt_in, f"foreign credential {password.display_name} removed"

    @invariant()
    def i5_early_retirement_only_on_evidence_of_disuse(self) -> None:
        """A credential retired early (opted in) had not signed in for the configured hours."""
        if not hasattr(self, "events"):
            return
        for entry in self.events.entries:
            if entry.event in EARLY_RETIREMENT_EVENTS:
                event(entry.event)  # --hypothesis-show-statistics: how often cases get here
            if entry.event != "credential.unusedEvidence":
                continue
            assert self.early_retirement is not None and self.sign_ins.readable
            used = self.sign_ins.uses.get(str(entry.key_id).lower())
            quiet = timedelta(hours=self.early_retirement)
            assert used is None or used + quiet <= entry.at, "retired early while still in use"

    @invariant()
    def notices_are_sent_at_most_once(self) -> None:
        if not hasattr(self, "notifier"):
            return
        assert len(self.notifier.sent) == len(set(self.notifier.sent))

    # --- the end --------------------------------------------------------------------------------------
    def all_passwords(self) -> list[fakes.Password]:
        return [*self.app.passwords, *(p for p, _ in self.directory.removed)]

    def drain(self) -> None:
        """No more faults or crashes: let the timer and the workers finish everything."""
        self.faults.rate = 0
        self.destinations.broken.clear()
        self.staging.lose_next_write = False
        self.events.fail_settles = 0
        for _ in range(12):
            self.clock.advance(CLAIM_TIMEOUT + timedelta(minutes=1))
            self.run(self.scanner.scan())
            for _ in range(20):
                if not self.queue.jobs:
                    break
                job = self.queue.jobs.pop(0)
                try:
                    self.run(self.engine.handle(job))
                except RotatorError:
                    self.queue.jobs.append(job)
            status = self.status()
            idle = status.in_progress is None and status.pending is None and not status.unlogged
            if idle and not self.queue.jobs:
                break
        self.i1_destinations_hold_credentials_that_were_not_removed()
        self.i3_every_credential_of_ours_is_staged_or_being_handled()

    def check_terminal_outcomes(self) -> None:
        ended = Counter(e.rotation_id for e in self.events.entries if e.event in TERMINAL_EVENTS)
        missing = self.accepted - set(ended)
        assert not missing, f"accepted rotations without a terminal outcome: {sorted(missing)}"
        twice = sorted(str(r) for r, count in ended.items() if count > 1)
        assert not twice, f"rotations with more than one terminal outcome: {twice}"
        status = self.status()
        assert status.in_progress is None and status.pending is None


RotationModel.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=os.environ.get("ROTATOR_MODEL_RANDOM") != "1",
)
TestRotationModel = RotationModel.TestCase
