"""Leader election through a coordination.k8s.io/v1 Lease, as client-go does it.

Every replica tries to acquire or renew the Lease every `retry_period`. A Lease held by
another replica is taken only once it has not changed for `lease_duration`, measured on
this replica's own clock from when it last saw the record change (clocks of different
nodes are never compared). Updates carry the resourceVersion read, so two replicas racing
for the Lease cannot both win: the loser gets 409 Conflict. A leader that cannot renew for
`renew_deadline` (shorter than the lease duration) stops leading before anyone else may
start. Stopping releases the Lease (empty holder), so a follower takes over at its next
try rather than after a whole lease duration.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("nsgsync.controller")


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str = "nsgsync"
    identity: str = "nsgsync"
    # controller-runtime's defaults
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs retry period < renew deadline < lease duration")


class LeaderElector:
    def __init__(
        self,
        api_client: Any,
        config: LeaseConfig,
        *,
        stop: threading.Event,
        on_change: Callable[[bool], None],
    ) -> None:
        self.config = config
        self._api_client = api_client
        self._stop = stop
        self._on_change = on_change
        self._leading = threading.Event()
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._observed_duration = 0
        self._last_renew = 0.0
        self._lock = threading.Lock()  # one Lease request at a time (the loop, or release)
        # Why the last try failed when it was not another holder: (HTTP status, message).
        self.last_error: tuple[int | None, str] | None = None
        self.thread = threading.Thread(target=self._run, name="leader-election", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def is_leader(self) -> bool:
        """Leading, and renewed recently enough that no one else can have taken over."""
        return (
            self._leading.is_set()
            and time.monotonic() - self._last_renew < self.config.renew_deadline
        )

    def try_acquire(self) -> bool:
        """One try to acquire or renew the Lease, now (the loop's step, for a caller that
        must hold it before going on)."""
        return self._try()

    def renewed_recently(self) -> bool:
        """Renewed within the renew deadline: no one else can have taken the Lease."""
        return time.monotonic() - self._last_renew < self.config.renew_deadline

    def _api(self) -> Any:
        import kubernetes.client

        return kubernetes.client.CoordinationV1Api(self._api_client)

    def _run(self) -> None:
        cfg = self.config
        while not self._stop.is_set():
            if self._try():
                if not self._leading.is_set():
                    log.info("became the leader (Lease %s/%s)", cfg.namespace, cfg.name)
                    self._leading.set()
                    self._on_change(True)
            elif self._leading.is_set() and not self.is_leader():
                log.error(
                    "lost the leadership: could not renew the Lease %s/%s for %.0f s",
                    cfg.namespace,
                    cfg.name,
                    cfg.renew_deadline,
                )
                self._leading.clear()
                self._on_change(False)
            # client-go's jitter on the retry while following; none while leading.
            delay = cfg.retry_period
            if not self._leading.is_set():
                delay *= 1 + random.uniform(0, 0.2)
            self._stop.wait(delay)

    def _record(self, spec: Any) -> tuple[Any, ...]:
        return (
            spec.holder_identity if spec else None,
            spec.renew_time if spec else None,
            spec.acquire_time if spec else None,
            spec.lease_transitions if spec else None,
        )

    def _try(self) -> bool:
        """Acquire or renew; False when another replica holds it or the API failed."""
        import kubernetes.client
        import urllib3

        cfg = self.config
        api = self._api()
        timeout = max(1.0, cfg.renew_deadline / 2)
        now = datetime.now(UTC)
        duration = max(1, math.ceil(cfg.lease_duration))
        with self._lock:
            if self._stop.is_set():
                return False
            self.last_error = None
            try:
                try:
                    lease = api.read_namespaced_lease(
                        cfg.name, cfg.namespace, _request_timeout=timeout
                    )
                except kubernetes.client.ApiException as exc:
                    if exc.status != 404:
                        raise
                    body = kubernetes.client.V1Lease(
                        api_version="coordination.k8s.io/v1",
                        kind="Lease",
                        metadata=kubernetes.client.V1ObjectMeta(
                            name=cfg.name,
                            namespace=cfg.namespace,
                            labels={"app.kubernetes.io/name": "nsgsync"},
                        ),
                        spec=kubernetes.client.V1LeaseSpec(
                            holder_identity=cfg.identity,
                            lease_duration_seconds=duration,
                            acquire_time=now,
                            renew_time=now,
                            lease_transitions=0,
                        ),
                    )
                    created = api.create_namespaced_lease(
                        cfg.namespace, body, _request_timeout=timeout
                    )
                    self._observe(created.spec)
                    self._last_renew = time.monotonic()
                    return True
                spec = lease.spec or kubernetes.client.V1LeaseSpec()
                record = self._record(spec)
                if record != self._observed:
                    self._observe(spec)
                holder = spec.holder_identity
                held_for = spec.lease_duration_seconds or duration
                if (
                    holder
                    and holder != cfg.identity
                    and time.monotonic() < self._observed_at + held_for
                ):
                    return False  # another replica's, and alive as far as we can tell
                if holder != cfg.identity:
                    spec.acquire_time = now
                    spec.lease_transitions = (spec.lease_transitions or 0) + 1
                    log.info(
                        "acquiring the Lease %s/%s (held by %r)", cfg.namespace, cfg.name, holder
                    )
                spec.holder_identity = cfg.identity
                spec.lease_duration_seconds = duration
                spec.renew_time = now
                lease.spec = spec
                # The read resourceVersion goes back: a concurrent writer makes this a 409.
                updated = api.replace_namespaced_lease(
                    cfg.name, cfg.namespace, lease, _request_timeout=timeout
                )
                self._observe(updated.spec)
                self._last_renew = time.monotonic()
                return True
            except kubernetes.client.ApiException as exc:
                if exc.status == 409:
                    log.info("the Lease %s/%s changed under us (409)", cfg.namespace, cfg.name)
                else:
                    self.last_error = (exc.status, f"{exc.status} {exc.reason}")
                    log.warning(
                        "cannot get or update the Lease %s/%s: %s %s",
                        cfg.namespace,
                        cfg.name,
                        exc.status,
                        exc.reason,
                    )
                return False
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                self.last_error = (None, str(exc))
                log.warning(
                    "cannot reach the API server for the Lease %s/%s: %s",
                    cfg.namespace,
                    cfg.name,
                    exc,
                )
                return False

    def _observe(self, spec: Any) -> None:
        self._observed = self._record(spec)
        self._observed_at = time.monotonic()
        self._observed_duration = (spec.lease_duration_seconds if spec else None) or 0

    def holder(self) -> tuple[str | None, datetime | None, datetime | None]:
        """The holder last seen, when it acquired the Lease and when it last renewed it."""
        if self._observed is None:
            return None, None, None
        holder, renewed, acquired, _ = self._observed
        return holder, acquired, renewed

    def expire_if_stale(self, *, skew: float) -> bool:
        """Count the Lease last seen as unrenewed since its renewTime when that is older,
        by this clock, than its duration plus `skew` (the clock difference allowed between
        two machines): a process that died holding it does not block every later one that
        will not wait a whole lease duration to see it unrenewed. True when that made it
        free to take."""
        _, _, renewed = self.holder()
        if renewed is None:
            return False
        if renewed.tzinfo is None:
            renewed = renewed.replace(tzinfo=UTC)
        age = (datetime.now(UTC) - renewed).total_seconds()
        if age < self._observed_duration + skew:
            return False
        self._observed_at = min(self._observed_at, time.monotonic() - age)
        return True

    def release(self) -> None:
        """Give the Lease up (only once nothing more will be written by this replica)."""
        import kubernetes.client
        import urllib3

        was_leading = self._leading.is_set()
        self._leading.clear()
        if was_leading:
            self._on_change(False)
        cfg = self.config
        api = self._api()
        with self._lock:
            try:
                lease = api.read_namespaced_lease(cfg.name, cfg.namespace, _request_timeout=5)
                if lease.spec is None or lease.spec.holder_identity != cfg.identity:
                    return
                now = datetime.now(UTC)
                lease.spec.holder_identity = None
                lease.spec.lease_duration_seconds = 1
                lease.spec.renew_time = now
                lease.spec.acquire_time = now
                api.replace_namespaced_lease(cfg.name, cfg.namespace, lease, _request_timeout=5)
                log.info("released the Lease %s/%s", cfg.namespace, cfg.name)
            except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                log.warning(
                    "could not release the Lease %s/%s (it expires by itself): %s",
                    cfg.namespace,
                    cfg.name,
                    exc,
                )
