"""The plumbing every local stand-in shares: a loopback HTTP server in a thread,
a record of the requests it served, and scripted faults.

The stand-ins replace hosted services that cannot run here (Google Sheets,
Telegram, SendGrid). They speak those services' wire protocols so the real
client code is exercised; what they add is the ability to fail on purpose
("the next 2 requests get a 429", "every request gets a 403") because retry and
dead-letter behaviour is exactly what the tests must prove.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in saw it, and the status it answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        """The request body decoded as JSON (the stand-ins' APIs are JSON)."""
        return json.loads(self.body.decode("utf-8")) if self.body else None


@dataclass(frozen=True)
class Reply:
    """What a route handler answers: status, JSON-able body, extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _FaultPlan:
    remaining: int = 0
    status: int = 500
    permanent: bool = False
    retry_after: float | None = None


class FaultInjector:
    """Scripted failures: the next N requests, or every request, fail."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plan = _FaultPlan()

    def fail_next(self, count: int, status: int = 500, retry_after: float | None = None) -> None:
        """Answer the next ``count`` matching requests with ``status``."""
        with self._lock:
            self._plan = _FaultPlan(remaining=count, status=status, retry_after=retry_after)

    def fail_always(self, status: int) -> None:
        """Answer every matching request with ``status`` until ``reset``."""
        with self._lock:
            self._plan = _FaultPlan(status=status, permanent=True)

    def reset(self) -> None:
        """Stop failing."""
        with self._lock:
            self._plan = _FaultPlan()

    def take(self) -> tuple[int, float | None] | None:
        """The failure to serve for this request, if any (consumes one)."""
        with self._lock:
            plan = self._plan
            if plan.permanent:
                return plan.status, plan.retry_after
            if plan.remaining > 0:
                plan.remaining -= 1
                return plan.status, plan.retry_after
            return None


def apply_fault_script(faults: FaultInjector, request: RecordedRequest) -> Reply:
    """Handle a stand-in's ``POST /_admin/faults``: fail always, the next N, or stop."""
    payload = request.json() or {}
    if payload.get("always"):
        faults.fail_always(int(payload.get("status", 500)))
    elif int(payload.get("count", 0)) > 0:
        faults.fail_next(int(payload["count"]), int(payload.get("status", 500)))
    else:
        faults.reset()
    return Reply(200, {"ok": True})


Route = Callable[[RecordedRequest, dict[str, str]], Reply]


class StandInServer:
    """A threaded HTTP server on 127.0.0.1 (ephemeral port unless given).

    Subclasses register routes with :meth:`route`; a route is a method, a path
    template of ``/``-separated segments where ``{name}`` matches one segment
    (``{name...}`` matches the rest of the path), and a handler.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._routes: list[tuple[str, list[str], Route]] = []
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._host = host
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> StandInServer:
        """Bind and serve in a daemon thread; returns self for chaining."""
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer((self._host, self._port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down and release the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Block until interrupted (for running a stand-in as a process)."""
        if self._httpd is None:
            self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=1.0)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("stand-in not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: what a client is pointed at."""
        return f"http://{self._host}:{self.port}"

    # -- recording ---------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request served so far (a copy), in arrival order."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    # -- routing -----------------------------------------------------------
    def route(self, method: str, template: str, handler: Route) -> None:
        self._routes.append((method.upper(), _segments(template), handler))

    def dispatch(self, request: RecordedRequest) -> Reply:
        segments = _segments(request.path)
        for method, template, handler in self._routes:
            if method != request.method:
                continue
            params = _match(template, segments)
            if params is not None:
                return handler(request, params)
        return Reply(404, {"error": {"code": 404, "message": f"no route for {request.path}"}})


def serve_as_process(server: StandInServer, name: str) -> None:
    """Start ``server``, announce its URL on stdout, and block until interrupted."""
    server.start()
    print(f"{name} stand-in on {server.base_url}", flush=True)
    server.serve_forever()


def _segments(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def _match(template: list[str], segments: list[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for index, part in enumerate(template):
        if part.startswith("{") and part.endswith("...}"):
            params[part[1:-4]] = "/".join(segments[index:])
            return params
        if index >= len(segments):
            return None
        segment = segments[index]
        if part.startswith("{") and part.endswith("}"):
            params[part[1:-1]] = segment
        elif part != segment:
            # Google-style custom methods ("values:batchGet") are literal segments.
            return None
    return params if len(template) == len(segments) else None


def _make_handler(server: StandInServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet: tests read the recorded requests instead."""

        def _handle(self) -> None:
            from urllib.parse import unquote

            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            incoming = RecordedRequest(
                method=self.command,
                path=unquote(parts.path),
                query=parse_qs(parts.query),
                headers={key.lower(): value for key, value in self.headers.items()},
                body=body,
                status=0,
            )
            try:
                reply = server.dispatch(incoming)
            except Exception as exc:  # a bug in a stand-in must still answer
                reply = Reply(500, {"error": {"code": 500, "message": repr(exc)}})
            server._record(
                RecordedRequest(
                    method=incoming.method,
                    path=incoming.path,
                    query=incoming.query,
                    headers=incoming.headers,
                    body=incoming.body,
                    status=reply.status,
                )
            )
            payload = b"" if reply.body is None else json.dumps(reply.body).encode("utf-8")
            self.send_response(reply.status)
            if reply.body is not None:
                self.send_header("Content-Type", "application/json; charset=UTF-8")
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload:
                self.wfile.write(payload)

        do_GET = _handle
        do_POST = _handle
        do_PUT = _handle
        do_DELETE = _handle
        do_PATCH = _handle

    return Handler


Delivered = TypeVar("Delivered")


class DeliveryStandIn(StandInServer, Generic[Delivered]):
    """A stand-in that accepts deliveries (messages, mails), keeps them in order
    and can be told to fail: the part Telegram's and SendGrid's stand-ins share.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.faults = FaultInjector()
        self._delivered_lock = threading.Lock()
        self._delivered: list[Delivered] = []
        self._ids = itertools.count(1)
        self.route("POST", "/_admin/faults", self._admin_faults)

    def delivered(self) -> list[Delivered]:
        """Deliveries accepted, in order."""
        with self._delivered_lock:
            return list(self._delivered)

    def _next_id(self) -> int:
        return next(self._ids)

    def _accept(self, item: Delivered) -> None:
        with self._delivered_lock:
            self._delivered.append(item)

    def _admin_faults(self, request: RecordedRequest, params: dict[str, str]) -> Reply:
        return apply_fault_script(self.faults, request)
