"""`nsgsync plan` and `nsgsync apply`: the Intent against the cloud, like Terraform."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from nsgsync.cli import plan_view
from nsgsync.cli.common import (
    add_input_options,
    add_lock_options,
    add_timeout_option,
    apply_lock,
    cloud_session,
    progress,
    read_inputs,
    timeouts,
)
from nsgsync.cli.findings import render_findings
from nsgsync.engine import Guardrails, apply_plan, check_guardrails, make_plan
from nsgsync.errors import InputError, excerpt
from nsgsync.intent import Severity
from nsgsync.jsontext import write_stdout
from nsgsync.plan import Plan, plan_from_dict
from nsgsync.plan.text import render_plan
from nsgsync.provider import CLUSTER_TAG, Adapter, Attaching, Snapshot, Timeouts, configure
from nsgsync.sources import apply_objects, cluster_client, load_topology, prune_objects

PLAN_EXAMPLES = """\
examples:
  nsgsync plan -f manifests/ --topology topology.yaml
  nsgsync plan -f manifests/ --topology topology.yaml --offline -o json   # in CI, no credentials
  nsgsync plan -f manifests/ --topology topology.yaml --detailed-exitcode --save-plan plan.json
  nsgsync plan -f manifests/ --topology topology.yaml --offline -o markdown --fail-on warning

Exit codes: 0 success (with --detailed-exitcode: no changes), 1 error (a usage error too)
or (with --fail-on) findings of that severity, 2 changes present (--detailed-exitcode only).
"""

# The marks of the attachment objects nsgsync makes (docs/contracts.md, ownership).
SGP_API = "vpcresources.k8s.aws/v1beta1"

APPLY_EXAMPLES = """\
examples:
  nsgsync apply -f manifests/ --topology topology.yaml                 # asks before changing
  nsgsync apply -f manifests/ --topology topology.yaml --auto-approve --max-deletions 20
  nsgsync apply --topology topology.yaml plan.json                    # exactly a reviewed plan

Order: new groups and rules first, removals last, so no moment blocks allowed traffic.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = sub.add_parser(
        "plan",
        help="show what apply would change in the cloud (a dry run)",
        description="Compile the policies, read what nsgsync owns in the cloud, and print "
        "the difference: + add, ~ change, - destroy.",
        epilog=PLAN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_options(plan)
    plan.add_argument("-o", "--output", choices=["text", "json", "markdown"], default="text")
    plan_view.add_view_options(plan)
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when there are changes, 0 when there are none",
    )
    plan.add_argument(
        "--offline",
        action="store_true",
        help="plan against an empty cloud state: no credentials, no network",
    )
    plan.add_argument(
        "--save-plan",
        metavar="FILE",
        help="write the plan as JSON, for `nsgsync apply FILE` after review",
    )
    add_timeout_option(plan)
    plan.set_defaults(run=run_plan)

    apply = sub.add_parser(
        "apply",
        help="change the cloud to match the policies",
        description="Plan, then apply: create groups and rules, then change, then remove.",
        epilog=APPLY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_options(apply)
    apply.add_argument(
        "plan_file",
        nargs="?",
        metavar="PLAN",
        help="a plan saved by `nsgsync plan --save-plan` (then -f is not used)",
    )
    apply.add_argument("--auto-approve", action="store_true", help="do not ask for confirmation")
    apply.add_argument(
        "--max-deletions",
        type=_count,
        metavar="N",
        help="refuse a plan that destroys more than N resources",
    )
    apply.add_argument(
        "--allow-empty",
        action="store_true",
        help="allow applying an empty policy source over resources nsgsync owns",
    )
    apply.add_argument(
        "--apply-attachments",
        action="store_true",
        help="then apply the Kubernetes objects that attach the cloud resources to pods "
        "(AWS: SecurityGroupPolicy), with the kubeconfig's or in-cluster credentials",
    )
    add_lock_options(apply)
    add_timeout_option(apply)
    apply.set_defaults(run=run_apply)


def _count(text: str) -> int:
    """A number of resources: argparse turns the ValueError into a usage error."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def run_plan(args: argparse.Namespace) -> int:
    if args.offline and args.save_plan:
        # Refused now, not when applied: an offline plan was made against an empty cloud,
        # so it cannot say what apply would change, and apply would refuse it anyway.
        raise InputError(
            "--save-plan cannot save an --offline plan: it was made against an empty cloud "
            "state, not the cloud apply would change",
            hint="drop --offline to save a plan for `nsgsync apply`, or drop --save-plan "
            "(use -o json to keep an offline plan for review)",
        )
    timeouts(args)  # the run's clock starts here
    inputs = read_inputs(args)
    adapter = configure(inputs.topology, source=args.topology)
    session = None if args.offline else cloud_session(adapter, args)
    if not args.offline:
        progress(f"reading what nsgsync owns for cluster {inputs.topology.cluster} ...")
    planned = make_plan(adapter, inputs.intent, session=session)
    plan = planned.plan
    if args.save_plan:
        _save(plan, Path(args.save_plan))
        progress(
            f"plan saved to {args.save_plan}; apply it with: nsgsync apply --topology "
            f"{args.topology} {args.save_plan}"
        )
    findings = (*inputs.intent.findings, *planned.findings)
    if args.output == "json":
        write_stdout(plan.to_json_bytes())
    elif args.output == "markdown":
        print(plan_view.markdown(plan, findings, args), end="")
    else:
        for line in render_findings(findings, severities=(Severity.WARNING,)):
            progress(line)
        print(plan_view.text(plan, args), end="")
    if plan_view.failing(findings, args):
        return 1
    if args.detailed_exitcode and not plan.empty:
        return 2
    return 0


def _save(plan: Plan, path: Path) -> None:
    try:
        path.write_bytes(plan.to_json_bytes())
    except OSError as exc:
        raise InputError(
            f"cannot write the plan: {exc.strerror or exc}",
            file=str(path),
            hint="give --save-plan a file in a folder that exists and that you can write; "
            "nothing was applied",
        ) from exc


def _confirm(auto: bool) -> bool:
    if auto:
        return True
    # No stdin at all (started with it closed) or no terminal: nobody can answer.
    if sys.stdin is None or sys.stdin.closed or not sys.stdin.isatty():
        raise InputError(
            "refusing to apply without confirmation: no terminal to ask",
            hint="review `nsgsync plan`, then pass --auto-approve",
        )
    try:
        answer = input("Do you want to perform these actions? Only 'yes' will be accepted: ")
    except EOFError as exc:
        # End of input (Ctrl-D, a closed terminal) is no answer, and no answer is no.
        print()  # end the prompt's line
        raise InputError(
            "no answer; nothing was applied",
            hint="answer 'yes' at the prompt, or review `nsgsync plan` and pass --auto-approve",
        ) from exc
    return answer.strip() == "yes"


def run_apply(args: argparse.Namespace) -> int:
    if args.plan_file:
        return _apply_saved(args)
    timeouts(args)  # the run's clock starts here
    inputs = read_inputs(args)
    adapter = configure(inputs.topology, source=args.topology)
    session = cloud_session(adapter, args)
    # Held from before the read the plan is made from until the last write.
    with apply_lock(args, inputs.topology) as lock:
        progress(f"reading what nsgsync owns for cluster {inputs.topology.cluster} ...")
        planned = make_plan(adapter, inputs.intent, session=session, notes=[lock.note])
        plan = planned.plan
        check_guardrails(
            plan,
            guardrails=Guardrails(max_deletions=args.max_deletions, allow_empty=args.allow_empty),
            policy_count=len(inputs.inventory.policies),
            owned_count=len(planned.actual),
        )
        code = _review_and_apply(
            plan,
            adapter,
            session,
            snapshot=planned.snapshot,
            auto_approve=args.auto_approve,
            progress=lock.progress,
            limits=timeouts(args),
        )
        if code == 0 and args.apply_attachments:
            _attach(args, adapter, inputs.inventory.namespaces, session)
    return code


def _review_and_apply(
    plan: Plan,
    adapter: Adapter,
    session: object,
    *,
    auto_approve: bool,
    snapshot: Snapshot | None = None,
    saved: bool = False,
    verb: str = "Apply",
    show: bool = True,
    progress: Callable[[str], None] = progress,
    limits: Timeouts | None = None,
) -> int:
    """Print the plan, ask (unless auto-approved), apply, and say what was done."""
    if show:
        print(render_plan(plan), end="")
    if plan.empty:
        return 0
    if not _confirm(auto_approve):
        print(f"{verb} cancelled; nothing was changed.")
        return 1
    apply_plan(
        adapter,
        plan,
        session,
        progress=progress,
        snapshot=snapshot,
        saved=saved,
        timeouts=limits,
    )
    s = plan.summary()
    done = (
        f"{verb} complete! Resources: {s['add']} added, {s['change']} changed, "
        f"{s['destroy']} destroyed."
    )
    # With the plan as JSON on stdout, the summary goes with the progress lines.
    if show:
        print(done)
    else:
        progress(done)
    return 0


def _attach(
    args: argparse.Namespace,
    adapter: Adapter,
    namespaces: Mapping[str, Mapping[str, str]],
    session: object,
) -> None:
    """Apply the objects that attach the cloud resources to pods (after the cloud side),
    then delete the stale ones nsgsync made. A retiring group's object goes too, once its
    replacement is applied: pods that start from then on get the replacement, so the
    interfaces on the old group drain and it can go; those still running keep it, and
    it keeps its rules until then."""
    if not isinstance(adapter, Attaching):
        progress(f"provider {adapter.name} attaches without Kubernetes objects; nothing to do")
        return
    docs, findings = adapter.attachments(namespaces, adapter.read(session))
    for line in render_findings(findings, severities=(Severity.WARNING,)):
        progress(line)
    client = cluster_client(args.kubeconfig, args.context)
    for line in apply_objects(client, docs):
        print(line)
    wanted = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs}
    kinds = {(d["apiVersion"], d["kind"]) for d in docs} or {(SGP_API, "SecurityGroupPolicy")}

    def stale(item: Mapping[str, Any]) -> bool:
        meta = item.get("metadata") or {}
        return (meta.get("namespace"), meta.get("name")) not in wanted

    for api_version, kind in sorted(kinds):
        for line in prune_objects(
            client,
            api_version=api_version,
            kind=kind,
            labels={CLUSTER_TAG: adapter.cluster},
            stale=stale,
        ):
            print(line)


def _apply_saved(args: argparse.Namespace) -> int:
    timeouts(args)  # the run's clock starts here
    path = Path(args.plan_file)
    topology = load_topology(args.topology)
    adapter = configure(topology, source=args.topology)
    try:
        plan = plan_from_dict(json.loads(path.read_text()), adapter.restore)
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        AssertionError,
        RecursionError,
    ) as exc:
        raise InputError(f"not a saved nsgsync plan: {excerpt(str(exc))}", file=str(path)) from exc
    if plan.offline:
        # Before connecting: an offline plan never says what to change in the real cloud.
        raise InputError(
            "an --offline plan cannot be applied: it was made against an empty cloud state",
            file=str(path),
            hint="save a plan without --offline (`nsgsync plan --save-plan FILE`), review it, "
            "then apply that; nothing was applied",
        )
    if plan.cluster != topology.cluster or plan.provider != topology.provider:
        raise InputError(
            f"the plan is for {plan.provider}/{plan.cluster}, the topology for "
            f"{topology.provider}/{topology.cluster}",
            file=str(path),
        )
    session = cloud_session(adapter, args)
    check_guardrails(
        plan,
        guardrails=Guardrails(max_deletions=args.max_deletions, allow_empty=True),
        policy_count=1,
        owned_count=0,
    )
    with apply_lock(args, topology) as lock:
        plan = replace(plan, notes=(*plan.notes, lock.note))
        return _review_and_apply(
            plan,
            adapter,
            session,
            auto_approve=args.auto_approve,
            saved=True,
            progress=lock.progress,
            limits=timeouts(args),
        )
