"""Soundness (and precision) of the compiled Intent for Calico clusters, by property.

Random Calico policies (tiers with Deny and Pass defaults, orders and missing orders, Allow,
Deny, Pass and Log rules, selectors, namespace selectors, notSelector, nets, notNets, ports,
notPorts, named ports, notProtocol) beside random NetworkPolicies, read from manifests as a
user writes them, against the reference walk over calico_stages: every connection the walk
may allow, the Intent allows.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsgsync.compile import CompileOptions, compile_intent
from nsgsync.intent import Code, Intent
from nsgsync.model import Inventory, Protocol
from nsgsync.semantics import Endpoint, pipeline, tiered_verdict
from nsgsync.sources.files import load_manifests
from tests.scenarios import EXTERNAL_IPS, PROBE_PORTS, Scenario, one_pod_per_segment, scenarios
from tests.test_calico import NETWORK_SET, TIERS, _calico

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def calico_clusters(draw: st.DrawFn, /, **kwargs: Any) -> tuple[Scenario, Inventory, list[Any]]:
    s = draw(scenarios(**kwargs))
    docs = [draw(_calico(i)) for i in range(draw(st.integers(1, 4)))]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calico.yaml"
        path.write_text(yaml.safe_dump_all([*TIERS, NETWORK_SET, *docs], sort_keys=False))
        read = load_manifests([path])
    pods = tuple(
        p.model_copy(update={"service_account": "sa1" if i % 2 else "default"})
        for i, p in enumerate(s.pods)
    )
    s = Scenario(s.topology, s.inventory, pods)
    inv = Inventory.build(
        s.inventory.policies,
        s.inventory.namespaces,
        pods,
        namespaces_complete=True,
        ordered=read.ordered,
    )
    return s, inv, docs


def _walk_allowed_but_denied(s: Scenario, inv: Inventory, intent: Intent) -> list[str]:
    topology = s.topology
    walk = pipeline(
        "calico",
        inv.policies,
        inv.ordered,
        node_cidrs=topology.node_cidrs,
        cluster_cidrs=[*topology.pod_cidrs, *topology.node_cidrs],
    )
    ends = [Endpoint(p.ip or "", p) for p in inv.pods] + [Endpoint(ip) for ip in EXTERNAL_IPS]
    misses = []
    for a in ends:
        for b in ends:
            if a.ip == b.ip or (a.pod is None and b.pod is None):
                continue
            for proto in (Protocol.TCP, Protocol.UDP):
                for port in PROBE_PORTS:
                    v = tiered_verdict(a, b, proto, port, walk, inv.namespaces)
                    if v.allowed and not intent.allows(a.ip, b.ip, proto.value, port):
                        steps = [x.describe() for x in (*v.egress.steps, *v.ingress.steps)]
                        misses.append(f"{a.ip} -> {b.ip} {port}/{proto.value}: {steps}")
    return misses


@SETTINGS
@given(calico_clusters())
def test_calico_sound_with_every_pod_known(case: tuple[Scenario, Inventory, list[Any]]) -> None:
    s, inv, docs = case
    intent = compile_intent(s.topology, inv)
    assert _walk_allowed_but_denied(s, inv, intent) == [], docs


@SETTINGS
@given(calico_clusters())
def test_calico_sound_from_selectors_alone(case: tuple[Scenario, Inventory, list[Any]]) -> None:
    s, inv, docs = case
    no_pods = Inventory.build(
        inv.policies, inv.namespaces, (), namespaces_complete=True, ordered=inv.ordered
    )
    intent = compile_intent(s.topology, no_pods, options=CompileOptions(selector_only=True))
    assert _walk_allowed_but_denied(s, inv, intent) == [], docs


def test_the_generated_clusters_are_not_all_open() -> None:
    """The property above must be able to fail: some generated Intents deny something."""
    denied = 0

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(calico_clusters())
    def count(case: tuple[Scenario, Inventory, list[Any]]) -> None:
        nonlocal denied
        s, inv, _ = case
        intent = compile_intent(s.topology, inv)
        pods = [p for p in inv.pods if p.ip]
        denied += sum(
            not intent.allows(a.ip or "", b.ip or "", "TCP", 80)
            for a in pods
            for b in pods
            if a is not b
        )

    count()
    assert denied > 0


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(calico_clusters(catch_all=False, max_pods=10))
def test_calico_precise_when_each_segment_has_one_known_pod(
    case: tuple[Scenario, Inventory, list[Any]],
) -> None:
    s, inv, docs = case
    one = one_pod_per_segment(Scenario(s.topology, inv, s.pods))
    if one is None:
        return
    kept = {p.name for p in one.pods}
    inv = Inventory.build(
        inv.policies,
        inv.namespaces,
        [p for p in inv.pods if p.name in kept],
        namespaces_complete=True,
        ordered=inv.ordered,
    )
    intent = compile_intent(s.topology, inv)
    widened = {
        (f.segment, f.message.split(" allows ")[1].split(" ")[0])
        for f in intent.findings
        if f.code is Code.PROTOCOLS_WIDENED and " allows " in f.message
    }
    walk = pipeline("calico", inv.policies, inv.ordered, node_cidrs=s.topology.node_cidrs)
    pods = [Endpoint(p.ip or "", p) for p in inv.pods]
    wider = []
    for a in pods:
        for b in pods:
            if a.ip == b.ip:
                continue
            seg_a, seg_b = intent.segment_of(a.ip), intent.segment_of(b.ip)
            if (seg_a and (seg_a.name, "egress") in widened) or (
                seg_b and (seg_b.name, "ingress") in widened
            ):
                continue
            for proto in (Protocol.TCP, Protocol.UDP):
                for port in PROBE_PORTS:
                    v = tiered_verdict(a, b, proto, port, walk, inv.namespaces)
                    if intent.allows(a.ip, b.ip, proto.value, port) and not v.allowed:
                        wider.append(f"{a.ip} -> {b.ip} {port}/{proto.value}")
    assert wider == [], docs
