"""Telemetry: rotation events reach OpenTelemetry (in-memory exporters) with their dimensions and never
a secret; metrics count what happened; the secret guard refuses records carrying a registered secret;
telemetry is configured once and never doubles the worker's; the operator's KQL parses."""

# ruff: noqa: F811 - fixtures imported from tests/notifications/conftest.py are parameters here

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared import observability
from shared.domain.models import LogLevel
from shared.rotation.events import EventRecorder
from shared.storage.applications import ApplicationStore

# The email rotator's fixtures (the tests below drive real rotations through them).
from tests.notifications.conftest import EmailRotator, acs, acs_sim, email_rotator, stack  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
PLANTED = "planted-SECRET-value-0123456789~abcdefXYZ"


@dataclass
class Telemetry:
    logs: Any
    metrics: Any

    def records(self) -> list[Any]:
        return [readable.log_record for readable in self.logs.get_finished_logs()]

    def events(self) -> list[dict[str, Any]]:
        return [dict(r.attributes or {}) for r in self.records() if (r.attributes or {}).get("event")]

    def everything_exported(self) -> str:
        return "\n".join(f"{r.body!r} {dict(r.attributes or {})!r}" for r in self.records())

    def metric_points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        points: list[Any] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points


@pytest.fixture
def telemetry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    """The rotator's logs through an OpenTelemetry LoggingHandler (guarded as configure_telemetry
    guards the distro's), metrics through an in-memory reader."""
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    observability._reset_for_tests()
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = observability.guard_handler(LoggingHandler(logger_provider=provider))
    rotator_logger = logging.getLogger("rotator")
    previous_level = rotator_logger.level
    rotator_logger.setLevel(logging.INFO)
    rotator_logger.addHandler(handler)
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    observability.bind_meter_provider(meter_provider)

    # EventRecorder.record calls record_event_metrics once wired; until then, stand in for that call.
    import shared.rotation.events as events_module

    original = EventRecorder.record

    async def record(
        self: EventRecorder, app_id: str, rotation_id: str | None, event: str, message: str, **fields: Any
    ) -> None:
        await original(self, app_id, rotation_id, event, message, **fields)
        level = fields.get("level", LogLevel.INFO)
        observability.record_event_metrics(
            event,
            {
                "appId": app_id,
                "rotationId": rotation_id,
                "step": fields.get("step"),
                "integration": fields.get("integration"),
                "outcome": level.value if level != LogLevel.INFO else "ok",
                "code": fields.get("code"),
                "durationMs": fields.get("duration_ms"),
            },
        )

    if not hasattr(events_module, "record_event_metrics"):
        monkeypatch.setattr(EventRecorder, "record", record)
    try:
        yield Telemetry(exporter, reader)
    finally:
        rotator_logger.removeHandler(handler)
        rotator_logger.setLevel(previous_level)
        observability._reset_for_tests()
        provider.shutdown()
        meter_provider.shutdown()


def counter_total(telemetry: Telemetry, name: str, **attributes: str) -> float:
    return sum(
        point.value
        for point in telemetry.metric_points(name)
        if all(point.attributes.get(k) == v for k, v in attributes.items())
    )


async def test_rotation_events_carry_their_dimensions_and_never_the_secret(
    email_rotator: EmailRotator, telemetry: Telemetry
) -> None:
    entra_app = email_rotator.seed_entra_app()
    destination = email_rotator.stack.keyvaults["destination"].url
    await email_rotator.register_app(
        entra_app,
        notifications={"includeSecretInEmail": True, "acknowledgeSecretInEmailRisk": True},
        integrations=[{"kind": "keyVault", "name": "payroll-kv", "vaultUrl": destination}],
    )
    job = email_rotator.job(entra_app.app_id)
    assert await email_rotator.services.engine.handle(job) == "rotated"

    events = telemetry.events()
    names = [e["event"] for e in events]
    for expected in (
        "rotation.started",
        "secret.created",
        "secret.staged",
        "secret.verified",
        "integration.deployed",
        "notification.sent",
        "rotation.completed",
    ):
        assert expected in names
    for event in events:
        if event["event"] == "scan.completed":
            continue
        assert event["appId"] == entra_app.app_id
        assert event["rotationId"] == job.rotation_id
        assert event["outcome"] in ("ok", "warning", "error")
        assert "step" in event
    deployed = next(e for e in events if e["event"] == "integration.deployed")
    assert deployed["integration"] == "payroll-kv" and deployed["step"] == "deploy"
    assert isinstance(deployed["durationMs"], int) and deployed["durationMs"] >= 0
    assert next(e for e in events if e["event"] == "rotation.completed")["outcome"] == "ok"

    # The secret went out in the (opted-in) email, and nowhere into telemetry.
    secret = email_rotator.staged_secret(entra_app.app_id)
    assert secret in (email_rotator.acs.outbox()[0].plain_text or "")
    assert secret not in telemetry.everything_exported()
    assert counter_total(telemetry, "telemetry.records.withheld") == 0

    assert counter_total(telemetry, "rotations.succeeded", result="succeeded") == 1
    assert counter_total(telemetry, "rotations.failed") == 0
    [duration] = telemetry.metric_points("integration.duration")
    assert duration.count == 1 and dict(duration.attributes) == {
        "integration": "payroll-kv",
        "outcome": "succeeded",
    }


async def test_failures_are_counted_with_step_code_and_integration(
    email_rotator: EmailRotator, telemetry: Telemetry
) -> None:
    email_rotator.stack.keyvaults["destination"].deny_access = True
    degraded = email_rotator.seed_entra_app()
    await email_rotator.register_app(
        degraded,
        integrations=[
            {
                "kind": "keyVault",
                "name": "payroll-kv",
                "vaultUrl": email_rotator.stack.keyvaults["destination"].url,
            }
        ],
    )
    assert await email_rotator.services.engine.handle(email_rotator.job(degraded.app_id)) == "rotated"
    gone = email_rotator.stack.entra.add_application("Gone API")
    await email_rotator.register_app(gone)
    email_rotator.stack.entra.remove_application(gone.object_id)
    assert await email_rotator.services.engine.handle(email_rotator.job(gone.app_id)) == "failed"

    assert counter_total(telemetry, "rotations.succeeded", result="degraded") == 1
    assert counter_total(telemetry, "integrations.failed", integration="payroll-kv") == 1
    assert counter_total(telemetry, "rotations.failed", code="NotFound") == 1
    failed = next(e for e in telemetry.events() if e["event"] == "rotation.failed")
    assert failed["appId"] == gone.app_id and failed["outcome"] == "error" and failed["code"] == "NotFound"
    integration_failed = next(e for e in telemetry.events() if e["event"] == "integration.failed")
    assert integration_failed["integration"] == "payroll-kv" and "durationMs" in integration_failed
    [duration] = telemetry.metric_points("integration.duration")
    assert duration.attributes["outcome"] == "failed"


async def test_expiring_secrets_gauge_and_records(email_rotator: EmailRotator, telemetry: Telemetry) -> None:
    entra_app = email_rotator.seed_entra_app()
    await email_rotator.register_app(entra_app)
    await email_rotator.services.engine.handle(email_rotator.job(entra_app.app_id))
    applications = email_rotator.services.applications
    index = email_rotator.services.expiry_index

    assert await observability.report_expiring_secrets(applications, index, email_rotator.clock(), 7) == 0
    [point] = telemetry.metric_points("secrets.expiring")
    assert point.value == 0 and dict(point.attributes) == {"withinDays": 7}

    email_rotator.clock.advance(timedelta(days=15))
    assert await observability.report_expiring_secrets(applications, index, email_rotator.clock(), 7) == 1
    [point] = telemetry.metric_points("secrets.expiring")
    assert point.value == 1
    [record] = [e for e in telemetry.events() if e["event"] == "secret.expiring"]
    assert record["appId"] == entra_app.app_id and record["withinDays"] == 7 and "expiresAt" in record
    assert record["atRisk"] is False and record["outcome"] == "ok"  # it will rotate by itself

    # Measured at most hourly: a scan 15 minutes later reuses the count, logs nothing new.
    email_rotator.clock.advance(timedelta(minutes=15))
    assert await observability.report_expiring_secrets(applications, index, email_rotator.clock(), 7) == 1
    assert len([e for e in telemetry.events() if e["event"] == "secret.expiring"]) == 1
    # Across instances too (issue 11): the turn is kept in storage, not in process memory. A new
    # instance (nothing in memory) reports the recorded count and reads no registrations.
    observability._expiring = None
    fresh = ApplicationStore(applications._table, applications._policy, applications._due)
    reads = 0
    original = fresh.list_page

    async def counting_list_page(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await original(*args, **kwargs)

    fresh.list_page = counting_list_page  # type: ignore[method-assign]
    assert await observability.report_expiring_secrets(fresh, index, email_rotator.clock(), 7) == 1
    assert reads == 0 and len([e for e in telemetry.events() if e["event"] == "secret.expiring"]) == 1
    assert observability.expiring_secrets() is not None and observability.expiring_secrets().count == 1

    # Rotation switched off: the secret will expire unless someone acts, so the record warns.
    await email_rotator.register_app(entra_app, enabled=False)
    email_rotator.clock.advance(timedelta(hours=2))
    assert await observability.report_expiring_secrets(applications, index, email_rotator.clock(), 7) == 1
    latest = [r for r in telemetry.records() if (r.attributes or {}).get("event") == "secret.expiring"][-1]
    assert latest.attributes["atRisk"] is True and latest.severity_text == "WARN"


def test_the_guard_refuses_records_that_carry_a_registered_secret(telemetry: Telemetry) -> None:
    log = logging.getLogger("rotator.test")
    observability.register_secret(PLANTED)

    log.info("as an argument: %s", PLANTED)
    log.info("in an extra field", extra={"detail": f"value={PLANTED}"})
    log.warning("in the message itself " + PLANTED)
    try:
        raise RuntimeError(f"failed with {PLANTED}")
    except RuntimeError:
        log.exception("in an exception")
    log.info("harmless", extra={"event": "test.ok"})

    exported = telemetry.everything_exported()
    assert PLANTED not in exported
    assert [r.body for r in telemetry.records()] == ["harmless"]
    assert counter_total(telemetry, "telemetry.records.withheld", logger="rotator.test") == 4

    observability.SECRETS.forget(PLANTED)
    log.info("after forgetting: %s", "still fine")
    assert len(telemetry.records()) == 2


def test_secret_values_render_masked_in_telemetry(telemetry: Telemetry) -> None:
    from shared.domain.secret import SecretValue

    logging.getLogger("rotator.test").info("value %s", SecretValue(PLANTED))
    [record] = telemetry.records()
    assert record.body == "value SecretValue(***)"


def test_configure_telemetry_leaves_the_worker_alone_and_configures_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import azure.monitor.opentelemetry as distro

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(distro, "configure_azure_monitor", lambda **kw: calls.append(kw))
    rotator_logger = logging.getLogger("rotator")
    previous_level = rotator_logger.level
    connection = (
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://example.invalid/"
    )
    try:
        observability._reset_for_tests()
        assert observability.configure_telemetry({}) == "off"
        observability._reset_for_tests()
        worker_env = {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": connection,
            "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
        }
        assert observability.configure_telemetry(worker_env) == "worker"
        assert calls == []  # the worker instruments; a second configuration is unsupported

        observability._reset_for_tests()
        env = {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": connection,
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD",
        }
        assert observability.configure_telemetry(env) == "azure-monitor"
        assert observability.configure_telemetry(env) == "azure-monitor"
        assert len(calls) == 1
        assert calls[0]["logger_name"] == "rotator" and calls[0]["connection_string"] == connection
        assert rotator_logger.getEffectiveLevel() <= logging.INFO
    finally:
        rotator_logger.setLevel(previous_level)
        observability._reset_for_tests()


def test_existing_opentelemetry_handlers_get_the_secret_filter() -> None:
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider

    provider = LoggerProvider()
    handler = LoggingHandler(logger_provider=provider)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        assert observability.guard_telemetry_handlers() >= 1
        assert observability.SECRET_FILTER in handler.filters
        observability.guard_telemetry_handlers()
        assert handler.filters.count(observability.SECRET_FILTER) == 1
    finally:
        root.removeHandler(handler)
        provider.shutdown()


def test_metrics_never_raise_on_odd_dimensions(telemetry: Telemetry) -> None:
    observability.record_event_metrics("rotation.failed", {"step": None, "code": object()})
    observability.record_event_metrics("integration.deployed", {"durationMs": "not a number"})
    observability.record_event_metrics("unrelated.event", {})
    assert counter_total(telemetry, "rotations.failed") == 1


# --------------------------------------------------------------------------- the operator's KQL

APPTRACES = (
    "(AppRoleInstance:string, AppRoleName:string, AppVersion:string, _BilledSize:real, ClientBrowser:string, "
    "ClientCity:string, ClientCountryOrRegion:string, ClientIP:string, ClientModel:string, ClientOS:string, "
    "ClientStateOrProvince:string, ClientType:string, IKey:string, _IsBillable:string, ItemCount:int, "
    "Measurements:dynamic, Message:string, OperationId:string, OperationName:string, ParentId:string, "
    "Properties:dynamic, ReferencedItemId:string, ReferencedType:string, ResourceGUID:string, "
    "_ResourceId:string, SDKVersion:string, SessionId:string, SeverityLevel:int, SourceSystem:string, "
    "_SubscriptionId:string, SyntheticSource:string, TenantId:string, TimeGenerated:datetime, Type:string, "
    "UserAccountId:string, UserAuthenticatedId:string, UserId:string)"
)
APPMETRICS = (
    "(AppRoleInstance:string, AppRoleName:string, AppVersion:string, _BilledSize:real, IKey:string, "
    "_IsBillable:string, ItemCount:int, Max:real, Min:real, Name:string, OperationId:string, "
    "OperationName:string, ParentId:string, Properties:dynamic, ResourceGUID:string, _ResourceId:string, "
    "SDKVersion:string, SessionId:string, SourceSystem:string, _SubscriptionId:string, Sum:real, "
    "SyntheticSource:string, TenantId:string, TimeGenerated:datetime, Type:string, UserAccountId:string, "
    "UserAuthenticatedId:string, UserId:string)"
)
# Columns from the Azure Monitor Logs table reference (AppTraces, AppMetrics).

KNOWN_PROPERTIES = {
    "event", "appId", "rotationId", "step", "integration", "outcome", "code", "keyId", "durationMs",
    "expiresAt", "withinDays", "rotationEnabled", "lastResult", "atRisk", "result", "logger",
}  # fmt: skip
KNOWN_METRICS = {
    "rotations.succeeded", "rotations.failed", "integrations.failed", "integration.duration",
    "secrets.expiring", "telemetry.records.withheld",
}  # fmt: skip
TABULAR_OPERATORS = {
    "where", "extend", "project", "summarize", "order", "top", "render", "count", "take", "join",
    "distinct", "sort", "limit", "mv-expand", "parse", "union", "make-series", "project-away",
}  # fmt: skip

NODE_CHECK = r"""
const dir = process.argv[1];
require(dir + '/bridge.js');
require(dir + '/Kusto.Language.Bridge.js');
const K = Kusto.Language, S = K.Symbols;
let input = '';
process.stdin.on('data', d => input += d);
process.stdin.on('end', () => {
  const req = JSON.parse(input);
  const tables = Object.entries(req.tables).map(([n, s]) => S.TableSymbol.From(s).WithName(n));
  const globals = K.GlobalState.Default.WithDatabase(new S.DatabaseSymbol.$ctor1('workspace', tables));
  process.stdout.write(JSON.stringify(req.queries.map(q => {
    const ds = K.KustoCode.ParseAndAnalyze(q, globals).GetDiagnostics(), out = [];
    for (let i = 0; i < ds.Count; i++) { const d = ds.getItem(i); out.push([d.Severity, d.Code, d.Message]); }
    return out;
  })));
});
"""


def doc_queries() -> list[str]:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    return re.findall(r"```kusto\n(.*?)```", text, re.S)


def known_events() -> set[str]:
    """Every event name the code can emit (string literals in shared/)."""
    names: set[str] = set()
    for path in (ROOT / "shared").rglob("*.py"):
        names |= set(re.findall(r'"([a-z]+\.[a-zA-Z]+)"', path.read_text(encoding="utf-8")))
    return names


def test_operations_doc_queries_are_well_formed_and_name_real_fields() -> None:
    """A structural check that always runs (the parser check below needs Node and Kusto.Language)."""
    queries = doc_queries()
    assert len(queries) >= 10
    events = known_events()
    for query in queries:
        body = re.sub(r"^let [^;]+;\s*", "", query.strip(), flags=re.M)
        assert body.split()[0] in ("AppTraces", "AppMetrics"), query
        stripped = re.sub(r'"[^"]*"', '""', query)
        assert stripped.count("(") == stripped.count(")"), query
        assert query.count('"') % 2 == 0, query
        for operator in re.findall(r"\|\s*([a-z-]+)", stripped):
            assert operator in TABULAR_OPERATORS, (operator, query)
        for name in re.findall(r"Properties\.(\w+)", query):
            assert name in KNOWN_PROPERTIES, (name, query)
        for literal in re.findall(r'"([a-z]+\.[a-zA-Z]+)"', query):
            assert literal in events or literal in KNOWN_METRICS, (literal, query)
        for metric in re.findall(r'Name (?:==|in) \(?"([^"]+)"', query):
            assert metric in KNOWN_METRICS, (metric, query)


def test_the_alert_rules_queries_are_documented_verbatim() -> None:
    bicep = (ROOT / "infra" / "app" / "monitoring.bicep").read_text(encoding="utf-8")
    alert_queries = re.findall(r"^var \w+Query = '([^']+)'", bicep, re.M)
    assert len(alert_queries) == 2
    queries = [q.strip() for q in doc_queries()]
    for query in alert_queries:
        assert query in queries
        assert re.search(r'Properties\.event == "([^"]+)"', query).group(1) in known_events()  # type: ignore[union-attr]


def kusto_language_dir() -> Path | None:
    candidates = [
        os.environ.get("KUSTO_LANGUAGE_SERVICE_DIR"),
        str(ROOT / "node_modules/@kusto/language-service-next"),
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "Kusto.Language.Bridge.js").is_file():
            return Path(candidate)
    return None


def kusto_diagnostics(queries: list[str]) -> list[list[list[str]]]:
    directory = kusto_language_dir()
    node = shutil.which("node")
    if directory is None or node is None:
        pytest.skip(
            "Microsoft's Kusto parser is not installed: npm install @kusto/language-service-next "
            "(or set KUSTO_LANGUAGE_SERVICE_DIR); the structural check above still ran"
        )
    payload = json.dumps({"tables": {"AppTraces": APPTRACES, "AppMetrics": APPMETRICS}, "queries": queries})
    result = subprocess.run(  # noqa: S603 - fixed argv
        [node, "-e", NODE_CHECK, str(directory)],
        input=payload,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    diagnostics: list[list[list[str]]] = json.loads(result.stdout)
    return diagnostics


def test_operations_doc_queries_parse_with_microsofts_kusto_parser() -> None:
    queries = doc_queries()
    for query, diagnostics in zip(queries, kusto_diagnostics(queries), strict=True):
        assert diagnostics == [], f"{diagnostics}\n{query}"


def test_the_kusto_check_catches_mistakes() -> None:
    bad = [
        'AppTraces | where Propertes.event == "rotation.failed"',  # unknown column
        "AppTraces | summarize count() by",  # incomplete
        "AppMetric | take 1",  # unknown table
    ]
    for diagnostics in kusto_diagnostics(bad):
        assert any(severity == "Error" for severity, _, _ in diagnostics)
