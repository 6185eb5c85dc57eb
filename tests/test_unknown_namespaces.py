"""Namespaces no Namespace object describes: their labels are unknown, never empty.

A user who passes policies and workloads but no Namespace manifests must not get cloud
rules that deny what the cluster allows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from nsgsync.cli.main import main

TOPOLOGY = {
    "apiVersion": "nsgsync.io/v1alpha1",
    "kind": "Topology",
    "cluster": "labels",
    "provider": "aws",
    "podCIDRs": ["10.0.0.0/16"],
    "nodeCIDRs": ["10.1.0.0/20"],
    "segments": [
        {"name": "api", "namespace": "api", "cidrs": ["10.0.1.0/24"]},
        {"name": "db", "namespace": "db", "cidrs": ["10.0.2.0/24"]},
        {"name": "rest", "namespaceSelector": {}, "cidrs": ["10.0.128.0/17"]},
    ],
    "aws": {"region": "eu-west-1", "vpcId": "vpc-0labels"},
}
POLICY = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "db-from-api", "namespace": "db"},
    "spec": {
        "podSelector": {},
        "ingress": [
            {
                "from": [{"namespaceSelector": {"matchLabels": {"team": "api"}}}],
                "ports": [{"port": 5432}],
            }
        ],
    },
}


def deployment(namespace: str) -> dict[str, Any]:
    labels = {"app": namespace}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": namespace, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }


def namespace(name: str, team: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"team": team}},
    }


def compile_json(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *docs: dict[str, Any],
    flags: tuple[str, ...] = (),
) -> dict[str, Any]:
    (tmp_path / "m").mkdir(exist_ok=True)
    (tmp_path / "m" / "all.yaml").write_text(yaml.safe_dump_all(docs))
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(TOPOLOGY))
    argv = ["compile", "-f", str(tmp_path / "m"), "--topology", str(tmp_path / "t.yaml")]
    assert main([*argv, "-o", "json", *flags]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def db_ingress_peers(intent: dict[str, Any]) -> set[str]:
    db = next(s for s in intent["segments"] if s["name"] == "db")
    assert db["ingress"]["isolated"] is True
    return {p for r in db["ingress"]["rules"] if r["ports"] == [[5432, 5432]] for p in r["peers"]}


def test_without_namespace_objects_a_namespace_selector_widens_with_a_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    intent = compile_json(tmp_path, capsys, POLICY, deployment("api"), deployment("db"))
    # The api namespace may well carry team=api: its pods must be allowed in.
    assert "10.0.1.0/24" in db_ingress_peers(intent)
    found = [f for f in intent["findings"] if f["code"] == "namespace-labels-unknown"]
    assert len(found) == 1
    message = found[0]["message"]
    assert found[0]["severity"] == "warning"
    assert found[0]["policy"] == "db/db-from-api"
    assert "namespaces api, db" in message
    assert "-f namespaces.yaml" in message and "--from-cluster" in message


def test_with_namespace_objects_it_is_exact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = (
        POLICY,
        deployment("api"),
        deployment("db"),
        namespace("api", "api"),
        namespace("db", "db"),
    )
    intent = compile_json(tmp_path, capsys, *docs)
    # Other namespaces may exist (no complete list was read) and be labelled team=api.
    assert db_ingress_peers(intent) == {"10.0.1.0/24", "10.0.128.0/17"}
    messages = [f["message"] for f in intent["findings"] if f["code"] == "namespace-labels-unknown"]
    assert len(messages) == 1 and "--namespaces-complete" in messages[0]
    # Said complete, nothing is unknown.
    intent = compile_json(tmp_path, capsys, *docs, flags=("--namespaces-complete",))
    assert db_ingress_peers(intent) == {"10.0.1.0/24"}
    assert not [f for f in intent["findings"] if f["code"] == "namespace-labels-unknown"]


def test_a_label_that_no_described_namespace_has_matches_no_known_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = (POLICY, deployment("api"), namespace("api", "web"), namespace("db", "db"))
    intent = compile_json(tmp_path, capsys, *docs, flags=("--namespaces-complete",))
    db = next(s for s in intent["segments"] if s["name"] == "db")
    assert db["ingress"]["isolated"] is True
    assert [r for r in db["ingress"]["rules"] if r["ports"] == [[5432, 5432]]] == []
