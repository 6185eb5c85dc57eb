"""One reconcile: compile, plan, check the guardrails, apply. The controller's only door
into the engine and the providers, so that a change there is adapted here alone.

The order of one reconcile is the CLI's `nsgsync apply` order, plus attachments:
1. compile the inventory (from the watch cache) into the Intent;
2. plan it against what nsgsync owns in the cloud (re-read on every reconcile: drift);
3. refuse the plan if a guardrail says so (`--max-deletions`, an empty policy source
   over owned resources), before any write;
4. with attachments (AWS SecurityGroupPolicy), delete the stale objects first, so that
   none points at a group the apply is about to delete;
5. apply the plan (the engine orders it so that no allowed connection is ever cut);
6. with attachments, create or update the objects for every segment, with the ids of the
   groups that now exist.

`proceed()` is asked before the first write and before each write batch (through the
engine's progress calls): when it says no (the controller is stopping, or lost the
leadership), the reconcile is abandoned there. Every batch boundary is a safe point: the
engine keeps every connection allowed before and after the apply allowed at each moment.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from nsgsync.compile import CompileOptions, compile_intent
from nsgsync.engine import Guardrails, apply_plan, check_guardrails, make_plan, read
from nsgsync.errors import NsgsyncError
from nsgsync.intent import Finding
from nsgsync.model import Inventory, Topology
from nsgsync.provider import Adapter, Attaching, Timeouts, configure

__all__ = [
    "Abandoned",
    "Attacher",
    "Guardrails",
    "Outcome",
    "connect",
    "reconcile_once",
]


class Abandoned(NsgsyncError):
    """The reconcile stopped at a safe point: stopping, or no longer the leader."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hint="the next leader's reconcile finishes the work")


class Attacher(Protocol):
    """The Kubernetes side of attachments: the objects nsgsync owns in the cluster."""

    def prune(self, keep: set[tuple[str, str]], retiring: frozenset[str] = ...) -> None:
        """Delete the objects nsgsync owns whose (namespace, name) is not in `keep`."""
        ...

    def apply(self, docs: Sequence[Mapping[str, Any]]) -> None:
        """Create or update these objects (those that differ from the cluster's)."""
        ...


@dataclass(frozen=True)
class Outcome:
    applied: bool  # False: the cloud already matched, nothing was written
    changes: Mapping[tuple[str, str], int]  # (op, resource type) -> how many were applied
    findings: tuple[Finding, ...]
    owned: Mapping[tuple[str, str], int]  # (segment, resource type) -> desired count
    intent_digest: str  # equal digests: the same policies; changes then were drift
    policies: int
    notes: tuple[str, ...] = field(default=())


def connect(topology: Topology, *, source: str | None = None) -> tuple[Adapter, Any]:
    """The topology's adapter and a session with its cloud (credentials as the SDK finds)."""
    adapter = configure(topology, source=source)
    return adapter, adapter.session()


def reconcile_once(
    topology: Topology,
    inventory: Inventory,
    *,
    adapter: Adapter,
    session: Any,
    guardrails: Guardrails,
    progress: Callable[[str], None],
    compile_options: CompileOptions | None = None,
    attacher: Attacher | None = None,
    proceed: Callable[[], bool] = lambda: True,
    timeouts: Timeouts | None = None,
) -> Outcome:
    intent = compile_intent(topology, inventory, options=compile_options)
    planned = make_plan(adapter, intent, session=session)
    plan = planned.plan
    check_guardrails(
        plan,
        guardrails=guardrails,
        policy_count=len(inventory.policies),
        owned_count=len(planned.actual),
    )
    findings = [*intent.findings, *planned.findings]
    attaching = adapter if attacher is not None and isinstance(adapter, Attaching) else None

    def checked(message: str) -> None:
        if not proceed():
            raise Abandoned(f"reconcile abandoned before: {message}")
        progress(message)

    if attaching is not None and attacher is not None:
        wanted, _ = attaching.attachments(inventory.namespaces, planned.snapshot)
        if not proceed():
            raise Abandoned("reconcile abandoned before its first write")
        attacher.prune(
            {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in wanted},
            frozenset(r.segment for r in plan.retiring if r.segment),
        )
    if not plan.empty:
        if not proceed():
            raise Abandoned("reconcile abandoned before its first write")
        apply_plan(adapter, planned, session, progress=checked, timeouts=timeouts)
    if attaching is not None and attacher is not None:
        snapshot = planned.snapshot if plan.empty else read(adapter, session)
        docs, attach_findings = attaching.attachments(inventory.namespaces, snapshot)
        findings.extend(attach_findings)
        if not proceed():
            raise Abandoned("reconcile abandoned before applying the attachments")
        attacher.apply(docs)
        # A retiring group's objects were kept until their replacements exist: now they do,
        # and pods that start from here on must get the replacement, or the old group
        # would never drain (docs/operating-in-production.md, retiring groups).
        attacher.prune({(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs})
    changes = Counter((c.op.value, c.resource.type) for c in plan.changes)
    owned = Counter((r.segment or "", r.type) for r in plan.desired)
    digest = hashlib.sha256(intent.model_dump_json().encode()).hexdigest()
    return Outcome(
        applied=not plan.empty,
        changes=dict(changes),
        findings=tuple(sorted(set(findings), key=lambda f: f.sort_key())),
        owned=dict(owned),
        intent_digest=digest,
        policies=len(inventory.policies),
        notes=tuple(plan.notes),
    )
