"""Kubernetes NetworkPolicy semantics at pod level: the reference.

Deliberately small and literal, one function per sentence of the API documentation,
with no knowledge of segments or clouds. `explain` uses it to say what Kubernetes
allows, and the property tests hold the compiler to it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nsgsync.model import NetworkPolicy, Peer, PodInfo, PolicyPort, PolicyType, Protocol


@dataclass(frozen=True)
class Endpoint:
    ip: str
    pod: PodInfo | None = None  # None: an address that is no pod (external, a node)


@dataclass(frozen=True)
class Side:
    """One direction's verdict: whether it is isolated, by whom, and what allows it."""

    checked: bool
    isolated_by: tuple[str, ...] = ()
    allowed_by: tuple[tuple[str, int], ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.checked or not self.isolated_by or bool(self.allowed_by)


@dataclass(frozen=True)
class Verdict:
    egress: Side
    ingress: Side
    notes: tuple[str, ...] = field(default=())

    @property
    def allowed(self) -> bool:
        return self.egress.allowed and self.ingress.allowed


def in_ip_block(ip: str, cidr: str, excepts: Sequence[str]) -> bool:
    addr = ipaddress.ip_address(ip)
    if addr not in ipaddress.ip_network(cidr, strict=False):
        return False
    return not any(addr in ipaddress.ip_network(e, strict=False) for e in excepts)


def peer_matches(
    policy: NetworkPolicy, peer: Peer, other: Endpoint, namespaces: Mapping[str, Mapping[str, str]]
) -> bool:
    if peer.ip_block is not None:
        return in_ip_block(other.ip, peer.ip_block.cidr, peer.ip_block.except_)
    pod = other.pod
    if pod is None or pod.host_network:
        return False
    if peer.namespace_selector is not None:
        in_namespace = peer.namespace_selector.matches(namespaces.get(pod.namespace, {}))
    else:
        in_namespace = pod.namespace == policy.namespace
    selected = peer.pod_selector is None or peer.pod_selector.matches(pod.labels)
    return in_namespace and selected


def port_matches(ports: Sequence[PolicyPort], dst: Endpoint, protocol: Protocol, port: int) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.protocol is not protocol:
            continue
        if p.port is None:
            return True
        if isinstance(p.port, int) and p.port <= port <= (p.end_port or p.port):
            return True
        # A named port is looked up on the pod the connection goes to.
        if (
            isinstance(p.port, str)
            and dst.pod is not None
            and port in dst.pod.port_numbers(p.port, protocol)
        ):
            return True
    return False


def side(
    pod_end: Endpoint,
    other: Endpoint,
    direction: PolicyType,
    policies: Sequence[NetworkPolicy],
    namespaces: Mapping[str, Mapping[str, str]],
    protocol: Protocol,
    port: int,
) -> Side:
    pod = pod_end.pod
    if pod is None or pod.host_network:
        return Side(checked=False)
    selecting = [
        p
        for p in policies
        if p.namespace == pod.namespace
        and direction in p.policy_types
        and p.pod_selector.matches(pod.labels)
    ]
    dst = pod_end if direction is PolicyType.INGRESS else other
    allowed_by = []
    for p in selecting:
        for index, rule in enumerate(p.rules(direction)):
            peer_ok = rule.peers is None or any(
                peer_matches(p, peer, other, namespaces) for peer in rule.peers
            )
            if peer_ok and port_matches(rule.ports, dst, protocol, port):
                allowed_by.append((p.ref, index))
    return Side(True, tuple(p.ref for p in selecting), tuple(allowed_by))


def verdict(
    src: Endpoint,
    dst: Endpoint,
    protocol: Protocol,
    port: int,
    policies: Sequence[NetworkPolicy],
    namespaces: Mapping[str, Mapping[str, str]],
) -> Verdict:
    """Whether Kubernetes lets `src` open a connection to `dst` (replies always pass)."""
    return Verdict(
        egress=side(src, dst, PolicyType.EGRESS, policies, namespaces, protocol, port),
        ingress=side(dst, src, PolicyType.INGRESS, policies, namespaces, protocol, port),
    )
