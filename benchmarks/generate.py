"""A realistic cluster written as files: a manifests folder and one topology per cloud.

    python -m benchmarks.generate OUT [--policies 1000] [--seed N]

What the end-to-end benchmark (`benchmarks/run.py`) feeds to `nsgsync` as a user would:
a GitOps-style folder of YAML manifests and a topology file. The RNG is seeded and the
files are written in a fixed order, so the same size and seed give the same bytes.

For N policies (5 per namespace):

- N/5 application namespaces `app-NNNNN` (Namespace objects labelled `team`, about 20
  namespaces per team, and `env`), and 4 system namespaces: `kube-system` (CoreDNS),
  `monitoring` (`purpose: monitoring`), `logging` (`purpose: logging`), `ingress-nginx`.
- Two segments per application namespace, by tier: `<ns>-web` (`tier: frontend`) and
  `<ns>` (every other pod of the namespace), a /24 each; then a catch-all `system`
  segment (`namespaceSelector: {}`) for the system namespaces.
- Per application namespace 4 Deployments (web, api, worker, cache) with named container
  ports, a postgres StatefulSet in most, and a bare migration Pod in some: the `<ns>`
  segment holds several apps, so policies that pick one app select *some* of its pods.
- Per application namespace 5 NetworkPolicies: default-deny (both directions); DNS
  egress to kube-system (numbers or named ports); api ingress from the same namespace by
  app label (`In`) and from the team's namespaces (namespaceSelector AND podSelector);
  data ingress (tier `In`, named ports resolving through container ports, monitoring
  pods by `Exists`); and one of: frontend ingress from the internet (ipBlock with
  except) and ingress-nginx, app egress (team peers, an ipBlock with except on an
  `endPort` range), monitoring ingress (`purpose In`, podSelector `NotIn`), or a
  partner team's prod namespaces (matchLabels AND `NotIn`).

Files: `manifests/system/<ns>.yaml`, `manifests/<team>/<ns>/{namespace,networkpolicies,
workloads}.yaml` (every tenth namespace's policies as one `kind: List`), and
`topology-aws.yaml`, `topology-azure.yaml`, `topology-gcp.yaml`, the same topology but
for `provider:`, with every segment's Azure subnet and quotas raised to the cluster's
size. `cluster.json` describes what was written (counts, and a connection to explain).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

SEED = 20240601
POLICIES_PER_NAMESPACE = 5
# About twenty namespaces per team, so a "from team=X" peer spans ~40 segments.
NAMESPACES_PER_TEAM = 20
CLOUDS = ("aws", "azure", "gcp")
PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "rg-bench-net"
# The C emitter when PyYAML has it (10x faster at 10,000 policies); both emit the same text
# for the plain scalars, mappings and lists written here.
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass
class Counts:
    """What a generated cluster holds, written to cluster.json for the runner."""

    policies: int = 0
    namespaces: int = 0
    segments: int = 0
    deployments: int = 0
    statefulsets: int = 0
    daemonsets: int = 0
    pods: int = 0
    files: int = 0
    bytes: int = 0
    # One connection for `nsgsync explain`: web to api in the first namespace, on api's port.
    explain: dict[str, str] = field(default_factory=dict)


def _ns_name(i: int) -> str:
    return f"app-{i:05d}"


def _team(i: int) -> str:
    return f"team-{i:03d}"


def _dump(docs: Iterable[dict[str, Any]]) -> str:
    return yaml.dump_all(
        list(docs), Dumper=_DUMPER, sort_keys=False, default_flow_style=False, width=100
    )


def _namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}},
    }


def _container(
    name: str, image: str, ports: list[tuple[str, int, str]], *, probe: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": n, "containerPort": p, "protocol": proto} for n, p, proto in ports],
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {
                "name": "POD_NAME",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
            },
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
    }
    if not ports:
        del body["ports"]
    if probe is not None:
        body["readinessProbe"] = {
            "httpGet": {"path": "/healthz", "port": probe},
            "periodSeconds": 10,
        }
    return body


def _workload(
    kind: str,
    ns: str,
    name: str,
    labels: dict[str, str],
    containers: list[dict[str, Any]],
    *,
    replicas: int = 2,
) -> dict[str, Any]:
    api = "v1" if kind == "Pod" else "apps/v1"
    meta = {"name": name, "namespace": ns, "labels": dict(labels)}
    pod_spec = {"serviceAccountName": labels.get("app", name), "containers": containers}
    if kind == "Pod":
        return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": pod_spec}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": dict(labels)},
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    if kind != "DaemonSet":
        spec = {"replicas": replicas, **spec}
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def _policy(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def _ports(*spec: tuple[str, int | str]) -> list[dict[str, Any]]:
    return [{"protocol": proto, "port": port} for proto, port in spec]


def _ns_is(name: str) -> dict[str, Any]:
    return {"matchLabels": {"kubernetes.io/metadata.name": name}}


def _policies(rng: random.Random, ns: str, team: str, partner: str) -> list[dict[str, Any]]:
    dns = (
        _ports(("UDP", 53), ("TCP", 53))
        if rng.random() < 0.5
        else _ports(("UDP", "dns"), ("TCP", "dns-tcp"))
    )
    out = [
        _policy(ns, "default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        _policy(
            ns,
            "allow-dns",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": _ns_is("kube-system"),
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": dns,
                    }
                ],
            },
        ),
        _policy(
            ns,
            "api-ingress",
            {
                "podSelector": {"matchLabels": {"app": "api"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "podSelector": {
                                    "matchExpressions": [
                                        {
                                            "key": "app",
                                            "operator": "In",
                                            "values": ["web", "worker"],
                                        }
                                    ]
                                }
                            }
                        ],
                        "ports": _ports(("TCP", "http")),
                    },
                    {
                        "from": [
                            {
                                "namespaceSelector": {"matchLabels": {"team": team}},
                                "podSelector": {"matchLabels": {"app": "api"}},
                            }
                        ],
                        "ports": _ports(("TCP", "http")),
                    },
                ],
            },
        ),
        _policy(
            ns,
            "data-ingress",
            {
                "podSelector": {
                    "matchExpressions": [
                        {"key": "tier", "operator": "In", "values": ["db", "cache"]}
                    ]
                },
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "podSelector": {
                                    "matchExpressions": [
                                        {
                                            "key": "app",
                                            "operator": "In",
                                            "values": ["api", "worker"],
                                        }
                                    ]
                                }
                            }
                        ],
                        "ports": _ports(("TCP", "postgres"), ("TCP", "redis")),
                    },
                    {
                        "from": [
                            {
                                "namespaceSelector": _ns_is("monitoring"),
                                "podSelector": {
                                    "matchExpressions": [{"key": "app", "operator": "Exists"}]
                                },
                            }
                        ],
                        "ports": _ports(("TCP", "metrics")),
                    },
                ],
            },
        ),
    ]
    flavour = rng.randrange(4)
    if flavour == 0:
        out.append(
            _policy(
                ns,
                "frontend-ingress",
                {
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "ingress": [
                        {
                            "from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE}}],
                            "ports": _ports(("TCP", 443), ("TCP", "http")),
                        },
                        {"from": [{"namespaceSelector": _ns_is("ingress-nginx")}]},
                    ],
                },
            )
        )
    elif flavour == 1:
        excluded = f"198.51.100.{rng.randrange(0, 256, 16)}/28"
        out.append(
            _policy(
                ns,
                "app-egress",
                {
                    "podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                            "ports": _ports(("TCP", "http")),
                        },
                        {
                            "to": [
                                {
                                    "namespaceSelector": {"matchLabels": {"team": team}},
                                    "podSelector": {"matchLabels": {"app": "api"}},
                                }
                            ],
                            "ports": _ports(("TCP", "http")),
                        },
                        {
                            "to": [{"ipBlock": {"cidr": "198.51.100.0/24", "except": [excluded]}}],
                            "ports": [{"protocol": "TCP", "port": 8443, "endPort": 8453}],
                        },
                    ],
                },
            )
        )
    elif flavour == 2:
        out.append(
            _policy(
                ns,
                "allow-monitoring",
                {
                    "podSelector": {
                        "matchExpressions": [
                            {"key": "app", "operator": "NotIn", "values": ["migrate"]}
                        ]
                    },
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
    else:
        out.append(
            _policy(
                ns,
                "partner-ingress",
                {
                    "podSelector": {"matchLabels": {"app": "api"}},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [
                                {
                                    "namespaceSelector": {
                                        "matchLabels": {"team": partner},
                                        "matchExpressions": [
                                            {"key": "env", "operator": "NotIn", "values": ["dev"]}
                                        ],
                                    },
                                    "podSelector": {
                                        "matchExpressions": [
                                            {
                                                "key": "app",
                                                "operator": "In",
                                                "values": ["api", "worker"],
                                            }
                                        ]
                                    },
                                }
                            ],
                            "ports": _ports(("TCP", "http")),
                        }
                    ],
                },
            )
        )
    return out


def _app_workloads(rng: random.Random, ns: str, http: int, counts: Counts) -> list[dict[str, Any]]:
    reg = "registry.example.com"
    out = [
        _workload(
            "Deployment",
            ns,
            "web",
            {"app": "web", "tier": "frontend"},
            [_container("web", f"{reg}/web:1.4.2", [("http", 8080, "TCP")], probe="http")],
            replicas=3,
        ),
        _workload(
            "Deployment",
            ns,
            "api",
            {"app": "api", "tier": "backend"},
            [
                _container(
                    "api",
                    f"{reg}/api:2.0.1",
                    [("http", http, "TCP"), ("metrics", 9090, "TCP")],
                    probe="http",
                )
            ],
            replicas=3,
        ),
        _workload(
            "Deployment",
            ns,
            "worker",
            {"app": "worker", "tier": "backend"},
            [_container("worker", f"{reg}/worker:2.0.1", [("metrics", 9090, "TCP")], probe=None)],
        ),
        _workload(
            "Deployment",
            ns,
            "cache",
            {"app": "cache", "tier": "cache"},
            [
                _container("redis", "redis:7.2", [("redis", 6379, "TCP")], probe=None),
                _container(
                    "exporter",
                    "oliver006/redis_exporter:v1.58",
                    [("metrics", 9121, "TCP")],
                    probe=None,
                ),
            ],
            replicas=1,
        ),
    ]
    counts.deployments += 4
    if rng.random() < 0.7:
        out.append(
            _workload(
                "StatefulSet",
                ns,
                "postgres",
                {"app": "postgres", "tier": "db"},
                [
                    _container(
                        "postgres",
                        "postgres:16.2",
                        [("postgres", 5432, "TCP"), ("metrics", 9187, "TCP")],
                        probe=None,
                    )
                ],
            )
        )
        counts.statefulsets += 1
    if rng.random() < 0.3:
        # A bare Pod with no tier, left over from a migration: the namespace segment's pods
        # are then not all selected by the tier policies.
        out.append(
            _workload(
                "Pod",
                ns,
                f"migrate-{rng.randrange(16**5):05x}",
                {"app": "migrate"},
                [_container("migrate", f"{reg}/api:2.0.1", [], probe=None)],
            )
        )
        counts.pods += 1
    return out


def _system(counts: Counts) -> dict[str, list[dict[str, Any]]]:
    files = {
        "kube-system": [
            _namespace("kube-system", {}),
            _workload(
                "Deployment",
                "kube-system",
                "coredns",
                {"k8s-app": "kube-dns"},
                [
                    _container(
                        "coredns",
                        "registry.k8s.io/coredns/coredns:v1.11.1",
                        [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")],
                        probe=None,
                    )
                ],
            ),
        ],
        "monitoring": [
            _namespace("monitoring", {"purpose": "monitoring"}),
            _workload(
                "StatefulSet",
                "monitoring",
                "prometheus",
                {"app": "prometheus"},
                [
                    _container(
                        "prometheus", "prom/prometheus:v2.51", [("web", 9090, "TCP")], probe="web"
                    )
                ],
            ),
        ],
        "logging": [
            _namespace("logging", {"purpose": "logging"}),
            _workload(
                "DaemonSet",
                "logging",
                "fluent-bit",
                {"app": "fluent-bit"},
                [
                    _container(
                        "fluent-bit", "fluent/fluent-bit:3.0", [("http", 2020, "TCP")], probe=None
                    )
                ],
            ),
        ],
        "ingress-nginx": [
            _namespace("ingress-nginx", {}),
            _workload(
                "Deployment",
                "ingress-nginx",
                "controller",
                {"app": "ingress-nginx"},
                [
                    _container(
                        "controller",
                        "registry.k8s.io/ingress-nginx/controller:v1.10.0",
                        [("http", 80, "TCP"), ("https", 443, "TCP")],
                        probe=None,
                    )
                ],
            ),
        ],
    }
    counts.namespaces += 4
    counts.deployments += 2
    counts.statefulsets += 1
    counts.daemonsets += 1
    return files


def _subnet(segment: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
        f"Microsoft.Network/virtualNetworks/vnet-bench/subnets/pods-{segment}"
    )


def _topology(provider: str, segments: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "nsgsync.io/v1alpha1",
        "kind": "Topology",
        "cluster": "bench",
        "provider": provider,
        "podCIDRs": ["10.0.0.0/8"],
        "nodeCIDRs": ["172.16.0.0/16"],
        "segments": segments,
        # A cluster this size has had its quotas raised: the benchmark measures nsgsync,
        # not the quota check refusing the plan.
        "aws": {"region": "eu-west-1", "vpcId": "vpc-0bench", "maxRulesPerGroup": 1000},
        "azure": {
            "subscriptionId": SUBSCRIPTION,
            "resourceGroup": RESOURCE_GROUP,
            "location": "westeurope",
            "vnetCIDRs": ["10.0.0.0/8", "172.16.0.0/16"],
        },
        "gcp": {
            "project": "bench-project",
            "network": "vpc-bench",
            "targetTags": ["gke-bench-node"],
            "maxRules": 1_000_000,
        },
    }


def _write(path: Path, text: str, counts: Counts) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    path.write_bytes(data)
    counts.files += 1
    counts.bytes += len(data)


def generate(out: Path, policies: int, *, seed: int = SEED) -> Counts:
    """Write the cluster of `policies` NetworkPolicies under `out` (replaced if present)."""
    rng = random.Random(seed)
    counts = Counts()
    if out.exists():
        shutil.rmtree(out)
    manifests = out / "manifests"
    for ns, docs in _system(counts).items():
        _write(manifests / "system" / f"{ns}.yaml", _dump(docs), counts)
    n_ns = max(1, policies // POLICIES_PER_NAMESPACE)
    teams = max(2, n_ns // NAMESPACES_PER_TEAM)
    segments: list[dict[str, Any]] = []
    for i in range(n_ns):
        ns = _ns_name(i)
        t = rng.randrange(teams)
        team = _team(t)
        partner = _team((t + 1 + rng.randrange(teams - 1)) % teams)
        env = rng.choice(["prod", "prod", "staging", "dev"])
        http = rng.choice([8080, 8000, 3000])
        folder = manifests / team / ns
        _write(
            folder / "namespace.yaml", _dump([_namespace(ns, {"team": team, "env": env})]), counts
        )
        counts.namespaces += 1
        policy_docs = _policies(rng, ns, team, partner)
        counts.policies += len(policy_docs)
        if i % 10 == 9:
            policy_docs = [{"apiVersion": "v1", "kind": "List", "items": policy_docs}]
        _write(folder / "networkpolicies.yaml", _dump(policy_docs), counts)
        _write(folder / "workloads.yaml", _dump(_app_workloads(rng, ns, http, counts)), counts)
        # Two /24s per namespace, 10.0.0.0/24 upwards; the catch-all sits in 10.128.0.0/9.
        for k, segment in ((2 * i, f"{ns}-web"), (2 * i + 1, ns)):
            body: dict[str, Any] = {"name": segment, "namespace": ns}
            if segment.endswith("-web"):
                body["podSelector"] = {"matchLabels": {"tier": "frontend"}}
            body["cidrs"] = [f"10.{k // 256}.{k % 256}.0/24"]
            body["azure"] = {"subnetId": _subnet(segment)}
            segments.append(body)
        if i == 0:
            counts.explain = {"from": f"{ns}/web", "to": f"{ns}/api", "port": f"{http}/TCP"}
    segments.append(
        {
            "name": "system",
            "namespaceSelector": {},
            "cidrs": ["10.128.0.0/9"],
            "azure": {"subnetId": _subnet("system")},
        }
    )
    counts.segments = len(segments)
    for cloud in CLOUDS:
        head = f"# Generated by benchmarks/generate.py ({policies} policies, seed {seed}).\n"
        _write(out / f"topology-{cloud}.yaml", head + _dump([_topology(cloud, segments)]), counts)
    (out / "cluster.json").write_text(json.dumps(asdict(counts), indent=2) + "\n")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("out", type=Path, help="folder to write (replaced if present)")
    parser.add_argument("--policies", type=int, default=1000, help="NetworkPolicies, 5 per ns")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    counts = generate(args.out, args.policies, seed=args.seed)
    print(json.dumps(asdict(counts)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
