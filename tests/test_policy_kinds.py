"""Policy kinds nsgsync does not compile: refused unless ignored, never dropped in silence.

An Antrea policy, or a network-policy-api kind of a version nsgsync does not read, can
allow traffic that the NetworkPolicies alone deny; compiling without them could block live
traffic. (Cilium's, Calico's and the admin policies of the versions read are compiled:
docs/cilium.md, docs/calico.md, docs/admin-policies.md.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from nsgsync.cli.main import main
from tests.fakes.kube_api import KubeApi
from tests.test_cluster_source import write_kubeconfig

CASE = Path(__file__).parent / "cases" / "default-deny-all"
TOPOLOGY = str(CASE / "topology.yaml")

CALICO = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "NetworkPolicy",
    "metadata": {"name": "calico-web", "namespace": "default"},
    "spec": {"selector": "app == 'web'", "order": 100, "ingress": [{"action": "Allow"}]},
}
# Antrea's namespaced kind is also called NetworkPolicy, and is not compiled.
ANTREA_NP = {
    "apiVersion": "crd.antrea.io/v1beta1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "allow-web", "namespace": "default"},
    "spec": {"priority": 5, "appliedTo": [{"podSelector": {}}], "ingress": []},
}
# Antrea's own cluster-wide kind: not compiled (network-policy-api's namesake is).
ANTREA = {
    "apiVersion": "crd.antrea.io/v1beta1",
    "kind": "ClusterNetworkPolicy",
    "metadata": {"name": "allow-monitoring"},
    "spec": {"priority": 10, "appliedTo": [{"namespaceSelector": {}}], "ingress": []},
}
ANP = {
    "apiVersion": "policy.networking.k8s.io/v1alpha1",
    "kind": "AdminNetworkPolicy",
    "metadata": {"name": "allow-monitoring"},
    "spec": {"priority": 10, "subject": {"namespaces": {}}, "ingress": []},
}
ISTIO = {
    "apiVersion": "security.istio.io/v1",
    "kind": "AuthorizationPolicy",
    "metadata": {"name": "deny-all", "namespace": "default"},
    "spec": {},
}


def folder(tmp_path: Path, *extra: Mapping[str, Any]) -> str:
    out = tmp_path / "manifests"
    out.mkdir()
    for src in (CASE / "manifests").iterdir():
        (out / src.name).write_text(src.read_text())
    (out / "more.yaml").write_text(yaml.safe_dump_all(extra))
    return str(out)


def test_a_kind_that_may_allow_is_an_error_naming_each_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = folder(tmp_path, CALICO, ANTREA_NP, ANTREA, ANP)
    assert main(["compile", "-f", files, "--topology", TOPOLOGY]) == 1
    err = capsys.readouterr().err
    assert "2 policies of kinds nsgsync does not compile" in err
    # Antrea's kind is also called NetworkPolicy: it must not be read as a Kubernetes one.
    assert "NetworkPolicy default/allow-web" in err
    assert "calico-web" not in err  # compiled (docs/calico.md)
    assert "ClusterNetworkPolicy allow-monitoring" in err
    assert "AdminNetworkPolicy" not in err  # compiled (docs/admin-policies.md)
    assert "more.yaml:" in err
    assert "--ignore-kind" in err


def test_ignore_kind_turns_the_error_into_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = folder(tmp_path, ANTREA, ANTREA_NP)
    argv = ["compile", "-f", files, "--topology", TOPOLOGY, "-o", "json"]
    # Ignoring one kind is not ignoring the other.
    assert main([*argv, "--ignore-kind", "ClusterNetworkPolicy.crd.antrea.io"]) == 1
    assert "NetworkPolicy default/allow-web" in capsys.readouterr().err
    ignore = [
        "--ignore-kind",
        "ClusterNetworkPolicy.crd.antrea.io",
        "--ignore-kind",
        "NetworkPolicy.crd.antrea.io",
    ]
    assert main([*argv, *ignore]) == 0
    findings = json.loads(capsys.readouterr().out)["findings"]
    ignored = [f for f in findings if f["code"] == "kind-ignored"]
    assert [f["severity"] for f in ignored] == ["warning", "warning"]
    assert "allow-monitoring" in ignored[0]["message"]
    assert "default/allow-web" in ignored[1]["message"]


def test_a_kind_that_only_narrows_is_an_info_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = folder(tmp_path, ISTIO)
    assert main(["compile", "-f", files, "--topology", TOPOLOGY, "-o", "json"]) == 0
    findings = json.loads(capsys.readouterr().out)["findings"]
    narrow = [f for f in findings if f["code"] == "kind-narrows-only"]
    assert len(narrow) == 1
    assert narrow[0]["severity"] == "info"
    assert "default/deny-all" in narrow[0]["message"]


def test_another_api_version_of_networkpolicy_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = {
        "apiVersion": "extensions/v1beta1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "old", "namespace": "default"},
        "spec": {"podSelector": {}},
    }
    files = folder(tmp_path, old)
    assert main(["compile", "-f", files, "--topology", TOPOLOGY]) == 1
    err = capsys.readouterr().err
    assert "field apiVersion" in err
    assert "'extensions/v1beta1'" in err


def test_kinds_in_the_cluster_are_read_not_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cilium = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "allow-dns", "namespace": "default"},
        "spec": {"endpointSelector": {}, "egress": [{"toEntities": ["cluster"]}]},
    }
    with KubeApi() as api:
        for obj in yaml.safe_load_all((CASE / "manifests" / "policy.yaml").read_text()):
            api.add(obj)
        api.add(cilium)
        api.add(ANP)
        kubeconfig = str(write_kubeconfig(tmp_path, api, token=""))
        argv = ["compile", "--from-cluster", "--kubeconfig", kubeconfig, "--topology", TOPOLOGY]
        assert main([*argv, "-o", "json"]) == 0
        codes = [f["code"] for f in json.loads(capsys.readouterr().out)["findings"]]
        assert "kind-ignored" not in codes
        # Cilium's kind makes the engine Cilium, which does not enforce the admin kinds.
        assert "dialect-not-enforced" in codes
