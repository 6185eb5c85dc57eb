"""Decision tables: a segment's rules for one direction, evaluated the way a firewall does.

The Intent and each cloud's rendered rules become the same shape: per segment and
direction, entries in priority order (a deny before an allow of the same priority), the
first that matches a connection decides, and a default decides what none matches. Two
questions are asked of a table: the rule that decides one connection (`decide`, for
`explain`), and what it lets through to every other endpoint (`reach`, for `graph`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from nsgsync.firewall.ports import ALL, NONE, Ports
from nsgsync.net import AddressSet


@dataclass(frozen=True)
class Entry:
    """One rule: on the segment's addresses in `own` (None: all of them), to or from
    `peers`, the `ports` it matches, allowed or denied."""

    priority: int
    allow: bool
    peers: AddressSet
    ports: Ports
    name: str
    policies: tuple[str, ...] = ()
    own: AddressSet | None = None


@dataclass(frozen=True)
class Table:
    segment: str
    direction: str  # "ingress" or "egress"
    entries: tuple[Entry, ...]
    default_allow: bool
    default_name: str

    @staticmethod
    def ordered(entries: Sequence[Entry]) -> tuple[Entry, ...]:
        # A deny wins a tie of priorities (GCP's rule; elsewhere priorities are unique).
        return tuple(sorted(entries, key=lambda e: (e.priority, e.allow, e.name)))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    entry: Entry | None  # None: the table's default decided

    def rule_name(self, table: Table) -> str:
        return self.entry.name if self.entry is not None else table.default_name


def decide(table: Table, *, own: str, peer: str, protocol: str, port: int) -> Decision:
    """The first entry matching a connection between `own` (the segment's side) and `peer`."""
    for e in table.entries:
        if e.own is not None and not e.own.contains_ip(own):
            continue
        if e.peers.contains_ip(peer) and e.ports.allows(protocol, port):
            return Decision(e.allow, e)
    return Decision(table.default_allow, None)


@dataclass(frozen=True)
class Endpoint:
    """A segment, or a place outside every segment: nodes, unsegmented pods, outside."""

    name: str
    group: str
    kind: str  # segment | nodes | unsegmented | outside
    addresses: AddressSet


class Endpoints:
    """Every endpoint, and which of them an address set touches, by bisection."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self.items = tuple(endpoints)
        self.index = {e.name: i for i, e in enumerate(self.items)}
        inside = AddressSet.union_all(e.addresses for e in self.items if e.kind != "outside")
        self.inside = inside
        self.outside = next((i for i, e in enumerate(self.items) if e.kind == "outside"), None)
        self._spans: dict[int, list[tuple[int, int, int]]] = {4: [], 6: []}
        for i, e in enumerate(self.items):
            if e.kind == "outside":
                continue
            self._spans[4] += [(lo, hi, i) for lo, hi in e.addresses.v4]
            self._spans[6] += [(lo, hi, i) for lo, hi in e.addresses.v6]
        for spans in self._spans.values():
            spans.sort()
        self._starts = {f: [s[0] for s in spans] for f, spans in self._spans.items()}
        # The longest span bounds how far back an overlapping span can start.
        self._width = {
            f: max((hi - lo for lo, hi, _ in s), default=0) for f, s in self._spans.items()
        }

    def touched(self, addresses: AddressSet, within: AddressSet) -> dict[int, bool]:
        """Endpoint index -> whether `addresses` holds all of it (else only part), both
        seen `within` an address space (the families a segment can talk to)."""
        addresses = addresses & within
        out: dict[int, bool] = {}
        for family, intervals in ((4, addresses.v4), (6, addresses.v6)):
            spans, starts = self._spans[family], self._starts[family]
            for lo, hi in intervals:
                i = bisect.bisect_left(starts, lo - self._width[family])
                while i < len(spans) and spans[i][0] <= hi:
                    _, s_hi, idx = spans[i]
                    if s_hi >= lo:
                        out.setdefault(idx, False)
                    i += 1
        for idx in out:
            out[idx] = (self.items[idx].addresses & within).issubset(addresses)
        if self.outside is not None:
            rest = addresses - self.inside
            if rest:
                out[self.outside] = (self.items[self.outside].addresses & within).issubset(rest)
        return out


@dataclass
class Reached:
    ports: Ports = NONE
    entries: list[Entry] = field(default_factory=list)
    default_used: bool = False


@dataclass(frozen=True)
class Reach:
    """What a table lets through to each endpoint: `explicit` ones, `default` for the rest."""

    default: Reached
    explicit: dict[int, Reached]

    def to(self, index: int) -> Reached:
        return self.explicit.get(index, self.default)

    @property
    def open(self) -> bool:
        return self.default.ports.is_all() and all(r.ports.is_all() for r in self.explicit.values())


def reach(table: Table, own: AddressSet, endpoints: Endpoints) -> Reach:
    """Per endpoint, the ports some address of `own` may use with some address of it.

    An entry that covers only part of the segment or of the endpoint allows what it
    matches (some pair of addresses may use it) but decides nothing for the rest: the
    answer is the widest that any pair of addresses gets, never narrower.
    """
    everything = len(endpoints.items)
    # An IPv4 segment talks to IPv4 addresses only: the other family is no peer of it.
    within = AddressSet.everything(own.families())
    inside = endpoints.inside & within
    outside = (
        endpoints.items[endpoints.outside].addresses & within
        if endpoints.outside is not None
        else AddressSet()
    )
    touched: list[tuple[Entry, bool, dict[int, bool] | None]] = []
    explicit: set[int] = set()
    for e in table.entries:
        if e.own is not None and not e.own.overlaps(own):
            continue
        own_full = e.own is None or own.issubset(e.own)
        if inside.issubset(e.peers):
            # Universal: it touches every endpoint, wholly except perhaps outside.
            touched.append((e, own_full, None))
            if endpoints.outside is not None:
                explicit.add(endpoints.outside)
            continue
        hits = endpoints.touched(e.peers, within)
        if len(hits) == everything and all(hits.values()):
            touched.append((e, own_full, None))
            continue
        touched.append((e, own_full, hits))
        explicit.update(hits)

    def walk(index: int | None) -> Reached:
        remaining = ALL
        out = Reached()
        for e, own_full, hits in touched:
            if hits is None:
                full = True
                if index is not None and index == endpoints.outside:
                    full = outside.issubset(e.peers)
            elif index is None or index not in hits:
                continue
            else:
                full = hits[index]
            matched = e.ports & remaining
            if not matched:
                continue
            if e.allow:
                out.ports = out.ports | matched
                out.entries.append(e)
            if own_full and full:
                remaining = remaining - matched
        if table.default_allow and remaining:
            out.ports = out.ports | remaining
            out.default_used = True
        return out

    return Reach(walk(None), {i: walk(i) for i in sorted(explicit)})
