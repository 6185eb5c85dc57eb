"""Quotas at the transient peak of an apply: adds come before removes, so a group near its
limit needs room for both; the engine pairs a removal with an addition as one in-place
change where the cloud has one (AWS), and otherwise fails the plan before any write."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from nsgsync.engine import apply_plan, make_plan
from nsgsync.errors import LimitError
from nsgsync.intent import DirectionIntent, Intent, IntentProtocol, Rule, SegmentIntent
from nsgsync.model import Topology
from nsgsync.provider import configure
from tests.aws.conftest import REGION, Ec2
from tests.aws.conftest import ec2 as ec2
from tests.aws.conftest import moto_endpoint as moto_endpoint
from tests.aws.evaluate import Groups
from tests.fakes.gcp_compute import FakeCompute, make_client
from tests.gcp.conftest import FAST_RETRY, with_gcp
from tests.test_engine_safety import topology


def ports_intent(ports: list[int], *, peer: str = "10.0.2.0/24") -> Intent:
    """Segment a allows TCP `ports` from `peer`, one rule each; the rest is open."""
    rules = tuple(
        Rule(peers=(peer,), protocol=IntentProtocol.TCP, ports=((p, p),), policies=(f"ns/p{p}",))
        for p in ports
    )
    isolated = DirectionIntent(isolated=True, rules=rules)
    open_ = DirectionIntent(isolated=False)
    segments = [
        SegmentIntent(name="a", cidrs=("10.0.1.0/24",), ingress=isolated, egress=open_),
        SegmentIntent(name="b", cidrs=("10.0.2.0/24",), ingress=open_, egress=open_),
        SegmentIntent(name="c", cidrs=("10.0.3.0/24",), ingress=open_, egress=open_),
    ]
    return Intent(cluster="safe", segments=tuple(segments))


def aws_topology(ec2: Ec2, limit: int) -> Topology:
    block = {"region": REGION, "vpcId": ec2.vpc_id, "maxRulesPerGroup": limit}
    return topology().model_copy(update={"aws": block})


def test_a_full_group_is_changed_in_place_and_never_over_its_limit(ec2: Ec2) -> None:
    top = aws_topology(ec2, 5)
    adapter = configure(top)
    session = adapter.session(ec2=ec2.client)
    apply_plan(
        adapter,
        make_plan(adapter, ports_intent([1, 2, 3, 4]), session=session),
        session,
        progress=lambda _: None,
    )

    watcher = boto3.client("ec2", region_name=REGION, endpoint_url=ec2.endpoint)
    peaks: list[int] = []

    def count(**_: Any) -> None:
        rules = Groups.read(watcher, ec2.vpc_id, top).by_segment["a"]
        peaks.append(sum(1 for r in rules if not r["IsEgress"]))

    ec2.client.meta.events.register("after-call.ec2.*", count)
    ec2.calls.clear()
    # Four rules out, four in: adding first would need 8 rules in a group that takes 5.
    planned = make_plan(adapter, ports_intent([11, 12, 13, 14]), session=session)
    apply_plan(adapter, planned, session, progress=lambda _: None)
    ec2.client.meta.events.unregister("after-call.ec2.*", count)

    assert max(peaks) <= 5
    assert ec2.calls["ModifySecurityGroupRules"] >= 1
    assert make_plan(adapter, ports_intent([11, 12, 13, 14]), session=session).plan.empty
    groups = Groups.read(watcher, ec2.vpc_id, top)
    assert groups.allows("10.0.2.5", "10.0.1.5", "TCP", 12)
    assert not groups.allows("10.0.2.5", "10.0.1.5", "TCP", 2)


def test_a_group_over_its_limit_at_the_end_fails_before_any_write(ec2: Ec2) -> None:
    top = aws_topology(ec2, 3)
    adapter = configure(top)
    session = adapter.session(ec2=ec2.client)
    ec2.calls.clear()
    with pytest.raises(LimitError) as info:
        make_plan(adapter, ports_intent([1, 2, 3, 4]), session=session)
    assert "segment a needs 4 ingress rules" in str(info.value)
    assert ec2.writes() == 0


@pytest.fixture
def compute() -> Iterator[FakeCompute]:
    with FakeCompute() as fake:
        yield fake


def test_where_no_in_place_change_fits_the_plan_names_segment_side_and_policies(
    compute: FakeCompute,
) -> None:
    # 8 rules: a has 2 allows and a deny in, 1 out; b and c 1 a side. The quota is 9.
    top = with_gcp(topology(), maxRules=9)
    adapter = configure(top)
    session = adapter.session(firewalls_client=make_client(compute), retry=FAST_RETRY)
    apply_plan(
        adapter,
        make_plan(adapter, ports_intent([1, 2]), session=session),
        session,
        progress=lambda _: None,
    )
    before = len(compute.firewalls("nsgsync-test"))
    # Other ports: two new allow rules (their names hash the ports) before the two old go.
    with pytest.raises(LimitError) as info:
        make_plan(adapter, ports_intent([5, 6]), session=session)
    text = str(info.value)
    assert f"would hold {before + 2} rules at the peak of the apply" in text
    assert "over the limit of 9" in text and "nothing was applied" in text
    assert "ns/p5" in text
    assert len(compute.firewalls("nsgsync-test")) == before
