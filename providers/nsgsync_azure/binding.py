"""Where desired rules meet what an NSG already holds, without the SDK: names others hold
are refused, the quota is checked, and each rule gets a priority no other rule has. An
offline plan needs none of this; a plan against ARM needs it after reading, and neither
needs azure-mgmt-network imported for it (most of a second at every run)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nsgsync.errors import LimitError, ProviderError
from nsgsync.plan import Resource
from nsgsync.provider import CLUSTER_TAG
from nsgsync_azure.config import AzureConfig
from nsgsync_azure.priorities import Group, assign, group_of
from nsgsync_azure.render import MAX_RULES_PER_NSG, NSG, RULE, rule_resource


@dataclass(frozen=True)
class Held:
    """What others hold where nsgsync writes (read once, never written): in-band
    priorities per (NSG, direction), rule names and counts per NSG, and the names of NSGs
    in the resource group that are not nsgsync's."""

    priorities: tuple[tuple[Group, frozenset[int]], ...] = ()
    names: tuple[tuple[str, frozenset[str]], ...] = ()
    counts: tuple[tuple[str, int], ...] = ()
    unowned_nsgs: frozenset[str] = frozenset()

    def count(self, nsg: str) -> int:
        return dict(self.counts).get(nsg, 0)


def adopt_names(desired: Sequence[Resource], actual: Sequence[Resource]) -> list[Resource]:
    """A desired rule whose content an owned rule of another name already holds (a pair
    wrote it there in place) takes that rule's name, and so its priority: the next plan
    must find nothing to do."""
    wanted = {r.key for r in desired}
    have = {r.key for r in actual}
    free: dict[tuple[str, str], list[Resource]] = defaultdict(list)
    for r in actual:
        if r.key not in wanted:
            free[(r.ident.parts[0], _content(r.body))].append(r)
    out = []
    for r in desired:
        spare = free.get((r.ident.parts[0], _content(r.body))) if r.key not in have else None
        if spare:
            name = str(spare.pop(0).body["name"])
            r = rule_resource(
                r.ident.parts[0], {**r.body, "name": name}, r.segment, sources=r.sources
            )
        out.append(r)
    return out


def _content(body: Mapping[str, Any]) -> str:
    props = body.get("properties") or {}
    return repr(sorted((k, repr(v)) for k, v in props.items() if k != "priority"))


def bind(
    desired: Sequence[Resource],
    actual: Sequence[Resource],
    held: Held,
    config: AzureConfig,
    cluster: str,
) -> list[Resource]:
    """Names and priorities against what is there: refuse names others hold, fit the
    quota, and give each rule a priority no other rule holds."""
    names = dict(held.names)
    for r in desired:
        if r.type == NSG and r.body["name"].lower() in held.unowned_nsgs:
            raise ProviderError(
                f"NSG {r.body['name']} exists in {config.resource_group} without nsgsync's "
                f"tags ({CLUSTER_TAG}={cluster}); nsgsync does not take it over",
                hint="delete or rename it, or name it in azure.nsgName to keep nsgsync's "
                "rules in it",
            )
        if r.type == RULE:
            nsg = r.ident.parts[0]
            if r.body["name"].lower() in names.get(nsg, frozenset()):
                raise ProviderError(
                    f"NSG {nsg} has a rule named {r.body['name']} outside nsgsync's "
                    "priority band; nsgsync does not overwrite it",
                    hint="rename that rule (the prefix nsgsync- marks nsgsync's rules)",
                )
    wanted = Counter(r.ident.parts[0] for r in desired if r.type == RULE)
    for nsg, n in sorted(wanted.items()):
        if n + held.count(nsg) > MAX_RULES_PER_NSG:
            raise LimitError(
                f"NSG {nsg} would hold {n} rules of nsgsync's and {held.count(nsg)} "
                f"others, over Azure's limit of {MAX_RULES_PER_NSG}; nothing was applied",
                hint="give the segments fewer, larger CIDRs, or remove rules nsgsync does "
                "not own from the NSG",
            )
    current_rules = [r for r in actual if r.type == RULE]
    rules = adopt_names([r for r in desired if r.type == RULE], current_rules)
    occupied: dict[Group, set[int]] = defaultdict(set)
    for r in current_rules:
        occupied[group_of(r)].add(int(r.body["properties"]["priority"]))
    current = {r.key: int(r.body["properties"]["priority"]) for r in current_rules}
    foreign: dict[Group, set[int]] = defaultdict(set)
    for g, p in held.priorities:
        foreign[g] = set(p)
    placed = assign(
        rules, config.priority_band, foreign=foreign, occupied=occupied, current=current
    )
    return [r for r in desired if r.type != RULE] + placed
