"""`nsgsync explain` for the on-call engineer: addresses, segments, named ports, the cloud's
own rules, JSON, and the exit codes a script relies on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nsgsync.cli.main import main
from tests.generated import write_cluster

ROOT = Path(__file__).parent.parent
EXAMPLE = [
    "-f",
    str(ROOT / "config/example/cluster"),
    "--topology",
    str(ROOT / "config/example/topology.yaml"),
]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["explain", *args])
    out, err = capsys.readouterr()
    return code, out, err


def as_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = run(capsys, *args, "-o", "json")
    doc: dict[str, Any] = json.loads(out)
    assert doc["exitCode"] == code
    return code, doc


@pytest.fixture
def live_pods(tmp_path: Path) -> list[str]:
    """Pods as `kubectl get pods -o yaml` gives them: with status.podIP."""
    (tmp_path / "cluster.yaml").write_text(
        """\
apiVersion: v1
kind: Pod
metadata: {name: backend-abc, namespace: api, labels: {app: backend}}
spec: {containers: [{name: c, image: x}]}
status: {podIP: 10.20.2.17}
---
apiVersion: v1
kind: Pod
metadata: {name: postgres, namespace: data, labels: {app: postgres}}
spec: {containers: [{name: pg, image: x, ports: [{name: pg, containerPort: 5432}]}]}
status: {podIP: 10.20.3.5}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: postgres-from-backend, namespace: data}
spec:
  podSelector: {matchLabels: {app: postgres}}
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: api}}
          podSelector: {matchLabels: {app: backend}}
      ports: [{port: pg}]
"""
    )
    (tmp_path / "topology.yaml").write_text(
        """\
apiVersion: nsgsync.io/v1alpha1
kind: Topology
cluster: oncall
provider: aws
podCIDRs: [10.20.0.0/16]
nodeCIDRs: [10.30.0.0/20]
segments:
  - {name: api, namespace: api, cidrs: [10.20.2.0/24]}
  - {name: data, namespace: data, cidrs: [10.20.3.0/24]}
aws: {region: eu-west-1, vpcId: vpc-1}
"""
    )
    return ["-f", str(tmp_path / "cluster.yaml"), "--topology", str(tmp_path / "topology.yaml")]


def test_an_ip_is_the_pod_that_has_it(
    live_pods: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, *live_pods, "--from", "10.20.2.17", "--to", "data/postgres", "--port", "5432"
    )
    assert code == 0
    assert "from  api/backend-abc (Pod) at 10.20.2.17, segment api" in out
    assert "Kubernetes: ALLOWED" in out
    assert "Cloud rules (Intent): ALLOWED" in out
    code, doc = as_json(
        capsys, *live_pods, "--from", "10.20.2.17", "--to", "10.20.3.5", "--port", "pg/TCP"
    )
    assert code == 0
    assert doc["from"]["pod"] == {"ref": "api/backend-abc", "kind": "Pod"}
    assert doc["to"]["pod"] == {"ref": "data/postgres", "kind": "Pod"}
    assert (doc["port"], doc["portName"]) == (5432, "pg")
    assert doc["kubernetes"]["ingress"]["allowedBy"] == [
        {"policy": "data/postgres-from-backend", "rule": 0}
    ]
    assert doc["verdict"] == "allowed"


def test_an_ip_of_a_segment_without_a_known_pod_takes_a_pod_of_that_segment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys, *EXAMPLE, "--from", "10.0.2.17", "--to", "shop/db", "--port", "postgres"
    )
    assert code == 0
    assert "from  segment shop-backend at 10.0.2.17" in out
    assert "shop/backend (Deployment), a pod of segment shop-backend, stands in" in out
    assert "port  5432/TCP (named port postgres)" in out


@pytest.mark.parametrize(
    ("src", "dst", "port", "code", "label"),
    [
        ("203.0.113.9", "shop/frontend", "http", 0, "outside the cluster"),
        ("203.0.113.9", "shop/db", "5432", 3, "outside the cluster"),
        ("shop-backend", "shop-db", "5432", 0, "segment shop-backend"),
        ("shop-frontend", "shop-db", "5432/TCP", 3, "segment shop-frontend"),
        # kubelet's node may always reach its pods; policies do not allow other nodes
        ("10.1.0.5", "shop/db", "5432", 4, "a node address (nodeCIDRs)"),
        # a pod address in no segment, and no pod known there: Kubernetes cannot say
        ("10.0.50.9", "shop/db", "5432", 5, "the pods in no segment"),
        ("shop/frontend", "kube-system/coredns", "53/UDP", 0, "shop/frontend (Deployment)"),
    ],
)
def test_endpoints_and_exit_codes(
    capsys: pytest.CaptureFixture[str], src: str, dst: str, port: str, code: int, label: str
) -> None:
    got, out, _ = run(capsys, *EXAMPLE, "--from", src, "--to", dst, "--port", port)
    assert got == code, out
    assert out.splitlines()[0].startswith(f"from  {label}")
    verdict = {0: "allowed", 3: "denied", 4: "differs", 5: "unknown"}[code]
    assert (
        as_json(capsys, *EXAMPLE, "--from", src, "--to", dst, "--port", port)[1]["verdict"]
        == verdict
    )


def test_mistakes_are_named_with_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, *EXAMPLE, "--from", "shop/frontend", "--to", "shop/backend", "--port", "htp/TCP"
    )
    assert code == 1
    assert 'no container port of that name (did you mean "http"?)' in err
    assert "its named ports: http/TCP, metrics/TCP" in err
    code, _, err = run(capsys, *EXAMPLE, "--from", "shop/frontnd", "--to", "shop/db", "--port", "1")
    assert code == 1
    assert 'did you mean "shop/frontend"?' in err
    code, _, err = run(
        capsys, *EXAMPLE, "--from", "10.0.0.1", "--to", "shop/db", "--port", "7/ICMP"
    )
    assert code == 1
    assert "use TCP, UDP or SCTP" in err


def _topology(tmp_path: Path, provider: str) -> list[str]:
    path = tmp_path / f"{provider}.yaml"
    text = (ROOT / "config/example/topology.yaml").read_text()
    path.write_text(text.replace("provider: aws", f"provider: {provider}"))
    return ["-f", str(ROOT / "config/example/cluster"), "--topology", str(path)]


@pytest.mark.parametrize(
    ("provider", "allowing", "blocking"),
    [
        (
            "aws",
            "security group rule sgr/shop-db/in/tcp/5432-5432/10.0.2.0/24 of group "
            "nsgsync-demo-eu-1-shop-db",
            "no rule of security group nsgsync-demo-eu-1-shop-db allows it",
        ),
        ("azure", "NSG rule nsgsync-shop-db-in-", "NSG rule nsgsync-shop-db-in-default (priority"),
        ("gcp", "firewall nsgsync-demo-eu-1-shop-db-i-", "(priority 899, deny)"),
    ],
)
def test_cloud_names_the_rule_that_decides(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    provider: str,
    allowing: str,
    blocking: str,
) -> None:
    args = _topology(tmp_path, provider)
    code, doc = as_json(
        capsys, *args, "--from", "shop/backend", "--to", "shop/db", "--port", "5432", "--cloud"
    )
    assert code == 0
    assert doc["cloud"]["provider"] == provider
    assert doc["cloud"]["ingress"]["allowed"] is True
    assert doc["cloud"]["ingress"]["rule"].startswith(allowing)
    assert doc["cloud"]["ingress"]["policies"] == ["shop/db-allow-backend"]
    code, out, _ = run(
        capsys, *args, "--from", "shop/frontend", "--to", "shop/db", "--port", "5432", "--cloud"
    )
    assert code == 3
    assert f"Cloud rules ({provider}, as rendered): DENIED" in out
    ingress = next(
        line for line in out.splitlines() if "ingress of segment shop-db: blocked" in line
    )
    assert blocking in ingress


def test_cloud_wider_than_kubernetes_exits_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
        "metadata: {name: diameter, namespace: core}\n"
        "spec:\n  podSelector: {}\n"
        "  ingress: [{from: [{podSelector: {}}], ports: [{protocol: SCTP, port: 3868}]}]\n"
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: hss, namespace: core}\n"
        "spec: {containers: [{name: c, image: x}]}\nstatus: {podIP: 10.0.1.7}\n"
    )
    (tmp_path / "t.yaml").write_text(
        "apiVersion: nsgsync.io/v1alpha1\nkind: Topology\ncluster: telco\nprovider: aws\n"
        "podCIDRs: [10.0.0.0/16]\nsegments: [{name: core, namespace: core, cidrs: [10.0.1.0/24]}]\n"
        "aws: {region: eu-west-1, vpcId: vpc-1}\n"
    )
    args = ["-f", str(tmp_path / "p.yaml"), "--topology", str(tmp_path / "t.yaml")]
    common = ["--from", "10.0.1.9", "--to", "10.0.1.7", "--port", "9999/SCTP"]
    assert run(capsys, *args, *common)[0] == 3  # Kubernetes and the Intent: denied
    code, doc = as_json(capsys, *args, *common, "--cloud")
    assert code == 4
    assert doc["verdict"] == "differs"
    assert doc["cloud"]["allowed"] is True  # EC2 keeps no ports for SCTP
    assert "sgr/core/in/132" in doc["cloud"]["ingress"]["rule"]
    assert doc["notes"] == [
        "The cloud is wider than Kubernetes here (see the findings of `nsgsync compile`)."
    ]


def test_on_a_1000_policy_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = write_cluster(tmp_path, policies=1000)
    code, doc = as_json(
        capsys, *args, "--from", "10.1.0.9", "--to", "ns-0/api", "--port", "http", "--cloud"
    )
    assert code == 0
    assert doc["from"]["segment"] == "ns-0-web"
    assert doc["port"] == 8081
    assert doc["cloud"]["ingress"]["policies"] == ["ns-0/api-from-web"]
    code, doc = as_json(
        capsys, *args, "--from", "ns-3-web", "--to", "ns-4/db", "--port", "5432", "--cloud"
    )
    assert code == 3
    assert doc["kubernetes"]["ingress"]["isolatedBy"] == [
        "ns-4/db-from-next-api",
        "ns-4/default-deny-all",
    ]
