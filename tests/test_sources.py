"""Reading manifests and topologies: what is read, and every bad input's error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nsgsync.errors import InputError, TopologyError
from nsgsync.model import PolicyType
from nsgsync.sources import load_manifests, load_topology


def write(tmp_path: Path, text: str, name: str = "in.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: p, namespace: shop}}
spec:
  podSelector: {{}}
  ingress:
    - from: [{peer}]
      ports: [{port}]
"""


def policy(peer: str = "{podSelector: {}}", port: str = "{port: 80}") -> str:
    return POLICY.format(peer=peer, port=port)


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (
            policy(peer="{ipBlock: {cidr: 10.0.0.0/33}}"),
            "spec.ingress[0].from[0].ipBlock.cidr",
            "not a valid CIDR",
        ),
        (
            policy(peer="{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}"),
            "spec.ingress[0].from[0].ipBlock",
            "not a strict subset",
        ),
        (policy(port="{port: 70000}"), "spec.ingress[0].ports[0].port", "outside 1-65535"),
        (policy(port="{port: 0}"), "spec.ingress[0].ports[0].port", "outside 1-65535"),
        (policy(port="{port: 8080, endPort: 80}"), "spec.ingress[0].ports[0]", "below port"),
        (policy(port="{port: http, endPort: 90}"), "spec.ingress[0].ports[0]", "named port"),
        (
            policy(port="{protocol: ICMP, port: 80}"),
            "spec.ingress[0].ports[0].protocol",
            "unknown protocol",
        ),
        (
            policy(
                peer="{podSelector: {matchExpressions: [{key: a, operator: Like, values: [b]}]}}"
            ),
            "spec.ingress[0].from[0].podSelector.matchExpressions[0].operator",
            "Like",
        ),
        (
            policy(peer="{podSelector: {matchExpressions: [{key: a, operator: In}]}}"),
            "spec.ingress[0].from[0].podSelector.matchExpressions[0]",
            "needs at least one value",
        ),
        (
            policy(
                peer="{podSelector: {matchExpressions: [{key: a, operator: NotIn, values: []}]}}"
            ),
            "spec.ingress[0].from[0].podSelector.matchExpressions[0]",
            "needs at least one value",
        ),
        (
            policy(peer="{podSelector: {matchLabel: {a: b}}}"),
            "spec.ingress[0].from[0].podSelector.matchLabel",
            "unknown field",
        ),
        (
            policy(peer="{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}"),
            "spec.ingress[0].from[0]",
            "may not be combined",
        ),
    ],
)
def test_bad_policy_names_file_object_and_field(
    tmp_path: Path, text: str, field: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_manifests([path])
    err = info.value
    assert err.file == str(path)
    assert err.obj == "NetworkPolicy shop/p"
    assert err.field == field
    assert message in str(err)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "kind: Namespace\nmetadata:\n  name: [unclosed\n")
    with pytest.raises(InputError) as info:
        load_manifests([path])
    assert info.value.line == 4 or info.value.line == 3
    assert f"{path}:" in str(info.value)
    assert "malformed YAML" in str(info.value)


def test_multi_document_lists_templates_and_defaults(tmp_path: Path) -> None:
    write(
        tmp_path,
        """\
        apiVersion: v1
        kind: List
        items:
          - kind: NetworkPolicy
            metadata: {name: a}
            spec: {podSelector: {}, egress: [{}]}
          - kind: Service
            metadata: {name: ignored}
        ---
        kind: NamespaceList
        items: [{kind: Namespace, metadata: {name: shop, labels: {team: s}}}]
        ---
        kind: CronJob
        metadata: {name: job, namespace: shop}
        spec:
          jobTemplate:
            spec:
              template:
                metadata: {labels: {app: job}}
                spec: {containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}
        """,
        "one.yaml",
    )
    write(
        tmp_path,
        """\
        {"kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
         "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                  "spec": {"containers": [{"name": "c"}]}}}}
        """,
        "sub/two.json",
    )
    inv = load_manifests([tmp_path])
    (pol,) = inv.policies
    assert pol.ref == "default/a"
    assert pol.policy_types == {PolicyType.INGRESS, PolicyType.EGRESS}
    assert [p.ref for p in inv.pods] == ["shop/job", "shop/web"]
    assert inv.pods[0].port_numbers("http", inv.pods[0].ports[0].protocol) == [80]
    assert inv.namespaces["shop"] == {"team": "s", "kubernetes.io/metadata.name": "shop"}
    # a namespace used but not declared carries only its name label
    assert inv.namespaces["default"] == {"kubernetes.io/metadata.name": "default"}


def test_policy_types_default_like_kubernetes(tmp_path: Path) -> None:
    write(
        tmp_path,
        """\
        kind: NetworkPolicy
        metadata: {name: i}
        spec: {podSelector: {}, egress: []}
        """,
    )
    (pol,) = load_manifests([tmp_path]).policies
    assert pol.policy_types == {PolicyType.INGRESS}


def test_duplicate_policy_is_an_error(tmp_path: Path) -> None:
    body = "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}}\n"
    write(tmp_path, body, "a.yaml")
    write(tmp_path, body, "b.yaml")
    with pytest.raises(InputError, match="defined twice"):
        load_manifests([tmp_path])


TOPOLOGY = """\
apiVersion: nsgsync.io/v1alpha1
kind: Topology
cluster: c1
provider: aws
podCIDRs: [10.0.0.0/16]
segments:
{segments}
"""


@pytest.mark.parametrize(
    ("segments", "extra", "message"),
    [
        ("  - {name: a, namespace: x, cidrs: [10.0.1.0/24]}", "colour: blue\n", "colour"),
        ("  - {name: a, namespace: x, cidrs: [10.0.1.0/24], podSelecter: {}}", "", "podSelecter"),
        (
            "  - {name: a, namespace: x, cidrs: [10.0.0.0/23]}\n"
            "  - {name: b, namespace: y, cidrs: [10.0.1.0/24]}",
            "",
            "overlap segment 'a'",
        ),
        ("  - {name: a, namespace: x, cidrs: [10.9.0.0/24]}", "", "outside podCIDRs"),
        (
            "  - {name: a, namespace: x, cidrs: [10.0.1.0/24]}\n"
            "  - {name: a, namespace: y, cidrs: [10.0.2.0/24]}",
            "",
            "duplicate segment name",
        ),
        ("  - {name: a, cidrs: [10.0.1.0/24]}", "", "exactly one of namespace"),
        ("  - {name: a, namespace: x, cidrs: [10.0.1.1/24]}", "", "not a valid network"),
    ],
)
def test_bad_topology(tmp_path: Path, segments: str, extra: str, message: str) -> None:
    path = write(tmp_path, TOPOLOGY.format(segments=segments) + extra, "topology.yaml")
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_example_topology_loads() -> None:
    topology = load_topology(Path(__file__).parent.parent / "config/example/topology.yaml")
    assert topology.cluster == "demo-eu-1"
    assert [s.name for s in topology.segments][-1] == "rest"
