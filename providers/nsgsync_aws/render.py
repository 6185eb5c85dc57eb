"""Intent to EC2 security groups and rules, in DescribeSecurityGroupRules' own shape.

One group per segment; one rule per (peer, protocol, port range). Pure: no AWS calls.
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from itertools import pairwise
from typing import Any

from nsgsync.errors import LimitError
from nsgsync.intent import Code, DirectionIntent, Finding, Intent, IntentProtocol, Rule, Severity
from nsgsync.model import Topology
from nsgsync.net import AddressSet, Interval, prefix_count, subtract
from nsgsync.plan import Body, Ident, Resource, Role
from nsgsync.provider import CLUSTER_TAG, SEGMENT_TAG, cut, dont_care_peers
from nsgsync_aws.config import AwsConfig

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


LIMIT_HINT = (
    "let a peer that is a whole segment be one rule (aws.peerMode: auto or security-group), "
    "give the segments fewer, larger CIDRs, set aws.onLimit: widen, or raise the quota and "
    "aws.maxRulesPerGroup"
)


def family(body: Mapping[str, Any]) -> int:
    """The address family a rule counts against (a referenced group counts as IPv4)."""
    return 6 if "CidrIpv6" in body else 4


def group_name(cluster: str, segment: str) -> str:
    return f"nsgsync-{cluster}-{segment}"


def group_ref(cluster: str, segment: str) -> str:
    """Stands for a group's id until the group exists (bound before diffing)."""
    return f"${{{group_name(cluster, segment)}}}"


# One list per segment, shared by its rules' bodies, which are never changed in place (a
# Body hands its values out to be read); 135,000 rules at 10,000 policies built it anew.
@lru_cache(maxsize=65_536)
def tags(cluster: str, segment: str) -> list[dict[str, str]]:
    return [{"Key": CLUSTER_TAG, "Value": cluster}, {"Key": SEGMENT_TAG, "Value": segment}]


@lru_cache(maxsize=4096)  # a rule's text is the same for each of its peers and spans
def description(text: str) -> str:
    """EC2 takes 255 characters of a small alphabet; provenance is cut to fit, not refused."""
    # Cut before cleaning (each character becomes one): a rule of 10,000 peers has a
    # provenance of hundreds of kilobytes, of which 252 characters are kept.
    return _DESCRIPTION_OK.sub("_", cut(text, 255))


@lru_cache(maxsize=65_536)  # immutable; asked for by each of a group's rules
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
    return _rule_ident(
        group.parts if group is not None else (segment,),
        body,
        peer=peer,
    )


def _rule_ident(where: tuple[str, ...], body: Mapping[str, Any], *, peer: str) -> Ident:
    """The identity `rule_key` gives, from the peer's text: the renderer, which knows it,
    calls this directly rather than have it read back out of the body."""
    proto = body["IpProtocol"]
    ports = "all" if proto not in _WITH_PORTS else f"{body['FromPort']}-{body['ToPort']}"
    return Ident("sgr", (*where, "out" if body["IsEgress"] else "in", proto, ports, peer))


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
    ident: Ident | None = None,
) -> Resource:
    """`ident`: the rule's key when the renderer has it (`_rule_ident`, what `rule_key`
    gives), to spare finding the peer's text again in the body, 134,000 times at 10,000
    policies."""
    return Resource(
        RULE,
        ident or rule_key(segment, body, peer_segment, group=group),
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


def _cidr_peer(cidr: str) -> tuple[str, str]:
    return ("CidrIpv6" if ":" in cidr else "CidrIpv4", cidr)


def rule_body(
    *,
    egress: bool,
    protocol: str,
    ports: tuple[int, int] | None,
    peer: tuple[str, str],  # (field, value): CidrIpv4, CidrIpv6 or ReferencedGroupInfo
    text: str,
    cluster: str,
    segment: str,
) -> Body:
    low, high = ports if ports is not None and protocol in _WITH_PORTS else (-1, -1)
    if protocol in _WITH_PORTS and ports is None:
        low, high = 0, 65535
    return Body.owned(
        {
            "IsEgress": egress,
            "IpProtocol": protocol,
            "FromPort": low,
            "ToPort": high,
            # Built here, not passed in: the body is owned, and a peer is shared by spans.
            peer[0]: {"GroupId": peer[1]} if peer[0] == "ReferencedGroupInfo" else peer[1],
            "Description": description(text),
            "Tags": tags(cluster, segment),
        }
    )


class SegmentIndex:
    """The segments' address intervals sorted by start, to find those a peer set may hold
    without testing every segment against every rule (4,000 segments x their rules)."""

    def __init__(self, segments: dict[str, AddressSet]) -> None:
        self.segments = segments
        self.starts: dict[int, list[tuple[int, str]]] = {4: [], 6: []}
        for name, addresses in segments.items():
            for family, intervals in ((4, addresses.v4), (6, addresses.v6)):
                self.starts[family] += [(lo, name) for lo, _ in intervals]
        for family in self.starts:
            self.starts[family].sort()
        # `_split`'s answers by (peers, peer mode): a team's peer set comes back for each
        # segment whose rules name it (29,000 rules, a few thousand distinct sets at 10k).
        self.splits: dict[tuple[AddressSet, str], tuple[tuple[str, ...], AddressSet]] = {}

    def within(self, peers: AddressSet) -> list[str]:
        """The segments with an interval starting inside `peers`, sorted: every segment
        wholly inside `peers` is one of them."""
        found: set[str] = set()
        for family, intervals in ((4, peers.v4), (6, peers.v6)):
            starts = self.starts[family]
            for lo, hi in intervals:
                i = bisect_left(starts, (lo, ""))
                while i < len(starts) and starts[i][0] <= hi:
                    found.add(starts[i][1])
                    i += 1
        return sorted(found)


def _split(
    peers: AddressSet, config: AwsConfig, index: SegmentIndex
) -> tuple[tuple[str, ...], AddressSet]:
    key = (peers, config.peer_mode)
    found = index.splits.get(key)
    if found is None:
        found = index.splits[key] = _split_anew(peers, config, index)
    return found


def _split_anew(
    peers: AddressSet, config: AwsConfig, index: SegmentIndex
) -> tuple[tuple[str, ...], AddressSet]:
    """The segments the peer names by group, and the addresses left for CIDR rules.

    security-group: every segment that is wholly a peer. auto: such a segment where its
    group is one rule in place of more CIDRs (a segment of one CIDR inside a larger block
    stays in the block).

    The addresses left are kept as interval lists changed in place, and a segment's gain is
    counted on the intervals it cuts only: subtracting and printing the whole rest again
    for every segment a peer holds was most of an AWS plan (team peers hold hundreds)."""
    refs: list[str] = []
    if config.peer_mode == "cidr":
        return (), peers
    rest: dict[int, list[Interval]] = {4: list(peers.v4), 6: list(peers.v6)}
    for name in index.within(peers):
        addresses = index.segments[name]
        cuts = _cuts(addresses, rest)
        if not cuts:
            continue
        pieces = {at: subtract((rest[at[0]][at[1]],), tuple(spans)) for at, spans in cuts.items()}
        if config.peer_mode == "auto":
            gained = sum(
                sum(prefix_count(lo, hi, _BITS[family]) for lo, hi in pieces[(family, i)])
                - prefix_count(*rest[family][i], _BITS[family])
                for family, i in pieces
            )
            if gained + 1 >= 0:  # the group's rule costs one: no fewer rules in all
                continue
        refs.append(name)
        for family, i in sorted(pieces, reverse=True):
            rest[family][i : i + 1] = pieces[(family, i)]
    return tuple(refs), AddressSet(tuple(rest[4]), tuple(rest[6]))


_BITS = {4: 32, 6: 128}


def _cuts(
    addresses: AddressSet, rest: dict[int, list[Interval]]
) -> dict[tuple[int, int], list[Interval]] | None:
    """The segment's intervals by the interval of `rest` that holds each, keyed by (family,
    index); None when the segment is empty or not wholly inside `rest`."""
    if not addresses:
        return None
    cuts: dict[tuple[int, int], list[Interval]] = {}
    for family, spans in ((4, addresses.v4), (6, addresses.v6)):
        held = rest[family]
        for lo, hi in spans:
            # `rest` is normalized (adjacent intervals merged), so an interval inside it
            # lies inside one of its intervals: the last that starts at or before it.
            i = bisect_right(held, (lo, _BEYOND)) - 1
            if i < 0 or held[i][1] < hi:
                return None
            cuts.setdefault((family, i), []).append((lo, hi))
    return cuts


_BEYOND = 1 << 129


def _direction_rules(
    side: DirectionIntent,
    *,
    egress: bool,
    segment: str,
    cluster: str,
    config: AwsConfig,
    segments: SegmentIndex,
    families: set[int],
    findings: list[Finding],
) -> list[Resource]:
    out: list[Resource] = []
    what = "egress" if egress else "ingress"
    if not side.isolated:
        # An open direction allows everything, outside addresses included, as Kubernetes does.
        everything = AddressSet.everything(families).cidrs()
        for cidr in everything:
            body = rule_body(
                egress=egress,
                protocol="-1",
                ports=None,
                peer=_cidr_peer(cidr),
                text=f"nsgsync: {what} open, no policy isolates {segment}",
                cluster=cluster,
                segment=segment,
            )
            out.append(rule_resource(body, segment))
        return out
    splits = [_split(rule.peer_set, config, segments) for rule in side.rules]
    # Addresses other rules of this side allow on the same ports are don't-care: node
    # CIDRs cut out of 0.0.0.0/0 (the node rule allows them) need not be cut out again.
    exact = [not (r.protocol is IntentProtocol.SCTP and r.ports is not None) for r in side.rules]
    rests = dont_care_peers(side.rules, [rest for _, rest in splits], exact=exact)
    for rule, (refs, _), rest in zip(side.rules, splits, rests, strict=True):
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
        policies = provenance(rule)
        parts: list[tuple[tuple[str, str], str | None]] = [
            (("ReferencedGroupInfo", group_ref(cluster, name)), name) for name in refs
        ]
        parts += [(_cidr_peer(cidr), None) for cidr in rest.cidrs()]
        for peer, peer_segment in parts:
            key_peer = peer[1] if peer_segment is None else f"sg:{peer_segment}"
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
                ident = _rule_ident((segment,), body, peer=key_peer)
                out.append(
                    rule_resource(
                        body, segment, peer_segment=peer_segment, sources=policies, ident=ident
                    )
                )
    rules = _dedupe(out)
    if config.on_limit == "widen":
        rules = widen_to_fit(rules, config.max_rules_per_group, findings)
    return rules


def provenance(rule: Rule) -> tuple[str, ...]:
    """Where a rule came from, for messages: `ns/p rule 0 peer 1` where the Intent says."""
    return tuple(s.describe() for s in rule.sources if s.policy) or tuple(rule.policies)


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
    segments = SegmentIndex({s.name: s.addresses for s in topology.segments})
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
    """Each group's side and family at the end of the apply (the engine checks the peak)."""
    by: dict[tuple[str, str, int], list[Resource]] = {}
    for r in desired:
        if r.type == RULE and r.segment is not None:
            side = "egress" if r.body["IsEgress"] else "ingress"
            by.setdefault((r.segment, side, family(r.body)), []).append(r)
    over = sorted((k, rs) for k, rs in by.items() if len(rs) > config.max_rules_per_group)
    if over:
        (seg, direction, fam), rules = over[0]
        others = f" (and {len(over) - 1} more)" if len(over) > 1 else ""
        raise LimitError(
            f"segment {seg} needs {len(rules)} {direction} rules in its security group "
            f"(IPv{fam}), over the limit of {config.max_rules_per_group} (aws.maxRulesPerGroup)"
            f"{others}; the policies and rules adding most: {contributors(rules)}; nothing "
            "was applied",
            hint=LIMIT_HINT,
        )


def contributors(rules: Sequence[Resource], top: int = 3) -> str:
    """`ns/p (12: ns/p rule 0 peer 2, ...)`: the policies with most rules, and their rules."""
    counts: Counter[str] = Counter()
    by_policy: dict[str, Counter[str]] = {}
    # The rules of one Intent rule share its provenance (one per peer): count each distinct
    # provenance once, times its rules, or 10,000 peers make 10,000 x 10,000 steps.
    for sources, n in Counter(r.sources for r in rules).items():
        for source in dict.fromkeys(sources):
            policy = source.split(" rule ", 1)[0]
            counts[policy] += n
            by_policy.setdefault(policy, Counter())[source] += n
    parts = []
    for policy, n in counts.most_common(top):
        detail = [s for s, _ in by_policy[policy].most_common(2) if s != policy]
        parts.append(f"{policy} ({n}{': ' + ', '.join(detail) if detail else ''})")
    return ", ".join(parts) or "none recorded"


# --- aws.onLimit: widen ---------------------------------------------------------------


def _size(cidr: str) -> int:
    net = ipaddress.ip_network(cidr)
    return int(net.num_addresses)


def _ports(body: Mapping[str, Any]) -> tuple[int, int]:
    if body["IpProtocol"] in _WITH_PORTS:
        return int(body["FromPort"]), int(body["ToPort"])
    return (-1, -1)


def _span(body: Mapping[str, Any]) -> int:
    low, high = _ports(body)
    return 65536 if low < 0 else high - low + 1


def _merge_cost(a: Resource, b: Resource) -> tuple[int, str, dict[str, Any]] | None:
    """What one rule in place of `a` and `b` lets through beyond them, and its body; None
    where they cannot merge (other protocol, a group peer, another family)."""
    x, y = a.body, b.body
    if x["IpProtocol"] != y["IpProtocol"] or family(x) != family(y):
        return None
    key = "CidrIpv6" if family(x) == 6 else "CidrIpv4"
    if key not in x or key not in y:
        return None
    if _ports(x) == _ports(y):
        # Wider addresses: the smallest prefix holding both.
        first, second = ipaddress.ip_network(x[key]), ipaddress.ip_network(y[key])
        net = first
        while not (second.subnet_of(net) and first.subnet_of(net)):  # type: ignore[arg-type]
            net = net.supernet()
        extra = int(net.num_addresses) - _size(x[key]) - _size(y[key])
        body = {**x, key: str(net)}
        return max(extra, 0) * _span(x), f"{x[key]} and {y[key]} as {net}", body
    if x[key] == y[key] and x["IpProtocol"] in _WITH_PORTS:
        # Wider ports: one span holding both.
        (lo1, hi1), (lo2, hi2) = _ports(x), _ports(y)
        low, high = min(lo1, lo2), max(hi1, hi2)
        extra = (high - low + 1) - (hi1 - lo1 + 1) - (hi2 - lo2 + 1)
        body = {**x, "FromPort": low, "ToPort": high}
        return (
            max(extra, 0) * _size(x[key]),
            f"ports {lo1}-{hi1} and {lo2}-{hi2} as {low}-{high}",
            body,
        )
    return None


def widen_to_fit(rules: list[Resource], limit: int, findings: list[Finding]) -> list[Resource]:
    """Merge the cheapest two rules (fewest connections let through that neither did) until
    each family of the side holds `limit` rules; sound, as a merged rule allows all both
    did. Each merge is a finding, `aws-widened-to-fit`."""
    out = list(rules)
    for fam in (4, 6):
        while sum(1 for r in out if family(r.body) == fam) > limit:
            best: tuple[int, str, int, int, dict[str, Any]] | None = None
            for a, b in _neighbours([r for r in out if family(r.body) == fam]):
                merged = _merge_cost(a, b)
                if merged is not None and (best is None or merged[0] < best[0]):
                    best = (merged[0], merged[1], out.index(a), out.index(b), merged[2])
            if best is None:
                break  # nothing merges: the limit error says what to do
            cost, what, i, j, body = best
            a, b = out[i], out[j]
            assert a.segment is not None
            sources = tuple(dict.fromkeys(a.sources + b.sources))
            joined = rule_resource(body, a.segment, sources=sources)
            # The merged rule may hold others of its kind whole: they go too.
            out = [r for k, r in enumerate(out) if k not in (i, j) and not _within(r, joined)] + [
                joined
            ]
            side = "egress" if body["IsEgress"] else "ingress"
            findings.append(
                Finding(
                    severity=Severity.WARNING,
                    code=Code.AWS_WIDENED_TO_FIT,
                    segment=a.segment,
                    policy=sources[0].split(" rule ", 1)[0] if sources else None,
                    message=f"aws.onLimit: widen: the {side} rules of {a.segment} merged "
                    f"{what} ({cost} more address-ports allowed) to fit "
                    f"{limit} rules a side",
                )
            )
    return _dedupe(out)


def _neighbours(rules: list[Resource]) -> list[tuple[Resource, Resource]]:
    """The pairs worth weighing: next to each other in address order among rules of one
    protocol and ports, and in port order among rules of one protocol and CIDR (a merge of
    two further apart lets through all that lies between, and costs more)."""
    by_ports: dict[tuple[str, tuple[int, int]], list[Resource]] = {}
    by_peer: dict[tuple[str, str], list[Resource]] = {}
    for r in rules:
        cidr = r.body.get("CidrIpv4") or r.body.get("CidrIpv6")
        if cidr is None:
            continue  # a group peer: no address to widen
        by_ports.setdefault((r.body["IpProtocol"], _ports(r.body)), []).append(r)
        by_peer.setdefault((r.body["IpProtocol"], str(cidr)), []).append(r)
    out: list[tuple[Resource, Resource]] = []
    for group in by_ports.values():
        ordered = sorted(group, key=lambda r: _address_key(r.body))
        out += list(pairwise(ordered))
    for group in by_peer.values():
        ordered = sorted(group, key=lambda r: _ports(r.body))
        out += list(pairwise(ordered))
    return out


def _address_key(body: Mapping[str, Any]) -> tuple[int, int]:
    net = ipaddress.ip_network(str(body.get("CidrIpv4") or body.get("CidrIpv6")))
    return int(net.network_address), net.prefixlen


def _within(r: Resource, wide: Resource) -> bool:
    """Whether rule `r` lets through nothing that `wide` does not (CIDR rules only)."""
    x, y = r.body, wide.body
    key = "CidrIpv6" if family(x) == 6 else "CidrIpv4"
    if x["IpProtocol"] != y["IpProtocol"] or key not in x or key not in y:
        return False
    if family(x) != family(y):
        return False
    (lo1, hi1), (lo2, hi2) = _ports(x), _ports(y)
    inside = ipaddress.ip_network(x[key]).subnet_of(ipaddress.ip_network(y[key]))  # type: ignore[arg-type]
    return inside and lo2 <= lo1 and hi1 <= hi2
