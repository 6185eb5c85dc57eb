"""A policy with thousands of ipBlock peers: each cloud renders every peer, AWS refuses the
group with a clear limit error, and provenance is cut to the cloud's description length.
(How long it takes is in benchmarks/many_peers.py, not here.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.many_peers import peers, write_case
from nsgsync.cli.main import main
from nsgsync.net import AddressSet

MANY = 10_000


def plan(
    capsys: pytest.CaptureFixture[str], manifest: Path, topology: Path
) -> tuple[int, str, str]:
    code = main(
        ["plan", "--offline", "-o", "json", "-f", str(manifest), "--topology", str(topology)]
    )
    out, err = capsys.readouterr()
    return code, out, err


def test_aws_refuses_a_group_of_ten_thousand_peers_with_a_limit_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, topologies = write_case(tmp_path, MANY)
    code, out, err = plan(capsys, manifest, topologies["aws"])
    assert code == 1
    assert out == ""
    first = err.splitlines()[0]
    assert first.startswith("error: segment shop-backend needs ")
    needed = int(first.split(" needs ", 1)[1].split()[0])
    assert needed > MANY  # one rule per peer, and the nodes' rule
    assert "over the limit of 60" in first
    assert "nothing was applied" in first
    assert len(err.splitlines()) <= 3  # the error and its hint, no traceback


@pytest.mark.parametrize("cloud", ["azure", "gcp"])
def test_azure_and_gcp_plan_every_one_of_ten_thousand_peers(
    cloud: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, topologies = write_case(tmp_path, MANY)
    code, out, err = plan(capsys, manifest, topologies[cloud])
    assert code == 0, err
    bodies = [d["body"] for d in json.loads(out)["desired"] if d["segment"] == "shop-backend"]
    if cloud == "azure":
        ranges = [
            p
            for b in bodies
            if b.get("properties", {}).get("access") == "Allow"
            for side in ("sourceAddressPrefixes", "destinationAddressPrefixes")
            for p in b["properties"].get(side, [])
        ]
        longest = max(
            len(b["properties"]["description"])
            for b in bodies
            if "access" in b.get("properties", {})
        )
        assert longest <= 140
    else:
        ranges = [
            r
            for b in bodies
            if "allowed" in b
            for side in ("sourceRanges", "destinationRanges")
            for r in b[side]
        ]
        assert max(len(b["description"]) for b in bodies) <= 2048
    wanted = {str(p["ipBlock"]["cidr"]) for p in peers(MANY)}  # type: ignore[index]
    # Each peer is in the allow rules of both directions (ingress from, egress to).
    assert AddressSet.from_cidrs(wanted).issubset(AddressSet.from_cidrs(ranges))
    assert sum(1 for r in ranges if r in wanted) == 2 * MANY


def test_aws_descriptions_of_a_rule_of_many_peers_are_cut_to_255_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, topologies = write_case(tmp_path, 300)
    topology = topologies["aws"]
    topology.write_text(
        topology.read_text().replace(
            "vpcId: vpc-0example", "vpcId: vpc-0example\n  maxRulesPerGroup: 1000"
        )
    )
    code, out, err = plan(capsys, manifest, topology)
    assert code == 0, err
    rules = [
        d["body"]
        for d in json.loads(out)["desired"]
        if d["type"] == "security-group-rule"
        and d["body"].get("CidrIpv4", "").startswith("100.64.")
    ]
    assert len(rules) == 2 * 300
    for body in rules:
        text = body["Description"]
        assert len(text) == 255
        assert "shop/many-peers rule 0 peer 0; shop/many-peers rule 0 peer 1; " in text
        assert text.endswith("...")
