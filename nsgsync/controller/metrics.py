"""Prometheus metrics, and the HTTP server for /metrics, /healthz and /readyz."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from nsgsync.errors import InputError

log = logging.getLogger("nsgsync.controller")

OUTCOMES = ("applied", "unchanged", "refused", "failed", "abandoned")


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise InputError(
            "`nsgsync run` needs the prometheus client",
            hint="install it with: pip install 'nsgsync[cluster]'",
        ) from None
    return prometheus_client


class Metrics:
    """The controller's metrics, in a registry of their own (one per controller)."""

    def __init__(self) -> None:
        prom = _prometheus()
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.reconcile_duration = prom.Histogram(
            "nsgsync_reconcile_duration_seconds",
            "Time of one reconcile: compile, read the cloud, plan, apply.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )
        self.reconciles = prom.Counter(
            "nsgsync_reconciles",
            "Reconciles by outcome: applied (changes written), unchanged (the cloud matched), "
            "refused (a guardrail), failed (an error; retried with backoff), abandoned "
            "(stopped at a safe point).",
            ["outcome"],
            registry=r,
        )
        for outcome in OUTCOMES:
            self.reconciles.labels(outcome)
        self.changes = prom.Counter(
            "nsgsync_cloud_changes",
            "Cloud changes applied, by operation (add, change, destroy) and resource type.",
            ["op", "type"],
            registry=r,
        )
        self.drift = prom.Counter(
            "nsgsync_drift_reverted",
            "Cloud changes applied although the policies had not changed since the last "
            "successful reconcile: drift (a hand edit) reverted, by resource type.",
            ["type"],
            registry=r,
        )
        self.owned = prom.Gauge(
            "nsgsync_owned_resources",
            "Resources nsgsync owns after the last successful reconcile, by segment and type "
            "(rules: type security-group-rule, security-rule or firewall).",
            ["segment", "type"],
            registry=r,
        )
        self.findings = prom.Gauge(
            "nsgsync_findings",
            "Findings of the last successful reconcile, by code and severity.",
            ["code", "severity"],
            registry=r,
        )
        self.last_success = prom.Gauge(
            "nsgsync_last_successful_reconcile_timestamp_seconds",
            "Unix time of the last successful reconcile.",
            registry=r,
        )
        self.leader = prom.Gauge(
            "nsgsync_leader", "1 while this replica holds the Lease, else 0.", registry=r
        )

    def set_state(
        self,
        *,
        owned: Mapping[tuple[str, str], int],
        findings: Mapping[tuple[str, str], int],
    ) -> None:
        """Replace the gauges that describe the last successful reconcile."""
        self.owned.clear()
        for (segment, kind), n in sorted(owned.items()):
            self.owned.labels(segment, kind).set(n)
        self.findings.clear()
        for (code, severity), n in sorted(findings.items()):
            self.findings.labels(code, severity).set(n)

    def exposition(self) -> tuple[bytes, str]:
        prom = _prometheus()
        return prom.generate_latest(self.registry), str(prom.CONTENT_TYPE_LATEST)


class HealthServer:
    """/metrics, /healthz (the loop is alive) and /readyz (see `ready`)."""

    def __init__(
        self,
        address: str,
        port: int,
        *,
        metrics: Metrics,
        alive: Callable[[], tuple[bool, str]],
        ready: Callable[[], tuple[bool, str]],
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, bytes, str]]] = {
            "/metrics": lambda: (200, *metrics.exposition()),
            "/healthz": lambda: _probe(alive),
            "/readyz": lambda: _probe(ready),
        }

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http: " + format, *args)

            def do_GET(self) -> None:
                route = routes.get(self.path.split("?")[0])
                status, body, content_type = (
                    route() if route else (404, b"not found\n", "text/plain")
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer((address, port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _probe(check: Callable[[], tuple[bool, str]]) -> tuple[int, bytes, str]:
    ok, why = check()
    return (200 if ok else 503), (why + "\n").encode(), "text/plain; charset=utf-8"
