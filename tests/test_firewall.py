"""Decision tables: priorities, ties, and what a segment reaches when rules cover part."""

from __future__ import annotations

from nsgsync.firewall import Endpoint, Endpoints, Entry, Ports, Table, decide, reach
from nsgsync.net import AddressSet

WEB = AddressSet.of("10.0.1.0/24")
DB = AddressSet.of("10.0.2.0/24")
ENDPOINTS = Endpoints(
    [
        Endpoint("web", "shop", "segment", WEB),
        Endpoint("db", "shop", "segment", DB),
        Endpoint("outside", "(no segment)", "outside", AddressSet.everything() - WEB - DB),
    ]
)
TCP_5432 = Ports.of("TCP", [(5432, 5432)])


def table(*entries: Entry, default_allow: bool = False) -> Table:
    return Table("db", "ingress", Table.ordered(entries), default_allow, "default")


def test_lower_priority_number_decides_and_a_deny_wins_a_tie() -> None:
    t = table(
        Entry(200, True, WEB, TCP_5432, "allow-200"),
        Entry(100, True, WEB, TCP_5432, "allow-100"),
        Entry(100, False, WEB, TCP_5432, "deny-100"),
    )
    d = decide(t, own="10.0.2.5", peer="10.0.1.5", protocol="TCP", port=5432)
    assert (d.allowed, d.rule_name(t)) == (False, "deny-100")
    d = decide(t, own="10.0.2.5", peer="10.0.1.5", protocol="TCP", port=5433)
    assert (d.allowed, d.rule_name(t)) == (False, "default")


def test_a_rule_for_part_of_a_segment_allows_but_never_narrows() -> None:
    half = AddressSet.of("10.0.1.0/25")
    t = table(
        Entry(100, False, half, Ports.everything(), "deny half of web"),
        Entry(200, True, WEB, TCP_5432, "allow web"),
    )
    # Some pod of web (the other half) still gets in: the cell must show it.
    assert reach(t, DB, ENDPOINTS).to(0).ports == TCP_5432
    t = table(
        Entry(100, False, WEB, Ports.everything(), "deny web"),
        Entry(200, True, WEB, TCP_5432, "allow web"),
    )
    assert not reach(t, DB, ENDPOINTS).to(0).ports


def test_the_default_fills_what_no_rule_decides() -> None:
    t = table(Entry(100, False, WEB, TCP_5432, "deny web 5432"), default_allow=True)
    r = reach(t, DB, ENDPOINTS)
    assert r.to(0).ports == Ports.everything() - TCP_5432
    assert r.to(0).default_used
    assert r.to(2).ports.is_all()  # outside: untouched by the deny
    assert not r.open
