"""Calico's policies (projectcalico.org/v3, and the same objects under crd.projectcalico.org/v1)
read and lowered into the ordered model (nsgsync.model.tiers); docs/calico.md says what is
compiled, what is widened and why, and what is refused.

NetworkPolicy and GlobalNetworkPolicy become one TPolicy each, in the stage of their tier
("tier default"), sorted by (tier order, policy order, name) as Felix sorts them; a missing
order is infinite (evaluated last). A condition nsgsync cannot evaluate never disappears: it
makes the rule's match uncertain (TRule.unmodeled), so an Allow may apply, a Deny is not relied
on and a Pass may or may not skip the tier; each is noted (TPolicy.notes) and reported.

Errors are CalicoError with the path of the field under `spec`; the sources turn them into
InputError with the file, line, object and field.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from nsgsync.errors import did_you_mean, excerpt
from nsgsync.model.calico_selector import (
    All,
    And,
    Compare,
    Endpoint,
    Expr,
    Global,
    Has,
    Not,
    Or,
    SelectorError,
    conjunction,
    parse_selector,
    prefixed,
)
from nsgsync.model.k8s import (
    NAMESPACE_NAME_LABEL,
    LabelSelector,
    Operator,
    PodInfo,
    PolicyType,
    Protocol,
    Requirement,
    check_port_name,
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

GROUPS = ("projectcalico.org", "crd.projectcalico.org")
POLICY_KINDS = ("NetworkPolicy", "GlobalNetworkPolicy")
SET_KINDS = ("NetworkSet", "GlobalNetworkSet")
TIER_KIND = "Tier"
DIALECT = "Calico"

DEFAULT_TIER = "default"
# The default tier's order when no Tier object says otherwise (Calico 3.28 and later); the
# Kubernetes NetworkPolicies sit in it at order 1000.
DEFAULT_TIER_ORDER = 1_000_000.0
KNP_ORDER = 1000.0
# Where Calico (3.30 and later) puts the admin network policy kinds among the tiers.
ADMIN_TIER_ORDER = 1000.0
BASELINE_TIER_ORDER = 10_000_000.0
UNTRACKED_STAGE = "untracked"

# The labels Calico gives every pod's endpoint, and the prefixes under which it adds the
# labels of the pod's namespace and service account.
NAMESPACE_LABEL = "projectcalico.org/namespace"
ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"
SERVICE_ACCOUNT_LABEL = "projectcalico.org/serviceaccount"
NAME_LABEL = "projectcalico.org/name"
NS_PREFIX = "pcns."
SA_PREFIX = "pcsa."

# Finding codes (nsgsync.intent.Code) the notes carry.
NOT_COMPILED = "calico-not-compiled"
UNMODELED = "calico-unmodeled"
PROTOCOL_WIDENED = "calico-protocol-widened"

MODELED = {"TCP": Protocol.TCP, "UDP": Protocol.UDP, "SCTP": Protocol.SCTP}
PROTOCOL_NAMES = ("TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite")
PROTOCOL_NUMBERS = {6: "TCP", 17: "UDP", 132: "SCTP", 1: "ICMP", 58: "ICMPv6", 136: "UDPLite"}
ACTIONS = ("Allow", "Deny", "Pass", "Log")


class CalicoError(ValueError):
    """A field Calico's API server would refuse; `path` is under `spec` (or the object)."""

    def __init__(self, message: str, path: Sequence[str | int]) -> None:
        super().__init__(message)
        self.message = message
        self.path = list(path)


# --- the objects, as read ---------------------------------------------------------------


@dataclass(frozen=True)
class Tier:
    name: str
    order: float | None  # None: after every ordered tier
    default_action: str = "Deny"  # what the tier does to a selected pod no rule decided


@dataclass(frozen=True)
class NetSet:
    """A NetworkSet or GlobalNetworkSet: addresses a selector can pick by their labels."""

    name: str
    namespace: str | None
    labels: Mapping[str, str]
    nets: tuple[str, ...]
    has_domains: bool = False


@dataclass(frozen=True)
class EntityRule:
    nets: tuple[str, ...] = ()
    not_nets: tuple[str, ...] = ()
    selector: Expr | None = None
    not_selector: Expr | None = None
    namespace_selector: Expr | None = None
    sa_names: tuple[str, ...] = ()
    sa_selector: Expr | None = None
    ports: tuple[int | str | tuple[int, int], ...] = ()
    not_ports: tuple[int | str | tuple[int, int], ...] = ()
    services: bool = False

    @property
    def selects(self) -> bool:
        return (
            self.selector is not None
            or self.not_selector is not None
            or self.namespace_selector is not None
            or bool(self.sa_names)
            or self.sa_selector is not None
        )


@dataclass(frozen=True)
class CRule:
    action: str
    index: int
    protocol: str | None = None  # canonical name, or a number as a string
    not_protocol: str | None = None
    icmp: bool = False
    not_icmp: bool = False
    ip_version: int | None = None
    source: EntityRule = field(default_factory=EntityRule)
    destination: EntityRule = field(default_factory=EntityRule)
    http: bool = False


@dataclass(frozen=True)
class CalicoPolicy:
    kind: str  # NetworkPolicy or GlobalNetworkPolicy
    namespace: str | None  # None: a GlobalNetworkPolicy
    name: str
    where: str
    tier: str = DEFAULT_TIER
    order: float | None = None
    selector: Expr = field(default_factory=All)
    namespace_selector: Expr | None = None
    sa_selector: Expr | None = None
    types: frozenset[PolicyType] = frozenset({PolicyType.INGRESS})
    ingress: tuple[CRule, ...] = ()
    egress: tuple[CRule, ...] = ()
    do_not_track: bool = False
    pre_dnat: bool = False
    apply_on_forward: bool = False

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


# --- reading: plain mappings in, validated objects out ------------------------------------


def _mapping(value: Any, path: list[str | int], keys: Sequence[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CalicoError(f"must be a mapping, not {excerpt(value)}", path)
    for key in value:
        if key not in keys:
            raise CalicoError(
                f"unknown field {excerpt(key)}{did_you_mean(str(key), keys)} "
                "(not part of Calico's API; check its spelling)",
                [*path, str(key)],
            )
    return value


def _list(value: Any, path: list[str | int]) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise CalicoError(f"must be a list, not {excerpt(value)}", path)
    return value


def _string(value: Any, path: list[str | int]) -> str:
    if not isinstance(value, str):
        raise CalicoError(f"must be a string, not {excerpt(value)}", path)
    return value


def _strings(value: Any, path: list[str | int]) -> tuple[str, ...]:
    return tuple(_string(v, [*path, i]) for i, v in enumerate(_list(value, path)))


def _selector(value: Any, path: list[str | int]) -> Expr | None:
    if value is None:
        return None
    text = _string(value, path)
    try:
        return parse_selector(text)
    except SelectorError as exc:
        raise CalicoError(str(exc), path) from None


def _order(value: Any, path: list[str | int]) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise CalicoError(f"order must be a number, not {excerpt(value)}", path)
    return float(value)


def _net(value: Any, path: list[str | int]) -> str:
    text = _string(value, path)
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise CalicoError(f"{excerpt(text)} is not an address or CIDR", path) from None


def _nets(value: Any, path: list[str | int]) -> tuple[str, ...]:
    return tuple(_net(v, [*path, i]) for i, v in enumerate(_list(value, path)))


def _port(value: Any, path: list[str | int]) -> int | str | tuple[int, int]:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise CalicoError(f"a port is a number, a name or a range, not {excerpt(value)}", path)
    if isinstance(value, int) or value.isdigit():
        number = int(value)
        if not 0 <= number <= 65535:
            raise CalicoError(f"port {excerpt(value)} is not 0-65535", path)
        return number
    if ":" in value:
        first, _, last = value.partition(":")
        if not (first.isdigit() and last.isdigit()):
            raise CalicoError(f'port range {excerpt(value)} is not "first:last"', path)
        lo, hi = int(first), int(last)
        if not 0 <= lo <= hi <= 65535:
            raise CalicoError(f"port range {excerpt(value)} is not within 0-65535, low first", path)
        return (lo, hi)
    try:
        return check_port_name(value)
    except ValueError as exc:
        raise CalicoError(str(exc), path) from None


def _ports(value: Any, path: list[str | int]) -> tuple[int | str | tuple[int, int], ...]:
    return tuple(_port(v, [*path, i]) for i, v in enumerate(_list(value, path)))


def _protocol(value: Any, path: list[str | int]) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 255:
            raise CalicoError(f"protocol number {value} is not 1-255", path)
        return PROTOCOL_NUMBERS.get(value, str(value))
    if isinstance(value, str):
        if value.isdigit():
            return _protocol(int(value), path)
        named = {p.lower(): p for p in PROTOCOL_NAMES}.get(value.lower())
        if named is not None:
            return named
    raise CalicoError(
        f"unknown protocol {excerpt(value)}: use {', '.join(PROTOCOL_NAMES)} or a number 1-255",
        path,
    )


_ENTITY_KEYS = (
    "nets",
    "notNets",
    "selector",
    "notSelector",
    "namespaceSelector",
    "ports",
    "notPorts",
    "serviceAccounts",
    "services",
)


def _entity(value: Any, path: list[str | int]) -> EntityRule:
    body = _mapping(value, path, _ENTITY_KEYS)
    sa = _mapping(body.get("serviceAccounts"), [*path, "serviceAccounts"], ("names", "selector"))
    services = _mapping(body.get("services"), [*path, "services"], ("name", "namespace"))
    rule = EntityRule(
        nets=_nets(body.get("nets"), [*path, "nets"]),
        not_nets=_nets(body.get("notNets"), [*path, "notNets"]),
        selector=_selector(body.get("selector"), [*path, "selector"]),
        not_selector=_selector(body.get("notSelector"), [*path, "notSelector"]),
        namespace_selector=_selector(body.get("namespaceSelector"), [*path, "namespaceSelector"]),
        sa_names=_strings(sa.get("names"), [*path, "serviceAccounts", "names"]),
        sa_selector=_selector(sa.get("selector"), [*path, "serviceAccounts", "selector"]),
        ports=_ports(body.get("ports"), [*path, "ports"]),
        not_ports=_ports(body.get("notPorts"), [*path, "notPorts"]),
        services=bool(services),
    )
    if rule.services and (rule.selects or rule.nets or rule.not_nets):
        raise CalicoError(
            "services cannot be combined with selectors, service accounts or nets",
            [*path, "services"],
        )
    return rule


_RULE_KEYS = (
    "action",
    "ipVersion",
    "protocol",
    "notProtocol",
    "icmp",
    "notICMP",
    "source",
    "destination",
    "http",
    "metadata",
)


def _rule(value: Any, index: int, path: list[str | int]) -> CRule:
    body = _mapping(value, path, _RULE_KEYS)
    action = body.get("action")
    if action not in ACTIONS:
        raise CalicoError(
            f"action must be one of {', '.join(ACTIONS)}, not {excerpt(action)}"
            + (did_you_mean(action, ACTIONS) if isinstance(action, str) else ""),
            [*path, "action"],
        )
    ip_version = body.get("ipVersion")
    if ip_version not in (None, 4, 6):
        raise CalicoError(
            f"ipVersion must be 4 or 6, not {excerpt(ip_version)}", [*path, "ipVersion"]
        )
    protocol = _protocol(body.get("protocol"), [*path, "protocol"])
    not_protocol = _protocol(body.get("notProtocol"), [*path, "notProtocol"])
    for key in ("icmp", "notICMP"):
        icmp = _mapping(body.get(key), [*path, key], ("type", "code"))
        if icmp and protocol not in ("ICMP", "ICMPv6"):
            raise CalicoError(f"{key} needs protocol ICMP or ICMPv6", [*path, key])
    source = _entity(body.get("source"), [*path, "source"])
    destination = _entity(body.get("destination"), [*path, "destination"])
    for side, entity in (("source", source), ("destination", destination)):
        for key, ports in (("ports", entity.ports), ("notPorts", entity.not_ports)):
            if ports and protocol not in ("TCP", "UDP", "SCTP", "UDPLite"):
                raise CalicoError(
                    f"{key} need protocol TCP, UDP, SCTP or UDPLite (got "
                    f"{excerpt(protocol) if protocol else 'none'})",
                    [*path, side, key],
                )
    http = _mapping(body.get("http"), [*path, "http"], ("methods", "paths"))
    _mapping(body.get("metadata"), [*path, "metadata"], ("annotations",))
    return CRule(
        action=action,
        index=index,
        protocol=protocol,
        not_protocol=not_protocol,
        icmp=bool(body.get("icmp")),
        not_icmp=bool(body.get("notICMP")),
        ip_version=ip_version,
        source=source,
        destination=destination,
        http=bool(http),
    )


_POLICY_KEYS = (
    "tier",
    "order",
    "selector",
    "types",
    "ingress",
    "egress",
    "serviceAccountSelector",
    "performanceHints",
)
_GLOBAL_KEYS = (*_POLICY_KEYS, "namespaceSelector", "doNotTrack", "preDNAT", "applyOnForward")


def parse_policy(
    spec: Any, *, kind: str, namespace: str | None, name: str, where: str
) -> CalicoPolicy:
    """A NetworkPolicy (namespace given) or GlobalNetworkPolicy (namespace None) spec."""
    body = _mapping(spec, [], _GLOBAL_KEYS if namespace is None else _POLICY_KEYS)
    tier = body.get("tier") or DEFAULT_TIER
    _string(tier, ["tier"])
    ingress = tuple(
        _rule(r, i, ["ingress", i]) for i, r in enumerate(_list(body.get("ingress"), ["ingress"]))
    )
    egress = tuple(
        _rule(r, i, ["egress", i]) for i, r in enumerate(_list(body.get("egress"), ["egress"]))
    )
    raw_types = body.get("types")
    if raw_types is None:
        # Calico's defaulting: Egress alone when only egress rules are given; both when both
        # are; Ingress otherwise (no rules at all included).
        if egress and not ingress:
            types = frozenset({PolicyType.EGRESS})
        elif egress:
            types = frozenset({PolicyType.INGRESS, PolicyType.EGRESS})
        else:
            types = frozenset({PolicyType.INGRESS})
    else:
        values = _strings(raw_types, ["types"])
        for i, value in enumerate(values):
            if value not in ("Ingress", "Egress"):
                raise CalicoError(
                    f"types holds Ingress or Egress, not {excerpt(value)}"
                    + did_you_mean(value, ("Ingress", "Egress")),
                    ["types", i],
                )
        types = frozenset(PolicyType(v) for v in values)
    for direction, rules in ((PolicyType.INGRESS, ingress), (PolicyType.EGRESS, egress)):
        if rules and direction not in types:
            raise CalicoError(
                f"{direction.value.lower()} rules are given but types does not include "
                f"{direction.value}: Calico would never apply them (add {direction.value} "
                "to types, or remove the rules)",
                ["types"],
            )
    flags: dict[str, bool] = {}
    for key in ("doNotTrack", "preDNAT", "applyOnForward"):
        flag = body.get(key)
        if flag is not None and not isinstance(flag, bool):
            raise CalicoError(f"{key} must be true or false, not {excerpt(flag)}", [key])
        flags[key] = flag is True
    if (flags["doNotTrack"] or flags["preDNAT"]) and not flags["applyOnForward"]:
        raise CalicoError(
            "doNotTrack and preDNAT policies need applyOnForward: true", ["applyOnForward"]
        )
    if flags["doNotTrack"] and flags["preDNAT"]:
        raise CalicoError("a policy cannot be both doNotTrack and preDNAT", ["preDNAT"])
    if flags["preDNAT"] and egress:
        raise CalicoError("a preDNAT policy can only have ingress rules", ["egress"])
    return CalicoPolicy(
        kind=kind,
        namespace=namespace,
        name=name,
        where=where,
        tier=tier,
        order=_order(body.get("order"), ["order"]),
        selector=_selector(body.get("selector"), ["selector"]) or All(),
        namespace_selector=_selector(body.get("namespaceSelector"), ["namespaceSelector"]),
        sa_selector=_selector(body.get("serviceAccountSelector"), ["serviceAccountSelector"]),
        types=types,
        ingress=ingress,
        egress=egress,
        do_not_track=flags["doNotTrack"],
        pre_dnat=flags["preDNAT"],
        apply_on_forward=flags["applyOnForward"],
    )


def parse_tier(spec: Any, *, name: str) -> Tier:
    body = _mapping(spec, [], ("order", "defaultAction"))
    action = body.get("defaultAction") or "Deny"
    if action not in ("Deny", "Pass"):
        raise CalicoError(
            f"defaultAction must be Deny or Pass, not {excerpt(action)}", ["defaultAction"]
        )
    return Tier(name, _order(body.get("order"), ["order"]), action)


def parse_network_set(
    spec: Any, *, namespace: str | None, name: str, labels: Mapping[str, str]
) -> NetSet:
    keys = ("nets",) if namespace is not None else ("nets", "allowedEgressDomains")
    body = _mapping(spec, [], keys)
    domains = _strings(body.get("allowedEgressDomains"), ["allowedEgressDomains"])
    return NetSet(name, namespace, dict(labels), _nets(body.get("nets"), ["nets"]), bool(domains))


# --- the endpoint labels Calico's selectors see -------------------------------------------


def pod_endpoint(pod: PodInfo, namespace_labels: Mapping[str, str]) -> Endpoint:
    """A pod's labels as Calico's selectors see them: its own, Calico's, and its namespace's
    and service account's under `pcns.` and `pcsa.` (of the latter only the name is known)."""
    labels = dict(pod.labels)
    labels.update({f"{NS_PREFIX}{k}": v for k, v in namespace_labels.items()})
    labels[f"{NS_PREFIX}{NAME_LABEL}"] = pod.namespace
    labels[f"{SA_PREFIX}{NAME_LABEL}"] = pod.service_account
    labels[NAMESPACE_LABEL] = pod.namespace
    labels[ORCHESTRATOR_LABEL] = "k8s"
    labels[SERVICE_ACCOUNT_LABEL] = pod.service_account
    return Endpoint(labels, is_global=False, unknown=_unknown_key)


def _unknown_key(key: str) -> bool:
    return key.startswith(SA_PREFIX)


def set_endpoint(found: NetSet, namespace_labels: Mapping[str, str]) -> Endpoint:
    labels = dict(found.labels)
    if found.namespace is not None:
        labels.update({f"{NS_PREFIX}{k}": v for k, v in namespace_labels.items()})
        labels[f"{NS_PREFIX}{NAME_LABEL}"] = found.namespace
        labels[NAMESPACE_LABEL] = found.namespace
    return Endpoint(labels, is_global=found.namespace is None)


def _uncertain(expr: Expr | None) -> bool:
    """Whether the expression reads labels nsgsync cannot know (a service account's)."""
    known = f"{SA_PREFIX}{NAME_LABEL}"
    return expr is not None and any(_unknown_key(k) and k != known for k in expr.label_keys())


@dataclass(frozen=True)
class CalicoPods:
    """Pods a Calico selector expression picks; where it cannot be known, `unknown_as`."""

    expr: Expr
    unknown_as: bool = True

    def matches(self, pod: PodInfo, namespace_labels: Mapping[str, str]) -> bool:
        result = self.expr.evaluate(pod_endpoint(pod, namespace_labels))
        return self.unknown_as if result is None else result

    def describe(self) -> str:
        return f"pods {self.expr}"


def as_pods(expr: Expr) -> Pods | None:
    """The expression as a Kubernetes-style Pods predicate, when that says exactly the same
    of every pod (a conjunction of ==, !=, in, not in, has and !has on the pod's own labels,
    its namespace's and its namespace's name); None otherwise.

    The compiler places Pods predicates on segments from their selectors alone, where it
    can only bound a Calico expression by the pods it knows.
    """
    parts = expr.parts if isinstance(expr, And) else (expr,)
    namespace: str | None = None
    pod_reqs: list[Requirement] = []
    ns_reqs: list[Requirement] = []
    for part in parts:
        if isinstance(part, All):
            continue
        negated = isinstance(part, Not) and isinstance(part.inner, Has)
        atom = part.inner if isinstance(part, Not) and negated else part
        values: tuple[str, ...]
        if isinstance(atom, Has):
            key, values = atom.key, ()
            op = Operator.DOES_NOT_EXIST if negated else Operator.EXISTS
        elif isinstance(atom, Compare) and atom.op in ("==", "!=", "in", "not in"):
            key, values = atom.key, atom.values
            op = Operator.IN if atom.op in ("==", "in") else Operator.NOT_IN
        else:
            return None
        target = pod_reqs
        if key == NAMESPACE_LABEL:
            if op is Operator.EXISTS:
                continue  # every pod is in a namespace
            if op is Operator.IN and len(values) == 1 and namespace in (None, values[0]):
                namespace = values[0]
                continue
            key, target = NAMESPACE_NAME_LABEL, ns_reqs
        elif key.startswith(NS_PREFIX):
            key, target = key[len(NS_PREFIX) :], ns_reqs
            if key == NAME_LABEL:
                key = NAMESPACE_NAME_LABEL
        elif key.startswith((SA_PREFIX, "projectcalico.org/")):
            return None
        try:
            target.append(Requirement(key=key, operator=op, values=values))
        except ValidationError:
            return None  # not a Kubernetes label key or value: keep Calico's expression
    return Pods(
        namespace=namespace,
        namespace_selector=LabelSelector(match_expressions=tuple(ns_reqs)) if ns_reqs else None,
        pod_selector=LabelSelector(match_expressions=tuple(pod_reqs)) if pod_reqs else None,
    )


def pods_of(expr: Expr, *, unknown_as: bool = True) -> list[CalicoPods | Pods]:
    """Pod predicates whose union is the expression's pods: Kubernetes-style where exact."""
    alternatives = expr.parts if isinstance(expr, Or) else (expr,)
    exact = [as_pods(a) for a in alternatives]
    if all(p is not None for p in exact):
        return [p for p in exact if p is not None]
    return [CalicoPods(expr, unknown_as=unknown_as)]


def namespace_expr(selector: Expr) -> Expr:
    """A namespaceSelector as Calico rewrites it: over the `pcns.` labels, all() meaning
    "in some namespace"."""
    return prefixed(selector, NS_PREFIX, all_means=Has(NAMESPACE_LABEL))


def service_account_expr(names: Sequence[str], selector: Expr | None) -> Expr | None:
    parts: list[Expr] = []
    if selector is not None:
        parts.append(prefixed(selector, SA_PREFIX))
    if names:
        parts.append(Compare(SERVICE_ACCOUNT_LABEL, "in", tuple(sorted(set(names)))))
    return conjunction(*parts) if parts else None


# --- lowering ---------------------------------------------------------------------------


@dataclass
class _Notes:
    policy: CalicoPolicy
    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, code: str, message: str) -> None:
        if (code, message) not in self.items:
            self.items.append((code, message))


def tier_order(name: str, tiers: Mapping[str, Tier]) -> float:
    tier = tiers.get(name)
    if tier is None:
        return DEFAULT_TIER_ORDER if name == DEFAULT_TIER else math.inf
    if tier.order is None:
        return DEFAULT_TIER_ORDER if name == DEFAULT_TIER else math.inf
    return tier.order


def stage_name(tier: str) -> str:
    return f"tier {tier}"


def lower(
    policy: CalicoPolicy,
    *,
    tiers: Mapping[str, Tier],
    sets: Sequence[NetSet] = (),
    namespaces: Mapping[str, Mapping[str, str]] | None = None,
) -> TPolicy:
    """The policy as a TPolicy of its tier's stage (docs/calico.md#lowering).

    `sets` are the NetworkSets and GlobalNetworkSets a selector may pick addresses from,
    `namespaces` the namespaces' labels (for the sets' `pcns.` labels).
    """
    notes = _Notes(policy)
    ns_labels = namespaces or {}
    tier = tiers.get(policy.tier)
    if policy.pre_dnat or policy.do_not_track:
        return _host_policy(policy, notes, sets=sets, ns_labels=ns_labels)
    subject_expr = conjunction(
        Compare(NAMESPACE_LABEL, "==", (policy.namespace,)) if policy.namespace else None,
        namespace_expr(policy.namespace_selector) if policy.namespace_selector else None,
        policy.selector,
        service_account_expr((), policy.sa_selector),
    )
    uncertain_subject = _uncertain(subject_expr)
    if uncertain_subject:
        notes.add(
            UNMODELED,
            "its serviceAccountSelector reads service account labels nsgsync does not know: "
            "its rules apply to every pod it may select, none relied on to deny",
        )
    if policy.apply_on_forward:
        notes.add(
            NOT_COMPILED,
            "applyOnForward concerns host endpoints only; the policy is compiled for pods",
        )
    rules: list[TRule] = []
    for direction, crules in (
        (PolicyType.INGRESS, policy.ingress),
        (PolicyType.EGRESS, policy.egress),
    ):
        for crule in crules:
            rule = _lower_rule(policy, crule, direction, notes, sets=sets, ns_labels=ns_labels)
            if rule is None:
                continue
            if uncertain_subject and not rule.unmodeled:
                rule = _with_unmodeled(rule, "the policy's service account selector")
            rules.append(rule)
    return TPolicy(
        dialect=DIALECT,
        ref=policy.ref,
        where=policy.where,
        subject=(None if uncertain_subject else as_pods(subject_expr))
        or CalicoPods(subject_expr, unknown_as=True),
        types=policy.types,
        rules=tuple(rules),
        stage=stage_name(policy.tier),
        order=(
            tier_order(policy.tier, tiers),
            math.inf if policy.order is None else policy.order,
            policy.ref,
        ),
        # A tier whose defaultAction is Pass hands on what its policies leave undecided;
        # a subject nsgsync cannot be sure of is never relied on to deny.
        isolates=not uncertain_subject and (tier is None or tier.default_action == "Deny"),
        notes=tuple(notes.items),
    )


def _host_policy(
    policy: CalicoPolicy,
    notes: _Notes,
    *,
    sets: Sequence[NetSet],
    ns_labels: Mapping[str, Mapping[str, str]],
) -> TPolicy:
    """preDNAT and doNotTrack policies apply at host endpoints, not at pods.

    A preDNAT policy's Allow only hands the packet on to the pod's own policies, so it can
    only narrow what reaches a pod: leaving it out is sound. A doNotTrack Allow accepts the
    packet before any tier (Felix skips the later policy for untracked packets), so each of
    its Allow rules may allow a pod's traffic: kept as uncertain Allows for every pod, in a
    stage ahead of the tiers. Their Deny and Pass rules only narrow, and are left out.
    """
    flag = "preDNAT" if policy.pre_dnat else "doNotTrack"
    if policy.pre_dnat:
        notes.add(
            NOT_COMPILED,
            "a preDNAT policy applies at host endpoints and can only narrow what reaches a "
            "pod; it is not compiled (no rules come from it)",
        )
        rules: tuple[TRule, ...] = ()
    else:
        notes.add(
            NOT_COMPILED,
            "a doNotTrack policy applies at host endpoints; its Allow rules may let untracked "
            "traffic past the pods' policies, so each is kept as an Allow that may apply to "
            "any pod (widened), and its Deny and Pass rules are not compiled",
        )
        kept: list[TRule] = []
        for direction, crules in (
            (PolicyType.INGRESS, policy.ingress),
            (PolicyType.EGRESS, policy.egress),
        ):
            for crule in crules:
                if crule.action != "Allow":
                    continue
                rule = _lower_rule(policy, crule, direction, notes, sets=sets, ns_labels=ns_labels)
                if rule is not None:
                    kept.append(
                        _with_unmodeled(rule, f"{flag} policy at host endpoints", local=True)
                    )
        rules = tuple(kept)
    return TPolicy(
        dialect=DIALECT,
        ref=policy.ref,
        where=policy.where,
        subject=CalicoPods(All()),
        types=policy.types,
        rules=rules,
        stage=UNTRACKED_STAGE,
        order=(-math.inf, math.inf if policy.order is None else policy.order, policy.ref),
        isolates=False,
        notes=tuple(notes.items),
    )


def _with_unmodeled(rule: TRule, why: str, *, local: bool = False) -> TRule:
    reason = f"{rule.unmodeled}; {why}" if rule.unmodeled else why
    return replace(rule, unmodeled=reason, local=None if local else rule.local)


def _matching_sets(
    expr: Expr, sets: Sequence[NetSet], ns_labels: Mapping[str, Mapping[str, str]]
) -> list[NetSet]:
    found = []
    for s in sets:
        ep = set_endpoint(s, ns_labels.get(s.namespace or "", {}))
        if expr.evaluate(ep) is not False:
            found.append(s)
    return found


def _lower_rule(
    policy: CalicoPolicy,
    crule: CRule,
    direction: PolicyType,
    notes: _Notes,
    *,
    sets: Sequence[NetSet],
    ns_labels: Mapping[str, Mapping[str, str]],
) -> TRule | None:
    if crule.action == "Log":
        return None  # logs and goes on: no verdict
    action = Action(crule.action)
    what = f"{direction.value.lower()} rule {crule.index}"
    unmodeled: list[str] = []
    peer, local = (
        (crule.source, crule.destination)
        if direction is PolicyType.INGRESS
        else (crule.destination, crule.source)
    )

    def uncertain(reason: str) -> None:
        unmodeled.append(reason)
        effect = (
            "may apply (widened)" if action is Action.ALLOW else f"may or may not {action.value}"
        )
        notes.add(UNMODELED, f"{what}: {reason}: the rule {effect}")

    # --- the peer
    peers: list[TPeer] | None = None
    not_peers: list[TPeer] = []
    expr = _entity_expr(policy, peer)
    if peer.services:
        uncertain("it matches a Service's endpoints, which nsgsync does not read")
    if expr is not None:
        peers = [*pods_of(expr, unknown_as=True)]
        for s in _matching_sets(expr, sets, ns_labels):
            peers.extend(Net(n) for n in s.nets)
            if s.has_domains:
                uncertain(f"network set {s.name} names domains, which nsgsync cannot resolve")
        if _can_select_hosts(policy, peer):
            # Host endpoints carry labels too: a node's address may match.
            peers.extend([Ent(Entity.HOST), Ent(Entity.REMOTE_NODE)])
        if _uncertain(expr):
            uncertain("its selector reads service account labels nsgsync does not know")
        if peer.nets:
            uncertain("nets and a selector together (an address that is also a selected pod)")
    elif peer.nets:
        peers = [Net(n) for n in peer.nets]
    not_peers.extend(Net(n) for n in peer.not_nets)
    if peer.not_selector is not None:
        not_peers.extend(pods_of(peer.not_selector, unknown_as=False))
        for s in _matching_sets(peer.not_selector, sets, ns_labels):
            not_peers.extend(Net(n) for n in s.nets)
        if policy.namespace is None:
            not_peers.extend([Ent(Entity.HOST), Ent(Entity.REMOTE_NODE)])
        if _uncertain(peer.not_selector):
            uncertain("its notSelector reads service account labels nsgsync does not know")
    if crule.ip_version == 4:
        not_peers.append(Net("::/0"))
    elif crule.ip_version == 6:
        not_peers.append(Net("0.0.0.0/0"))

    # --- the policy's own pod
    local_pred: CalicoPods | Pods | None = None
    local_expr = _entity_expr(policy, local)
    if local_expr is not None or local.not_selector is not None:
        combined = conjunction(
            local_expr, Not(local.not_selector) if local.not_selector is not None else None
        )
        local_pred = as_pods(combined) or CalicoPods(combined, unknown_as=True)
        if _uncertain(combined):
            uncertain("a selector on the policy's own pod reads service account labels")
    if local.nets or local.not_nets:
        uncertain("nets on the policy's own pod (its address is not modeled)")
    if local.services:
        uncertain("services on the policy's own pod")

    # --- source ports, never modeled
    if crule.source.ports or crule.source.not_ports:
        if action is Action.ALLOW:
            notes.add(
                UNMODELED,
                f"{what}: source ports are ignored: the rule allows every source port (widened)",
            )
        else:
            uncertain("source ports are not modeled")

    # --- protocol and destination ports
    ports, not_ports = _lower_ports(crule, action, what, notes, uncertain)
    if crule.http:
        uncertain("an http match (L7) is not modeled")
    return TRule(
        action=action,
        direction=direction,
        index=crule.index,
        peers=None if peers is None else tuple(peers),
        not_peers=tuple(not_peers),
        ports=ports,
        not_ports=not_ports,
        local=local_pred,
        unmodeled="; ".join(unmodeled),
    )


def _entity_expr(policy: CalicoPolicy, entity: EntityRule) -> Expr | None:
    """The selector over endpoints an entity's selectors add up to (None: no selector), as
    Calico builds it: a namespaced policy's selectors stay in its namespace."""
    if not entity.selects:
        return None
    if entity.namespace_selector is not None:
        ns_part: Expr | None = namespace_expr(entity.namespace_selector)
    elif policy.namespace is not None:
        ns_part = Compare(NAMESPACE_LABEL, "==", (policy.namespace,))
    else:
        ns_part = None
    sa_part = service_account_expr(entity.sa_names, entity.sa_selector)
    if ns_part is None and sa_part is None and entity.selector is None:
        # A GlobalNetworkPolicy's notSelector alone: any address but the ones it names.
        return None
    return conjunction(ns_part, sa_part, entity.selector)


def _can_select_hosts(policy: CalicoPolicy, entity: EntityRule) -> bool:
    if entity.namespace_selector is not None:
        return _has_global(entity.namespace_selector)
    return policy.namespace is None


def _has_global(expr: Expr) -> bool:
    if isinstance(expr, Global):
        return True
    if isinstance(expr, Not):
        return True  # a negation may hold for an endpoint without a namespace
    parts = getattr(expr, "parts", ())
    return any(_has_global(p) for p in parts)


def _lower_ports(
    crule: CRule,
    action: Action,
    what: str,
    notes: _Notes,
    uncertain: Any,
) -> tuple[tuple[PortRange, ...] | None, tuple[PortRange, ...]]:
    dst = crule.destination
    proto = crule.protocol
    not_ports: list[PortRange] = []
    if crule.not_protocol in MODELED:
        not_ports.append(PortRange(MODELED[crule.not_protocol]))
    # notProtocol of an unmodeled protocol, and notICMP, never change what TCP, UDP and SCTP
    # match: nothing to lower.
    if proto is None:
        return None, tuple(not_ports)
    if proto not in MODELED:
        if action is Action.DENY:
            # Denies only that protocol, which no TCP, UDP or SCTP connection is.
            return (), tuple(not_ports)
        notes.add(
            PROTOCOL_WIDENED,
            f"{what}: protocol {proto} is not modeled: the rule may apply to any protocol "
            "(widened)",
        )
        uncertain(f"protocol {proto}")
        return None, tuple(not_ports)
    protocol = MODELED[proto]
    ports = tuple(_port_range(protocol, p) for p in dst.ports) or (PortRange(protocol),)
    not_ports.extend(_port_range(protocol, p) for p in dst.not_ports)
    return ports, tuple(not_ports)


def _port_range(protocol: Protocol, port: int | str | tuple[int, int]) -> PortRange:
    if isinstance(port, str):
        return PortRange(protocol, name=port)
    if isinstance(port, tuple):
        return PortRange(protocol, port[0], port[1])
    return PortRange(protocol, port, port)
