"""`nsgsync destroy`: remove everything nsgsync owns for the cluster, through the same
plan, review, guardrails and engine as apply."""

from __future__ import annotations

import argparse

from nsgsync.cli.common import (
    add_lock_options,
    add_timeout_option,
    apply_lock,
    cloud_session,
    progress,
    timeouts,
)
from nsgsync.cli.plan_cmd import _review_and_apply
from nsgsync.engine import Guardrails, check_guardrails, make_plan
from nsgsync.intent import Intent
from nsgsync.plan.text import render_plan
from nsgsync.provider import configure
from nsgsync.sources import load_topology

EXAMPLES = """\
examples:
  nsgsync destroy --topology topology.yaml --plan                  # what would go, changes nothing
  nsgsync destroy --topology topology.yaml --plan -o json --detailed-exitcode
  nsgsync destroy --topology topology.yaml                         # asks before changing
  nsgsync destroy --topology topology.yaml --auto-approve --max-deletions 200

Only what carries nsgsync's ownership marks for this cluster is removed; rules first, then
the groups (NSGs) that held them. Exit codes: 0 success (with --detailed-exitcode: nothing
to destroy), 1 error, 2 something was (or, with --plan, would be) destroyed.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "destroy",
        help="remove everything nsgsync owns for the cluster",
        description="Plan the removal of every resource nsgsync owns for the topology's "
        "cluster, show it, and (after confirmation) apply it.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--topology", required=True, metavar="FILE", help="the cluster's topology")
    p.add_argument("--plan", action="store_true", help="only show what would be destroyed")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when something is (or would be) destroyed, 0 when nothing is",
    )
    p.add_argument("--auto-approve", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "--max-deletions",
        type=int,
        metavar="N",
        help="refuse a plan that destroys more than N resources",
    )
    add_lock_options(p, cluster_options=True)
    add_timeout_option(p)
    p.set_defaults(run=run_destroy)


def run_destroy(args: argparse.Namespace) -> int:
    timeouts(args)  # the run's clock starts here
    topology = load_topology(args.topology)
    adapter = configure(topology, source=args.topology)
    session = cloud_session(adapter, args)
    nothing = Intent(cluster=topology.cluster, segments=())
    if (args.kubeconfig or args.context) and not args.lock_namespace:
        # A cluster named for destroy is where its lock is held.
        from nsgsync.controller.lock import default_namespace

        args.lock_namespace = default_namespace()
    if args.plan:
        progress(f"reading what nsgsync owns for cluster {topology.cluster} ...")
        planned = make_plan(
            adapter, nothing, session=session, destroy=True, notes=["destroy: remove everything"]
        )
        check_guardrails(
            planned.plan,
            guardrails=Guardrails(max_deletions=args.max_deletions, allow_empty=True),
            policy_count=0,
            owned_count=len(planned.actual),
        )
        plan = planned.plan
        print(plan.to_json() if args.output == "json" else render_plan(plan), end="")
        return 2 if args.detailed_exitcode and not plan.empty else 0
    with apply_lock(args, topology) as lock:
        progress(f"reading what nsgsync owns for cluster {topology.cluster} ...")
        planned = make_plan(
            adapter,
            nothing,
            session=session,
            destroy=True,
            notes=["destroy: remove everything", lock.note],
        )
        plan = planned.plan
        check_guardrails(
            plan,
            guardrails=Guardrails(max_deletions=args.max_deletions, allow_empty=True),
            policy_count=0,
            owned_count=len(planned.actual),
        )
        changed = 2 if args.detailed_exitcode and not plan.empty else 0
        if args.output == "json":
            print(plan.to_json(), end="")
        code = _review_and_apply(
            plan,
            adapter,
            session,
            snapshot=planned.snapshot,
            auto_approve=args.auto_approve,
            verb="Destroy",
            show=args.output != "json",
            progress=lock.progress,
            limits=timeouts(args),
        )
    return code or changed
