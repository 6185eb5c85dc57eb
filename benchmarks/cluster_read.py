"""`--from-cluster` at scale: nsgsync reading a large cluster through the API, as a process.

    python -m benchmarks.cluster_read [--policies 10000] [--pods 20000]

Serves the generated cluster of `benchmarks.generate` (its NetworkPolicies, Namespaces and
workloads, plus running Pods made from the workloads' templates up to `--pods`) from the
local API server stand-in of the tests, then times `nsgsync compile --from-cluster -o json`
as a child process: wall and CPU time, peak RSS, and the requests it made (lists are paged,
`limit`/`continue`, never a request per object). Beside it, in the same run, the floor of
`benchmarks.run`: the time PyYAML's C loader takes to parse the same manifests from files.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from benchmarks import run
from tests.fakes.kube_api import KubeApi

TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def cluster_objects(manifests: Path) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for path in sorted(manifests.rglob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader):
            if not doc:
                continue
            objects.extend(doc.get("items", []) if doc["kind"].endswith("List") else [doc])
    return objects


def running_pods(objects: list[dict[str, Any]], want: int) -> list[dict[str, Any]]:
    """Pods as the workloads' controllers would run them, with addresses, up to `want`."""
    have = sum(1 for o in objects if o["kind"] == "Pod")
    templates = [o for o in objects if o["kind"] in TEMPLATE_KINDS]
    pods: list[dict[str, Any]] = []
    i = 0
    while have + len(pods) < want and templates:
        owner = templates[i % len(templates)]
        template = owner["spec"]["template"]
        pods.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{owner['metadata']['name']}-{i:06d}",
                    "namespace": owner["metadata"]["namespace"],
                    "labels": copy.deepcopy(template["metadata"].get("labels", {})),
                },
                "spec": copy.deepcopy(template["spec"]),
                "status": {
                    "phase": "Running",
                    "podIP": f"10.{200 + i // 65536 % 50}.{i // 256 % 256}.{i % 256}",
                },
            }
        )
        i += 1
    return pods


def _address(i: int) -> str:
    return f"10.{200 + i // 65536 % 50}.{i // 256 % 256}.{i % 256}"


def kubeconfig(api: KubeApi, where: Path) -> Path:
    path = where / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "bench", "cluster": {"server": api.url}}],
                "users": [{"name": "bench", "user": {"token": "t"}}],
                "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}],
                "current-context": "bench",
            }
        )
    )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=10_000)
    parser.add_argument("--pods", type=int, default=20_000)
    parser.add_argument("--cache", type=Path, default=run.CACHE)
    args = parser.parse_args(argv)
    cluster = run.ensure_cluster(args.policies, cache=args.cache)
    objects = cluster_objects(cluster / "manifests")
    objects += running_pods(objects, args.pods)
    kinds = Counter(o["kind"] for o in objects)
    run.progress(f"serving {sum(kinds.values())} objects: {dict(sorted(kinds.items()))}")
    with tempfile.TemporaryDirectory() as tmp, KubeApi(token="t") as api:
        work = Path(tmp)
        for obj in objects:
            api.add(obj)
        config = kubeconfig(api, work)
        command = [
            *run.nsgsync_command(),
            "compile",
            "--from-cluster",
            "--kubeconfig",
            str(config),
            "--topology",
            str(cluster / "topology-aws.yaml"),
            "-o",
            "json",
        ]
        before = len(api.calls)
        sample = run.run_child(command, out=work / "intent.json", timeout=1800)
        if sample.exit_code != 0:
            sys.stderr.write((work / "intent.err").read_text())
            return 1
        requests = len(api.calls) - before
        intent = json.loads((work / "intent.json").read_bytes())
        floor = run.run_child(
            [sys.executable, "-c", run.FLOOR, str(cluster / "manifests")],
            out=work / "floor.txt",
            timeout=1800,
        )
    result = {
        "objects": dict(sorted(kinds.items())),
        "requests": requests,
        "compile_from_cluster": {
            "wall_s": round(sample.wall_s, 2),
            "cpu_s": round(sample.cpu_s, 2),
            "peak_rss_mb": round(sample.rss_mb),
            "findings": len(intent["findings"]),
        },
        "floor_parse_files": {"wall_s": round(floor.wall_s, 2), "cpu_s": round(floor.cpu_s, 2)},
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
