"""`nsgsync run`: the in-cluster controller (see docs/controller.md)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from nsgsync.cli.common import seconds
from nsgsync.errors import InputError
from nsgsync.sources import load_topology

RUN_EXAMPLES = """\
examples:
  # in a pod (deploy/overlays/controller): the service account, the Lease in the pod's namespace
  nsgsync run --topology /etc/nsgsync/topology.yaml --max-deletions 50 --log-format json
  # from a workstation, against a test cluster, reconciling faster
  nsgsync run --topology topology.yaml --context kind-test --lease-namespace default \\
      --debounce 1 --resync 60 --listen 127.0.0.1:8080
  # on EKS, keeping the SecurityGroupPolicy objects in step as well
  nsgsync run --topology /etc/nsgsync/topology.yaml --apply-attachments

Endpoints on --listen: /metrics (Prometheus), /healthz (the process is alive), /readyz
(the watches have synced and, on the leader, a reconcile has succeeded).
SIGTERM or SIGINT: the reconcile in flight stops at its next safe point, then the Lease
is released so that another replica takes over at once; exit code 0.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser(
        "run",
        help="run as a controller: watch the cluster, reconcile the cloud continuously",
        description="Watch NetworkPolicies, namespaces, pods and workloads; after each "
        "burst of changes (and every --resync) compile, plan and apply, as the one replica "
        "holding the Lease; serve metrics and probes; post Events on the policies that a "
        "finding concerns.",
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cluster = run.add_argument_group("cluster and topology")
    cluster.add_argument(
        "--topology",
        required=True,
        metavar="FILE",
        help="the cluster's topology file, re-read at each reconcile (a ConfigMap update "
        "applies without a restart); e.g. --topology /etc/nsgsync/topology.yaml",
    )
    cluster.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="kubeconfig to use (default: the pod's service account in a pod, else "
        "$KUBECONFIG, then ~/.kube/config); e.g. --kubeconfig ~/.kube/test",
    )
    cluster.add_argument(
        "--context", metavar="NAME", help="kubeconfig context (e.g. --context kind-test)"
    )
    cluster.add_argument(
        "--selector-only",
        action="store_true",
        help="decide coverage from selectors alone, ignoring known pods (as for compile)",
    )
    cluster.add_argument(
        "--ignore-kind",
        dest="ignore_kinds",
        action="append",
        default=[],
        metavar="KIND",
        help="reconcile although policies of this kind are present, which nsgsync does not "
        "compile: only when they allow nothing the NetworkPolicies deny (repeatable; as for "
        "plan and apply); e.g. --ignore-kind AuthorizationPolicy.security.istio.io",
    )
    loop = run.add_argument_group("reconcile")
    loop.add_argument(
        "--debounce",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="reconcile this long after the first change of a burst (default 5): a change "
        "reaches the cloud within about this time; e.g. --debounce 2",
    )
    loop.add_argument(
        "--resync",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="with no change, re-read the cloud and revert drift this often (default 600); "
        "e.g. --resync 300",
    )
    loop.add_argument(
        "--max-deletions",
        type=int,
        metavar="N",
        help="refuse any reconcile whose plan destroys more than N resources (e.g. 50)",
    )
    loop.add_argument(
        "--allow-empty",
        action="store_true",
        help="allow reconciling a cluster with no NetworkPolicy over resources nsgsync owns",
    )
    loop.add_argument(
        "--apply-attachments",
        action="store_true",
        help="AWS: also keep the SecurityGroupPolicy objects in step (stale ones deleted "
        "before their group is)",
    )
    loop.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="stop a reconcile's apply after SECONDS (no call begins or waits past it); "
        "it says what it did and is retried like any failed reconcile (default: no limit "
        "beyond each call's own timeouts; e.g. --timeout 600)",
    )
    loop.add_argument(
        "--retry-max",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="longest wait between retries of a failing reconcile (default 300)",
    )
    lease = run.add_argument_group("leader election (a coordination.k8s.io/v1 Lease)")
    lease.add_argument(
        "--lease-namespace",
        metavar="NS",
        help="namespace of the Lease (default: the pod's own, else nsgsync); "
        "e.g. --lease-namespace nsgsync",
    )
    lease.add_argument(
        "--lease-name", default="nsgsync", metavar="NAME", help="the Lease (default nsgsync)"
    )
    lease.add_argument(
        "--identity",
        metavar="NAME",
        help="this replica's name in the Lease (default: the pod name, else host-pid)",
    )
    lease.add_argument(
        "--lease-duration",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="how long a Lease not renewed stays another replica's (default 15)",
    )
    lease.add_argument(
        "--renew-deadline",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="the leader stops leading if it cannot renew for this long (default 10)",
    )
    lease.add_argument(
        "--retry-period",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often to try to acquire or renew the Lease (default 2)",
    )
    obs = run.add_argument_group("observability")
    obs.add_argument(
        "--listen",
        default="0.0.0.0:8080",
        metavar="ADDRESS:PORT",
        help="serve /metrics, /healthz and /readyz here (default 0.0.0.0:8080; 'off' for "
        "none); e.g. --listen 127.0.0.1:9090",
    )
    obs.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text (default) or json: one JSON object per line, for log pipelines",
    )
    obs.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="e.g. --log-level debug",
    )
    obs.add_argument(
        "--event-interval",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="update one policy's Event for an unchanged finding at most this often (default 300)",
    )
    run.set_defaults(run=run_controller)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    handler.setFormatter(formatter)
    # Every logger through the one handler (the kubernetes client's and urllib3's warnings
    # too, so that a JSON log stays all JSON); nsgsync's own at the chosen level.
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("nsgsync").setLevel(level.upper())


def _listen(value: str) -> tuple[str, int | None]:
    if value == "off":
        return "", None
    host, _, port = value.rpartition(":")
    if not port.isdigit():
        raise InputError(
            f"--listen {value!r} is not ADDRESS:PORT", hint="e.g. --listen 0.0.0.0:8080"
        )
    return host or "0.0.0.0", int(port)


def _lease_namespace(given: str | None) -> str:
    from nsgsync.controller.lock import default_namespace

    return default_namespace(given)


def run_controller(args: argparse.Namespace) -> int:
    # Imported here: `nsgsync --help` and the other verbs need neither the kubernetes
    # client nor prometheus_client.
    from nsgsync.controller import Controller, LeaseConfig, Options, default_identity
    from nsgsync.sources import cluster_client

    setup_logging(args.log_format, args.log_level)
    load_topology(args.topology)  # a bad topology fails now, not at the first reconcile
    for flag in ("debounce", "resync", "retry_max", "event_interval"):
        if getattr(args, flag) <= 0:
            raise InputError(f"--{flag.replace('_', '-')} must be more than 0 seconds")
    try:
        lease = LeaseConfig(
            namespace=_lease_namespace(args.lease_namespace),
            name=args.lease_name,
            identity=args.identity or default_identity(),
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        )
    except ValueError as exc:
        raise InputError(
            str(exc), hint="e.g. --retry-period 2 --renew-deadline 10 --lease-duration 15"
        ) from None
    address, port = _listen(args.listen)
    options = Options(
        topology=Path(args.topology),
        lease=lease,
        debounce=args.debounce,
        resync=args.resync,
        max_deletions=args.max_deletions,
        allow_empty=args.allow_empty,
        selector_only=args.selector_only,
        ignore_kinds=frozenset(args.ignore_kinds),
        apply_attachments=args.apply_attachments,
        retry_max=args.retry_max,
        timeout=args.timeout,
        address=address,
        port=port,
        event_interval=args.event_interval,
    )
    controller = Controller(cluster_client(args.kubeconfig, args.context), options)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("nsgsync.controller").info(
            "%s received: stopping", signal.Signals(signum).name
        )
        controller.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    controller.run()
    return 0
