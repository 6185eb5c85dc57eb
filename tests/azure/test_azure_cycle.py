"""The Azure adapter end to end: the real NetworkManagementClient against the ARM stand-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.network.models import TagsObject

from nsgsync.compile import compile_intent
from nsgsync.engine import apply_plan, make_plan
from nsgsync.errors import ConcurrentChangeError, LimitError, ProviderError
from nsgsync.intent import Intent
from nsgsync.model import Inventory, NetworkPolicy, Topology
from nsgsync.plan import Op, Plan
from nsgsync.provider import configure
from nsgsync.sources import load_manifests, load_topology
from nsgsync.sources.files import Document, parse_policy
from tests.azure.conftest import RG, SUB, VNET, VNET_CIDRS, Arm
from tests.azure.evaluate import Nsgs
from tests.cycle import CASES, EXAMPLE, mismatches, policy_change


def plan(arm: Arm, topology: Topology, intent: Intent) -> Plan:
    provider = configure(topology)
    conn = provider.session(network_client=arm.client)
    return make_plan(provider, intent, session=conn).plan


def apply(arm: Arm, topology: Topology, intent: Intent) -> Plan:
    provider = configure(topology)
    conn = provider.session(network_client=arm.client)
    planned = make_plan(provider, intent, session=conn).plan
    apply_plan(provider, planned, conn, progress=lambda _: None)
    return planned


def assert_cloud_matches_intent(arm: Arm, topology: Topology, intent: Intent) -> None:
    nsgs = Nsgs.read(arm.client, RG, VNET, VNET_CIDRS)
    assert mismatches(nsgs.allows, topology, intent) == []


def policy(name: str, namespace: str, spec: dict[str, Any]) -> NetworkPolicy:
    doc = {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace}}
    return parse_policy(Document("<test>", 1, {**doc, "spec": spec}))


def with_policies(inventory: Inventory, *extra: NetworkPolicy) -> Inventory:
    return Inventory.build([*inventory.policies, *extra], inventory.namespaces, inventory.pods)


def rules_of(arm: Arm, nsg: str) -> dict[str, dict[str, Any]]:
    found = arm.fake.get_nsg(SUB, RG, nsg)
    assert found is not None, nsg
    return {r["name"]: r["properties"] for r in found["properties"]["securityRules"]}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_full_cycle_per_seed_policy_set(arm: Arm, case: Path) -> None:
    topology = arm.with_azure(load_topology(case / "topology.yaml"))
    inventory = load_manifests([case / "manifests"])
    intent = compile_intent(topology, inventory)
    first = apply(arm, topology, intent)
    assert first.count(Op.ADD) > 0
    assert_cloud_matches_intent(arm, topology, intent)

    arm.fake.clear_log()
    again = apply(arm, topology, intent)
    assert again.empty, [c.key for c in again.changes]
    assert arm.fake.writes() == 0

    change = policy_change(topology, intent, inventory)
    target, intent2 = change.target, change.intent
    step = plan(arm, topology, intent2)
    assert not step.empty
    assert target.name in {c.resource.segment for c in step.changes}
    assert {c.resource.segment for c in step.changes} <= change.namespace_segments
    assert all(c.resource.type == "security-rule" for c in step.changes)
    apply(arm, topology, intent2)
    assert plan(arm, topology, intent2).empty
    assert_cloud_matches_intent(arm, topology, intent2)


def example(arm: Arm, **azure: Any) -> tuple[Topology, Inventory]:
    topology = arm.with_azure(load_topology(EXAMPLE / "topology.yaml"), **azure)
    return topology, load_manifests([EXAMPLE / "cluster"])


def test_unowned_rules_survive_and_drift_is_reverted(arm: Arm) -> None:
    topology, inventory = example(arm)
    intent = compile_intent(topology, inventory)
    apply(arm, topology, intent)
    nsg = "nsgsync-demo-eu-1-shop-db"
    taken = {p["priority"] for p in rules_of(arm, nsg).values() if p["direction"] == "Inbound"}
    free = next(p for p in range(1000, 4000) if p not in taken)
    ssh = {
        "priority": 500,
        "direction": "Inbound",
        "access": "Allow",
        "protocol": "Tcp",
        "sourceAddressPrefix": "10.9.0.0/16",
        "sourcePortRange": "*",
        "destinationAddressPrefix": "*",
        "destinationPortRange": "22",
    }
    arm.fake.add_rule(SUB, RG, nsg, "team-ssh", ssh)
    # in the band, but without nsgsync's prefix: the user's too
    arm.fake.add_rule(SUB, RG, nsg, "team-bastion", {**ssh, "priority": free})
    assert plan(arm, topology, intent).empty

    # someone widens nsgsync's database rule by hand and adds one that looks like nsgsync's
    ours = rules_of(arm, nsg)
    db = next(n for n, p in ours.items() if p.get("destinationPortRange") == "5432")
    arm.fake.add_rule(SUB, RG, nsg, db, {**ours[db], "sourceAddressPrefix": "0.0.0.0/0"})
    taken.add(free)
    also = next(p for p in range(1000, 4000) if p not in taken)
    arm.fake.add_rule(SUB, RG, nsg, "nsgsync-shop-db-in-byhand", {**ssh, "priority": also})
    # and tags the NSG: a tag of the team's own, and one in nsgsync's namespace
    found = arm.fake.get_nsg(SUB, RG, nsg)
    assert found is not None
    tags = {**found["tags"], "owner": "team-db", "nsgsync.io/segment": "other"}
    arm.client.network_security_groups.update_tags(RG, nsg, TagsObject(tags=tags))
    drift = plan(arm, topology, intent)
    assert sorted((c.op, c.key) for c in drift.changes) == [
        (Op.CHANGE, f"nsg/{nsg}"),
        (Op.CHANGE, f"sr/{nsg}/{db}"),
        (Op.DESTROY, f"sr/{nsg}/nsgsync-shop-db-in-byhand"),
    ]
    apply(arm, topology, intent)
    assert plan(arm, topology, intent).empty
    after = rules_of(arm, nsg)
    assert after["team-ssh"]["priority"] == 500
    assert after["team-bastion"]["priority"] == free
    assert after[db]["sourceAddressPrefix"] == "10.0.2.0/24"
    assert "nsgsync-shop-db-in-byhand" not in after
    found = arm.fake.get_nsg(SUB, RG, nsg)
    assert found is not None
    assert found["tags"] == {
        "nsgsync.io/cluster": "demo-eu-1",
        "nsgsync.io/segment": "shop-db",
        "owner": "team-db",
    }
    assert_cloud_matches_intent(arm, topology, intent)


def test_existing_nsg_by_name_keeps_its_rules_and_tags(arm: Arm) -> None:
    nsg = "team-db-nsg"
    arm.fake.add_nsg(SUB, RG, nsg, tags={"owner": "team-db"})
    base = {
        "direction": "Inbound",
        "access": "Allow",
        "protocol": "Tcp",
        "sourceAddressPrefix": "10.9.0.0/16",
        "sourcePortRange": "*",
        "destinationAddressPrefix": "*",
        "destinationPortRange": "22",
    }
    arm.fake.add_rule(SUB, RG, nsg, "ssh", {**base, "priority": 500})
    # in-band rules of the team's own on the slots nsgsync would take first
    for p in (3999, 3998, 1000):
        arm.fake.add_rule(SUB, RG, nsg, f"team-{p}", {**base, "priority": p})
    topology, inventory = example(arm)
    segments = [
        s.model_copy(update={"azure": {**s.provider_settings("azure"), "nsgName": nsg}})
        if s.name == "shop-db"
        else s
        for s in topology.segments
    ]
    topology = topology.model_copy(update={"segments": segments})
    intent = compile_intent(topology, inventory)
    planned = apply(arm, topology, intent)
    assert f"nsg/{nsg}" not in {r.key for r in planned.desired}
    assert plan(arm, topology, intent).empty
    found = arm.fake.get_nsg(SUB, RG, nsg)
    assert found is not None
    assert found["tags"] == {"owner": "team-db"}
    rules = rules_of(arm, nsg)
    assert {n: rules[n]["priority"] for n in ("ssh", "team-3999", "team-3998", "team-1000")} == {
        "ssh": 500,
        "team-3999": 3999,
        "team-3998": 3998,
        "team-1000": 1000,
    }
    assert rules["nsgsync-shop-db-in-default"]["priority"] == 3997
    # an NSG nsgsync does not own gets no catch-all for addresses outside the segments
    assert not any(n.endswith("-unsegmented") for n in rules)
    subnet = arm.fake.get_subnet(SUB, RG, VNET, "shop-db")
    assert subnet is not None
    assert subnet["properties"]["networkSecurityGroup"]["id"].endswith(f"/{nsg}")
    assert_cloud_matches_intent(arm, topology, intent)


def test_missing_named_nsg_is_a_clear_error(arm: Arm) -> None:
    topology, inventory = example(arm)
    segments = [
        s.model_copy(update={"azure": {"nsgName": "nope"}}) if s.name == "monitoring" else s
        for s in topology.segments
    ]
    topology = topology.model_copy(update={"segments": segments})
    with pytest.raises(ProviderError, match=r"NSG nope .* does not exist"):
        plan(arm, topology, compile_intent(topology, inventory))


def test_foreign_nsg_on_a_subnet_is_not_replaced(arm: Arm) -> None:
    other = arm.fake.add_nsg(SUB, RG, "someone-elses")
    arm.fake.add_subnet(SUB, RG, VNET, "shop-db", "10.0.3.0/24", nsg_id=other)
    topology, inventory = example(arm)
    with pytest.raises(ProviderError, match="someone-elses, which nsgsync does not manage"):
        plan(arm, topology, compile_intent(topology, inventory))
    assert arm.fake.writes() == 0


def test_hand_made_nsg_with_nsgsyncs_name_is_not_taken_over(arm: Arm) -> None:
    arm.fake.add_nsg(SUB, RG, "nsgsync-demo-eu-1-rest")
    topology, inventory = example(arm)
    with pytest.raises(ProviderError, match="without nsgsync's tags"):
        plan(arm, topology, compile_intent(topology, inventory))


def test_throttling_is_retried_after_retry_after(arm: Arm) -> None:
    topology, inventory = example(arm)
    intent = compile_intent(topology, inventory)
    provider = configure(topology)
    conn = provider.session(network_client=arm.client)
    planned = make_plan(provider, intent, session=conn).plan
    arm.fake.clear_log()
    arm.fake.throttle(2, retry_after=1, writes_only=True)
    apply_plan(provider, planned, conn, progress=lambda _: None)
    # the first write is answered 429 twice, then goes through after Retry-After each time
    # (the re-reads of what it touches come before it)
    writes = [s for s in arm.fake.log if s.method != "GET"]
    assert [(s.method, s.status) for s in writes[:3]] == [
        ("PUT", 429),
        ("PUT", 429),
        ("PUT", 201),
    ]
    assert arm.fake.sleeps[:2] == [1, 1]
    assert plan(arm, topology, intent).empty
    assert_cloud_matches_intent(arm, topology, intent)


def test_the_evaluator_notices_a_missing_deny_rule(arm: Arm) -> None:
    topology, inventory = example(arm)
    intent = compile_intent(topology, inventory)
    apply(arm, topology, intent)
    arm.client.security_rules.begin_delete(
        RG, "nsgsync-demo-eu-1-shop-db", "nsgsync-shop-db-in-default"
    ).result()
    with pytest.raises(AssertionError):
        assert_cloud_matches_intent(arm, topology, intent)
    drift = plan(arm, topology, intent)
    assert [(c.op, c.key) for c in drift.changes] == [
        (Op.ADD, "sr/nsgsync-demo-eu-1-shop-db/nsgsync-shop-db-in-default")
    ]
    apply(arm, topology, intent)
    assert_cloud_matches_intent(arm, topology, intent)


def test_midway_failure_converges_on_next_apply(arm: Arm) -> None:
    topology, inventory = example(arm)
    intent = compile_intent(topology, inventory)
    provider = configure(topology)
    conn = provider.session(network_client=arm.client)
    planned = make_plan(provider, intent, session=conn).plan
    arm.fake.fail_writes_after(3)
    with pytest.raises(ProviderError, match="500"):
        apply_plan(provider, planned, conn, progress=lambda _: None)
    arm.fake.clear_faults()
    partial = plan(arm, topology, intent)
    assert 0 < partial.count(Op.ADD) < planned.count(Op.ADD)
    apply(arm, topology, intent)
    assert plan(arm, topology, intent).empty
    assert_cloud_matches_intent(arm, topology, intent)


def test_adding_a_policy_renumbers_no_existing_rule(arm: Arm) -> None:
    topology, inventory = example(arm)
    intent = compile_intent(topology, inventory)
    apply(arm, topology, intent)
    nsgs = [f"nsgsync-demo-eu-1-{s.name}" for s in topology.segments]
    before = {(n, r): p["priority"] for n in nsgs for r, p in rules_of(arm, n).items()}
    extra = policy(
        "more-db-clients",
        "shop",
        {
            "podSelector": {"matchLabels": {"tier": "db"}},
            "ingress": [
                {
                    "from": [{"ipBlock": {"cidr": f"198.51.100.{16 * i}/28"}}],
                    "ports": [{"port": 6000 + i}],
                }
                for i in range(12)
            ],
        },
    )
    intent2 = compile_intent(topology, with_policies(inventory, extra))
    step = plan(arm, topology, intent2)
    assert step.count(Op.ADD) == 12
    for c in step.changes:
        if c.op is Op.CHANGE:
            assert c.old is not None and c.new is not None
            assert c.old.body["properties"]["priority"] == c.new.body["properties"]["priority"]
    apply(arm, topology, intent2)
    after = {(n, r): p["priority"] for n in nsgs for r, p in rules_of(arm, n).items()}
    assert {k: after[k] for k in before} == before
    assert plan(arm, topology, intent2).empty
    assert_cloud_matches_intent(arm, topology, intent2)


def test_full_band_fails_the_plan_before_any_write(arm: Arm) -> None:
    topology, inventory = example(arm, priorityBand=[1000, 1004])
    with pytest.raises(LimitError, match="band is full") as info:
        plan(arm, topology, compile_intent(topology, inventory))
    assert "azure.priorityBand" in str(info.value)
    assert arm.fake.writes() == 0


def test_band_taken_by_others_fails_at_bind(arm: Arm) -> None:
    nsg = "team-db-nsg"
    arm.fake.add_nsg(SUB, RG, nsg)
    for p in range(1000, 1016):
        arm.fake.add_rule(
            SUB,
            RG,
            nsg,
            f"team-{p}",
            {
                "priority": p,
                "direction": "Inbound",
                "access": "Allow",
                "protocol": "Tcp",
                "sourceAddressPrefix": "10.9.0.0/16",
                "sourcePortRange": "*",
                "destinationAddressPrefix": "*",
                "destinationPortRange": str(p),
            },
        )
    topology, inventory = example(arm, priorityBand=[1000, 1017])
    segments = [
        s.model_copy(update={"azure": {**s.provider_settings("azure"), "nsgName": nsg}})
        if s.name == "shop-db"
        else s
        for s in topology.segments
    ]
    topology = topology.model_copy(update={"segments": segments})
    with pytest.raises(LimitError, match="16 of them held by rules nsgsync does not own"):
        plan(arm, topology, compile_intent(topology, inventory))
    assert arm.fake.writes() == 0


def test_removed_segment_is_dissociated_and_deleted(arm: Arm) -> None:
    topology, inventory = example(arm)
    apply(arm, topology, compile_intent(topology, inventory))
    smaller = topology.model_copy(
        update={"segments": [s for s in topology.segments if s.name != "monitoring"]}
    )
    intent = compile_intent(smaller, inventory)
    step = plan(arm, smaller, intent)
    gone = {(c.resource.type, c.key) for c in step.changes if c.op is Op.DESTROY}
    assert ("network-security-group", "nsg/nsgsync-demo-eu-1-monitoring") in gone
    assert ("subnet-association", "assoc/rg-nsgsync/vnet-pods/monitoring") in gone
    apply(arm, smaller, intent)
    assert arm.fake.get_nsg(SUB, RG, "nsgsync-demo-eu-1-monitoring") is None
    subnet = arm.fake.get_subnet(SUB, RG, VNET, "monitoring")
    assert subnet is not None
    assert "networkSecurityGroup" not in subnet["properties"]
    assert plan(arm, smaller, intent).empty


def test_segments_sharing_a_subnet_share_its_nsg(arm: Arm) -> None:
    shop = ("shop", "10.0.0.0/21")
    subnets = dict.fromkeys(("shop-frontend", "shop-backend", "shop-db", "shop-other"), shop)
    topology = arm.with_azure(load_topology(EXAMPLE / "topology.yaml"), subnets=subnets)
    inventory = load_manifests([EXAMPLE / "cluster"])
    intent = compile_intent(topology, inventory)
    planned = apply(arm, topology, intent)
    nsgs = sorted(r.body["name"] for r in planned.desired if r.type == "network-security-group")
    assert nsgs == [
        "nsgsync-demo-eu-1-monitoring",
        "nsgsync-demo-eu-1-rest",
        "nsgsync-demo-eu-1-shop-frontend",
    ]
    rules = rules_of(arm, "nsgsync-demo-eu-1-shop-frontend")
    inbound = sorted((p["priority"], n) for n, p in rules.items() if p["direction"] == "Inbound")
    # the catch-all last, then each segment's default, then the allow rules
    assert inbound[-1] == (3999, "nsgsync-in-unsegmented")
    assert {n for _, n in inbound[-5:-1]} == {
        f"nsgsync-{s}-in-default"
        for s in ("shop-frontend", "shop-backend", "shop-db", "shop-other")
    }
    assert plan(arm, topology, intent).empty
    # the probes include an address of the shared subnet that is in no segment
    assert_cloud_matches_intent(arm, topology, intent)


def test_an_nsg_that_interfaces_use_retires_until_they_are_gone(arm: Arm) -> None:
    topology, inventory = example(arm)
    apply(arm, topology, compile_intent(topology, inventory))
    old = "nsgsync-demo-eu-1-shop-db"
    kept = rules_of(arm, old)
    nic = arm.nsg_id("x").replace("networkSecurityGroups/x", "networkInterfaces/vm1")
    arm.fake.set_nics(SUB, RG, old, [nic])
    # The segment is renamed; its pods stay on the same subnet.
    renamed = load_topology(EXAMPLE / "topology.yaml")
    renamed = renamed.model_copy(
        update={
            "segments": [
                s.model_copy(update={"name": "shop-database"}) if s.name == "shop-db" else s
                for s in renamed.segments
            ]
        }
    )
    renamed = arm.with_azure(renamed, subnets={"shop-database": ("shop-db", "10.0.3.0/24")})
    intent = compile_intent(renamed, inventory)

    planned = apply(arm, renamed, intent)
    assert [(r.key, r.users, r.what) for r in planned.retiring] == [
        (f"nsg/{old}", 1, "network interfaces")
    ]
    assert rules_of(arm, old) == kept  # kept whole while the interface uses it
    subnet = arm.fake.get_subnet(SUB, RG, VNET, "shop-db")
    assert subnet is not None
    assert subnet["properties"]["networkSecurityGroup"]["id"].endswith("-shop-database")
    again = plan(arm, renamed, intent)
    assert again.empty and len(again.retiring) == 1

    arm.fake.set_nics(SUB, RG, old, [])
    apply(arm, renamed, intent)
    assert arm.fake.get_nsg(SUB, RG, old) is None
    last = plan(arm, renamed, intent)
    assert last.empty and last.retiring == ()
    assert_cloud_matches_intent(arm, renamed, intent)


def test_a_copy_of_an_owned_nsg_is_destroyed_and_never_written_into(arm: Arm) -> None:
    topology, inventory = example(arm)
    intent = compile_intent(topology, inventory)
    apply(arm, topology, intent)
    nsg = "nsgsync-demo-eu-1-shop-db"
    kept = rules_of(arm, nsg)
    tags = {"nsgsync.io/cluster": "demo-eu-1", "nsgsync.io/segment": "shop-db"}
    arm.fake.add_nsg(SUB, RG, "restored-shop-db", tags=tags)
    for name, props in rules_of(arm, nsg).items():
        arm.fake.add_rule(SUB, RG, "restored-shop-db", name, props)
    planned = plan(arm, topology, intent)
    assert {c.op for c in planned.changes} == {Op.DESTROY}
    assert "nsg/restored-shop-db" in {c.key for c in planned.changes}
    assert all(c.key.split("/")[1] == "restored-shop-db" for c in planned.changes)
    apply(arm, topology, intent)
    assert arm.fake.get_nsg(SUB, RG, "restored-shop-db") is None
    assert rules_of(arm, nsg) == kept

    # Used by an interface, the copy retires instead, still untouched.
    arm.fake.add_nsg(SUB, RG, "restored-shop-db", tags=tags)
    arm.fake.set_nics(SUB, RG, "restored-shop-db", [arm.nsg_id("vm1")])
    planned = apply(arm, topology, intent)
    assert planned.empty and [r.key for r in planned.retiring] == ["nsg/restored-shop-db"]
    assert arm.fake.get_nsg(SUB, RG, "restored-shop-db") is not None


def test_a_rule_deleted_by_hand_after_the_plan_stops_the_apply_before_its_nsg(arm: Arm) -> None:
    topology, inventory = example(arm)
    apply(arm, topology, compile_intent(topology, inventory))
    provider = configure(topology)
    conn = provider.session(network_client=arm.client)
    nothing = Intent(cluster=topology.cluster, segments=())
    planned = make_plan(provider, nothing, session=conn, destroy=True)
    # Between the plan and its apply, a person deletes a rule of an NSG it deletes.
    arm.client.security_rules.begin_delete(
        RG, "nsgsync-demo-eu-1-shop-db", "nsgsync-shop-db-in-default"
    ).result()
    with pytest.raises(ConcurrentChangeError) as stopped:
        apply_plan(provider, planned, conn, progress=lambda _: None)
    message = str(stopped.value)
    assert "sr/nsgsync-demo-eu-1-shop-db/nsgsync-shop-db-in-default" in message
    assert "is gone, but existed when the plan was made" in message
    assert "before its delete phase" in message
    # The NSG was not deleted; planned again, the destroy completes.
    arm.client.network_security_groups.get(RG, "nsgsync-demo-eu-1-shop-db")
    apply_plan(
        provider,
        make_plan(provider, nothing, session=conn, destroy=True),
        conn,
        progress=lambda _: None,
    )
    assert make_plan(provider, nothing, session=conn, destroy=True).plan.empty
