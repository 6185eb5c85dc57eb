"""Intent to EC2 security groups and rules, in DescribeSecurityGroupRules' own shape.

One group per segment; one rule per (peer, protocol, port range). Pure: no AWS calls.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from nsgsync.errors import LimitError
from nsgsync.intent import DirectionIntent, Finding, Intent, IntentProtocol, Rule, Severity
from nsgsync.model import Topology
from nsgsync.net import AddressSet
from nsgsync.plan import Ident, Resource, Role
from nsgsync_aws.config import AwsConfig

CLUSTER_TAG = "nsgsync.io/cluster"
SEGMENT_TAG = "nsgsync.io/segment"
GROUP = "security-group"
RULE = "security-group-rule"

_PROTOCOL = {
    IntentProtocol.ANY: "-1",
    IntentProtocol.TCP: "tcp",
    IntentProtocol.UDP: "udp",
    IntentProtocol.SCTP: "132",  # EC2 knows SCTP only by number, and takes no ports for it
}
_WITH_PORTS = {"tcp", "udp"}
_DESCRIPTION_OK = re.compile(r"[^a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*]")


def group_name(cluster: str, segment: str) -> str:
    return f"nsgsync-{cluster}-{segment}"


def group_ref(cluster: str, segment: str) -> str:
    """Stands for a group's id until the group exists (bound before diffing)."""
    return f"${{{group_name(cluster, segment)}}}"


def tags(cluster: str, segment: str) -> list[dict[str, str]]:
    return [{"Key": CLUSTER_TAG, "Value": cluster}, {"Key": SEGMENT_TAG, "Value": segment}]


@lru_cache(maxsize=4096)  # a rule's text is the same for each of its peers and spans
def description(text: str) -> str:
    """EC2 takes 255 characters of a small alphabet; provenance is cut to fit, not refused."""
    # Cut before cleaning (each character becomes one): a rule of 10,000 peers has a
    # provenance of hundreds of kilobytes, of which 252 characters are kept.
    if len(text) <= 255:
        return _DESCRIPTION_OK.sub("_", text)
    return _DESCRIPTION_OK.sub("_", text[:252]) + "..."


def group_key(segment: str) -> Ident:
    return Ident("sg", (segment,))


def copy_key(segment: str, gid: str) -> Ident:
    """A second group carrying nsgsync's tags for a segment: an identity of its own, so
    that nothing meant for the segment's group is ever written into it (it is destroyed)."""
    return Ident("sg", (segment, gid))


def rule_key(
    segment: str,
    body: Mapping[str, Any],
    peer_segment: str | None = None,
    *,
    group: Ident | None = None,
) -> Ident:
    """A rule's identity: its group, direction, protocol, ports and peer; never its id."""
    direction = "out" if body["IsEgress"] else "in"
    proto = body["IpProtocol"]
    ports = "all" if proto not in _WITH_PORTS else f"{body['FromPort']}-{body['ToPort']}"
    if peer_segment is not None:
        peer = f"sg:{peer_segment}"
    elif "CidrIpv4" in body:
        peer = body["CidrIpv4"]
    elif "CidrIpv6" in body:
        peer = body["CidrIpv6"]
    elif "PrefixListId" in body:
        peer = f"pl:{body['PrefixListId']}"
    else:
        peer = "sg:" + str(body.get("ReferencedGroupInfo", {}).get("GroupId"))
    where = group.parts if group is not None else (segment,)
    return Ident("sgr", (*where, direction, proto, ports, peer))


def group_resource(
    body: Mapping[str, Any],
    segment: str,
    cloud_id: str | None = None,
    *,
    ident: Ident | None = None,
) -> Resource:
    return Resource(
        GROUP, ident or group_key(segment), body, segment, cloud_id, role=Role.CONTAINER
    )


def rule_resource(
    body: Mapping[str, Any],
    segment: str,
    *,
    peer_segment: str | None = None,
    cloud_id: str | None = None,
    unreported: frozenset[str] = frozenset(),
    sources: tuple[str, ...] = (),
    group: Ident | None = None,
) -> Resource:
    return Resource(
        RULE,
        rule_key(segment, body, peer_segment, group=group),
        body,
        segment,
        cloud_id,
        unreported,
        role=Role.RULE,
        container=group or group_key(segment),
        direction="egress" if body["IsEgress"] else "ingress",
        sources=sources,
        peer=group_key(peer_segment) if peer_segment is not None else None,
    )


def rule_body(
    *,
    egress: bool,
    protocol: str,
    ports: tuple[int, int] | None,
    peer: dict[str, Any],
    text: str,
    cluster: str,
    segment: str,
) -> dict[str, Any]:
    low, high = ports if ports is not None and protocol in _WITH_PORTS else (-1, -1)
    if protocol in _WITH_PORTS and ports is None:
        low, high = 0, 65535
    return {
        "IsEgress": egress,
        "IpProtocol": protocol,
        "FromPort": low,
        "ToPort": high,
        **peer,
        "Description": description(text),
        "Tags": tags(cluster, segment),
    }


def _peer_parts(
    rule: Rule, config: AwsConfig, segments: dict[str, AddressSet], cluster: str
) -> list[tuple[dict[str, Any], str | None]]:
    """The peer as EC2 peers: whole segments by group (in security-group mode), then CIDRs."""
    rest = rule.peer_set
    out: list[tuple[dict[str, Any], str | None]] = []
    if config.peer_mode == "security-group":
        for name, addresses in sorted(segments.items()):
            if addresses and addresses.issubset(rest):
                out.append(({"ReferencedGroupInfo": {"GroupId": group_ref(cluster, name)}}, name))
                rest = rest - addresses
    for cidr in rest.cidrs():
        out.append(({"CidrIpv6": cidr} if ":" in cidr else {"CidrIpv4": cidr}, None))
    return out


def _direction_rules(
    side: DirectionIntent,
    *,
    egress: bool,
    segment: str,
    cluster: str,
    config: AwsConfig,
    segments: dict[str, AddressSet],
    families: set[int],
    findings: list[Finding],
) -> list[Resource]:
    out: list[Resource] = []
    what = "egress" if egress else "ingress"
    if not side.isolated:
        # An open direction allows everything, outside addresses included, as Kubernetes does.
        everything = AddressSet.everything(families).cidrs()
        for cidr in everything:
            peer = {"CidrIpv6": cidr} if ":" in cidr else {"CidrIpv4": cidr}
            body = rule_body(
                egress=egress,
                protocol="-1",
                ports=None,
                peer=peer,
                text=f"nsgsync: {what} open, no policy isolates {segment}",
                cluster=cluster,
                segment=segment,
            )
            out.append(rule_resource(body, segment))
        return out
    for rule in side.rules:
        protocol = _PROTOCOL[rule.protocol]
        spans: list[tuple[int, int] | None] = list(rule.ports) if rule.ports is not None else [None]
        if protocol == "132" and rule.ports is not None:
            spans = [None]
            findings.append(
                Finding(
                    severity=Severity.WARNING,
                    code="aws-sctp-all-ports",
                    segment=segment,
                    policy=rule.policies[0] if rule.policies else None,
                    message=f"EC2 takes no ports for SCTP: {what} of {segment} allows every SCTP "
                    "port where the policies name some",
                )
            )
        # Once per rule, not per peer: the provenance names every peer, so building it per
        # peer made a rule of n peers cost n^2 (130 s at 10,000 ipBlock peers).
        text = description(rule.explanation())
        policies = tuple(rule.policies)
        for peer, peer_segment in _peer_parts(rule, config, segments, cluster):
            for span in spans:
                body = rule_body(
                    egress=egress,
                    protocol=protocol,
                    ports=span,
                    peer=peer,
                    text=text,
                    cluster=cluster,
                    segment=segment,
                )
                out.append(
                    rule_resource(body, segment, peer_segment=peer_segment, sources=policies)
                )
    return _dedupe(out)


def _dedupe(resources: Sequence[Resource]) -> list[Resource]:
    """SCTP spans collapse into one rule; keep the first body of each key."""
    seen: dict[Ident, Resource] = {}
    for r in resources:
        seen.setdefault(r.ident, r)
    return list(seen.values())


def render(
    intent: Intent, topology: Topology, config: AwsConfig
) -> tuple[list[Resource], list[Finding]]:
    cluster = topology.cluster
    families = topology.pod_addresses.families()
    segments = {s.name: s.addresses for s in topology.segments}
    findings: list[Finding] = []
    out: list[Resource] = []
    for seg in intent.segments:
        out.append(
            group_resource(
                {
                    "GroupName": group_name(cluster, seg.name),
                    "VpcId": config.vpc_id,
                    "Description": description(
                        f"nsgsync: pods of segment {seg.name} of cluster {cluster}"
                    ),
                    "Tags": tags(cluster, seg.name),
                },
                seg.name,
            )
        )
        for side, egress in ((seg.ingress, False), (seg.egress, True)):
            out += _direction_rules(
                side,
                egress=egress,
                segment=seg.name,
                cluster=cluster,
                config=config,
                segments=segments,
                families=families,
                findings=findings,
            )
    return sorted(out, key=lambda r: r.key), findings


def check_limits(desired: Sequence[Resource], config: AwsConfig) -> None:
    counts = Counter(
        (r.segment, "egress" if r.body["IsEgress"] else "ingress")
        for r in desired
        if r.type == RULE
    )
    over = sorted((seg, d, n) for (seg, d), n in counts.items() if n > config.max_rules_per_group)
    if over:
        seg, direction, n = over[0]
        others = f" (and {len(over) - 1} more)" if len(over) > 1 else ""
        raise LimitError(
            f"segment {seg} needs {n} {direction} rules in its security group, over the limit "
            f"of {config.max_rules_per_group} (aws.maxRulesPerGroup){others}; nothing was applied",
            hint="set aws.peerMode: security-group (a peer segment is one rule), give the "
            "segments fewer, larger CIDRs, or raise the quota and aws.maxRulesPerGroup",
        )
