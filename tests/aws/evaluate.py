"""Evaluate security groups as EC2 would, from what the EC2 API returns.

Independent of nsgsync's own reading code: it calls describe_* itself and decides, for
a connection, whether the source's group lets it out and the destination's group in.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from nsgsync.model import Topology
from tests.oracle import Addrs

PROTO = {"TCP": "tcp", "UDP": "udp", "SCTP": "132"}


@dataclass(frozen=True)
class Groups:
    topology: Topology
    by_segment: dict[str, list[dict[str, Any]]]  # segment -> rules
    segment_of_group: dict[str, str]

    @classmethod
    def read(cls, client: Any, vpc_id: str, topology: Topology) -> Groups:
        groups = client.describe_security_groups(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc_id]},
                {"Name": "tag:nsgsync.io/cluster", "Values": [topology.cluster]},
            ]
        )["SecurityGroups"]
        seg_of = {
            g["GroupId"]: next(t["Value"] for t in g["Tags"] if t["Key"] == "nsgsync.io/segment")
            for g in groups
        }
        by_segment: dict[str, list[dict[str, Any]]] = {s: [] for s in seg_of.values()}
        if seg_of:
            rules = client.describe_security_group_rules(
                Filters=[{"Name": "group-id", "Values": list(seg_of)}], MaxResults=1000
            )["SecurityGroupRules"]
            for r in rules:
                by_segment[seg_of[r["GroupId"]]].append(r)
        return cls(topology, by_segment, seg_of)

    def segment_of(self, ip: str) -> str | None:
        for seg in self.topology.segments:
            if Addrs.of(seg.cidrs).contains(ip):
                return seg.name
        return None

    def _matches(self, rule: dict[str, Any], ip: str, proto: str, port: int) -> bool:
        if rule["IpProtocol"] not in ("-1", PROTO[proto]):
            return False
        if rule["IpProtocol"] in ("tcp", "udp") and not rule["FromPort"] <= port <= rule["ToPort"]:
            return False
        addr = ipaddress.ip_address(ip)
        for key in ("CidrIpv4", "CidrIpv6"):
            if rule.get(key):
                return addr in ipaddress.ip_network(rule[key])
        ref = (rule.get("ReferencedGroupInfo") or {}).get("GroupId")
        peer_segment = self.segment_of_group.get(ref or "")
        return peer_segment is not None and self.segment_of(ip) == peer_segment

    def allows(self, src: str, dst: str, proto: str, port: int) -> bool:
        for seg, peer, egress in (
            (self.segment_of(src), dst, True),
            (self.segment_of(dst), src, False),
        ):
            if seg is None:
                continue
            rules = [r for r in self.by_segment.get(seg, []) if bool(r["IsEgress"]) == egress]
            if not any(self._matches(r, peer, proto, port) for r in rules):
                return False
        return True
