"""The live-cluster source, through the real kubernetes client against a local stand-in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml

from nsgsync.cli.main import build_parser, main
from nsgsync.errors import InputError
from nsgsync.model import Inventory
from nsgsync.sources import apply_objects, load_cluster, load_manifests
from nsgsync.sources.files import topology_from_mapping
from tests.fakes.kube_api import APPLY_PATCH, KubeApi

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "config/example/cluster"
TOPOLOGY = ROOT / "config/example/topology.yaml"
DEPLOY = ROOT / "deploy"
TOKEN = "s3cr3t-token"


def example_objects() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(EXAMPLE.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def extra_objects(n: int) -> list[dict[str, Any]]:
    """Enough objects of each kind that a small page size needs several pages."""
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "load", "labels": {}}}
    ]
    for i in range(n):
        labels = {"app": f"app-{i}", "tier": "backend" if i % 2 else "frontend"}
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"pod-{i:03}", "namespace": "load", "labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "x",
                            "ports": [{"name": "http", "containerPort": 80}],
                        }
                    ]
                },
                "status": {"phase": "Running", "podIP": f"10.0.200.{i + 1}"},
            }
        )
        objs.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": f"allow-{i:03}", "namespace": "load"},
                "spec": {
                    "podSelector": {"matchLabels": {"app": f"app-{i}"}},
                    "ingress": [
                        {
                            "from": [{"podSelector": {"matchLabels": {"tier": "frontend"}}}],
                            "ports": [{"protocol": "TCP", "port": "http"}],
                        }
                    ],
                },
            }
        )
        objs.append(
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {"name": f"rs-{i:03}", "namespace": "load"},
                "spec": {"template": {"metadata": {"labels": labels}, "spec": {"containers": []}}},
            }
        )
    template = {"template": {"metadata": {"labels": {"app": "other"}}}}
    for api_version, kind in (
        ("v1", "ReplicationController"),
        ("apps/v1", "DaemonSet"),
        ("batch/v1", "Job"),
    ):
        objs.append(
            {
                "apiVersion": api_version,
                "kind": kind,
                "metadata": {"name": kind.lower(), "namespace": "load"},
                "spec": template,
            }
        )
    return objs


def as_dict(inv: Inventory) -> dict[str, Any]:
    return {
        "policies": inv.policies,
        "pods": inv.pods,
        "namespaces": {k: dict(v) for k, v in inv.namespaces.items()},
    }


def write_files(tmp_path: Path, objs: list[dict[str, Any]]) -> Path:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "all.yaml").write_text(yaml.safe_dump_all(objs))
    return folder


@pytest.fixture
def api() -> Iterator[KubeApi]:
    with KubeApi(token=TOKEN) as server:
        yield server


@pytest.fixture
def client(api: KubeApi) -> Iterator[Any]:
    c = api.api_client()
    yield c
    c.close()


def list_calls(api: KubeApi) -> list[tuple[str, dict[str, str]]]:
    return [(c.path, c.query) for c in api.calls if c.method == "GET"]


def test_reads_every_kind_across_pages_like_the_files(
    api: KubeApi, client: Any, tmp_path: Path
) -> None:
    objs = example_objects() + extra_objects(12)
    for obj in objs:
        api.add(obj)
    finished = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "done", "namespace": "load", "labels": {"app": "x"}},
        "spec": {"containers": []},
        "status": {"phase": "Succeeded"},
    }
    api.add(finished)

    live = load_cluster(client, page_size=5)
    files = load_manifests([write_files(tmp_path, objs)])

    assert as_dict(live) == as_dict(files)
    assert {p.kind for p in live.pods} == {
        "Pod",
        "Deployment",
        "StatefulSet",
        "CronJob",
        "ReplicaSet",
        "ReplicationController",
        "DaemonSet",
        "Job",
    }
    assert "done" not in {p.name for p in live.pods}  # finished pods hold no address
    assert len(live.policies) == 7 + 12
    pod_lists = [q for path, q in list_calls(api) if path == "/api/v1/pods"]
    assert len(pod_lists) == 3  # 13 pods, 5 a page
    assert all(q["limit"] == "5" for q in pod_lists)
    assert "continue" not in pod_lists[0] and all("continue" in q for q in pod_lists[1:])
    assert pod_lists[0]["fieldSelector"] == "status.phase!=Succeeded,status.phase!=Failed"
    assert all(c.headers.get("Authorization") == f"Bearer {TOKEN}" for c in api.calls)


def test_namespaces_limit_policies_and_pods_but_not_namespace_labels(
    api: KubeApi, client: Any
) -> None:
    for obj in example_objects() + extra_objects(3):
        api.add(obj)
    live = load_cluster(client, namespaces=["shop"])
    assert {p.namespace for p in live.policies} == {"shop"}
    assert {p.namespace for p in live.pods} == {"shop"}
    assert dict(live.namespaces["monitoring"])["purpose"] == "monitoring"
    paths = {path for path, _ in list_calls(api)}
    assert "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies" in paths
    assert "/api/v1/pods" not in paths


def test_an_expired_continue_token_restarts_the_list(api: KubeApi, client: Any) -> None:
    for obj in extra_objects(6):
        api.add(obj)
    api.fail_next(1, status=410, match="continue=")  # the first continued list: policies
    live = load_cluster(client, page_size=4)
    assert len(live.policies) == 6
    assert len([p for p in live.pods if p.kind == "Pod"]) == 6
    policy_lists = [
        "continue" in q
        for path, q in list_calls(api)
        if path == "/apis/networking.k8s.io/v1/networkpolicies"
    ]
    assert policy_lists == [False, True, False, True]  # page 2 expired: started over


def test_a_bad_policy_is_named_like_in_files(api: KubeApi, client: Any, tmp_path: Path) -> None:
    bad = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "bad", "namespace": "shop"},
        "spec": {
            "podSelector": {},
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}],
        },
    }
    api.add(bad)
    with pytest.raises(InputError) as live:
        load_cluster(client, context="prod-eu-1")
    with pytest.raises(InputError) as files:
        load_manifests([write_files(tmp_path, [bad])])
    assert live.value.file == "cluster:prod-eu-1"
    assert (live.value.obj, live.value.field) == (files.value.obj, files.value.field)
    assert live.value.obj == "NetworkPolicy shop/bad"
    assert live.value.field == "spec.ingress[0].from[0].ipBlock.cidr"
    file_prefix = f"{files.value.file}:{files.value.line}: "
    assert live.value.message.removeprefix("cluster:prod-eu-1: ") == (
        files.value.message.removeprefix(file_prefix)
    )
    assert "kubectl edit" in live.value.hint


@pytest.mark.parametrize(
    ("status", "match", "words"),
    [
        (403, "networkpolicies", ("forbidden (403)", "networkpolicies")),
        (403, "cronjobs", ("forbidden (403)", "cronjobs")),
        (401, None, ("401 Unauthorized",)),
    ],
)
def test_api_errors_become_input_errors(
    api: KubeApi, client: Any, status: int, match: str | None, words: tuple[str, ...]
) -> None:
    api.fail_next(1, status=status, match=match)
    with pytest.raises(InputError) as err:
        load_cluster(client)
    text = str(err.value)
    assert all(w in text for w in words), text
    if status == 403:
        for resource in ("networkpolicies", "namespaces", "pods", "deployments", "cronjobs"):
            assert resource in err.value.hint
        assert "list" in err.value.hint


def test_an_unreachable_api_server_is_an_input_error(api: KubeApi) -> None:
    url = api.url
    api.stop()
    config = kubernetes.client.Configuration(host=url)
    config.retries = 0
    with kubernetes.client.ApiClient(config) as dead, pytest.raises(InputError) as err:
        load_cluster(dead)
    assert f"cannot reach the Kubernetes API server at {url}" in str(err.value)


SGP = {
    "apiVersion": "vpcresources.k8s.aws/v1beta1",
    "kind": "SecurityGroupPolicy",
    "metadata": {"name": "shop-backend", "namespace": "shop"},
    "spec": {
        "podSelector": {"matchLabels": {"tier": "backend"}},
        "securityGroups": {"groupIds": ["sg-0123456789abcdef0"]},
    },
}


def test_apply_objects_creates_then_configures(api: KubeApi, client: Any) -> None:
    assert apply_objects(client, [SGP]) == [
        "securitygrouppolicy.vpcresources.k8s.aws/shop-backend created (namespace shop)"
    ]
    changed = json.loads(json.dumps(SGP))
    changed["spec"]["securityGroups"]["groupIds"].append("sg-0fedcba9876543210")
    assert apply_objects(client, [changed]) == [
        "securitygrouppolicy.vpcresources.k8s.aws/shop-backend configured (namespace shop)"
    ]
    patches = [c for c in api.calls if c.method == "PATCH"]
    assert len(patches) == 2
    for call in patches:
        assert call.path == (
            "/apis/vpcresources.k8s.aws/v1beta1/namespaces/shop/securitygrouppolicies/shop-backend"
        )
        assert call.headers["Content-Type"] == APPLY_PATCH
        assert call.query["fieldManager"] == "nsgsync"
        assert call.query["force"] == "true"
    stored = api.get("SecurityGroupPolicy", "shop", "shop-backend")
    assert stored is not None
    assert stored["spec"]["securityGroups"]["groupIds"][-1] == "sg-0fedcba9876543210"


def test_apply_objects_refuses_kinds_it_does_not_write(api: KubeApi, client: Any) -> None:
    other = {**SGP, "kind": "ConfigMap", "apiVersion": "v1"}
    with pytest.raises(InputError, match="does not apply ConfigMap"):
        apply_objects(client, [SGP, other])
    assert not api.calls  # checked before anything was written
    api.fail_next(1, status=403)
    with pytest.raises(InputError) as err:
        apply_objects(client, [SGP])
    assert "securitygrouppolicies.vpcresources.k8s.aws" in err.value.hint


def write_kubeconfig(tmp_path: Path, api: KubeApi, token: str = TOKEN) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": api.url}}],
                "users": [{"name": "ci", "user": {"token": token}}],
                "contexts": [{"name": "fake-ctx", "context": {"cluster": "fake", "user": "ci"}}],
                "current-context": "fake-ctx",
            }
        )
    )
    return path


def test_cli_compiles_from_the_cluster_like_from_files(
    api: KubeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for obj in example_objects():
        api.add(obj)
    kubeconfig = write_kubeconfig(tmp_path, api)
    topology = ["--topology", str(TOPOLOGY), "-o", "json"]
    argv = ["compile", "--from-cluster", "--kubeconfig", str(kubeconfig), *topology]
    assert main(argv) == 0
    live = json.loads(capsys.readouterr().out)
    # The cluster lists every namespace; the files hold every one of the example's.
    assert main(["compile", "-f", str(EXAMPLE), "--namespaces-complete", *topology]) == 0
    files = json.loads(capsys.readouterr().out)
    assert live["kind"] == "Intent"
    assert live == files
    # files and cluster together: the same objects in both are not duplicates
    assert main([*argv, "-f", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == files
    assert "the files' version is used" in err


def test_cli_names_a_bad_kubeconfig_context(
    api: KubeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = write_kubeconfig(tmp_path, api)
    argv = ["compile", "--from-cluster", "--kubeconfig", str(kubeconfig), "--context", "nope"]
    assert main([*argv, "--topology", str(TOPOLOGY)]) == 1
    assert "no context 'nope' in the kubeconfig; it has: fake-ctx" in capsys.readouterr().err


def test_cli_needs_files_or_the_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", "--topology", str(TOPOLOGY)]) == 1
    assert "give -f PATH (manifests) and/or --from-cluster" in capsys.readouterr().err
    assert main(["compile", "-f", str(EXAMPLE), "--context", "x", "--topology", str(TOPOLOGY)]) == 1
    assert "only apply with --from-cluster" in capsys.readouterr().err


def deploy_docs() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(DEPLOY.rglob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if isinstance(doc, dict)
    ]


def test_the_deployed_cluster_role_covers_what_nsgsync_reads_and_writes(
    api: KubeApi, client: Any
) -> None:
    load_cluster(client)
    apply_objects(client, [SGP])
    roles = [d for d in deploy_docs() if d.get("kind") == "ClusterRole"]
    granted = {
        (group, resource, verb)
        for role in roles  # base, and the attachments overlay for the SecurityGroupPolicy
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    asked = set()
    for call in api.calls:
        if call.path == "/apis":
            continue  # discovery: every authenticated user may (the system:discovery role)
        parts = call.path.strip("/").split("/")
        group = "" if parts[0] == "api" else parts[1]
        plural = parts[-1] if call.method == "GET" else parts[-2]
        verb = "list" if call.method == "GET" else "patch"
        asked.add((group, plural, verb))
    assert ("cilium.io", "ciliumnetworkpolicies", "list") in asked
    assert asked - granted == set()


def test_the_cronjob_runs_a_valid_command() -> None:
    cronjob = next(d for d in deploy_docs() if d.get("kind") == "CronJob")
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    parsed = build_parser().parse_args(args)
    assert parsed.verb == "apply" and parsed.from_cluster and parsed.auto_approve
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_deployed_topology_is_valid() -> None:
    config_map = next(d for d in deploy_docs() if d.get("kind") == "ConfigMap")
    topology = topology_from_mapping(yaml.safe_load(config_map["data"]["topology.yaml"]))
    assert topology.provider == "aws"


def test_files_given_beside_the_cluster_replace_its_policies() -> None:
    from nsgsync.model import Inventory
    from nsgsync.sources import merge_inventories
    from nsgsync.sources.files import Document, parse_policy

    def policy(port: int) -> Any:
        body = {
            "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "shop"},
            "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": port}]}]},
        }
        return parse_policy(Document("<t>", 1, body))

    live = Inventory.build([policy(80)], {"shop": {"team": "live"}})
    proposed = Inventory.build([policy(443)], {"shop": {"team": "stale"}})
    merged = merge_inventories(proposed, live)
    (only,) = merged.policies
    assert only.ingress[0].ports[0].port == 443
    assert merged.namespaces["shop"]["team"] == "live"
