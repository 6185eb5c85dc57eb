"""The AWS adapter end to end against moto's EC2 server over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nsgsync.compile import compile_intent
from nsgsync.engine import apply_plan, make_plan
from nsgsync.errors import LimitError
from nsgsync.intent import Intent
from nsgsync.model import Inventory, Topology
from nsgsync.plan import Op, Plan
from nsgsync.provider import configure
from nsgsync.sources import load_manifests, load_topology
from nsgsync.sources.files import Document, parse_policy
from tests.aws.conftest import Ec2
from tests.aws.evaluate import Groups
from tests.cycle import CASES, EXAMPLE, mismatches, policy_change


def with_vpc(topology: Topology, vpc_id: str, **aws: Any) -> Topology:
    block = {**topology.provider_block("aws"), "vpcId": vpc_id, **aws}
    return topology.model_copy(update={"aws": block})


def plan(ec2: Ec2, topology: Topology, intent: Intent) -> Plan:
    provider = configure(topology)
    conn = provider.session(ec2=ec2.client)
    return make_plan(provider, intent, session=conn).plan


def apply(ec2: Ec2, topology: Topology, intent: Intent) -> Plan:
    provider = configure(topology)
    conn = provider.session(ec2=ec2.client)
    planned = make_plan(provider, intent, session=conn).plan
    apply_plan(provider, planned, conn, progress=lambda _: None)
    return planned


def assert_cloud_matches_intent(ec2: Ec2, topology: Topology, intent: Intent) -> None:
    groups = Groups.read(ec2.client, ec2.vpc_id, topology)
    assert mismatches(groups.allows, topology, intent) == []


def load_case(case: Path, vpc_id: str) -> tuple[Topology, Inventory]:
    return with_vpc(load_topology(case / "topology.yaml"), vpc_id), load_manifests(
        [case / "manifests"]
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_full_cycle_per_seed_policy_set(ec2: Ec2, case: Path) -> None:
    topology, inventory = load_case(case, ec2.vpc_id)
    intent = compile_intent(topology, inventory)
    first = apply(ec2, topology, intent)
    assert first.count(Op.ADD) > 0
    assert_cloud_matches_intent(ec2, topology, intent)

    ec2.calls.clear()
    again = apply(ec2, topology, intent)
    assert again.empty, [c.key for c in again.changes]
    assert ec2.writes() == 0

    change = policy_change(topology, intent, inventory)
    target, intent2 = change.target, change.intent
    step = plan(ec2, topology, intent2)
    assert not step.empty
    assert target.name in {c.resource.segment for c in step.changes}
    assert {c.resource.segment for c in step.changes} <= change.namespace_segments
    assert all(c.resource.type == "security-group-rule" for c in step.changes)
    apply(ec2, topology, intent2)
    assert plan(ec2, topology, intent2).empty
    assert_cloud_matches_intent(ec2, topology, intent2)


def example(ec2: Ec2, **aws: Any) -> tuple[Topology, Intent]:
    topology = with_vpc(load_topology(EXAMPLE / "topology.yaml"), ec2.vpc_id, **aws)
    return topology, compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))


def test_security_group_peer_mode_references_segments(ec2: Ec2) -> None:
    topology, intent = example(ec2, peerMode="security-group")
    apply(ec2, topology, intent)
    groups = Groups.read(ec2.client, ec2.vpc_id, topology)
    refs = [r for r in groups.by_segment["shop-db"] if r.get("ReferencedGroupInfo")]
    assert refs, "the backend peer of shop-db should be its security group"
    assert_cloud_matches_intent(ec2, topology, intent)
    assert plan(ec2, topology, intent).empty


def test_unowned_groups_and_rules_survive_and_drift_is_reverted(ec2: Ec2) -> None:
    topology, intent = example(ec2)
    client = ec2.client
    other = client.create_security_group(
        GroupName="team-db", Description="not ours", VpcId=ec2.vpc_id
    )["GroupId"]
    client.authorize_security_group_ingress(
        GroupId=other,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "10.9.0.0/16"}],
            }
        ],
    )
    apply(ec2, topology, intent)
    groups = Groups.read(client, ec2.vpc_id, topology)
    db = next(g for g, s in groups.segment_of_group.items() if s == "shop-db")
    # someone opens SSH to the database pods by hand
    client.authorize_security_group_ingress(
        GroupId=db,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    drift = plan(ec2, topology, intent)
    assert [(c.op, c.key) for c in drift.changes] == [
        (Op.DESTROY, "sgr/shop-db/in/tcp/22-22/0.0.0.0/0")
    ]
    apply(ec2, topology, intent)
    assert plan(ec2, topology, intent).empty
    assert_cloud_matches_intent(ec2, topology, intent)
    theirs = client.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [other]}]
    )["SecurityGroupRules"]
    assert any(r.get("FromPort") == 22 and not r["IsEgress"] for r in theirs)


def test_midway_failure_converges_on_next_apply(ec2: Ec2) -> None:
    topology, intent = example(ec2)
    provider = configure(topology)
    conn = provider.session(ec2=ec2.client)
    planned = make_plan(provider, intent, session=conn).plan
    done = []

    class Boom(Exception):
        pass

    def fail_on_third_authorize(event_name: str, **_: Any) -> None:
        if "Authorize" in event_name:
            done.append(event_name)
            if len(done) == 3:
                raise Boom

    ec2.client.meta.events.register("before-call.ec2.*", fail_on_third_authorize)
    with pytest.raises(Boom):
        apply_plan(provider, planned, conn, progress=lambda _: None)
    ec2.client.meta.events.unregister("before-call.ec2.*", fail_on_third_authorize)
    partial = plan(ec2, topology, intent)
    assert 0 < partial.count(Op.ADD) < planned.count(Op.ADD)
    apply(ec2, topology, intent)
    assert plan(ec2, topology, intent).empty
    assert_cloud_matches_intent(ec2, topology, intent)


def test_rule_limit_fails_the_plan_naming_segment_count_and_limit(ec2: Ec2) -> None:
    topology, intent = example(ec2, maxRulesPerGroup=3)
    with pytest.raises(LimitError) as info:
        plan(ec2, topology, intent)
    text = str(info.value)
    assert "segment shop-" in text
    assert "over the limit of 3" in text
    assert "the policies and rules adding most: " in text
    assert "aws.peerMode: auto" in text
    assert ec2.writes() == 0


def test_noop_reconcile_reads_a_constant_number_of_times(ec2: Ec2) -> None:
    counts = []
    for n in (2, 40):
        topology, _ = example(ec2)
        block = [{"ipBlock": {"cidr": f"198.51.{i}.0/24"}} for i in range(n)]
        pol = parse_policy(
            Document(
                "<t>",
                1,
                {
                    "kind": "NetworkPolicy",
                    "metadata": {"name": "many", "namespace": "shop"},
                    "spec": {
                        "podSelector": {"matchLabels": {"tier": "db"}},
                        "ingress": [{"from": block, "ports": [{"port": 5432}]}],
                    },
                },
            )
        )
        inv = load_manifests([EXAMPLE / "cluster"])
        inv = Inventory.build([*inv.policies, pol], inv.namespaces, inv.pods)
        intent = compile_intent(topology, inv)
        apply(ec2, topology, intent)
        ec2.calls.clear()
        assert plan(ec2, topology, intent).empty
        assert ec2.writes() == 0
        counts.append(ec2.reads())
    assert counts[0] == counts[1]
