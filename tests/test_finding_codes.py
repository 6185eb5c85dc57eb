"""Every finding code is documented, and a test makes nsgsync produce each one.

Each scenario is what a user would write: a topology and a few manifests, through the CLI.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from nsgsync.cli.main import main
from nsgsync.intent import Code

ROOT = Path(__file__).parent.parent
NODES = ["10.1.0.0/20"]
ZEROS = "00000000-0000-0000-0000-000000000000"


def policy(ns: str, spec: dict[str, Any], name: str = "p") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def pod(ns: str, name: str, labels: dict[str, str], ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "x", "ports": ports}]},
    }


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def topology(segments: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "nsgsync.io/v1alpha1",
        "kind": "Topology",
        "cluster": "codes",
        "provider": "aws",
        "podCIDRs": ["10.0.0.0/16"],
        "nodeCIDRs": NODES,
        "segments": segments,
        "aws": {"region": "eu-west-1", "vpcId": "vpc-0codes"},
        **extra,
    }


APP_X = {"matchLabels": {"app": "x"}}
SHOP = {"name": "shop", "namespace": "shop", "cidrs": ["10.0.1.0/24"]}
REST = {"name": "rest", "namespaceSelector": {}, "cidrs": ["10.0.128.0/17"]}
DENY = policy("shop", {"podSelector": {}, "policyTypes": ["Ingress"]}, "deny")

# code -> (topology, manifests, CLI verb and flags): each a small cluster that raises it.
SCENARIOS: dict[Code, tuple[dict[str, Any], list[dict[str, Any]], list[str]]] = {
    Code.ISOLATION_PARTIAL: (
        topology([SHOP, REST]),
        [
            policy("shop", {"podSelector": {"matchLabels": {"app": "web"}}}),
            pod("shop", "web", {"app": "web"}, []),
            pod("shop", "db", {"app": "db"}, []),
        ],
        ["compile"],
    ),
    Code.PEER_UNSEGMENTED: (
        topology([SHOP]),
        [
            DENY,
            policy(
                "shop",
                {
                    "podSelector": {},
                    "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": APP_X}]}],
                },
            ),
        ],
        ["compile"],
    ),
    Code.NAMED_PORT_WIDENED: (
        topology([SHOP, REST]),
        [policy("shop", {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]})],
        ["compile"],
    ),
    Code.NAMED_PORT_UNMATCHED: (
        topology([SHOP, REST]),
        [
            policy("shop", {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}),
            pod("shop", "web", {"app": "web"}, [{"name": "grpc", "containerPort": 9000}]),
        ],
        ["compile"],
    ),
    Code.NO_NODE_CIDRS: (
        {**topology([SHOP, REST]), "nodeCIDRs": []},
        [DENY],
        ["compile"],
    ),
    Code.NOT_ENFORCED: (
        topology([SHOP]),
        [policy("other", {"podSelector": {}}), namespace("other"), namespace("shop")],
        ["compile", "--namespaces-complete"],
    ),
    Code.UNSEGMENTED_WITHOUT_ADDRESSES: (
        topology([{**SHOP, "cidrs": ["10.0.0.0/16"]}]),
        [DENY],
        ["compile"],
    ),
    Code.AWS_SCTP_ALL_PORTS: (
        topology([SHOP, REST]),
        [
            policy(
                "shop",
                {"podSelector": {}, "ingress": [{"ports": [{"protocol": "SCTP", "port": 9}]}]},
            )
        ],
        ["plan", "--offline"],
    ),
    Code.AZURE_OUTSIDE_VNET: (
        {
            **topology(
                [
                    {
                        **SHOP,
                        "azure": {
                            "subnetId": f"/subscriptions/{ZEROS}/resourceGroups/rg/providers/"
                            "Microsoft.Network/virtualNetworks/v/subnets/shop"
                        },
                    }
                ]
            ),
            "provider": "azure",
            "azure": {
                "subscriptionId": "00000000-0000-0000-0000-000000000000",
                "resourceGroup": "rg",
                "location": "westeurope",
                "vnetCIDRs": ["10.9.0.0/16"],
            },
        },
        [DENY],
        ["plan", "--offline"],
    ),
    Code.AWS_ATTACHMENT_OVERLAP: (
        topology(
            [
                {
                    "name": "shop-db",
                    "namespace": "shop",
                    "podSelector": {"matchLabels": {"tier": "db", "app": "pg"}},
                    "cidrs": ["10.0.2.0/24"],
                },
                SHOP,
            ]
        ),
        [DENY],
        ["export", "attachments", "--offline"],
    ),
}


@pytest.mark.parametrize("code", list(SCENARIOS), ids=[c.value for c in SCENARIOS])
def test_each_scenario_raises_its_code(
    code: Code, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topo, manifests, verb = SCENARIOS[code]
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(topo))
    (tmp_path / "m.yaml").write_text(yaml.safe_dump_all(manifests))
    argv = [*verb, "-f", str(tmp_path / "m.yaml"), "--topology", str(tmp_path / "t.yaml")]
    if verb[0] == "compile":
        assert main([*argv, "-o", "json"]) == 0
        found = [f for f in json.loads(capsys.readouterr().out)["findings"] if f["code"] == code]
        assert len(found) == 1, code
        assert found[0]["message"]
    else:
        assert main(argv) == 0
        assert f"{code.value}" in capsys.readouterr().err


def test_every_code_has_a_row_in_the_findings_table() -> None:
    doc = (ROOT / "docs" / "semantics.md").read_text()
    table = doc[doc.index("## Findings") :]
    rows = set(re.findall(r"^\| `([a-z0-9-]+)` \|", table, flags=re.MULTILINE))
    assert rows == {c.value for c in Code}


def test_every_code_is_produced_by_some_test() -> None:
    """A scenario above, or a golden or a test elsewhere that asserts it by name."""
    here = Path(__file__).resolve()
    texts = [
        p.read_text()
        for p in [*(ROOT / "tests").rglob("*.py"), *(ROOT / "tests" / "cases").rglob("*.json")]
        if p.resolve() != here and "fakes" not in p.parts
    ]
    elsewhere = {c for c in Code if any(f'"{c.value}"' in t for t in texts)}
    assert set(Code) - elsewhere - set(SCENARIOS) == set()
