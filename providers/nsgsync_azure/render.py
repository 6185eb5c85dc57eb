"""Intent to NSGs, security rules and subnet associations, in ARM's own JSON shapes.

Per segment and direction: one Allow rule per (protocol, destination ports) with the peers
as one side's prefixes and the segment's CIDRs as the other, then the segment's `-default`
rule near the top of nsgsync's priority band: Deny everything when the direction is
isolated (Azure's default rules allow all VNet traffic), Allow everything when it is open
(Azure's default rules deny inbound traffic from outside the VNet, which Kubernetes
allows). Above them, in an NSG nsgsync owns, one rule per direction allows what no segment
decides. Pure: no Azure calls.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nsgsync.errors import LimitError
from nsgsync.intent import DirectionIntent, Finding, Intent, IntentProtocol, Rule, Severity
from nsgsync.model import Topology
from nsgsync.net import AddressSet, cidr_order
from nsgsync.plan import Body, Ident, Resource, Role
from nsgsync.provider import (
    ALL_PORTS,
    CLUSTER_TAG,
    SEGMENT_TAG,
    Footprint,
    Spans,
    any_protocol,
    cut,
)
from nsgsync_azure.config import SUBNET_ID, Placement, Settings
from nsgsync_azure.priorities import FINAL_SUFFIX, UNSEGMENTED_SUFFIX, assign, tier

NSG = "network-security-group"
RULE = "security-rule"
ASSOCIATION = "subnet-association"
PREFIX = "nsgsync-"
MAX_RULES_PER_NSG = 1000
MAX_PREFIXES_PER_SIDE = 4000
MAX_DESCRIPTION = 140

INBOUND = "Inbound"
OUTBOUND = "Outbound"
_SHORT = {INBOUND: "in", OUTBOUND: "out"}
_PROTOCOL = {
    IntentProtocol.ANY: "*",
    IntentProtocol.TCP: "Tcp",
    IntentProtocol.UDP: "Udp",
    # Azure has no SCTP: only '*' lets it through (a widening, reported as a finding).
    IntentProtocol.SCTP: "*",
}
# The fields of an ARM SecurityRule's properties nsgsync writes and compares, in the order
# they are shown.
RULE_FIELDS = (
    "priority",
    "direction",
    "access",
    "protocol",
    "sourceAddressPrefix",
    "sourceAddressPrefixes",
    "sourceApplicationSecurityGroups",
    "sourcePortRange",
    "sourcePortRanges",
    "destinationAddressPrefix",
    "destinationAddressPrefixes",
    "destinationApplicationSecurityGroups",
    "destinationPortRange",
    "destinationPortRanges",
    "description",
)


# --- names and keys -----------------------------------------------------------------------


def nsg_key(name: str) -> Ident:
    return Ident("nsg", (name.lower(),))


def rule_key(nsg: str, rule: str) -> Ident:
    # ARM names are case-insensitive; the key must not tell "A" from "a" apart either.
    return Ident("sr", (nsg.lower(), rule.lower()))


def association_key(subnet_id: str) -> Ident:
    found = SUBNET_ID.match(subnet_id)
    if found is None:
        return Ident("assoc", (subnet_id.lower(),))
    return Ident("assoc", (found["rg"].lower(), found["vnet"].lower(), found["subnet"].lower()))


def nsg_resource(
    body: Mapping[str, Any], segment: str | None, cloud_id: str | None = None
) -> Resource:
    return Resource(NSG, nsg_key(str(body["name"])), body, segment, cloud_id, role=Role.CONTAINER)


def rule_resource(
    nsg: str,
    body: Mapping[str, Any],
    segment: str | None,
    cloud_id: str | None = None,
    *,
    sources: tuple[str, ...] = (),
) -> Resource:
    """A rule of NSG `nsg`: its quota is the NSG's (and its direction's priorities)."""
    inbound = (body.get("properties") or {}).get("direction") == INBOUND
    return Resource(
        RULE,
        rule_key(nsg, str(body["name"])),
        body,
        segment,
        cloud_id,
        role=Role.RULE,
        container=nsg_key(nsg),
        direction="ingress" if inbound else "egress",
        sources=sources,
    )


def association_resource(
    subnet_id: str, body: Mapping[str, Any], segment: str | None, cloud_id: str | None = None
) -> Resource:
    return Resource(
        ASSOCIATION, association_key(subnet_id), body, segment, cloud_id, role=Role.LINK
    )


def rule_name(segment: str, direction: str, ident: str, part: int = 0) -> str:
    name = f"{PREFIX}{segment}-{_SHORT[direction]}-{ident}"
    return name if part == 0 else f"{name}-{part}"


def tags(cluster: str, segment: str) -> dict[str, str]:
    return {CLUSTER_TAG: cluster, SEGMENT_TAG: segment}


def description(text: str) -> str:
    """Azure takes 140 characters: provenance is cut to fit, never refused."""
    text = " ".join(text.split())
    return cut(text, MAX_DESCRIPTION)


# --- canonical forms, shared with the reading side so that both compare equal -------------


def _port_order(value: str) -> tuple[int, int, str]:
    lo, _, hi = value.partition("-")
    if lo.isdigit() and (hi or lo).isdigit():
        return (int(lo), int(hi or lo), value)
    return (-1, -1, value)


def sort_prefixes(values: Iterable[str]) -> list[str]:
    return sorted(values, key=cidr_order)


def sort_ports(values: Iterable[str]) -> list[str]:
    return sorted(values, key=_port_order)


def _side(single: str, values: Sequence[str]) -> dict[str, Any]:
    # One value in the singular field, more in the plural: what ARM reports back unchanged.
    if len(values) == 1:
        return {single: values[0]}
    return {single + "es" if single.endswith("Prefix") else single + "s": list(values)}


def rule_body(
    name: str,
    *,
    direction: str,
    access: str,
    protocol: str,
    sources: Sequence[str],
    destinations: Sequence[str],
    ports: Sequence[str],
    text: str,
    priority: int = 0,
) -> dict[str, Any]:
    return {
        "name": name,
        "properties": {
            "priority": priority,
            "direction": direction,
            "access": access,
            "protocol": protocol,
            **_side("sourceAddressPrefix", sort_prefixes(sources)),
            "sourcePortRange": "*",
            **_side("destinationAddressPrefix", sort_prefixes(destinations)),
            **_side("destinationPortRange", sort_ports(ports)),
            "description": description(text),
        },
    }


def _ports(ports: tuple[tuple[int, int], ...] | None) -> tuple[str, ...]:
    if ports is None:
        return ("*",)
    return tuple(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ports)


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [items]


# --- rendering ----------------------------------------------------------------------------


def _direction_rules(
    side: DirectionIntent,
    *,
    direction: str,
    segment: str,
    cidrs: Sequence[str],
    nsg: str,
    findings: list[Finding],
) -> list[Resource]:
    what = "ingress" if direction == INBOUND else "egress"
    out: list[Resource] = []

    def add(
        name: str,
        peers: Sequence[str],
        protocol: str,
        ports: Sequence[str],
        policies: Sequence[str] = (),
        **kw: Any,
    ) -> None:
        mine, theirs = list(cidrs), list(peers)
        sources, destinations = (theirs, mine) if direction == INBOUND else (mine, theirs)
        body = rule_body(
            name,
            direction=direction,
            protocol=protocol,
            sources=sources,
            destinations=destinations,
            ports=ports,
            **kw,
        )
        # Owned, not copied: rule_body has just built it of fresh lists and strings.
        out.append(rule_resource(nsg, Body.owned(body), segment, sources=tuple(policies)))

    last = rule_name(segment, direction, FINAL_SUFFIX[1:])
    if not side.isolated:
        add(
            last,
            ["*"],
            "*",
            ["*"],
            access="Allow",
            text=f"nsgsync: {what} of {segment} is open, no policy isolates it",
        )
        return out
    grouped: dict[tuple[str, tuple[str, ...]], list[Rule]] = {}
    for rule in side.rules:
        protocol = _PROTOCOL[rule.protocol]
        ports = _ports(rule.ports)
        if rule.protocol is IntentProtocol.SCTP:
            # Whether Azure filters SCTP by port under '*' is not documented: open every port.
            ports = ("*",)
            findings.append(
                Finding(
                    severity=Severity.WARNING,
                    code="azure-sctp-any-protocol",
                    segment=segment,
                    policy=rule.policies[0] if rule.policies else None,
                    message=f"Azure NSGs know no SCTP: {what} of {segment} allows every "
                    "protocol and port from the peers the policies allow SCTP with",
                )
            )
        grouped.setdefault((protocol, ports), []).append(rule)
    for (protocol, ports), rules in sorted(grouped.items()):
        peers = AddressSet.union_all(r.peer_set for r in rules).cidrs()
        ident = hashlib.sha256(f"{protocol}|{','.join(ports)}".encode()).hexdigest()[:10]
        text = "; ".join(dict.fromkeys(r.explanation() for r in rules))
        # Azure takes 4,000 prefixes per side: a longer peer list becomes several rules.
        for part, chunk in enumerate(_chunks(peers, MAX_PREFIXES_PER_SIDE)):
            add(
                rule_name(segment, direction, ident, part),
                chunk,
                protocol,
                ports,
                access="Allow",
                text=text,
                policies=sorted({p for r in rules for p in r.policies}),
            )
    add(
        last,
        ["*"],
        "*",
        ["*"],
        access="Deny",
        text=f"nsgsync: {what} of {segment} is isolated; deny what the rules above do not allow",
    )
    return out


def _vnet_finding(settings: Settings, segment: str, addresses: AddressSet) -> Finding | None:
    vnet = settings.config.vnet_cidrs
    if not vnet or addresses.issubset(AddressSet.from_cidrs(vnet)):
        return None
    return Finding(
        severity=Severity.WARNING,
        code="azure-outside-vnet",
        segment=segment,
        message=f"segment {segment}'s CIDRs are not all inside azure.vnetCIDRs: an NSG sees "
        "pod addresses only where pods take VNet addresses (Azure CNI, not overlay), and "
        "traffic from outside the VNet is what Azure's default rules treat as Internet",
    )


def _nsg(settings: Settings, cluster: str, placement: Placement) -> Resource:
    body = {
        "name": placement.name,
        "location": settings.config.location,
        "tags": tags(cluster, placement.segment),
    }
    return nsg_resource(body, placement.segment)


def _unsegmented(placement: Placement) -> list[Resource]:
    """Allow what no segment's rules decide, at the top of the band: addresses of the subnet
    outside every segment (nodes, pods in no segment) keep what they had without an NSG,
    where Azure's defaults would deny inbound traffic from outside the VNet."""
    out = []
    for direction in (INBOUND, OUTBOUND):
        name = f"{PREFIX}{_SHORT[direction]}{UNSEGMENTED_SUFFIX}"
        body = rule_body(
            name,
            direction=direction,
            access="Allow",
            protocol="*",
            sources=["*"],
            destinations=["*"],
            ports=["*"],
            text="nsgsync: addresses outside every segment, as if the subnet had no NSG",
        )
        out.append(rule_resource(placement.name, body, placement.segment))
    return out


def association_body(subnet_id: str, nsg_id: str) -> dict[str, Any]:
    return {"id": subnet_id, "properties": {"networkSecurityGroup": {"id": nsg_id}}}


def render_with(
    intent: Intent, topology: Topology, settings: Settings
) -> tuple[list[Resource], list[Finding]]:
    cluster = topology.cluster
    findings: list[Finding] = []
    out: list[Resource] = []
    rules: list[Resource] = []
    for placement in settings.placements:
        if placement.owned:
            out.append(_nsg(settings, cluster, placement))
            rules += _unsegmented(placement)
        nsg_id = settings.nsg_id(placement.name)
        for subnet in placement.subnets:
            first = next(
                s
                for s in placement.segments
                if (settings.segments[s].subnet_id or "").lower() == subnet.lower()
            )
            out.append(association_resource(subnet, association_body(subnet, nsg_id), first))
    for seg in intent.segments:
        placement = settings.placement_of(seg.name)
        found = _vnet_finding(settings, seg.name, seg.addresses)
        if found is not None:
            findings.append(found)
        for side, direction in ((seg.ingress, INBOUND), (seg.egress, OUTBOUND)):
            rules += _direction_rules(
                side,
                direction=direction,
                segment=seg.name,
                cidrs=seg.cidrs,
                nsg=placement.name,
                findings=findings,
            )
    out += assign(rules, settings.config.priority_band)
    return sorted(out, key=lambda r: r.key), findings


def check_limits(desired: Sequence[Resource]) -> None:
    counts = Counter(r.ident.parts[0] for r in desired if r.type == RULE)
    over = sorted((nsg, n) for nsg, n in counts.items() if n > MAX_RULES_PER_NSG)
    if over:
        nsg, n = over[0]
        others = f" (and {len(over) - 1} more)" if len(over) > 1 else ""
        raise LimitError(
            f"NSG {nsg} needs {n} rules, over Azure's limit of {MAX_RULES_PER_NSG} rules per "
            f"NSG{others}; nothing was applied",
            hint="give the segments fewer, larger CIDRs, or give segments sharing an NSG "
            "subnets (and so NSGs) of their own",
        )
    for r in desired:
        if r.type != RULE:
            continue
        props = r.body["properties"]
        for side in ("sourceAddressPrefixes", "destinationAddressPrefixes"):
            if len(props.get(side, ())) > MAX_PREFIXES_PER_SIDE:
                raise LimitError(
                    f"rule {r.body['name']} has {len(props[side])} {side}, over Azure's limit "
                    f"of {MAX_PREFIXES_PER_SIDE}; nothing was applied",
                    hint="give the segment fewer, larger CIDRs",
                )


def _addresses(props: Mapping[str, Any], single: str) -> tuple[AddressSet, bool]:
    """The addresses a rule's side names, and whether exactly ("*" is every address)."""
    values = props.get(single)
    listed = [str(values)] if values else [str(v) for v in props.get(single + "es") or []]
    if listed == ["*"]:
        return AddressSet.everything(), True
    try:
        return AddressSet.from_cidrs(listed), True
    except ValueError:
        # Service tags: anyone, which a footprint may say (it only overlaps more), not exactly.
        return AddressSet.everything(), False


def footprint(r: Resource) -> Footprint | None:
    """What an Allow rule lets through; only the segments' allow rules (below the
    `-default` and `-unsegmented` rules, whose slots mean something) can be paired."""
    props = r.body.get("properties") or {}
    if r.type != RULE or props.get("access") != "Allow":
        return None
    inbound = props.get("direction") == INBOUND
    own_key, peer_key = (
        ("destinationAddressPrefix", "sourceAddressPrefix")
        if inbound
        else ("sourceAddressPrefix", "destinationAddressPrefix")
    )
    ranges = [props["destinationPortRange"]] if props.get("destinationPortRange") else []
    ranges += list(props.get("destinationPortRanges") or [])
    spans: list[tuple[int, int]] = []
    for text in ranges:
        lo, _, hi = str(text).partition("-")
        if not lo.isdigit():
            spans = []
            break
        spans.append((int(lo), int(hi or lo)))
    protocol = str(props.get("protocol", "*")).lower()
    ports: tuple[tuple[str, Spans], ...]
    exact = True
    if protocol in ("tcp", "udp"):
        ports = ((protocol, tuple(spans) or ALL_PORTS),)
    elif protocol == "*":
        ports = any_protocol(tuple(spans) or None)
        exact = not spans  # on some ports: the portless protocols are not really in
    else:
        ports, exact = (("other", ALL_PORTS),), False
    peers, peers_exact = _addresses(props, peer_key)
    own, own_exact = _addresses(props, own_key)
    return Footprint(
        scope=("nsg", r.ident.parts[0], str(props.get("direction"))),
        peers=peers,
        ports=ports,
        own=own,
        pairable=tier(r) == 2,
        exact=exact and peers_exact and own_exact,
    )
