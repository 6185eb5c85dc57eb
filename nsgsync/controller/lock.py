"""One apply at a time per cluster and provider: a coordination.k8s.io/v1 Lease.

`nsgsync apply`, `nsgsync destroy` and every reconcile of `nsgsync run` hold the Lease
`nsgsync-apply-<provider>-<cluster>` from before they read the cloud for their plan until
their last write, renewing it meanwhile. The Lease logic is the controller's leader
election (nsgsync.controller.leader): updates carry the resourceVersion read, so two
applies racing for a free Lease cannot both win, and a Lease held by another is taken only
once it went unrenewed for its duration. Without a wait (`--lock-timeout`), a Lease whose
renewTime is older than its duration plus a minute of clock skew counts as abandoned, so
that a killed run does not block the next one. Losing the Lease during an apply (it could
not be renewed) stops the apply at its next write batch.

See docs/operating-in-production.md (Locking) for how to break a stale lock.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from nsgsync.controller.leader import LeaderElector, LeaseConfig
from nsgsync.errors import LockError

# How long a Lease not renewed stays the holder's, how often it is renewed, and after how
# long without a renewal the holder stops writing (before anyone else may start).
DURATION = 30.0
RENEW_DEADLINE = 20.0
RETRY_PERIOD = 5.0
# The clock difference allowed between the machine that wrote a renewTime and this one.
SKEW = 60.0


_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_namespace(given: str | None = None) -> str:
    """Where the Lease lives: as given, else the pod's own namespace, else nsgsync."""
    if given:
        return given
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return _NAMESPACE_FILE.read_text().strip() or "nsgsync"
    except OSError:
        return "nsgsync"


def lock_name(cluster: str, provider: str) -> str:
    """The Lease's name: a DNS subdomain, at most 253 characters."""
    raw = f"nsgsync-apply-{provider}-{cluster}".lower()
    name = re.sub(r"[^a-z0-9.-]+", "-", raw).strip("-.")
    return name[:253].rstrip("-.")


def identity() -> str:
    """Who holds the lock: host, process and user, for the message another apply shows."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no user name for this uid (a container's random uid)
        user = f"uid {os.getuid()}"
    host = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{host}/{os.getpid()}/{user}"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "an unknown time"


class ApplyLock:
    """The Lease around one apply: `with ApplyLock(...) as lock:`; `lock.check()` before
    each write batch raises LockError once the Lease could not be renewed."""

    def __init__(
        self,
        api_client: Any,
        *,
        namespace: str,
        cluster: str,
        provider: str,
        timeout: float = 0.0,
        holder: str | None = None,
        duration: float = DURATION,
        renew_deadline: float = RENEW_DEADLINE,
        retry_period: float = RETRY_PERIOD,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = LeaseConfig(
            namespace=namespace,
            name=lock_name(cluster, provider),
            identity=holder or identity(),
            lease_duration=duration,
            renew_deadline=renew_deadline,
            retry_period=retry_period,
        )
        self.timeout = timeout
        self.cluster, self.provider = cluster, provider
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._sleep = sleep
        self._elector = LeaderElector(
            api_client, self.config, stop=self._stop, on_change=self._changed
        )
        self._held = False

    @property
    def where(self) -> str:
        return f"Lease {self.config.namespace}/{self.config.name}"

    def _changed(self, leading: bool) -> None:
        if not leading and self._held:
            self._lost.set()

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        stale_taken = False
        while True:
            if self._elector.try_acquire():
                break
            error = self._elector.last_error
            if error is not None:
                status, text = error
                hint = (
                    "grant the service account create, get and update on leases in namespace "
                    f"{self.config.namespace} (deploy/base/lock-rbac.yaml), or give "
                    "--lock-namespace a namespace where it has them"
                    if status in (401, 403)
                    else "check that the cluster's API server is reachable (--kubeconfig, "
                    "--context); nothing was applied"
                )
                if status == 404:
                    hint = (
                        f"create the namespace {self.config.namespace}, or give "
                        "--lock-namespace one that exists; nothing was applied"
                    )
                raise LockError(f"cannot take the lock ({self.where}): {text}", hint=hint)
            if not stale_taken and self.timeout <= 0 and self._elector.expire_if_stale(skew=SKEW):
                stale_taken = True  # once: a race lost for it is another holder's win
                continue  # its holder stopped renewing long ago: take it now
            left = deadline - time.monotonic()
            if left <= 0:
                holder, acquired, renewed = self._elector.holder()
                waited = f" (waited {self.timeout:.0f} s)" if self.timeout > 0 else ""
                raise LockError(
                    f"another apply holds the lock for {self.provider} cluster {self.cluster}: "
                    f"{self.where} held by {holder} since {_when(acquired)}, last renewed "
                    f"{_when(renewed)}{waited}; nothing was applied"
                )
            self._sleep(min(self.config.retry_period, left))
        self._held = True
        self._elector.start()  # renews every retry period while the apply runs

    def holding(self) -> bool:
        """Held, and renewed recently enough that no other apply can have taken it."""
        return self._held and not self._lost.is_set() and self._elector.renewed_recently()

    def check(self) -> None:
        """Raise LockError when the Lease was lost (not renewed within the deadline)."""
        if self._held and not self.holding():
            raise LockError(
                f"lost the lock ({self.where}): it could not be renewed for "
                f"{self.config.renew_deadline:.0f} s, so another apply may have taken it; "
                "the apply stopped before its next write",
                hint="check the API server's health; run the apply again (it completes "
                "what this one did not)",
            )

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        self._stop.set()
        self._elector.thread.join(self.config.retry_period + 5)
        self._elector.release()

    def __enter__(self) -> ApplyLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
