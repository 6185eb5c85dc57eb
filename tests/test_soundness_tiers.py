"""Soundness and precision of the compiler over ordered policies, by property.

Random admin tiers (Allow, Deny and Pass rules at random priorities, subjects and peers by
namespace and pod selectors and by networks), NetworkPolicies and a baseline tier, against
the reference walk (nsgsync.semantics.tiered_verdict) connection by connection: every
connection the walk may allow, the Intent allows; and where each segment holds one known
pod, the Intent allows nothing more between pods than the walk (but where a finding says
the Intent had to widen).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsgsync.compile import CompileOptions, compile_intent
from nsgsync.intent import Code, Intent
from nsgsync.model import Inventory, LabelSelector, PolicyType, Protocol
from nsgsync.model.tiers import (
    Action,
    Ent,
    Entity,
    Net,
    Pipeline,
    Pods,
    PortRange,
    TPeer,
    TPolicy,
    TRule,
)
from nsgsync.semantics import Endpoint, pipeline, tiered_verdict
from tests.scenarios import (
    EXTERNAL_IPS,
    IP_BLOCKS,
    LABEL_VALUES,
    NAMESPACES,
    NS_LABEL_VALUES,
    PORT_NAMES,
    PORT_NUMBERS,
    PROBE_PORTS,
    Scenario,
    one_pod_per_segment,
    scenarios,
    selector,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _sel(values: dict[str, list[str]]) -> st.SearchStrategy[LabelSelector]:
    return selector(values).map(LabelSelector.model_validate)


def _pods() -> st.SearchStrategy[Pods]:
    return st.one_of(
        st.builds(Pods, namespace_selector=_sel(NS_LABEL_VALUES), pod_selector=_sel(LABEL_VALUES)),
        st.builds(Pods, namespace_selector=_sel(NS_LABEL_VALUES)),
        st.builds(Pods, namespace=st.sampled_from(NAMESPACES), pod_selector=_sel(LABEL_VALUES)),
        # Both a namespace and a namespace selector: the namespace, if the selector matches.
        st.builds(
            Pods,
            namespace=st.sampled_from(NAMESPACES),
            namespace_selector=_sel(NS_LABEL_VALUES),
            pod_selector=_sel(LABEL_VALUES),
        ),
    )


def _peer() -> st.SearchStrategy[TPeer]:
    net = st.sampled_from(IP_BLOCKS).map(lambda b: Net(b["cidr"], tuple(b.get("except", ()))))
    # Nodes (a `nodes` peer), the world and everything: the entities admin peers lower to.
    entity = st.sampled_from([Entity.REMOTE_NODE, Entity.WORLD, Entity.ALL, Entity.CLUSTER])
    return st.one_of(_pods(), net, entity.map(Ent))


def _port() -> st.SearchStrategy[PortRange]:
    proto = st.sampled_from([Protocol.TCP, Protocol.UDP])
    return st.one_of(
        st.builds(lambda p, n: PortRange(p, n, n), proto, st.sampled_from(PORT_NUMBERS)),
        st.builds(PortRange, proto),
        st.builds(lambda p, n: PortRange(p, name=n), proto, st.sampled_from(PORT_NAMES)),
        st.just(PortRange(Protocol.TCP, 8000, 8100)),
    )


def _rule(actions: list[Action]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "action": st.sampled_from(actions),
            "direction": st.sampled_from([PolicyType.INGRESS, PolicyType.EGRESS]),
            "peers": st.one_of(st.none(), st.lists(_peer(), min_size=1, max_size=2)),
            "ports": st.one_of(st.none(), st.lists(_port(), min_size=1, max_size=2)),
        }
    )


def _policy(stage: str, dialect: str, actions: list[Action]) -> st.SearchStrategy[TPolicy]:
    def build(subject: Pods, priority: int, rules: list[dict[str, Any]]) -> TPolicy:
        counts = {PolicyType.INGRESS: 0, PolicyType.EGRESS: 0}
        lowered = []
        for r in rules:
            lowered.append(
                TRule(
                    r["action"],
                    r["direction"],
                    counts[r["direction"]],
                    peers=None if r["peers"] is None else tuple(r["peers"]),
                    ports=None if r["ports"] is None else tuple(r["ports"]),
                )
            )
            counts[r["direction"]] += 1
        return TPolicy(
            dialect,
            "",
            "<random>",
            subject,
            frozenset({r.direction for r in lowered}),
            tuple(lowered),
            stage=stage,
            order=(priority,),
        )

    return st.builds(
        build, _pods(), st.integers(0, 3), st.lists(_rule(actions), min_size=1, max_size=3)
    )


ADMIN = _policy("Admin", "AdminNetworkPolicy", [Action.ALLOW, Action.DENY, Action.PASS])
BASELINE = _policy("Baseline", "BaselineAdminNetworkPolicy", [Action.ALLOW, Action.DENY])


@st.composite
def tiered(draw: st.DrawFn, /, **kwargs: Any) -> tuple[Scenario, tuple[TPolicy, ...]]:
    s = draw(scenarios(**kwargs))
    admin = draw(st.lists(ADMIN, min_size=1, max_size=3))
    baseline = draw(st.lists(BASELINE, max_size=1))
    named = [
        TPolicy(p.dialect, f"anp-{i}", p.where, p.subject, p.types, p.rules, p.stage, p.order)
        for i, p in enumerate(admin)
    ] + [
        TPolicy(p.dialect, "default", p.where, p.subject, p.types, p.rules, p.stage, p.order)
        for p in baseline
    ]
    return s, tuple(named)


def _with(s: Scenario, ordered: tuple[TPolicy, ...], *, pods: bool = True) -> Inventory:
    truth = s.inventory
    return Inventory.build(
        truth.policies,
        truth.namespaces,
        truth.pods if pods else (),
        namespaces_complete=True,
        ordered=ordered,
    )


def _pipeline(s: Scenario, ordered: tuple[TPolicy, ...]) -> Pipeline:
    topology = s.topology
    return pipeline(
        "kubernetes",
        s.inventory.policies,
        ordered,
        node_cidrs=topology.node_cidrs,
        cluster_cidrs=[*topology.pod_cidrs, *topology.node_cidrs],
    )


def _connections(s: Scenario, *, external: bool) -> Iterator[tuple[Endpoint, Endpoint]]:
    ends = [Endpoint(p.ip or "", p) for p in s.pods]
    if external:
        ends += [Endpoint(ip) for ip in EXTERNAL_IPS]
    for a in ends:
        for b in ends:
            if a.ip != b.ip and (a.pod is not None or b.pod is not None):
                yield a, b


def _unsound(s: Scenario, ordered: tuple[TPolicy, ...], intent: Intent) -> list[str]:
    walk = _pipeline(s, ordered)
    misses = []
    for a, b in _connections(s, external=True):
        for proto in (Protocol.TCP, Protocol.UDP):
            for port in PROBE_PORTS:
                v = tiered_verdict(a, b, proto, port, walk, s.inventory.namespaces)
                if v.allowed and not intent.allows(a.ip, b.ip, proto.value, port):
                    steps = [st.describe() for st in (*v.egress.steps, *v.ingress.steps)]
                    misses.append(f"{a.ip} -> {b.ip} {port}/{proto.value}: {steps}")
    return misses


def _describe(s: Scenario, ordered: tuple[TPolicy, ...]) -> str:
    return f"{s.describe()}\n{ordered!r}"


@SETTINGS
@given(tiered())
def test_tiers_sound_with_every_pod_known(case: tuple[Scenario, tuple[TPolicy, ...]]) -> None:
    s, ordered = case
    intent = compile_intent(s.topology, _with(s, ordered))
    assert _unsound(s, ordered, intent) == [], _describe(s, ordered)


@SETTINGS
@given(tiered(), st.booleans())
def test_tiers_sound_from_selectors_alone(
    case: tuple[Scenario, tuple[TPolicy, ...]], pods: bool
) -> None:
    s, ordered = case
    intent = compile_intent(
        s.topology, _with(s, ordered, pods=pods), options=CompileOptions(selector_only=True)
    )
    assert _unsound(s, ordered, intent) == [], _describe(s, ordered)


@SETTINGS
@given(tiered(), st.sets(st.sampled_from(NAMESPACES)), st.booleans())
def test_tiers_sound_when_namespaces_go_undescribed(
    case: tuple[Scenario, tuple[TPolicy, ...]], described: set[str], pods: bool
) -> None:
    """Namespaces without a Namespace object have unknown labels, and others may exist."""
    s, ordered = case
    truth = s.inventory
    seen = Inventory.build(
        truth.policies,
        {ns: labels for ns, labels in truth.namespaces.items() if ns in described},
        truth.pods if pods else (),
        ordered=ordered,
    )
    intent = compile_intent(s.topology, seen)
    assert _unsound(s, ordered, intent) == [], f"described: {sorted(described)}\n" + _describe(
        s, ordered
    )


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    tiered(catch_all=False, max_pods=10)
    .map(lambda c: (one_pod_per_segment(c[0]), c[1]))
    .filter(lambda c: c[0] is not None)
)
def test_tiers_precise_when_each_segment_has_one_known_pod(
    case: tuple[Scenario | None, tuple[TPolicy, ...]],
) -> None:
    s, ordered = case
    assert s is not None
    intent = compile_intent(s.topology, _with(s, ordered))
    # Protocols without ports can only be allowed as ANY: where a finding says so, a
    # segment's direction may allow more, by design.
    widened = {
        (f.segment, f.message.split(" allows ")[1].split(" ")[0])
        for f in intent.findings
        if f.code is Code.PROTOCOLS_WIDENED
    }
    walk = _pipeline(s, ordered)
    wider = []
    for a, b in _connections(s, external=False):
        assert a.pod is not None and b.pod is not None
        seg_a, seg_b = intent.segment_of(a.ip), intent.segment_of(b.ip)
        if (seg_a and (seg_a.name, "egress") in widened) or (
            seg_b and (seg_b.name, "ingress") in widened
        ):
            continue
        for proto in (Protocol.TCP, Protocol.UDP):
            for port in PROBE_PORTS:
                v = tiered_verdict(a, b, proto, port, walk, s.inventory.namespaces)
                if intent.allows(a.ip, b.ip, proto.value, port) and not v.allowed:
                    wider.append(f"{a.ip} -> {b.ip} {port}/{proto.value}")
    assert wider == [], _describe(s, ordered)
