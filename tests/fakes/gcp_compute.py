"""A stateful loopback stand-in for the GCP compute v1 REST API (firewalls and global operations).

It is meant to be driven by the real ``google.cloud.compute_v1.FirewallsClient`` (see
``make_client``), so that request encoding, error mapping, retries and operation polling are
the SDK's own. Response shapes come from the recorded-style JSON in ``tests/recordings/gcp``.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import ipaddress
import itertools
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings" / "gcp"

# The real API names resources under this root whatever host answered; keep it so that code
# parsing selfLinks sees the same strings it will see in production.
API_ROOT = "https://www.googleapis.com/compute/v1"

NAME_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
NAME_REGEX_TEXT = "(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)"  # as the API quotes it in errors
MAX_RANGES = 5000
MAX_PAGE = 500
PORTED_PROTOCOLS = {"tcp", "udp", "sctp"}
NAMED_PROTOCOLS = PORTED_PROTOCOLS | {"icmp", "esp", "ah", "ipip", "all"}

WRITABLE_FIELDS = (
    "name",
    "description",
    "network",
    "priority",
    "sourceRanges",
    "destinationRanges",
    "sourceTags",
    "targetTags",
    "sourceServiceAccounts",
    "targetServiceAccounts",
    "allowed",
    "denied",
    "direction",
    "logConfig",
    "disabled",
)

_FIREWALLS_PATH = re.compile(
    r"^/compute/v1/projects/(?P<project>[^/]+)/global/firewalls(?:/(?P<name>[^/]+))?$"
)
_OPERATION_PATH = re.compile(
    r"^/compute/v1/projects/(?P<project>[^/]+)/global/operations/(?P<op>[^/]+)(?P<wait>/wait)?$"
)
_WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
_ERROR_TEMPLATES = {
    400: "error_400_invalid.json",
    404: "error_404_not_found.json",
    409: "error_409_already_exists.json",
    429: "error_429_rate_limit_exceeded.json",
    500: "error_500_backend_error.json",
    503: "error_503_backend_error.json",
}


@cache
def _recording(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((RECORDINGS / name).read_text())
    return loaded


def recording(name: str) -> dict[str, Any]:
    """A fresh copy of a recorded response, safe to mutate."""
    return copy.deepcopy(_recording(name))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ApiError(Exception):
    """An error the stand-in answers with a Google JSON error body."""

    def __init__(self, status: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason

    def body(self) -> dict[str, Any]:
        body = recording(_ERROR_TEMPLATES[self.status])
        error = body["error"]
        error["message"] = self.message
        for item in error.get("errors", []):
            item["message"] = self.message
            if self.reason:
                item["reason"] = self.reason
        return body


def _invalid(path: str, value: Any, why: str) -> ApiError:
    return ApiError(400, f"Invalid value for field '{path}': '{value}'. {why}")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class _Operation:
    final: dict[str, Any]
    running: bool


# ---------------------------------------------------------------- filter expressions
#
# Compute accepts two filter dialects that may not be mixed: the regex one (`field eq re`,
# `field ne re`, RE2 full match) and AIP-160 (`=`, `!=`, `<`, `>`, `<=`, `>=`, `:`, AND/OR).

Predicate = Callable[[dict[str, Any]], bool]

_AIP_TOKEN = re.compile(
    r"""\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<op><=|>=|!=|=|<|>|:)|(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
    r"""|(?P<word>[^\s()=!<>:"']+))"""
)


def _values(resource: dict[str, Any], path: str) -> list[Any]:
    """Every leaf at a dotted path, flattening lists the way compute filters do."""
    current: list[Any] = [resource]
    for part in path.split("."):
        nxt: list[Any] = []
        for item in current:
            if isinstance(item, dict) and part in item:
                value = item[part]
                nxt.extend(value if isinstance(value, list) else [value])
        current = nxt
    return current


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unquote_literal(literal: str) -> str:
    literal = literal.strip()
    if len(literal) >= 2 and literal[0] == literal[-1] and literal[0] in "\"'":
        return literal[1:-1]
    return literal


def _regex_clause(field_name: str, op: str, literal: str) -> Predicate:
    try:
        pattern = re.compile(_unquote_literal(literal))
    except re.error as exc:
        raise _invalid("filter", literal, f"Invalid regular expression: {exc}") from None
    negate = op == "ne"

    def match(resource: dict[str, Any]) -> bool:
        hit = any(pattern.fullmatch(_text(v)) for v in _values(resource, field_name))
        return hit != negate

    return match


def _parse_regex_filter(text: str) -> Predicate | None:
    """The regex dialect, or None when the text is not in it."""
    single = re.fullmatch(r"\s*([A-Za-z][\w.]*)\s+(eq|ne)\s+(.+?)\s*", text, re.S)
    if single and not text.lstrip().startswith("("):
        return _regex_clause(*single.groups())
    if not text.lstrip().startswith("("):
        return None
    clauses: list[Predicate] = []
    pos = 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        head = re.compile(r"\(\s*([A-Za-z][\w.]*)\s+(eq|ne)\s+").match(text, pos)
        if not head:
            return None
        pos = head.end()
        # The literal is a regex and may hold its own parentheses: a quoted literal ends at
        # its quote, a bare one at the parenthesis that closes the clause.
        if pos < len(text) and text[pos] in "\"'":
            end = text.find(text[pos], pos + 1)
            if end < 0:
                raise _invalid("filter", text, "Unterminated quoted literal.")
            literal = text[pos : end + 1]
            close = text.find(")", end + 1)
            if close < 0 or text[end + 1 : close].strip():
                raise _invalid("filter", text, "Expected ')'.")
        else:
            depth, close = 0, pos
            while close < len(text) and not (text[close] == ")" and depth == 0):
                depth += {"(": 1, ")": -1}.get(text[close], 0)
                close += 1
            if close >= len(text):
                raise _invalid("filter", text, "Expected ')'.")
            literal = text[pos:close]
        clauses.append(_regex_clause(head.group(1), head.group(2), literal))
        pos = close + 1
    return lambda resource: all(clause(resource) for clause in clauses)


class _AipParser:
    """Recursive descent over AIP-160; as in AIP-160, OR binds tighter than AND."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = list(self._tokenize(text))
        self.pos = 0

    def _tokenize(self, text: str) -> Iterator[tuple[str, str]]:
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                return
            m = _AIP_TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise _invalid("filter", text, "Invalid list filter expression.")
            kind = m.lastgroup or ""
            yield kind, m.group(kind)
            pos = m.end()

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise _invalid("filter", self.text, "Unexpected end of filter expression.")
        self.pos += 1
        return token

    def parse(self) -> Predicate:
        predicate = self._and()
        if self._peek() is not None:
            raise _invalid("filter", self.text, "Invalid list filter expression.")
        return predicate

    def _and(self) -> Predicate:
        terms = [self._or()]
        while (token := self._peek()) is not None and token[0] != "rp":
            if token == ("word", "AND"):
                self.pos += 1
            terms.append(self._or())  # juxtaposed terms are an implicit AND
        return lambda r: all(t(r) for t in terms)

    def _or(self) -> Predicate:
        terms = [self._unary()]
        while self._peek() == ("word", "OR"):
            self.pos += 1
            terms.append(self._unary())
        return lambda r: any(t(r) for t in terms)

    def _unary(self) -> Predicate:
        token = self._peek()
        if token in {("word", "NOT"), ("word", "-")}:
            self.pos += 1
            inner = self._unary()
            return lambda r: not inner(r)
        if token is not None and token[0] == "lp":
            self.pos += 1
            inner = self._and()
            if self._take()[0] != "rp":
                raise _invalid("filter", self.text, "Expected ')'.")
            return inner
        return self._comparison()

    def _comparison(self) -> Predicate:
        kind, field_name = self._take()
        op_kind, op = self._take()
        value_kind, raw = self._take()
        if kind != "word" or op_kind != "op" or value_kind not in {"word", "str"}:
            raise _invalid("filter", self.text, "Invalid list filter expression.")
        value = raw[1:-1] if value_kind == "str" else raw
        return _aip_comparison(field_name, op, value)


def _aip_comparison(field_name: str, op: str, value: str) -> Predicate:
    def equals(v: Any) -> bool:
        if "*" in value:  # AIP-160 wildcard; rule names cannot hold '*', so this is unambiguous
            return re.fullmatch(".*".join(map(re.escape, value.split("*"))), _text(v)) is not None
        return _text(v) == value

    def ordered(v: Any) -> bool:
        try:
            left, right = float(v), float(value)
        except (TypeError, ValueError):
            left, right = _text(v), value  # type: ignore[assignment]
        return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op]

    def match(resource: dict[str, Any]) -> bool:
        values = _values(resource, field_name)
        if op == ":":
            return bool(values) if value == "*" else any(equals(v) for v in values)
        if op == "=":
            return any(equals(v) for v in values)
        if op == "!=":
            return not any(equals(v) for v in values)
        return any(ordered(v) for v in values)

    return match


def parse_filter(text: str) -> Predicate:
    """Compile a compute list filter; raises ApiError(400) for what the API would reject."""
    if not text.strip():
        return lambda resource: True
    regex = _parse_regex_filter(text)
    if regex is not None:
        return regex
    unquoted = re.sub(r"\"[^\"]*\"|'[^']*'", "", text)
    if re.search(r"\s(eq|ne)\s", unquoted):
        raise _invalid("filter", text, "Regular expression and AIP-160 filters cannot be mixed.")
    return _AipParser(text).parse()


# ---------------------------------------------------------------- validation


def _check_ranges(fw: dict[str, Any]) -> None:
    families: set[int] = set()
    for key in ("sourceRanges", "destinationRanges"):
        ranges = fw.get(key, [])
        if len(ranges) > MAX_RANGES:
            raise _invalid(
                f"resource.{key}", len(ranges), f"Exceeded maximum allowed {key}: {MAX_RANGES}."
            )
        for cidr in ranges:
            try:
                families.add(ipaddress.ip_network(cidr, strict=False).version)
            except ValueError:
                raise _invalid(
                    f"resource.{key}", cidr, "Must be a CIDR or an IP address."
                ) from None
    if len(families) > 1:
        raise _invalid(
            "resource", fw.get("name"), "IPv4 and IPv6 ranges cannot be mixed in one rule."
        )


def _check_rules(fw: dict[str, Any]) -> None:
    allowed, denied = fw.get("allowed") or [], fw.get("denied") or []
    if bool(allowed) == bool(denied):
        raise _invalid("resource", fw.get("name"), "Exactly one of allowed or denied must be set.")
    key = "allowed" if allowed else "denied"
    for i, rule in enumerate(allowed or denied):
        protocol = str(rule.get("IPProtocol", "")).lower()
        numeric = protocol.isdigit() and int(protocol) <= 255
        if protocol not in NAMED_PROTOCOLS and not numeric:
            raise _invalid(f"resource.{key}[{i}].IPProtocol", protocol, "Unknown protocol.")
        ports = rule.get("ports", [])
        if ports and protocol not in PORTED_PROTOCOLS and protocol not in {"6", "17", "132"}:
            raise _invalid(
                f"resource.{key}[{i}].ports", ports, "Ports are only allowed for tcp, udp, sctp."
            )
        for port in ports:
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", str(port))
            low, high = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (1, 0)
            if not m or low > high or high > 65535:
                raise _invalid(f"resource.{key}[{i}].ports", port, "Invalid port or port range.")


def validate_firewall(fw: dict[str, Any]) -> None:
    """Raise ApiError(400) for a rule the real API would refuse."""
    name = fw.get("name")
    if not isinstance(name, str) or len(name) > 63 or not NAME_RE.fullmatch(name):
        raise _invalid("resource.name", name, f"Must be a match of regex '{NAME_REGEX_TEXT}'")
    priority = fw.get("priority")
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 65535:
        raise _invalid("resource.priority", priority, "Must be between 0 and 65535.")
    if fw.get("direction") not in {"INGRESS", "EGRESS"}:
        raise _invalid("resource.direction", fw.get("direction"), "Must be INGRESS or EGRESS.")
    _check_rules(fw)
    _check_ranges(fw)
    if fw["direction"] == "EGRESS" and fw.get("sourceTags"):
        raise _invalid("resource.sourceTags", fw["sourceTags"], "Not allowed for EGRESS rules.")
    if fw.get("sourceServiceAccounts") and (fw.get("sourceTags") or fw.get("targetTags")):
        raise _invalid(
            "resource.sourceServiceAccounts",
            fw["sourceServiceAccounts"],
            "Cannot be used with tags.",
        )
    if fw.get("targetServiceAccounts") and fw.get("targetTags"):
        raise _invalid(
            "resource.targetServiceAccounts",
            fw["targetServiceAccounts"],
            "Cannot be used with tags.",
        )


def _network_url(project: str, network: str) -> str:
    m = re.fullmatch(
        r"(?:(?:https?://[^/]+/compute/v1/)?projects/(?P<project>[^/]+)/)?global/networks/(?P<name>[^/]+)",
        network,
    )
    if not m:
        raise _invalid("resource.network", network, "Must be a network URL.")
    return f"{API_ROOT}/projects/{m.group('project') or project}/global/networks/{m.group('name')}"


# ---------------------------------------------------------------- the server
_THROTTLE_MESSAGES = {
    429: _recording("error_429_rate_limit_exceeded.json")["error"]["message"],
    500: "Internal error. Please try again or contact Google Support.",
    503: "The service is currently unavailable.",
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a keep-alive connection left open must not block stop()
    fake: FakeCompute
    connections: set[socket.socket]

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        # Keep-alive connections outlive shutdown(); cut them so that a client still holding
        # one fails loudly instead of talking to a stopped fake.
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's requests session expects
    # Headers and body go out in two writes; with Nagle on, keep-alive requests stall ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, body = self.server.fake.handle(self.command, self.path, raw)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean; the call log is the record


class FakeCompute:
    """Firewalls and global operations of compute v1, in memory, on 127.0.0.1."""

    def __init__(
        self,
        *,
        page_size: int = MAX_PAGE,
        async_operations: bool = False,
        firewall_quota: int | None = None,
    ) -> None:
        self.page_size = page_size
        # True: writes answer RUNNING and the next GET of the operation answers DONE, so the
        # SDK's polling is exercised. False: writes answer DONE and nothing is polled.
        self.async_operations = async_operations
        # Rules per project, a quota in the real API; inserts past it fail in the operation.
        self.firewall_quota = firewall_quota
        self.requests: list[RecordedRequest] = []
        self._firewalls: dict[str, dict[str, dict[str, Any]]] = {}
        self._operations: dict[str, dict[str, _Operation]] = {}
        self._lock = threading.RLock()
        self._ids = itertools.count(4617203854318842165)
        self._throttle_left = 0
        self._throttle_status = 429
        self._throttle_writes_only = False
        self._writes_before_failure: int | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FakeCompute:
        if self._server is None:
            server = _Server(("127.0.0.1", 0), _Handler)
            server.fake = self
            server.connections = set()
            # A short poll interval keeps stop() (which waits for one poll) fast in tests.
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.02},
                name="fake-gcp-compute",
                daemon=True,
            )
            self._server = server
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.drop_connections()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> FakeCompute:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeCompute is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- call log

    @property
    def calls(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(r.method, r.path) for r in self.requests]

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if _is_write(*c)]

    def reads(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if not _is_write(*c)]

    def clear_calls(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- faults

    def throttle(self, n: int, status: int = 429, *, writes_only: bool = False) -> None:
        """The next n requests, of any kind (or only writes), answer `status` with
        Google's error body."""
        if status not in _ERROR_TEMPLATES or status < 429:
            raise ValueError(f"no recorded error body for a throttle status of {status}")
        with self._lock:
            self._throttle_left, self._throttle_status = n, status
            self._throttle_writes_only = writes_only

    def fail_writes_after(self, n: int) -> None:
        """After n more successful writes, every write answers 500 until clear_faults()."""
        with self._lock:
            self._writes_before_failure = n

    def clear_faults(self) -> None:
        with self._lock:
            self._throttle_left = 0
            self._writes_before_failure = None

    # -- direct state access

    def seed_firewall(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        """Add a rule as if made by hand (no request logged); raises ValueError if invalid."""
        with self._lock:
            try:
                fw = self._materialize(project, body)
            except ApiError as exc:
                raise ValueError(exc.message) from None
            for key in ("id", "creationTimestamp"):
                if key in body:
                    fw[key] = body[key]
            self._firewalls.setdefault(project, {})[fw["name"]] = fw
            return copy.deepcopy(fw)

    def firewalls(self, project: str) -> list[dict[str, Any]]:
        with self._lock:
            rules = self._firewalls.get(project, {})
            return [copy.deepcopy(rules[name]) for name in sorted(rules)]

    # -- request handling

    def handle(self, method: str, raw_path: str, raw_body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one HTTP request: (status, JSON body)."""
        split = urlsplit(raw_path)
        path = unquote(split.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        with self._lock:
            try:
                body = json.loads(raw_body) if raw_body else None
            except ValueError:
                body = None
                self.requests.append(RecordedRequest(method, path, query, body))
                return 400, ApiError(400, "Invalid JSON payload received.", "parseError").body()
            self.requests.append(RecordedRequest(method, path, query, body))
            if self._throttle_left > 0 and (
                not self._throttle_writes_only or _is_write(method, path)
            ):
                self._throttle_left -= 1
                return self._throttle_status, ApiError(
                    self._throttle_status, _THROTTLE_MESSAGES[self._throttle_status]
                ).body()
            write = _is_write(method, path)
            if write and self._writes_before_failure == 0:
                return 500, ApiError(500, _THROTTLE_MESSAGES[500]).body()
            try:
                status, answer = self._route(method, path, query, body)
            except ApiError as exc:
                return exc.status, exc.body()
            if write and self._writes_before_failure is not None:
                self._writes_before_failure -= 1
            return status, answer

    def _route(
        self, method: str, path: str, query: dict[str, str], body: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any]]:
        if m := _FIREWALLS_PATH.match(path):
            project, name = m.group("project"), m.group("name")
            if name is None and method == "GET":
                return 200, self._list(project, query)
            if name is None and method == "POST":
                return 200, self._insert(project, body or {})
            if name is not None and method == "GET":
                return 200, copy.deepcopy(self._existing(project, name))
            if name is not None and method in {"PATCH", "PUT"}:
                return 200, self._modify(project, name, body or {}, replace=method == "PUT")
            if name is not None and method == "DELETE":
                return 200, self._delete(project, name)
        m = _OPERATION_PATH.match(path)
        if m and (method == "GET" or (method == "POST" and m.group("wait"))):
            return 200, self._poll(m.group("project"), m.group("op"))
        raise ApiError(404, f"The requested URL {path} was not found on this server.")

    # -- firewalls

    def _existing(self, project: str, name: str) -> dict[str, Any]:
        fw = self._firewalls.get(project, {}).get(name)
        if fw is None:
            raise ApiError(
                404, f"The resource 'projects/{project}/global/firewalls/{name}' was not found"
            )
        return fw

    def _materialize(
        self, project: str, body: dict[str, Any], base: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Validate a request body (merged onto `base`) and return the rule as the API stores it."""
        template = _recording("firewall.json")
        fw: dict[str, Any] = {
            "network": "global/networks/default",
            "priority": 1000,
            "direction": "INGRESS",
            "logConfig": copy.deepcopy(template["logConfig"]),
            "disabled": False,
        }
        fw.update(copy.deepcopy(base or {}))
        # A field present in the body replaces the stored one, lists included: this is how
        # PATCH merges. The SDK never sends an empty list, so PATCH cannot clear one.
        fw.update({k: copy.deepcopy(v) for k, v in body.items() if k in WRITABLE_FIELDS})
        validate_firewall(fw)
        fw["network"] = _network_url(project, fw["network"])
        # The API fills an absent source (ingress) or destination (egress) with "anywhere".
        if fw["direction"] == "INGRESS" and not any(
            fw.get(k) for k in ("sourceRanges", "sourceTags", "sourceServiceAccounts")
        ):
            fw["sourceRanges"] = ["0.0.0.0/0"]
        if fw["direction"] == "EGRESS" and not fw.get("destinationRanges"):
            fw["destinationRanges"] = ["0.0.0.0/0"]
        fw["kind"] = template["kind"]
        fw.setdefault("id", str(next(self._ids)))
        fw.setdefault("creationTimestamp", _now())
        fw["selfLink"] = f"{API_ROOT}/projects/{project}/global/firewalls/{fw['name']}"
        order = {key: i for i, key in enumerate(template)}
        return {k: fw[k] for k in sorted(fw, key=lambda k: order.get(k, len(order)))}

    def _list(self, project: str, query: dict[str, str]) -> dict[str, Any]:
        try:
            max_results = int(query.get("maxResults") or MAX_PAGE)
        except ValueError:
            raise _invalid("maxResults", query["maxResults"], "Must be an integer.") from None
        if not 0 <= max_results <= MAX_PAGE:
            raise _invalid("maxResults", max_results, f"Must be between 0 and {MAX_PAGE}.")
        size = min(max_results or MAX_PAGE, self.page_size)
        keep = parse_filter(query.get("filter", ""))
        rules = self._firewalls.get(project, {})
        names = [n for n in sorted(rules) if keep(rules[n])]
        # The token names the last rule served, so a page boundary survives concurrent writes.
        if token := query.get("pageToken"):
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except ValueError:
                raise _invalid("pageToken", token, "Invalid page token.") from None
            names = [n for n in names if n > after]
        page = names[:size]
        answer = recording("firewall_list.json")
        answer["id"] = f"projects/{project}/global/firewalls"
        answer["selfLink"] = f"{API_ROOT}/projects/{project}/global/firewalls"
        answer["items"] = [copy.deepcopy(rules[n]) for n in page]
        if not page:
            del answer["items"]  # the API omits an empty items list
        if len(names) > size:
            answer["nextPageToken"] = base64.urlsafe_b64encode(page[-1].encode()).decode()
        else:
            del answer["nextPageToken"]
        return answer

    def _insert(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        fw = self._materialize(project, body)
        rules = self._firewalls.setdefault(project, {})
        if fw["name"] in rules:
            raise ApiError(
                409,
                f"The resource 'projects/{project}/global/firewalls/{fw['name']}' already exists",
            )
        if self.firewall_quota is not None and len(rules) >= self.firewall_quota:
            return self._operation(project, "insert", fw["name"], None, quota_error=True)
        rules[fw["name"]] = fw
        return self._operation(project, "insert", fw["name"], fw["id"])

    def _modify(
        self, project: str, name: str, body: dict[str, Any], *, replace: bool
    ) -> dict[str, Any]:
        current = self._existing(project, name)
        if body.get("name", name) != name:
            raise _invalid("resource.name", body["name"], "The name of a rule cannot be changed.")
        keep = {k: current[k] for k in ("id", "creationTimestamp")}
        base = keep if replace else current
        fw = self._materialize(project, {**body, "name": name}, base)
        self._firewalls[project][name] = fw
        return self._operation(project, "update" if replace else "patch", name, fw["id"])

    def _delete(self, project: str, name: str) -> dict[str, Any]:
        fw = self._existing(project, name)
        del self._firewalls[project][name]
        return self._operation(project, "delete", name, fw["id"])

    # -- operations

    def _operation(
        self,
        project: str,
        op_type: str,
        target: str,
        target_id: str | None,
        *,
        quota_error: bool = False,
    ) -> dict[str, Any]:
        serial = next(self._ids)
        millis = int(datetime.now(UTC).timestamp() * 1000)
        name = f"operation-{millis}-{serial:013x}-{serial & 0xFFFFFFFF:08x}-{op_type}"
        final = recording(
            "operation_done_quota_error.json" if quota_error else "operation_done.json"
        )
        started = _now()
        final.update(
            id=str(serial),
            name=name,
            operationType=op_type,
            targetLink=f"{API_ROOT}/projects/{project}/global/firewalls/{target}",
            insertTime=started,
            startTime=started,
            endTime=started,
            selfLink=f"{API_ROOT}/projects/{project}/global/operations/{name}",
        )
        if target_id is None:
            final.pop("targetId", None)
        else:
            final["targetId"] = target_id
        if quota_error:
            limit = f"{float(self.firewall_quota or 0)}"
            final["error"]["errors"][0]["message"] = (
                f"Quota 'FIREWALLS' exceeded.  Limit: {limit} globally."
            )
        op = _Operation(final=final, running=self.async_operations)
        self._operations.setdefault(project, {})[name] = op
        return self._render(op)

    def _poll(self, project: str, name: str) -> dict[str, Any]:
        op = self._operations.get(project, {}).get(name)
        if op is None:
            raise ApiError(
                404, f"The resource 'projects/{project}/global/operations/{name}' was not found"
            )
        # The write already answered RUNNING, which is enough to make the client poll.
        op.running = False
        return self._render(op)

    @staticmethod
    def _render(op: _Operation) -> dict[str, Any]:
        if not op.running:
            return copy.deepcopy(op.final)
        # A running operation carries the recorded running keys only: no endTime, no error.
        keys = _recording("operation_running.json")
        running = {k: copy.deepcopy(v) for k, v in op.final.items() if k in keys}
        running.update(status="RUNNING", progress=0)
        return running


def _is_write(method: str, path: str) -> bool:
    # Waiting on an operation is a POST, but it changes nothing.
    return method in _WRITE_METHODS and _OPERATION_PATH.match(path) is None


def make_operations_client(fake: FakeCompute) -> compute_v1.GlobalOperationsClient:
    return compute_v1.GlobalOperationsClient(
        client_options=ClientOptions(api_endpoint=fake.endpoint),
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        transport="rest",
    )


def make_client(fake: FakeCompute) -> compute_v1.FirewallsClient:
    """A real FirewallsClient talking to `fake`, whose operations also poll `fake`."""
    client = compute_v1.FirewallsClient(
        client_options=ClientOptions(api_endpoint=fake.endpoint),
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        transport="rest",
    )
    # The SDK builds the GlobalOperationsClient that ExtendedOperation.result() polls lazily,
    # from the credentials alone, ignoring client_options: it would poll
    # https://compute.googleapis.com. Pre-seed its cache with one aimed at the fake.
    services: dict[str, Any] = client._transport._extended_operations_services
    services["global_operations"] = make_operations_client(fake)
    return client


__all__ = [
    "API_ROOT",
    "ApiError",
    "FakeCompute",
    "RecordedRequest",
    "make_client",
    "make_operations_client",
    "parse_filter",
    "recording",
    "validate_firewall",
]
