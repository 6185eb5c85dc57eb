"""API calls and wall time of a first apply and a no-op reconcile against moto's EC2 server.

Run by hand: `python -m benchmarks.aws_sync [--sizes 10,100,1000]`. Prints a Markdown table.
moto is far slower than EC2 per call; the call counts are what carries over.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from typing import Any

import boto3
import requests
from moto.server import ThreadedMotoServer

from nsgsync.compile import compile_intent
from nsgsync.engine import apply_plan, make_plan
from nsgsync.model import Inventory, Topology
from nsgsync.provider import configure
from nsgsync.sources.files import Document, parse_policy, topology_from_mapping


def cluster(n: int, vpc_id: str) -> tuple[Topology, Inventory]:
    """n namespaces, one segment each; default deny, one allow from the previous namespace
    on 8080, DNS to kube-system, and ingress from a monitoring namespace on 9090."""
    segments: list[dict[str, Any]] = [
        {"name": f"ns{i}", "namespace": f"ns{i}", "cidrs": [f"10.{i // 256}.{i % 256}.0/24"]}
        for i in range(n)
    ]
    segments.append({"name": "rest", "namespaceSelector": {}, "cidrs": ["10.200.0.0/16"]})
    topology = topology_from_mapping(
        {
            "apiVersion": "nsgsync.io/v1alpha1",
            "kind": "Topology",
            "cluster": "bench",
            "provider": "aws",
            "podCIDRs": ["10.0.0.0/8"],
            "nodeCIDRs": ["172.16.0.0/20"],
            "segments": segments,
            "aws": {"region": "eu-west-1", "vpcId": vpc_id},
        }
    )
    namespaces = {f"ns{i}": {"team": f"t{i}"} for i in range(n)}
    namespaces["kube-system"] = {}
    namespaces["monitoring"] = {"purpose": "monitoring"}
    policies = []
    for i in range(n):
        ns = f"ns{i}"
        bodies: list[dict[str, Any]] = [
            {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            {
                "podSelector": {},
                "ingress": [
                    {
                        "from": [
                            {"namespaceSelector": {"matchLabels": {"team": f"t{(i - 1) % n}"}}}
                        ],
                        "ports": [{"port": 8080}],
                    }
                ],
            },
            {
                "podSelector": {},
                "ingress": [
                    {
                        "from": [{"namespaceSelector": {"matchLabels": {"purpose": "monitoring"}}}],
                        "ports": [{"port": 9090}],
                    }
                ],
            },
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                                }
                            }
                        ],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    }
                ],
            },
        ]
        for j, spec in enumerate(bodies):
            policies.append(
                parse_policy(
                    Document(
                        "<bench>",
                        1,
                        {
                            "kind": "NetworkPolicy",
                            "metadata": {"name": f"p{j}", "namespace": ns},
                            "spec": spec,
                        },
                    )
                )
            )
    return topology, Inventory.build(policies, namespaces, ())


def measure(endpoint: str, n: int) -> dict[str, Any]:
    client = boto3.client("ec2", region_name="eu-west-1", endpoint_url=endpoint)
    calls: Counter[str] = Counter()
    client.meta.events.register(
        "before-call.ec2.*", lambda event_name, **_: calls.update([event_name.rsplit(".", 1)[-1]])
    )
    vpc_id = client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    topology, inventory = cluster(n, vpc_id)
    intent = compile_intent(topology, inventory)
    adapter = configure(topology)
    session = adapter.session(ec2=client)
    calls.clear()
    start = time.perf_counter()
    # Each plan reads the cloud; apply_plan writes against that same snapshot (no re-read
    # before it starts, only the engine's narrow re-reads before each phase writes).
    planned = make_plan(adapter, intent, session=session)
    apply_plan(adapter, planned, session, progress=lambda _: None)
    first_time = time.perf_counter() - start
    first_calls = sum(calls.values())
    first_writes = sum(v for k, v in calls.items() if not k.startswith("Describe"))
    calls.clear()
    start = time.perf_counter()
    again = make_plan(adapter, intent, session=session)
    apply_plan(adapter, again, session, progress=lambda _: None)
    noop_time = time.perf_counter() - start
    assert again.plan.empty, "a no-op reconcile planned changes"
    return {
        "segments": n + 1,
        "rules": sum(1 for r in planned.plan.desired if r.type == "security-group-rule"),
        "first_calls": first_calls,
        "first_writes": first_writes,
        "first_s": first_time,
        "noop_calls": sum(calls.values()),
        "noop_writes": sum(v for k, v in calls.items() if not k.startswith("Describe")),
        "noop_s": noop_time,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10,100,1000")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        print("| segments | rules | first apply: calls (writes) | time ", end="")
        print("| no-op: calls (writes) | time |")
        print("|---:|---:|---:|---:|---:|---:|")
        for size in (int(s) for s in args.sizes.split(",")):
            requests.post(f"http://{host}:{port}/moto-api/reset", timeout=30)
            r = measure(f"http://{host}:{port}", size)
            print(
                f"| {r['segments']} | {r['rules']} | {r['first_calls']} ({r['first_writes']}) "
                f"| {r['first_s']:.1f} s | {r['noop_calls']} ({r['noop_writes']}) "
                f"| {r['noop_s']:.2f} s |",
                flush=True,
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
