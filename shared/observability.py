"""Telemetry: Application Insights through OpenTelemetry, rotation metrics, and a secret guard.

Who configures the exporter
    In Azure the deployment sets ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true``: the Functions
    Python worker then calls ``configure_azure_monitor()`` itself, before it loads the app.
    Configuring it a second time in code is unsupported (double instrumentation), so
    ``configure_telemetry()`` only does it when the worker does not: a connection string is set and
    that variable is not ``true`` (a self-hosted run, or an older worker). Either way it guards the
    OpenTelemetry log handlers it finds with ``SecretFilter`` and lets the ``rotator`` loggers
    emit INFO, which rotation events are logged at.

What is recorded
    Logs: every rotation event (``shared.rotation.events``) is one record on ``rotator.events``
    whose ``extra`` becomes AppTraces ``Properties``: ``event``, ``appId``, ``rotationId``,
    ``step``, ``integration``, ``outcome``, ``code``, ``keyId``, ``durationMs``.
    Metrics (meter ``rotator``; AppMetrics ``Name``):

    ======================== ========= ============================================
    ``rotations.succeeded``  counter   attribute ``result``: succeeded / degraded
    ``rotations.failed``     counter   ``step``, ``code``
    ``integrations.failed``  counter   ``integration``, ``code``
    ``integration.duration`` histogram ms; ``integration``, ``outcome``
    ``secrets.expiring``     gauge     ``withinDays``: registered apps whose secret expires within it
    ======================== ========= ============================================

    Metric attributes stay low-cardinality on purpose (no app or rotation ids): per-application
    questions are answered from the events in AppTraces (see docs/operations.md).

The secret guard
    Nothing in the rotator logs a secret: ``SecretValue`` renders as ``***``. As a second line of
    defence, secrets the process is handling can be registered (``register_secret``); a log record
    whose message, arguments, extra fields or exception text contains one is refused by
    ``SecretFilter`` before any exporter sees it, and counted in ``telemetry.records.withheld``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, Meter, MeterProvider, Observation

    from shared.domain.secret import SecretValue
    from shared.storage.applications import ApplicationStore
    from shared.storage.expiry_index import ExpiryIndex

logger = logging.getLogger("rotator.telemetry")
# Same logger as the rotation events, so the expiry records sit next to them in AppTraces.
events_logger = logging.getLogger("rotator.events")

LOGGER_NAME = "rotator"
METER_NAME = "rotator"
WORKER_TELEMETRY_SETTING = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"
CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
DEFAULT_EXPIRY_WINDOW_DAYS = 7
EXPIRY_REPORT_TASK = "expiry-report"

# Attributes of a LogRecord that are not "extra" fields (the logging module's own).
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


# --------------------------------------------------------------------------- configuration

_configure_lock = threading.Lock()
_mode: str | None = None


def configure_telemetry(environ: Mapping[str, str] | None = None) -> str:
    """Set up telemetry once per process; returns how: ``azure-monitor``, ``worker`` or ``off``.

    Cheap when telemetry is off (no import of the distro), so it may run at module import.
    """
    global _mode
    env = os.environ if environ is None else environ
    with _configure_lock:
        if _mode is not None:
            return _mode
        # The rotator's INFO records (rotation events) must reach the handlers whoever installed them.
        rotator_logger = logging.getLogger(LOGGER_NAME)
        if rotator_logger.level == logging.NOTSET:
            rotator_logger.setLevel(logging.INFO)
        if not env.get(CONNECTION_STRING_SETTING, "").strip():
            _mode = "off"
        elif env.get(WORKER_TELEMETRY_SETTING, "").strip().lower() == "true":
            _mode = "worker"
        else:
            _configure_azure_monitor(env)
            _mode = "azure-monitor"
        guarded = guard_telemetry_handlers()
        logger.info("telemetry: %s (%d log handlers guarded)", _mode, guarded)
        return _mode


def _configure_azure_monitor(env: Mapping[str, str]) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor

    options: dict[str, Any] = {
        "connection_string": env[CONNECTION_STRING_SETTING],
        "logger_name": LOGGER_NAME,
        # Live Metrics would stream unsampled request details; the rotator does not need it.
        "enable_live_metrics": False,
    }
    if "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" not in env:
        # The component refuses key-only ingestion (DisableLocalAuth): send with the rotator's
        # identity. (With the authentication string set, the exporter builds this itself.)
        client_id = env.get("ROTATOR_MANAGED_IDENTITY_CLIENT_ID") or None
        if env.get("IDENTITY_ENDPOINT") or env.get("MSI_ENDPOINT"):
            from azure.identity import ManagedIdentityCredential

            options["credential"] = ManagedIdentityCredential(client_id=client_id)
    configure_azure_monitor(**options)


def guard_telemetry_handlers(loggers: Iterable[str] = ("", LOGGER_NAME)) -> int:
    """Put ``SECRET_FILTER`` on every OpenTelemetry log handler of these loggers; returns how many."""
    count = 0
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            if type(handler).__module__.startswith("opentelemetry") or isinstance(handler, GuardedHandler):
                guard_handler(handler)
                count += 1
    return count


def guard_handler(handler: logging.Handler) -> logging.Handler:
    """Add the secret filter to one handler (idempotent); returns the handler."""
    if SECRET_FILTER not in handler.filters:
        handler.addFilter(SECRET_FILTER)
    return handler


class GuardedHandler(logging.Handler):
    """Marker base for project handlers that ``guard_telemetry_handlers`` must also guard."""


# --------------------------------------------------------------------------- the secret guard


class SecretRegistry:
    """Secret texts this process handles right now, forgotten after ``ttl`` (bounded in size)."""

    def __init__(self, *, ttl: timedelta = timedelta(minutes=30), limit: int = 256) -> None:
        self._ttl = ttl.total_seconds()
        self._limit = limit
        self._secrets: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def register(self, secret: SecretValue | str) -> None:
        text = secret if isinstance(secret, str) else secret.reveal()
        # Very short values would match ordinary text; real client secrets are 40 characters.
        if len(text) < 8:
            return
        with self._lock:
            self._secrets[text] = time.monotonic() + self._ttl
            self._secrets.move_to_end(text)
            while len(self._secrets) > self._limit:
                self._secrets.popitem(last=False)

    def forget(self, secret: SecretValue | str) -> None:
        text = secret if isinstance(secret, str) else secret.reveal()
        with self._lock:
            self._secrets.pop(text, None)

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()

    def active(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            for text in [t for t, until in self._secrets.items() if until <= now]:
                del self._secrets[text]
            return list(self._secrets)

    def found_in(self, texts: Iterable[str]) -> bool:
        secrets = self.active()
        if not secrets:
            return False
        return any(secret in text for text in texts for secret in secrets)


SECRETS = SecretRegistry()


def register_secret(secret: SecretValue | str) -> None:
    """Let the guard refuse any log record that would carry this secret (for ``ttl``)."""
    SECRETS.register(secret)


class SecretFilter(logging.Filter):
    """Refuses a record whose message, args, extra fields or exception text holds a registered secret."""

    def __init__(self, registry: SecretRegistry | None = None) -> None:
        super().__init__()
        self._registry = registry or SECRETS

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_urls(record)
        if not self._registry.active():
            return True  # the common case: nothing registered, nothing to compare
        if not self._registry.found_in(_record_texts(record)):
            return True
        _count_withheld(record.name)
        return False


SECRET_FILTER = SecretFilter()


def _redact_urls(record: logging.LogRecord) -> None:
    """Credential-bearing URLs in a record's message and arguments, redacted in place (a URL's
    userinfo, query and token-like path never reach a log: ``shared.redaction``)."""
    from shared.redaction import redact_text

    if isinstance(record.msg, str) and "://" in record.msg:
        record.msg = redact_text(record.msg)
    if isinstance(record.args, tuple) and any(isinstance(a, str) and "://" in a for a in record.args):
        record.args = tuple(redact_text(a) if isinstance(a, str) and "://" in a else a for a in record.args)


def _record_texts(record: logging.LogRecord) -> Iterable[str]:
    yield str(record.msg)
    args: Any = record.args
    values: Iterable[Any] = (
        args.values() if isinstance(args, Mapping) else args if isinstance(args, tuple) else (args,)
    )
    for value in values:
        yield _safe_str(value)
    try:
        yield record.getMessage()
    except Exception:  # noqa: BLE001, S110 - a broken format string is the handler's problem
        pass
    for key, value in vars(record).items():
        if key not in _RECORD_ATTRS:
            yield _safe_str(value)
    if record.exc_info and record.exc_info[1] is not None:
        yield "".join(traceback.format_exception(*record.exc_info))
    if record.exc_text:
        yield record.exc_text
    if record.stack_info:
        yield record.stack_info


def _safe_str(value: Any) -> str:
    try:
        return value if isinstance(value, str) else str(value)
    except Exception:  # noqa: BLE001 - a value that cannot render cannot leak either
        return ""


# --------------------------------------------------------------------------- metrics


@dataclass
class _Instruments:
    succeeded: Counter
    failed: Counter
    integrations_failed: Counter
    integration_duration: Histogram
    withheld: Counter


@dataclass(frozen=True)
class ExpirySnapshot:
    count: int
    within_days: int
    measured_at: datetime


_instruments: _Instruments | None = None
_meter_provider: MeterProvider | None = None
_instruments_lock = threading.Lock()
_expiring: ExpirySnapshot | None = None


def bind_meter_provider(provider: MeterProvider | None) -> None:
    """Use this provider instead of the global one (tests); None goes back to the global one."""
    global _instruments, _meter_provider
    with _instruments_lock:
        _meter_provider = provider
        _instruments = None


def _meter() -> Meter:
    from opentelemetry import metrics

    provider = _meter_provider or metrics.get_meter_provider()
    return provider.get_meter(METER_NAME)


def _get_instruments() -> _Instruments:
    global _instruments
    with _instruments_lock:
        if _instruments is None:
            meter = _meter()
            _instruments = _Instruments(
                succeeded=meter.create_counter(
                    "rotations.succeeded", unit="{rotation}", description="Rotations that finished"
                ),
                failed=meter.create_counter(
                    "rotations.failed", unit="{rotation}", description="Rotations that failed"
                ),
                integrations_failed=meter.create_counter(
                    "integrations.failed",
                    unit="{delivery}",
                    description="Deliveries of a new secret to an integration that failed",
                ),
                integration_duration=meter.create_histogram(
                    "integration.duration", unit="ms", description="Time to deploy and verify one integration"
                ),
                withheld=meter.create_counter(
                    "telemetry.records.withheld",
                    unit="{record}",
                    description="Log records refused because they contained a secret",
                ),
            )
            meter.create_observable_gauge(
                "secrets.expiring",
                callbacks=[_observe_expiring],
                unit="{secret}",
                description="Registered applications whose current secret expires within withinDays",
            )
        return _instruments


def record_event_metrics(event: str, dimensions: Mapping[str, Any]) -> None:
    """Count one rotation event; ``dimensions`` are the event's telemetry fields (camelCase).

    Called by ``EventRecorder.record`` for every event; never raises (telemetry must not break a
    rotation).
    """
    try:
        _record(event, dimensions)
    except Exception as error:  # noqa: BLE001 - telemetry is best effort
        logger.debug("metrics for %s not recorded: %s", event, type(error).__name__)


def _record(event: str, dimensions: Mapping[str, Any]) -> None:
    if event not in ("rotation.completed", "rotation.failed", "integration.failed", "integration.deployed"):
        return
    instruments = _get_instruments()

    def attrs(*names: str) -> dict[str, str]:
        return {name: str(dimensions[name]) for name in names if dimensions.get(name) is not None}

    if event == "rotation.completed":
        result = "degraded" if dimensions.get("outcome") not in (None, "ok") else "succeeded"
        instruments.succeeded.add(1, {"result": result})
    elif event == "rotation.failed":
        instruments.failed.add(1, attrs("step", "code"))
    else:
        if event == "integration.failed":
            instruments.integrations_failed.add(1, attrs("integration", "code"))
        duration = dimensions.get("durationMs")
        if isinstance(duration, int | float) and not isinstance(duration, bool):
            outcome = "failed" if event == "integration.failed" else "succeeded"
            instruments.integration_duration.record(
                float(duration), {**attrs("integration"), "outcome": outcome}
            )


def _count_withheld(logger_name: str) -> None:
    try:
        _get_instruments().withheld.add(1, {"logger": logger_name})
    except Exception:  # noqa: BLE001, S110 - counting must never break logging
        pass


def set_expiring_secrets(count: int, within_days: int, measured_at: datetime) -> None:
    """The value ``secrets.expiring`` reports until the next measurement."""
    global _expiring
    _get_instruments()  # make sure the gauge exists, so the exporter collects it
    _expiring = ExpirySnapshot(count, within_days, measured_at)


def expiring_secrets() -> ExpirySnapshot | None:
    return _expiring


def _observe_expiring(options: Any) -> Iterable[Observation]:
    from opentelemetry.metrics import Observation

    snapshot = _expiring
    if snapshot is None:
        return []
    return [Observation(snapshot.count, {"withinDays": snapshot.within_days})]


async def report_expiring_secrets(
    applications: ApplicationStore,
    index: ExpiryIndex,
    now: datetime,
    within_days: int = DEFAULT_EXPIRY_WINDOW_DAYS,
    *,
    min_interval: timedelta = timedelta(hours=1),
) -> int:
    """Count registered applications whose current secret expires within ``within_days`` (or has
    expired), publish the count as ``secrets.expiring`` and log a ``secret.expiring`` record for
    each application that entered the window, or was written while in it (leaving it included),
    since the last count
    (AppTraces; see docs/operations.md). The count reads only what changed (``shared.expiry``).

    The timer calls this every 15 minutes; it measures at most once per ``min_interval`` across
    every instance (a turn row in storage, ``ApplicationStore.take_turn``; the others report the
    count that turn recorded).

    A record is a warning when the secret will not be rotated in time by itself: rotation is off or
    the application is disabled, the last rotation failed, or the secret has already expired.
    """
    taken, last = await applications.take_turn(EXPIRY_REPORT_TASK, now, min_interval)
    if not taken:
        # Another instance (or an earlier run) measured within the interval: report its count.
        recorded, days = last.get("Count"), last.get("WithinDays")
        if isinstance(recorded, int) and days == within_days:
            set_expiring_secrets(recorded, within_days, _last_run(last, now))
            return recorded
        return _expiring.count if _expiring is not None else 0
    from shared import expiry

    measurement = await expiry.measure(applications, index, now, within_days, last)
    for item in measurement.entered:
        row = item.row
        expires = row.expires_at.isoformat() if row.expires_at else ""
        events_logger.log(
            logging.WARNING if item.at_risk else logging.INFO,
            "secret.expiring: %s's secret expires %s",
            row.display_name,
            expires,
            extra={
                "event": "secret.expiring",
                "appId": row.app_id,
                "expiresAt": expires,
                "withinDays": within_days,
                "rotationEnabled": row.rotation_scheduled,
                "lastResult": row.last_result,
                "atRisk": item.at_risk,
                "outcome": "warning" if item.at_risk else "ok",
            },
        )
    set_expiring_secrets(measurement.count, within_days, now)
    await applications.record_turn(
        EXPIRY_REPORT_TASK,
        {
            "Count": measurement.count,
            "WithinDays": within_days,
            "AsOf": measurement.as_of,
            "Layout": expiry.LAYOUT,
        },
    )
    if measurement.consumed:
        try:
            await applications.delete_rows(measurement.consumed)
        except Exception as error:  # noqa: BLE001 - leftovers are older than AsOf: never read again
            logger.info("consumed expiry changes not deleted: %s", type(error).__name__)
    logger.info(
        "expiry.measured: %d expiring, %d rows read%s",
        measurement.count,
        measurement.rows_read,
        " (first walk)" if measurement.walked else "",
        extra={
            "event": "expiry.measured",
            "count": measurement.count,
            "rowsRead": measurement.rows_read,
            "walked": measurement.walked,
        },
    )
    return measurement.count


def _last_run(entity: Mapping[str, Any], default: datetime) -> datetime:
    value = entity.get("LastRun")
    return value if isinstance(value, datetime) else default


def _reset_for_tests() -> None:
    """Forget the configuration mode, instruments, snapshot and registered secrets."""
    global _mode, _expiring
    with _configure_lock:
        _mode = None
    bind_meter_provider(None)
    _expiring = None
    SECRETS.clear()


__all__ = [
    "DEFAULT_EXPIRY_WINDOW_DAYS",
    "SECRETS",
    "SECRET_FILTER",
    "SecretFilter",
    "SecretRegistry",
    "bind_meter_provider",
    "configure_telemetry",
    "expiring_secrets",
    "guard_handler",
    "guard_telemetry_handlers",
    "record_event_metrics",
    "register_secret",
    "report_expiring_secrets",
    "set_expiring_secrets",
]
