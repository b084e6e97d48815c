"""The HTTP front end: route, authorize and invoke HTTP-triggered functions.

Host behaviour reproduced:

* URLs are ``/<routePrefix>/<route>``; literals match case-insensitively; one trailing
  slash is ignored.
* Routes are tried in the order the host registers them, which is by function name
  (azure-functions-host#9876, #6062), NOT by ASP.NET route precedence: with
  ``items/{id}`` in function "a_get" and ``items/recent`` in "b_recent", ``items/recent``
  goes to "a_get". A request that two routes match is logged as a warning.
* A route whose template matches but whose methods do not is skipped; nothing left gives
  404 with an empty body, never 405 (azure-functions-host#10098). HEAD is not implied by
  GET (#11625).
* ``function`` level accepts the function key or the master key, ``admin`` only the
  master key, from the ``x-functions-key`` header or the ``code`` query parameter;
  otherwise 401 with an empty body. The key stays visible to the function (``code`` in
  ``req.params``), as on Azure.
* ``func.HttpRequest`` gets lower-cased header names; repeated headers and query keys are
  joined with "," (ASP.NET ``StringValues.ToString()``); only matched route values.
* Response: a ``func.HttpResponse`` (content type from mimetype/charset unless a header
  sets it) or a ``str`` (200, text/plain). An exception, or any other return value, is a
  500 with an empty body; the traceback goes to the log only.
* ``POST /admin/functions/<name>`` with the master key and ``{"input": "..."}`` runs a
  non-HTTP function (202), like the host's admin API; ``GET /admin/host/status`` reports
  the state.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from aiohttp import web
from multidict import CIMultiDict

from devhost.discovery import FunctionSpec, HttpTriggerInfo
from devhost.invoker import InvocationOutcome
from devhost.routing import RouteTemplate, split_path

__all__ = ["HttpFrontend", "HttpRoute", "response_from_result"]

_KEY_HEADER = "x-functions-key"
# Headers aiohttp computes itself; copying the function's would corrupt the framing.
_SKIPPED_RESPONSE_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
_MAX_BODY = 100 * 1024 * 1024  # the host's request size limit


class InvalidHttpResult(TypeError):
    """The function returned something the HTTP output binding cannot send."""


@dataclass(frozen=True)
class HttpRoute:
    spec: FunctionSpec
    trigger: HttpTriggerInfo
    template: RouteTemplate


def _redact(path_qs: str) -> str:
    return re.sub(r"([?&]code=)[^&]*", r"\1***", path_qs, flags=re.IGNORECASE)


def _joined(items: Any) -> dict[str, str]:
    """Multi-dict to dict, repeated keys joined with ',' like StringValues.ToString()."""
    result: dict[str, str] = {}
    for key, value in items:
        result[key] = f"{result[key]},{value}" if key in result else value
    return result


def response_from_result(result: Any) -> web.Response:
    """Convert what the function returned into an aiohttp response."""
    if isinstance(result, str):
        return web.Response(
            status=200, body=result.encode("utf-8"), content_type="text/plain", charset="utf-8"
        )
    if not isinstance(result, func.HttpResponse):
        raise InvalidHttpResult(
            f"an HTTP function must return func.HttpResponse or str, got {type(result).__name__}"
        )
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in result.headers.items():
        if name.lower() not in _SKIPPED_RESPONSE_HEADERS:
            headers.add(name, value)
    if "content-type" not in headers:
        mimetype = str(result.mimetype)
        charset = str(result.charset)
        headers["Content-Type"] = (
            f"{mimetype}; charset={charset}" if mimetype.startswith("text/") else mimetype
        )
    return web.Response(status=int(result.status_code), body=result.get_body(), headers=headers)


InvokeHttp = Callable[[FunctionSpec, func.HttpRequest], Awaitable[InvocationOutcome]]
AdminInvoke = Callable[[str, str | None], bool]


class HttpFrontend:
    """aiohttp application serving the function routes and a small admin API."""

    def __init__(
        self,
        *,
        routes: list[HttpRoute],
        route_prefix: str,
        function_key: str,
        master_key: str,
        invoke: InvokeHttp,
        admin_invoke: AdminInvoke,
        logger: logging.Logger,
    ) -> None:
        # Host order: by function name.
        self.routes = sorted(routes, key=lambda route: (route.spec.name.lower(), route.spec.name))
        self._prefix = [segment.lower() for segment in split_path(route_prefix)]
        self._function_key = function_key
        self._master_key = master_key
        self._invoke = invoke
        self._admin_invoke = admin_invoke
        self._logger = logger
        self._warned: set[tuple[str, ...]] = set()

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_BODY, middlewares=[_empty_not_found])
        # [\s\S], not '.': a decoded path may hold a newline (%0A), which the Functions host routes.
        app.router.add_route("*", r"/{tail:[\s\S]*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await self._dispatch(request)
        except web.HTTPException as exc:  # e.g. 413 from aiohttp while reading the body
            response = web.Response(status=exc.status)
        self._logger.debug(
            "%s %s -> %d (%.0f ms)",
            request.method,
            _redact(request.path_qs),
            response.status,
            (time.perf_counter() - started) * 1000,
        )
        return response

    def _presented_key(self, request: web.Request) -> str | None:
        return request.headers.get(_KEY_HEADER) or request.rel_url.query.get("code")

    def _authorized(self, request: web.Request, level: str) -> bool:
        if level == "anonymous":
            return True
        key = self._presented_key(request)
        if not key:
            return False
        if hmac.compare_digest(key.encode(), self._master_key.encode()):
            return True
        return level == "function" and hmac.compare_digest(key.encode(), self._function_key.encode())

    def match(self, method: str, raw_path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        """The route the host would pick for this request, with its route values."""
        segments = split_path(raw_path)
        if self._prefix:
            head = [segment.lower() for segment in segments[: len(self._prefix)]]
            if head != self._prefix:
                return None
            segments = segments[len(self._prefix) :]
        matches: list[tuple[HttpRoute, dict[str, str]]] = []
        for route in self.routes:
            methods = route.trigger.methods
            if methods is not None and method.upper() not in methods:
                continue
            values = route.template.match(segments)
            if values is not None:
                matches.append((route, values))
        if len(matches) > 1:
            names = tuple(route.spec.name for route, _ in matches)
            if names not in self._warned:
                self._warned.add(names)
                self._logger.warning(
                    "%s %s matches several routes %s; the host picks the first by function name (%s)",
                    method,
                    raw_path,
                    [route.template.template for route, _ in matches],
                    names[0],
                )
        return matches[0] if matches else None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        if raw_path.lower().startswith("/admin/"):
            return await self._admin(request, raw_path)
        found = self.match(request.method, raw_path)
        if found is None:
            if raw_path == "/" and request.method in ("GET", "HEAD"):
                return web.Response(text="devhost: the Functions app is running\n")
            return web.Response(status=404)
        route, values = found
        if not self._authorized(request, route.trigger.auth_level):
            return web.Response(status=401)
        body = await request.read()
        http_request = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=_joined((key.lower(), value) for key, value in request.headers.items()),
            params=_joined(request.rel_url.query.items()),
            route_params=values,
            body=body,
        )
        try:
            outcome = await self._invoke(route.spec, http_request)
            return response_from_result(self._http_result(route.spec, outcome))
        except asyncio.CancelledError:
            raise
        except InvalidHttpResult as exc:
            self._logger.error("Functions.%s: %s", route.spec.name, exc)
            return web.Response(status=500)
        except Exception:  # noqa: BLE001 - any failure is a bare 500, like the host
            # Already logged with its traceback by the invoker; never sent to the client.
            return web.Response(status=500)

    @staticmethod
    def _http_result(spec: FunctionSpec, outcome: InvocationOutcome) -> Any:
        binding = spec.return_binding
        if binding is not None and binding.type == "http":
            return outcome.return_value
        for output in spec.outputs:
            if output.type == "http":
                return outcome.outputs[output.name].get()
        return outcome.return_value

    async def _admin(self, request: web.Request, raw_path: str) -> web.StreamResponse:
        if not self._authorized(request, "admin"):
            return web.Response(status=401)
        segments = split_path(raw_path)
        if request.method == "GET" and [s.lower() for s in segments] == ["admin", "host", "status"]:
            return web.json_response({"state": "Running", "version": "devhost"})
        if (
            request.method == "POST"
            and len(segments) == 3
            and [s.lower() for s in segments[:2]] == ["admin", "functions"]
        ):
            payload: Any = None
            raw = await request.read()
            if raw.strip():
                try:
                    payload = json.loads(raw)
                except ValueError:
                    return web.Response(status=400)
            value = payload.get("input") if isinstance(payload, dict) else None
            if self._admin_invoke(segments[2], None if value is None else str(value)):
                return web.Response(status=202)
        return web.Response(status=404)


@web.middleware
async def _empty_not_found(request: web.Request, handler: Any) -> web.StreamResponse:
    """A path aiohttp's own router cannot match (a raw control character, say) gets the host's
    404 with an empty body, like every other unmatched route, not aiohttp's text/plain page."""
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPNotFound:
        return web.Response(status=404)
    return response
