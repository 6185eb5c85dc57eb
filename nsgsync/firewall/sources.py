"""Decision tables from the Intent, and from each cloud's rendered rules.

The rendered rules are read in the cloud APIs' own JSON shapes (the Plan JSON contract,
docs/aws.md, docs/azure.md, docs/gcp.md), with each cloud's evaluation order and
defaults: AWS security groups allow-only, deny by default; Azure NSG rules by priority,
then Azure's default rules; GCP firewall rules by priority (a deny wins a tie), then the
implied rules at 65535 (deny ingress, allow egress).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nsgsync.errors import ProviderError
from nsgsync.firewall.ports import ALL, Ports
from nsgsync.firewall.tables import Endpoint, Endpoints, Entry, Table
from nsgsync.intent import Direction, Intent
from nsgsync.model import Topology
from nsgsync.net import AddressSet
from nsgsync.net.intervals import Interval
from nsgsync.plan import Resource

Tables = dict[tuple[str, str], Table]  # (segment, "ingress" | "egress") -> table

UNSEGMENTED_GROUP = "(no segment)"
SELECTOR_GROUP = "(by selector)"
_POLICY = re.compile(r"([a-z0-9][-a-z0-9.]*/[a-z0-9][-a-z0-9.]*) rule \d+")


def group_of(segment: Any) -> str:
    """The namespace a segment is filed under in pictures: its own, or a shared heading."""
    return str(segment.namespace) if segment.namespace is not None else SELECTOR_GROUP


def endpoints_for(topology: Topology) -> Endpoints:
    """Every segment, in the topology's order, then the nodes, unsegmented pods, outside."""
    items = [Endpoint(s.name, group_of(s), "segment", s.addresses) for s in topology.segments]
    if topology.node_cidrs:
        items.append(Endpoint("nodes", UNSEGMENTED_GROUP, "nodes", topology.node_addresses))
    rest = topology.unsegmented_addresses() - topology.node_addresses
    if rest:
        items.append(Endpoint("unsegmented", UNSEGMENTED_GROUP, "unsegmented", rest))
    inside = topology.pod_addresses | topology.node_addresses
    items.append(
        Endpoint("outside", UNSEGMENTED_GROUP, "outside", AddressSet.everything() - inside)
    )
    return Endpoints(items)


def intent_tables(intent: Intent) -> Tables:
    """The Intent as tables: allow rules, deny by default when isolated, else allow all."""
    out: Tables = {}
    everything = AddressSet.everything()
    for seg in intent.segments:
        for direction in (Direction.INGRESS, Direction.EGRESS):
            side = seg.direction(direction)
            if not side.isolated:
                opened = Entry(0, True, everything, ALL, "open: no policy isolates it")
                out[(seg.name, direction.value)] = Table(
                    seg.name, direction.value, (opened,), True, "open: no policy isolates it"
                )
                continue
            entries = tuple(
                Entry(
                    0,
                    True,
                    r.peer_set,
                    Ports.of(r.protocol.value, r.ports),
                    r.explanation(),
                    tuple(r.policies),
                )
                for r in side.rules
            )
            out[(seg.name, direction.value)] = Table(
                seg.name,
                direction.value,
                Table.ordered(entries),
                False,
                "isolated: no rule allows it",
            )
    return out


def _policies(text: str) -> tuple[str, ...]:
    return tuple(sorted(set(_POLICY.findall(text))))


def cloud_tables(provider: str, resources: Sequence[Resource], topology: Topology) -> Tables:
    """The rendered resources of `provider` as tables, one per segment and direction."""
    if provider == "aws":
        return _aws(resources, topology)
    if provider == "azure":
        return _azure(resources, topology)
    if provider == "gcp":
        return _gcp(resources, topology)
    raise ProviderError(
        f"nsgsync cannot evaluate the rules of provider {provider!r}",
        hint="drop --cloud/--provider-rules; the Intent's verdict does not depend on it",
    )


# --- AWS ---------------------------------------------------------------------------

_AWS_PROTOCOL = {"-1": "ANY", "tcp": "TCP", "6": "TCP", "udp": "UDP", "17": "UDP", "132": "SCTP"}


def _aws_ports(body: Mapping[str, Any]) -> Ports:
    proto = _AWS_PROTOCOL.get(str(body.get("IpProtocol")), "OTHER")
    low, high = body.get("FromPort", -1), body.get("ToPort", -1)
    # EC2 keeps no ports for protocols other than TCP and UDP: every port is open.
    if proto in ("TCP", "UDP") and low is not None and low >= 0:
        return Ports.of(proto, [(int(low), int(high))])
    return Ports.of(proto, None)


def _aws(resources: Sequence[Resource], topology: Topology) -> Tables:
    group_segment = {
        f"${{{r.body.get('GroupName')}}}": r.segment
        for r in resources
        if r.type == "security-group"
    }
    by_segment: dict[str, list[Resource]] = {}
    for r in resources:
        if r.type == "security-group-rule" and r.segment is not None:
            by_segment.setdefault(r.segment, []).append(r)
    group_name = {
        r.segment: str(r.body.get("GroupName")) for r in resources if r.type == "security-group"
    }
    out: Tables = {}
    for seg in topology.segments:
        group = group_name.get(seg.name, f"of segment {seg.name}")
        for direction in ("ingress", "egress"):
            entries = []
            for r in by_segment.get(seg.name, []):
                if bool(r.body.get("IsEgress")) != (direction == "egress"):
                    continue
                ref = (r.body.get("ReferencedGroupInfo") or {}).get("GroupId")
                if ref is not None:
                    peer = group_segment.get(str(ref))
                    peers = topology.segment(peer).addresses if peer else AddressSet()
                else:
                    cidrs = [r.body[k] for k in ("CidrIpv4", "CidrIpv6") if r.body.get(k)]
                    peers = AddressSet.from_cidrs(cidrs)
                desc = str(r.body.get("Description", ""))
                name = f"security group rule {r.key} of group {group}"
                entries.append(Entry(0, True, peers, _aws_ports(r.body), name, _policies(desc)))
            out[(seg.name, direction)] = Table(
                seg.name,
                direction,
                Table.ordered(entries),
                False,
                f"no rule of security group {group} allows it (a group denies what no rule allows)",
            )
    return out


# --- Azure -------------------------------------------------------------------------

_AZURE_PROTOCOL = {"Tcp": "TCP", "Udp": "UDP", "*": "ANY"}
_AZURE_DEFAULTS = {
    "Inbound": [
        (65000, True, "VirtualNetwork", "VirtualNetwork", "AllowVnetInBound"),
        (65001, True, "AzureLoadBalancer", "*", "AllowAzureLoadBalancerInBound"),
        (65500, False, "*", "*", "DenyAllInBound"),
    ],
    "Outbound": [
        (65000, True, "VirtualNetwork", "VirtualNetwork", "AllowVnetOutBound"),
        (65001, True, "*", "Internet", "AllowInternetOutBound"),
        (65500, False, "*", "*", "DenyAllOutBound"),
    ],
}


def _azure_values(props: Mapping[str, Any], single: str) -> list[str]:
    if props.get(single):
        return [str(props[single])]
    return [str(v) for v in props.get(single + "es", props.get(single + "s")) or []]


def _azure_addresses(values: Iterable[str], vnet: AddressSet) -> AddressSet:
    out = AddressSet()
    for v in values:
        if v in ("*", "Any"):
            out = out | AddressSet.everything()
        elif v == "VirtualNetwork":
            out = out | vnet
        elif v == "Internet":
            out = out | (AddressSet.everything() - vnet)
        elif "/" in v or v.replace(".", "").isdigit() or ":" in v:
            out = out | AddressSet.of(v if "/" in v else f"{v}/{128 if ':' in v else 32}")
        # Other service tags (AzureLoadBalancer, ...) name no pod or outside address here.
    return out


def _azure_ports(protocol: str, ranges: Iterable[str]) -> Ports:
    proto = _AZURE_PROTOCOL.get(protocol, "OTHER")
    spans: list[Interval] = []
    for text in ranges:
        if text == "*":
            return Ports.of(proto, None)
        lo, _, hi = text.partition("-")
        spans.append((int(lo), int(hi or lo)))
    return Ports.of(proto, spans)


def _azure(resources: Sequence[Resource], topology: Topology) -> Tables:
    vnet = AddressSet.from_cidrs(topology.provider_block("azure").get("vnetCIDRs") or [])
    nsg_of_subnet = {
        str(r.body.get("id", "")).lower(): str(
            r.body.get("properties", {}).get("networkSecurityGroup", {}).get("id", "")
        ).rsplit("/", 1)[-1]
        for r in resources
        if r.type == "subnet-association"
    }
    rules: dict[str, list[Mapping[str, Any]]] = {}
    for r in resources:
        if r.type == "security-rule":
            owner = r.key.split("/")[1] if r.key.count("/") >= 2 else ""
            rules.setdefault(owner, []).append(r.body)
    out: Tables = {}
    for seg in topology.segments:
        subnet = str(seg.provider_settings("azure").get("subnetId", "")).lower()
        nsg = nsg_of_subnet.get(subnet)
        for direction, az in (("ingress", "Inbound"), ("egress", "Outbound")):
            own_key, peer_key = (
                ("destinationAddressPrefix", "sourceAddressPrefix")
                if az == "Inbound"
                else ("sourceAddressPrefix", "destinationAddressPrefix")
            )
            entries: list[Entry] = []
            if nsg is None:
                # No NSG on the subnet: Azure filters nothing.
                entries.append(Entry(0, True, AddressSet.everything(), ALL, "no NSG on the subnet"))
            for body in rules.get(nsg or "", []):
                props = body.get("properties", {})
                if props.get("direction") != az:
                    continue
                entries.append(
                    Entry(
                        int(props.get("priority", 0)),
                        props.get("access") == "Allow",
                        _azure_addresses(_azure_values(props, peer_key), vnet),
                        _azure_ports(
                            str(props.get("protocol", "*")),
                            _azure_values(props, "destinationPortRange"),
                        ),
                        f"NSG rule {body.get('name')} (priority {props.get('priority')}, "
                        f"{props.get('access')}) of NSG {nsg}",
                        _policies(str(props.get("description", ""))),
                        _azure_addresses(_azure_values(props, own_key), vnet),
                    )
                )
            if nsg is not None:
                for priority, allow, src, dst, name in _AZURE_DEFAULTS[az]:
                    own, peer = (dst, src) if az == "Inbound" else (src, dst)
                    entries.append(
                        Entry(
                            priority,
                            allow,
                            _azure_addresses([peer], vnet),
                            ALL,
                            f"Azure default rule {name} (priority {priority}) of NSG {nsg}",
                            (),
                            _azure_addresses([own], vnet),
                        )
                    )
            out[(seg.name, direction)] = Table(
                seg.name, direction, Table.ordered(entries), False, "no rule (Azure denies)"
            )
    return out


# --- GCP ---------------------------------------------------------------------------

_GCP_PROTOCOL = {"all": "ANY", "tcp": "TCP", "6": "TCP", "udp": "UDP", "17": "UDP"}
_GCP_PROTOCOL |= {"sctp": "SCTP", "132": "SCTP"}


def _gcp_ports(entries: Iterable[Mapping[str, Any]]) -> Ports:
    out = Ports()
    for e in entries:
        proto = _GCP_PROTOCOL.get(str(e.get("IPProtocol", "")).lower(), "OTHER")
        spans: list[Interval] = []
        for text in e.get("ports") or []:
            lo, _, hi = str(text).partition("-")
            spans.append((int(lo), int(hi or lo)))
        out = out | Ports.of(proto, spans or None)
    return out


def _gcp(resources: Sequence[Resource], topology: Topology) -> Tables:
    firewalls = [r.body for r in resources if r.type == "firewall" and not r.body.get("disabled")]
    out: Tables = {}
    for seg in topology.segments:
        for direction in ("ingress", "egress"):
            entries = []
            for body in firewalls:
                if str(body.get("direction", "INGRESS")).lower() != direction:
                    continue
                own_key, peer_key = (
                    ("destinationRanges", "sourceRanges")
                    if direction == "ingress"
                    else ("sourceRanges", "destinationRanges")
                )
                own_ranges = body.get(own_key) or []
                own = AddressSet.from_cidrs(own_ranges) if own_ranges else None
                if own is not None and not own.overlaps(seg.addresses):
                    continue
                deny = bool(body.get("denied"))
                entries.append(
                    Entry(
                        int(body.get("priority", 1000)),
                        not deny,
                        AddressSet.from_cidrs(body.get(peer_key) or []),
                        _gcp_ports(body.get("denied") or body.get("allowed") or []),
                        f"firewall {body.get('name')} (priority {body.get('priority')}, "
                        f"{'deny' if deny else 'allow'})",
                        _policies(str(body.get("description", ""))),
                        own,
                    )
                )
            out[(seg.name, direction)] = Table(
                seg.name,
                direction,
                Table.ordered(entries),
                direction == "egress",
                "GCP's implied rule at 65535 ("
                + ("allow egress" if direction == "egress" else "deny ingress")
                + ")",
            )
    return out
