"""`nsgsync run`: watch the cluster, debounce, reconcile as the leader, resync, report.

Threads: one informer per watched kind (see `watch`), the leader elector, the HTTP server,
and the reconcile loop. Only the loop writes, and only while this replica leads.

When does the loop reconcile?
- after a change seen by the watches, once `debounce` seconds have passed since the first
  change not yet reconciled: a burst of changes within that window is one reconcile, and
  a change reaches the cloud within one window (plus the reconcile's own time);
- every `resync` seconds without changes: the cloud is re-read and drift reverted;
- after a failed reconcile, with exponential backoff and jitter (`retry_initial` doubling
  up to `retry_max`); the cloud keeps the last state applied meanwhile;
- right after this replica becomes the leader.
Never while a watch has not synced (its first list): that is not "no policies".
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nsgsync.compile import CompileOptions
from nsgsync.controller.attach import ClusterAttacher
from nsgsync.controller.events import EventRecorder
from nsgsync.controller.leader import LeaderElector, LeaseConfig
from nsgsync.controller.lock import ApplyLock
from nsgsync.controller.metrics import HealthServer, Metrics
from nsgsync.controller.reconcile import (
    Abandoned,
    Guardrails,
    Outcome,
    connect,
    reconcile_once,
)
from nsgsync.controller.watch import Backoff, Cache
from nsgsync.errors import GuardrailError, NsgsyncError
from nsgsync.model import Topology
from nsgsync.provider import Timeouts
from nsgsync.sources import load_topology

log = logging.getLogger("nsgsync.controller")


@dataclass(frozen=True)
class Options:
    topology: Path
    lease: LeaseConfig
    debounce: float = 5.0
    resync: float = 600.0
    max_deletions: int | None = None
    allow_empty: bool = False
    selector_only: bool = False
    ignore_kinds: frozenset[str] = frozenset()
    apply_attachments: bool = False
    retry_initial: float = 1.0
    retry_max: float = 300.0
    watch_timeout: int = 300
    address: str = "0.0.0.0"
    port: int | None = 8080  # None: no HTTP server
    event_interval: float = 300.0
    shutdown_grace: float = 20.0
    timeout: float | None = None  # seconds each reconcile's apply may take


class Controller:
    def __init__(self, api_client: Any, options: Options) -> None:
        self.options = options
        api_client = _pooled(api_client)
        self._api_client = api_client
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._dirty_since: float | None = None
        self._retry_at: float | None = None
        self._last_attempt: float | None = None
        self._last_digest: str | None = None
        self._reconciled_as_leader = False
        self._backoff = Backoff(initial=options.retry_initial, maximum=options.retry_max)
        self._session: tuple[Topology, Any, Any] | None = None
        self._started = False
        self._stopped = False
        self.reconciles = 0  # attempts, for tests and logs
        self.last_outcome: Outcome | None = None
        self.last_error: str | None = None
        self.metrics = Metrics()
        self.cache = Cache(
            api_client,
            on_change=self._changed,
            stop=self._stop,
            watch_timeout=options.watch_timeout,
        )
        self.elector = LeaderElector(
            api_client, options.lease, stop=self._stop, on_change=self._leadership
        )
        self.events = EventRecorder(
            api_client,
            instance=options.lease.identity,
            uid_of=self._policy_uid,
            min_interval=options.event_interval,
        )
        self.server: HealthServer | None = None
        if options.port is not None:
            self.server = HealthServer(
                options.address,
                options.port,
                metrics=self.metrics,
                alive=self.alive,
                ready=self.ready,
            )
        self._thread = threading.Thread(target=self._loop, name="reconcile", daemon=True)

    # --- lifecycle ---

    def start(self) -> Controller:
        if self.server is not None:
            self.server.start()
        self.cache.start()
        self.elector.start()
        self._thread.start()
        self._started = True
        log.info(
            "nsgsync controller %s started: debounce %.1f s, resync %.0f s, Lease %s/%s",
            self.options.lease.identity,
            self.options.debounce,
            self.options.resync,
            self.options.lease.namespace,
            self.options.lease.name,
        )
        return self

    def request_stop(self) -> None:
        """Ask the controller to stop (safe from a signal handler); `stop()` waits for it."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def stop(self) -> None:
        """Stop: abandon the reconcile at its next safe point, then release the Lease.

        The Lease is released only once the reconcile thread has ended: released earlier,
        another replica could start writing while this one still does. If the thread does
        not end within `shutdown_grace`, the Lease is left to expire by itself.
        """
        if self._stopped:
            return
        self._stopped = True
        self.request_stop()
        self.cache.interrupt()
        if not self._started:
            return
        self._thread.join(self.options.shutdown_grace)
        self.elector.thread.join(self.options.shutdown_grace)
        if self._thread.is_alive():
            log.error(
                "the reconcile did not stop within %.0f s; the Lease is left to expire",
                self.options.shutdown_grace,
            )
        else:
            self.elector.release()
        self.cache.join(5)
        if self.server is not None:
            self.server.stop()
        log.info("nsgsync controller %s stopped", self.options.lease.identity)

    def run(self) -> None:
        """Start, serve until `request_stop()`, then stop cleanly."""
        self.start()
        try:
            self._stop.wait()
        finally:
            self.stop()

    # --- probes ---

    def alive(self) -> tuple[bool, str]:
        if self._started and not self._stop.is_set():
            threads = [self._thread, self.elector.thread, *(i.thread for i in self.cache.informers)]
            dead = [t.name for t in threads if not t.is_alive()]
            if dead:
                return False, f"threads ended: {', '.join(dead)}"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if not self.cache.synced():
            return False, f"watch caches not synced: {', '.join(self.cache.unsynced())}"
        if self.elector.is_leader() and not self._reconciled_as_leader:
            return False, "leader, but no reconcile has succeeded yet"
        return True, "ok (leader)" if self.elector.is_leader() else "ok (follower)"

    # --- signals from the watches and the elector ---

    def _changed(self) -> None:
        with self._wake:
            if self._dirty_since is None:
                self._dirty_since = time.monotonic()
                self._wake.notify_all()

    def _leadership(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        with self._wake:
            self._reconciled_as_leader = False
            if leading:
                # Everything may have changed while another replica led: reconcile now.
                self._dirty_since = time.monotonic() - self.options.debounce
                self._retry_at = None
                self._backoff.reset()
            self._wake.notify_all()

    def _policy_uid(self, namespace: str, name: str) -> str | None:
        for informer in self.cache.informers:
            if informer.foreign is None and informer.listed.kind == "NetworkPolicy":
                for obj in informer.objects():
                    meta = obj.get("metadata") or {}
                    if meta.get("namespace") == namespace and meta.get("name") == name:
                        uid = meta.get("uid")
                        return str(uid) if uid else None
        return None

    def _may_write(self) -> bool:
        return not self._stop.is_set() and self.elector.is_leader()

    # --- the loop ---

    def _due(self, now: float) -> float | None:
        """When the next reconcile is due (monotonic), or None to wait for a signal."""
        if not self.elector.is_leader() or not self.cache.synced():
            return None
        if self._retry_at is not None:
            return self._retry_at
        if self._dirty_since is not None:
            return self._dirty_since + self.options.debounce
        if self._last_attempt is not None:
            return self._last_attempt + self.options.resync
        return now

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                now = time.monotonic()
                due = self._due(now)
                if due is None or due > now:
                    # Leadership and sync are polled too: they can change without a signal
                    # (a renew deadline passing).
                    wait = 0.5 if due is None else min(due - now, 0.5)
                    self._wake.wait(wait)
                    continue
                cause = (
                    "retry"
                    if self._retry_at is not None
                    else "change"
                    if self._dirty_since is not None
                    else "resync"
                )
                self._dirty_since = None
            self._reconcile(cause)

    def _connection(self, topology: Topology) -> tuple[Any, Any]:
        if self._session is None or self._session[0] != topology:
            adapter, session = connect(topology, source=str(self.options.topology))
            self._session = (topology, adapter, session)
        return self._session[1], self._session[2]

    def _reconcile(self, cause: str) -> None:
        self.reconciles += 1
        started = time.monotonic()
        self._last_attempt = started
        opts = self.options
        log.info("reconcile %d (%s) starts", self.reconciles, cause)
        outcome_label = "failed"
        try:
            topology = load_topology(opts.topology)
            inventory = self.cache.inventory()
            adapter, session = self._connection(topology)
            attacher = (
                ClusterAttacher(self._api_client, topology.cluster)
                if opts.apply_attachments
                else None
            )
            # The apply lock besides the leadership: a `nsgsync apply` run by hand or by a
            # CronJob against the same cluster and provider waits for it, or it for them.
            with ApplyLock(
                self._api_client,
                namespace=opts.lease.namespace,
                cluster=topology.cluster,
                provider=topology.provider,
            ) as lock:
                outcome = reconcile_once(
                    topology,
                    inventory,
                    adapter=adapter,
                    session=session,
                    guardrails=Guardrails(
                        max_deletions=opts.max_deletions, allow_empty=opts.allow_empty
                    ),
                    progress=lambda message: log.info("%s", message),
                    compile_options=CompileOptions(
                        selector_only=opts.selector_only, ignore_kinds=opts.ignore_kinds
                    ),
                    attacher=attacher,
                    proceed=lambda: self._may_write() and lock.holding(),
                    timeouts=Timeouts.run_for(opts.timeout),
                )
        except Abandoned as exc:
            outcome_label = "abandoned"
            self.last_error = str(exc)
            log.warning("%s", exc)
            self._changed()  # not done: whoever leads next reconciles
        except GuardrailError as exc:
            outcome_label = "refused"
            self._failed(exc)
        except NsgsyncError as exc:
            self._failed(exc)
        except Exception as exc:  # a bug or an SDK error nsgsync does not wrap: keep running
            log.exception("reconcile %d failed unexpectedly", self.reconciles)
            self._failed(exc)
        else:
            # Counted before the state it leaves is published: whoever sees the drift or
            # the findings of this reconcile also sees it counted.
            self._count("applied" if outcome.applied else "unchanged", started)
            self._succeeded(outcome)
            return
        self._count(outcome_label, started)

    def _count(self, outcome: str, started: float) -> None:
        elapsed = time.monotonic() - started
        self.metrics.reconcile_duration.observe(elapsed)
        self.metrics.reconciles.labels(outcome).inc()
        log.info("reconcile %d: %s in %.2f s", self.reconciles, outcome, elapsed)

    def _failed(self, exc: BaseException) -> None:
        delay = self._backoff.next()
        self.last_error = str(exc)
        with self._wake:
            self._retry_at = time.monotonic() + delay
        log.error("reconcile %d failed: %s; retrying in %.1f s", self.reconciles, exc, delay)

    def _succeeded(self, outcome: Outcome) -> None:
        self._backoff.reset()
        drift = outcome.applied and outcome.intent_digest == self._last_digest
        self._last_digest = outcome.intent_digest
        self.last_outcome = outcome
        self.last_error = None
        for (op, kind), n in outcome.changes.items():
            self.metrics.changes.labels(op, kind).inc(n)
            if drift:
                self.metrics.drift.labels(kind).inc(n)
        if drift:
            log.warning(
                "drift reverted: %d cloud changes with no change of policy",
                sum(outcome.changes.values()),
            )
        findings = Counter((f.code.value, f.severity.value) for f in outcome.findings)
        self.metrics.set_state(owned=outcome.owned, findings=findings)
        self.metrics.last_success.set(time.time())
        with self._wake:
            self._retry_at = None
            self._reconciled_as_leader = True
        if self._may_write():  # Events are writes too: only the leader posts them
            self.events.record(outcome.findings)


def _pooled(api_client: Any) -> Any:
    """The same client settings, with a connection pool for one watch per kind and more."""
    import kubernetes.client

    from nsgsync.controller.watch import FOREIGN, WATCHED

    config = copy.deepcopy(api_client.configuration)
    wanted = len(WATCHED) + len(FOREIGN) + 8
    config.connection_pool_maxsize = max(config.connection_pool_maxsize, wanted)
    return kubernetes.client.ApiClient(config)


def default_identity() -> str:
    """The pod's name (HOSTNAME in a pod), else the host's name and process id."""
    name = os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()
    return name if os.environ.get("KUBERNETES_SERVICE_HOST") else f"{name}-{os.getpid()}"
