"""Ordered policies end to end: what each cloud holds after an apply allows what they allow.

Random admin and baseline policies over three namespaces (one pod each) are compiled,
planned and applied through the real SDK clients against each cloud's stand-in (moto's EC2
server, the ARM stand-in, the compute stand-in). The cloud's rules are then read back and
evaluated by the tests' own evaluators (they read the cloud, not nsgsync's model), and
every connection the reference walk (nsgsync.semantics) may allow must be allowed there.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsgsync.compile import compile_intent
from nsgsync.engine import apply_plan, make_plan
from nsgsync.model import ContainerPort, Inventory, PodInfo, Protocol
from nsgsync.model.tiers import TPolicy
from nsgsync.provider import configure
from nsgsync.semantics import Endpoint, pipeline, tiered_verdict
from tests.aws.conftest import moto_endpoint  # noqa: F401  (the fixture)
from tests.scenarios import CONTAINER_PORTS, NS_LABELS, POD_LABELS
from tests.test_engine_safety import (  # noqa: F401  (the fixtures)
    PORTS,
    PROBES,
    SEGMENTS,
    Cloud,
    aws_cloud,
    azure_cloud,
    gcp_cloud,
)
from tests.test_soundness_tiers import ADMIN, BASELINE

NAMESPACES = list(SEGMENTS)  # a, b, c: each its own segment, one pod at .10


@st.composite
def clusters(draw: st.DrawFn) -> tuple[Inventory, tuple[PodInfo, ...]]:
    pods = []
    for ns, cidr in SEGMENTS.items():
        ports = draw(CONTAINER_PORTS)
        pods.append(
            PodInfo(
                namespace=ns,
                name=f"{ns}-pod",
                labels=draw(POD_LABELS),
                ports=tuple(
                    ContainerPort(name=n, port=p, protocol=Protocol(pr)) for n, p, pr in ports
                ),
                ip=cidr.rsplit(".", 1)[0] + ".10",
            )
        )
    admin = draw(st.lists(ADMIN, min_size=1, max_size=3))
    baseline = draw(st.lists(BASELINE, max_size=1))
    named = [
        TPolicy(p.dialect, f"anp-{i}", p.where, p.subject, p.types, p.rules, p.stage, p.order)
        for i, p in enumerate(admin)
    ] + [
        TPolicy(p.dialect, "default", p.where, p.subject, p.types, p.rules, p.stage, p.order)
        for p in baseline
    ]
    labels = {ns: draw(NS_LABELS) for ns in NAMESPACES}
    inventory = Inventory.build((), labels, pods, namespaces_complete=True, ordered=named)
    return inventory, tuple(pods)


def _blocked(cloud: Cloud, inventory: Inventory, pods: tuple[PodInfo, ...]) -> list[str]:
    intent = compile_intent(cloud.topology, inventory)
    adapter = configure(cloud.topology)
    apply_plan(
        adapter,
        make_plan(adapter, intent, session=cloud.session),
        cloud.session,
        progress=lambda _: None,
    )
    held = cloud.allows()
    topology = cloud.topology
    walk = pipeline(
        "kubernetes",
        (),
        inventory.ordered,
        node_cidrs=topology.node_cidrs,
        cluster_cidrs=[*topology.pod_cidrs, *topology.node_cidrs],
    )
    by_ip = {p.ip: p for p in pods}
    misses = []
    for src in PROBES:
        for dst in PROBES:
            if src == dst:
                continue
            for proto, port in PORTS:
                v = tiered_verdict(
                    Endpoint(src, by_ip.get(src)),
                    Endpoint(dst, by_ip.get(dst)),
                    Protocol(proto),
                    port,
                    walk,
                    inventory.namespaces,
                )
                if v.allowed and (src, dst, proto, port) not in held:
                    steps = [s.describe() for s in (*v.egress.steps, *v.ingress.steps)]
                    misses.append(f"{src} -> {dst} {port}/{proto}: {steps}")
    return misses


SETTINGS = settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("cloud_name", ["aws_cloud", "azure_cloud", "gcp_cloud"])
@SETTINGS
@given(case=clusters())
def test_what_each_cloud_holds_allows_what_ordered_policies_allow(
    request: pytest.FixtureRequest, cloud_name: str, case: tuple[Inventory, tuple[PodInfo, ...]]
) -> None:
    cloud: Any = request.getfixturevalue(cloud_name)
    inventory, pods = case
    misses = _blocked(cloud, inventory, pods)
    assert not misses, f"{inventory.ordered!r}\n" + "\n".join(misses[:10])
