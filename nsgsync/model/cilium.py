"""Cilium's `cilium.io/v2` CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy, L3/L4.

Each rule (`spec`, each of `specs`) is lowered into the ordered model (nsgsync.model.tiers)
as Cilium enforces it (docs/cilium.md):

- its `ingressDeny`/`egressDeny` rules go to the deny stage, which runs first: a deny wins
  over any allow, whatever the order of the policies;
- its `ingress`/`egress` rules go to the allow stage, beside the NetworkPolicies; a pod that
  a rule selects in a direction where the rule has allow or deny rules is isolated there
  (Cilium's default deny), unless `enableDefaultDeny` turns that off for the direction.

What nsgsync cannot evaluate (L7 rules, DNS names, services, cloud groups, identities
that are no pods) never narrows an allow or widens a deny: the rule's match is uncertain
(`TRule.unmodeled`), and each such widening is a note the compiler reports as a finding.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from nsgsync.errors import excerpt
from nsgsync.model.k8s import (
    NAMESPACE_NAME_LABEL,
    LabelSelector,
    Operator,
    PolicyType,
    Protocol,
    Requirement,
    invalid,
    label_key_errors,
    label_value_errors,
    port_name_errors,
)
from nsgsync.model.tiers import (
    Action,
    Ent,
    Entity,
    Net,
    Pods,
    PortRange,
    TPeer,
    TPolicy,
    TRule,
)

CILIUM_API_VERSION = "cilium.io/v2"
NAMESPACED_KIND = "CiliumNetworkPolicy"
CLUSTERWIDE_KIND = "CiliumClusterwideNetworkPolicy"
KINDS = (NAMESPACED_KIND, CLUSTERWIDE_KIND)
DENY_STAGE = "Cilium deny"
ALLOW_STAGE = "Cilium"

# The labels Cilium gives a pod's identity besides the pod's own (docs/cilium.md).
NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
NAMESPACE_LABELS_PREFIX = "io.cilium.k8s.namespace.labels."
# Keys that only pods carry but whose values nsgsync does not know.
_POD_ONLY_UNKNOWN = ("io.cilium.k8s.policy.serviceaccount", "io.cilium.k8s.policy.cluster")
# Label sources: `k8s:` labels come from Kubernetes, `any:` matches every source; the
# others (`reserved:world`, `cidr:...`, `fqdn:...`) name identities that are no pods.
_POD_SOURCES = ("k8s", "any")
_MAX_PORTS = 40  # the CRD's maxItems on toPorts[].ports and icmps


class CiliumEntity(StrEnum):
    ALL = "all"
    WORLD = "world"
    WORLD_IPV4 = "world-ipv4"
    WORLD_IPV6 = "world-ipv6"
    CLUSTER = "cluster"
    HOST = "host"
    REMOTE_NODE = "remote-node"
    KUBE_APISERVER = "kube-apiserver"
    INGRESS = "ingress"
    HEALTH = "health"
    INIT = "init"
    UNMANAGED = "unmanaged"
    NONE = "none"


class CiliumProtocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"
    ICMP = "ICMP"
    ICMPV6 = "ICMPv6"
    VRRP = "VRRP"
    IGMP = "IGMP"
    ANY = "ANY"


class Note(StrEnum):
    """Why a Cilium rule was widened or left out; the compiler's finding codes say the same."""

    NODE_SELECTOR = "cilium-host-policy"
    L7 = "cilium-l7-widened"
    FQDN = "cilium-fqdn-widened"
    SERVICES = "cilium-services-widened"
    GROUPS = "cilium-groups-widened"
    IDENTITY = "cilium-identity-widened"
    AUTH = "cilium-auth-ignored"
    CRDS_ABSENT = "cilium-crds-absent"
    ICMP = "cilium-icmp-widened"


_STRICT = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _list_or_none(value: Any) -> Any:
    return [] if value is None else value


# --- The spec, in the shape of its YAML, checked as the CRD's schema checks it -------------


class SelectorRequirement(BaseModel):
    model_config = _STRICT

    key: StrictStr
    operator: Operator
    values: tuple[StrictStr, ...] = ()

    @field_validator("values", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return () if value is None else value

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return _check_key(value)

    @field_validator("values")
    @classmethod
    def _values(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if errors := label_value_errors(item):
                raise ValueError(invalid(item, errors))
        return value

    @model_validator(mode="after")
    def _values_fit_operator(self) -> SelectorRequirement:
        if self.operator in (Operator.IN, Operator.NOT_IN) and not self.values:
            raise ValueError(f"operator {self.operator.value} needs at least one value")
        if self.operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and self.values:
            raise ValueError(f"operator {self.operator.value} takes no values")
        return self


def _check_key(key: str) -> str:
    """A key is `source:name` or `name`; the name is a Kubernetes label key."""
    source, sep, name = key.partition(":")
    if not sep:
        name = key
    elif not source:
        raise ValueError(f"label key {excerpt(key)} has an empty source before ':'")
    if errors := label_key_errors(name):
        raise ValueError(invalid(key, errors))
    return key


class EndpointSelector(BaseModel):
    """A label selector over identities; keys may carry a source (`k8s:`, `reserved:`)."""

    model_config = _STRICT

    match_labels: dict[StrictStr, StrictStr] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: tuple[SelectorRequirement, ...] = Field(default=(), alias="matchExpressions")

    @field_validator("match_labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    raise ValueError(f"label key {excerpt(k)} must be a string")
                if not isinstance(v, str):
                    raise ValueError(
                        f"label {excerpt(k)} must have a string value, got {excerpt(v)} "
                        '(quote values like "true" or "1")'
                    )
                _check_key(k)
                if errors := label_value_errors(v):
                    raise ValueError(invalid(v, errors))
        return value

    @field_validator("match_expressions", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return () if value is None else value

    def requirements(self) -> tuple[SelectorRequirement, ...]:
        from_labels = tuple(
            SelectorRequirement(key=k, operator=Operator.IN, values=(v,))
            for k, v in sorted(self.match_labels.items())
        )
        return from_labels + self.match_expressions


def _check_cidr(text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(
            f"{excerpt(text)} is not a valid CIDR (expected e.g. 10.0.0.0/16)"
        ) from None
    return text


class CIDRRule(BaseModel):
    model_config = _STRICT

    cidr: StrictStr | None = None
    except_: tuple[StrictStr, ...] = Field(default=(), alias="except")
    cidr_group_ref: StrictStr | None = Field(default=None, alias="cidrGroupRef")
    cidr_group_selector: EndpointSelector | None = Field(default=None, alias="cidrGroupSelector")

    @field_validator("except_", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return () if value is None else value

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str | None) -> str | None:
        return None if value is None else _check_cidr(value)

    @field_validator("except_")
    @classmethod
    def _excepts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            _check_cidr(text)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> CIDRRule:
        given = [
            name
            for name, v in (
                ("cidr", self.cidr),
                ("cidrGroupRef", self.cidr_group_ref),
                ("cidrGroupSelector", self.cidr_group_selector),
            )
            if v is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "a CIDR rule needs exactly one of cidr, cidrGroupRef and cidrGroupSelector"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class PortProtocol(BaseModel):
    model_config = _STRICT

    port: StrictStr | None = None
    end_port: StrictInt | None = Field(default=None, alias="endPort")
    protocol: CiliumProtocol = CiliumProtocol.ANY  # Cilium's default: every protocol

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(
                f'port must be a string, as the CRD says: write "{value}" (quoted), not {value}'
            )
        if isinstance(value, str):
            if value.isdigit():
                if not 0 <= int(value) <= 65535:
                    raise ValueError(f"port {excerpt(value)} is outside 0-65535")
            elif errors := port_name_errors(value.lower()):
                raise ValueError(f"port name {invalid(value, errors)}")
        return value

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, value: Any) -> Any:
        if value is None:
            return CiliumProtocol.ANY
        names = [p.value for p in CiliumProtocol]
        if not isinstance(value, str) or value not in names:
            raise ValueError(f"unknown protocol {excerpt(value)}: use one of {', '.join(names)}")
        return value

    @model_validator(mode="after")
    def _end_port(self) -> PortProtocol:
        if self.end_port is None:
            return self
        if not 0 <= self.end_port <= 65535:
            raise ValueError(f"endPort {self.end_port} is outside 0-65535")
        if self.port is None or not self.port.isdigit():
            raise ValueError("endPort needs a numeric port (it cannot follow a named port)")
        if self.end_port and self.end_port < int(self.port):
            raise ValueError(f"endPort {self.end_port} is below port {self.port}")
        return self


class PortRule(BaseModel):
    model_config = _STRICT

    ports: tuple[PortProtocol, ...] = ()
    rules: dict[str, Any] | None = None  # L7: http, kafka, dns, l7proto, l7
    terminating_tls: dict[str, Any] | None = Field(default=None, alias="terminatingTLS")
    originating_tls: dict[str, Any] | None = Field(default=None, alias="originatingTLS")
    server_names: tuple[StrictStr, ...] | None = Field(default=None, alias="serverNames")
    listener: dict[str, Any] | None = None

    @field_validator("ports", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return () if value is None else value

    @field_validator("ports")
    @classmethod
    def _at_most(cls, value: tuple[PortProtocol, ...]) -> tuple[PortProtocol, ...]:
        if len(value) > _MAX_PORTS:
            raise ValueError(f"{len(value)} ports: the CRD allows at most {_MAX_PORTS}")
        return value

    def proxied(self) -> str:
        """What makes Cilium's proxy (L7) decide, if anything."""
        parts = sorted((self.rules or {}).keys())
        for name, value in (
            ("terminatingTLS", self.terminating_tls),
            ("originatingTLS", self.originating_tls),
            ("serverNames", self.server_names),
            ("listener", self.listener),
        ):
            if value:
                parts.append(name)
        return ", ".join(parts)


class PortDenyRule(BaseModel):
    model_config = _STRICT

    ports: tuple[PortProtocol, ...] = ()

    @field_validator("ports", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return () if value is None else value


class Authentication(BaseModel):
    model_config = _STRICT

    mode: StrictStr

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        modes = ("disabled", "required", "test-always-fail")
        if value not in modes:
            raise ValueError(f"unknown mode {excerpt(value)}: use one of {', '.join(modes)}")
        return value


_ICMPS = list[dict[str, Any]] | None


class _Common(BaseModel):
    """The fields an ingress and an egress rule share, under their two names."""

    model_config = _STRICT

    icmps: _ICMPS = None

    @field_validator("icmps")
    @classmethod
    def _icmps(cls, value: _ICMPS) -> _ICMPS:
        if value is not None and len(value) > _MAX_PORTS:
            raise ValueError(f"{len(value)} icmps: the CRD allows at most {_MAX_PORTS}")
        return value


class _FromPeers(_Common):
    """The peers of an ingress rule, allow or deny (the CRD names them alike in both)."""

    from_endpoints: list[EndpointSelector] | None = Field(default=None, alias="fromEndpoints")
    from_requires: list[EndpointSelector] | None = Field(default=None, alias="fromRequires")
    from_cidr: list[StrictStr] | None = Field(default=None, alias="fromCIDR")
    from_cidr_set: list[CIDRRule] | None = Field(default=None, alias="fromCIDRSet")
    from_entities: list[CiliumEntity] | None = Field(default=None, alias="fromEntities")
    from_groups: list[dict[str, Any]] | None = Field(default=None, alias="fromGroups")
    from_nodes: list[EndpointSelector] | None = Field(default=None, alias="fromNodes")

    @field_validator("from_cidr")
    @classmethod
    def _cidrs(cls, value: list[str] | None) -> list[str] | None:
        for text in value or ():
            _check_cidr(text)
        return value


class _ToPeers(_Common):
    """The peers of an egress rule, allow or deny."""

    to_endpoints: list[EndpointSelector] | None = Field(default=None, alias="toEndpoints")
    to_requires: list[EndpointSelector] | None = Field(default=None, alias="toRequires")
    to_cidr: list[StrictStr] | None = Field(default=None, alias="toCIDR")
    to_cidr_set: list[CIDRRule] | None = Field(default=None, alias="toCIDRSet")
    to_entities: list[CiliumEntity] | None = Field(default=None, alias="toEntities")
    to_groups: list[dict[str, Any]] | None = Field(default=None, alias="toGroups")
    to_nodes: list[EndpointSelector] | None = Field(default=None, alias="toNodes")
    to_services: list[dict[str, Any]] | None = Field(default=None, alias="toServices")

    @field_validator("to_cidr")
    @classmethod
    def _cidrs(cls, value: list[str] | None) -> list[str] | None:
        for text in value or ():
            _check_cidr(text)
        return value


class IngressRule(_FromPeers):
    to_ports: list[PortRule] | None = Field(default=None, alias="toPorts")
    authentication: Authentication | None = None


class EgressRule(_ToPeers):
    to_fqdns: list[dict[str, Any]] | None = Field(default=None, alias="toFQDNs")
    to_ports: list[PortRule] | None = Field(default=None, alias="toPorts")
    authentication: Authentication | None = None


# Deny rules: the same peers, ports without L7 rules, and no toFQDNs or authentication.
class IngressDenyRule(_FromPeers):
    to_ports: list[PortDenyRule] | None = Field(default=None, alias="toPorts")


class EgressDenyRule(_ToPeers):
    to_ports: list[PortDenyRule] | None = Field(default=None, alias="toPorts")


class DefaultDeny(BaseModel):
    model_config = _STRICT

    ingress: StrictBool | None = None
    egress: StrictBool | None = None


class Rule(BaseModel):
    """One Cilium rule: `spec`, or an item of `specs`."""

    model_config = _STRICT

    endpoint_selector: EndpointSelector | None = Field(default=None, alias="endpointSelector")
    node_selector: EndpointSelector | None = Field(default=None, alias="nodeSelector")
    ingress: list[IngressRule] | None = None
    ingress_deny: list[IngressDenyRule] | None = Field(default=None, alias="ingressDeny")
    egress: list[EgressRule] | None = None
    egress_deny: list[EgressDenyRule] | None = Field(default=None, alias="egressDeny")
    enable_default_deny: DefaultDeny | None = Field(default=None, alias="enableDefaultDeny")
    labels: list[dict[str, Any]] | None = None
    description: StrictStr | None = None
    log: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_subject(self) -> Rule:
        if (self.endpoint_selector is None) == (self.node_selector is None):
            raise ValueError("a rule needs exactly one of endpointSelector and nodeSelector")
        return self

    def has_rules(self, direction: PolicyType) -> bool:
        if direction is PolicyType.INGRESS:
            return bool(self.ingress) or bool(self.ingress_deny)
        return bool(self.egress) or bool(self.egress_deny)

    def default_deny(self, direction: PolicyType) -> bool:
        """Whether the rule puts the pods it selects into default deny in `direction`.

        Cilium: only a direction where the rule has (allow or deny) rules, and there unless
        enableDefaultDeny says false for it.
        """
        if not self.has_rules(direction):
            return False
        flags = self.enable_default_deny
        flag = None
        if flags is not None:
            flag = flags.ingress if direction is PolicyType.INGRESS else flags.egress
        return flag is not False


@dataclass(frozen=True)
class CiliumPolicy:
    kind: str
    namespace: str | None  # None: CiliumClusterwideNetworkPolicy
    name: str
    rules: tuple[tuple[str, Rule], ...]  # (field: "spec" or "specs[i]", rule)

    @property
    def ref(self) -> str:
        return self.name if self.namespace is None else f"{self.namespace}/{self.name}"


# --- Selectors over pods ----------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    """A requirement on a label of the pod (`on` "pod"), of its namespace ("namespace"), or
    on its namespace's name ("name")."""

    on: str
    key: str
    operator: Operator
    values: tuple[str, ...] = ()


def _as_pods(reqs: tuple[Req, ...]) -> Pods:
    """The requirements as a Kubernetes-style selector, which the compiler reads exactly."""
    names = [r for r in reqs if r.on == "name"]
    namespace = None
    # `namespace` only alone: a namespace and a namespaceSelector together are an AND that
    # readers of Pods may not all honour.
    alone = not any(r.on == "namespace" for r in reqs)
    if alone and len(names) == 1 and names[0].operator is Operator.IN and len(names[0].values) == 1:
        namespace = names[0].values[0]
        names = []
    on_namespace = [
        Requirement(key=NAMESPACE_NAME_LABEL, operator=r.operator, values=r.values) for r in names
    ] + [
        Requirement(key=r.key, operator=r.operator, values=r.values)
        for r in reqs
        if r.on == "namespace"
    ]
    on_pod = [
        Requirement(key=r.key, operator=r.operator, values=r.values) for r in reqs if r.on == "pod"
    ]
    return Pods(
        namespace=namespace,
        namespace_selector=LabelSelector(match_expressions=tuple(on_namespace))
        if on_namespace
        else None,
        pod_selector=LabelSelector(match_expressions=tuple(on_pod)) if on_pod else None,
    )


@dataclass(frozen=True)
class _Selected:
    """A selector read as nsgsync can: pods it matches, plus what it could not read."""

    reqs: tuple[Req, ...]
    unknown_pod_keys: tuple[str, ...]  # pod-only labels nsgsync does not know: dropped
    non_pod_keys: tuple[str, ...]  # labels of identities that are no pods (reserved:...)
    only_negative: bool  # no requirement a label-less identity would fail

    @property
    def pods(self) -> Pods:
        return _as_pods(self.reqs)


def _read_selector(
    selector: EndpointSelector, namespace: str | None, *, subject: bool = False, allow: bool = False
) -> _Selected:
    """`namespace`: the policy's (None: clusterwide). Cilium keeps a namespaced policy's
    subject in its namespace, and its peers too unless they name a namespace; whether
    naming namespace labels alone lifts that differs between versions, so an allow's
    peers are read as not kept (matching more), a deny's as kept (matching less)."""
    reqs: list[Req] = []
    unknown: list[str] = []
    non_pod: list[str] = []
    names_namespace = False
    only_negative = True
    for r in selector.requirements():
        source, sep, key = r.key.partition(":")
        if not sep:
            source, key = "k8s", r.key
        if r.operator in (Operator.IN, Operator.EXISTS):
            only_negative = False
        if source not in _POD_SOURCES:
            non_pod.append(r.key)
            continue
        if key == NAMESPACE_LABEL:
            names_namespace = True
            reqs.append(Req("name", "", r.operator, r.values))
        elif key.startswith(NAMESPACE_LABELS_PREFIX):
            reqs.append(
                Req("namespace", key.removeprefix(NAMESPACE_LABELS_PREFIX), r.operator, r.values)
            )
        elif key in _POD_ONLY_UNKNOWN:
            unknown.append(r.key)
        else:
            reqs.append(Req("pod", key, r.operator, r.values))
    names_labels = any(r.on == "namespace" for r in reqs)
    if namespace is not None and (subject or not (names_namespace or (allow and names_labels))):
        reqs.insert(0, Req("name", "", Operator.IN, (namespace,)))
        only_negative = False
    return _Selected(tuple(reqs), tuple(unknown), tuple(non_pod), only_negative)


# --- Lowering ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Lowered:
    policies: tuple[TPolicy, ...]
    notes: tuple[tuple[Note, str, str], ...]  # (note, policy ref, message)


def _protocols(p: CiliumProtocol) -> tuple[Protocol | None, ...]:
    if p is CiliumProtocol.ANY:
        return (None,)
    if p.value in {x.value for x in Protocol}:
        return (Protocol(p.value),)
    return ()  # ICMP, VRRP, IGMP: no TCP, UDP or SCTP connection


_PORTLESS = frozenset(
    {CiliumProtocol.ICMP, CiliumProtocol.ICMPV6, CiliumProtocol.VRRP, CiliumProtocol.IGMP}
)


def _port_ranges(ports: tuple[PortProtocol, ...]) -> tuple[PortRange, ...] | None:
    """A port rule's ports; None: every port (a rule with no ports listed)."""
    if not ports:
        return None
    out: list[PortRange] = []
    for p in ports:
        for proto in _protocols(p.protocol):
            if p.port is None or p.port == "0":
                out.append(PortRange(proto))
            elif p.port.isdigit():
                first = int(p.port)
                out.append(PortRange(proto, first, max(first, p.end_port or first)))
            else:
                # Cilium compares port names case-insensitively; pods' names are lowercase.
                out.append(PortRange(proto, name=p.port.lower()))
    return tuple(out)


class _Lowering:
    def __init__(self, policy: CiliumPolicy, where: str) -> None:
        self.policy = policy
        self.where = where
        self.notes: list[tuple[Note, str, str]] = []

    def note(self, note: Note, ref: str, message: str) -> None:
        self.notes.append((note, ref, message))

    def run(self) -> Lowered:
        out: list[TPolicy] = []
        for field, rule in self.policy.rules:
            ref = self.policy.ref if field == "spec" else f"{self.policy.ref} {field}"
            if rule.node_selector is not None:
                self.note(
                    Note.NODE_SELECTOR,
                    ref,
                    f"{self.policy.kind} {ref} has a nodeSelector: host policies govern the "
                    "nodes' own traffic, which nsgsync does not compile",
                )
                continue
            assert rule.endpoint_selector is not None
            out.extend(self.rule(ref, rule, rule.endpoint_selector))
        return Lowered(tuple(out), tuple(self.notes))

    def rule(self, ref: str, rule: Rule, selector: EndpointSelector) -> list[TPolicy]:
        subject = _read_selector(selector, self.policy.namespace, subject=True)
        uncertain_subject = bool(subject.unknown_pod_keys or subject.non_pod_keys)
        if uncertain_subject:
            self.note(
                Note.IDENTITY,
                ref,
                f"{self.policy.kind} {ref}: endpointSelector uses "
                f"{', '.join(subject.unknown_pod_keys + subject.non_pod_keys)}, which nsgsync "
                "cannot evaluate: its allow rules are applied to more pods, its deny rules "
                "and its default deny to none",
            )
        deny_rules: list[TRule] = []
        for i, r in enumerate(rule.ingress_deny or ()):
            deny_rules += self.deny(ref, PolicyType.INGRESS, i, r)
        for i, e in enumerate(rule.egress_deny or ()):
            deny_rules += self.deny(ref, PolicyType.EGRESS, i, e)
        if uncertain_subject:
            deny_rules = [
                _uncertain(r, "the policy's endpointSelector is not fully known")
                for r in deny_rules
            ]
        out: list[TPolicy] = []
        if deny_rules:
            out.append(
                TPolicy(
                    dialect=self.policy.kind,
                    ref=ref,
                    where=self.where,
                    subject=subject.pods,
                    types=frozenset(r.direction for r in deny_rules),
                    rules=tuple(deny_rules),
                    stage=DENY_STAGE,
                    order=(ref,),
                    isolates=False,
                )
            )
        for direction in (PolicyType.INGRESS, PolicyType.EGRESS):
            allows: list[TRule] = []
            items: Sequence[IngressRule | EgressRule] = (
                (rule.ingress or []) if direction is PolicyType.INGRESS else (rule.egress or [])
            )
            for i, item in enumerate(items):
                allows.append(self.allow(ref, direction, i, item))
            isolates = rule.default_deny(direction) and not uncertain_subject
            if not allows and not isolates:
                continue
            out.append(
                TPolicy(
                    dialect=self.policy.kind,
                    ref=ref,
                    where=self.where,
                    subject=subject.pods,
                    types=frozenset({direction}),
                    rules=tuple(allows),
                    stage=ALLOW_STAGE,
                    order=(ref, direction.value),
                    isolates=isolates,
                )
            )
        return out

    # The peers of one rule: a union over its L3 fields, as Cilium aggregates them.

    def peers(
        self,
        ref: str,
        item: IngressRule | EgressRule | IngressDenyRule | EgressDenyRule,
        *,
        deny: bool,
    ) -> tuple[list[TPeer], list[TPeer], list[str]]:
        """(peers, CIDR peers, reasons the match is uncertain); no L3 field: peers None."""
        ingress = isinstance(item, IngressRule | IngressDenyRule)
        name = "from" if ingress else "to"
        endpoints = item.from_endpoints if ingress else item.to_endpoints  # type: ignore[union-attr]
        requires = item.from_requires if ingress else item.to_requires  # type: ignore[union-attr]
        cidrs = item.from_cidr if ingress else item.to_cidr  # type: ignore[union-attr]
        cidr_sets = item.from_cidr_set if ingress else item.to_cidr_set  # type: ignore[union-attr]
        entities = item.from_entities if ingress else item.to_entities  # type: ignore[union-attr]
        groups = item.from_groups if ingress else item.to_groups  # type: ignore[union-attr]
        nodes = item.from_nodes if ingress else item.to_nodes  # type: ignore[union-attr]
        peers: list[TPeer] = []
        nets: list[TPeer] = []
        why: list[str] = []
        ns = self.policy.namespace
        required = [_read_selector(s, ns, allow=not deny) for s in requires or ()]
        for selector in endpoints or ():
            sel = _read_selector(selector, ns, allow=not deny)
            reqs = sel.reqs + tuple(r for s in required for r in s.reqs)
            peers.append(_as_pods(reqs))
            odd = sel.non_pod_keys + sel.unknown_pod_keys
            odd += tuple(k for s in required for k in s.non_pod_keys + s.unknown_pod_keys)
            if odd:
                self.note(
                    Note.IDENTITY,
                    ref,
                    f"{self.policy.kind} {ref}: {name}Endpoints uses {', '.join(odd)}, which "
                    "nsgsync cannot evaluate"
                    + ("" if deny else ": the rule is widened to every peer"),
                )
                why.append(f"{name}Endpoints selects by {', '.join(odd)}")
                if not deny:
                    peers.append(Ent(Entity.ALL))
            elif not deny and self.policy.namespace is None and sel.only_negative and not required:
                # A clusterwide selector with no positive requirement may also match
                # identities that are no pods (the world, nodes) in some Cilium versions.
                peers.append(Ent(Entity.ALL))
        for text in cidrs or ():
            nets.append(Net(text))
        for rule in cidr_sets or ():
            if rule.cidr is not None:
                nets.append(Net(rule.cidr, rule.except_))
            else:
                why.append(f"{name}CIDRSet names a CiliumCIDRGroup")
                self.note(
                    Note.GROUPS,
                    ref,
                    f"{self.policy.kind} {ref}: {name}CIDRSet refers to a CiliumCIDRGroup, "
                    "whose addresses nsgsync does not read"
                    + ("" if deny else ": the rule is widened to every peer"),
                )
                peers.append(Ent(Entity.ALL))
        for entity in entities or ():
            peers.extend(_entity_peers(entity))
        if groups:
            why.append(f"{name}Groups names cloud groups")
            self.note(
                Note.GROUPS,
                ref,
                f"{self.policy.kind} {ref}: {name}Groups names cloud security groups, whose "
                "addresses nsgsync does not know"
                + ("" if deny else ": the rule is widened to every peer"),
            )
            peers.append(Ent(Entity.ALL))
        if nodes:
            # Which node is which is not known: each node address may or may not match.
            peers.extend([Ent(Entity.HOST), Ent(Entity.REMOTE_NODE)])
        if isinstance(item, EgressRule | EgressDenyRule) and item.to_services:
            why.append("toServices selects a service's backends")
            self.note(
                Note.SERVICES,
                ref,
                f"{self.policy.kind} {ref}: toServices selects a service's backends, which "
                "nsgsync does not resolve"
                + ("" if deny else ": the rule's ports are opened to every peer"),
            )
            peers.append(Ent(Entity.ALL))
        if isinstance(item, EgressRule) and item.to_fqdns:
            why.append("toFQDNs names DNS names")
            self.note(
                Note.FQDN,
                ref,
                f"{self.policy.kind} {ref}: toFQDNs allows DNS names, whose addresses are "
                "known only at run time: the rule's ports are opened to every peer",
            )
            peers.append(Ent(Entity.ALL))
        return peers, nets, why

    def allow(
        self, ref: str, direction: PolicyType, index: int, item: IngressRule | EgressRule
    ) -> TRule:
        peers, nets, why = self.peers(ref, item, deny=False)
        all_peers = peers + nets
        l3 = bool(all_peers) or _has_l3_field(item)
        ports: tuple[PortRange, ...] | None = None
        if item.to_ports:
            found: list[PortRange] = []
            for pr in item.to_ports:
                ranges = _port_ranges(pr.ports)
                if ranges is None:
                    found = []
                    ports = None
                    break
                found.extend(ranges)
                if proxied := pr.proxied():
                    why.append(f"L7 ({proxied}) decided by Cilium's proxy")
                    self.note(
                        Note.L7,
                        ref,
                        f"{self.policy.kind} {ref}: {direction.value.lower()} rule {index} has "
                        f"L7 rules ({proxied}): only their ports are compiled, opened to "
                        "every request",
                    )
            else:
                ports = tuple(found)
        portless = [
            p.protocol.value
            for pr in item.to_ports or ()
            for p in pr.ports
            if p.protocol in _PORTLESS
        ] + (["ICMP (icmps)"] if item.icmps else [])
        if portless:
            # The Intent says such protocols only as every protocol and port: so be it.
            ports = None
            what = ", ".join(dict.fromkeys(portless))
            why.append(f"{what} compiled as every protocol and port")
            self.note(
                Note.ICMP,
                ref,
                f"{self.policy.kind} {ref}: {direction.value.lower()} rule {index} allows "
                f"{what}, which the cloud rules can say only as every protocol and port",
            )
        if not l3 and not item.to_ports and not item.icmps:
            # An empty rule: Cilium versions differ on whether it allows anything.
            why.append("an empty rule (Cilium versions differ on what it allows)")
        if item.authentication is not None and item.authentication.mode != "disabled":
            why.append(f"mutual authentication ({item.authentication.mode})")
            self.note(
                Note.AUTH,
                ref,
                f"{self.policy.kind} {ref}: {direction.value.lower()} rule {index} requires "
                "mutual authentication, which only narrows what it allows: compiled without it",
            )
        return TRule(
            Action.ALLOW,
            direction,
            index,
            peers=tuple(all_peers) if l3 else None,
            ports=ports,
            unmodeled="; ".join(dict.fromkeys(why)),
        )

    def deny(
        self, ref: str, direction: PolicyType, index: int, item: IngressDenyRule | EgressDenyRule
    ) -> list[TRule]:
        peers, nets, why = self.peers(ref, item, deny=True)
        l3 = bool(peers or nets) or _has_l3_field(item)
        ports: tuple[PortRange, ...] | None = None
        if item.to_ports:
            found: list[PortRange] = []
            for pr in item.to_ports:
                ranges = _port_ranges(pr.ports)
                if ranges is None:
                    why.append("a toPorts entry without ports")
                    continue
                found.extend(ranges)
            ports = tuple(found)
        elif item.icmps:
            ports = ()
        if not l3 and not item.to_ports and not item.icmps:
            why.append("an empty rule (Cilium versions differ on what it denies)")
        unmodeled = "; ".join(dict.fromkeys(why))
        if not l3:
            return [TRule(Action.DENY, direction, index, ports=ports, unmodeled=unmodeled)]
        out: list[TRule] = []
        if peers:
            out.append(
                TRule(
                    Action.DENY,
                    direction,
                    index,
                    peers=tuple(peers),
                    ports=ports,
                    unmodeled=unmodeled,
                )
            )
        if nets:
            # Cilium's CIDR selectors do not match pods or nodes of the cluster.
            out.append(
                TRule(
                    Action.DENY,
                    direction,
                    index,
                    peers=tuple(nets),
                    not_peers=(Ent(Entity.CLUSTER),),
                    ports=ports,
                    unmodeled=unmodeled,
                )
            )
        return out


def _has_l3_field(item: BaseModel) -> bool:
    """Whether the rule names peers at all (an empty list still does)."""
    names = (
        "from_endpoints",
        "from_cidr",
        "from_cidr_set",
        "from_entities",
        "from_groups",
        "from_nodes",
        "to_endpoints",
        "to_cidr",
        "to_cidr_set",
        "to_entities",
        "to_groups",
        "to_nodes",
        "to_services",
        "to_fqdns",
    )
    return any(getattr(item, n, None) for n in names)


def _entity_peers(entity: CiliumEntity) -> list[TPeer]:
    if entity is CiliumEntity.NONE:
        return []
    return [Ent(Entity(entity.value))]


def _uncertain(rule: TRule, why: str) -> TRule:
    reason = f"{rule.unmodeled}; {why}" if rule.unmodeled else why
    return TRule(
        rule.action,
        rule.direction,
        rule.index,
        peers=rule.peers,
        not_peers=rule.not_peers,
        ports=rule.ports,
        not_ports=rule.not_ports,
        local=rule.local,
        unmodeled=reason,
    )


def lower(policy: CiliumPolicy, where: str) -> Lowered:
    """The policy's rules in the ordered model, and the notes on what was widened."""
    return _Lowering(policy, where).run()
