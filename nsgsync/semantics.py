"""Kubernetes NetworkPolicy semantics at pod level: the reference.

Deliberately small and literal, one function per sentence of the API documentation,
with no knowledge of segments or clouds. `explain` uses it to say what Kubernetes
allows, and the property tests hold the compiler to it.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from nsgsync.errors import InputError
from nsgsync.model import NetworkPolicy, Peer, PodInfo, PolicyPort, PolicyType, Protocol
from nsgsync.model.cilium import ALLOW_STAGE as CILIUM_ALLOW_STAGE
from nsgsync.model.cilium import DENY_STAGE as CILIUM_DENY_STAGE
from nsgsync.model.tiers import (
    Action,
    End,
    Ent,
    Entity,
    Net,
    Pipeline,
    Pods,
    PortRange,
    Stage,
    TPeer,
    TPolicy,
    TRule,
)


@dataclass(frozen=True)
class Endpoint:
    ip: str
    pod: PodInfo | None = None  # None: an address that is no pod (external, a node)


@dataclass(frozen=True)
class Side:
    """One direction's verdict: whether it is isolated, by whom, and what allows it."""

    checked: bool
    isolated_by: tuple[str, ...] = ()
    allowed_by: tuple[tuple[str, int], ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.checked or not self.isolated_by or bool(self.allowed_by)


@dataclass(frozen=True)
class Verdict:
    egress: Side
    ingress: Side
    notes: tuple[str, ...] = field(default=())

    @property
    def allowed(self) -> bool:
        return self.egress.allowed and self.ingress.allowed


def in_ip_block(ip: str, cidr: str, excepts: Sequence[str]) -> bool:
    addr = ipaddress.ip_address(ip)
    if addr not in ipaddress.ip_network(cidr, strict=False):
        return False
    return not any(addr in ipaddress.ip_network(e, strict=False) for e in excepts)


def peer_matches(
    policy: NetworkPolicy, peer: Peer, other: Endpoint, namespaces: Mapping[str, Mapping[str, str]]
) -> bool:
    if peer.ip_block is not None:
        return in_ip_block(other.ip, peer.ip_block.cidr, peer.ip_block.except_)
    pod = other.pod
    if pod is None or pod.host_network:
        return False
    if peer.namespace_selector is not None:
        in_namespace = peer.namespace_selector.matches(namespaces.get(pod.namespace, {}))
    else:
        in_namespace = pod.namespace == policy.namespace
    selected = peer.pod_selector is None or peer.pod_selector.matches(pod.labels)
    return in_namespace and selected


def port_matches(ports: Sequence[PolicyPort], dst: Endpoint, protocol: Protocol, port: int) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.protocol is not protocol:
            continue
        if p.port is None:
            return True
        if isinstance(p.port, int) and p.port <= port <= (p.end_port or p.port):
            return True
        # A named port is looked up on the pod the connection goes to.
        if (
            isinstance(p.port, str)
            and dst.pod is not None
            and port in dst.pod.port_numbers(p.port, protocol)
        ):
            return True
    return False


def side(
    pod_end: Endpoint,
    other: Endpoint,
    direction: PolicyType,
    policies: Sequence[NetworkPolicy],
    namespaces: Mapping[str, Mapping[str, str]],
    protocol: Protocol,
    port: int,
) -> Side:
    pod = pod_end.pod
    if pod is None or pod.host_network:
        return Side(checked=False)
    selecting = [
        p
        for p in policies
        if p.namespace == pod.namespace
        and direction in p.policy_types
        and p.pod_selector.matches(pod.labels)
    ]
    dst = pod_end if direction is PolicyType.INGRESS else other
    allowed_by = []
    for p in selecting:
        for index, rule in enumerate(p.rules(direction)):
            peer_ok = rule.peers is None or any(
                peer_matches(p, peer, other, namespaces) for peer in rule.peers
            )
            if peer_ok and port_matches(rule.ports, dst, protocol, port):
                allowed_by.append((p.ref, index))
    return Side(True, tuple(p.ref for p in selecting), tuple(allowed_by))


def verdict(
    src: Endpoint,
    dst: Endpoint,
    protocol: Protocol,
    port: int,
    policies: Sequence[NetworkPolicy],
    namespaces: Mapping[str, Mapping[str, str]],
) -> Verdict:
    """Whether Kubernetes lets `src` open a connection to `dst` (replies always pass)."""
    return Verdict(
        egress=side(src, dst, PolicyType.EGRESS, policies, namespaces, protocol, port),
        ingress=side(dst, src, PolicyType.INGRESS, policies, namespaces, protocol, port),
    )


# --- Ordered policies (nsgsync.model.tiers): admin tiers, Calico, Cilium ---------------------


@dataclass(frozen=True)
class Step:
    """One thing the walk met: a rule that matched (or may have), or a stage's end."""

    stage: str
    policy: str | None  # None: the stage's end
    rule: int | None
    action: Action
    certain: bool = True

    def describe(self) -> str:
        what = (
            f"{self.action} by {self.policy} rule {self.rule}"
            if self.policy
            else (
                "Deny (selected, no rule allowed it)"
                if self.action is Action.DENY
                else str(self.action)
            )
        )
        return f"[{self.stage}] {what}" + ("" if self.certain else " (maybe)")


@dataclass(frozen=True)
class TieredSide:
    checked: bool
    outcomes: frozenset[Action] = frozenset({Action.ALLOW})  # ALLOW and/or DENY
    steps: tuple[Step, ...] = ()

    @property
    def allowed(self) -> bool:
        """Whether the connection may be allowed: what the cloud must let through."""
        return Action.ALLOW in self.outcomes

    @property
    def certain(self) -> bool:
        return len(self.outcomes) == 1


def _in_cidrs(ip: str, cidrs: Sequence[str]) -> bool:
    return any(in_ip_block(ip, c, ()) for c in cidrs)


def entity_matches(entity: Entity, other: Endpoint, pipeline: Pipeline) -> bool | None:
    """Whether an endpoint is what an entity names; None when the facts cannot say."""
    is_node = (other.pod is not None and other.pod.host_network) or _in_cidrs(
        other.ip, pipeline.node_cidrs
    )
    is_pod = other.pod is not None and not other.pod.host_network
    in_cluster = is_pod or is_node or _in_cidrs(other.ip, pipeline.cluster_cidrs)
    if entity is Entity.ALL:
        return True
    if entity is Entity.WORLD:
        return not in_cluster
    if entity in (Entity.WORLD_IPV4, Entity.WORLD_IPV6):
        version = 4 if entity is Entity.WORLD_IPV4 else 6
        return not in_cluster and ipaddress.ip_address(other.ip).version == version
    if entity is Entity.CLUSTER:
        return in_cluster
    if entity in (Entity.HOST, Entity.REMOTE_NODE):
        # Which node a pod runs on is not known: a node address may be either.
        return None if is_node else False
    if entity in (Entity.HEALTH, Entity.INGRESS):
        # Addresses on the nodes, or in the pod ranges, that are no pod nsgsync knows.
        return None if in_cluster and not is_pod else False
    if entity in (Entity.INIT, Entity.UNMANAGED):
        # Any endpoint of the cluster may be one, for a while or for good.
        return None if in_cluster else False
    if entity is Entity.KUBE_APISERVER:
        if _in_cidrs(other.ip, pipeline.apiserver_cidrs):
            return True
        return None if not pipeline.apiserver_cidrs and not is_pod else False
    raise AssertionError(entity)


def _peer_match(
    peer: TPeer, other: Endpoint, pipeline: Pipeline, namespaces: Mapping[str, Mapping[str, str]]
) -> bool | None:
    if isinstance(peer, Net):
        return in_ip_block(other.ip, peer.cidr, peer.except_)
    if isinstance(peer, Ent):
        return entity_matches(peer.entity, other, pipeline)
    pod = other.pod
    if pod is None or pod.host_network:
        return False
    return peer.matches(pod, namespaces.get(pod.namespace, {}))


def _any(values: Sequence[bool | None]) -> bool | None:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def _port_in(ranges: Sequence[PortRange], dst: Endpoint, protocol: Protocol, port: int) -> bool:
    for r in ranges:
        if r.protocol is not None and r.protocol is not protocol:
            continue
        if r.name is not None:
            if dst.pod is not None and port in dst.pod.port_numbers(r.name, protocol):
                return True
        elif r.first is None or r.first <= port <= (r.last or r.first):
            return True
    return False


def rule_matches(
    rule: TRule,
    pod_end: Endpoint,
    other: Endpoint,
    *,
    pipeline: Pipeline,
    namespaces: Mapping[str, Mapping[str, str]],
    protocol: Protocol,
    port: int,
) -> bool | None:
    """True, False, or None when the rule has conditions nsgsync cannot evaluate."""
    dst = pod_end if rule.direction is PolicyType.INGRESS else other
    assert pod_end.pod is not None
    conditions: list[bool | None] = [
        True
        if rule.peers is None
        else _any([_peer_match(p, other, pipeline, namespaces) for p in rule.peers]),
        _negate(_any([_peer_match(p, other, pipeline, namespaces) for p in rule.not_peers])),
        rule.ports is None or _port_in(rule.ports, dst, protocol, port),
        not _port_in(rule.not_ports, dst, protocol, port),
        rule.local is None
        or rule.local.matches(pod_end.pod, namespaces.get(pod_end.pod.namespace, {})),
        None if rule.unmodeled else True,
    ]
    if any(c is False for c in conditions):
        return False
    return None if any(c is None for c in conditions) else True


def _negate(value: bool | None) -> bool | None:
    return None if value is None else not value


def tiered_side(
    pod_end: Endpoint,
    other: Endpoint,
    direction: PolicyType,
    pipeline: Pipeline,
    namespaces: Mapping[str, Mapping[str, str]],
    protocol: Protocol,
    port: int,
) -> TieredSide:
    """Walk the stages for one direction: first matching rule decides, Pass skips a stage."""
    pod = pod_end.pod
    if pod is None or pod.host_network:
        return TieredSide(checked=False)
    labels = namespaces.get(pod.namespace, {})
    stages: list[tuple[Stage, list[tuple[TPolicy, TRule]], bool]] = []
    for stage in pipeline.stages:
        selecting = [
            p for p in stage.policies if direction in p.types and p.subject.matches(pod, labels)
        ]
        rules = [(p, r) for p in selecting for r in p.rules if r.direction is direction]
        stages.append((stage, rules, any(p.isolates for p in selecting)))
    steps: list[Step] = []

    def from_stage(i: int, j: int, record: bool) -> frozenset[Action]:
        if i == len(stages):
            return frozenset({Action.ALLOW})
        stage, rules, selected = stages[i]
        for k in range(j, len(rules)):
            policy, rule = rules[k]
            hit = rule_matches(
                rule,
                pod_end,
                other,
                pipeline=pipeline,
                namespaces=namespaces,
                protocol=protocol,
                port=port,
            )
            if hit is False:
                continue
            if record:
                steps.append(Step(stage.name, policy.ref, rule.index, rule.action, hit is True))
            decided = (
                from_stage(i + 1, 0, record and hit is True)
                if rule.action is Action.PASS
                else frozenset({rule.action})
            )
            if hit is True:
                return decided
            # Uncertain: the rule may decide, or the walk may go on past it.
            return decided | from_stage(i, k + 1, False)
        if selected and stage.end is End.DENY_IF_SELECTED:
            if record:
                steps.append(Step(stage.name, None, None, Action.DENY))
            return frozenset({Action.DENY})
        return from_stage(i + 1, 0, record)

    outcomes = from_stage(0, 0, True)
    return TieredSide(checked=True, outcomes=outcomes, steps=tuple(steps))


@dataclass(frozen=True)
class TieredVerdict:
    egress: TieredSide
    ingress: TieredSide

    @property
    def allowed(self) -> bool:
        """Whether the cluster may allow the connection (both ends may let it through)."""
        return self.egress.allowed and self.ingress.allowed


def tiered_verdict(
    src: Endpoint,
    dst: Endpoint,
    protocol: Protocol,
    port: int,
    pipeline: Pipeline,
    namespaces: Mapping[str, Mapping[str, str]],
) -> TieredVerdict:
    return TieredVerdict(
        egress=tiered_side(src, dst, PolicyType.EGRESS, pipeline, namespaces, protocol, port),
        ingress=tiered_side(dst, src, PolicyType.INGRESS, pipeline, namespaces, protocol, port),
    )


def network_policy_stage(policies: Sequence[NetworkPolicy]) -> Stage:
    """NetworkPolicy v1 as an ordered stage: allow rules, and isolation at its end."""
    return Stage(
        "NetworkPolicy", tuple(lower_network_policy(p) for p in policies), End.DENY_IF_SELECTED
    )


def lower_network_policy(policy: NetworkPolicy) -> TPolicy:
    rules: list[TRule] = []
    for direction in (PolicyType.INGRESS, PolicyType.EGRESS):
        for index, rule in enumerate(policy.rules(direction)):
            peers: tuple[TPeer, ...] | None = None
            if rule.peers is not None:
                peers = tuple(_lower_peer(policy, peer) for peer in rule.peers)
            ports = tuple(_lower_port(p) for p in rule.ports) or None
            rules.append(TRule(Action.ALLOW, direction, index, peers=peers, ports=ports))
    return TPolicy(
        dialect="NetworkPolicy",
        ref=policy.ref,
        where="",
        stage="NetworkPolicy",
        subject=Pods(namespace=policy.namespace, pod_selector=policy.pod_selector),
        types=policy.policy_types,
        rules=tuple(rules),
    )


def _lower_peer(policy: NetworkPolicy, peer: Peer) -> TPeer:
    if peer.ip_block is not None:
        return Net(peer.ip_block.cidr, tuple(peer.ip_block.except_))
    if peer.namespace_selector is not None:
        return Pods(namespace_selector=peer.namespace_selector, pod_selector=peer.pod_selector)
    return Pods(namespace=policy.namespace, pod_selector=peer.pod_selector)


def _lower_port(port: PolicyPort) -> PortRange:
    if isinstance(port.port, str):
        return PortRange(port.protocol, name=port.port)
    if port.port is None:
        return PortRange(port.protocol)
    return PortRange(port.protocol, port.port, port.end_port or port.port)


# --- Policy engines: which dialects a cluster enforces, and in which order -------------------

ENGINES = ("kubernetes", "calico", "cilium")
# The network-policy-api kinds (docs/admin-policies.md).
ADMIN_DIALECTS = frozenset(
    {"AdminNetworkPolicy", "BaselineAdminNetworkPolicy", "ClusterNetworkPolicy"}
)
ADMIN_STAGE = "Admin"
BASELINE_STAGE = "Baseline"


def dialect_engine(dialect: str) -> str | None:
    """The engine a dialect belongs to; None for the kinds any engine may enforce."""
    for engine in ("calico", "cilium"):
        if dialect.lower().startswith(engine):
            return engine
    return None


def enforces(engine: str, dialect: str) -> bool:
    """Whether a policy engine enforces a dialect's objects at all."""
    if dialect == "NetworkPolicy":
        return True
    if dialect in ADMIN_DIALECTS:
        # Calico enforces AdminNetworkPolicy and BaselineAdminNetworkPolicy (its kube-admin
        # and kube-baseline tiers), not yet v1alpha2's ClusterNetworkPolicy; Cilium none.
        if engine == "calico":
            return dialect != "ClusterNetworkPolicy"
        return engine == "kubernetes"
    return dialect_engine(dialect) == engine


def resolve_engine(declared: str | None, ordered: Sequence[TPolicy]) -> str:
    """The declared engine, or the one the dialects present imply (kubernetes by default)."""
    if declared is not None:
        return declared
    found: dict[str, TPolicy] = {}
    for policy in ordered:
        engine = dialect_engine(policy.dialect)
        if engine is not None:
            found.setdefault(engine, policy)
    if len(found) > 1:
        first, second = (found[e] for e in sorted(found))
        raise InputError(
            f"{first.dialect} policies (like {first.ref}, {first.where}) and {second.dialect} "
            f"policies (like {second.ref}, {second.where}) are both present, and a cluster "
            "runs one policy engine",
            field="policyEngine",
            hint="say which enforces the policies with the topology's policyEngine "
            "(calico or cilium); the other's policies are then reported, not compiled",
        )
    return next(iter(found), "kubernetes")


def pipeline(
    engine: str,
    network_policies: Sequence[NetworkPolicy],
    ordered: Sequence[TPolicy],
    *,
    node_cidrs: Sequence[str] = (),
    cluster_cidrs: Sequence[str] = (),
    apiserver_cidrs: Sequence[str] = (),
) -> Pipeline:
    """The stages a policy engine evaluates, with the policies it enforces in each.

    Policies of a dialect the engine does not enforce are left out (`enforces`); the
    compiler reports them.
    """
    kept = [p for p in ordered if enforces(engine, p.dialect)]
    if engine == "calico":
        stages = calico_stages(network_policies, kept)
    elif engine == "cilium":
        stages = cilium_stages(network_policies, kept)
    else:
        stages = kubernetes_stages(network_policies, kept)
    return Pipeline(
        stages,
        node_cidrs=tuple(node_cidrs),
        cluster_cidrs=tuple(cluster_cidrs),
        apiserver_cidrs=tuple(apiserver_cidrs),
    )


def _in_order(policies: Sequence[TPolicy]) -> tuple[TPolicy, ...]:
    # Equal `order` keys are ties the API leaves undefined: the compiler treats them as
    # unordered; the reference walk takes them by name, one of the orders possible.
    return tuple(sorted(policies, key=lambda p: (p.order, p.ref)))


def kubernetes_stages(
    network_policies: Sequence[NetworkPolicy], ordered: Sequence[TPolicy]
) -> tuple[Stage, ...]:
    """network-policy-api's order: admin tier, NetworkPolicy, baseline tier."""
    admin = [p for p in ordered if p.stage == ADMIN_STAGE]
    baseline = [p for p in ordered if p.stage == BASELINE_STAGE]
    return (
        Stage(ADMIN_STAGE, _in_order(admin), End.NEXT),
        network_policy_stage(network_policies),
        Stage(BASELINE_STAGE, _in_order(baseline), End.NEXT),
    )


def calico_stages(
    network_policies: Sequence[NetworkPolicy], ordered: Sequence[TPolicy]
) -> tuple[Stage, ...]:
    """Calico's evaluation order as stages (docs/calico.md#ordering).

    Untracked (doNotTrack) allows first; then the tiers by their order (a Calico TPolicy's
    order key is (tier order, policy order, name)), each ending in a deny for the pods a
    policy of the tier selects; the Kubernetes NetworkPolicies in the default tier at order
    1000; the admin network policy kinds in the tiers Calico gives them (kube-admin at order
    1000, kube-baseline at 10,000,000). After the last stage: allow (the profiles).
    """
    from nsgsync.model import calico

    admin = [p for p in ordered if p.stage == ADMIN_STAGE]
    baseline = [p for p in ordered if p.stage == BASELINE_STAGE]
    policies = [p for p in ordered if p.dialect == calico.DIALECT]
    untracked = [p for p in policies if p.stage == calico.UNTRACKED_STAGE]
    default = calico.stage_name(calico.DEFAULT_TIER)
    tiers: dict[str, list[TPolicy]] = {default: []}
    orders: dict[str, float] = {default: calico.DEFAULT_TIER_ORDER}
    for p in policies:
        if p.stage == calico.UNTRACKED_STAGE:
            continue
        # Calico's parser names stages "tier NAME" and leads the order key with the tier's
        # order; a policy built otherwise is taken as the tier its stage names.
        name = p.stage if p.stage.startswith("tier ") else calico.stage_name(p.stage or "default")
        tiers.setdefault(name, []).append(p)
        if p.order:
            orders[name] = float(p.order[0])
        else:
            orders.setdefault(name, math.inf)
    for np in network_policies:
        tiers[default].append(
            replace(
                lower_network_policy(np),
                stage=default,
                order=(orders[default], calico.KNP_ORDER, f"knp.default.{np.ref}"),
            )
        )
    placed = [
        (orders[name], name, Stage(name, _in_order(members), End.DENY_IF_SELECTED))
        for name, members in tiers.items()
    ]
    placed.append(
        (calico.ADMIN_TIER_ORDER, "kube-admin", Stage(ADMIN_STAGE, _in_order(admin), End.NEXT))
    )
    placed.append(
        (
            calico.BASELINE_TIER_ORDER,
            "kube-baseline",
            Stage(BASELINE_STAGE, _in_order(baseline), End.NEXT),
        )
    )
    stages = [stage for _, _, stage in sorted(placed, key=lambda t: (t[0], t[1]))]
    return (Stage(calico.UNTRACKED_STAGE, _in_order(untracked), End.NEXT), *stages)


def cilium_stages(
    network_policies: Sequence[NetworkPolicy], ordered: Sequence[TPolicy]
) -> tuple[Stage, ...]:
    """Cilium's order (docs/cilium.md): any deny wins; then the allows, a union.

    The deny stage hands what none of its rules denied to the allow stage, where Cilium's
    allow rules sit beside the NetworkPolicies (Cilium enforces both as one set of rules):
    a pod that any of them selects in a direction is denied there what none allows.
    """
    deny = tuple(sorted((p for p in ordered if p.stage == CILIUM_DENY_STAGE), key=_by_order))
    allow = tuple(sorted((p for p in ordered if p.stage != CILIUM_DENY_STAGE), key=_by_order))
    return (
        Stage(CILIUM_DENY_STAGE, deny, End.NEXT),
        Stage(
            CILIUM_ALLOW_STAGE,
            allow + tuple(lower_network_policy(p) for p in network_policies),
            End.DENY_IF_SELECTED,
        ),
    )


def _by_order(policy: TPolicy) -> tuple[str, str]:
    return (policy.ref, repr(policy.order))
