"""Quotas at the transient peak of an apply: adds come before removes, so a group near its
limit needs room for both; the engine pairs a removal with an addition as one in-place
change (AWS ModifySecurityGroupRules, an Azure rule PUT on the old name, a GCP firewall PUT
on the old name), only where no moment then blocks what is allowed both before and after,
and otherwise fails the plan before any write."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from azure.core.rest import HttpRequest, HttpResponse
from azure.mgmt.network import NetworkManagementClient
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from nsgsync.engine import apply_plan, make_plan
from nsgsync.errors import LimitError
from nsgsync.intent import DirectionIntent, Intent, IntentProtocol, Rule, SegmentIntent, Source
from nsgsync.model import Topology
from nsgsync.plan import Op
from nsgsync.provider import Snapshot, configure
from tests.aws.conftest import REGION, Ec2
from tests.aws.conftest import ec2 as ec2
from tests.aws.conftest import moto_endpoint as moto_endpoint
from tests.aws.evaluate import Groups
from tests.azure.conftest import RG, SUB, VNET, VNET_CIDRS
from tests.azure.conftest import Arm as AzureArm
from tests.azure.evaluate import Nsgs
from tests.fakes.azure_arm import FAKE_ARM_URL, ArmTransport, FakeArm, FakeCredential
from tests.fakes.azure_arm import make_client as make_arm_client
from tests.fakes.gcp_compute import FakeCompute, make_client, make_operations_client
from tests.gcp.conftest import FAST_RETRY, NETWORK, NODE_TAG, PROJECT, with_gcp
from tests.gcp.evaluate import Firewalls
from tests.test_engine_safety import recording_proxy, topology


def ports_intent(ports: list[int], *, peer: str = "10.0.2.0/24") -> Intent:
    """Segment a allows TCP `ports` from `peer`, one rule each; the rest is open."""
    return spans_intent([((p, p), peer) for p in ports])


def spans_intent(specs: list[tuple[tuple[int, int], str]]) -> Intent:
    """Segment a allows TCP on each (span, peer) of `specs`, a rule each; the rest is open."""
    rules = tuple(
        Rule(
            peers=(peer,),
            protocol=IntentProtocol.TCP,
            ports=(span,),
            policies=(f"ns/p{span[0]}",),
            sources=(Source(policy=f"ns/p{span[0]}", rule=0, peer=i),),
        )
        for i, (span, peer) in enumerate(specs)
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


# --- what every moment of an apply allows, read from the cloud after each call ---

Probe = tuple[str, str, str, int]
A, B = "10.0.1.5", "10.0.2.5"  # a pod of segment a, one of b (the peer)


def probes(ports: range | list[int], *, src: str = B) -> list[Probe]:
    return [(src, A, "TCP", p) for p in ports]


class AwsWatch:
    """After every EC2 call of the engine's client: the rules of a's ingress side, and
    which probes the groups allow (the tests' own evaluator, reading the cloud)."""

    def __init__(self, ec2: Ec2, top: Topology, checks: list[Probe]) -> None:
        self.watcher = boto3.client("ec2", region_name=REGION, endpoint_url=ec2.endpoint)
        self.ec2, self.top, self.checks = ec2, top, checks
        self.moments: list[tuple[int, set[Probe]]] = []

    def now(self) -> tuple[int, set[Probe]]:
        groups = Groups.read(self.watcher, self.ec2.vpc_id, self.top)
        count = sum(1 for r in groups.by_segment.get("a", []) if not r["IsEgress"])
        return count, {p for p in self.checks if groups.allows(*p)}

    def __call__(self, **_: Any) -> None:
        self.moments.append(self.now())

    def apply(self, adapter: Any, intent: Intent, session: Any) -> tuple[set[Probe], set[Probe]]:
        """Apply `intent`; what was allowed before and after it."""
        before = self.now()[1]
        planned = make_plan(adapter, intent, session=session)
        self.ec2.client.meta.events.register("after-call.ec2.*", self)
        try:
            apply_plan(adapter, planned, session, progress=lambda _: None)
        finally:
            self.ec2.client.meta.events.unregister("after-call.ec2.*", self)
        return before, self.now()[1]


def apply(adapter: Any, intent: Intent, session: Any) -> None:
    apply_plan(
        adapter, make_plan(adapter, intent, session=session), session, progress=lambda _: None
    )


def test_a_group_at_60_rules_replacing_57_of_them_stays_within_60_and_open(ec2: Ec2) -> None:
    # AWS's default quota, 60 rules a side; moto refuses a 61st.
    top = aws_topology(ec2, 60)
    adapter = configure(top)
    session = adapter.session(ec2=ec2.client)
    apply(adapter, ports_intent(list(range(1, 61))), session)
    kept = [1, 2, 3]
    after = kept + list(range(1001, 1058))
    watch = AwsWatch(ec2, top, probes([*range(1, 61), *range(1001, 1058)]))
    ec2.calls.clear()
    before, end = watch.apply(adapter, ports_intent(after), session)

    assert max(n for n, _ in watch.moments) <= 60
    for i, (_, allowed) in enumerate(watch.moments):
        assert before & end <= allowed, f"call {i + 1} blocked {sorted(before & end - allowed)}"
    assert end == set(probes(after))
    assert ec2.calls["ModifySecurityGroupRules"] == 57  # each pair in a call of its own
    assert make_plan(adapter, ports_intent(after), session=session).plan.empty


def test_pairs_run_in_an_order_where_no_moment_blocks_what_stays_allowed(ec2: Ec2) -> None:
    """Pairing the first removal with the first addition (by key) would rewrite port 443
    into 1-80 before 443-444 exists: 443 would be closed for a moment."""
    top = aws_topology(ec2, 2)
    adapter = configure(top)
    session = adapter.session(ec2=ec2.client)
    peer = "10.0.2.0/24"
    apply(adapter, spans_intent([((443, 443), peer), ((80, 80), peer)]), session)
    watch = AwsWatch(ec2, top, probes([1, 79, 80, 443, 444]))
    ec2.calls.clear()
    after = spans_intent([((1, 80), peer), ((443, 444), peer)])
    before, end = watch.apply(adapter, after, session)

    assert (B, A, "TCP", 443) in before & end
    assert ec2.calls["ModifySecurityGroupRules"] == 2
    for i, (count, allowed) in enumerate(watch.moments):
        assert count <= 2
        assert before & end <= allowed, f"call {i + 1} blocked {sorted(before & end - allowed)}"
    assert make_plan(adapter, after, session=session).plan.empty


def test_where_every_pair_would_block_a_moment_the_plan_fails_naming_counts_and_rules(
    ec2: Ec2,
) -> None:
    # Ports 80 and 81 from all of b, then 79-81 from one half of b and 80-82 from the
    # other: whichever pair runs first closes its old port to the half that the other new
    # rule is still to open. (Rules of equal ports would merge into one: don't-care.)
    top = aws_topology(ec2, 2)
    adapter = configure(top)
    session = adapter.session(ec2=ec2.client)
    apply(adapter, spans_intent([((80, 80), "10.0.2.0/24"), ((81, 81), "10.0.2.0/24")]), session)
    ec2.calls.clear()
    halves = spans_intent([((79, 81), "10.0.2.0/25"), ((80, 82), "10.0.2.128/25")])
    with pytest.raises(LimitError) as info:
        make_plan(adapter, halves, session=session)
    text = str(info.value)
    assert text.startswith("segment a, ingress, IPv4: ")
    assert "2 held now, 2 at the end, 4 at the peak" in text
    # The last pair could run (nothing comes after it), the first could not.
    assert "only 1 of the 2 removal/addition pairs" in text
    assert "ns/p79 (1), ns/p80 (1)" in text and "ns/p80 rule 0 peer 1" in text
    assert "nothing was applied" in text
    assert ec2.writes() == 0


def test_ipv6_rules_count_against_the_quota_apart_from_ipv4(ec2: Ec2) -> None:
    top = aws_topology(ec2, 2)
    adapter = configure(top)
    # Two IPv4 and two IPv6 rules in one side: each family holds 2, the limit is 2.
    intent = spans_intent(
        [
            ((80, 80), "10.0.2.0/24"),
            ((81, 81), "10.0.2.0/24"),
            ((80, 80), "2001:db8::/64"),
            ((81, 81), "2001:db8::/64"),
        ]
    )
    desired, _ = adapter.desired(intent, Snapshot(offline=True))
    assert sum(1 for r in desired if r.direction == "ingress" and r.segment == "a") == 4
    assert make_plan(adapter, intent).plan.count(Op.ADD) > 0  # offline: no quota refused
    three = spans_intent([((p, p), "2001:db8::/64") for p in (80, 81, 82)])
    with pytest.raises(LimitError) as info:
        make_plan(adapter, three)
    assert "segment a needs 3 ingress rules in its security group (IPv6)" in str(info.value)


def test_gcp_at_its_firewall_quota_replacing_most_rules_stays_within_it_and_open() -> None:
    # The project takes 60 firewall rules (the stand-in refuses a 61st) and gcp.maxRules
    # says so. a: 54 allow rules (a port each) and a deny in, one allow out; b and c: an
    # allow each way. 50 ports change: rewritten in place, under the old rules' names.
    top = with_gcp(topology(), maxRules=60)
    with (
        FakeCompute(firewall_quota=60) as fake,
        recording_proxy(fake.endpoint, lambda m, _: m in ("POST", "PUT", "PATCH", "DELETE")) as (
            state,
            url,
        ),
    ):
        recorded = compute_v1.FirewallsClient(
            client_options=ClientOptions(api_endpoint=url),
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            transport="rest",
        )
        services: dict[str, Any] = recorded._transport._extended_operations_services
        services["global_operations"] = make_operations_client(fake)
        plain = make_client(fake)
        adapter = configure(top)
        session = adapter.session(firewalls_client=recorded, retry=FAST_RETRY)
        first = list(range(1, 55))
        apply(adapter, ports_intent(first), session)
        assert len(fake.firewalls(PROJECT)) == 60

        after = first[:4] + list(range(1001, 1051))
        checks = probes([*first, *after])

        def allowed() -> set[Probe]:
            fws = Firewalls.read(plain, PROJECT, NETWORK, top, {NODE_TAG})
            return {p for p in checks if fws.allows(*p)}

        moments: list[tuple[int, set[Probe]]] = []
        before = allowed()
        planned = make_plan(adapter, ports_intent(after), session=session)
        fake.clear_calls()
        state.after = lambda: moments.append((len(fake.firewalls(PROJECT)), allowed()))
        try:
            apply_plan(adapter, planned, session, progress=lambda _: None)
        finally:
            state.after = lambda: None
        end = allowed()

        assert end == set(probes(after))
        assert len(moments) == 50 and all(n <= 60 for n, _ in moments)
        assert all(method == "PUT" for method, _ in fake.writes())
        for i, (_, now) in enumerate(moments):
            assert before & end <= now, f"write {i + 1} blocked {sorted(before & end - now)}"
        assert make_plan(adapter, ports_intent(after), session=session).plan.empty


def test_azure_nsg_at_1000_rules_replacing_most_stays_within_it_and_open() -> None:
    # NSG a holds Azure's 1000 rules: two -unsegmented, a's two -default, 996 allows (a
    # port each). Each changed port is rewritten in place under an old rule's name and
    # priority (the stand-in refuses a 1001st rule, and two rules on one priority).
    fake = FakeArm()
    writes: list[int] = []

    class State:
        after: Callable[[int], None] = writes.append

    state = State()

    class Recording(ArmTransport):
        def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
            reply = super().send(request, **kwargs)
            if request.method in ("PUT", "PATCH", "DELETE", "POST"):
                nsg = fake.get_nsg(SUB, RG, "nsgsync-safe-a") or {}
                state.after(len((nsg.get("properties") or {}).get("securityRules") or []))
            return reply

    recorded = NetworkManagementClient(
        FakeCredential(),
        SUB,
        base_url=FAKE_ARM_URL,
        transport=Recording(fake),
        retry_total=0,
        polling_interval=0,
    )
    plain = make_arm_client(fake, SUB)
    top = AzureArm(fake, plain).with_azure(topology())
    adapter = configure(top)
    session = adapter.session(network_client=recorded)
    first = list(range(1, 997))
    apply(adapter, ports_intent(first), session)
    assert len(list(plain.security_rules.list(RG, "nsgsync-safe-a"))) == 1000
    # 700 ports change; the probes sample ports kept, gone and new (reading 1000 rules
    # after each of 700 writes would take minutes: the count is checked at every write).
    after = first[:296] + list(range(2001, 2701))
    kept, gone, new = [1, 150, 296], [297, 600, 996], [2001, 2350, 2700]
    checks = probes([*kept, *gone, *new])

    def allowed() -> set[Probe]:
        nsgs = Nsgs.read(plain, RG, VNET, VNET_CIDRS)
        return {p for p in checks if nsgs.allows(*p)}

    assert allowed() == set(probes([*kept, *gone]))
    planned = make_plan(adapter, ports_intent(after), session=session)
    writes.clear()
    seen: list[set[Probe]] = []

    def every_50th(count: int) -> None:
        writes.append(count)
        if len(writes) % 50 == 1:
            seen.append(allowed())

    state.after = every_50th
    apply_plan(adapter, planned, session, progress=lambda _: None)
    state.after = writes.append
    assert allowed() == set(probes([*kept, *new]))
    assert len(writes) == 700 and max(writes) == 1000
    assert len(seen) == 14 and all(set(probes(kept)) <= now for now in seen)
    assert make_plan(adapter, ports_intent(after), session=session).plan.empty
