"""Evaluate VPC firewall rules as GCP does, from what the compute API returns.

Independent of nsgsync's own code: it lists every rule of the project itself and decides,
for a connection, what the rules of the source's node (egress) and of the destination's
node (ingress) say. Every segment's pods sit on nodes carrying `node_tags` (GKE pods use
alias ranges of their node). Per direction: the enabled rules of the network that target
the node and match the connection; the lowest priority number decides; a deny wins a tie;
with no match, the implied rules at 65535 deny ingress and allow egress.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cache
from typing import Any

from google.cloud import compute_v1

from nsgsync.model import Topology
from tests.cycle import probe_addresses as probe_addresses  # the shared probes

PROTOCOL_NUMBERS = {"tcp": "6", "udp": "17", "sctp": "132"}


# Parsed once: an evaluation runs the same few addresses against the same rules many times.
@cache
def _addr(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(ip)


@cache
def _net(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


def _contains(ranges: list[str], ip: str) -> bool:
    addr = _addr(ip)
    return any(
        net.version == addr.version and addr in net for net in (_net(cidr) for cidr in ranges)
    )


def _port_matches(spec: str, port: int) -> bool:
    low, _, high = spec.partition("-")
    return int(low) <= port <= int(high or low)


def _protocol_matches(entry: dict[str, Any], proto: str, port: int) -> bool:
    name = str(entry["IPProtocol"]).lower()
    wanted = proto.lower()
    if name not in ("all", wanted, PROTOCOL_NUMBERS.get(wanted)):
        return False
    ports = entry.get("ports") or []
    return not ports or any(_port_matches(p, port) for p in ports)


@dataclass(frozen=True)
class Firewalls:
    topology: Topology
    rules: list[dict[str, Any]]
    node_tags: frozenset[str]
    node_accounts: frozenset[str] = frozenset()

    @classmethod
    def read(
        cls,
        client: compute_v1.FirewallsClient,
        project: str,
        network: str,
        topology: Topology,
        node_tags: set[str],
    ) -> Firewalls:
        rules = []
        for fw in client.list(project=project):
            body = compute_v1.Firewall.to_dict(fw, preserving_proto_field_name=False)
            if str(body["network"]).endswith(f"/global/networks/{network}"):
                rules.append(body)
        return cls(topology, rules, frozenset(node_tags))

    def on_node(self, ip: str) -> bool:
        """A segment's pod: on a node this network's rules apply to."""
        return any(_contains(seg.cidrs, ip) for seg in self.topology.segments)

    def _targets_node(self, rule: dict[str, Any]) -> bool:
        tags, accounts = rule.get("targetTags") or [], rule.get("targetServiceAccounts") or []
        if not tags and not accounts:
            return True  # no target: every instance of the network
        return bool(set(tags) & self.node_tags) or bool(set(accounts) & self.node_accounts)

    def _verdict(self, direction: str, src: str, dst: str, proto: str, port: int) -> bool:
        matching: list[tuple[int, bool]] = []  # (priority, is_deny)
        for rule in self.rules:
            if rule.get("disabled") or rule["direction"] != direction:
                continue
            if not self._targets_node(rule):
                continue
            sources = rule.get("sourceRanges") or []
            destinations = rule.get("destinationRanges") or []
            if direction == "INGRESS":
                # Source tags and accounts name VMs' own addresses, never a pod's.
                if not _contains(sources, src):
                    continue
                if destinations and not _contains(destinations, dst):
                    continue
            else:
                if sources and not _contains(sources, src):
                    continue
                if not destinations or not _contains(destinations, dst):
                    continue
            deny = bool(rule.get("denied"))
            entries = rule.get("denied") or rule.get("allowed") or []
            if any(_protocol_matches(e, proto, port) for e in entries):
                matching.append((int(rule["priority"]), deny))
        if not matching:
            return direction == "EGRESS"  # the implied rules at 65535
        top = min(p for p, _ in matching)
        return not any(deny for p, deny in matching if p == top)

    def allows(self, src: str, dst: str, proto: str, port: int) -> bool:
        if self.on_node(src) and not self._verdict("EGRESS", src, dst, proto, port):
            return False
        return not (self.on_node(dst) and not self._verdict("INGRESS", src, dst, proto, port))
