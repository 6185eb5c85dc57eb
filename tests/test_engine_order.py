"""The engine's schedule, seen from an adapter: the phases in their order, batched per
container and side, containers created first (taking their rules inline where the adapter
says so) and deleted last, rules the cloud made by itself kept or removed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nsgsync.engine import apply_plan, make_plan
from nsgsync.intent import Finding, Intent
from nsgsync.plan import Change, Ident, Resource, Role
from nsgsync.provider import (
    Adapter,
    Applied,
    Budget,
    Created,
    Footprint,
    Phase,
    Progress,
    Snapshot,
)


def box(name: str) -> Resource:
    return Resource("box", Ident("box", (name,)), {"name": name}, name, role=Role.CONTAINER)


def rule(box_: str, name: str, *, deny: bool = False, side: str = "ingress") -> Resource:
    return Resource(
        "rule",
        Ident("rule", (box_, name)),
        {"name": name, "deny": deny},
        box_,
        role=Role.RULE,
        container=Ident("box", (box_,)),
        direction=side,
    )


@dataclass
class Recorder:
    """An adapter over a list of resources; it records every call the engine makes."""

    have: list[Resource]  # the cloud: changed by the writes
    want: list[Resource]
    inline: bool = False
    implicit: tuple[str, ...] = ()
    name: str = "recorder"
    cluster: str = "c"
    pairs: bool = False
    cascades: bool = False
    calls: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def session(self, **clients: Any) -> object:
        return self

    def read(self, session: Any) -> Snapshot:
        return Snapshot(tuple(self.have))

    def reread(
        self, session: Any, touched: Sequence[Resource], *, applied: Applied
    ) -> tuple[Resource, ...]:
        return tuple(self.have)

    def _apply(self, changes: Sequence[Change]) -> None:
        """The list as the cloud would be after `changes`: the engine's re-reads see it."""
        for c in changes:
            if c.old is not None:
                self.have.remove(c.old)
                if self.cascades and c.old.role is Role.CONTAINER:
                    self.have = [r for r in self.have if r.container != c.old.ident]
            if c.new is not None:
                self.have.append(c.new)

    def desired(self, intent: Intent, snapshot: Snapshot) -> tuple[list[Resource], list[Finding]]:
        return list(self.want), []

    def restore(
        self, type_: str, key: str, body: Mapping[str, Any], segment: str | None
    ) -> Resource:
        raise AssertionError

    def budget(self, resource: Resource, snapshot: Snapshot) -> Budget | None:
        return None

    def denies(self, resource: Resource) -> bool:
        return bool(resource.body.get("deny"))

    def footprint(self, resource: Resource) -> Footprint | None:
        return None  # never paired: this adapter has no quota to pair under

    def widens(self, old: Resource, new: Resource) -> bool:
        return str(new.body["name"]).startswith("wide")

    def batch_size(self, phase: Phase) -> int:
        return 2

    def create(
        self,
        session: Any,
        change: Change,
        rules: Sequence[Change],
        *,
        applied: Applied,
        progress: Progress,
    ) -> Created | None:
        self.calls.append(("create", (change.key,)))
        self._apply([change])
        if change.old is not None:
            return None
        name = change.resource.ident.name
        made = tuple(rule(name, n) for n in self.implicit)
        self.have += made
        absorbed = frozenset(c.resource.ident for c in rules) if self.inline else frozenset()
        if self.inline:
            self._apply(rules)
        return Created(change.resource.ident, f"id-{name}", absorbed=absorbed, implicit=made)

    def write(
        self,
        session: Any,
        phase: Phase,
        batch: Sequence[Change],
        *,
        applied: Applied,
        progress: Progress,
    ) -> None:
        self.calls.append((phase.value, tuple(c.key for c in batch)))
        self._apply(batch)


def run(adapter: Recorder) -> list[tuple[str, tuple[str, ...]]]:
    typed: Adapter = adapter
    planned = make_plan(typed, Intent(cluster="c", segments=()), session=adapter)
    apply_plan(typed, planned, adapter, progress=lambda _: None)
    return adapter.calls


def test_phases_run_in_order_batched_per_container_and_side() -> None:
    old_box, new_box = box("old"), box("new")
    keep = box("keep")
    changed = rule("keep", "r1").with_body({"name": "wide-r1", "deny": False})
    narrowed = rule("keep", "r2").with_body({"name": "r2-narrow", "deny": False})
    have = [
        old_box,
        keep,
        rule("old", "gone"),
        rule("keep", "r1"),
        rule("keep", "r2"),
        rule("keep", "stale1"),
        rule("keep", "stale2"),
        rule("keep", "stale3"),
    ]
    want = [
        new_box,
        keep,
        changed,
        narrowed,
        rule("new", "a"),
        rule("keep", "b"),
        rule("keep", "c", side="egress"),
        rule("keep", "d"),
        rule("keep", "e"),
        rule("keep", "deny", deny=True),
    ]
    calls = run(Recorder(have, want))
    assert [phase for phase, _ in calls] == [
        "create",
        "add",  # box/keep, egress
        "add",  # box/keep, ingress: b, d
        "add",  # box/keep, ingress: e
        "add",  # box/new
        "widen",
        "narrow",
        "deny",
        "remove",  # box/keep: two at a time
        "remove",
        "remove",  # box/old: its rule, before the box goes (the adapter does not cascade)
        "delete",
    ]
    assert calls[0] == ("create", ("box/new",))
    assert calls[2] == ("add", ("rule/keep/b", "rule/keep/d"))
    assert calls[-2] == ("remove", ("rule/old/gone",))
    assert calls[-1] == ("delete", ("box/old",))


def test_rules_taken_inline_are_not_added_again() -> None:
    want = [box("new"), rule("new", "a"), rule("new", "deny", deny=True)]
    assert run(Recorder([], want, inline=True)) == [("create", ("box/new",))]


def test_rules_the_cloud_made_are_kept_where_wanted_and_removed_after_the_adds() -> None:
    made = rule("new", "made").with_body({"name": "wide-made", "deny": False})
    want = [box("new"), rule("new", "a"), made]
    calls = run(Recorder([], want, implicit=("made", "stray")))
    assert calls == [
        ("create", ("box/new",)),
        ("add", ("rule/new/a",)),
        ("widen", ("rule/new/made",)),  # kept, its body changed in place
        ("remove", ("rule/new/stray",)),
    ]


def test_a_cascading_container_takes_its_rules_with_it() -> None:
    calls = run(Recorder([box("old"), rule("old", "x"), rule("old", "y")], [], cascades=True))
    assert calls == [("delete", ("box/old",))]
