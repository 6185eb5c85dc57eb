"""A small loopback stand-in for the Kubernetes API server.

Driven by the real ``kubernetes`` client (see ``KubeApi.api_client``), so URL building,
pagination parameters, auth headers, content types and error mapping are the client's own.
It serves what nsgsync uses and nothing more:

- list (``limit``/``continue`` honoured, ``labelSelector`` with ``k=v`` terms, items without
  kind/apiVersion as the real server sends them) and get, cluster-wide and per namespace, for
  the kinds in ``RESOURCES``;
- watch (``watch=true``) from a ``resourceVersion``, streamed in chunks as the real server
  does, with ``BOOKMARK`` events when ``allowWatchBookmarks`` is set, ``timeoutSeconds``, and
  an ``ERROR`` event with a 410 Status for a version older than the last ``compact()``;
  ``drop_watches()`` cuts every open watch mid-stream, as a lost connection does;
- server-side apply (PATCH, ``application/apply-patch+yaml``) and JSON merge patch
  (``application/merge-patch+json``) of namespaced objects; create (POST), replace (PUT,
  409 Conflict when ``metadata.resourceVersion`` is not the stored one: optimistic
  concurrency, as Leases rely on) and DELETE;
- ``Status`` error bodies shaped like the real server's, and fault injection (``fail_next``).
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import socket
import threading
import time
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
    "Lease": Resource("coordination.k8s.io/v1", "leases"),
    "Event": Resource("events.k8s.io/v1", "events"),
    # Policy kinds of CNIs and of network-policy-api, served as their CRDs would be.
    "CiliumNetworkPolicy": Resource("cilium.io/v2", "ciliumnetworkpolicies"),
    "CiliumClusterwideNetworkPolicy": Resource(
        "cilium.io/v2", "ciliumclusterwidenetworkpolicies", namespaced=False
    ),
    "AdminNetworkPolicy": Resource(
        "policy.networking.k8s.io/v1alpha1", "adminnetworkpolicies", namespaced=False
    ),
    "BaselineAdminNetworkPolicy": Resource(
        "policy.networking.k8s.io/v1alpha1", "baselineadminnetworkpolicies", namespaced=False
    ),
    "ClusterNetworkPolicy": Resource(
        "policy.networking.k8s.io/v1alpha2", "clusternetworkpolicies", namespaced=False
    ),
    # Calico's API server; its NetworkPolicy shares a kind name, so it is keyed kind.group.
    "NetworkPolicy.projectcalico.org": Resource("projectcalico.org/v3", "networkpolicies"),
    "GlobalNetworkPolicy": Resource(
        "projectcalico.org/v3", "globalnetworkpolicies", namespaced=False
    ),
    "Tier": Resource("projectcalico.org/v3", "tiers", namespaced=False),
    "NetworkSet": Resource("projectcalico.org/v3", "networksets"),
    "GlobalNetworkSet": Resource("projectcalico.org/v3", "globalnetworksets", namespaced=False),
    # Antrea's cluster-wide kind: one nsgsync refuses (docs/semantics.md).
    "ClusterNetworkPolicy.crd.antrea.io": Resource(
        "crd.antrea.io/v1beta1", "clusternetworkpolicies", namespaced=False
    ),
    # Calico's CRDs underneath its API server (crd.projectcalico.org/v1).
    "GlobalNetworkPolicy.crd.projectcalico.org": Resource(
        "crd.projectcalico.org/v1", "globalnetworkpolicies", namespaced=False
    ),
}
_BY_PATH = {(r.prefix, r.plural): (kind, r) for kind, r in RESOURCES.items()}
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
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


@dataclass(frozen=True)
class _Change:
    """One entry of the server's change log, what watches replay."""

    version: int
    bucket: tuple[str, str]
    namespace: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]


@dataclass
class _State:
    objects: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = field(
        default_factory=dict
    )
    calls: list[Call] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    version: int = 1000  # the last resourceVersion handed out
    log: list[_Change] = field(default_factory=list)
    floor: int = 0  # watches from a version below this get 410 Gone
    drops: int = 0  # bumped by drop_watches(): open watches cut their connection
    compactions: int = 0  # bumped by compact(): open watches end with a 410 ERROR event
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)


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


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def _selected(obj: dict[str, Any], selector: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


class KubeApi:
    """The stand-in server. Use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        token: str | None = None,
        *,
        bookmark_interval: float = 0.5,
        absent_groups: frozenset[str] = frozenset(),
    ) -> None:
        self.token = token  # when set, requests must carry "Authorization: Bearer <token>"
        # API groups discovery leaves out, as a cluster without those CRDs installed.
        self.absent_groups = absent_groups
        self.bookmark_interval = bookmark_interval  # seconds between BOOKMARKs on a watch
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
            self.drop_watches()
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
        """Store an object (a manifest with kind and apiVersion) as the server would.

        Adding one that exists replaces it (a MODIFIED event for watches).
        """
        kind = obj["kind"]
        group = str(obj.get("apiVersion", "")).rpartition("/")[0]
        res = RESOURCES.get(f"{kind}.{group}") or RESOURCES[kind]
        stored = copy.deepcopy(obj)
        meta = stored.setdefault("metadata", {})
        if res.namespaced:
            meta.setdefault("namespace", "default")
        with self._state.lock:
            bucket = self._state.objects.setdefault((res.prefix, res.plural), {})
            key = (meta.get("namespace", ""), meta["name"])
            old = bucket.get(key)
            if old is not None:
                meta["uid"] = old["metadata"]["uid"]
            self._store(res, key, stored, "MODIFIED" if old is not None else "ADDED")
        return copy.deepcopy(stored)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Remove an object as `kubectl delete` would; False when there was none."""
        res = RESOURCES[kind]  # a kind shared by two groups: pass `kind.group`
        with self._state.lock:
            return self._remove(res, (namespace if res.namespaced else "", name)) is not None

    def must(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """The stored object, which the caller knows exists."""
        found = self.get(kind, namespace, name)
        assert found is not None, f"no {kind} {namespace}/{name}"
        return found

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        res = RESOURCES[kind]
        with self._state.lock:
            found = self._state.objects.get((res.prefix, res.plural), {}).get((namespace, name))
        return copy.deepcopy(found)

    def objects(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every stored object of a kind (in a namespace), sorted by namespace and name."""
        res = RESOURCES[kind]
        with self._state.lock:
            stored = self._state.objects.get((res.prefix, res.plural), {})
            return [
                copy.deepcopy(obj)
                for key, obj in sorted(stored.items())
                if namespace is None or key[0] == namespace
            ]

    @property
    def calls(self) -> list[Call]:
        with self._state.lock:
            return list(self._state.calls)

    def fail_next(self, n: int = 1, status: int = 403, match: str | None = None) -> None:
        """Answer the next `n` requests (whose path?query contains `match`) with `status`."""
        with self._state.lock:
            self._state.faults.append(_Fault(n, status, match))

    def drop_watches(self) -> None:
        """Cut every open watch mid-stream, as a lost connection or a restarted server does."""
        with self._state.changed:
            self._state.drops += 1
            self._state.changed.notify_all()

    def compact(self) -> None:
        """Forget the change log: a watch from any version handed out so far gets 410 Gone.

        Open watches end with the ERROR event the real server sends when a watcher fell
        too far behind its watch cache.
        """
        with self._state.changed:
            self._state.floor = self._state.version + 1
            self._state.log.clear()
            self._state.compactions += 1
            self._state.changed.notify_all()

    # --- storage (callers hold the lock) ---

    def _next_version(self) -> str:
        self._state.version += 1
        return str(self._state.version)

    def _store(self, res: Resource, key: tuple[str, str], obj: dict[str, Any], change: str) -> None:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", "2024-01-01T00:00:00Z")
        meta["resourceVersion"] = self._next_version()
        bucket = (res.prefix, res.plural)
        self._state.objects.setdefault(bucket, {})[key] = obj
        self._log(bucket, key[0], change, obj)

    def _remove(self, res: Resource, key: tuple[str, str]) -> dict[str, Any] | None:
        bucket = (res.prefix, res.plural)
        old = self._state.objects.get(bucket, {}).pop(key, None)
        if old is not None:
            old["metadata"]["resourceVersion"] = self._next_version()
            self._log(bucket, key[0], "DELETED", old)
        return old

    def _log(
        self, bucket: tuple[str, str], namespace: str, change: str, obj: dict[str, Any]
    ) -> None:
        version = int(obj["metadata"]["resourceVersion"])
        self._state.log.append(_Change(version, bucket, namespace, change, copy.deepcopy(obj)))
        self._state.changed.notify_all()

    def _take_fault(self, target: str) -> int | None:
        for fault in self._state.faults:
            if fault.remaining > 0 and (fault.match is None or fault.match in target):
                fault.remaining -= 1
                return fault.status
        return None

    # --- request handling ---

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1: watch responses are chunked, so that the client reads each event
            # as it comes rather than the whole stream at its end.
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                self._serve("GET")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

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
                    if method == "GET" and query.get("watch") in ("true", "1", "True"):
                        api._watch(self, call)
                        return
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

    def _resolve(self, path: str) -> tuple[str, Resource, str | None, str | None]:
        # /api/v1/... or /apis/GROUP/VERSION/..., then [namespaces/NS/]PLURAL[/NAME]
        segments = path.strip("/").split("/")
        split = 2 if segments[:1] == ["api"] else 3
        prefix, rest = "/" + "/".join(segments[:split]), segments[split:]
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not 1 <= len(rest) <= 2 or (prefix, rest[0]) not in _BY_PATH:
            raise ApiError(404, "the server could not find the requested resource")
        kind, res = _BY_PATH[(prefix, rest[0])]
        return kind, res, namespace, rest[1] if len(rest) == 2 else None

    def _route(self, call: Call) -> tuple[int, dict[str, Any]]:
        if call.path.rstrip("/") == "/apis" and call.method == "GET":
            return 200, self._discovery()
        kind, res, namespace, name = self._resolve(call.path)
        if call.method == "GET" and name is None:
            return 200, self._list(kind, res, namespace, call.query)
        if call.method == "GET":
            return 200, self._get(kind, res, namespace or "", name or "")
        if call.method == "POST" and name is None and namespace is not None:
            return self._create(kind, res, namespace, call)
        if name is not None and namespace is not None:
            if call.method == "PATCH":
                return self._patch(kind, res, namespace, name, call)
            if call.method == "PUT":
                return self._replace(kind, res, namespace, name, call)
            if call.method == "DELETE":
                return self._delete(res, namespace, name)
        raise ApiError(405, f"{call.method} is not supported here")

    def _discovery(self) -> dict[str, Any]:
        """APIGroupList: the groups and versions served, as GET /apis answers."""
        versions: dict[str, set[str]] = {}
        for res in RESOURCES.values():
            if res.group and res.group not in self.absent_groups:
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
        selector = query.get("labelSelector", "")
        with self._state.lock:
            stored = self._state.objects.get((res.prefix, res.plural), {})
            # Copied after paging: a page of a large list copies that page, not the list.
            items = [
                obj
                for key, obj in sorted(stored.items())
                if (namespace is None or key[0] == namespace) and _selected(obj, selector)
            ]
            version = str(self._state.version)
            start = 0
            if query.get("continue"):
                try:
                    start = int(json.loads(base64.b64decode(query["continue"]))["start"])
                except (ValueError, KeyError, TypeError):
                    raise ApiError(400, "continue key is not valid") from None
            limit = int(query.get("limit") or 0) or len(items)
            page = [copy.deepcopy(obj) for obj in items[start : start + limit]]
            rest = items[start + limit :]
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

    def _body(self, kind: str, res: Resource, namespace: str, call: Call) -> dict[str, Any]:
        try:
            obj = json.loads(call.body)
        except ValueError:
            raise ApiError(400, "the body is not JSON") from None
        if not isinstance(obj, dict):
            raise ApiError(400, f"the body must be a {kind} object")
        obj.setdefault("kind", kind)
        obj.setdefault("apiVersion", res.api_version)
        if obj["kind"] != kind:
            raise ApiError(400, f"the body must be a {kind} object")
        meta = obj.setdefault("metadata", {})
        if meta.setdefault("namespace", namespace) != namespace:
            raise ApiError(400, "the namespace of the object does not match the URL")
        return obj

    def _create(
        self, kind: str, res: Resource, namespace: str, call: Call
    ) -> tuple[int, dict[str, Any]]:
        obj = self._body(kind, res, namespace, call)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(422, "metadata.name: Required value: name or generateName is required")
        meta.pop("resourceVersion", None)
        with self._state.lock:
            bucket = self._state.objects.setdefault((res.prefix, res.plural), {})
            if (namespace, name) in bucket:
                raise ApiError(409, f'{res.plural}.{res.group} "{name}" already exists')
            meta["uid"] = str(uuid.uuid4())
            self._store(res, (namespace, name), obj, "ADDED")
        return 201, copy.deepcopy(obj)

    def _replace(
        self, kind: str, res: Resource, namespace: str, name: str, call: Call
    ) -> tuple[int, dict[str, Any]]:
        obj = self._body(kind, res, namespace, call)
        meta = obj["metadata"]
        if meta.get("name") != name:
            raise ApiError(400, "the name of the object does not match the URL")
        with self._state.lock:
            old = self._state.objects.get((res.prefix, res.plural), {}).get((namespace, name))
            if old is None:
                raise ApiError(404, f'{res.plural}.{res.group} "{name}" not found')
            expected = meta.get("resourceVersion")
            if expected and expected != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    f'Operation cannot be fulfilled on {res.plural}.{res.group} "{name}": the '
                    "object has been modified; please apply your changes to the latest "
                    "version and try again",
                )
            meta["uid"] = old["metadata"]["uid"]
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            self._store(res, (namespace, name), obj, "MODIFIED")
        return 200, copy.deepcopy(obj)

    def _delete(self, res: Resource, namespace: str, name: str) -> tuple[int, dict[str, Any]]:
        with self._state.lock:
            old = self._remove(res, (namespace, name))
        if old is None:
            raise ApiError(404, f'{res.plural}.{res.group} "{name}" not found')
        return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}

    def _patch(
        self, kind: str, res: Resource, namespace: str, name: str, call: Call
    ) -> tuple[int, dict[str, Any]]:
        content_type = call.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type == MERGE_PATCH:
            return self._merge_patch(res, namespace, name, call)
        if content_type != APPLY_PATCH:
            raise ApiError(
                415, f"only apply and merge patches are served here, not {content_type!r}"
            )
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
            meta["managedFields"] = [{"manager": call.query["fieldManager"], "operation": "Apply"}]
            self._store(res, (namespace, name), obj, "MODIFIED" if old is not None else "ADDED")
        return (200 if old is not None else 201), copy.deepcopy(obj)

    def _merge_patch(
        self, res: Resource, namespace: str, name: str, call: Call
    ) -> tuple[int, dict[str, Any]]:
        try:
            patch = json.loads(call.body)
        except ValueError:
            raise ApiError(400, "the patch is not JSON") from None
        with self._state.lock:
            old = self._state.objects.get((res.prefix, res.plural), {}).get((namespace, name))
            if old is None:
                raise ApiError(404, f'{res.plural}.{res.group} "{name}" not found')
            obj = _merge(old, patch)
            obj["metadata"]["name"], obj["metadata"]["uid"] = name, old["metadata"]["uid"]
            self._store(res, (namespace, name), obj, "MODIFIED")
        return 200, copy.deepcopy(obj)

    # --- watch ---

    def _watch(self, handler: BaseHTTPRequestHandler, call: Call) -> None:
        kind, res, namespace, name = self._resolve(call.path)
        if name is not None:
            raise ApiError(405, "watch a collection, not one object")
        bucket = (res.prefix, res.plural)
        bookmarks = call.query.get("allowWatchBookmarks") in ("true", "1", "True")
        deadline = time.monotonic() + float(call.query.get("timeoutSeconds") or 1800)
        with self._state.lock:
            since = int(call.query.get("resourceVersion") or self._state.version)
            drops, compactions = self._state.drops, self._state.compactions
            expired = since < self._state.floor
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True

        def send(event: dict[str, Any]) -> None:
            data = json.dumps(event).encode() + b"\n"
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            handler.wfile.flush()

        def gone() -> None:
            status = ApiError(410, f"too old resource version: {since} ({self._state.floor})")
            send({"type": "ERROR", "object": status.body()})

        try:
            if expired:
                gone()
                handler.wfile.write(b"0\r\n\r\n")
                return
            next_bookmark = time.monotonic() + self.bookmark_interval
            while True:
                with self._state.changed:
                    # One snapshot: the changes to send and the version they bring the
                    # watcher to (a bookmark never skips a change not yet sent).
                    pending = [
                        c
                        for c in self._state.log
                        if c.version > since
                        and c.bucket == bucket
                        and (namespace is None or c.namespace == namespace)
                    ]
                    current = self._state.version
                    dropped = self._state.drops != drops
                    compacted = self._state.compactions != compactions
                    now = time.monotonic()
                    if not (pending or dropped or compacted) and now < min(next_bookmark, deadline):
                        self._state.changed.wait(timeout=min(next_bookmark, deadline) - now)
                        continue
                if dropped:
                    # No terminating chunk: the client sees the stream break off.
                    handler.connection.shutdown(socket.SHUT_RDWR)
                    return
                for c in pending:
                    send({"type": c.type, "object": c.obj})
                    since = c.version
                if compacted:
                    gone()
                    break
                now = time.monotonic()
                if bookmarks and now >= next_bookmark:
                    since = max(since, current)
                    meta = {"resourceVersion": str(since)}
                    send(
                        {
                            "type": "BOOKMARK",
                            "object": {
                                "kind": kind,
                                "apiVersion": res.api_version,
                                "metadata": meta,
                            },
                        }
                    )
                    next_bookmark = now + self.bookmark_interval
                if now >= deadline:
                    break
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            return  # the client went away
