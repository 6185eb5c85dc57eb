"""Options and steps every verb shares: reading inputs and compiling them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from nsgsync.compile import CompileOptions, compile_intent
from nsgsync.errors import InputError
from nsgsync.intent import Intent
from nsgsync.model import Inventory, Topology
from nsgsync.provider import Adapter, Timeouts
from nsgsync.sources import load_cluster, load_manifests, load_topology, merge_inventories


def add_input_options(parser: argparse.ArgumentParser, *, topology_required: bool = True) -> None:
    group = parser.add_argument_group("input")
    group.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        default=[],
        metavar="PATH",
        help="a YAML/JSON manifest or a folder of them (repeatable; folders are read recursively)",
    )
    group.add_argument(
        "--from-cluster",
        action="store_true",
        help="read NetworkPolicies, namespaces, pods and workloads from the live cluster "
        "(in a pod: its service account; else the kubeconfig), alone or together with -f, "
        "where a policy in the files replaces the cluster's (a preview of a change); e.g. "
        "`--from-cluster --context prod-eu-1 --topology topology.yaml`",
    )
    group.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="kubeconfig for --from-cluster (default: $KUBECONFIG, then ~/.kube/config)",
    )
    group.add_argument(
        "--context",
        metavar="NAME",
        help="kubeconfig context for --from-cluster (default: the current context)",
    )
    group.add_argument(
        "--topology",
        required=topology_required,
        metavar="FILE",
        help="the cluster's topology file (see config/example/topology.yaml)",
    )
    group.add_argument(
        "--ignore-kind",
        dest="ignore_kinds",
        action="append",
        default=[],
        metavar="KIND",
        help="compile although policies of this kind are present, which nsgsync does not "
        "compile (CiliumNetworkPolicy, a Calico NetworkPolicy.projectcalico.org, "
        "AdminNetworkPolicy, ...): only when they allow nothing the NetworkPolicies deny; "
        "a warning finding lists them (repeatable)",
    )
    group.add_argument(
        "--namespaces-complete",
        action="store_true",
        help="the Namespace manifests given with -f are all of the cluster's namespaces: "
        "nsgsync then assumes no pods in others (implied by --from-cluster)",
    )
    group.add_argument(
        "--selector-only",
        action="store_true",
        help="decide coverage from selectors alone, ignoring known pods: rules then also "
        "hold for pods that do not exist yet, at the cost of precision",
    )


@dataclass(frozen=True)
class Inputs:
    topology: Topology
    inventory: Inventory
    intent: Intent


def read_inputs(args: argparse.Namespace) -> Inputs:
    from_cluster = bool(getattr(args, "from_cluster", False))
    kubeconfig = getattr(args, "kubeconfig", None)
    context = getattr(args, "context", None)
    if not args.files and not from_cluster:
        raise InputError(
            "no policies to read: give -f PATH (manifests) and/or --from-cluster",
            hint="e.g. -f config/example/cluster, or --from-cluster --context NAME",
        )
    if (kubeconfig or context) and not uses_cluster(args):
        raise InputError(
            "--kubeconfig and --context only apply with --from-cluster, --apply-attachments "
            "or --lock-namespace",
            hint="add --from-cluster to read the live cluster",
        )
    topology = load_topology(args.topology)
    inventory = load_manifests(args.files)
    if getattr(args, "namespaces_complete", False):
        inventory = replace(inventory, namespaces_complete=True)
    if from_cluster:
        progress("reading NetworkPolicies, namespaces and pods from the cluster ...")
        live = load_cluster(kubeconfig=kubeconfig, context=context)
        progress(
            f"read {len(live.policies)} NetworkPolicies, {len(live.namespaces)} namespaces "
            f"and {len(live.pods)} pods and pod templates from the cluster"
        )
        # A policy in both is not an error, unlike a duplicate between two files: files
        # given with --from-cluster are a proposed change, so their version is used.
        shadowed = {p.ref for p in inventory.policies} & {p.ref for p in live.policies}
        if shadowed:
            progress(
                f"note: {len(shadowed)} NetworkPolicies are both in the files and in the "
                f"cluster; the files' version is used: {', '.join(sorted(shadowed))}"
            )
        inventory = merge_inventories(inventory, live) if args.files else live
    options = CompileOptions(
        selector_only=args.selector_only,
        ignore_kinds=frozenset(getattr(args, "ignore_kinds", ())),
    )
    intent = compile_intent(topology, inventory, options=options)
    return Inputs(topology, inventory, intent)


def add_timeout_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="stop the whole run after SECONDS (counted from its start): no call is begun "
        "past it and no call waits past it; an apply that stops says what it did and what "
        "is left (e.g. --timeout 600 under a CronJob's activeDeadlineSeconds)",
    )


def seconds(text: str) -> float:
    """A positive number of seconds: argparse turns the ValueError into a usage error."""
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError(text)
    return value


def timeouts(args: argparse.Namespace) -> Timeouts:
    """The run's timeouts, its deadline counted from the first time they are asked for."""
    made = getattr(args, "_timeouts", None)
    if made is None:
        made = Timeouts.run_for(getattr(args, "timeout", None))
        args._timeouts = made
    return made


def cloud_session(adapter: Adapter, args: argparse.Namespace) -> object:
    """A session with the cloud whose every call is bounded by the run's timeouts, and
    which says on stderr how many calls a long read has made."""
    return adapter.session(timeouts=timeouts(args), progress=progress)


def progress(message: str) -> None:
    """Progress goes to stderr, so stdout stays the machine-readable result."""
    print(message, file=sys.stderr, flush=True)


# --- the lock around an apply (docs/operating-in-production.md, Locking) ---


def add_lock_options(parser: argparse.ArgumentParser, *, cluster_options: bool = False) -> None:
    group = parser.add_argument_group("lock (one apply at a time per cluster and provider)")
    if cluster_options:
        group.add_argument(
            "--kubeconfig",
            metavar="PATH",
            help="kubeconfig for the lock's Lease (default: $KUBECONFIG, then ~/.kube/config)",
        )
        group.add_argument("--context", metavar="NAME", help="kubeconfig context for the Lease")
    group.add_argument(
        "--lock-namespace",
        metavar="NS",
        help="hold the lock as a Lease in this namespace of the cluster (with the "
        "kubeconfig's or in-cluster credentials). Default: when the run reads the cluster "
        "(--from-cluster, --apply-attachments), the pod's own namespace, else nsgsync; "
        "otherwise no lock is held. e.g. --lock-namespace nsgsync",
    )
    group.add_argument(
        "--lock-timeout",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another apply's lock (default 0: stop at once, naming its "
        "holder); e.g. --lock-timeout 300",
    )


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(text)
    return value


def uses_cluster(args: argparse.Namespace) -> bool:
    """Whether this run talks to the cluster, and so holds its lock there."""
    return bool(
        getattr(args, "from_cluster", False)
        or getattr(args, "apply_attachments", False)
        or getattr(args, "lock_namespace", None)
    )


@dataclass(frozen=True)
class Locked:
    """The lock an apply holds (or that none is): a note for the plan, and a progress
    function that stops the apply at its next write once the lock is lost."""

    note: str
    check: Callable[[], None]

    def progress(self, message: str) -> None:
        self.check()
        progress(message)


@contextmanager
def apply_lock(args: argparse.Namespace, topology: Topology) -> Iterator[Locked]:
    """Hold the cluster's Lease for (cluster, provider) around an apply, when the run
    reaches a cluster; in files mode, hold nothing and say so."""
    if not uses_cluster(args):
        yield Locked(
            "no lock is held: the policies come from files and no cluster is given to hold "
            "a Lease in (--lock-namespace NS holds one); before each phase writes, the apply "
            "re-reads what it touches and stops if it changed since this plan",
            lambda: None,
        )
        return
    from nsgsync.controller.lock import ApplyLock, default_namespace
    from nsgsync.sources import cluster_client

    lock = ApplyLock(
        cluster_client(getattr(args, "kubeconfig", None), getattr(args, "context", None)),
        namespace=default_namespace(args.lock_namespace),
        cluster=topology.cluster,
        provider=topology.provider,
        timeout=args.lock_timeout,
    )
    if args.lock_timeout > 0:
        progress(f"taking the lock ({lock.where}), waiting up to {args.lock_timeout:g} s ...")
    with lock:
        yield Locked(f"lock: {lock.where}, held by {lock.config.identity}", lock.check)
