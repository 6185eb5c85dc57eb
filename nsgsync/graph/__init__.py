"""The segment-to-segment connectivity a set of rules allows, for `nsgsync graph`.

Rows are sources, columns destinations; a cell is what some pod of the source may open
to some pod of the destination: the source's egress and the destination's ingress both
let it through. Besides the segments, three endpoints stand for addresses outside every
segment (the nodes, pods in no segment, outside the cluster): nsgsync writes no rules for
them, so only the segment's side decides.

A graph lists the cells that are allowed and not implied; a pair not listed is *open*
when the source's egress and the destination's ingress are both open, else *denied*. So a
4,000-segment cluster, most of it open or most of it isolated, stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nsgsync.firewall import (
    ALL,
    Endpoint,
    Endpoints,
    Ports,
    Reach,
    Reached,
    Tables,
    reach,
)
from nsgsync.intent import API_VERSION, Finding

PAIRS_NOTE = (
    "a pair of endpoints not listed in cells is open when the source's egressOpen and the "
    "destination's ingressOpen are both true, else denied; pairs of two non-segments "
    "(nodes, unsegmented, outside) are not nsgsync's to decide"
)


@dataclass(frozen=True)
class Cell:
    src: int
    dst: int
    ports: Ports
    policies: tuple[str, ...]
    egress: tuple[str, ...]
    ingress: tuple[str, ...]

    @property
    def state(self) -> str:
        return "open" if self.ports.is_all() else "restricted"


@dataclass(frozen=True)
class Graph:
    cluster: str
    rules: str  # "intent", or the provider whose rendered rules were evaluated
    endpoints: tuple[Endpoint, ...]
    egress_open: tuple[bool, ...]
    ingress_open: tuple[bool, ...]
    cells: tuple[Cell, ...]
    findings: tuple[Finding, ...]

    def segment(self, index: int) -> bool:
        return self.endpoints[index].kind == "segment"

    def cell(self, src: str, dst: str) -> tuple[str, Cell | None]:
        """The state of a pair (open, restricted, denied, n/a) and its listed cell."""
        names = {e.name: i for i, e in enumerate(self.endpoints)}
        a, b = names[src], names[dst]
        for c in self.cells:
            if c.src == a and c.dst == b:
                return c.state, c
        if not self.segment(a) and not self.segment(b):
            return "n/a", None
        return ("open" if self.egress_open[a] and self.ingress_open[b] else "denied"), None

    def only(self, groups: Sequence[str]) -> Graph:
        """The part of the graph with a source or destination in one of `groups`."""
        wanted = set(groups)
        keep = {i for i, e in enumerate(self.endpoints) if e.group in wanted}
        cells = [c for c in self.cells if c.src in keep or c.dst in keep]
        used = sorted(keep | {c.src for c in cells} | {c.dst for c in cells})
        renumber = {old: new for new, old in enumerate(used)}
        return Graph(
            self.cluster,
            self.rules,
            tuple(self.endpoints[i] for i in used),
            tuple(self.egress_open[i] for i in used),
            tuple(self.ingress_open[i] for i in used),
            tuple(c.__class__(renumber[c.src], renumber[c.dst], *_tail(c)) for c in cells),
            tuple(
                f
                for f in self.findings
                if not f.concerns() or set(f.concerns()) & {self.endpoints[i].name for i in used}
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        by_segment: dict[str, list[int]] = {}
        for i, f in enumerate(self.findings):
            for name in f.concerns():
                by_segment.setdefault(name, []).append(i)
        return {
            "apiVersion": API_VERSION,
            "kind": "Graph",
            "cluster": self.cluster,
            "rules": self.rules,
            "note": PAIRS_NOTE,
            "endpoints": [
                {
                    "name": e.name,
                    "group": e.group,
                    "kind": e.kind,
                    "cidrs": e.addresses.cidrs() if e.kind != "outside" else [],
                    "egressOpen": self.egress_open[i],
                    "ingressOpen": self.ingress_open[i],
                    "findings": by_segment.get(e.name, []),
                }
                for i, e in enumerate(self.endpoints)
            ],
            "cells": [
                {
                    "from": self.endpoints[c.src].name,
                    "to": self.endpoints[c.dst].name,
                    "state": c.state,
                    "ports": c.ports.to_dict(),
                    "text": c.ports.text(),
                    "policies": list(c.policies),
                    "egress": list(c.egress),
                    "ingress": list(c.ingress),
                }
                for c in self.cells
            ],
            "findings": [f.model_dump(exclude_none=True, mode="json") for f in self.findings],
        }


def _tail(c: Cell) -> tuple[Ports, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    return c.ports, c.policies, c.egress, c.ingress


def _names(r: Reached | None, default_name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if r is None:
        return (), ()
    names = [e.name for e in r.entries] + ([default_name] if r.default_used else [])
    policies = sorted({p for e in r.entries for p in e.policies})
    return tuple(dict.fromkeys(names)), tuple(policies)


def build_graph(
    *,
    cluster: str,
    rules: str,
    endpoints: Endpoints,
    tables: Tables,
    findings: Sequence[Finding] = (),
) -> Graph:
    items = endpoints.items
    n = len(items)
    egress: list[Reach | None] = [None] * n
    ingress: list[Reach | None] = [None] * n
    defaults: dict[tuple[int, str], str] = {}
    for i, e in enumerate(items):
        if e.kind != "segment":
            continue
        for direction, store in (("egress", egress), ("ingress", ingress)):
            table = tables.get((e.name, direction))
            if table is not None:
                store[i] = reach(table, e.addresses, endpoints)
                defaults[(i, direction)] = table.default_name
    e_open = [r is None or r.open for r in egress]
    i_open = [r is None or r.open for r in ingress]
    # Candidate pairs without visiting all n*n: from a source whose egress denies by
    # default only its explicit peers; else the destinations that list it, or admit
    # something by default.
    rev_ingress: list[list[int]] = [[] for _ in range(n)]
    wide_closed: list[int] = []  # ingress admits something by default, not everything
    wide_open: list[int] = []
    for b, r in enumerate(ingress):
        if r is None or r.default.ports:
            (wide_open if i_open[b] else wide_closed).append(b)
        if r is not None:
            for a in r.explicit:
                rev_ingress[a].append(b)
    families = [e.addresses.families() for e in items]
    cells: list[Cell] = []
    for a in range(n):
        out = egress[a]
        if out is not None and not out.default.ports:
            candidates: Sequence[int] = [b for b, r in out.explicit.items() if r.ports]
        else:
            pool = set(rev_ingress[a]) | set(wide_closed)
            if not e_open[a]:
                pool |= set(wide_open)
            candidates = sorted(pool)
        for b in candidates:
            if items[a].kind != "segment" and items[b].kind != "segment":
                continue
            if (e_open[a] and i_open[b]) or not families[a] & families[b]:
                continue
            went = out.to(b) if out is not None else None
            into = ingress[b]
            came = into.to(a) if into is not None else None
            ports = (went.ports if went is not None else ALL) & (
                came.ports if came is not None else ALL
            )
            if not ports:
                continue
            e_names, e_pol = _names(went, defaults.get((a, "egress"), ""))
            i_names, i_pol = _names(came, defaults.get((b, "ingress"), ""))
            policies = tuple(sorted(set(e_pol) | set(i_pol)))
            cells.append(Cell(a, b, ports, policies, e_names, i_names))
    cells.sort(key=lambda c: (c.src, c.dst))
    return Graph(
        cluster,
        rules,
        items,
        tuple(e_open),
        tuple(i_open),
        tuple(cells),
        tuple(sorted(findings, key=lambda f: f.sort_key())),
    )
