"""Explain one connection: what Kubernetes says, and what the cloud rules say."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from nsgsync.errors import InputError
from nsgsync.intent import Direction, Intent, Rule
from nsgsync.model import Inventory, PodInfo, Protocol, Topology
from nsgsync.semantics import Endpoint, Side, Verdict, verdict


@dataclass(frozen=True)
class Resolved:
    label: str
    endpoint: Endpoint
    assumed_ip: bool


@dataclass(frozen=True)
class Explanation:
    src: Resolved
    dst: Resolved
    protocol: Protocol
    port: int
    kubernetes: Verdict
    cloud_allowed: bool
    cloud_egress: tuple[str, list[Rule] | None] | None
    cloud_ingress: tuple[str, list[Rule] | None] | None


def parse_port(text: str) -> tuple[int, Protocol]:
    number, _, proto = text.partition("/")
    proto = (proto or "TCP").upper()
    if proto not in {p.value for p in Protocol}:
        raise InputError(f"unknown protocol {proto!r} in --port {text!r}: use TCP, UDP or SCTP")
    if not number.isdigit() or not 1 <= int(number) <= 65535:
        raise InputError(f"--port {text!r}: give a port number 1-65535, e.g. 5432/TCP")
    return int(number), Protocol(proto)


def resolve(text: str, topology: Topology, inventory: Inventory) -> Resolved:
    try:
        ipaddress.ip_address(text)
        return Resolved(text, Endpoint(text), assumed_ip=False)
    except ValueError:
        pass
    namespace, _, name = text.rpartition("/")
    namespace = namespace or "default"
    matches = [p for p in inventory.pods if p.namespace == namespace and p.name == name]
    if not matches:
        known = ", ".join(p.ref for p in inventory.pods[:8]) or "none"
        raise InputError(
            f"no pod or workload {namespace}/{name} in the manifests (known: {known})",
            hint="name a Pod or workload (a Deployment, ...) as NAMESPACE/NAME, or an IP",
        )
    pod = matches[0]
    ip, assumed = _address_of(pod, topology, inventory)
    return Resolved(f"{pod.ref} ({pod.kind})", Endpoint(ip, pod), assumed)


def _address_of(pod: PodInfo, topology: Topology, inventory: Inventory) -> tuple[str, bool]:
    if pod.ip:
        return pod.ip, False
    if pod.host_network and topology.node_cidrs:
        first = topology.node_addresses.first_address()
        assert first is not None
        return first, True
    seg = topology.segment_for(
        pod.namespace, inventory.namespaces.get(pod.namespace, {}), pod.labels
    )
    space = seg.addresses if seg is not None else topology.unsegmented_addresses()
    first = space.first_address() or topology.pod_addresses.first_address()
    assert first is not None
    # The first host address, not the network address, reads as a pod's.
    host = ipaddress.ip_address(first) + 1
    return (str(host) if space.contains_ip(str(host)) else first), True


def explain(
    intent: Intent,
    topology: Topology,
    inventory: Inventory,
    *,
    src: str,
    dst: str,
    port: str,
) -> Explanation:
    number, protocol = parse_port(port)
    a = resolve(src, topology, inventory)
    b = resolve(dst, topology, inventory)
    k8s = verdict(
        a.endpoint, b.endpoint, protocol, number, inventory.policies, inventory.namespaces
    )
    cloud: dict[Direction, tuple[str, list[Rule] | None] | None] = {}
    for direction, here, there in (
        (Direction.EGRESS, a.endpoint.ip, b.endpoint.ip),
        (Direction.INGRESS, b.endpoint.ip, a.endpoint.ip),
    ):
        seg = intent.segment_of(here)
        cloud[direction] = (
            None
            if seg is None
            else (seg.name, seg.direction(direction).allowing(there, protocol.value, number))
        )
    return Explanation(
        src=a,
        dst=b,
        protocol=protocol,
        port=number,
        kubernetes=k8s,
        cloud_allowed=intent.allows(a.endpoint.ip, b.endpoint.ip, protocol.value, number),
        cloud_egress=cloud[Direction.EGRESS],
        cloud_ingress=cloud[Direction.INGRESS],
    )


def _side_text(name: str, who: str, side: Side) -> str:
    if not side.checked:
        return f"  {name}: not a pod under policy ({who}); not restricted"
    if not side.isolated_by:
        return f"  {name} of {who}: not isolated (no policy selects it); allowed"
    head = f"  {name} of {who}: isolated by {', '.join(side.isolated_by)}; "
    if side.allowed_by:
        return head + "allowed by " + ", ".join(f"{p} rule {i}" for p, i in side.allowed_by)
    return head + "no rule allows it"


def _cloud_text(name: str, entry: tuple[str, list[Rule] | None] | None) -> str:
    if entry is None:
        return f"  {name}: address in no segment; nsgsync writes no rule for it"
    seg, rules = entry
    if rules is None:
        return f"  {name} of segment {seg}: open (not isolated); allowed"
    if not rules:
        return f"  {name} of segment {seg}: isolated; no rule allows it"
    texts = []
    for r in rules:
        ports = (
            "all ports"
            if r.ports is None
            else ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in r.ports)
        )
        texts.append(f"{r.protocol.value} {ports} [{r.explanation()}]")
    return f"  {name} of segment {seg}: allowed by " + "; ".join(texts)


def render(e: Explanation) -> str:
    lines = []
    for tag, r in (("from", e.src), ("to", e.dst)):
        extra = " (assumed: no pod IP in the manifests)" if r.assumed_ip else ""
        lines.append(f"{tag:<5} {r.label} at {r.endpoint.ip}{extra}")
    lines.append(f"port  {e.port}/{e.protocol.value}")
    lines.append("")
    lines.append(f"Kubernetes: {'ALLOWED' if e.kubernetes.allowed else 'DENIED'}")
    lines.append(_side_text("egress", e.src.label, e.kubernetes.egress))
    lines.append(_side_text("ingress", e.dst.label, e.kubernetes.ingress))
    lines.append(f"Cloud rules (Intent): {'ALLOWED' if e.cloud_allowed else 'DENIED'}")
    lines.append(_cloud_text("egress", e.cloud_egress))
    lines.append(_cloud_text("ingress", e.cloud_ingress))
    if e.kubernetes.allowed and not e.cloud_allowed:
        lines.append("")
        lines.append(
            "UNSOUND: the cloud would block a connection Kubernetes allows; please report it."
        )
    elif not e.kubernetes.allowed and e.cloud_allowed:
        lines.append("")
        lines.append(
            "The cloud is wider than Kubernetes here (see the findings of `nsgsync compile`)."
        )
    return "\n".join(lines) + "\n"
