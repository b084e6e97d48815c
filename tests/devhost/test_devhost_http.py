"""The HTTP front end over real sockets: routing, keys, request/response conversion, errors."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator

import azure.functions as func
import httpx
import pytest

from devhost import DevHost, DevHostThread, HostConfig

FUNCTION_KEY = "function-key-for-tests"
MASTER_KEY = "master-key-for-tests"

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
seen: dict[str, object] = {}


@app.route(route="items/{id:int}/{name?}", methods=["GET", "POST"])
async def echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(
            {
                "method": req.method,
                "url": req.url,
                "route": dict(req.route_params),
                "params": dict(req.params),
                "headers": {k: v for k, v in req.headers.items() if k.startswith("x-test")},
                "body": req.get_body().decode(),
            }
        ),
        status_code=201,
        headers={"X-Custom": "yes"},
        mimetype="application/json",
    )


@app.route(route="anything", auth_level=func.AuthLevel.ANONYMOUS)
def anything(req: func.HttpRequest) -> str:
    # No methods: every method is accepted. A str return becomes a text/plain 200.
    return f"method={req.method}"


@app.route(route="admin-only", auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin ok")


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("internal detail: db password is hunter2")


@app.route(route="bad-return", auth_level=func.AuthLevel.ANONYMOUS)
def bad_return(req: func.HttpRequest) -> func.HttpResponse:
    return {"not": "a response"}  # type: ignore[return-value]


@app.route(route="things/{id}", auth_level=func.AuthLevel.ANONYMOUS, methods=["GET"])
def a_thing_by_id(req: func.HttpRequest) -> str:
    return f"by-id:{req.route_params['id']}"


@app.route(route="things/recent", auth_level=func.AuthLevel.ANONYMOUS, methods=["GET"])
def b_recent_things(req: func.HttpRequest) -> str:
    return "recent"


@app.route(route="where/async", auth_level=func.AuthLevel.ANONYMOUS)
async def where_async(req: func.HttpRequest) -> str:
    loop = asyncio.get_running_loop()
    return json.dumps({"thread": threading.current_thread().name, "loop": id(loop)})


@app.route(route="where/sync", auth_level=func.AuthLevel.ANONYMOUS)
def where_sync(req: func.HttpRequest) -> str:
    return json.dumps({"thread": threading.current_thread().name})


@app.function_name("context_named")
@app.route(route="ctx", auth_level=func.AuthLevel.ANONYMOUS)
def with_context(req: func.HttpRequest, context: func.Context) -> str:
    return json.dumps({"name": context.function_name, "id": context.invocation_id})


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer")
def yearly(timer: func.TimerRequest) -> None:
    seen["yearly"] = timer.past_due


@pytest.fixture(scope="module")
def host() -> Iterator[DevHostThread]:
    with DevHostThread(app, function_key=FUNCTION_KEY, master_key=MASTER_KEY) as running:
        yield running


@pytest.fixture
def client(host: DevHostThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=host.base_url, timeout=10) as http:
        yield http


KEY = {"x-functions-key": FUNCTION_KEY}


def test_route_values_query_headers_body_and_response(client: httpx.Client) -> None:
    response = client.post(
        "/api/items/42/widget?a=1&a=2&b=",
        headers={**KEY, "X-Test-One": "1"},
        content=b"payload",
    )
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-custom"] == "yes"
    data = response.json()
    assert data["method"] == "POST"
    assert data["route"] == {"id": "42", "name": "widget"}
    # Repeated query keys are joined with ',' like the host's StringValues.
    assert data["params"] == {"a": "1,2", "b": ""}
    assert data["headers"] == {"x-test-one": "1"}
    assert data["body"] == "payload"
    assert data["url"].endswith("/api/items/42/widget?a=1&a=2&b=")


def test_optional_parameter_is_absent_not_empty(client: httpx.Client) -> None:
    data = client.get("/api/items/7", headers=KEY).json()
    assert data["route"] == {"id": "7"}


def test_unknown_routes_and_failed_constraints_are_404(client: httpx.Client) -> None:
    for path in ("/api/nothing", "/api/items/notanint", "/items/1", "/api"):
        response = client.get(path, headers=KEY)
        assert response.status_code == 404, path
        assert response.content == b""


def test_known_route_with_wrong_method_is_404_like_the_host(client: httpx.Client) -> None:
    assert client.delete("/api/items/1", headers=KEY).status_code == 404
    # GET does not imply HEAD on the Functions host either.
    assert client.head("/api/things/1").status_code == 404


def test_no_methods_means_every_method(client: httpx.Client) -> None:
    for method in ("GET", "POST", "PATCH", "DELETE", "OPTIONS"):
        response = client.request(method, "/api/anything")
        assert response.status_code == 200
        assert response.text == f"method={method}"
        assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_function_level_needs_a_key(client: httpx.Client) -> None:
    missing = client.get("/api/items/1")
    assert (missing.status_code, missing.content) == (401, b"")
    assert client.get("/api/items/1", headers={"x-functions-key": "wrong"}).status_code == 401
    assert client.get("/api/items/1?code=wrong").status_code == 401
    assert client.get("/api/items/1", headers=KEY).status_code == 201
    by_query = client.get(f"/api/items/1?code={FUNCTION_KEY}")
    assert by_query.status_code == 201
    # As on Azure, the key stays visible to the function.
    assert by_query.json()["params"] == {"code": FUNCTION_KEY}
    # The master key works wherever a function key does.
    assert client.get("/api/items/1", headers={"x-functions-key": MASTER_KEY}).status_code == 201


def test_admin_level_needs_the_master_key(client: httpx.Client) -> None:
    assert client.get("/api/admin-only", headers=KEY).status_code == 401
    response = client.get("/api/admin-only", headers={"x-functions-key": MASTER_KEY})
    assert (response.status_code, response.text) == (200, "admin ok")


def test_anonymous_needs_nothing(client: httpx.Client) -> None:
    assert client.get("/api/anything").status_code == 200


def test_exception_is_a_bare_500_and_the_traceback_only_logged(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="devhost"):
        response = client.get("/api/boom")
    assert response.status_code == 500
    assert response.content == b""
    failures = [r for r in caplog.records if "Executed 'Functions.boom' (Failed" in r.getMessage()]
    assert failures and failures[0].exc_info is not None
    assert "hunter2" in caplog.text  # logged for the developer...
    assert "hunter2" not in response.text  # ...never sent to the caller


def test_unsupported_return_value_is_a_500(client: httpx.Client) -> None:
    response = client.get("/api/bad-return")
    assert (response.status_code, response.content) == (500, b"")


def test_keys_never_reach_the_logs(client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        client.get(f"/api/items/3?code={FUNCTION_KEY}")
        client.get("/api/items/3", headers=KEY)
        client.get("/api/items/3?code=a-wrong-key-value")
    # The server side only (httpx logs the URLs it requests, by its own choice).
    server_text = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith(("devhost", "aiohttp"))
    )
    assert "GET /api/items/3?code=*** -> 201" in server_text
    assert FUNCTION_KEY not in server_text
    assert "a-wrong-key-value" not in server_text


def test_routes_are_tried_in_function_name_order_like_the_host(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    # "a_thing_by_id" sorts before "b_recent_things", so it wins for things/recent.
    with caplog.at_level(logging.WARNING, logger="devhost"):
        assert client.get("/api/things/recent").text == "by-id:recent"
    assert "matches several routes" in caplog.text
    assert client.get("/api/things/5").text == "by-id:5"


def test_async_functions_share_the_host_loop_sync_ones_use_worker_threads(
    host: DevHostThread, client: httpx.Client
) -> None:
    first = client.get("/api/where/async").json()
    second = client.get("/api/where/async").json()
    assert first == second
    assert first["thread"] == "devhost"
    assert first["loop"] == id(host.loop)
    assert client.get("/api/where/sync").json()["thread"].startswith("devhost-worker")


def test_context_parameter(client: httpx.Client) -> None:
    data = client.get("/api/ctx").json()
    assert data["name"] == "context_named"
    assert len(data["id"]) == 36


def test_admin_api_runs_a_timer_and_reports_status(host: DevHostThread, client: httpx.Client) -> None:
    assert client.post("/admin/functions/yearly", json={"input": ""}).status_code == 401
    assert client.post("/admin/functions/yearly", headers=KEY, json={}).status_code == 401
    master = {"x-functions-key": MASTER_KEY}
    assert client.post("/admin/functions/yearly", headers=master, json={"input": ""}).status_code == 202
    host.wait_for_invocations("yearly", 1, timeout=5)
    assert seen["yearly"] is False
    assert client.post("/admin/functions/echo", headers=master, json={}).status_code == 404
    assert client.get("/admin/host/status", headers=master).json()["state"] == "Running"


def test_invocations_are_recorded(host: DevHostThread, client: httpx.Client) -> None:
    client.get("/api/anything")
    record = host.wait_for_invocations("anything", 1)[-1]
    assert record.succeeded and record.trigger_type == "httpTrigger"
    assert record.duration >= 0


def test_route_prefix_from_host_config() -> None:
    with (
        DevHostThread(app, function_key=FUNCTION_KEY, host_config=HostConfig(route_prefix="")) as running,
        httpx.Client(base_url=running.base_url) as http,
    ):
        assert http.get("/anything").text == "method=GET"
        assert http.get("/api/anything").status_code == 404
        assert running.url("anything") == f"{running.base_url}/anything"


async def test_stop_lets_an_in_flight_request_finish() -> None:
    slow_app = func.FunctionApp()
    entered = asyncio.Event()

    @slow_app.route(route="slow", auth_level=func.AuthLevel.ANONYMOUS)
    async def slow(req: func.HttpRequest) -> str:
        entered.set()
        await asyncio.sleep(0.5)
        return "finished"

    host = DevHost(slow_app)
    await host.start()
    async with httpx.AsyncClient() as http:
        request = asyncio.create_task(http.get(host.url("slow")))
        await asyncio.wait_for(entered.wait(), 5)
        await host.stop()
        response = await request
    assert (response.status_code, response.text) == (200, "finished")
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(host.url("slow"))


def test_a_query_string_longer_than_8_kib_reaches_the_function() -> None:
    """Found by schemathesis: aiohttp's 8 KiB default answered a long query string itself with a
    text/plain 400; the app's own problem+json answer is the one that counts."""
    import azure.functions as func

    from devhost import DevHostThread

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="echo", methods=["GET"])
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(str(len(req.params.get("q", ""))), status_code=200)

    with DevHostThread(app, port=0, enable_queues=False, enable_timers=False) as host:
        response = httpx.get(f"{host.base_url.rstrip('/')}/api/echo", params={"q": "x" * 20_000}, timeout=10)
    assert response.status_code == 200 and response.text == "20000"
