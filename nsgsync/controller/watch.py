"""The controller's view of the cluster: list once, then watch, per kind.

Each kind nsgsync reads (the same kinds as `nsgsync.sources.cluster`) gets an informer: a
thread that lists it page by page, keeps the objects in memory, and follows a watch from
the list's resourceVersion, with bookmarks so that a quiet kind's version stays fresh. A
watch answered 410 Gone (the version fell out of the server's window) lists again; a
lost connection watches again from the last version seen after a backoff with jitter, so
no change is missed either way. An informer is *synced* once its first list completed:
until every informer is, the cache has no inventory to give, and nothing is reconciled
(an unsynced watch is not "no policies").
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from nsgsync.errors import InputError, NsgsyncError
from nsgsync.model import ForeignPolicy, Inventory, NetworkPolicy, PodInfo, adminpolicy, calico
from nsgsync.model.kinds import KNOWN_KINDS, Effect
from nsgsync.model.tiers import TPolicy
from nsgsync.sources.calico import CalicoReader
from nsgsync.sources.cluster import (
    DIALECT_KINDS,
    FINISHED,
    NAMESPACES,
    PAGE_SIZE,
    POD_FIELD_SELECTOR,
    PODS,
    POLICIES,
    WORKLOADS,
    Listed,
    plural_of,
    with_kind,
)
from nsgsync.sources.files import (
    Document,
    OrderedPolicies,
    parse_admin_policy,
    parse_labels,
    parse_pod,
    parse_policy,
)

log = logging.getLogger("nsgsync.controller")

WATCHED: tuple[Listed, ...] = (NAMESPACES, POLICIES, PODS, *WORKLOADS)
WHERE = "cluster:watch"
# Policy kinds nsgsync does not compile but must see (to refuse them, or with --ignore-kind
# to report them), and those of the other dialects it compiles: watched where their CRDs
# are served, like `load_cluster` lists them. Calico's kinds are watched in both of
# Calico's groups and read from the first one served, as `load_cluster` reads them.
CALICO_KINDS = frozenset(
    (group, kind)
    for group in calico.GROUPS
    for kind in (calico.TIER_KIND, *calico.SET_KINDS, *calico.POLICY_KINDS)
)
FOREIGN: tuple[tuple[str, str], ...] = tuple(
    sorted(set(KNOWN_KINDS) | set(DIALECT_KINDS) | CALICO_KINDS)
)


@dataclass
class Backoff:
    """Exponential backoff with jitter: first `initial` seconds, doubling up to `maximum`."""

    initial: float = 0.5
    maximum: float = 30.0
    failures: int = 0

    def next(self) -> float:
        delay = min(self.maximum, self.initial * 2 ** min(self.failures, 30))
        self.failures += 1
        # Jitter spreads the retries of many replicas (and kinds) after one outage.
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.failures = 0


def _request(
    api_client: Any,
    path: str,
    *,
    watch: bool = False,
    _preload_content: bool = True,
    resource_version: str | None = None,
    allow_watch_bookmarks: bool | None = None,
    timeout_seconds: int | None = None,
    field_selector: str | None = None,
    limit: int | None = None,
    _continue: str | None = None,
    _request_timeout: tuple[float, float] | None = None,
) -> Any:
    """A list or watch request for `path` through the client, as its typed APIs make them.

    Returns the unread urllib3 response (what `kubernetes.watch.Watch.stream` consumes);
    an error status raises the client's ApiException, with the server's message.
    """
    import kubernetes.client

    query: list[tuple[str, object]] = []
    for key, value in (
        ("watch", "true" if watch else None),
        ("resourceVersion", resource_version),
        ("allowWatchBookmarks", "true" if allow_watch_bookmarks else None),
        ("timeoutSeconds", timeout_seconds),
        ("fieldSelector", field_selector),
        ("limit", limit),
        ("continue", _continue),
    ):
        if value is not None:
            query.append((key, value))
    request = api_client.param_serialize(
        method="GET",
        resource_path=path,
        query_params=query,
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = api_client.call_api(*request, _request_timeout=_request_timeout)
    raw = response.response
    if not 200 <= raw.status <= 299:
        data = raw.data
        raw.release_conn()
        message = raw.reason
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(data).get("message") or message
        raise kubernetes.client.ApiException(status=raw.status, reason=str(message))
    return raw


def _served_versions(api_client: Any, group: str) -> list[str]:
    """The versions of an API group the server serves (discovery), preferred first."""
    response = _request(api_client, "/apis", _request_timeout=(10, 60))
    try:
        body = json.loads(response.data)
    finally:
        response.release_conn()
    for entry in body.get("groups") or []:
        if isinstance(entry, dict) and entry.get("name") == group:
            preferred = (entry.get("preferredVersion") or {}).get("version")
            versions = [v.get("version") for v in entry.get("versions") or []]
            ordered = [preferred, *versions] if preferred else versions
            return list(dict.fromkeys(v for v in ordered if isinstance(v, str)))
    return []


class Informer:
    """One kind: its objects by (namespace, name), kept current by list and watch.

    A `foreign` informer watches a policy kind served by a CRD, if the cluster has it: it
    finds the versions served through discovery, and a kind not served is synced with no
    objects, and looked for again every `watch_timeout` seconds (a CRD installed later).
    """

    def __init__(
        self,
        api_client: Any,
        listed: Listed,
        *,
        on_change: Callable[[], None],
        stop: threading.Event,
        watch_timeout: int = 300,
        backoff: Backoff | None = None,
        foreign: tuple[str, str] | None = None,
    ) -> None:
        self.listed = listed
        self.foreign = foreign
        self.absent = False  # a foreign kind the cluster does not serve (no CRD)
        self.synced = threading.Event()
        self._api = api_client
        self._on_change = on_change
        self._stop = stop
        self._watch_timeout = watch_timeout
        self._backoff = backoff or Backoff()
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._version: str | None = None
        self._watch: Any = None
        self.relists = 0  # how many full lists (first one included): 410s cost one each
        self.thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)

    @property
    def name(self) -> str:
        """`pods`, `networkpolicies.networking.k8s.io`: as RBAC and kubectl name it."""
        group = self.listed.api_version.rpartition("/")[0]
        return f"{self.listed.plural}.{group}" if group else self.listed.plural

    @property
    def field_selector(self) -> str | None:
        return POD_FIELD_SELECTOR if self.listed.kind == "Pod" else None

    def objects(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._objects.values())

    def start(self) -> None:
        self.thread.start()

    def interrupt(self) -> None:
        """Break the open watch (on stop): the thread then sees the stop event."""
        w = self._watch
        if w is not None:
            w.stop()

    def _run(self) -> None:
        import kubernetes.client
        import urllib3

        while not self._stop.is_set():
            try:
                if self._version is None:
                    self._list()
                if self.absent:
                    self._backoff.reset()
                    self._stop.wait(self._watch_timeout)
                    self._version = None
                    continue
                self._follow()
                self._backoff.reset()
            except kubernetes.client.ApiException as exc:
                if exc.status == 410:
                    log.info("watch of %s expired (410 Gone): listing again", self.name)
                    self._version = None
                    continue
                self._wait(f"the API server answered {exc.status}: {exc.reason}")
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                self._wait(f"connection lost: {exc}")
            except Exception as exc:  # a surprise must not end the informer for good
                log.exception("the informer of %s failed", self.name)
                self._version = None  # the cache may have missed something: list again
                self._wait(f"unexpected error: {exc!r}")

    def _wait(self, why: str) -> None:
        if self._stop.is_set():
            return
        delay = self._backoff.next()
        log.warning("cannot list or watch %s (%s); retrying in %.1f s", self.name, why, delay)
        self._stop.wait(delay)

    def _candidates(self) -> list[Listed]:
        if self.foreign is None:
            return [self.listed]
        group, kind = self.foreign
        return [
            Listed(kind, f"{group}/{version}", plural_of(kind))
            for version in _served_versions(self._api, group)
        ]

    def _list(self) -> None:
        import kubernetes.client

        for candidate in self._candidates():
            try:
                self._list_one(candidate)
            except kubernetes.client.ApiException as exc:
                if exc.status == 404 and self.foreign is not None:
                    continue  # not served in this version
                raise
            self.listed, self.absent = candidate, False
            return
        # A foreign kind nobody serves: no objects, which is the truth, not a failed read.
        with self._lock:
            had = bool(self._objects)
            self._objects = {}
        self.absent = True
        self._version = None
        self.synced.set()
        if had:
            self._on_change()

    def _list_one(self, listed: Listed) -> None:
        objects: dict[tuple[str, str], dict[str, Any]] = {}
        token: str | None = None
        while True:
            response = _request(
                self._api,
                listed.path(None),
                limit=PAGE_SIZE,
                _continue=token,
                field_selector=self.field_selector,
                _request_timeout=(10, 60),
            )
            try:
                body = json.loads(response.data)
            finally:
                response.release_conn()
            for item in body.get("items") or []:
                meta = item.get("metadata") or {}
                objects[(meta.get("namespace", ""), meta.get("name", ""))] = with_kind(item, listed)
            meta = body.get("metadata") or {}
            token = meta.get("continue") or None
            if token is None:
                break
        with self._lock:
            self._objects = objects
        self._version = str(meta.get("resourceVersion") or "") or None
        self.relists += 1
        self.synced.set()
        self._on_change()

    def _follow(self) -> None:
        import kubernetes.watch

        module: Any = kubernetes.watch  # untyped: keep that to this line
        w = module.Watch()
        self._watch = w
        if self._stop.is_set():
            return
        stream: Iterator[dict[str, Any]] = w.stream(
            functools.partial(_request, self._api, self.listed.path(None)),
            resource_version=self._version,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_timeout,
            field_selector=self.field_selector,
            # The server ends the watch after timeout_seconds; reading longer than that
            # with no byte (not even a bookmark) means the connection is dead.
            _request_timeout=(10, self._watch_timeout + 30),
        )
        try:
            for event in stream:
                if self._stop.is_set():
                    break
                self._apply(event)
        finally:
            self._watch = None

    def _apply(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("raw_object") or {}
        meta = obj.get("metadata") or {}
        version = meta.get("resourceVersion")
        if kind == "BOOKMARK":
            self._version = version or self._version
            return
        key = (meta.get("namespace", ""), meta.get("name", ""))
        with self._lock:
            if kind == "DELETED":
                self._objects.pop(key, None)
            elif kind in ("ADDED", "MODIFIED"):
                self._objects[key] = with_kind(obj, self.listed)
            else:
                return
        self._version = version or self._version
        self._on_change()


@dataclass(frozen=True)
class _Parsed:
    version: str
    value: NetworkPolicy | PodInfo | dict[str, str] | None
    error: NsgsyncError | None = None


class Cache:
    """Every kind nsgsync reads, each through its informer; `inventory()` when synced."""

    def __init__(
        self,
        api_client: Any,
        *,
        on_change: Callable[[], None],
        stop: threading.Event,
        watch_timeout: int = 300,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self.informers = [
            Informer(
                api_client,
                listed,
                on_change=on_change,
                stop=stop,
                watch_timeout=watch_timeout,
                backoff=backoff(),
            )
            for listed in WATCHED
        ] + [
            Informer(
                api_client,
                Listed(kind, f"{group}/?", plural_of(kind)),
                on_change=on_change,
                stop=stop,
                watch_timeout=watch_timeout,
                backoff=backoff(),
                foreign=(group, kind),
            )
            for group, kind in FOREIGN
        ]
        # Parsing is per object and version: a reconcile re-parses only what changed.
        self._parsed: dict[tuple[str, str, str], _Parsed] = {}

    def start(self) -> None:
        for informer in self.informers:
            informer.start()

    def interrupt(self) -> None:
        for informer in self.informers:
            informer.interrupt()

    def join(self, timeout: float) -> None:
        for informer in self.informers:
            informer.thread.join(timeout)

    def synced(self) -> bool:
        return all(i.synced.is_set() for i in self.informers)

    def unsynced(self) -> list[str]:
        return [i.name for i in self.informers if not i.synced.is_set()]

    def inventory(self) -> Inventory:
        """The cluster as the cache holds it, parsed as `load_cluster` parses a list."""
        if not self.synced():
            # Never an empty inventory: that would read as "every policy was deleted".
            raise InputError(
                f"the watch caches have not synced yet ({', '.join(self.unsynced())})",
                file=WHERE,
                hint="wait for the API server to answer lists; nothing was changed",
            )
        labels: dict[str, dict[str, str]] = {}
        policies: list[NetworkPolicy] = []
        pods: list[PodInfo] = []
        foreign: list[ForeignPolicy] = []
        ordered = OrderedPolicies()
        admin: list[TPolicy] = []
        seen: set[tuple[str, str, str]] = set()
        calico_reader = CalicoReader()
        calico_group = next(
            (
                group
                for group in calico.GROUPS
                if any(
                    i.foreign is not None and i.foreign[0] == group and not i.absent
                    for i in self.informers
                )
            ),
            None,
        )
        for informer in self.informers:
            if informer.foreign in DIALECT_KINDS:
                group, kind = informer.foreign
                if informer.absent:
                    ordered.absent.append(f"{kind}.{group}/{DIALECT_KINDS[informer.foreign]}")
                for obj in informer.objects():
                    try:
                        ordered.read(Document(WHERE, 0, obj), kind)
                    except InputError as exc:
                        exc.hint = (
                            "fix the object in the cluster (kubectl edit); the controller retries"
                        )
                        raise
                continue
            if informer.foreign is not None:
                group, kind = informer.foreign
                api_version = informer.listed.api_version
                if informer.foreign in CALICO_KINDS:
                    if group == calico_group:  # the other group serves the same objects
                        for obj in informer.objects():
                            body = {**obj, "apiVersion": api_version, "kind": kind}
                            calico_reader.add(Document(WHERE, 0, body))
                    continue
                if adminpolicy.compiled(api_version, kind):
                    # network-policy-api's kinds in a version nsgsync compiles.
                    for obj in informer.objects():
                        body = {**obj, "apiVersion": api_version, "kind": kind}
                        admin.append(parse_admin_policy(Document(WHERE, 0, body)))
                    continue
                effect: Effect = KNOWN_KINDS[informer.foreign]
                for obj in informer.objects():
                    meta = obj.get("metadata") or {}
                    name, ns = str(meta.get("name") or "?"), meta.get("namespace")
                    ref = f"{ns}/{name}" if isinstance(ns, str) and ns else name
                    foreign.append(ForeignPolicy(kind, group, ref, WHERE, effect))
                continue
            kind = informer.listed.kind
            for obj in informer.objects():
                meta = obj.get("metadata") or {}
                key = (kind, str(meta.get("namespace", "")), str(meta.get("name", "")))
                seen.add(key)
                value = self._parse(key, obj)
                if isinstance(value, NetworkPolicy):
                    policies.append(value)
                elif isinstance(value, PodInfo):
                    pods.append(value)
                elif isinstance(value, dict):
                    labels[key[2]] = value
        for gone in set(self._parsed) - seen:
            del self._parsed[gone]
        calico_policies = calico_reader.lowered(labels)
        # Every namespace is watched: the list is complete (no unknown namespaces).
        ordered.note_absent()
        return Inventory.build(
            policies,
            labels,
            pods,
            namespaces_complete=True,
            foreign=foreign,
            ordered=[*ordered.policies(), *admin, *calico_policies],
            notes=ordered.notes,
        )

    def _parse(
        self, key: tuple[str, str, str], obj: dict[str, Any]
    ) -> NetworkPolicy | PodInfo | dict[str, str] | None:
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        cached = self._parsed.get(key)
        if cached is None or cached.version != version or not version:
            try:
                cached = _Parsed(version, _parse_one(key[0], obj))
            except NsgsyncError as exc:
                cached = _Parsed(version, None, exc)
            self._parsed[key] = cached
        if cached.error is not None:
            raise cached.error
        return cached.value


def _parse_one(kind: str, obj: dict[str, Any]) -> NetworkPolicy | PodInfo | dict[str, str] | None:
    doc = Document(WHERE, 0, obj)
    try:
        if kind == "Namespace":
            meta = obj.get("metadata") or {}
            name = meta.get("name")
            return parse_labels(
                meta.get("labels"), doc=doc, obj=f"Namespace {name}", field="metadata.labels"
            )
        if kind == "NetworkPolicy":
            return parse_policy(doc)
        if kind == "Pod":
            status = obj.get("status")
            if isinstance(status, dict) and status.get("phase") in FINISHED:
                return None
        return parse_pod(doc)
    except InputError as exc:
        if exc.obj or exc.field:
            exc.hint = "fix the object in the cluster (kubectl edit); the controller retries"
        raise
