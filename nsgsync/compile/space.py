"""Sets of (peer address, protocol, port): what a rule may or surely matches, per segment.

The ordered-policy compiler (docs/semantics.md#ordered-policies) moves such sets between
stages: what reaches a stage, what it allows, what it hands on. A `Space` is, per protocol,
a function from addresses to port sets, held as disjoint address sets each with its port
set (one entry per distinct port set), so equal spaces compare equal.

`OTHER` stands for the protocols without ports (ICMP and the rest) that a rule naming no
protocol matches; the Intent can only say those as ANY, so the compiler widens them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nsgsync.net import AddressSet, PortSet
from nsgsync.net.intervals import intersect, subtract

TCP = "TCP"
UDP = "UDP"
SCTP = "SCTP"
OTHER = "OTHER"
PORTED = (TCP, UDP, SCTP)
PROTOCOLS = (*PORTED, OTHER)

# protocol -> ((addresses, ports), ...): addresses disjoint, ports non-empty and distinct.
_Pieces = tuple[tuple[AddressSet, PortSet], ...]
_ALL_PORTS = PortSet.all()
_NO_PORTS = PortSet()


def _pieces(pairs: Iterable[tuple[AddressSet, PortSet]]) -> _Pieces:
    by_ports: dict[tuple[tuple[int, int], ...], list[AddressSet]] = {}
    for addresses, ports in pairs:
        if addresses and ports:
            by_ports.setdefault(ports.ranges, []).append(addresses)
    return tuple(
        sorted(
            ((AddressSet.union_all(a), PortSet(r)) for r, a in by_ports.items()),
            key=lambda p: p[1].ranges,
        )
    )


def _combine(a: _Pieces, b: _Pieces, op: Callable[[PortSet, PortSet], PortSet]) -> _Pieces:
    if a == b:
        # The common case (what reaches a stage against a rule of the same reach): pieces
        # are canonical, so equal pieces combine piece by piece.
        return _pieces((x, op(p, p)) for x, p in a)
    if not b:
        return _pieces((x, op(p, _NO_PORTS)) for x, p in a)
    if not a:
        return _pieces((y, op(_NO_PORTS, q)) for y, q in b)
    out: list[tuple[AddressSet, PortSet]] = []
    dom_a = AddressSet.union_all(x for x, _ in a) if a else AddressSet()
    dom_b = AddressSet.union_all(x for x, _ in b) if b else AddressSet()
    for x, p in a:
        for y, q in b:
            both = x & y
            if both:
                out.append((both, op(p, q)))
        only = x - dom_b
        if only:
            out.append((only, op(p, _NO_PORTS)))
    for y, q in b:
        only = y - dom_a
        if only:
            out.append((only, op(_NO_PORTS, q)))
    return _pieces(out)


def _union(p: PortSet, q: PortSet) -> PortSet:
    return p | q


def _inter(p: PortSet, q: PortSet) -> PortSet:
    return PortSet(intersect(p.ranges, q.ranges))


def _minus(p: PortSet, q: PortSet) -> PortSet:
    return PortSet(subtract(p.ranges, q.ranges))


@dataclass(frozen=True)
class Ports:
    """A set of (protocol, port), without addresses: what a rule's ports name."""

    by_protocol: tuple[tuple[str, PortSet], ...] = ()

    @classmethod
    def of(cls, protocols: Iterable[str], ports: PortSet | None = None) -> Ports:
        span = _ALL_PORTS if ports is None else ports
        return cls(
            tuple((p, _ALL_PORTS if p == OTHER else span) for p in PROTOCOLS if p in protocols)
        )

    @classmethod
    def everything(cls) -> Ports:
        return cls.of(PROTOCOLS)

    def get(self, protocol: str) -> PortSet:
        for p, ports in self.by_protocol:
            if p == protocol:
                return ports
        return _NO_PORTS

    def _op(self, other: Ports, op: Callable[[PortSet, PortSet], PortSet]) -> Ports:
        out = []
        for p in PROTOCOLS:
            ports = op(self.get(p), other.get(p))
            if ports:
                out.append((p, ports))
        return Ports(tuple(out))

    def __or__(self, other: Ports) -> Ports:
        return self._op(other, _union)

    def __sub__(self, other: Ports) -> Ports:
        return self._op(other, _minus)


@dataclass(frozen=True)
class Space:
    by_protocol: tuple[tuple[str, _Pieces], ...] = ()

    @classmethod
    def of(cls, addresses: AddressSet, ports: Ports) -> Space:
        if not addresses:
            return cls()
        return cls(tuple((p, ((addresses, span),)) for p, span in ports.by_protocol if span))

    def get(self, protocol: str) -> _Pieces:
        for p, pieces in self.by_protocol:
            if p == protocol:
                return pieces
        return ()

    def __bool__(self) -> bool:
        return bool(self.by_protocol)

    def _op(self, other: Space, op: Callable[[PortSet, PortSet], PortSet]) -> Space:
        out = []
        for p in PROTOCOLS:
            pieces = _combine(self.get(p), other.get(p), op)
            if pieces:
                out.append((p, pieces))
        return Space(tuple(out))

    def __or__(self, other: Space) -> Space:
        if not other:
            return self
        if not self:
            return other
        return self._op(other, _union)

    def __and__(self, other: Space) -> Space:
        if not self or not other:
            return Space()
        return self._op(other, _inter)

    def __sub__(self, other: Space) -> Space:
        if not self or not other:
            return self
        return self._op(other, _minus)

    def issubset(self, other: Space) -> bool:
        return not (self - other)

    def addresses(self, protocol: str) -> AddressSet:
        pieces = self.get(protocol)
        return AddressSet.union_all(a for a, _ in pieces) if pieces else AddressSet()
