"""What the provider cycle tests share: the seed cases, probes, and one policy change.

Every adapter is held to the same scenarios: apply, re-plan empty, change a policy,
minimal diff, apply, re-plan empty, with the cloud's rules evaluated against the Intent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nsgsync.compile import compile_intent
from nsgsync.intent import Intent
from nsgsync.model import Inventory, Segment, Topology
from nsgsync.sources.files import Document, parse_policy

ROOT = Path(__file__).parent.parent
CASES = sorted(p for p in (ROOT / "tests/cases").iterdir() if p.is_dir())
EXAMPLE = ROOT / "config/example"
PORTS = [("TCP", 80), ("TCP", 5432), ("TCP", 8080), ("UDP", 53), ("TCP", 9090), ("SCTP", 7)]


def probe_addresses(topology: Topology) -> list[str]:
    """An address inside every segment CIDR, a node, an unsegmented pod, the outside."""
    out = []
    for seg in topology.segments:
        for cidr in seg.cidrs:
            out.append(str(ipaddress.ip_network(cidr).network_address + 7))
    node = topology.node_addresses.first_address()
    if node:
        out.append(str(ipaddress.ip_address(node) + 3))
    rest = topology.unsegmented_addresses().first_address()
    if rest:
        out.append(str(ipaddress.ip_address(rest) + 5))
    out += ["203.0.113.9", "8.8.4.4"]
    if 6 in topology.pod_addresses.families():
        out += ["2001:db8::9"]
    return out


Allows = Callable[[str, str, str, int], bool]


def mismatches(
    cloud_allows: Allows, topology: Topology, intent: Intent
) -> list[tuple[str, str, str, int]]:
    """Connections on which the cloud's rules and the Intent disagree (should be none)."""
    addresses = probe_addresses(topology)
    return [
        (src, dst, proto, port)
        for src in addresses
        for dst in addresses
        for proto, port in PORTS
        if src != dst
        and (":" in src) == (":" in dst)  # no connection crosses IP families
        and cloud_allows(src, dst, proto, port) != intent.allows(src, dst, proto, port)
    ]


@dataclass(frozen=True)
class PolicyChange:
    target: Segment  # the segment the new policy is about
    namespace_segments: frozenset[str]  # the only segments whose resources may change
    inventory: Inventory
    intent: Intent


def policy_change(topology: Topology, intent: Intent, inventory: Inventory) -> PolicyChange:
    """A segment that is open, or closed to 443 from a documentation range, gets a policy
    allowing just that: a change the cloud must see, confined to one namespace."""

    def changes_with_policy(name: str) -> bool:
        seg = intent.segment(name)
        first = str(seg.addresses.first_address())
        return not seg.ingress.isolated or not intent.allows("192.0.2.1", first, "TCP", 443)

    target = next(s for s in topology.segments if s.namespace and changes_with_policy(s.name))
    extra = parse_policy(
        Document(
            "<test>",
            1,
            {
                "kind": "NetworkPolicy",
                "metadata": {"name": "extra", "namespace": target.namespace or "default"},
                "spec": {
                    "podSelector": target.pod_selector.model_dump(by_alias=True),
                    "ingress": [
                        {"from": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [{"port": 443}]}
                    ],
                },
            },
        )
    )
    changed = Inventory.build(
        [*inventory.policies, extra],
        inventory.namespaces,
        inventory.pods,
        ordered=inventory.ordered,  # the other dialects' policies stay as they were
        notes=inventory.notes,
    )
    return PolicyChange(
        target=target,
        namespace_segments=frozenset(
            s.name for s in topology.segments if s.namespace == target.namespace
        ),
        inventory=changed,
        intent=compile_intent(topology, changed),
    )
