"""Priorities for nsgsync's rules inside the band it owns, stable from one run to the next.

Per NSG and direction, in three tiers, each below (evaluated before) the next:
- top: the NSG's `-unsegmented` rule, allowing what no segment's rules decide;
- then each segment's `-default` rule (deny or allow everything for the segment's CIDRs);
- below them all, the segments' allow rules.
The first two take the top free slots of the band. A rule that exists keeps its priority
while that is still valid for its tier; a new allow rule starts at a slot derived from a
hash of its key and takes the next free slot from there, so adding a rule never renumbers
the others. A slot held in the cloud (by a rule nsgsync does not own, or by one of its own
that is about to move or go) is never handed out: rules are added before others are
removed, and two rules cannot share a priority.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence, Set

from nsgsync.errors import LimitError
from nsgsync.plan import Body, Resource

Group = tuple[str, str]  # (NSG name in lower case, "Inbound" | "Outbound")

UNSEGMENTED_SUFFIX = "-unsegmented"
FINAL_SUFFIX = "-default"


def group_of(rule: Resource) -> Group:
    return (rule.ident.parts[0], str(rule.body["properties"]["direction"]))


def tier(rule: Resource) -> int:
    name = str(rule.body["name"]).lower()
    if name.endswith(UNSEGMENTED_SUFFIX):
        return 0
    return 1 if name.endswith(FINAL_SUFFIX) else 2


def preferred(key: str, span: int) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) % span


def with_priority(rule: Resource, priority: int) -> Resource:
    body = rule.body
    assert isinstance(body, Body)  # a Resource makes every body one
    return rule.with_body(body.with_value(("properties", "priority"), priority))


def _full(group: Group, band: tuple[int, int], needed: int, foreign: int) -> LimitError:
    lo, hi = band
    nsg, direction = group
    others = f", {foreign} of them held by rules nsgsync does not own" if foreign else ""
    return LimitError(
        f"NSG {nsg} needs {needed} {direction.lower()} rules in nsgsync's priority band "
        f"{lo}-{hi} ({hi - lo + 1} slots{others}); the band is full, nothing was applied",
        hint="widen azure.priorityBand, move other rules out of the band, or give the "
        "segments fewer, larger CIDRs; if the plan also removes rules, apply it in two steps",
    )


def _assign_group(
    group: Group,
    members: Sequence[Resource],
    band: tuple[int, int],
    theirs: Set[int],
    occupied: Set[int],
    current: Mapping[str, int],
) -> dict[str, Resource]:
    lo, hi = band
    out: dict[str, Resource] = {}
    # Slots nothing new may take: held in the cloud now, or given out in this run.
    blocked = set(occupied) | set(theirs)
    kept: set[int] = set()

    def place(rule: Resource, slot: int) -> None:
        blocked.add(slot)
        out[rule.key] = with_priority(rule, slot)

    def keep(rule: Resource, top: int) -> bool:
        p = current.get(rule.key)
        if p is None or not lo <= p <= top or p in kept or p in theirs:
            return False
        kept.add(p)
        place(rule, p)
        return True

    def full() -> LimitError:
        return _full(group, band, len(members), sum(1 for p in theirs if lo <= p <= hi))

    top = hi
    for level in (0, 1):
        rules = sorted((r for r in members if tier(r) == level), key=lambda r: r.key)
        for rule in [r for r in rules if not keep(r, top)]:
            slot = next((p for p in range(top, lo - 1, -1) if p not in blocked), None)
            if slot is None:
                raise full()
            place(rule, slot)
        top = min((out[r.key].body["properties"]["priority"] - 1 for r in rules), default=top)
    span = top - lo + 1
    rules = sorted((r for r in members if tier(r) == 2), key=lambda r: r.key)
    for rule in [r for r in rules if not keep(r, top)]:
        start = preferred(rule.key, span) if span > 0 else 0
        slots = (lo + (start + i) % span for i in range(span))
        slot = next((p for p in slots if p not in blocked), None)
        if slot is None:
            raise full()
        place(rule, slot)
    return out


def assign(
    rules: Sequence[Resource],
    band: tuple[int, int],
    *,
    foreign: Mapping[Group, Set[int]] | None = None,
    occupied: Mapping[Group, Set[int]] | None = None,
    current: Mapping[str, int] | None = None,
) -> list[Resource]:
    """`rules` with priorities set. `current`: key -> priority of rules that exist;
    `occupied`: slots held in the cloud now; `foreign`: those held by others' rules."""
    groups: dict[Group, list[Resource]] = defaultdict(list)
    for r in rules:
        groups[group_of(r)].append(r)
    out: dict[str, Resource] = {}
    for group, members in groups.items():
        out.update(
            _assign_group(
                group,
                members,
                band,
                (foreign or {}).get(group, set()),
                (occupied or {}).get(group, set()),
                current or {},
            )
        )
    return [out.get(r.key, r) for r in rules]
