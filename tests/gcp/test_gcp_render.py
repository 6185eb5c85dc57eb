"""Rendering the Intent into firewall rules: names, priorities, splits and the config block."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from nsgsync.compile import compile_intent
from nsgsync.errors import TopologyError
from nsgsync.intent import Direction, DirectionIntent, Intent, IntentProtocol, Rule, SegmentIntent
from nsgsync.model import Topology
from nsgsync.plan import Resource
from nsgsync.provider import Snapshot, configure
from nsgsync.sources import load_manifests, load_topology
from nsgsync_gcp.render import MAX_RANGES, Identity
from tests.gcp.conftest import gcp_block, with_gcp

EXAMPLE = Path(__file__).parent.parent.parent / "config/example"
NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def render(intent: Intent, topology: Topology) -> list[Resource]:
    return configure(topology).desired(intent, Snapshot())[0]


def example(**gcp: Any) -> tuple[Topology, Intent]:
    topology = with_gcp(load_topology(EXAMPLE / "topology.yaml"), **gcp)
    return topology, compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))


def one_segment(ingress: DirectionIntent, cidrs: tuple[str, ...] = ("10.0.1.0/24",)) -> Intent:
    open_ = DirectionIntent(isolated=False)
    return Intent(
        cluster="c",
        segments=(SegmentIntent(name="web", cidrs=cidrs, ingress=ingress, egress=open_),),
    )


def topology_for(cidrs: list[str], **gcp: Any) -> Topology:
    return Topology.model_validate(
        {
            "apiVersion": "nsgsync.io/v1alpha1",
            "kind": "Topology",
            "cluster": "c",
            "provider": "gcp",
            "podCIDRs": ["10.0.0.0/8", "fd00::/16"],
            "segments": [{"name": "web", "namespace": "web", "cidrs": cidrs}],
            "gcp": gcp_block(**gcp),
        }
    )


def test_names_are_valid_stable_and_unique() -> None:
    topology, intent = example()
    first, second = render(intent, topology), render(intent, topology)
    assert [r.body for r in first] == [r.body for r in second]
    names = [r.key for r in first]
    assert len(set(names)) == len(names)
    for r in first:
        assert r.key == r.body["name"]
        assert NAME.match(r.key) and len(r.key) <= 63
        assert r.key.startswith(f"nsgsync-demo-eu-1-{r.segment}-")


def test_long_cluster_and_segment_names_are_cut_to_63_keeping_the_cluster() -> None:
    cluster, segment = "c" * 40, "s" * 40
    names = set()
    for direction in Direction:
        for port in (80, 81):
            name = Identity(cluster, segment, direction, "allow", "tcp", ((port, port),), 4).name()
            assert len(name) <= 63
            assert NAME.match(name)
            assert name.startswith(f"nsgsync-{cluster}-")
            names.add(name)
    assert len(names) == 4


def test_allows_at_band_start_denies_at_band_end() -> None:
    topology, intent = example(priorityBand=[200, 700])
    rules = render(intent, topology)
    assert {r.body["priority"] for r in rules if "allowed" in r.body} == {200}
    assert {r.body["priority"] for r in rules if "denied" in r.body} == {700}
    # One deny per isolated direction of each segment, none for an open one.
    isolated = sum(1 for s in intent.segments for d in (s.ingress, s.egress) if d.isolated)
    assert sum(1 for r in rules if "denied" in r.body) == isolated


def test_open_direction_is_an_explicit_allow_all() -> None:
    intent = one_segment(DirectionIntent(isolated=False))
    rules = render(intent, topology_for(["10.0.1.0/24"]))
    by_direction = {r.body["direction"]: r.body for r in rules}
    assert by_direction["INGRESS"]["sourceRanges"] == ["0.0.0.0/0"]
    assert by_direction["INGRESS"]["destinationRanges"] == ["10.0.1.0/24"]
    assert by_direction["EGRESS"]["sourceRanges"] == ["10.0.1.0/24"]
    assert by_direction["EGRESS"]["destinationRanges"] == ["0.0.0.0/0"]
    assert all(b["allowed"] == [{"IPProtocol": "all"}] for b in by_direction.values())


def test_protocols_and_ports() -> None:
    rules = (
        Rule(
            peers=("10.2.0.0/16",),
            protocol=IntentProtocol.TCP,
            ports=((80, 80), (8000, 8080)),
            policies=("a/b",),
        ),
        Rule(peers=("10.2.0.0/16",), protocol=IntentProtocol.SCTP, ports=((7, 7),), policies=()),
        Rule(peers=("10.2.0.0/16",), protocol=IntentProtocol.UDP, ports=None, policies=()),
        Rule(peers=("10.3.0.0/16",), protocol=IntentProtocol.ANY, ports=None, policies=()),
    )
    intent = one_segment(DirectionIntent(isolated=True, rules=rules))
    bodies = [r.body for r in render(intent, topology_for(["10.0.1.0/24"]))]
    entries = sorted(
        (b["allowed"][0]["IPProtocol"], tuple(b["allowed"][0].get("ports", ())))
        for b in bodies
        if b["direction"] == "INGRESS" and "allowed" in b
    )
    assert entries == [("all", ()), ("sctp", ("7",)), ("tcp", ("80", "8000-8080")), ("udp", ())]


def test_ranges_split_at_5000_per_side_and_one_family_per_rule() -> None:
    # Non-adjacent /32s: nothing merges them.
    peers = tuple(f"10.{8 + i // 32768}.{(i // 128) % 256}.{(i % 128) * 2}/32" for i in range(5001))
    rule = Rule(
        peers=(*peers, "fd00:9::/64"), protocol=IntentProtocol.TCP, ports=((443, 443),), policies=()
    )
    intent = one_segment(
        DirectionIntent(isolated=True, rules=(rule,)), cidrs=("10.0.1.0/24", "fd00:1::/64")
    )
    rules = [
        r.body
        for r in render(intent, topology_for(["10.0.1.0/24", "fd00:1::/64"]))
        if r.body["direction"] == "INGRESS" and "allowed" in r.body
    ]
    sizes = sorted(len(b["sourceRanges"]) for b in rules)
    assert sizes == [1, 1, MAX_RANGES]  # v4 split into 5000 + 1, v6 its own rule
    for b in rules:
        families = {":" in c for c in b["sourceRanges"] + b["destinationRanges"]}
        assert len(families) == 1
    assert len({b["name"] for b in rules}) == 3


def test_target_service_accounts_and_a_segment_on_its_own_pool() -> None:
    raw = load_topology(EXAMPLE / "topology.yaml")
    segments = [
        s.model_copy(update={"gcp": {"targetTags": ["db-pool"]}}) if s.name == "shop-db" else s
        for s in raw.segments
    ]
    block = {
        "project": "nsgsync-test",
        "network": "https://www.googleapis.com/compute/v1/projects/nsgsync-test/global/networks/shared",
        "targetServiceAccounts": ["nodes@nsgsync-test.iam.gserviceaccount.com"],
    }
    topology = raw.model_copy(update={"provider": "gcp", "gcp": block, "segments": segments})
    intent = compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))
    for r in render(intent, topology):
        assert r.body["network"] == "projects/nsgsync-test/global/networks/shared"
        if r.segment == "shop-db":
            assert r.body["targetTags"] == ["db-pool"] and "targetServiceAccounts" not in r.body
        else:
            assert r.body["targetServiceAccounts"] == ["nodes@nsgsync-test.iam.gserviceaccount.com"]


@pytest.mark.parametrize(
    ("block", "field", "text"),
    [
        ({"network": "v"}, "gcp.project", "required"),
        ({"project": "nsgsync-test", "network": "v"}, "gcp", "exactly one of targetTags"),
        (gcp_block(targetServiceAccounts=["a@b.c"]), "gcp", "exactly one of targetTags"),
        (gcp_block(priorityBand=[100, 1000]), "gcp.priorityBand", "GKE"),
        (gcp_block(priorityBand=[500, 400]), "gcp.priorityBand", "low < high"),
        (gcp_block(targetTags=["Bad_Tag"]), "gcp.targetTags", "lowercase"),
        (gcp_block(network="a/b"), "gcp.network", "VPC name"),
        (gcp_block(network="projects/host-1/global/networks/v"), "gcp", "host project"),
        (gcp_block(maxRules=0), "gcp.maxRules", "greater than"),
        (gcp_block(region="europe-west1"), "gcp.region", "unknown key"),
        (gcp_block(maxRule=9), "gcp.maxRule", 'did you mean "maxRules"'),
    ],
)
def test_bad_gcp_block_is_a_topology_error(block: dict[str, Any], field: str, text: str) -> None:
    topology = load_topology(EXAMPLE / "topology.yaml").model_copy(
        update={"provider": "gcp", "gcp": block}
    )
    with pytest.raises(TopologyError) as info:
        configure(topology)
    assert info.value.field == field
    assert text in str(info.value)
