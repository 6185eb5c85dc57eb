"""network-policy-api's kinds as a user writes them: read, validated, compiled.

Through the CLI, from files and from a cluster (tests/fakes/kube_api.py): an invalid object
is an error naming its file, line, object and field; a valid one changes the Intent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from nsgsync.cli.main import main
from tests.fakes.kube_api import KubeApi
from tests.test_cluster_source import write_kubeconfig

TOPOLOGY = {
    "apiVersion": "nsgsync.io/v1alpha1",
    "kind": "Topology",
    "cluster": "admin",
    "provider": "aws",
    "podCIDRs": ["10.0.0.0/16"],
    "nodeCIDRs": ["10.1.0.0/20"],
    "segments": [
        {"name": "shop", "namespace": "shop", "cidrs": ["10.0.1.0/24"]},
        {"name": "tools", "namespace": "tools", "cidrs": ["10.0.2.0/24"]},
        {"name": "rest", "namespaceSelector": {}, "cidrs": ["10.0.128.0/17"]},
    ],
    "aws": {"region": "eu-west-1", "vpcId": "vpc-0admin"},
}
V1 = "policy.networking.k8s.io/v1alpha1"
V2 = "policy.networking.k8s.io/v1alpha2"
SHOP = {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}
TOOLS = {"matchLabels": {"kubernetes.io/metadata.name": "tools"}}
EVERY_POD: dict[str, Any] = {"namespaceSelector": {}, "podSelector": {}}


def anp(name: str, spec: dict[str, Any], kind: str = "AdminNetworkPolicy") -> dict[str, Any]:
    return {"apiVersion": V2 if kind == "ClusterNetworkPolicy" else V1, "kind": kind,
            "metadata": {"name": name}, "spec": spec}  # fmt: skip


DENY_TOOLS = anp(
    "deny-tools",
    {
        "priority": 10,
        "subject": {"namespaces": SHOP},
        "ingress": [{"name": "no-tools", "action": "Deny", "from": [{"namespaces": TOOLS}]}],
    },
)


def run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *objects: dict[str, Any]
) -> tuple[int, str, str]:
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(TOPOLOGY))
    (tmp_path / "m.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
    files = ["-f", str(tmp_path / "m.yaml"), "--topology", str(tmp_path / "t.yaml")]
    code = main(["compile", *files, "-o", "json"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_an_admin_deny_closes_the_segment_to_its_peers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(tmp_path, capsys, DENY_TOOLS)
    assert code == 0
    shop = next(s for s in json.loads(out)["segments"] if s["name"] == "shop")
    assert shop["ingress"]["isolated"]
    peers = [p for r in shop["ingress"]["rules"] for p in r["peers"]]
    assert "10.0.2.0/24" not in peers and "10.0.128.0/17" in peers


@pytest.mark.parametrize(
    ("obj", "field", "words"),
    [
        (anp("p", {**DENY_TOOLS["spec"], "priority": 1001}), "spec.priority", "outside 0-1000"),
        (
            anp(
                "p",
                {
                    **DENY_TOOLS["spec"],
                    "subject": {
                        "namespaces": {},
                        "pods": {"namespaceSelector": {}, "podSelector": {}},
                    },
                },
            ),
            "spec.subject",
            "exactly one of namespaces or pods",
        ),
        (
            anp("p", {**DENY_TOOLS["spec"], "ingress": [{"action": "Drop", "from": [{}]}]}),
            "spec.ingress[0].from[0]",
            "exactly one of",
        ),
        (
            anp(
                "p",
                {
                    **DENY_TOOLS["spec"],
                    "ingress": [{"action": "Drop", "from": [{"namespaces": {}}]}],
                },
            ),
            "spec.ingress[0].action",
            "Allow, Deny, Pass",
        ),
        (
            anp(
                "p",
                {
                    **DENY_TOOLS["spec"],
                    "ingress": [{"action": "Deny", "from": [{"networks": ["10.0.0.0/8"]}]}],
                },
            ),
            "spec.ingress[0].from[0]",
            "namespaces or pods only",
        ),
        (
            anp(
                "p",
                {
                    **DENY_TOOLS["spec"],
                    "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}] * 101,
                },
            ),
            "spec.ingress",
            "at most 100",
        ),
        (
            anp("p", {**DENY_TOOLS["spec"], "priorty": 3}),
            "spec.priorty",
            'did you mean "priority"',
        ),
        (
            anp("not-default", {"subject": {"namespaces": {}}}, "BaselineAdminNetworkPolicy"),
            "metadata.name",
            "must be named 'default'",
        ),
        (
            anp(
                "p",
                {**DENY_TOOLS["spec"], "tier": "Middle"},
                "ClusterNetworkPolicy",
            ),
            "spec.tier",
            "Admin",
        ),
    ],
    ids=[
        "priority",
        "subject",
        "empty-peer",
        "action",
        "ingress-networks",
        "limit",
        "typo",
        "baseline-name",
        "tier",
    ],
)
def test_invalid_objects_name_file_line_object_and_field(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    obj: dict[str, Any],
    field: str,
    words: str,
) -> None:
    code, _, err = run(tmp_path, capsys, obj)
    assert code == 1
    assert f"field {field}" in err, err
    assert words in err, err
    assert "m.yaml:" in err and f"{obj['kind']} {obj['metadata']['name']}" in err


def test_cluster_network_policy_domain_names_allow_every_address_with_a_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cnp = anp(
        "to-saas",
        {
            "tier": "Admin",
            "priority": 5,
            "subject": {"namespaces": SHOP},
            "egress": [
                {
                    "action": "Accept",
                    "to": [{"domainNames": ["api.example.com"]}],
                    "protocols": [{"tcp": {"destinationPort": {"number": 443}}}],
                },
                {"action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]},
            ],
        },
        "ClusterNetworkPolicy",
    )
    code, out, _ = run(tmp_path, capsys, cnp)
    assert code == 0
    body = json.loads(out)
    codes = [f["code"] for f in body["findings"]]
    assert "rule-unmodeled" in codes
    shop = next(s for s in body["segments"] if s["name"] == "shop")
    rules = shop["egress"]["rules"]
    assert any(r["protocol"] == "TCP" and r["ports"] == [[443, 443]] for r in rules)
    assert not any(r["protocol"] == "ANY" and "0.0.0.0/1" in r["peers"] for r in rules)


def test_two_policies_of_one_priority_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    allow = anp(
        "allow-tools",
        {
            "priority": 10,
            "subject": {"namespaces": SHOP},
            "ingress": [{"action": "Allow", "from": [{"namespaces": TOOLS}]}],
        },
    )
    code, out, _ = run(tmp_path, capsys, DENY_TOOLS, allow)
    assert code == 0
    ties = [f for f in json.loads(out)["findings"] if f["code"] == "admin-priority-tie"]
    assert len(ties) == 1 and "allow-tools, deny-tools" in ties[0]["message"]


def test_admin_policies_are_read_from_the_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(TOPOLOGY))
    with KubeApi() as api:
        api.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        api.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tools"}})
        api.add(DENY_TOOLS)
        api.add(
            anp(
                "default",
                {
                    "subject": {"namespaces": TOOLS},
                    "egress": [{"action": "Deny", "to": [{"networks": ["192.0.2.0/24"]}]}],
                },
                "BaselineAdminNetworkPolicy",
            )
        )
        kubeconfig = str(write_kubeconfig(tmp_path, api, token=""))
        argv = ["compile", "--from-cluster", "--kubeconfig", kubeconfig]
        assert main([*argv, "--topology", str(tmp_path / "t.yaml"), "-o", "json"]) == 0
    segments = {s["name"]: s for s in json.loads(capsys.readouterr().out)["segments"]}
    assert segments["shop"]["ingress"]["isolated"]
    assert segments["tools"]["egress"]["isolated"]
    assert not segments["rest"]["ingress"]["isolated"]
