"""Soundness and precision of the compiler, by property against the reference semantics.

Soundness: every connection Kubernetes allows (nsgsync.semantics, pod by pod) is allowed
by the Intent (segment by segment). Precision: where each segment holds exactly one
known pod, the Intent allows nothing more between pods than Kubernetes does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsgsync.compile import CompileOptions, compile_intent
from nsgsync.errors import TopologyError
from nsgsync.intent import Intent
from nsgsync.model import Protocol
from nsgsync.net import AddressSet
from nsgsync.semantics import Endpoint, verdict
from nsgsync.sources.files import topology_from_mapping
from tests.scenarios import (
    EXTERNAL_IPS,
    NAMESPACES,
    NODE_CIDRS,
    PROBE_PORTS,
    Scenario,
    one_pod_per_segment,
    scenarios,
    topology_body,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def connections(s: Scenario, *, external: bool) -> Iterator[tuple[Endpoint, Endpoint]]:
    ends = [Endpoint(p.ip or "", p) for p in s.pods]
    if external:
        ends += [Endpoint(ip) for ip in EXTERNAL_IPS]
    for a in ends:
        for b in ends:
            if a.ip != b.ip and (a.pod is not None or b.pod is not None):
                yield a, b


def unsound(s: Scenario, intent: Intent) -> list[str]:
    misses = []
    for a, b in connections(s, external=True):
        for proto in (Protocol.TCP, Protocol.UDP):
            for port in PROBE_PORTS:
                k8s = verdict(a, b, proto, port, s.inventory.policies, s.inventory.namespaces)
                if k8s.allowed and not intent.allows(a.ip, b.ip, proto.value, port):
                    misses.append(f"{a.ip} -> {b.ip} {port}/{proto.value}: {k8s}")
    return misses


@SETTINGS
@given(scenarios())
def test_sound_with_every_pod_known(s: Scenario) -> None:
    intent = compile_intent(s.topology, s.inventory)
    assert unsound(s, intent) == [], s.describe()


@SETTINGS
@given(scenarios())
def test_sound_from_selectors_alone(s: Scenario) -> None:
    intent = compile_intent(s.topology, s.inventory, options=CompileOptions(selector_only=True))
    assert unsound(s, intent) == [], s.describe()


@SETTINGS
@given(scenarios())
def test_sound_with_no_pod_known(s: Scenario) -> None:
    intent = compile_intent(s.topology, s.seen(pods=False))
    assert unsound(s, intent) == [], s.describe()


@SETTINGS
@given(
    scenarios(),
    st.sets(st.sampled_from(NAMESPACES)),
    st.booleans(),
    st.booleans(),
)
def test_sound_when_namespaces_go_undescribed(
    s: Scenario, described: set[str], pods: bool, selector_only: bool
) -> None:
    """Namespaces with no Namespace object have unknown labels, and without a complete
    list of namespaces others may exist: the Intent still allows all Kubernetes does."""
    seen = s.seen(pods=pods, described=frozenset(described))
    options = CompileOptions(selector_only=selector_only)
    intent = compile_intent(s.topology, seen, options=options)
    assert unsound(s, intent) == [], f"described: {sorted(described)}\n{s.describe()}"


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    scenarios(catch_all=False, max_pods=10).map(one_pod_per_segment).filter(lambda s: s is not None)
)
def test_precise_when_each_segment_has_one_known_pod(s: Scenario) -> None:
    intent = compile_intent(s.topology, s.inventory)
    wider = []
    for a, b in connections(s, external=False):
        if a.pod is None or b.pod is None:
            continue
        for proto in (Protocol.TCP, Protocol.UDP):
            for port in PROBE_PORTS:
                k8s = verdict(a, b, proto, port, s.inventory.policies, s.inventory.namespaces)
                if intent.allows(a.ip, b.ip, proto.value, port) and not k8s.allowed:
                    wider.append(f"{a.ip} -> {b.ip} {port}/{proto.value}")
    assert wider == [], s.describe()


@SETTINGS
@given(scenarios(), st.lists(st.sampled_from(NODE_CIDRS), min_size=1, max_size=2, unique=True))
def test_nodes_overlapping_pods_are_refused_and_others_sound(
    s: Scenario, node_cidrs: list[str]
) -> None:
    """Nodes drawn independently of the pods: an overlap is an error naming both ranges;
    anything else compiles soundly."""
    body = topology_body(
        [seg.model_dump(by_alias=True, exclude_none=True) for seg in s.topology.segments],
        node_cidrs,
    )
    overlap = AddressSet.from_cidrs(node_cidrs) & AddressSet.from_cidrs(body["podCIDRs"])
    if overlap:
        with pytest.raises(TopologyError, match=r"nodeCIDRs .* overlaps podCIDRs"):
            topology_from_mapping(body)
        return
    topology = topology_from_mapping(body)
    intent = compile_intent(topology, s.inventory)
    assert unsound(s, intent) == [], s.describe()
