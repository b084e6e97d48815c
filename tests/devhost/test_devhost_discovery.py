"""Indexing a FunctionApp like the worker: binding/parameter rules, unsupported triggers."""

from __future__ import annotations

import azure.functions as func
import pytest

from devhost import DevHost, FunctionLoadError, discover_functions
from devhost.discovery import HttpTriggerInfo, QueueTriggerInfo, TimerTriggerInfo


def test_reads_triggers_from_decorators_and_blueprints() -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    bp = func.Blueprint()

    @bp.route(route="apps/{id}", methods=["GET", "post"])
    def get_app(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse()

    @bp.function_name("renamed")
    @bp.route(auth_level=func.AuthLevel.ANONYMOUS)
    async def default_route(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse()

    @bp.timer_trigger(schedule="0 */15 * * * *", arg_name="timer", run_on_startup=True)
    def tick(timer: func.TimerRequest) -> None:
        pass

    @bp.queue_trigger(arg_name="msg", queue_name="rotations", connection="AzureWebJobsStorage")
    def worker(msg: func.QueueMessage, context: func.Context) -> None:
        pass

    app.register_functions(bp)
    specs = {spec.name: spec for spec in discover_functions(app)}
    assert specs["get_app"].trigger == HttpTriggerInfo(
        route="apps/{id}", methods=frozenset({"GET", "POST"}), auth_level="function"
    )
    # No route: the function name; no methods: all; the blueprint's level wins over the app's.
    assert specs["renamed"].trigger == HttpTriggerInfo(route="renamed", methods=None, auth_level="anonymous")
    assert specs["renamed"].is_async and not specs["get_app"].is_async
    assert specs["tick"].trigger == TimerTriggerInfo("0 */15 * * * *", run_on_startup=True, use_monitor=None)
    assert specs["worker"].trigger == QueueTriggerInfo("rotations", "AzureWebJobsStorage")
    assert specs["worker"].requires_context
    assert specs["get_app"].return_binding is not None and specs["get_app"].return_binding.name == "$return"


def test_parameters_must_match_bindings() -> None:
    app = func.FunctionApp()

    @app.route(route="x")
    def extra(req: func.HttpRequest, service: object = None) -> func.HttpResponse:
        return func.HttpResponse()

    with pytest.raises(FunctionLoadError, match="service"):
        discover_functions(app)


def test_trigger_parameter_must_exist() -> None:
    app = func.FunctionApp()

    @app.route(route="x", trigger_arg_name="request")
    def misnamed(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse()

    with pytest.raises(FunctionLoadError, match="request"):
        discover_functions(app)


def test_unsupported_trigger_is_listed_but_not_run() -> None:
    app = func.FunctionApp()

    @app.blob_trigger(arg_name="blob", path="c/{name}", connection="AzureWebJobsStorage")
    def on_blob(blob: func.InputStream) -> None:
        pass

    host = DevHost(app)
    assert [spec.name for spec in host.all_functions] == ["on_blob"]
    assert host.functions == []
    assert "blobTrigger" in (host.all_functions[0].unsupported_reason or "")


def test_duplicate_names_and_bad_routes_fail_at_load() -> None:
    app = func.FunctionApp()

    @app.function_name("same")
    @app.route(route="a")
    def first(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse()

    @app.function_name("same")
    @app.route(route="b")
    def second(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse()

    with pytest.raises(FunctionLoadError, match="unique"):
        discover_functions(app)

    bad = func.FunctionApp()

    @bad.route(route="items/{id:nosuch}")
    def broken(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse()

    with pytest.raises(FunctionLoadError, match="nosuch"):
        DevHost(bad)
