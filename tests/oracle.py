"""A small address-set oracle for the tests' evaluators, independent of nsgsync.net.

The evaluators decide what a cloud's rules allow; they must not share code with what they
check (nsgsync's AddressSet renders the rules). This is a sorted list of inclusive integer
intervals per IP family, property-tested against `ipaddress` in
tests/test_engine_oracle.py.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Interval = tuple[int, int, int]  # (family, first, last)


def _interval(cidr: str) -> Interval:
    net = ipaddress.ip_network(cidr, strict=False)
    return (net.version, int(net.network_address), int(net.broadcast_address))


@dataclass(frozen=True)
class Addrs:
    intervals: tuple[Interval, ...] = ()

    @classmethod
    def of(cls, cidrs: Iterable[str]) -> Addrs:
        merged: list[Interval] = []
        for fam, lo, hi in sorted(_interval(c) for c in cidrs):
            if merged and merged[-1][0] == fam and lo <= merged[-1][2] + 1:
                last = merged[-1]
                merged[-1] = (fam, last[1], max(last[2], hi))
            else:
                merged.append((fam, lo, hi))
        return cls(tuple(merged))

    def contains(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        value = int(addr)
        return any(f == addr.version and lo <= value <= hi for f, lo, hi in self.intervals)

    def issubset(self, other: Addrs) -> bool:
        return all(
            any(f == g and a <= lo and hi <= b for g, a, b in other.intervals)
            for f, lo, hi in self.intervals
        )
