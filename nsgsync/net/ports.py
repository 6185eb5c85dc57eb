"""Sets of ports 1-65535 as sorted, disjoint inclusive ranges."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nsgsync.net.intervals import normalize

MIN_PORT = 1
MAX_PORT = 65535


@dataclass(frozen=True, slots=True)
class PortSet:
    ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, ranges: Iterable[tuple[int, int]]) -> PortSet:
        return cls(normalize(ranges))

    @classmethod
    def all(cls) -> PortSet:
        return cls(((MIN_PORT, MAX_PORT),))

    def is_all(self) -> bool:
        return self.ranges == ((MIN_PORT, MAX_PORT),)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __or__(self, other: PortSet) -> PortSet:
        return PortSet.of(self.ranges + other.ranges)

    def contains(self, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self.ranges)

    def issubset(self, other: PortSet) -> bool:
        return all(
            any(olo <= lo and hi <= ohi for olo, ohi in other.ranges) for lo, hi in self.ranges
        )
