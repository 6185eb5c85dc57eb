"""deploy/: every manifest validates against the Kubernetes schemas; the controller's
overlays run a valid command and grant what the controller uses, and no more."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from nsgsync.cli.main import build_parser
from tests.aws.conftest import Ec2
from tests.controller.conftest import (
    Make,
    db_policy,
    ingress_ports,
    ready,
    wait_for,
    widened_objects,
)
from tests.fakes.kube_api import RESOURCES, KubeApi, Resource

DEPLOY = Path(__file__).parent.parent.parent / "deploy"
K8S_VERSION = "1.30.0"  # the oldest Kubernetes the manifests must fit (schemas shipped)
NOT_OBJECTS = {"kustomization.yaml", "attachments-patch.yaml"}


def manifests(folder: Path = DEPLOY) -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc)
        for path in sorted(folder.rglob("*.yaml"))
        if path.name not in NOT_OBJECTS
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def overlay(name: str) -> list[dict[str, Any]]:
    """The objects an overlay installs: its resources, recursively (patches applied)."""

    def walk(folder: Path) -> list[dict[str, Any]]:
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        docs: list[dict[str, Any]] = []
        for entry in kustomization["resources"]:
            path = (folder / entry).resolve()
            assert path.exists(), f"{folder}: {entry} does not exist"
            if path.is_dir():
                docs.extend(walk(path))
            else:
                docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
        for patch in kustomization.get("patches", []):
            ops = yaml.safe_load((folder / patch["path"]).read_text())
            target = next(
                d
                for d in docs
                if d["kind"] == patch["target"]["kind"]
                and d["metadata"]["name"] == patch["target"]["name"]
            )
            for op in ops:  # the JSON 6902 subset the overlays use: add to a list's end
                assert op["op"] == "add" and op["path"].endswith("/-"), op
                node: Any = target
                for part in op["path"].strip("/").split("/")[:-1]:
                    node = node[int(part)] if isinstance(node, list) else node[part]
                node.append(op["value"])
        return docs

    return walk(DEPLOY / "overlays" / name)


@pytest.mark.parametrize(
    ("path", "doc"),
    manifests(),
    ids=lambda v: str(v.relative_to(DEPLOY)) if isinstance(v, Path) else v.get("kind", ""),
)
def test_every_manifest_validates_against_the_kubernetes_schemas(
    path: Path, doc: dict[str, Any]
) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validation_can_fail() -> None:
    deployment = copy.deepcopy(next(d for _, d in manifests() if d["kind"] == "Deployment"))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    deployment["spec"]["replicas"] = 2
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["path"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_every_overlay_lists_existing_files_and_every_file_is_installed() -> None:
    installed = {
        (d["kind"], d["metadata"]["name"])
        for name in ("cronjob", "controller", "controller-aws")
        for d in overlay(name)
    }
    on_disk = {
        (d["kind"], d["metadata"]["name"])
        for path, d in manifests()
        if path.name != "plan-job.yaml"  # run by hand
    }
    assert installed == on_disk


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


@pytest.mark.parametrize("name", ["controller", "controller-aws"])
def test_the_controller_runs_a_valid_command_safely(name: str) -> None:
    docs = overlay(name)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = _pod(docs)
    (container,) = pod["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.verb == "run" and args.max_deletions == 50 and args.log_format == "json"
    assert args.apply_attachments is (name == "controller-aws")
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert args.listen.endswith(":8080")
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["terminationGracePeriodSeconds"] > 20  # the controller's shutdown grace


def _granted(docs: Iterable[dict[str, Any]]) -> set[tuple[str, str, str, str | None]]:
    """(group, resource, verb, namespace or None for cluster-wide) the roles bind."""
    out: set[tuple[str, str, str, str | None]] = set()
    for role in docs:
        if not role or role["kind"] not in ("Role", "ClusterRole"):
            continue
        namespace = role["metadata"].get("namespace")
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        out.add((group, resource, verb, namespace))
    return out


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def test_the_controller_rbac_grants_what_it_uses_and_no_more(
    api: KubeApi, ec2: Ec2, make_controller: Make
) -> None:
    for obj in widened_objects():  # a finding on a policy: Events
        api.add(obj)
    controller = make_controller(apply_attachments=True)
    wait_for(lambda: ready(controller), "the leader's first reconcile")
    api.add(db_policy(9187))
    wait_for(lambda: 9187 in ingress_ports(ec2, "shop-db"), "a change applied")
    wait_for(lambda: any(e.get("series") for e in api.objects("Event", "shop")), "an Event updated")
    controller.stop()

    by_path = {(r.prefix, r.plural): r for r in RESOURCES.values()}
    used: set[tuple[str, str, str, str | None]] = set()
    for call in api.calls:
        if call.path.rstrip("/") == "/apis":
            continue  # discovery: open to every authenticated user (system:discovery)
        parts = call.path.strip("/").split("/")
        split = 2 if parts[0] == "api" else 3
        prefix, rest = "/" + "/".join(parts[:split]), parts[split:]
        namespace = rest[1] if rest[0] == "namespaces" and len(rest) > 2 else None
        rest = rest[2:] if namespace else rest
        res = by_path.get((prefix, rest[0]))
        if res is None:  # a policy kind looked for in a version the cluster does not serve
            assert call.method == "GET"
            res = Resource(prefix.removeprefix("/apis/"), rest[0])
        named = len(rest) == 2
        if call.method == "GET":
            verb = "watch" if call.query.get("watch") else "get" if named else "list"
        else:
            verb = _VERBS[call.method]
        used.add((res.group, res.plural, verb, namespace if res.plural == "leases" else None))
    granted = _granted(overlay("controller-aws"))
    assert used <= granted, used - granted
    controller_only = _granted(overlay("controller"))
    assert not {g for g in controller_only if g[1] == "securitygrouppolicies"}
    # What the overlays add to the read-only base (which the CronJob shares):
    writes = granted - _granted(yaml.safe_load_all((DEPLOY / "base/rbac.yaml").read_text()))
    # Nothing granted that the controller does not use, but for: get and update (kept for
    # kubectl-like tools and client-side apply), create (server-side apply creates through
    # PATCH, and the API server checks create then) and delete (of a stale object: see
    # test_attachments_follow_the_segments).
    unused = {g for g in writes if g[2] not in ("get", "update", "create", "delete")} - used
    assert not unused, unused
