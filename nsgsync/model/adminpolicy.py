"""network-policy-api's cluster-wide kinds, validated as the CRDs do, and lowered.

`policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy (the Admin tier, by priority) and
BaselineAdminNetworkPolicy (the Baseline tier, one object named `default`), and
`policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy (either tier). Each is lowered
into the ordered model (nsgsync.model.tiers): the Admin tier before NetworkPolicy, the
Baseline tier after it (docs/admin-policies.md).

The specs forbid unknown fields and enforce the CRDs' limits (priority 0-1000, exactly one
of a subject's or a peer's fields, at most 100 rules per direction), so an object nsgsync
accepts is one the API server accepts too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from nsgsync.errors import excerpt
from nsgsync.model.k8s import (
    EVERYTHING,
    LabelSelector,
    PolicyType,
    Protocol,
    _check_cidr,
    check_port_name,
)
from nsgsync.model.tiers import Action, Ent, Entity, Net, Pods, PortRange, TPeer, TPolicy, TRule

GROUP = "policy.networking.k8s.io"
ANP = "AdminNetworkPolicy"
BANP = "BaselineAdminNetworkPolicy"
CNP = "ClusterNetworkPolicy"
# apiVersion -> the kinds nsgsync compiles from it.
KINDS: dict[str, frozenset[str]] = {
    f"{GROUP}/v1alpha1": frozenset({ANP, BANP}),
    f"{GROUP}/v1alpha2": frozenset({CNP}),
}
BASELINE_NAME = "default"
_STRICT = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
# A domain name resolves to addresses nsgsync cannot know: any address, maybe.
_ANYWHERE = (Net("0.0.0.0/0"), Net("::/0"))


class SpecError(ValueError):
    """What the CRD refuses beyond a spec's shape, at `path` under spec."""

    def __init__(self, message: str, path: list[str | int]) -> None:
        super().__init__(message)
        self.path = path


def compiled(api_version: object, kind: object) -> bool:
    """Whether a document is one of the kinds this module reads."""
    return isinstance(api_version, str) and kind in KINDS.get(api_version, frozenset())


class _Model(BaseModel):
    model_config = _STRICT


def _exactly_one(model: BaseModel, what: str, fields: str) -> None:
    given = [name for name in type(model).model_fields if getattr(model, name) is not None]
    if len(given) != 1:
        raise ValueError(
            f"{what} must set exactly one of {fields}"
            + (f" (it sets {', '.join(given)})" if given else " (it sets none)")
        )


class NamespacedPod(_Model):
    namespace_selector: LabelSelector = Field(alias="namespaceSelector")
    pod_selector: LabelSelector = Field(alias="podSelector")

    def lowered(self) -> Pods:
        return Pods(namespace_selector=self.namespace_selector, pod_selector=self.pod_selector)


class Subject(_Model):
    namespaces: LabelSelector | None = None
    pods: NamespacedPod | None = None

    @model_validator(mode="after")
    def _one(self) -> Subject:
        _exactly_one(self, "a subject", "namespaces or pods")
        return self

    def lowered(self) -> Pods:
        if self.pods is not None:
            return self.pods.lowered()
        return Pods(namespace_selector=self.namespaces, pod_selector=EVERYTHING)


def _cidrs(values: list[str]) -> list[str]:
    if not 1 <= len(values) <= 25:
        raise ValueError(f"networks must list 1 to 25 CIDRs, not {len(values)}")
    for text in values:
        if not isinstance(text, str):
            raise ValueError(f"a network must be a CIDR string, not {excerpt(text)}")
        _check_cidr(text)
    return values


class Peer(_Model):
    """A peer of either direction; egress-only fields are refused on ingress by the rule."""

    namespaces: LabelSelector | None = None
    pods: NamespacedPod | None = None
    nodes: LabelSelector | None = None
    networks: list[str] | None = None
    domain_names: list[str] | None = Field(default=None, alias="domainNames")

    _networks = field_validator("networks")(lambda cls, v: None if v is None else _cidrs(v))

    @model_validator(mode="after")
    def _one(self) -> Peer:
        _exactly_one(self, "a peer", "namespaces, pods, nodes, networks or domainNames")
        return self

    def lowered(self) -> tuple[TPeer, ...]:
        if self.namespaces is not None:
            return (Pods(namespace_selector=self.namespaces, pod_selector=EVERYTHING),)
        if self.pods is not None:
            return (self.pods.lowered(),)
        if self.nodes is not None:
            # Node labels are unknown to nsgsync: any node may or may not match.
            return (Ent(Entity.REMOTE_NODE),)
        if self.networks is not None:
            return tuple(Net(c) for c in self.networks)
        return _ANYWHERE


class PortNumber(_Model):
    protocol: Protocol = Protocol.TCP
    port: StrictInt

    @field_validator("port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError(f"port {excerpt(value)} is outside 1-65535")
        return value


class PortSpan(_Model):
    protocol: Protocol = Protocol.TCP
    start: StrictInt
    end: StrictInt

    @model_validator(mode="after")
    def _order(self) -> PortSpan:
        for value in (self.start, self.end):
            if not 1 <= value <= 65535:
                raise ValueError(f"port {excerpt(value)} is outside 1-65535")
        if self.start >= self.end:
            raise ValueError(f"start {self.start} must be less than end {self.end}")
        return self


class AdminPort(_Model):
    port_number: PortNumber | None = Field(default=None, alias="portNumber")
    named_port: str | None = Field(default=None, alias="namedPort")
    port_range: PortSpan | None = Field(default=None, alias="portRange")

    _named = field_validator("named_port")(lambda cls, v: None if v is None else check_port_name(v))

    @model_validator(mode="after")
    def _one(self) -> AdminPort:
        _exactly_one(self, "a port", "portNumber, namedPort or portRange")
        return self

    def lowered(self) -> PortRange:
        if self.port_number is not None:
            n = self.port_number
            return PortRange(n.protocol, n.port, n.port)
        if self.port_range is not None:
            r = self.port_range
            return PortRange(r.protocol, r.start, r.end)
        return PortRange(None, name=self.named_port)


class _DestinationPort(_Model):
    number: StrictInt | None = None
    range: PortSpan | None = None

    @model_validator(mode="after")
    def _one(self) -> _DestinationPort:
        _exactly_one(self, "a destinationPort", "number or range")
        if self.number is not None and not 1 <= self.number <= 65535:
            raise ValueError(f"port {excerpt(self.number)} is outside 1-65535")
        return self


class _Transport(_Model):
    destination_port: _DestinationPort | None = Field(default=None, alias="destinationPort")


class ClusterProtocol(_Model):
    tcp: _Transport | None = None
    udp: _Transport | None = None
    sctp: _Transport | None = None
    destination_named_port: str | None = Field(default=None, alias="destinationNamedPort")

    _named = field_validator("destination_named_port")(
        lambda cls, v: None if v is None else check_port_name(v)
    )

    @model_validator(mode="after")
    def _one(self) -> ClusterProtocol:
        _exactly_one(self, "a protocol", "tcp, udp, sctp or destinationNamedPort")
        return self

    def lowered(self) -> PortRange:
        for protocol, transport in (
            (Protocol.TCP, self.tcp),
            (Protocol.UDP, self.udp),
            (Protocol.SCTP, self.sctp),
        ):
            if transport is None:
                continue
            port = transport.destination_port
            if port is None:
                return PortRange(protocol)
            if port.range is not None:
                return PortRange(protocol, port.range.start, port.range.end)
            return PortRange(protocol, port.number, port.number)
        return PortRange(None, name=self.destination_named_port)


class _Rule(_Model):
    name: str | None = None
    from_: list[Peer] | None = Field(default=None, alias="from")
    to: list[Peer] | None = None
    ports: list[AdminPort] | None = None
    protocols: list[ClusterProtocol] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and len(value) > 100:
            raise ValueError(f"name {excerpt(value)} is longer than 100 characters")
        return value


_ACTIONS = {"Allow": Action.ALLOW, "Accept": Action.ALLOW, "Deny": Action.DENY, "Pass": Action.PASS}


def _rules(
    rules: Sequence[_Rule] | None,
    direction: PolicyType,
    *,
    actions: tuple[str, ...],
    most: int,
    peers_most: int,
    v2: bool,
) -> tuple[TRule, ...]:
    """Each rule lowered: its peers (one rule more for domain names, uncertain) and ports."""
    out: list[TRule] = []
    ingress = direction is PolicyType.INGRESS
    side = "from" if ingress else "to"
    where = direction.value.lower()
    if rules is not None and len(rules) > most:
        raise SpecError(f"at most {most} {where} rules, not {len(rules)}", [where])
    for index, rule in enumerate(rules or ()):
        action = getattr(rule, "action", None)
        if action not in actions:
            raise SpecError(
                f"action must be one of {', '.join(actions)} (got {excerpt(action)})",
                [where, index, "action"],
            )
        peers = rule.from_ if ingress else rule.to
        wrong = "to" if ingress else "from"
        if (rule.to if ingress else rule.from_) is not None:
            raise SpecError(f"an {where} rule lists its peers in {side!r}", [where, index, wrong])
        if not peers or len(peers) > peers_most:
            raise SpecError(f"must list 1 to {peers_most} peers", [where, index, side])
        if v2 and rule.ports is not None:
            raise SpecError(
                "v1alpha2 ClusterNetworkPolicy names its ports in protocols",
                [where, index, "ports"],
            )
        if not v2 and rule.protocols is not None:
            raise SpecError(
                "v1alpha1 names its ports in ports (protocols is v1alpha2's)",
                [where, index, "protocols"],
            )
        for j, peer in enumerate(peers):
            egress_only = peer.nodes is not None or peer.networks is not None
            if ingress and (egress_only or peer.domain_names is not None):
                raise SpecError("a source is namespaces or pods only", [where, index, side, j])
            if peer.domain_names is not None and (not v2 or action != "Accept"):
                raise SpecError(
                    "domainNames are a v1alpha2 ClusterNetworkPolicy peer, for Accept rules only",
                    [where, index, side, j, "domainNames"],
                )
        listed = rule.protocols if v2 else rule.ports
        if listed is not None and len(listed) > (25 if v2 else 100):
            raise SpecError(
                f"at most {25 if v2 else 100} entries, not {len(listed)}",
                [where, index, "protocols" if v2 else "ports"],
            )
        ports = tuple(p.lowered() for p in listed) if listed else None
        plain = [p for peer in peers if peer.domain_names is None for p in peer.lowered()]
        if plain:
            out.append(TRule(_ACTIONS[action], direction, index, peers=tuple(plain), ports=ports))
        if any(peer.domain_names is not None for peer in peers):
            out.append(
                TRule(
                    _ACTIONS[action],
                    direction,
                    index,
                    peers=_ANYWHERE,
                    ports=ports,
                    unmodeled="domainNames (DNS names resolve to addresses nsgsync cannot know)",
                )
            )
    return tuple(out)


class _IngressRule(_Rule):
    action: str


class _EgressRule(_Rule):
    action: str


def _priority(value: int) -> int:
    if not 0 <= value <= 1000:
        raise ValueError(f"priority {excerpt(value)} is outside 0-1000")
    return value


class _Spec(_Model):
    subject: Subject
    ingress: list[_IngressRule] | None = None
    egress: list[_EgressRule] | None = None


class AdminNetworkPolicySpec(_Spec):
    priority: StrictInt

    _priority = field_validator("priority")(lambda cls, v: _priority(v))


class BaselineAdminNetworkPolicySpec(_Spec):
    pass


class ClusterNetworkPolicySpec(_Spec):
    tier: Literal["Admin", "Baseline"]
    priority: StrictInt

    _priority = field_validator("priority")(lambda cls, v: _priority(v))


SPECS: dict[str, type[_Spec]] = {
    ANP: AdminNetworkPolicySpec,
    BANP: BaselineAdminNetworkPolicySpec,
    CNP: ClusterNetworkPolicySpec,
}


def lower(kind: str, name: str, spec: _Spec, *, where: str) -> TPolicy:
    """One validated object as a TPolicy of its tier; SpecError for what the CRD refuses
    beyond the spec's own shape (actions, peers per direction, limits)."""
    actions: tuple[str, ...]
    if isinstance(spec, AdminNetworkPolicySpec):
        actions, most, v2 = ("Allow", "Deny", "Pass"), 100, False
        stage, order = "Admin", (spec.priority,)
    elif isinstance(spec, ClusterNetworkPolicySpec):
        actions, most, v2 = ("Accept", "Deny", "Pass"), 25, True
        stage, order = spec.tier, (spec.priority,)
    else:
        actions, most, v2 = ("Allow", "Deny"), 100, False
        stage, order = "Baseline", (0,)
    rules = tuple(
        rule
        for direction, listed in (
            (PolicyType.INGRESS, spec.ingress),
            (PolicyType.EGRESS, spec.egress),
        )
        for rule in _rules(listed, direction, actions=actions, most=most, peers_most=most, v2=v2)
    )
    # A policy with no rules for a direction does not affect it (the API's words).
    types = frozenset(
        d
        for d, given in ((PolicyType.INGRESS, spec.ingress), (PolicyType.EGRESS, spec.egress))
        if given
    )
    return TPolicy(
        dialect=kind,
        ref=name,
        where=where,
        subject=spec.subject.lowered(),
        types=types,
        rules=rules,
        stage=stage,
        order=order,
    )
