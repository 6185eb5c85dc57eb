"""The GCP compute stand-in on loopback, reached through the real FirewallsClient."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from google.api_core import exceptions
from google.api_core.retry import Retry, if_exception_type
from google.cloud import compute_v1

from nsgsync.model import Topology
from tests.fakes.gcp_compute import FakeCompute, make_client

PROJECT = "nsgsync-test"
NETWORK = "vpc-test"
NODE_TAG = "gke-node"
# The SDK's retry machinery, with waits short enough for tests.
FAST_RETRY = Retry(
    predicate=if_exception_type(exceptions.TooManyRequests, exceptions.ServiceUnavailable),
    initial=0.01,
    maximum=0.05,
    multiplier=2.0,
    timeout=10.0,
)


@dataclass
class Gcp:
    fake: FakeCompute
    client: compute_v1.FirewallsClient

    def rules(self) -> dict[str, dict[str, Any]]:
        return {fw["name"]: fw for fw in self.fake.firewalls(PROJECT)}


@pytest.fixture
def gcp() -> Iterator[Gcp]:
    with FakeCompute() as fake:
        yield Gcp(fake, make_client(fake))


def gcp_block(**extra: Any) -> dict[str, Any]:
    return {"project": PROJECT, "network": NETWORK, "targetTags": [NODE_TAG], **extra}


def with_gcp(topology: Topology, **extra: Any) -> Topology:
    return topology.model_copy(update={"provider": "gcp", "gcp": gcp_block(**extra)})


def gke_rule_name(topology: Topology) -> str:
    return f"gke-{topology.cluster}-1a2b3c4d-all"


def seed_gke_and_user_rules(fake: FakeCompute, topology: Topology) -> list[str]:
    """What a GKE project holds besides nsgsync's rules; none of it is nsgsync's."""
    network = f"projects/{PROJECT}/global/networks/{NETWORK}"
    seeded = [
        # GKE's own: every protocol from the pod ranges to the nodes, at priority 1000.
        {
            "name": gke_rule_name(topology),
            "network": network,
            "priority": 1000,
            "direction": "INGRESS",
            "sourceRanges": list(topology.pod_cidrs),
            "targetTags": [NODE_TAG],
            "allowed": [{"IPProtocol": p} for p in ("tcp", "udp", "icmp", "esp", "ah", "sctp")],
        },
        # A team's own rule, with no marker.
        {
            "name": "team-ssh-from-bastion",
            "network": network,
            "priority": 1000,
            "direction": "INGRESS",
            "sourceRanges": ["10.9.0.0/16"],
            "targetTags": [NODE_TAG],
            "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}],
            "description": "bastion access",
        },
        # Named like nsgsync's, in its band, but without the marker: still not nsgsync's.
        {
            "name": f"nsgsync-{topology.cluster}-legacy",
            "network": network,
            "priority": 500,
            "direction": "INGRESS",
            "sourceRanges": ["10.9.0.0/16"],
            "targetTags": [NODE_TAG],
            "allowed": [{"IPProtocol": "tcp", "ports": ["8443"]}],
            "description": "made by hand before nsgsync",
        },
        # The marker, but outside the band: not nsgsync's either.
        {
            "name": f"nsgsync-{topology.cluster}-pinned",
            "network": network,
            "priority": 2000,
            "direction": "INGRESS",
            "sourceRanges": ["10.9.0.0/16"],
            "targetTags": [NODE_TAG],
            "allowed": [{"IPProtocol": "tcp", "ports": ["8444"]}],
            "description": f"nsgsync:{topology.cluster} pinned by hand below GKE",
        },
    ]
    for body in seeded:
        fake.seed_firewall(PROJECT, body)
    return [str(b["name"]) for b in seeded]
