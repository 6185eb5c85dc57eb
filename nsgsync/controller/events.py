"""Kubernetes Events on the NetworkPolicies that a finding concerns.

`kubectl describe networkpolicy NAME` then shows where the cloud had to widen that
policy, and why. Events are aggregated: one Event per policy and finding code, whose
series count goes up each reconcile the finding is still there, instead of a new Event
each time. They are rate-limited twice: one Event is written at most once per
`min_interval` unless its message changed, and all writes share a token bucket (`burst`
at once, then `rate` per second), so that a cluster with thousands of findings cannot
flood the API server. A write skipped by the limits is made at a later reconcile.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nsgsync.intent import Finding, Severity

log = logging.getLogger("nsgsync.controller")

CONTROLLER = "nsgsync.io/controller"
NOTE_LIMIT = 1024  # events.k8s.io/v1: "the maximal length of the note is 1kB"


@dataclass
class _Series:
    name: str
    namespace: str
    count: int
    note: str
    written_at: float  # monotonic time of the last write
    written_count: int


class TokenBucket:
    def __init__(self, *, burst: int, rate: float) -> None:
        self.burst, self.rate = burst, rate
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def reason(code: str) -> str:
    """A finding code as an Event reason: `selector-widened` -> `SelectorWidened`."""
    return "".join(part[:1].upper() + part[1:] for part in code.split("-"))[:128]


class EventRecorder:
    def __init__(
        self,
        api_client: Any,
        *,
        instance: str,
        uid_of: Callable[[str, str], str | None] = lambda namespace, name: None,
        min_interval: float = 300.0,
        burst: int = 25,
        rate: float = 1.0,
    ) -> None:
        self._api_client = api_client
        self.instance = instance[:128]
        self._uid_of = uid_of
        self.min_interval = min_interval
        self._bucket = TokenBucket(burst=burst, rate=rate)
        self._series: dict[tuple[str, str], _Series] = {}
        # Names are unique per recorder: a new leader starts its own series, and needs
        # only create and patch on events (no get).
        self._nonce = hashlib.sha256(f"{instance}{time.time_ns()}".encode()).hexdigest()[:8]
        self._lock = threading.Lock()
        self.writes = 0

    def record(self, findings: Iterable[Finding]) -> None:
        """One observation of the findings of a successful reconcile."""
        grouped: dict[tuple[str, str], list[Finding]] = defaultdict(list)
        for f in findings:
            if f.policy and "/" in f.policy:
                grouped[(f.policy, f.code)].append(f)
        with self._lock:
            for key, group in sorted(grouped.items()):
                self._observe(key, group)

    def _observe(self, key: tuple[str, str], group: list[Finding]) -> None:
        import kubernetes.client
        import urllib3

        policy, code = key
        namespace, name = policy.split("/", 1)
        messages = sorted({f.message for f in group})
        note = "; ".join(messages)
        if len(note) > NOTE_LIMIT:
            note = note[: NOTE_LIMIT - 3] + "..."
        warning = any(f.severity == Severity.WARNING for f in group)
        series = self._series.get(key)
        now = time.monotonic()
        if series is not None:
            series.count += 1
            if series.note == note and now - series.written_at < self.min_interval:
                return
        if not self._bucket.take():
            if series is None:
                log.info("event rate limit: the Event for %s (%s) waits", policy, code)
            return
        api = kubernetes.client.EventsV1Api(self._api_client)
        stamp = datetime.now(UTC)
        try:
            if series is None:
                event_name = f"{name}.{self._nonce}.{code}"[:253]
                body = kubernetes.client.EventsV1Event(
                    metadata=kubernetes.client.V1ObjectMeta(
                        name=event_name,
                        namespace=namespace,
                        labels={"app.kubernetes.io/name": "nsgsync"},
                    ),
                    event_time=stamp,
                    action="Reconcile",
                    reason=reason(code),
                    note=note,
                    type="Warning" if warning else "Normal",
                    regarding=kubernetes.client.V1ObjectReference(
                        api_version="networking.k8s.io/v1",
                        kind="NetworkPolicy",
                        namespace=namespace,
                        name=name,
                        uid=self._uid_of(namespace, name),
                    ),
                    reporting_controller=CONTROLLER,
                    reporting_instance=self.instance,
                )
                api.create_namespaced_event(namespace, body, _request_timeout=10)
                self._series[key] = _Series(event_name, namespace, 1, note, now, 1)
            else:
                patch = {
                    "note": note,
                    "series": {
                        "count": series.count,
                        "lastObservedTime": stamp.isoformat(timespec="microseconds"),
                    },
                }
                api.patch_namespaced_event(
                    series.name,
                    namespace,
                    patch,
                    _content_type="application/merge-patch+json",
                    _request_timeout=10,
                )
                series.note, series.written_at = note, now
                series.written_count = series.count
            self.writes += 1
        except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            # Events are best effort: a failed one never fails a reconcile.
            log.warning("cannot write the Event for %s (%s): %s", policy, code, exc)
            if series is None:
                return
            if isinstance(exc, kubernetes.client.ApiException) and exc.status == 404:
                del self._series[key]  # expired or deleted: start a new one next time
