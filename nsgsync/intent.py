"""The Intent: per segment, the traffic allowed, provider-neutral (docs/contracts.md).

`isolated: false` allows everything in that direction; `protocol` is TCP, UDP, SCTP or
ANY; `ports` a list of inclusive [from, to] ranges or None for every port.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property, lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nsgsync.jsontext import pretty
from nsgsync.net import AddressSet

API_VERSION = "nsgsync.io/v1alpha1"


class Direction(StrEnum):
    INGRESS = "ingress"
    EGRESS = "egress"


class IntentProtocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"
    ANY = "ANY"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"


class Code(StrEnum):
    """Every finding's code: stable, each documented in docs/semantics.md#findings."""

    ISOLATION_PARTIAL = "isolation-partial"
    SELECTOR_WIDENED = "selector-widened"
    PEER_WIDENED = "peer-widened"
    PEER_UNSEGMENTED = "peer-unsegmented"
    NAMED_PORT_WIDENED = "named-port-widened"
    NAMED_PORT_UNMATCHED = "named-port-unmatched"
    NODE_TRAFFIC = "node-traffic"
    NO_NODE_CIDRS = "no-node-cidrs"
    NOT_ENFORCED = "not-enforced"
    UNSEGMENTED_WITHOUT_ADDRESSES = "unsegmented-without-addresses"
    NAMESPACE_LABELS_UNKNOWN = "namespace-labels-unknown"
    KIND_IGNORED = "kind-ignored"
    KIND_NARROWS_ONLY = "kind-narrows-only"
    AWS_SCTP_ALL_PORTS = "aws-sctp-all-ports"
    AWS_ATTACHMENT_OVERLAP = "aws-attachment-overlap"
    AWS_WIDENED_TO_FIT = "aws-widened-to-fit"
    AZURE_SCTP_ANY_PROTOCOL = "azure-sctp-any-protocol"
    AZURE_OUTSIDE_VNET = "azure-outside-vnet"
    # Ordered policies (docs/semantics.md#ordered-policies), any dialect.
    DENY_PARTIAL = "deny-partial"
    RULE_UNMODELED = "rule-unmodeled"
    PROTOCOLS_WIDENED = "protocols-widened"
    DIALECT_NOT_ENFORCED = "dialect-not-enforced"
    # network-policy-api's admin kinds (docs/admin-policies.md).
    ADMIN_PRIORITY_TIE = "admin-priority-tie"
    # Cilium (docs/cilium.md): what lowering its policies widened or left out.
    CILIUM_HOST_POLICY = "cilium-host-policy"
    CILIUM_L7_WIDENED = "cilium-l7-widened"
    CILIUM_FQDN_WIDENED = "cilium-fqdn-widened"
    CILIUM_SERVICES_WIDENED = "cilium-services-widened"
    CILIUM_GROUPS_WIDENED = "cilium-groups-widened"
    CILIUM_IDENTITY_WIDENED = "cilium-identity-widened"
    CILIUM_AUTH_IGNORED = "cilium-auth-ignored"
    CILIUM_CRDS_ABSENT = "cilium-crds-absent"
    CILIUM_ICMP_WIDENED = "cilium-icmp-widened"
    # Calico (docs/calico.md): what lowering its policies widened or left out.
    CALICO_NOT_COMPILED = "calico-not-compiled"
    CALICO_UNMODELED = "calico-unmodeled"
    CALICO_PROTOCOL_WIDENED = "calico-protocol-widened"
    CALICO_CRDS_ABSENT = "calico-crds-absent"


class Source(BaseModel):
    """Where a rule came from: a policy, its rule index and peer index."""

    model_config = ConfigDict(frozen=True)

    policy: str | None = None
    rule: int | None = None
    peer: int | None = None
    reason: str | None = None

    def describe(self) -> str:
        if self.policy is None:
            return self.reason or "nsgsync"
        text = self.policy
        if self.rule is not None:
            text += f" rule {self.rule}"
        if self.peer is not None:
            text += f" peer {self.peer}"
        return text


@lru_cache(maxsize=16_384)  # the same peers (a team's segments) recur in rule after rule
def _address_set(peers: tuple[str, ...]) -> AddressSet:
    return AddressSet.from_cidrs(peers)


class Rule(BaseModel):
    model_config = ConfigDict(frozen=True)

    peers: tuple[str, ...]
    protocol: IntentProtocol
    ports: tuple[tuple[int, int], ...] | None
    policies: tuple[str, ...]
    sources: tuple[Source, ...] = ()

    @cached_property
    def peer_set(self) -> AddressSet:
        return _address_set(self.peers)

    def matches(self, ip: str, protocol: str, port: int) -> bool:
        if self.protocol is not IntentProtocol.ANY and self.protocol.value != protocol:
            return False
        if self.ports is not None and not any(lo <= port <= hi for lo, hi in self.ports):
            return False
        return self.peer_set.contains_ip(ip)

    def explanation(self) -> str:
        """Provenance as one short line, for rule descriptions and comments."""
        return "; ".join(s.describe() for s in self.sources) or "nsgsync"


class DirectionIntent(BaseModel):
    model_config = ConfigDict(frozen=True)

    isolated: bool
    rules: tuple[Rule, ...] = ()

    def allowing(self, ip: str, protocol: str, port: int) -> list[Rule] | None:
        """The rules that allow it; None when the direction is open (allows everything)."""
        if not self.isolated:
            return None
        return [r for r in self.rules if r.matches(ip, protocol, port)]


class SegmentIntent(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    cidrs: tuple[str, ...]
    ingress: DirectionIntent
    egress: DirectionIntent

    def direction(self, direction: Direction) -> DirectionIntent:
        return self.ingress if direction is Direction.INGRESS else self.egress

    @cached_property
    def addresses(self) -> AddressSet:
        return AddressSet.from_cidrs(self.cidrs)


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True)

    severity: Severity
    code: Code
    message: str
    policy: str | None = None
    segment: str | None = None
    # Every segment the finding concerns, where it concerns more than one (one cause, one
    # finding: a peer widened in many segments); `segment` names it where it is just one.
    segments: tuple[str, ...] | None = None

    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.segment or "", self.policy or "", self.code, self.message)

    def concerns(self) -> tuple[str, ...]:
        """The segments this finding is about (none: the cluster, or policies only)."""
        if self.segments:
            return self.segments
        return (self.segment,) if self.segment else ()


class Intent(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str = "Intent"
    cluster: str
    segments: tuple[SegmentIntent, ...]
    findings: tuple[Finding, ...] = ()

    def segment(self, name: str) -> SegmentIntent:
        for seg in self.segments:
            if seg.name == name:
                return seg
        raise KeyError(name)

    def segment_of(self, ip: str) -> SegmentIntent | None:
        for seg in self.segments:
            if seg.addresses.contains_ip(ip):
                return seg
        return None

    def allows(self, src: str, dst: str, protocol: str, port: int) -> bool:
        """Whether the cloud rules this Intent implies let `src` open a connection to `dst`."""
        for seg, peer, direction in (
            (self.segment_of(src), dst, Direction.EGRESS),
            (self.segment_of(dst), src, Direction.INGRESS),
        ):
            if seg is None:
                continue
            rules = seg.direction(direction).allowing(peer, protocol, port)
            if rules is not None and not rules:
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        def rule(r: Rule) -> dict[str, Any]:
            return {
                "peers": list(r.peers),
                "protocol": r.protocol.value,
                "ports": [list(p) for p in r.ports] if r.ports is not None else None,
                "policies": list(r.policies),
                "sources": [s.model_dump(exclude_none=True) for s in r.sources],
            }

        def side(d: DirectionIntent) -> dict[str, Any]:
            return {"isolated": d.isolated, "rules": [rule(r) for r in d.rules]}

        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "cluster": self.cluster,
            "segments": [
                {
                    "name": s.name,
                    "cidrs": list(s.cidrs),
                    "ingress": side(s.ingress),
                    "egress": side(s.egress),
                }
                for s in self.segments
            ],
            "findings": [f.model_dump(exclude_none=True, mode="json") for f in self.findings],
        }

    def to_json(self) -> str:
        return pretty(self.to_dict())
