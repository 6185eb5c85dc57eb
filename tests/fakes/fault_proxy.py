"""A fault-injecting loopback HTTP proxy: the SDK talks to it, it talks to the cloud's stand-in
(moto's EC2 server, the compute stand-in), and a script says which requests go wrong, how.

Faults, each what a real network or cloud does to a client:

- `ERROR_500`: the server answers 500 (InternalError) without doing anything.
- `THROTTLE`: the cloud's throttling answer in its own shape (EC2: 503 RequestLimitExceeded;
  compute: 429 RESOURCE_EXHAUSTED; ARM: 429 with Retry-After), nothing done.
- `DROP`: the connection closes before the request reaches the server: nothing done.
- `LOSE`: the request reaches the server and takes effect; the reply is dropped (the
  connection closes), so the client cannot tell it from `DROP`.
- `HANG`: the connection is accepted and never answered.
- `EMPTY`: a 200 with an empty body, nothing done.
- `HTML`: a 200 HTML page (a captive portal, a misrouted load balancer), nothing done.

`after` is called once each write the server received is answered by it, before anything
goes back to the client, so a test can evaluate the cloud's rules between two calls.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from http import HTTPStatus
from typing import Any

import requests
from azure.core.exceptions import (
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.rest import HttpRequest, HttpResponse
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.core.utils import case_insensitive_dict

from tests.fakes.azure_arm import ArmTransport, FakeArm


class Fault(StrEnum):
    ERROR_500 = "500"
    THROTTLE = "throttle"
    DROP = "drop"
    LOSE = "lose"
    HANG = "hang"
    EMPTY = "empty"
    HTML = "html"
    REPLY = "reply"  # a scripted answer (`Rule.reply`), nothing done: the cloud's own error


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes

    @property
    def action(self) -> str:
        """EC2's `Action=` (a query API), else the method and path."""
        for part in self.body.split(b"&"):
            if part.startswith(b"Action="):
                return part[len(b"Action=") :].decode()
        return f"{self.method} {self.path.split('?', 1)[0]}"


THROTTLED = {
    "aws": (
        503,
        "text/xml",
        b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
        b"<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>"
        b"</Error></Errors><RequestID>fault-proxy</RequestID></Response>",
    ),
    "gcp": (
        429,
        "application/json",
        b'{"error": {"code": 429, "message": "Rate Limit Exceeded", '
        b'"status": "RESOURCE_EXHAUSTED", "errors": [{"reason": "rateLimitExceeded"}]}}',
    ),
    "azure": (
        429,
        "application/json",
        b'{"error": {"code": "TooManyRequests", "message": "throttled"}}',
    ),
}
SERVER_ERROR = {
    "aws": (
        500,
        "text/xml",
        b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
        b"<Code>InternalError</Code><Message>An internal error has occurred</Message>"
        b"</Error></Errors><RequestID>fault-proxy</RequestID></Response>",
    ),
    "gcp": (500, "application/json", b'{"error": {"code": 500, "message": "backendError"}}'),
    "azure": (500, "application/json", b'{"error": {"code": "InternalServerError"}}'),
}
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Sign in to the network</title></head>"
    b"<body><h1>Welcome</h1><p>Please accept the terms.</p></body></html>"
)


@dataclass
class Rule:
    fault: Fault
    when: Callable[[Request], bool]
    times: int
    reply: tuple[int, str, bytes] | None = None  # status, content type, body


def ec2_error(code: str, message: str = "refused") -> bytes:
    """An EC2 error reply, in EC2's XML shape."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
        f"<Code>{code}</Code><Message>{message}</Message>"
        "</Error></Errors><RequestID>fault-proxy</RequestID></Response>"
    ).encode()


@dataclass
class Script:
    """Which requests get which fault (rules tried in the order injected), and what was seen."""

    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, Fault | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(
        self, fault: Fault, when: Callable[[Request], bool] | str, *, times: int = 1
    ) -> None:
        """The next `times` requests that `when` matches (an action name, or a test) get
        `fault`; rules are tried in the order they were injected."""
        test = (lambda r, a=when: r.action == a) if isinstance(when, str) else when
        self.rules.append(Rule(fault, test, times))

    def answer(
        self,
        when: Callable[[Request], bool] | str,
        status: int,
        body: bytes,
        *,
        kind: str = "text/xml",
        times: int = 1,
    ) -> None:
        """The next `times` matching requests are answered `status` and `body`, unforwarded."""
        self.inject(Fault.REPLY, when, times=times)
        self.rules[-1].reply = (status, kind, body)

    def faults(self) -> list[tuple[str, Fault]]:
        """The requests that got a fault, in order: (action, fault)."""
        return [(a, f) for a, f in self.seen if f is not None]

    def _pick(self, req: Request) -> Fault | None:
        return self._rule(req)[0]

    def _rule(self, req: Request) -> tuple[Fault | None, Rule | None]:
        with self.lock:
            for rule in self.rules:
                if rule.times > 0 and rule.when(req):
                    rule.times -= 1
                    self.seen.append((req.action, rule.fault))
                    return rule.fault, rule
            self.seen.append((req.action, None))
            return None, None


@dataclass
class FaultProxy(Script):
    upstream: str = ""
    flavor: str = "aws"  # aws | gcp | azure: the shape of throttling and server errors
    is_write: Callable[[Request], bool] = lambda _: False
    url: str = ""
    after: Callable[[], None] = lambda: None
    released: threading.Event = field(default_factory=threading.Event)


@contextmanager
def fault_proxy(
    upstream: str, *, flavor: str, is_write: Callable[[Request], bool]
) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream=upstream, flavor=flavor, is_write=is_write)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _cut(self) -> None:
            # No reply at all: the client sees the connection close under it.
            self.close_connection = True
            with suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def _answer(self, status: int, kind: str, body: bytes, **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            req = Request(self.command, self.path, body)
            fault, rule = proxy._rule(req)
            if fault is Fault.REPLY and rule is not None and rule.reply is not None:
                return self._answer(*rule.reply)
            if fault is Fault.DROP:
                return self._cut()
            if fault is Fault.HANG:
                proxy.released.wait(120)
                return self._cut()
            if fault is Fault.THROTTLE:
                status, kind, text = THROTTLED[proxy.flavor]
                return self._answer(status, kind, text, **{"Retry-After": "0"})
            if fault is Fault.ERROR_500:
                return self._answer(*SERVER_ERROR[proxy.flavor])
            if fault is Fault.EMPTY:
                return self._answer(200, "text/xml", b"")
            if fault is Fault.HTML:
                return self._answer(200, "text/html; charset=utf-8", HTML_PAGE)
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
            }
            reply = requests.request(
                self.command, proxy.upstream + self.path, data=body, headers=headers, timeout=30
            )
            if proxy.is_write(req):
                proxy.after()
            if fault is Fault.LOSE:
                return self._cut()
            self.send_response(reply.status_code)
            for k, v in reply.headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(reply.content)))
            self.end_headers()
            self.wfile.write(reply.content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield proxy
    finally:
        proxy.released.set()
        server.shutdown()
        server.server_close()


def ec2_write(req: Request) -> bool:
    return req.method == "POST" and not req.action.startswith("Describe")


class FaultyArmTransport(ArmTransport):
    """The ARM stand-in is a transport, not a server: the same faults, at the transport. What
    a client sees of a dropped connection, a lost reply or a silent endpoint is an exception
    from the transport, raised here as azure-core's own transports raise them."""

    def __init__(self, fake: FakeArm) -> None:
        super().__init__(fake)
        self.script = Script()
        self.after: Callable[[], None] = lambda: None

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        content: Any = request.content
        if hasattr(content, "read"):
            content = content.read()
        body = content.encode() if isinstance(content, str) else content or b""
        req = Request(request.method, request.url, body)
        fault = self.script._pick(req)
        if fault is Fault.DROP:
            raise ServiceRequestError("connection closed before the request was sent")
        if fault is Fault.HANG:
            raise ServiceResponseTimeoutError("read timed out: no answer")
        if fault in (Fault.THROTTLE, Fault.ERROR_500):
            table = THROTTLED if fault is Fault.THROTTLE else SERVER_ERROR
            status, kind, text = table["azure"]
            return _Raw(request, status, kind, text, {"Retry-After": "0"})
        if fault is Fault.EMPTY:
            return _Raw(request, 200, "application/json", b"")
        if fault is Fault.HTML:
            return _Raw(request, 200, "text/html; charset=utf-8", HTML_PAGE)
        reply = super().send(request, **kwargs)
        if request.method in ("PUT", "PATCH", "DELETE", "POST"):
            self.after()
        if fault is Fault.LOSE:
            raise ServiceResponseError("connection closed before the reply")
        return reply


class _Raw(HttpResponseImpl):
    def __init__(
        self,
        request: HttpRequest,
        status: int,
        kind: str,
        content: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        all_headers = {"Content-Type": kind, "Content-Length": str(len(content)), **(headers or {})}
        super().__init__(
            request=request,
            internal_response=None,
            status_code=status,
            reason=HTTPStatus(status).phrase,
            content_type=kind,
            headers=case_insensitive_dict(all_headers),
            stream_download_generator=lambda *_a, **_k: iter([content]),
        )
        self._content = content

    def close(self) -> None:
        self._is_closed = True


__all__ = [
    "Fault",
    "FaultProxy",
    "FaultyArmTransport",
    "Request",
    "Script",
    "ec2_error",
    "ec2_write",
    "fault_proxy",
]
