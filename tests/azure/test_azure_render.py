"""Rendering, validation and priority allocation: pure, no ARM involved."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from nsgsync.cli.main import main
from nsgsync.errors import LimitError, TopologyError
from nsgsync.intent import (
    DirectionIntent,
    Intent,
    IntentProtocol,
    Rule,
    SegmentIntent,
    Source,
)
from nsgsync.model import Topology
from nsgsync.plan import Resource
from nsgsync.provider import Snapshot, configure
from nsgsync.sources.files import topology_from_mapping
from nsgsync_azure.priorities import assign, group_of, tier
from nsgsync_azure.render import check_limits, rule_body, rule_key

SUB = "00000000-0000-0000-0000-000000000000"
BASE = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v"
EXAMPLE = Path(__file__).parent.parent.parent / "config/example"


def topology(**changes: Any) -> Topology:
    doc: dict[str, Any] = {
        "apiVersion": "nsgsync.io/v1alpha1",
        "kind": "Topology",
        "cluster": "c1",
        "provider": "azure",
        "podCIDRs": ["10.0.0.0/16"],
        "nodeCIDRs": ["10.1.0.0/20"],
        "segments": [
            {
                "name": "db",
                "namespace": "shop",
                "cidrs": ["10.0.1.0/24"],
                "azure": {"subnetId": f"{BASE}/subnets/db"},
            },
            {
                "name": "web",
                "namespace": "web",
                "cidrs": ["10.0.2.0/24"],
                "azure": {"subnetId": f"{BASE}/subnets/web"},
            },
        ],
        "azure": {"subscriptionId": SUB, "resourceGroup": "rg", "location": "West Europe"},
    }
    for key, value in changes.items():
        if key == "segments":
            for i, seg in enumerate(value):
                doc["segments"][i] = {**doc["segments"][i], **seg}
        else:
            doc[key] = {**doc[key], **value} if isinstance(value, dict) else value
    return topology_from_mapping(doc)


def rule(peers: list[str], protocol: str = "TCP", ports: Any = ((5432, 5432),)) -> Rule:
    return Rule(
        peers=tuple(peers),
        protocol=IntentProtocol(protocol),
        ports=ports,
        policies=("shop/p",),
        sources=(Source(policy="shop/p", rule=0, peer=0),),
    )


def intent(db_in: DirectionIntent, db_out: DirectionIntent | None = None) -> Intent:
    open_ = DirectionIntent(isolated=False)
    return Intent(
        cluster="c1",
        segments=(
            SegmentIntent(name="db", cidrs=("10.0.1.0/24",), ingress=db_in, egress=db_out or open_),
            SegmentIntent(name="web", cidrs=("10.0.2.0/24",), ingress=open_, egress=open_),
        ),
    )


def render(top: Topology, it: Intent) -> dict[str, Resource]:
    desired, _ = configure(top).desired(it, Snapshot())
    return {r.key: r for r in desired}


def props(resources: dict[str, Resource], key: str) -> dict[str, Any]:
    return dict(resources[key].body["properties"])


def test_isolated_direction_gets_allows_then_a_deny_and_open_an_allow_all() -> None:
    isolated = DirectionIntent(isolated=True, rules=(rule(["10.0.2.0/24", "10.1.0.0/20"]),))
    out = render(topology(), intent(isolated))
    allow = next(
        r
        for k, r in out.items()
        if k.startswith("sr/nsgsync-c1-db/nsgsync-db-in-") and "default" not in k
    )
    p = allow.body["properties"]
    assert p["access"] == "Allow"
    assert p["protocol"] == "Tcp"
    assert p["sourceAddressPrefixes"] == ["10.0.2.0/24", "10.1.0.0/20"]
    assert p["destinationAddressPrefix"] == "10.0.1.0/24"
    assert p["destinationPortRange"] == "5432"
    assert p["description"] == "shop/p rule 0 peer 0"
    deny = props(out, "sr/nsgsync-c1-db/nsgsync-db-in-default")
    assert (deny["access"], deny["sourceAddressPrefix"], deny["destinationAddressPrefix"]) == (
        "Deny",
        "*",
        "10.0.1.0/24",
    )
    assert p["priority"] < deny["priority"]
    open_out = props(out, "sr/nsgsync-c1-db/nsgsync-db-out-default")
    assert (open_out["access"], open_out["sourceAddressPrefix"], open_out["protocol"]) == (
        "Allow",
        "10.0.1.0/24",
        "*",
    )
    catch_all = props(out, "sr/nsgsync-c1-db/nsgsync-in-unsegmented")
    assert catch_all["priority"] == 3999 > deny["priority"]
    nsg = out["nsg/nsgsync-c1-db"].body
    assert nsg == {
        "name": "nsgsync-c1-db",
        "location": "westeurope",
        "tags": {"nsgsync.io/cluster": "c1", "nsgsync.io/segment": "db"},
    }
    assoc = out["assoc/rg/v/db"].body
    assert assoc["properties"]["networkSecurityGroup"]["id"].endswith("/nsgsync-c1-db")


def test_sctp_becomes_any_protocol_with_a_finding() -> None:
    isolated = DirectionIntent(isolated=True, rules=(rule(["10.0.2.0/24"], "SCTP"),))
    desired, findings = configure(topology()).desired(intent(isolated), Snapshot())
    sctp = [
        r.body["properties"]
        for r in desired
        if r.type == "security-rule" and r.body["properties"]["direction"] == "Inbound"
    ]
    assert any(p["protocol"] == "*" and p["destinationPortRange"] == "*" for p in sctp)
    assert [f.code for f in findings] == ["azure-sctp-any-protocol"]


def test_more_than_4000_peers_split_into_several_rules() -> None:
    peers = [f"10.{100 + i // 256}.{i % 256}.0/25" for i in range(0, 9000, 2)]
    isolated = DirectionIntent(isolated=True, rules=(rule(peers),))
    out = render(topology(), intent(isolated))
    parts = [r for k, r in out.items() if "nsgsync-db-in-" in k and "default" not in k]
    sizes = sorted(len(r.body["properties"]["sourceAddressPrefixes"]) for r in parts)
    assert sizes == [500, 4000]
    assert {r.body["name"].rsplit("-", 1)[-1] for r in parts} >= {"1"}


def test_long_provenance_is_cut_to_140_characters() -> None:
    sources = tuple(Source(policy=f"shop/policy-{i}", rule=i, peer=0) for i in range(20))
    long = Rule(
        peers=("10.0.2.0/24",),
        protocol=IntentProtocol.TCP,
        ports=((80, 80),),
        policies=(),
        sources=sources,
    )
    out = render(topology(), intent(DirectionIntent(isolated=True, rules=(long,))))
    texts = [r.body["properties"]["description"] for r in out.values() if r.type == "security-rule"]
    assert max(len(t) for t in texts) == 140
    assert any(t.endswith("...") for t in texts)


def test_segments_on_one_subnet_share_one_nsg() -> None:
    shared = {"azure": {"subnetId": f"{BASE}/subnets/pods"}}
    out = render(topology(segments=[shared, shared]), intent(DirectionIntent(isolated=False)))
    assert [k for k in out if k.startswith("nsg/")] == ["nsg/nsgsync-c1-db"]
    assert [k for k in out if k.startswith("assoc/")] == ["assoc/rg/v/pods"]
    inbound = sorted(
        (r.body["properties"]["priority"], r.body["name"])
        for r in out.values()
        if r.type == "security-rule" and r.body["properties"]["direction"] == "Inbound"
    )
    assert inbound == [
        (3997, "nsgsync-web-in-default"),
        (3998, "nsgsync-db-in-default"),
        (3999, "nsgsync-in-unsegmented"),
    ]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"segments": [{"azure": {}}]}, "segments[0].azure"),
        ({"segments": [{"azure": {"subnetId": "subnet-1"}}]}, "segments[0].azure.subnetId"),
        (
            {
                "segments": [
                    {"azure": {"subnetId": BASE.replace(SUB, "1" * 8 + SUB[8:]) + "/subnets/x"}}
                ]
            },
            "segments[0].azure.subnetId",
        ),
        ({"azure": {"priorityBand": [50, 200]}}, "azure.priorityBand"),
        ({"azure": {"subscriptionId": "0000..."}}, "azure.subscriptionId"),
        ({"azure": {"vnet": "x"}}, "azure.vnet"),
        (
            {"segments": [{"azure": {"subnetId": f"{BASE}/subnets/web", "nsgName": "team"}}]},
            "segments[].azure",
        ),
    ],
)
def test_bad_azure_blocks_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(TopologyError) as info:
        configure(topology(**changes))
    assert info.value.field == field


def rule_resource(nsg: str, name: str, direction: str = "Inbound") -> Resource:
    body = rule_body(
        name,
        direction=direction,
        access="Allow",
        protocol="Tcp",
        sources=["10.0.0.0/24"],
        destinations=["10.0.1.0/24"],
        ports=["80"],
        text="t",
    )
    return Resource("security-rule", rule_key(nsg, name), body, "db")


def test_adding_rules_never_moves_existing_ones_even_in_a_crowded_band() -> None:
    band = (1000, 1040)
    rng = random.Random(7)
    names = [f"nsgsync-db-in-{i:010x}" for i in range(30)]
    # Every direction has its default rule from the start; allow rules come and stay.
    rules = [
        rule_resource("n", "nsgsync-db-in-default"),
        rule_resource("n", "nsgsync-in-unsegmented"),
    ]
    rules += [rule_resource("n", n) for n in names]
    have: dict[str, int] = {}
    placed: list[Resource] = []
    for step in range(2, len(rules)):
        wanted = rules[: step + 1]
        rng.shuffle(wanted)
        occupied = {group_of(rules[0]): set(have.values())}
        placed = assign(wanted, band, occupied=occupied, current=have)
        now = {r.key: int(r.body["properties"]["priority"]) for r in placed}
        assert {k: now[k] for k in have} == have
        assert len(set(now.values())) == len(now)
        have = now
    by_tier = sorted((tier(r), -int(r.body["properties"]["priority"])) for r in placed)
    assert [t for t, _ in by_tier] == [0, 1] + [2] * len(names)
    assert [-p for _, p in by_tier][:2] == [1040, 1039]
    assert max(-p for t, p in by_tier if t == 2) < 1039


def test_a_full_band_is_a_limit_error() -> None:
    rules = [rule_resource("n", f"nsgsync-db-in-{i:010x}") for i in range(4)]
    with pytest.raises(LimitError, match=r"NSG n needs 4 inbound rules .* 1000-1002"):
        assign(rules, (1000, 1002))
    with pytest.raises(LimitError, match="1 of them held by rules nsgsync does not own"):
        assign(rules[:3], (1000, 1002), foreign={("n", "Inbound"): {1001}})


def test_offline_plan_needs_no_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    doc = yaml.safe_load((EXAMPLE / "topology.yaml").read_text())
    doc["provider"] = "azure"
    for seg in doc["segments"]:
        seg["azure"] = {"subnetId": f"{BASE}/subnets/{seg['name']}"}
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(doc))
    argv = ["plan", "-f", str(EXAMPLE / "cluster"), "--topology", str(path), "--offline"]
    assert main([*argv, "-o", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["provider"] == "azure"
    assert {d["type"] for d in plan["desired"]} == {
        "network-security-group",
        "security-rule",
        "subnet-association",
    }
    rule = next(
        d["body"] for d in plan["desired"] if d["key"].startswith("sr/nsgsync-demo-eu-1-shop-db/")
    )
    assert set(rule) == {"name", "properties"}
    assert main([*argv, "--detailed-exitcode"]) == 2
    assert '+ network-security-group "nsg/nsgsync-demo-eu-1-shop-db"' in capsys.readouterr().out


def test_connect_without_a_client_builds_one_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.mgmt.network import NetworkManagementClient

    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    session = configure(topology()).session()
    assert isinstance(session, NetworkManagementClient)
    assert session._config.credential_scopes == ["https://management.azure.com/.default"]


@pytest.mark.parametrize(
    ("cloud", "host"),
    [
        ("AzureUSGovernment", "https://management.usgovcloudapi.net"),
        ("AzureChinaCloud", "https://management.chinacloudapi.cn"),
    ],
)
def test_sovereign_clouds_reach_their_own_arm(
    monkeypatch: pytest.MonkeyPatch, cloud: str, host: str
) -> None:
    from azure.mgmt.network import NetworkManagementClient

    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    top = topology()
    top = top.model_copy(update={"azure": {**top.provider_block("azure"), "cloud": cloud}})
    session = configure(top).session()
    assert isinstance(session, NetworkManagementClient)
    assert session._config.credential_scopes == [f"{host}/.default"]


def test_more_than_1000_rules_in_one_nsg_is_a_limit_error() -> None:
    rules = [rule_resource("big", f"nsgsync-db-in-{i:010x}") for i in range(1001)]
    with pytest.raises(LimitError, match="NSG big needs 1001 rules, over Azure's limit of 1000"):
        check_limits(rules)
