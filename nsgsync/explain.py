"""Explain one connection: what Kubernetes says, what the Intent says, what the cloud says.

An endpoint is a pod or workload (NAMESPACE/NAME or NAMESPACE/KIND/NAME), a segment name,
or an IP address: the pod known to have it, else the segment whose CIDRs hold it (taking
a known pod of that segment for Kubernetes's side), the nodes, pods in no segment, or
outside the cluster. The cloud's side (`--cloud`) evaluates the rules the provider
renders, naming the one that decides.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Any

from nsgsync.errors import InputError, did_you_mean, excerpt
from nsgsync.firewall import Decision, Table, Tables, cloud_tables, decide, rendered_rules
from nsgsync.intent import Direction, Intent, Rule
from nsgsync.model import Inventory, PodInfo, Protocol, Topology
from nsgsync.model.tiers import Action
from nsgsync.net import AddressSet
from nsgsync.semantics import (
    Endpoint,
    Side,
    TieredSide,
    TieredVerdict,
    Verdict,
    pipeline,
    resolve_engine,
    tiered_verdict,
    verdict,
)

# Exit codes of `nsgsync explain` (documented in its --help and in README.md).
EXIT_ALLOWED = 0
EXIT_DENIED = 3
EXIT_DIFFERS = 4
EXIT_UNKNOWN = 5


@dataclass(frozen=True)
class Resolved:
    text: str  # what the user typed
    label: str
    kind: str  # pod | segment | nodes | unsegmented | outside
    endpoint: Endpoint
    assumed_ip: bool
    segment: str | None = None
    note: str = ""

    @property
    def known(self) -> bool:
        """Whether Kubernetes's side can be decided: a pod with labels, or no pod at all."""
        return self.endpoint.pod is not None or self.kind in ("nodes", "outside")

    def to_dict(self) -> dict[str, Any]:
        pod = self.endpoint.pod
        return {
            "input": self.text,
            "label": self.label,
            "kind": self.kind,
            "ip": self.endpoint.ip,
            "assumedIp": self.assumed_ip,
            "segment": self.segment,
            "pod": None if pod is None else {"ref": pod.ref, "kind": pod.kind},
            "note": self.note or None,
        }


@dataclass(frozen=True)
class CloudSide:
    segment: str | None
    decision: Decision | None  # None: the address is in no segment, no rule applies
    rule: str

    def to_dict(self) -> dict[str, Any]:
        entry = self.decision.entry if self.decision is not None else None
        return {
            "segment": self.segment,
            "allowed": True if self.decision is None else self.decision.allowed,
            "rule": self.rule,
            "policies": list(entry.policies) if entry is not None else [],
        }


@dataclass(frozen=True)
class Cloud:
    provider: str
    egress: CloudSide
    ingress: CloudSide

    @property
    def allowed(self) -> bool:
        return all(s.decision is None or s.decision.allowed for s in (self.egress, self.ingress))


@dataclass(frozen=True)
class Explanation:
    src: Resolved
    dst: Resolved
    protocol: Protocol
    port: int
    port_name: str | None
    kubernetes: Verdict | None  # None: a pod at an address that no known pod has
    cloud_allowed: bool
    cloud_egress: tuple[str, list[Rule] | None] | None
    cloud_ingress: tuple[str, list[Rule] | None] | None
    rendered: Cloud | None = None
    # With ordered policies (admin tiers, Calico, Cilium): the walk over the engine's tiers,
    # in place of `kubernetes`; `engine` names the policy engine.
    tiered: TieredVerdict | None = None
    engine: str | None = None

    @property
    def cluster_allowed(self) -> bool | None:
        """Whether the cluster may allow it (None: unknown)."""
        if self.tiered is not None:
            return self.tiered.allowed
        return None if self.kubernetes is None else self.kubernetes.allowed

    @property
    def verdict(self) -> str:
        """allowed | denied | differs | unknown, over every view asked for."""
        cluster = self.cluster_allowed
        if cluster is None:
            return "unknown"
        views = {cluster, self.cloud_allowed}
        if self.rendered is not None:
            views.add(self.rendered.allowed)
        if len(views) > 1:
            return "differs"
        return "allowed" if views.pop() else "denied"

    @property
    def exit_code(self) -> int:
        return {
            "allowed": EXIT_ALLOWED,
            "denied": EXIT_DENIED,
            "differs": EXIT_DIFFERS,
            "unknown": EXIT_UNKNOWN,
        }[self.verdict]


def parse_port(text: str) -> tuple[int | str, Protocol]:
    """`5432`, `5432/TCP`, `53/udp` or a named port: `http`, `http/TCP`."""
    value, _, proto = text.partition("/")
    proto = (proto or "TCP").upper()
    if proto not in {p.value for p in Protocol}:
        raise InputError(
            f"unknown protocol {excerpt(proto)} in --port {excerpt(text)}",
            hint="use TCP, UDP or SCTP, e.g. 5432/TCP or http/TCP",
        )
    if value.isdigit():
        if not 1 <= int(value) <= 65535:
            raise InputError(
                f"--port {excerpt(text)}: a port number is 1-65535", hint="e.g. 5432/TCP"
            )
        return int(value), Protocol(proto)
    if not value or len(value) > 15 or not value.replace("-", "").isalnum():
        raise InputError(
            f"--port {excerpt(text)}: give a port number or a container port's name",
            hint="e.g. 5432/TCP, or http/TCP for the port the destination pod names http",
        )
    return value, Protocol(proto)


def _host_in(space: AddressSet) -> str | None:
    first = space.first_address()
    if first is None:
        return None
    # The first host address, not the network address, reads as a pod's.
    host = str(ipaddress.ip_address(first) + 1)
    return host if space.contains_ip(host) else first


def _segment_of(pod: PodInfo, topology: Topology, inventory: Inventory) -> str | None:
    seg = topology.segment_for(
        pod.namespace, inventory.namespaces.get(pod.namespace, {}), pod.labels
    )
    return seg.name if seg is not None else None


def _pods_of(segment: str | None, topology: Topology, inventory: Inventory) -> list[PodInfo]:
    return [
        p
        for p in inventory.pods
        if not p.host_network and _segment_of(p, topology, inventory) == segment
    ]


def _stand_in(
    text: str, ip: str, segment: str | None, topology: Topology, inventory: Inventory, where: str
) -> Resolved:
    """An address of pods whose pod is not known: a known pod of the same segment speaks
    for Kubernetes (its labels decide), else Kubernetes's side stays unknown."""
    kind = "segment" if segment is not None else "unsegmented"
    pods = _pods_of(segment, topology, inventory)
    if pods:
        pod = next((p for p in pods if p.kind == "Pod"), pods[0])
        note = (
            f"no known pod has {ip}; for Kubernetes's side, {pod.ref} ({pod.kind}), "
            f"a pod of {where}, stands in for it"
        )
        return Resolved(text, where, kind, Endpoint(ip, pod), False, segment, note)
    note = (
        f"no pod of {where} is known (no Pod or workload in the inputs): Kubernetes's "
        "verdict depends on that pod's labels"
    )
    return Resolved(text, where, kind, Endpoint(ip, None), False, segment, note)


def resolve(text: str, topology: Topology, inventory: Inventory) -> Resolved:
    try:
        ip = str(ipaddress.ip_address(text))
    except ValueError:
        ip = ""
    if ip:
        owners = [p for p in inventory.pods if p.ip == ip and not p.host_network]
        if owners:
            pod = owners[0]
            seg = _segment_of(pod, topology, inventory)
            return Resolved(text, f"{pod.ref} ({pod.kind})", "pod", Endpoint(ip, pod), False, seg)
        for seg_def in topology.segments:
            if seg_def.addresses.contains_ip(ip):
                where = f"segment {seg_def.name}"
                return _stand_in(text, ip, seg_def.name, topology, inventory, where)
        if topology.node_addresses.contains_ip(ip):
            return Resolved(text, "a node address (nodeCIDRs)", "nodes", Endpoint(ip), False)
        if topology.pod_addresses.contains_ip(ip):
            where = "the pods in no segment (podCIDRs outside every segment)"
            return _stand_in(text, ip, None, topology, inventory, where)
        return Resolved(text, "outside the cluster", "outside", Endpoint(ip), False)
    segment_names = [s.name for s in topology.segments]
    if "/" not in text and text in segment_names:
        seg_def = topology.segment(text)
        pods = _pods_of(text, topology, inventory)
        inside = [p for p in pods if p.ip and seg_def.addresses.contains_ip(p.ip)]
        if inside:
            address, assumed = str(inside[0].ip), False
        else:
            address, assumed = str(_host_in(seg_def.addresses)), True
        found = _stand_in(text, address, text, topology, inventory, f"segment {text}")
        return replace(found, assumed_ip=assumed)
    parts = text.split("/")
    if len(parts) == 3:
        namespace, kind, name = parts
    elif len(parts) == 2:
        (namespace, name), kind = parts, ""
    else:
        namespace, name, kind = "default", text, ""
    matches = [
        p
        for p in inventory.pods
        if p.namespace == namespace
        and p.name == name
        and (not kind or p.kind.lower() == kind.lower())
    ]
    if not matches:
        known = [p.ref for p in inventory.pods] + segment_names
        raise InputError(
            f"no pod, workload or segment {excerpt(text)} in the inputs"
            + did_you_mean(text, known),
            hint="name a Pod or workload as NAMESPACE/NAME (or NAMESPACE/KIND/NAME), a "
            "segment of the topology, or an IP address",
        )
    # A Pod of that name is more specific than a workload's template of the same name.
    pod = next((p for p in matches if p.kind == "Pod"), matches[0])
    address, assumed = _address_of(pod, topology, inventory)
    seg = None if pod.host_network else _segment_of(pod, topology, inventory)
    return Resolved(text, f"{pod.ref} ({pod.kind})", "pod", Endpoint(address, pod), assumed, seg)


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
    host = _host_in(space) or topology.pod_addresses.first_address()
    assert host is not None
    return host, True


def _port_number(port: int | str, protocol: Protocol, dst: Resolved) -> int:
    if isinstance(port, int):
        return port
    pod = dst.endpoint.pod
    if pod is None:
        raise InputError(
            f"--port {excerpt(port)}/{protocol.value}: a named port is looked up on the "
            f"destination pod, and {dst.label} is no known pod",
            hint="give the port number, e.g. --port 8080/TCP",
        )
    numbers = pod.port_numbers(port, protocol)
    if not numbers:
        named = sorted({f"{p.name}/{p.protocol.value}" for p in pod.ports if p.name}) or ["none"]
        raise InputError(
            f"--port {excerpt(port)}/{protocol.value}: {pod.ref} ({pod.kind}) has no "
            f"container port of that name{did_you_mean(port, [n.split('/')[0] for n in named])}",
            hint=f"its named ports: {', '.join(named)}",
        )
    return numbers[0]


def cloud_side_tables(intent: Intent, topology: Topology) -> Tables:
    resources, _ = rendered_rules(intent, topology)
    return cloud_tables(topology.provider, resources, topology)


def _cloud_side(table: Table | None, segment: str | None, **connection: Any) -> CloudSide:
    if table is None:
        return CloudSide(segment, None, "the address is in no segment: no nsgsync rule applies")
    decision = decide(table, **connection)
    return CloudSide(segment, decision, decision.rule_name(table))


def explain(
    intent: Intent,
    topology: Topology,
    inventory: Inventory,
    *,
    src: str,
    dst: str,
    port: str,
    cloud: Tables | None = None,
) -> Explanation:
    """One connection; `cloud`: the provider's rendered rules as tables (`--cloud`)."""
    wanted, protocol = parse_port(port)
    a = resolve(src, topology, inventory)
    b = resolve(dst, topology, inventory)
    number = _port_number(wanted, protocol, b)
    known = a.known and b.known
    tiered = engine = None
    k8s = None
    if inventory.ordered:
        engine = resolve_engine(topology.policy_engine, inventory.ordered)
        walk = pipeline(
            engine,
            inventory.policies,
            inventory.ordered,
            node_cidrs=topology.node_cidrs,
            cluster_cidrs=[*topology.pod_cidrs, *topology.node_cidrs],
        )
        if known:
            tiered = tiered_verdict(
                a.endpoint, b.endpoint, protocol, number, walk, inventory.namespaces
            )
    elif known:
        k8s = verdict(
            a.endpoint, b.endpoint, protocol, number, inventory.policies, inventory.namespaces
        )
    sides: dict[Direction, tuple[str, list[Rule] | None] | None] = {}
    for direction, here, there in (
        (Direction.EGRESS, a.endpoint.ip, b.endpoint.ip),
        (Direction.INGRESS, b.endpoint.ip, a.endpoint.ip),
    ):
        seg = intent.segment_of(here)
        sides[direction] = (
            None
            if seg is None
            else (seg.name, seg.direction(direction).allowing(there, protocol.value, number))
        )
    rendered = None
    if cloud is not None:
        out_of, into = intent.segment_of(a.endpoint.ip), intent.segment_of(b.endpoint.ip)
        conn = {"protocol": protocol.value, "port": number}
        rendered = Cloud(
            topology.provider,
            _cloud_side(
                cloud.get((out_of.name, "egress")) if out_of else None,
                out_of.name if out_of else None,
                own=a.endpoint.ip,
                peer=b.endpoint.ip,
                **conn,
            ),
            _cloud_side(
                cloud.get((into.name, "ingress")) if into else None,
                into.name if into else None,
                own=b.endpoint.ip,
                peer=a.endpoint.ip,
                **conn,
            ),
        )
    return Explanation(
        src=a,
        dst=b,
        protocol=protocol,
        port=number,
        port_name=wanted if isinstance(wanted, str) else None,
        kubernetes=k8s,
        cloud_allowed=intent.allows(a.endpoint.ip, b.endpoint.ip, protocol.value, number),
        cloud_egress=sides[Direction.EGRESS],
        cloud_ingress=sides[Direction.INGRESS],
        rendered=rendered,
        tiered=tiered,
        engine=engine,
    )


def _tiered_text(name: str, who: str, side: TieredSide) -> str:
    if not side.checked:
        return f"  {name}: not a pod under policy ({who}); not restricted"
    walk = " → ".join(step.describe() for step in side.steps)
    if not walk:
        return f"  {name} of {who}: no policy decided it; allowed after the last tier"
    if side.steps[-1].action is Action.PASS:
        walk += " → allowed after the last tier"
    if not side.certain:
        walk += " (uncertain: nsgsync cannot evaluate a condition; it may go either way)"
    return f"  {name} of {who}: {walk}; {'allowed' if side.allowed else 'denied'}"


def _side_text(name: str, who: str, side: Side) -> str:
    if not side.checked:
        return f"  {name}: not a pod under policy ({who}); not restricted"
    if not side.isolated_by:
        return f"  {name} of {who}: not isolated (no policy selects it); allowed"
    head = f"  {name} of {who}: isolated by {', '.join(side.isolated_by)}; "
    if side.allowed_by:
        return head + "allowed by " + ", ".join(f"{p} rule {i}" for p, i in side.allowed_by)
    return head + "no rule allows it"


def _ports(r: Rule) -> str:
    if r.ports is None:
        return "all ports"
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in r.ports)


def _cloud_text(name: str, entry: tuple[str, list[Rule] | None] | None) -> str:
    if entry is None:
        return f"  {name}: address in no segment; nsgsync writes no rule for it"
    seg, rules = entry
    if rules is None:
        return f"  {name} of segment {seg}: open (not isolated); allowed"
    if not rules:
        return f"  {name} of segment {seg}: isolated; no rule allows it"
    texts = [f"{r.protocol.value} {_ports(r)} [{r.explanation()}]" for r in rules]
    return f"  {name} of segment {seg}: allowed by " + "; ".join(texts)


def _rendered_text(name: str, side: CloudSide) -> str:
    if side.decision is None:
        return f"  {name}: {side.rule}"
    what = "allowed" if side.decision.allowed else "blocked"
    how = f"{what} by" if side.decision.entry is not None else f"{what}:"
    return f"  {name} of segment {side.segment}: {how} {side.rule}"


def _agreement(e: Explanation) -> list[str]:
    cluster = e.cluster_allowed
    if cluster is None:
        return [
            "Kubernetes's verdict is unknown: no known pod has the address. Add the Pod "
            "(with status.podIP) or its workload to the inputs, or name the pod instead."
        ]
    clouds = [e.cloud_allowed] + ([e.rendered.allowed] if e.rendered is not None else [])
    if cluster and not all(clouds):
        return ["UNSOUND: the cloud would block a connection Kubernetes allows; please report it."]
    if not cluster and any(clouds):
        return ["The cloud is wider than Kubernetes here (see the findings of `nsgsync compile`)."]
    return []


def _word(allowed: bool) -> str:
    return "ALLOWED" if allowed else "DENIED"


def render(e: Explanation) -> str:
    lines = []
    for tag, r in (("from", e.src), ("to", e.dst)):
        extra = " (assumed: no pod IP in the manifests)" if r.assumed_ip else ""
        seg = f", segment {r.segment}" if r.segment and r.kind == "pod" else ""
        lines.append(f"{tag:<5} {r.label} at {r.endpoint.ip}{seg}{extra}")
        if r.note:
            lines.append(f"      note: {r.note}")
    named = f" (named port {e.port_name})" if e.port_name else ""
    lines.append(f"port  {e.port}/{e.protocol.value}{named}")
    lines.append("")
    if e.tiered is not None:
        lines.append(f"Kubernetes (policyEngine {e.engine}): {_word(e.tiered.allowed)}")
        lines.append(_tiered_text("egress", e.src.label, e.tiered.egress))
        lines.append(_tiered_text("ingress", e.dst.label, e.tiered.ingress))
    elif e.kubernetes is None:
        lines.append("Kubernetes: UNKNOWN")
    else:
        lines.append(f"Kubernetes: {_word(e.kubernetes.allowed)}")
        lines.append(_side_text("egress", e.src.label, e.kubernetes.egress))
        lines.append(_side_text("ingress", e.dst.label, e.kubernetes.ingress))
    lines.append(f"Cloud rules (Intent): {_word(e.cloud_allowed)}")
    lines.append(_cloud_text("egress", e.cloud_egress))
    lines.append(_cloud_text("ingress", e.cloud_ingress))
    if e.rendered is not None:
        lines.append(
            f"Cloud rules ({e.rendered.provider}, as rendered): {_word(e.rendered.allowed)}"
        )
        lines.append(_rendered_text("egress", e.rendered.egress))
        lines.append(_rendered_text("ingress", e.rendered.ingress))
    notes = _agreement(e)
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def _side_dict(side: Side) -> dict[str, Any]:
    return {
        "restricted": side.checked,
        "isolatedBy": list(side.isolated_by),
        "allowedBy": [{"policy": p, "rule": i} for p, i in side.allowed_by],
        "allowed": side.allowed,
    }


def _tiered_dict(v: TieredVerdict, engine: str | None) -> dict[str, Any]:
    def side(s: TieredSide) -> dict[str, Any]:
        return {
            "restricted": s.checked,
            "allowed": s.allowed,
            "certain": s.certain,
            "steps": [
                {
                    "tier": step.stage,
                    "policy": step.policy,
                    "rule": step.rule,
                    "action": step.action.value,
                    "certain": step.certain,
                    "text": step.describe(),
                }
                for step in s.steps
            ],
        }

    return {
        "allowed": v.allowed,
        "policyEngine": engine,
        "egress": side(v.egress),
        "ingress": side(v.ingress),
    }


def _intent_side(entry: tuple[str, list[Rule] | None] | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    seg, rules = entry
    return {
        "segment": seg,
        "isolated": rules is not None,
        "allowed": rules is None or bool(rules),
        "rules": [
            {
                "protocol": r.protocol.value,
                "ports": [list(p) for p in r.ports] if r.ports is not None else None,
                "policies": list(r.policies),
                "source": r.explanation(),
            }
            for r in rules or []
        ],
    }


def to_dict(e: Explanation) -> dict[str, Any]:
    return {
        "from": e.src.to_dict(),
        "to": e.dst.to_dict(),
        "port": e.port,
        "protocol": e.protocol.value,
        "portName": e.port_name,
        "kubernetes": _tiered_dict(e.tiered, e.engine)
        if e.tiered is not None
        else None
        if e.kubernetes is None
        else {
            "allowed": e.kubernetes.allowed,
            "egress": _side_dict(e.kubernetes.egress),
            "ingress": _side_dict(e.kubernetes.ingress),
        },
        "intent": {
            "allowed": e.cloud_allowed,
            "egress": _intent_side(e.cloud_egress),
            "ingress": _intent_side(e.cloud_ingress),
        },
        "cloud": None
        if e.rendered is None
        else {
            "provider": e.rendered.provider,
            "allowed": e.rendered.allowed,
            "egress": e.rendered.egress.to_dict(),
            "ingress": e.rendered.ingress.to_dict(),
        },
        "verdict": e.verdict,
        "exitCode": e.exit_code,
        "notes": _agreement(e),
    }
