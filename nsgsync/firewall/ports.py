"""What a firewall lets through between two addresses: ports per protocol.

TCP, UDP and SCTP carry ports 1-65535; OTHER stands for every protocol without ports
(ICMP, ESP, ...), which only an allow-all rule opens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nsgsync.net.intervals import Interval
from nsgsync.net.intervals import intersect as _intersect
from nsgsync.net.intervals import normalize as _normalize
from nsgsync.net.intervals import subtract as _subtract

PROTOCOLS = ("TCP", "UDP", "SCTP", "OTHER")
_UNIVERSE: dict[str, tuple[Interval, ...]] = {
    "TCP": ((1, 65535),),
    "UDP": ((1, 65535),),
    "SCTP": ((1, 65535),),
    "OTHER": ((0, 0),),
}


@dataclass(frozen=True, slots=True)
class Ports:
    """Per protocol, sorted disjoint inclusive port ranges; immutable and hashable."""

    tcp: tuple[Interval, ...] = ()
    udp: tuple[Interval, ...] = ()
    sctp: tuple[Interval, ...] = ()
    other: tuple[Interval, ...] = ()

    @classmethod
    def build(cls, parts: Mapping[str, Iterable[Interval]]) -> Ports:
        def get(name: str) -> tuple[Interval, ...]:
            return _intersect(_normalize(parts.get(name, ())), _UNIVERSE[name])

        return cls(get("TCP"), get("UDP"), get("SCTP"), get("OTHER"))

    @classmethod
    def everything(cls) -> Ports:
        return ALL

    @classmethod
    def of(cls, protocol: str, ranges: Iterable[Interval] | None) -> Ports:
        """`protocol` TCP, UDP, SCTP, ANY or OTHER; `ranges` None for every port."""
        if protocol == "ANY":
            if ranges is None:
                return ALL
            # Every protocol on those ports: the ones with ports; portless ones never match.
            spans = list(ranges)
            return cls.build({"TCP": spans, "UDP": spans, "SCTP": spans})
        if protocol == "OTHER" or ranges is None:
            return cls.build({protocol: _UNIVERSE[protocol]})
        return cls.build({protocol: ranges})

    def get(self, protocol: str) -> tuple[Interval, ...]:
        return {"TCP": self.tcp, "UDP": self.udp, "SCTP": self.sctp, "OTHER": self.other}[protocol]

    def _zip(self, other: Ports, op: Any) -> Ports:
        return Ports(
            op(self.tcp, other.tcp),
            op(self.udp, other.udp),
            op(self.sctp, other.sctp),
            op(self.other, other.other),
        )

    def __or__(self, other: Ports) -> Ports:
        return self._zip(other, lambda a, b: _normalize(a + b))

    def __and__(self, other: Ports) -> Ports:
        return self._zip(other, _intersect)

    def __sub__(self, other: Ports) -> Ports:
        return self._zip(other, _subtract)

    def __bool__(self) -> bool:
        return bool(self.tcp or self.udp or self.sctp or self.other)

    def is_all(self) -> bool:
        return self == ALL

    def allows(self, protocol: str, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self.get(protocol))

    def to_dict(self) -> dict[str, list[list[int]]]:
        return {p: [list(r) for r in self.get(p)] for p in PROTOCOLS if self.get(p)}

    def text(self) -> str:
        """`all`, `none`, or e.g. `TCP 80,443,8000-8080; UDP 53`."""
        if self.is_all():
            return "all"
        if not self:
            return "none"
        parts = []
        for p in PROTOCOLS[:3]:
            ranges = self.get(p)
            if ranges == _UNIVERSE[p]:
                parts.append(f"{p} all")
            elif ranges:
                parts.append(
                    f"{p} " + ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges)
                )
        if self.other:
            parts.append("other protocols")
        return "; ".join(parts)


ALL = Ports(*(_UNIVERSE[p] for p in PROTOCOLS))
NONE = Ports()
