"""The tests' own address oracle (tests/oracle.py) agrees with `ipaddress`."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.oracle import Addrs

v4 = st.builds(
    lambda a, n: str(ipaddress.ip_network((a, n), strict=False)),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
v6 = st.builds(
    lambda a, n: str(ipaddress.ip_network((a, n), strict=False)),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)
cidrs = st.lists(st.one_of(v4, v6), max_size=6)
ips = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i))),
    st.integers(0, 2**128 - 1).map(lambda i: str(ipaddress.IPv6Address(i))),
)


def inside(ip: str, nets: list[str]) -> bool:
    addr = ipaddress.ip_address(ip)
    return any(addr.version == n.version and addr in n for n in map(ipaddress.ip_network, nets))


@settings(max_examples=400)
@given(cidrs, st.lists(ips, max_size=8))
def test_membership_matches_ipaddress(nets: list[str], probes: list[str]) -> None:
    oracle = Addrs.of(nets)
    for ip in probes:
        assert oracle.contains(ip) == inside(ip, nets)
    for net in nets:  # the edges of every network, where an off-by-one would show
        n = ipaddress.ip_network(net)
        for edge in (n.network_address, n.broadcast_address):
            assert oracle.contains(str(edge))


def covered(net: str, nets: list[str]) -> bool:
    """`net` lies within the union of `nets`: adding it leaves the union as it was."""
    n = ipaddress.ip_network(net)
    same: list[Any] = [m for m in map(ipaddress.ip_network, nets) if m.version == n.version]
    return list(ipaddress.collapse_addresses([*same, n])) == list(
        ipaddress.collapse_addresses(same)
    )


@settings(max_examples=400)
@given(cidrs, cidrs)
def test_subset_matches_ipaddress(small: list[str], big: list[str]) -> None:
    expected = all(covered(n, big) for n in small)
    assert Addrs.of(small).issubset(Addrs.of(big)) == expected
