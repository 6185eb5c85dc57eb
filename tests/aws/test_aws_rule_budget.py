"""The rule budget of a security group (issue: one egress rule to 0.0.0.0/0 became dozens):
addresses another rule of the side already allows count as don't-care, a whole segment is
one rule by its group where that saves rules (`aws.peerMode: auto`), and `aws.onLimit:
widen` merges rules soundly until a side fits. Through the CLI's offline plan, and checked
against the Intent with the tests' own evaluator of the rules the plan writes."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from nsgsync.cli.main import main

NODES = ["10.1.0.0/20", "10.2.0.0/20", "172.20.5.0/24"]
PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.169.254/32"]


def topology(**aws: Any) -> dict[str, Any]:
    return {
        "apiVersion": "nsgsync.io/v1alpha1",
        "kind": "Topology",
        "cluster": "budget",
        "provider": "aws",
        "podCIDRs": ["10.0.0.0/16"],
        "nodeCIDRs": NODES,
        "segments": [
            {"name": "web", "namespace": "web", "cidrs": ["10.0.1.0/24"]},
            # Two CIDRs that do not join: by group one rule, by CIDRs two.
            {"name": "db", "namespace": "db", "cidrs": ["10.0.4.0/24", "10.0.9.0/24"]},
        ],
        "aws": {"region": "eu-west-1", "vpcId": "vpc-0budget", **aws},
    }


def egress(to: list[dict[str, Any]], ports: list[int]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "out", "namespace": "web"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": to, "ports": [{"protocol": "TCP", "port": p} for p in ports]}],
        },
    }


def plan(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    policy: dict[str, Any],
    *,
    output: str = "json",
    **aws: Any,
) -> tuple[int, dict[str, Any], str]:
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(topology(**aws)))
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(policy))
    argv = ["plan", "--offline", "-o", output, "-f", str(tmp_path / "m.yaml")]
    code = main([*argv, "--topology", str(tmp_path / "t.yaml")])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if output == "json" and out.strip() else {}), err


def egress_rules(doc: dict[str, Any], segment: str = "web") -> list[dict[str, Any]]:
    return [
        d["body"]
        for d in doc["desired"]
        if d["type"] == "security-group-rule" and d["segment"] == segment and d["body"]["IsEgress"]
    ]


def allows(rules: list[dict[str, Any]], ip: str, port: int) -> bool:
    """TCP to `ip`:`port` through these rules (CIDR rules; a group rule names db)."""
    addr = ipaddress.ip_address(ip)
    for r in rules:
        if r["IpProtocol"] not in ("-1", "tcp"):
            continue
        if r["IpProtocol"] == "tcp" and not r["FromPort"] <= port <= r["ToPort"]:
            continue
        if "CidrIpv4" in r and addr in ipaddress.ip_network(r["CidrIpv4"]):
            return True
        if "ReferencedGroupInfo" in r and any(
            addr in ipaddress.ip_network(c) for c in ("10.0.4.0/24", "10.0.9.0/24")
        ):
            return True
    return False


SAMPLES = ["8.8.8.8", "1.1.1.1", "10.1.3.4", "10.2.0.9", "172.20.5.7", "10.0.4.2", "10.9.9.9"]
SAMPLES += ["192.168.1.1", "169.254.169.254", "172.16.0.1", "11.0.0.1", "223.255.255.254"]


def test_egress_to_everywhere_on_a_port_is_one_rule_beside_the_node_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The Intent cuts the node CIDRs out of 0.0.0.0/0 (the node rule allows them on every
    # port): 46 CIDRs. The node rule makes them don't-care: one rule.
    code, doc, _ = plan(tmp_path, capsys, egress([{"ipBlock": {"cidr": "0.0.0.0/0"}}], [443]))
    assert code == 0
    rules = egress_rules(doc)
    assert [r.get("CidrIpv4") for r in rules if r["IpProtocol"] == "tcp"] == ["0.0.0.0/0"]
    assert len(rules) == 1 + len(NODES)
    # Nothing more allowed than the Intent: 443 anywhere, every port to the nodes only.
    for ip in SAMPLES:
        assert allows(rules, ip, 443)
        in_nodes = any(ipaddress.ip_address(ip) in ipaddress.ip_network(n) for n in NODES)
        assert allows(rules, ip, 80) == in_nodes


def test_everywhere_but_private_ranges_fits_with_on_limit_widen_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    block = {"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE}}
    code, _, err = plan(tmp_path, capsys, egress([block], [443]), maxRulesPerGroup=20)
    assert code == 1
    assert "segment web needs 59 egress rules in its security group (IPv4)" in err
    assert "web/out (56: web/out rule 0 peer 0)" in err

    code, doc, err = plan(
        tmp_path, capsys, egress([block], [443]), maxRulesPerGroup=20, onLimit="widen"
    )
    assert code == 0
    rules = egress_rules(doc)
    assert len(rules) == 20
    _, _, err = plan(
        tmp_path,
        capsys,
        egress([block], [443]),
        output="text",
        maxRulesPerGroup=20,
        onLimit="widen",
    )
    assert "aws-widened-to-fit" in err and "to fit 20 rules a side" in err
    # Sound: all the Intent allows is still allowed (wider, never narrower).
    for ip in SAMPLES:
        private = any(ipaddress.ip_address(ip) in ipaddress.ip_network(p) for p in PRIVATE)
        if not private:
            assert allows(rules, ip, 443), ip


def test_peer_mode_auto_names_a_segment_by_group_where_that_saves_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    to: list[dict[str, Any]] = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "db"}}},
        {"ipBlock": {"cidr": "10.0.1.0/24"}},
    ]
    code, doc, _ = plan(tmp_path, capsys, egress(to, [5432]))
    assert code == 0
    tcp = [r for r in egress_rules(doc) if r["IpProtocol"] == "tcp"]
    # db (two CIDRs) by its group; web's own /24, one CIDR either way, by CIDR.
    assert sorted("ReferencedGroupInfo" in r for r in tcp) == [False, True]
    assert [r["CidrIpv4"] for r in tcp if "CidrIpv4" in r] == ["10.0.1.0/24"]
    code, doc, _ = plan(tmp_path, capsys, egress(to, [5432]), peerMode="cidr")
    assert len([r for r in egress_rules(doc) if r["IpProtocol"] == "tcp"]) == 3
