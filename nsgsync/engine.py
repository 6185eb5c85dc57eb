"""Plan and apply: the Intent through a provider, against the cloud, with guardrails."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nsgsync.errors import GuardrailError, StalePlanError
from nsgsync.intent import Finding, Intent
from nsgsync.model import Topology
from nsgsync.plan import Op, Plan, Resource, fingerprint
from nsgsync.provider import Connection, Progress, Provider


@dataclass(frozen=True)
class Planned:
    plan: Plan
    findings: tuple[Finding, ...]
    actual: tuple[Resource, ...]


def make_plan(
    provider: Provider,
    topology: Topology,
    intent: Intent,
    *,
    connection: Connection | None,
    notes: Sequence[str] = (),
) -> Planned:
    """Desired from the Intent, actual from the cloud (none when offline), and the diff."""
    provider.validate(topology)
    desired, findings = provider.render(intent, topology)
    provider.check_limits(desired, topology)
    actual: list[Resource] = []
    if connection is not None:
        actual = list(connection.read())
        desired = connection.bind(desired, actual)
    plan = Plan.build(
        provider=provider.name,
        cluster=topology.cluster,
        desired=desired,
        actual=actual,
        offline=connection is None,
        notes=notes,
    )
    return Planned(plan, tuple(findings), tuple(actual))


@dataclass(frozen=True)
class Guardrails:
    max_deletions: int | None = None
    allow_empty: bool = False


def check_guardrails(
    plan: Plan, *, guardrails: Guardrails, policy_count: int, owned_count: int
) -> None:
    deletions = plan.count(Op.DESTROY)
    if guardrails.max_deletions is not None and deletions > guardrails.max_deletions:
        raise GuardrailError(
            f"the plan destroys {deletions} resources, more than --max-deletions "
            f"{guardrails.max_deletions}; nothing was applied",
            hint="review `nsgsync plan`; raise --max-deletions if the deletions are intended",
        )
    if policy_count == 0 and owned_count and not plan.empty and not guardrails.allow_empty:
        raise GuardrailError(
            f"no NetworkPolicy was read, but nsgsync owns {owned_count} resources in the cloud "
            "that this would change or remove; nothing was applied",
            hint="check the -f paths (an empty folder?); pass --allow-empty if the cluster "
            "really has no policies any more",
        )


def apply_plan(
    plan: Plan, connection: Connection, *, progress: Progress, saved: bool = False
) -> None:
    """Apply `plan`. A saved plan is refused if the cloud changed since it was made."""
    if saved:
        now = fingerprint(connection.read())
        if plan.fingerprint is None or now != plan.fingerprint:
            raise StalePlanError(
                "the cloud changed since this plan was saved (or it was an offline plan); "
                "nothing was applied"
            )
    if plan.empty:
        progress("nothing to do: the cloud already matches")
        return
    connection.apply(plan, progress=progress)
