"""compile_intent at scale, in memory: a synthetic cluster, compiled and measured.

    python -m benchmarks.compile_scale [--sizes 100,1000,10000] [--runs 5]

A micro-benchmark of the compiler alone: the model objects are built in memory, so reading
and parsing files, validating manifests, rendering for a cloud and printing the output are
not measured. What a user waits for, `nsgsync` run as a process on files, is measured by
`benchmarks/run.py`.

Each size is N policies over N/5 application namespaces, two segments per namespace
(the frontend tier, and every other pod of the namespace) and a final catch-all
`namespaceSelector: {}` for the system namespaces. The policy mix is what platform
teams write: default-deny, DNS egress to kube-system, tier-to-tier allows on named
ports, cross-namespace allows by team label and from monitoring, ipBlock with except.

Every size runs in a child process of its own, so that max RSS is that size's and not
the largest seen so far. Wall time (and CPU time, which other load on the machine
disturbs less) is measured without tracemalloc, which slows Python code several-fold;
the tracemalloc peak comes from a separate, last run. "inputs built" is the time to
make the model objects, mostly Topology validation, and is not part of the compile.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass
from typing import Any

from nsgsync.cli.main import GC_THRESHOLDS
from nsgsync.compile import compile_intent
from nsgsync.model import ContainerPort, Inventory, NetworkPolicy, PodInfo, Protocol, Topology
from nsgsync.sources.files import Document, parse_policy, topology_from_mapping

POLICIES_PER_NAMESPACE = 5
SEED = 20240601
# About twenty namespaces per team, so a "from team=X" peer spans ~40 segments.
NAMESPACES_PER_TEAM = 20
PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]


@dataclass(frozen=True)
class Cluster:
    topology: Topology
    inventory: Inventory
    app_namespaces: int


@dataclass
class Result:
    size: int
    policies: int
    namespaces: int
    segments: int
    pods: int
    rules: int
    findings: int
    runs: int
    build_s: float
    compile_s: float
    compile_cpu_s: float
    traced_peak_mb: float
    max_rss_mb: float


# --- the synthetic cluster ---


def _ns_name(i: int) -> str:
    return f"app-{i:05d}"


def _policy(ns: str, name: str, spec: dict[str, Any], line: int) -> NetworkPolicy:
    # Through the file parser, so defaulting (policyTypes) and validation are the real ones.
    body = {"kind": "NetworkPolicy", "metadata": {"namespace": ns, "name": name}, "spec": spec}
    return parse_policy(Document("<synthetic>", line, body))


def _ports(*spec: tuple[str, int | str]) -> list[dict[str, Any]]:
    return [{"protocol": proto, "port": port} for proto, port in spec]


def _namespace_policies(rng: random.Random, ns: str, team: str, line: int) -> list[NetworkPolicy]:
    dns = (
        _ports(("UDP", 53), ("TCP", 53))
        if rng.random() < 0.5
        else _ports(("UDP", "dns"), ("TCP", "dns-tcp"))
    )
    specs: list[tuple[str, dict[str, Any]]] = [
        ("default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        (
            "allow-dns",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                                },
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": dns,
                    }
                ],
            },
        ),
        (
            "backend-ingress",
            {
                "podSelector": {"matchLabels": {"tier": "backend"}},
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {"tier": "frontend"}}}],
                        "ports": _ports(("TCP", "http")),
                    },
                    {
                        "from": [
                            {
                                "namespaceSelector": {"matchLabels": {"team": team}},
                                "podSelector": {"matchLabels": {"tier": "backend"}},
                            }
                        ],
                        "ports": _ports(("TCP", "http")),
                    },
                ],
            },
        ),
        (
            "db-ingress",
            {
                "podSelector": {"matchLabels": {"tier": "db"}},
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {"tier": "backend"}}}],
                        "ports": _ports(("TCP", 5432)),
                    },
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                                }
                            }
                        ],
                        "ports": _ports(("TCP", "metrics")),
                    },
                ],
            },
        ),
    ]
    flavour = rng.randrange(3)
    if flavour == 0:
        specs.append(
            (
                "frontend-ingress",
                {
                    "podSelector": {"matchLabels": {"tier": "frontend"}},
                    "ingress": [
                        {
                            "from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE}}],
                            "ports": _ports(("TCP", 443), ("TCP", "http")),
                        },
                        {
                            "from": [
                                {
                                    "namespaceSelector": {
                                        "matchLabels": {
                                            "kubernetes.io/metadata.name": "ingress-nginx"
                                        }
                                    }
                                }
                            ]
                        },
                    ],
                },
            )
        )
    elif flavour == 1:
        partner = f"198.51.100.{rng.randrange(0, 256, 16)}/28"
        specs.append(
            (
                "app-egress",
                {
                    "podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [{"podSelector": {"matchLabels": {"tier": "backend"}}}],
                            "ports": _ports(("TCP", "http")),
                        },
                        {
                            "to": [{"podSelector": {"matchLabels": {"tier": "db"}}}],
                            "ports": [{"protocol": "TCP", "port": 5432}],
                        },
                        {
                            "to": [
                                {
                                    "namespaceSelector": {"matchLabels": {"team": team}},
                                    "podSelector": {"matchLabels": {"tier": "backend"}},
                                }
                            ],
                            "ports": _ports(("TCP", "http")),
                        },
                        {
                            "to": [
                                {
                                    "ipBlock": {
                                        "cidr": "198.51.100.0/24",
                                        "except": [partner],
                                    }
                                }
                            ],
                            "ports": [{"protocol": "TCP", "port": 8443, "endPort": 8453}],
                        },
                    ],
                },
            )
        )
    else:
        specs.append(
            (
                "allow-monitoring",
                {
                    "podSelector": {},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [
                                {
                                    "namespaceSelector": {
                                        "matchExpressions": [
                                            {
                                                "key": "purpose",
                                                "operator": "In",
                                                "values": ["monitoring", "logging"],
                                            }
                                        ]
                                    }
                                }
                            ],
                            "ports": _ports(("TCP", "metrics")),
                        }
                    ],
                },
            )
        )
    return [_policy(ns, name, spec, line + k) for k, (name, spec) in enumerate(specs)]


def _pod(ns: str, name: str, kind: str, labels: dict[str, str], *ports: Any) -> PodInfo:
    return PodInfo(
        namespace=ns,
        name=name,
        kind=kind,
        labels=labels,
        ports=tuple(
            ContainerPort(name=n, port=p, protocol=Protocol(proto)) for n, p, proto in ports
        ),
    )


def build_cluster(policies: int, seed: int = SEED) -> Cluster:
    """N policies, N/5 application namespaces, 2 segments each, plus a catch-all."""
    rng = random.Random(seed)
    n_ns = max(1, policies // POLICIES_PER_NAMESPACE)
    teams = max(2, n_ns // NAMESPACES_PER_TEAM)
    namespaces: dict[str, dict[str, str]] = {
        "kube-system": {},
        "monitoring": {"purpose": "monitoring"},
        "logging": {"purpose": "logging"},
        "ingress-nginx": {},
    }
    pods: list[PodInfo] = [
        _pod(
            "kube-system",
            "coredns",
            "Deployment",
            {"k8s-app": "kube-dns"},
            ("dns", 53, "UDP"),
            ("dns-tcp", 53, "TCP"),
            ("metrics", 9153, "TCP"),
        ),
        _pod(
            "monitoring", "prometheus", "StatefulSet", {"app": "prometheus"}, ("web", 9090, "TCP")
        ),
        _pod("logging", "fluent-bit", "DaemonSet", {"app": "fluent-bit"}, ("http", 2020, "TCP")),
        _pod("ingress-nginx", "controller", "Deployment", {"app": "ingress-nginx"}),
    ]
    segments: list[dict[str, Any]] = []
    policy_list: list[NetworkPolicy] = []
    for i in range(n_ns):
        ns = _ns_name(i)
        team = f"team-{rng.randrange(teams):03d}"
        namespaces[ns] = {"team": team, "env": rng.choice(["prod", "staging"])}
        # Two /24s per namespace, 10.0.0.0/24 upwards; the catch-all sits in 10.128.0.0/9.
        web, rest = 2 * i, 2 * i + 1
        segments.append(
            {
                "name": f"{ns}-web",
                "namespace": ns,
                "podSelector": {"matchLabels": {"tier": "frontend"}},
                "cidrs": [f"10.{web // 256}.{web % 256}.0/24"],
            }
        )
        segments.append(
            {"name": ns, "namespace": ns, "cidrs": [f"10.{rest // 256}.{rest % 256}.0/24"]}
        )
        http = rng.choice([8080, 8000, 3000])
        pods += [
            _pod(
                ns, "web", "Deployment", {"app": "web", "tier": "frontend"}, ("http", 8080, "TCP")
            ),
            _pod(
                ns,
                "api",
                "Deployment",
                {"app": "api", "tier": "backend"},
                ("http", http, "TCP"),
                ("metrics", 9090, "TCP"),
            ),
            _pod(
                ns,
                "db",
                "StatefulSet",
                {"app": "postgres", "tier": "db"},
                ("postgres", 5432, "TCP"),
                ("metrics", 9187, "TCP"),
            ),
        ]
        if rng.random() < 0.3:
            # A worker with no tier label: the namespace segment's pods are then not all
            # selected by the tier policies, which is where precision gets interesting.
            pods.append(_pod(ns, "worker", "Job", {"app": "worker"}))
        policy_list += _namespace_policies(rng, ns, team, line=i * POLICIES_PER_NAMESPACE)
    segments.append({"name": "system", "namespaceSelector": {}, "cidrs": ["10.128.0.0/9"]})
    topology = topology_from_mapping(
        {
            "apiVersion": "nsgsync.io/v1alpha1",
            "kind": "Topology",
            "cluster": "bench",
            "provider": "aws",
            "podCIDRs": ["10.0.0.0/8"],
            "nodeCIDRs": ["172.16.0.0/16"],
            "segments": segments,
            "aws": {"region": "eu-west-1", "vpcId": "vpc-0bench"},
        }
    )
    return Cluster(topology, Inventory.build(policy_list, namespaces, pods), n_ns)


# --- measuring ---


def _max_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS; this benchmark reports Linux numbers).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(size: int, runs: int) -> Result:
    # As the CLI runs the compile: with its collector thresholds (nsgsync.cli.main).
    gc.set_threshold(*GC_THRESHOLDS)
    start = time.perf_counter()
    cluster = build_cluster(size)
    build_s = time.perf_counter() - start
    times = []
    cpu = []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        intent = compile_intent(cluster.topology, cluster.inventory)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        del intent  # keep only one Intent alive, so RSS is not the sum of several
    # Before tracemalloc starts: its own bookkeeping would inflate the process's RSS.
    max_rss_mb = _max_rss_mb()
    tracemalloc.start()
    intent = compile_intent(cluster.topology, cluster.inventory)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rules = sum(len(s.ingress.rules) + len(s.egress.rules) for s in intent.segments)
    return Result(
        size=size,
        policies=len(cluster.inventory.policies),
        namespaces=len(cluster.inventory.namespaces),
        segments=len(cluster.topology.segments),
        pods=len(cluster.inventory.pods),
        rules=rules,
        findings=len(intent.findings),
        runs=runs,
        build_s=build_s,
        compile_s=statistics.median(times),
        compile_cpu_s=statistics.median(cpu),
        traced_peak_mb=peak / 2**20,
        max_rss_mb=max_rss_mb,
    )


def _runs_for(size: int, runs: int) -> int:
    return 1 if size >= 10_000 else runs


def table(results: list[Result]) -> str:
    head = (
        "| policies | namespaces | segments | pods | Intent rules | findings "
        "| inputs built (s) | compile wall (s) | compile CPU (s) | runs "
        "| tracemalloc peak (MB) | max RSS (MB) |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = "".join(
        f"| {r.policies:,} | {r.namespaces:,} | {r.segments:,} | {r.pods:,} | {r.rules:,} "
        f"| {r.findings:,} | {r.build_s:.1f} | {r.compile_s:.3f} | {r.compile_cpu_s:.3f} "
        f"| {r.runs} "
        f"| {r.traced_peak_mb:.1f} | {r.max_rss_mb:.0f} |\n"
        for r in results
    )
    return head + rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="100,1000,10000", help="policy counts, comma-separated")
    parser.add_argument("--runs", type=int, default=5, help="runs per size (median); 1 at 10,000+")
    parser.add_argument("--json", action="store_true", help="print JSON lines, not a table")
    # Internal: measure one size in this process (the parent runs one child per size).
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.single is not None:
        print(json.dumps(asdict(measure(args.single, _runs_for(args.single, args.runs)))))
        return 0
    results = []
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        child = subprocess.run(
            [
                sys.executable,
                *("-m", "benchmarks.compile_scale"),
                *("--single", str(size), "--runs", str(args.runs)),
            ],
            capture_output=True,
            text=True,
        )
        if child.returncode != 0:
            sys.stderr.write(child.stderr)
            return child.returncode
        result = Result(**json.loads(child.stdout.strip().splitlines()[-1]))
        results.append(result)
        if args.json:
            print(json.dumps(asdict(result)), flush=True)
        else:
            print(
                f"size {size}: compile {result.compile_s:.3f}s (cluster built in "
                f"{result.build_s:.1f}s)",
                file=sys.stderr,
                flush=True,
            )
    if not args.json:
        print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
