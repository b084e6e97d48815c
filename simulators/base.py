"""Shared machinery of the simulators: clock, token issuer, fault switches and the HTTP(S) server.

Each simulator is a ``SimulatorServer`` subclass that registers routes (regular expressions over
the decoded path) and answers with ``SimResponse`` objects. The base class adds what every
simulator needs for tests: a request log, injected latency, one-shot faults (5xx, 429, and
"commit then fail", i.e. a lost response) and JSON admin endpoints under ``/_sim/``.

Only the standard library is used: ``ThreadingHTTPServer`` plus ``ssl``.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, cast
from urllib.parse import parse_qs, unquote, urlsplit

logger = logging.getLogger("simulators")

JsonDict = dict[str, Any]
REQUEST_LOG_LIMIT = 10_000


# --------------------------------------------------------------------------- clock


class SimClock:
    """The simulated "now": real UTC time plus an adjustable offset.

    One clock is shared by every simulator of a stack, so moving it forward (to expire a
    secret, say) moves Entra and Key Vault together. Token lifetimes deliberately use real
    time instead: SDK token caches compare against the real clock, and a token the server
    thinks expired while the client thinks it fresh would only produce confusing 401 loops.
    """

    def __init__(self, offset_seconds: float = 0.0) -> None:
        self._offset = float(offset_seconds)
        self._lock = threading.Lock()

    @property
    def offset_seconds(self) -> float:
        with self._lock:
            return self._offset

    @offset_seconds.setter
    def offset_seconds(self, value: float) -> None:
        with self._lock:
            self._offset = float(value)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += float(seconds)

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset_seconds)

    def timestamp(self) -> int:
        """Sim "now" as Unix seconds (Key Vault's attribute format)."""
        return int(self.now().timestamp())


# --------------------------------------------------------------------------- tokens


def scope_to_audience(scope_or_resource: str) -> str:
    """``https://graph.microsoft.com/.default`` -> ``https://graph.microsoft.com`` (as Entra does)."""
    value = scope_or_resource.strip()
    if value.endswith("/.default"):
        value = value[: -len("/.default")]
    return value.rstrip("/")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class IssuedToken:
    token: str
    principal: str
    audience: str
    expires_on: int  # Unix seconds, real time (see SimClock)
    client_id: str | None = None
    tenant_id: str | None = None


@dataclass(frozen=True)
class TokenCheck:
    """Outcome of validating an ``Authorization`` header."""

    token: IssuedToken | None
    error: str | None  # None when valid; else a short reason ("missing", "unknown", "expired", "audience")

    @property
    def ok(self) -> bool:
        return self.error is None


class TokenIssuer:
    """Registry of the access tokens the simulators issued; shared by every simulator of a stack.

    Tokens look like JWTs (some code decodes claims for logging) but carry no signature:
    validity is membership in this registry, which is all a simulator needs.
    """

    def __init__(
        self, lifetime_seconds: int = 3600, *, issuer_url: str = "https://sts.simulator.local/"
    ) -> None:
        self.lifetime_seconds = lifetime_seconds
        self.issuer_url = issuer_url
        self._tokens: dict[str, IssuedToken] = {}
        self._lock = threading.Lock()

    def issue(
        self,
        principal: str,
        audience: str,
        *,
        client_id: str | None = None,
        tenant_id: str | None = None,
        lifetime_seconds: int | None = None,
    ) -> IssuedToken:
        now = int(time.time())
        expires_on = now + (lifetime_seconds if lifetime_seconds is not None else self.lifetime_seconds)
        audience = scope_to_audience(audience)
        claims = {
            "aud": audience,
            "iss": self.issuer_url,
            "iat": now,
            "nbf": now,
            "exp": expires_on,
            "sub": principal,
            "oid": principal,
            "appid": client_id or principal,
            "tid": tenant_id,
            "jti": uuid.uuid4().hex,
        }
        header = {"typ": "JWT", "alg": "none", "kid": "simulator"}
        raw = ".".join(
            (
                _b64url(json.dumps(header).encode()),
                _b64url(json.dumps(claims).encode()),
                _b64url(secrets.token_bytes(32)),
            )
        )
        issued = IssuedToken(raw, principal, audience, expires_on, client_id, tenant_id)
        with self._lock:
            if len(self._tokens) >= 10_000:  # a long-running dev stack: forget expired tokens
                self._tokens = {k: v for k, v in self._tokens.items() if v.expires_on > now}
            self._tokens[raw] = issued
        return issued

    def lookup(self, token: str) -> IssuedToken | None:
        with self._lock:
            return self._tokens.get(token)

    def check(self, authorization: str | None, audiences: Iterable[str]) -> TokenCheck:
        """Validate an ``Authorization: Bearer ...`` header against the accepted audiences."""
        if not authorization:
            return TokenCheck(None, "missing")
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return TokenCheck(None, "missing")
        issued = self.lookup(value.strip())
        if issued is None:
            return TokenCheck(None, "unknown")
        if issued.expires_on <= time.time():
            return TokenCheck(issued, "expired")
        accepted = {scope_to_audience(a).lower() for a in audiences}
        if issued.audience.lower() not in accepted:
            return TokenCheck(issued, "audience")
        return TokenCheck(issued, None)

    def revoke(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def revoke_all(self) -> None:
        with self._lock:
            self._tokens.clear()

    def issued(self) -> list[IssuedToken]:
        with self._lock:
            return list(self._tokens.values())


# --------------------------------------------------------------------------- request / response


@dataclass
class SimRequest:
    method: str
    path: str  # percent-decoded, without the query string
    raw_path: str  # as sent, with the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    scheme: str
    params: dict[str, str] = field(default_factory=dict)  # named groups of the matched route
    principal: str | None = None  # set by authentication, for the request log

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """First value of a query parameter; ``$top`` also matches ``top`` (OData allows both)."""
        for key in (name, name.lstrip("$"), "$" + name.lstrip("$")):
            values = self.query.get(key)
            if values:
                return values[0]
        return default

    @property
    def base_url(self) -> str:
        """Scheme and authority as the client addressed us (``127.0.0.1`` and ``localhost`` both work)."""
        return f"{self.scheme}://{self.headers.get('host', '127.0.0.1')}"

    def json(self) -> Any:
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ValueError(f"request body is not valid JSON: {exc}") from exc

    def form(self) -> dict[str, str]:
        parsed = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {key: values[0] for key, values in parsed.items()}


@dataclass
class SimResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> SimResponse:
    merged = {"Content-Type": "application/json; charset=utf-8"}
    merged.update(headers or {})
    return SimResponse(status, json.dumps(payload).encode("utf-8"), merged)


def empty_response(status: int = 204, headers: Mapping[str, str] | None = None) -> SimResponse:
    return SimResponse(status, b"", dict(headers or {}))


class SimHTTPError(Exception):
    """Raise from a handler to answer with ``response`` (keeps handlers linear)."""

    def __init__(self, response: SimResponse) -> None:
        super().__init__(response.status)
        self.response = response


Handler = Callable[[SimRequest], SimResponse]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


# --------------------------------------------------------------------------- faults


@dataclass
class FaultRule:
    """A one-shot fault for the next ``remaining`` matching requests.

    ``after_commit`` rules let the handler run (the write happens) and then replace a 2xx
    answer: the client sees a failure for something that did take effect, as when a gateway
    times out after the backend committed. That is how an SDK retry mints a duplicate.
    """

    kind: str  # "fail" | "throttle"
    remaining: int
    status: int
    method: str | None = None
    path: str | None = None  # regular expression, searched in the decoded path
    retry_after: int | None = None
    after_commit: bool = False

    def matches(self, request: SimRequest) -> bool:
        if self.remaining <= 0:
            return False
        if self.method and self.method.upper() != request.method:
            return False
        return not (self.path and not re.search(self.path, request.path))

    def describe(self) -> JsonDict:
        return {
            "kind": self.kind,
            "remaining": self.remaining,
            "status": self.status,
            "method": self.method,
            "path": self.path,
            "retry_after": self.retry_after,
            "after_commit": self.after_commit,
        }


def _fault_from_json(kind: str, value: Any, defaults: Mapping[str, Any]) -> FaultRule:
    """Switch JSON for a fault: a count (``3``) or an object (``{"count": 3, "status": 504, ...}``)."""
    spec: dict[str, Any] = dict(defaults)
    if isinstance(value, bool) or not isinstance(value, int | dict):
        raise ValueError(f"{kind}: expected a count or an object, got {value!r}")
    if isinstance(value, int):
        spec["count"] = value
    else:
        unknown = set(value) - {"count", "status", "method", "path", "retry_after"}
        if unknown:
            raise ValueError(f"{kind}: unknown keys {sorted(unknown)}")
        spec.update(value)
    return FaultRule(
        kind="throttle" if int(spec.get("status", 429)) == 429 else "fail",
        remaining=int(spec.get("count", 1)),
        status=int(spec.get("status", 503)),
        method=spec.get("method"),
        path=spec.get("path"),
        retry_after=None if spec.get("retry_after") is None else int(spec["retry_after"]),
        after_commit=bool(spec.get("after_commit", False)),
    )


# --------------------------------------------------------------------------- request log


@dataclass(frozen=True)
class LoggedRequest:
    time: float
    method: str
    path: str  # decoded path without query
    raw_path: str
    status: int
    principal: str | None
    fault: str | None  # which injected fault answered, if any

    def to_json(self) -> JsonDict:
        return {
            "time": self.time,
            "method": self.method,
            "path": self.path,
            "rawPath": self.raw_path,
            "status": self.status,
            "principal": self.principal,
            "fault": self.fault,
        }


# --------------------------------------------------------------------------- server


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], simulator: SimulatorServer, tls: ssl.SSLContext | None
    ) -> None:
        self.simulator = simulator
        self.tls = tls
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)
        if tls is not None:
            # Handshake lazily in the worker thread: doing it in accept() would let one slow or
            # distrustful client stall the accept loop for every other client.
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Drop idle keep-alive connections so stop() really frees the simulator."""
        with self.connections_lock:
            open_connections = list(self.connections)
            self.connections.clear()
        for conn in open_connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                conn.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that reset connections or reject our throwaway CA are normal in tests.
        logger.debug("connection error from %s", client_address, exc_info=True)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real services; every answer has a length
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    server: _HTTPServer

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s %s", self.address_string(), format % args)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline().split(b";", 1)[0].strip()
                size = int(size_line or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        split = urlsplit(self.path)
        request = SimRequest(
            method=self.command.upper(),
            path=unquote(split.path),
            raw_path=self.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
            scheme="https" if self.server.tls is not None else "http",
        )
        response = self.server.simulator.handle(request)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if request.method != "HEAD" and response.body:
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


class SimulatorServer:
    """Base of every simulator: routing, faults, latency, request log, admin API, start/stop.

    Subclasses call ``self.route(...)`` / ``self.admin_route(...)`` in ``__init__`` and may
    override ``authenticate``, ``fault_response``, ``not_found``, ``state``, ``reset`` and
    ``apply_switch``.

    Requests are handled one at a time (a single lock around the handler): every operation is
    atomic, as the real services' single-object writes are, and the simulator needs no
    finer locking. Injected latency is spent outside the lock so slow answers still overlap.
    """

    kind: str = "simulator"

    def __init__(
        self,
        *,
        name: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        clock: SimClock | None = None,
    ) -> None:
        self.name = name or self.kind
        self.host = host
        self._requested_port = port
        self._ssl_context = ssl_context
        self.clock = clock or SimClock()
        self.latency_seconds = 0.0
        self._routes: list[Route] = []
        self._admin_routes: list[Route] = []
        self._faults: list[FaultRule] = []
        # ``hold_next``: (method, path pattern, remaining, release) for requests held before handling.
        self._holds: list[tuple[str | None, str | None, list[int], threading.Event]] = []
        # Bounded, so a long-running dev stack does not grow without limit.
        self._log: deque[LoggedRequest] = deque(maxlen=REQUEST_LOG_LIMIT)
        self._lock = threading.RLock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._register_base_admin_routes()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((self.host, self._requested_port), self, self._ssl_context)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"sim-{self.name}",
            daemon=True,
        )
        self._thread.start()
        logger.info("%s listening on %s", self.name, self.url)
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{self.name} is not running")
        return int(self._httpd.server_address[1])

    @property
    def scheme(self) -> str:
        return "https" if self._ssl_context is not None else "http"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``https://127.0.0.1:54321`` (no trailing slash)."""
        return f"{self.scheme}://{self.host}:{self.port}"

    # ----------------------------------------------------------------- routing

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Register a handler; ``pattern`` must match the whole decoded path."""
        self._routes.append(Route(method.upper(), re.compile(pattern), handler))

    def admin_route(self, method: str, pattern: str, handler: Handler) -> None:
        self._admin_routes.append(Route(method.upper(), re.compile("/_sim" + pattern), handler))

    @staticmethod
    def _match(routes: list[Route], request: SimRequest) -> tuple[Route | None, bool]:
        """The route for the request, and whether the path matched with another method."""
        path_matched = False
        for candidate in routes:
            found = candidate.pattern.fullmatch(request.path)
            if found is None:
                continue
            path_matched = True
            if candidate.method == request.method:
                request.params = {k: v for k, v in found.groupdict().items() if v is not None}
                return candidate, True
        return None, path_matched

    def handle(self, request: SimRequest) -> SimResponse:
        """Answer one request (called from the server's worker threads)."""
        if request.path.startswith("/_sim/") or request.path == "/_sim":
            return self._handle_admin(request)
        release = self._take_hold(request)
        if release is not None:
            # Outside the lock: the other requests go on meanwhile, as at the real service.
            release.wait(timeout=300)
        if self.latency_seconds > 0:
            time.sleep(self.latency_seconds)
        with self._lock:
            fault_name: str | None = None
            try:
                response, fault_name = self._handle_api(request)
            except SimHTTPError as exc:
                response = exc.response
            except Exception:  # a simulator bug must not kill the connection silently
                logger.exception("%s: unhandled error for %s %s", self.name, request.method, request.raw_path)
                response = self.fault_response(request, FaultRule("fail", 0, 500))
                fault_name = "internal-error"
            self._log.append(
                LoggedRequest(
                    time.time(),
                    request.method,
                    request.path,
                    request.raw_path,
                    response.status,
                    request.principal,
                    fault_name,
                )
            )
        return response

    def _handle_api(self, request: SimRequest) -> tuple[SimResponse, str | None]:
        route, path_matched = self._match(self._routes, request)
        if route is None:
            if path_matched:
                return self.method_not_allowed(request), None
            return self.not_found(request), None
        # Authenticate first, so "the next N requests" of a fault means N real API calls and
        # not the Key Vault SDK's unauthenticated challenge probe.
        denied = self.authenticate(request)
        if denied is not None:
            return denied, None
        before = self._take_fault(request, after_commit=False)
        if before is not None:
            return self.fault_response(request, before), f"{before.kind}:{before.status}"
        response = route.handler(request)
        if 200 <= response.status < 300:
            after = self._take_fault(request, after_commit=True)
            if after is not None:
                return self.fault_response(request, after), f"commit-then-{after.status}"
        return response, None

    def _take_hold(self, request: SimRequest) -> threading.Event | None:
        with self._lock:
            for method, path, remaining, release in self._holds:
                if remaining[0] > 0 and (method is None or method == request.method):
                    if path is None or re.search(path, request.path):
                        remaining[0] -= 1
                        return release
        return None

    def _take_fault(self, request: SimRequest, *, after_commit: bool) -> FaultRule | None:
        for rule in self._faults:
            if rule.after_commit == after_commit and rule.matches(request):
                rule.remaining -= 1
                self._faults = [r for r in self._faults if r.remaining > 0]
                return rule
        return None

    # ----------------------------------------------------------------- hooks for subclasses

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        """Return an error response to refuse the request; set ``request.principal`` to accept."""
        return None

    def fault_response(self, request: SimRequest, rule: FaultRule) -> SimResponse:
        headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
        try:
            message = HTTPStatus(rule.status).phrase
        except ValueError:
            message = "Error"
        return json_response(
            rule.status, {"error": {"code": message.replace(" ", ""), "message": message}}, headers
        )

    def not_found(self, request: SimRequest) -> SimResponse:
        return json_response(404, {"error": {"code": "NotFound", "message": f"No route for {request.path}"}})

    def method_not_allowed(self, request: SimRequest) -> SimResponse:
        return json_response(
            405, {"error": {"code": "MethodNotAllowed", "message": f"{request.method} is not allowed here"}}
        )

    def state(self) -> JsonDict:
        """Everything a test may want to assert on (secrets included: this is a simulator)."""
        return {}

    def reset(self) -> None:
        """Forget all data, faults, switches and logged requests."""
        with self._lock:
            self._faults.clear()
            for *_, release in self._holds:
                release.set()
            self._holds.clear()
            self._log.clear()
            self.latency_seconds = 0.0

    def apply_switch(self, name: str, value: Any) -> bool:
        """Apply one simulator-specific switch; return False if the name is unknown."""
        return False

    def switches(self) -> JsonDict:
        with self._lock:
            return {
                "latency_seconds": self.latency_seconds,
                "clock_offset_seconds": self.clock.offset_seconds,
                "faults": [rule.describe() for rule in self._faults],
            }

    def endpoints(self) -> JsonDict:
        """What a client needs to reach this simulator (merged into the stack's endpoints.json)."""
        return {f"{self.name}_url": self.url}

    # ----------------------------------------------------------------- fault / switch API

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        method: str | None = None,
        path: str | None = None,
        retry_after: int | None = None,
        after_commit: bool = False,
    ) -> None:
        """Answer the next ``count`` matching API requests with ``status`` (5xx, or 429)."""
        with self._lock:
            self._faults.append(
                FaultRule(
                    "throttle" if status == 429 else "fail",
                    count,
                    status,
                    method.upper() if method else None,
                    path,
                    retry_after,
                    after_commit,
                )
            )

    def hold_next(
        self, count: int = 1, *, method: str | None = None, path: str | None = None
    ) -> threading.Event:
        """Hold the next ``count`` matching API requests until the returned event is set, then
        handle them as usual. A client that stops waiting sees a timeout, yet the service applies
        the request when it is released: a write that lands late, after newer ones (test fault;
        no REST API of the simulated services promises to refuse such a write, see
        ``shared.domain.models.LATE_WRITE_WINDOW``)."""
        release = threading.Event()
        with self._lock:
            self._holds.append((method.upper() if method else None, path, [count], release))
        return release

    def throttle_next(
        self, count: int = 1, *, retry_after: int = 1, method: str | None = None, path: str | None = None
    ) -> None:
        """Answer the next ``count`` matching API requests with 429 and ``Retry-After``."""
        self.fail_next(count, 429, method=method, path=path, retry_after=retry_after)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            for *_, release in self._holds:
                release.set()
            self._holds.clear()

    def set_switches(self, **switches: Any) -> JsonDict:
        """Apply switches by name (the same names ``POST /_sim/switches`` takes); return all switches."""
        with self._lock:
            for name, value in switches.items():
                if name == "latency_seconds":
                    self.latency_seconds = float(value or 0)
                elif name == "clock_offset_seconds":
                    self.clock.offset_seconds = float(value or 0)
                elif name == "fail_next":
                    self._faults.append(_fault_from_json(name, value, {"status": 503}))
                elif name == "throttle":
                    self._faults.append(_fault_from_json(name, value, {"status": 429, "retry_after": 1}))
                elif name == "clear_faults":
                    if value:
                        self._faults.clear()
                elif not self.apply_switch(name, value):
                    raise ValueError(f"unknown switch {name!r}")
            return self.switches()

    def requests(self, *, method: str | None = None, path: str | None = None) -> list[LoggedRequest]:
        """Logged API requests (admin calls excluded), optionally filtered (``path`` is a regex)."""
        with self._lock:
            entries = list(self._log)
        return [
            entry
            for entry in entries
            if (method is None or entry.method == method.upper())
            and (path is None or re.search(path, entry.path))
        ]

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    # ----------------------------------------------------------------- admin HTTP API

    def _register_base_admin_routes(self) -> None:
        self.admin_route("GET", "/state", lambda r: json_response(200, self.state()))
        self.admin_route("GET", "/switches", lambda r: json_response(200, self.switches()))
        self.admin_route("POST", "/switches", self._admin_set_switches)
        self.admin_route("POST", "/reset", self._admin_reset)
        self.admin_route(
            "GET", "/requests", lambda r: json_response(200, [e.to_json() for e in self.requests()])
        )
        self.admin_route("DELETE", "/requests", self._admin_clear_requests)

    def _admin_set_switches(self, request: SimRequest) -> SimResponse:
        payload = request.json()
        if not isinstance(payload, dict):
            return json_response(400, {"error": "expected a JSON object of switches"})
        return json_response(200, self.set_switches(**payload))

    def _admin_reset(self, request: SimRequest) -> SimResponse:
        self.reset()
        return empty_response(204)

    def _admin_clear_requests(self, request: SimRequest) -> SimResponse:
        self.clear_requests()
        return empty_response(204)

    def _handle_admin(self, request: SimRequest) -> SimResponse:
        route, path_matched = self._match(self._admin_routes, request)
        if route is None:
            status = 405 if path_matched else 404
            return json_response(status, {"error": f"no admin route {request.method} {request.path}"})
        try:
            return route.handler(request)
        except SimHTTPError as exc:
            return exc.response
        except (ValueError, KeyError, TypeError) as exc:
            return json_response(400, {"error": str(exc)})


def parse_datetime(value: str) -> datetime:
    """Parse an ISO 8601 timestamp as clients send it ("Z", offsets, 7 fraction digits); naive = UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python 3.11 accepts at most 6 fraction digits; .NET-style 7 are common in Graph payloads.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def cast_json_dict(value: Any) -> JsonDict:
    """Narrow a parsed JSON value to an object (``{}`` for an empty body)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return cast(JsonDict, value)
