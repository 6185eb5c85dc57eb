"""A generated cluster of any size, for testing the CLI as a user would at scale.

Per namespace: a web Deployment (named ports http, metrics), an api Deployment and a db
Deployment; five policies (default deny, egress to DNS and within the namespace, web from
the internet, api from web, db from the next namespace's api); two segments (web, the
rest of the namespace). A catch-all segment holds kube-system and whatever else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

POLICIES_PER_NAMESPACE = 5


def _cidr(k: int) -> str:
    return f"10.{1 + k // 256}.{k % 256}.0/24"


def _deployment(ns: str, name: str, labels: dict[str, str], ports: list[Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": name, "image": "x", "ports": ports}]},
            },
        },
    }


def _policy(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def write_cluster(root: Path, *, policies: int = 1000, provider: str = "aws") -> list[str]:
    """Write manifests and a topology under `root`; the CLI's input arguments."""
    count = max(1, policies // POLICIES_PER_NAMESPACE)
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}},
        _deployment(
            "kube-system",
            "coredns",
            {"k8s-app": "kube-dns"},
            [{"name": "dns", "containerPort": 53, "protocol": "UDP"}],
        ),
    ]
    segments: list[dict[str, Any]] = []
    for i in range(count):
        ns, nxt = f"ns-{i}", f"ns-{(i + 1) % count}"
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"team": f"team-{i % 10}"}},
            }
        )
        docs.append(
            _deployment(
                ns,
                "web",
                {"app": "web", "tier": "frontend"},
                [
                    {"name": "http", "containerPort": 8080},
                    {"name": "metrics", "containerPort": 9090},
                ],
            )
        )
        docs.append(
            _deployment(
                ns,
                "api",
                {"app": "api", "tier": "backend"},
                [{"name": "http", "containerPort": 8081}],
            )
        )
        docs.append(
            _deployment(
                ns, "db", {"app": "db", "tier": "db"}, [{"name": "postgres", "containerPort": 5432}]
            )
        )
        docs += [
            _policy(
                ns, "default-deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
            ),
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
                                    "namespaceSelector": {
                                        "matchLabels": {
                                            "kubernetes.io/metadata.name": "kube-system"
                                        }
                                    }
                                }
                            ],
                            "ports": [{"protocol": "UDP", "port": 53}],
                        },
                        {"to": [{"podSelector": {}}]},
                    ],
                },
            ),
            _policy(
                ns,
                "web-from-internet",
                {
                    "podSelector": {"matchLabels": {"tier": "frontend"}},
                    "ingress": [
                        {
                            "from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
                            "ports": [{"port": "http"}],
                        }
                    ],
                },
            ),
            _policy(
                ns,
                "api-from-web",
                {
                    "podSelector": {"matchLabels": {"tier": "backend"}},
                    "ingress": [
                        {
                            "from": [{"podSelector": {"matchLabels": {"tier": "frontend"}}}],
                            "ports": [{"port": "http"}],
                        }
                    ],
                },
            ),
            _policy(
                ns,
                "db-from-next-api",
                {
                    "podSelector": {"matchLabels": {"tier": "db"}},
                    "ingress": [
                        {
                            "from": [
                                {
                                    "namespaceSelector": {
                                        "matchLabels": {"kubernetes.io/metadata.name": nxt}
                                    },
                                    "podSelector": {"matchLabels": {"tier": "backend"}},
                                }
                            ],
                            "ports": [{"port": "postgres"}],
                        }
                    ],
                },
            ),
        ]
        segments.append(
            {
                "name": f"{ns}-web",
                "namespace": ns,
                "podSelector": {"matchLabels": {"tier": "frontend"}},
                "cidrs": [_cidr(2 * i)],
            }
        )
        segments.append({"name": f"{ns}-rest", "namespace": ns, "cidrs": [_cidr(2 * i + 1)]})
    segments.append({"name": "catch-all", "namespaceSelector": {}, "cidrs": ["10.200.0.0/16"]})
    topology = {
        "apiVersion": "nsgsync.io/v1alpha1",
        "kind": "Topology",
        "cluster": "generated",
        "provider": provider,
        "podCIDRs": ["10.0.0.0/8"],
        "nodeCIDRs": ["172.16.0.0/20"],
        "segments": segments,
        "aws": {"region": "eu-west-1", "vpcId": "vpc-0generated"},
        "gcp": {"project": "generated-project", "network": "vpc-gen", "targetTags": ["nodes"]},
    }
    (root / "manifests").mkdir(parents=True, exist_ok=True)
    (root / "manifests" / "cluster.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    (root / "topology.yaml").write_text(yaml.safe_dump(topology, sort_keys=False))
    return ["-f", str(root / "manifests"), "--topology", str(root / "topology.yaml")]
