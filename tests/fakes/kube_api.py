"""A small loopback stand-in for the Kubernetes API server.

Driven by the real ``kubernetes`` client (see ``KubeApi.api_client``), so URL building,
pagination parameters, auth headers, content types and error mapping are the client's own.
It serves what nsgsync uses and nothing more:

- list (``limit``/``continue`` honoured, items without kind/apiVersion as the real server
  sends them) and get, cluster-wide and per namespace, for the kinds in ``RESOURCES``;
- server-side apply (PATCH, ``application/apply-patch+yaml``) of namespaced objects;
- ``Status`` error bodies shaped like the real server's, and fault injection (``fail_next``).
"""

from __future__ import annotations

import base64
import copy
import functools
import itertools
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import kubernetes.client
import yaml


@dataclass(frozen=True)
class Resource:
    api_version: str  # "v1" for the core group, else "group/version"
    plural: str
    namespaced: bool = True

    @property
    def prefix(self) -> str:
        return "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


RESOURCES: dict[str, Resource] = {
    "Namespace": Resource("v1", "namespaces", namespaced=False),
    "Pod": Resource("v1", "pods"),
    "ReplicationController": Resource("v1", "replicationcontrollers"),
    "NetworkPolicy": Resource("networking.k8s.io/v1", "networkpolicies"),
    "Deployment": Resource("apps/v1", "deployments"),
    "StatefulSet": Resource("apps/v1", "statefulsets"),
    "DaemonSet": Resource("apps/v1", "daemonsets"),
    "ReplicaSet": Resource("apps/v1", "replicasets"),
    "Job": Resource("batch/v1", "jobs"),
    "CronJob": Resource("batch/v1", "cronjobs"),
    "SecurityGroupPolicy": Resource("vpcresources.k8s.aws/v1beta1", "securitygrouppolicies"),
    # Policy kinds of CNIs and of network-policy-api, served as their CRDs would be.
    "CiliumNetworkPolicy": Resource("cilium.io/v2", "ciliumnetworkpolicies"),
    "CiliumClusterwideNetworkPolicy": Resource(
        "cilium.io/v2", "ciliumclusterwidenetworkpolicies", namespaced=False
    ),
    "AdminNetworkPolicy": Resource(
        "policy.networking.k8s.io/v1alpha1", "adminnetworkpolicies", namespaced=False
    ),
}
_BY_PATH = {(r.prefix, r.plural): (kind, r) for kind, r in RESOURCES.items()}
APPLY_PATCH = "application/apply-patch+yaml"

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
}


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class _Fault:
    remaining: int
    status: int
    match: str | None


@dataclass
class _State:
    objects: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = field(
        default_factory=dict
    )
    calls: list[Call] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": _REASONS.get(self.status, "Unknown"),
            "code": self.status,
        }


def _fault_message(status: int, method: str, path: str) -> str:
    if status == 403:
        verb = "list" if method == "GET" else method.lower()
        return (
            f'forbidden: User "system:serviceaccount:nsgsync:nsgsync" cannot {verb} '
            f"the resource at {path}"
        )
    if status == 410:
        return (
            "The provided continue parameter is too old to display a consistent list result. "
            "You can start a new list without the continue parameter."
        )
    if status == 401:
        return "Unauthorized"
    return f"injected failure ({status})"


class KubeApi:
    """The stand-in server. Use as a context manager, or call start() and stop()."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token  # when set, requests must carry "Authorization: Bearer <token>"
        self._state = _State()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    def start(self) -> KubeApi:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        # A short poll interval, so that stop() (shutdown waits for a poll) stays quick.
        serve = functools.partial(self._server.serve_forever, poll_interval=0.05)
        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> KubeApi:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def api_client(self) -> Any:
        """A real kubernetes ApiClient pointed at this stand-in."""
        config = kubernetes.client.Configuration(host=self.url)
        if self.token:
            config.api_key = {"BearerToken": self.token}
            config.api_key_prefix = {"BearerToken": "Bearer"}
        return kubernetes.client.ApiClient(config)

    # --- seeding, inspection, faults ---

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object (a manifest with kind and apiVersion) as the server would."""
        kind = obj["kind"]
        res = RESOURCES[kind]
        stored = copy.deepcopy(obj)
        meta = stored.setdefault("metadata", {})
        if res.namespaced:
            meta.setdefault("namespace", "default")
        with self._state.lock:
            self._stamp(meta)
            key = (meta.get("namespace", ""), meta["name"])
            self._state.objects.setdefault((res.prefix, res.plural), {})[key] = stored
        return copy.deepcopy(stored)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        res = RESOURCES[kind]
        with self._state.lock:
            found = self._state.objects.get((res.prefix, res.plural), {}).get((namespace, name))
        return copy.deepcopy(found)

    @property
    def calls(self) -> list[Call]:
        with self._state.lock:
            return list(self._state.calls)

    def fail_next(self, n: int = 1, status: int = 403, match: str | None = None) -> None:
        """Answer the next `n` requests (whose path?query contains `match`) with `status`."""
        with self._state.lock:
            self._state.faults.append(_Fault(n, status, match))

    # --- request handling ---

    def _stamp(self, meta: dict[str, Any]) -> None:
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", "2024-01-01T00:00:00Z")
        meta["resourceVersion"] = str(next(self._state.versions))

    def _take_fault(self, target: str) -> int | None:
        for fault in self._state.faults:
            if fault.remaining > 0 and (fault.match is None or fault.match in target):
                fault.remaining -= 1
                return fault.status
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                self._serve("GET")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.title(): v for k, v in self.headers.items()}  # one spelling
                call = Call(method, parts.path, query, headers, body)
                with api._state.lock:
                    api._state.calls.append(call)
                    fault = api._take_fault(self.path)
                try:
                    if fault is not None:
                        raise ApiError(fault, _fault_message(fault, method, parts.path))
                    if api.token and self.headers.get("Authorization") != f"Bearer {api.token}":
                        raise ApiError(401, "Unauthorized")
                    status, payload = api._route(call)
                except ApiError as exc:
                    status, payload = exc.status, exc.body()
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _route(self, call: Call) -> tuple[int, dict[str, Any]]:
        # /api/v1/... or /apis/GROUP/VERSION/..., then [namespaces/NS/]PLURAL[/NAME]
        if call.path.rstrip("/") == "/apis" and call.method == "GET":
            return 200, self._discovery()
        segments = call.path.strip("/").split("/")
        split = 2 if segments[:1] == ["api"] else 3
        prefix, rest = "/" + "/".join(segments[:split]), segments[split:]
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not 1 <= len(rest) <= 2 or (prefix, rest[0]) not in _BY_PATH:
            raise ApiError(404, "the server could not find the requested resource")
        kind, res = _BY_PATH[(prefix, rest[0])]
        name = rest[1] if len(rest) == 2 else None
        if call.method == "GET" and name is None:
            return 200, self._list(kind, res, namespace, call.query)
        if call.method == "GET":
            return 200, self._get(kind, res, namespace or "", name or "")
        if call.method == "PATCH" and name is not None and namespace is not None:
            return self._apply(kind, res, namespace, name, call)
        raise ApiError(405, f"{call.method} is not supported here")

    def _discovery(self) -> dict[str, Any]:
        """APIGroupList: the groups and versions served, as GET /apis answers."""
        versions: dict[str, set[str]] = {}
        for res in RESOURCES.values():
            if res.group:
                versions.setdefault(res.group, set()).add(res.api_version)
        groups = []
        for group in sorted(versions):
            served = [
                {"groupVersion": gv, "version": gv.rpartition("/")[2]}
                for gv in sorted(versions[group])
            ]
            groups.append({"name": group, "versions": served, "preferredVersion": served[0]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def _list(
        self, kind: str, res: Resource, namespace: str | None, query: dict[str, str]
    ) -> dict[str, Any]:
        with self._state.lock:
            stored = self._state.objects.get((res.prefix, res.plural), {})
            items = [
                copy.deepcopy(obj)
                for key, obj in sorted(stored.items())
                if namespace is None or key[0] == namespace
            ]
            version = str(next(self._state.versions))
        start = 0
        if query.get("continue"):
            try:
                start = int(json.loads(base64.b64decode(query["continue"]))["start"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "continue key is not valid") from None
        limit = int(query.get("limit") or 0) or len(items)
        page, rest = items[start : start + limit], items[start + limit :]
        for item in page:  # list items carry neither kind nor apiVersion, as on a real server
            item.pop("kind", None)
            item.pop("apiVersion", None)
        meta: dict[str, Any] = {"resourceVersion": version}
        if rest:
            token = json.dumps({"start": start + limit})
            meta["continue"] = base64.b64encode(token.encode()).decode()
            meta["remainingItemCount"] = len(rest)
        return {
            "kind": f"{kind}List",
            "apiVersion": res.api_version,
            "metadata": meta,
            "items": page,
        }

    def _get(self, kind: str, res: Resource, namespace: str, name: str) -> dict[str, Any]:
        found = self.get(kind, namespace if res.namespaced else "", name)
        if found is None:
            raise ApiError(404, f'{res.plural} "{name}" not found')
        return found

    def _apply(
        self, kind: str, res: Resource, namespace: str, name: str, call: Call
    ) -> tuple[int, dict[str, Any]]:
        content_type = call.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip() != APPLY_PATCH:
            raise ApiError(415, f"only server-side apply is served here, not {content_type!r}")
        if not call.query.get("fieldManager"):
            raise ApiError(422, "fieldManager: Required value: is required for apply patch")
        obj = yaml.safe_load(call.body)  # JSON is YAML; the real server accepts both
        if not isinstance(obj, dict) or obj.get("kind") != kind:
            raise ApiError(400, f"the body must be a {kind} object")
        meta = obj.setdefault("metadata", {})
        if meta.get("name") != name or meta.setdefault("namespace", namespace) != namespace:
            raise ApiError(400, "the name or namespace of the object does not match the URL")
        with self._state.lock:
            bucket = self._state.objects.setdefault((res.prefix, res.plural), {})
            old = bucket.get((namespace, name))
            if old is not None:
                meta["uid"] = old["metadata"]["uid"]
                meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            self._stamp(meta)
            meta["managedFields"] = [{"manager": call.query["fieldManager"], "operation": "Apply"}]
            bucket[(namespace, name)] = obj
        return (200 if old is not None else 201), copy.deepcopy(obj)
