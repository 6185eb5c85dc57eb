"""The GCP adapter end to end: the real FirewallsClient against the compute stand-in."""

# ExtendedOperation.result() is untyped in google-api-core.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.cloud import compute_v1

from nsgsync.compile import compile_intent
from nsgsync.engine import apply_plan, make_plan
from nsgsync.errors import ConcurrentChangeError, LimitError, ProviderError
from nsgsync.intent import Intent
from nsgsync.model import Inventory, Topology
from nsgsync.plan import Op, Plan
from nsgsync.provider import configure
from nsgsync.sources import load_manifests, load_topology
from nsgsync.sources.files import Document, parse_policy
from nsgsync_gcp.config import load_config
from nsgsync_gcp.render import render
from tests.cycle import CASES, EXAMPLE, PORTS, mismatches, policy_change, probe_addresses
from tests.fakes.gcp_compute import ApiError, FakeCompute, make_client
from tests.gcp.conftest import (
    FAST_RETRY,
    NETWORK,
    NODE_TAG,
    PROJECT,
    Gcp,
    seed_gke_and_user_rules,
    with_gcp,
)
from tests.gcp.evaluate import Firewalls

FIREWALLS = f"/compute/v1/projects/{PROJECT}/global/firewalls"


def connect(gcp: Gcp, topology: Topology) -> Any:
    provider = configure(topology)
    return provider.session(firewalls_client=gcp.client, retry=FAST_RETRY)


def plan(gcp: Gcp, topology: Topology, intent: Intent) -> Plan:
    provider = configure(topology)
    return make_plan(provider, intent, session=connect(gcp, topology)).plan


def apply(gcp: Gcp, topology: Topology, intent: Intent) -> Plan:
    provider = configure(topology)
    conn = connect(gcp, topology)
    planned = make_plan(provider, intent, session=conn).plan
    apply_plan(provider, planned, conn, progress=lambda _: None)
    return planned


def assert_cloud_matches_intent(gcp: Gcp, topology: Topology, intent: Intent) -> None:
    firewalls = Firewalls.read(gcp.client, PROJECT, NETWORK, topology, {NODE_TAG})
    assert mismatches(firewalls.allows, topology, intent) == []


def load_case(case: Path) -> tuple[Topology, Inventory]:
    return with_gcp(load_topology(case / "topology.yaml")), load_manifests([case / "manifests"])


def example(**gcp: Any) -> tuple[Topology, Intent]:
    topology = with_gcp(load_topology(EXAMPLE / "topology.yaml"), **gcp)
    return topology, compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_full_cycle_per_seed_policy_set(gcp: Gcp, case: Path) -> None:
    topology, inventory = load_case(case)
    unowned = seed_gke_and_user_rules(gcp.fake, topology)
    before = {name: gcp.rules()[name] for name in unowned}
    intent = compile_intent(topology, inventory)
    first = apply(gcp, topology, intent)
    assert first.count(Op.ADD) > 0
    assert first.count(Op.CHANGE) == first.count(Op.DESTROY) == 0
    assert_cloud_matches_intent(gcp, topology, intent)

    gcp.fake.clear_calls()
    again = apply(gcp, topology, intent)
    assert again.empty, [c.key for c in again.changes]
    assert gcp.fake.writes() == []

    change = policy_change(topology, intent, inventory)
    target, intent2 = change.target, change.intent
    step = plan(gcp, topology, intent2)
    assert not step.empty
    assert target.name in {c.resource.segment for c in step.changes}
    assert {c.resource.segment for c in step.changes} <= change.namespace_segments
    assert all(c.resource.type == "firewall" for c in step.changes)
    # Ingress only changed: no egress rule is touched.
    assert all(c.resource.body["direction"] == "INGRESS" for c in step.changes)
    apply(gcp, topology, intent2)
    assert plan(gcp, topology, intent2).empty
    assert_cloud_matches_intent(gcp, topology, intent2)

    after = gcp.rules()
    assert {name: after[name] for name in unowned} == before


def test_rules_read_back_as_rendered(gcp: Gcp) -> None:
    topology, intent = example()
    planned = apply(gcp, topology, intent)
    rules = gcp.rules()
    for r in planned.desired:
        stored = rules[r.key]
        assert stored["network"].endswith(f"projects/{PROJECT}/global/networks/{NETWORK}")
        assert stored["description"].startswith(f"nsgsync:{topology.cluster} {r.segment} ")
        assert stored["targetTags"] == [NODE_TAG]
        assert 100 <= stored["priority"] <= 899
    denies = [rules[r.key] for r in planned.desired if "denied" in r.body]
    assert denies
    assert all(d["priority"] == 899 and d["denied"] == [{"IPProtocol": "all"}] for d in denies)
    allows = [rules[r.key] for r in planned.desired if "allowed" in r.body]
    assert all(a["priority"] == 100 for a in allows)
    # The segment's ranges name where the pods are: destination in, source out.
    db = [rules[r.key] for r in planned.desired if r.segment == "shop-db"]
    assert all(
        (fw["destinationRanges"] if fw["direction"] == "INGRESS" else fw["sourceRanges"])
        == ["10.0.3.0/24"]
        for fw in db
    )


def test_unowned_rules_survive_and_drift_is_reverted(gcp: Gcp) -> None:
    gcp.fake.async_operations = True  # operations answer RUNNING: the SDK polls them
    topology, intent = example()
    unowned = seed_gke_and_user_rules(gcp.fake, topology)
    before = {name: gcp.rules()[name] for name in unowned}
    planned = apply(gcp, topology, intent)
    assert any("/global/operations/" in path for _, path in gcp.fake.reads())
    db = [r for r in planned.desired if r.segment == "shop-db" and r.body["direction"] == "INGRESS"]
    allow = next(r.key for r in db if "allowed" in r.body)
    deny = next(r.key for r in db if "denied" in r.body)

    # By hand: someone opens the database to the world, disables its deny rule, and adds
    # a rule carrying nsgsync's marker that nsgsync does not want.
    client = gcp.client
    wide = compute_v1.Firewall(source_ranges=["0.0.0.0/0"], source_tags=["bastion"])
    client.patch(project=PROJECT, firewall=allow, firewall_resource=wide).result(timeout=10)
    off = compute_v1.Firewall(disabled=True)
    client.patch(project=PROJECT, firewall=deny, firewall_resource=off).result(timeout=10)
    stray = f"nsgsync-{topology.cluster}-shop-db-i-0000000000"
    gcp.fake.seed_firewall(
        PROJECT,
        {
            "name": stray,
            "network": f"projects/{PROJECT}/global/networks/{NETWORK}",
            "priority": 100,
            "direction": "INGRESS",
            "sourceRanges": ["0.0.0.0/0"],
            "destinationRanges": ["10.0.3.0/24"],
            "targetTags": [NODE_TAG],
            "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}],
            "description": f"nsgsync:{topology.cluster} shop-db ingress: by hand",
        },
    )
    drift = plan(gcp, topology, intent)
    assert sorted((c.op, c.key) for c in drift.changes) == sorted(
        [(Op.CHANGE, allow), (Op.CHANGE, deny), (Op.DESTROY, stray)]
    )
    apply(gcp, topology, intent)
    assert plan(gcp, topology, intent).empty
    assert_cloud_matches_intent(gcp, topology, intent)
    rules = gcp.rules()
    assert stray not in rules
    assert "sourceTags" not in rules[allow]
    assert rules[deny]["disabled"] is False
    assert {name: rules[name] for name in unowned} == before


def test_a_name_held_by_an_unowned_rule_stops_the_plan(gcp: Gcp) -> None:
    topology, intent = example()
    planned = apply(gcp, topology, intent)
    name = planned.desired[0].key
    # Someone moves one of nsgsync's rules below GKE's by hand: it is no longer nsgsync's.
    moved = compute_v1.Firewall(priority=1500)
    gcp.client.patch(project=PROJECT, firewall=name, firewall_resource=moved).result(timeout=10)
    gcp.fake.clear_calls()
    with pytest.raises(ProviderError) as info:
        plan(gcp, topology, intent)
    assert name in str(info.value)
    assert "outside gcp.priorityBand [100, 899]" in str(info.value)
    assert gcp.fake.writes() == []


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_is_retried(gcp: Gcp, status: int) -> None:
    topology, intent = example()
    provider = configure(topology)
    conn = connect(gcp, topology)
    gcp.fake.throttle(2, status=status)  # the list is refused twice, then answered
    made = make_plan(provider, intent, session=conn)
    planned = made.plan
    assert gcp.fake.reads() == [("GET", FIREWALLS)] * 3

    gcp.fake.clear_calls()
    # The first insert is refused twice (the re-read of what it touches, before it, is not).
    gcp.fake.throttle(2, status=status, writes_only=True)
    apply_plan(provider, made, conn, progress=lambda _: None)
    writes = gcp.fake.writes()
    assert writes[:3] == [("POST", FIREWALLS)] * 3
    sent = [r.body["name"] for r in gcp.fake.requests if r.body]
    assert sent[:3] == [planned.changes[0].key] * 3
    assert len(writes) == planned.count(Op.ADD) + 2
    assert plan(gcp, topology, intent).empty
    assert_cloud_matches_intent(gcp, topology, intent)


def test_midway_failure_converges_on_next_apply(gcp: Gcp) -> None:
    topology, intent = example()
    provider = configure(topology)
    conn = connect(gcp, topology)
    planned = make_plan(provider, intent, session=conn).plan
    gcp.fake.fail_writes_after(3)
    with pytest.raises(ProviderError) as info:
        apply_plan(provider, planned, conn, progress=lambda _: None)
    assert "creating firewall rule nsgsync-" in str(info.value)
    gcp.fake.clear_faults()
    partial = plan(gcp, topology, intent)
    assert partial.count(Op.ADD) == planned.count(Op.ADD) - 3
    apply(gcp, topology, intent)
    assert plan(gcp, topology, intent).empty
    assert_cloud_matches_intent(gcp, topology, intent)


def test_allows_land_before_denies(gcp: Gcp) -> None:
    topology, intent = example()
    apply(gcp, topology, intent)
    inserted = [r.body for r in gcp.fake.requests if r.method == "POST" and r.body]
    first_deny = next(i for i, body in enumerate(inserted) if body.get("denied"))
    assert all(body.get("allowed") for body in inserted[:first_deny])
    assert all(body.get("denied") for body in inserted[first_deny:])


def test_rule_quota_fails_the_plan_naming_count_and_limit(gcp: Gcp) -> None:
    topology, intent = example(maxRules=3)
    with pytest.raises(LimitError) as info:
        plan(gcp, topology, intent)
    text = str(info.value)
    assert "over the limit of 3 (gcp.maxRules)" in text
    rules = render(intent, topology, *load_config(topology))[0]
    assert f"needs {len(rules)} firewall rules" in text
    assert gcp.fake.writes() == []


def test_project_quota_reached_midway_is_a_provider_error(gcp: Gcp) -> None:
    topology, intent = example()
    gcp.fake.firewall_quota = 4
    with pytest.raises(ProviderError) as info:
        apply(gcp, topology, intent)
    assert "quota" in str(info.value)
    assert len(gcp.rules()) == 4
    gcp.fake.firewall_quota = None
    apply(gcp, topology, intent)
    assert plan(gcp, topology, intent).empty


def test_dual_stack_rules_keep_one_family_each(gcp: Gcp) -> None:
    raw = load_topology(EXAMPLE / "topology.yaml")
    six = {"shop-frontend": "fd00:0:0:1::/64", "shop-db": "fd00:0:0:3::/64"}
    segments = [
        s.model_copy(update={"cidrs": [*s.cidrs, six[s.name]]}) if s.name in six else s
        for s in raw.segments
    ]
    topology = with_gcp(
        Topology.model_validate(
            {
                **raw.model_dump(by_alias=True, exclude_none=True),
                "podCIDRs": [*raw.pod_cidrs, "fd00::/48"],
                "segments": [s.model_dump(by_alias=True, exclude_none=True) for s in segments],
            }
        )
    )
    intent = compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))
    apply(gcp, topology, intent)
    for fw in gcp.rules().values():
        families = {":" in c for c in fw.get("sourceRanges", []) + fw.get("destinationRanges", [])}
        assert len(families) == 1, fw["name"]
    assert any(":" in c for fw in gcp.rules().values() for c in fw.get("destinationRanges", []))
    assert plan(gcp, topology, intent).empty
    assert_cloud_matches_intent(gcp, topology, intent)


def test_connect_without_credentials_is_a_provider_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    topology, intent = example()
    provider = configure(topology)
    with pytest.raises(ProviderError) as info:
        provider.session()
    assert "--offline" in str(info.value)
    # Offline needs no credentials at all.
    offline = make_plan(provider, intent).plan
    assert offline.count(Op.ADD) == len(offline.desired) > 0


class ThrottledPolls(FakeCompute):
    """Answers the first polls of operations with 429, as a busy project does."""

    def __init__(self, polls: int) -> None:
        super().__init__(async_operations=True)
        self.polls_left = polls

    def _poll(self, project: str, name: str) -> dict[str, Any]:
        if self.polls_left > 0:
            self.polls_left -= 1
            raise ApiError(429, "Rate Limit Exceeded", "rateLimitExceeded")
        return super()._poll(project, name)


def test_throttled_operation_polls_are_retried() -> None:
    with ThrottledPolls(2) as fake:
        gcp = Gcp(fake, make_client(fake))
        topology, intent = example()
        planned = apply(gcp, topology, intent)
        polls = [path for _, path in fake.reads() if "/global/operations/" in path]
        assert len(polls) == planned.count(Op.ADD) + 2
        assert plan(gcp, topology, intent).empty


def policy(namespace: str, name: str, spec: dict[str, Any]) -> Any:
    doc = {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace}}
    return parse_policy(Document("<test>", 1, {**doc, "spec": spec}))


def test_no_moment_of_an_apply_blocks_what_both_intents_allow(gcp: Gcp) -> None:
    topology, _ = example()
    seed_gke_and_user_rules(gcp.fake, topology)
    base = load_manifests([EXAMPLE / "cluster"])
    # monitoring goes from open to isolated (a new allow, the allow-all narrowed, a deny),
    # and back; shop-db's allow from the backend gains a peer, and loses it again.
    extra = [
        policy(
            "monitoring",
            "isolate",
            {
                "podSelector": {},
                "ingress": [
                    {"from": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [{"port": 443}]}
                ],
            },
        ),
        policy(
            "shop",
            "db-from-monitoring",
            {
                "podSelector": {"matchLabels": {"tier": "db"}},
                "ingress": [
                    {
                        "from": [{"ipBlock": {"cidr": "10.0.8.0/24"}}],
                        "ports": [{"port": 5432}],
                    }
                ],
            },
        ),
    ]
    plain = compile_intent(topology, base)
    more = compile_intent(
        topology, Inventory.build([*base.policies, *extra], base.namespaces, base.pods)
    )
    apply(gcp, topology, plain)
    addresses = [*probe_addresses(topology), "192.0.2.1"]
    ports = [*PORTS, ("TCP", 443)]

    def both_allow(old: Intent, new: Intent) -> list[tuple[str, str, str, int]]:
        return [
            (src, dst, proto, port)
            for src in addresses
            for dst in addresses
            for proto, port in ports
            if src != dst
            and old.allows(src, dst, proto, port)
            and new.allows(src, dst, proto, port)
        ]

    def blocked(wanted: list[tuple[str, str, str, int]]) -> list[tuple[str, str, str, int]]:
        """Of the connections both intents allow, those the cloud right now does not."""
        cloud = Firewalls.read(gcp.client, PROJECT, NETWORK, topology, {NODE_TAG})
        return [t for t in wanted if not cloud.allows(*t)]

    def transition(old: Intent, new: Intent) -> None:
        wanted = both_allow(old, new)
        moments: list[list[tuple[str, str, str, int]]] = []
        provider = configure(topology)
        conn = connect(gcp, topology)
        step = make_plan(provider, new, session=conn).plan
        assert {c.op for c in step.changes} >= {Op.CHANGE}
        # progress is called before every write: the state each write starts from.
        apply_plan(provider, step, conn, progress=lambda _: moments.append(blocked(wanted)))
        moments.append(blocked(wanted))
        assert len(moments) > 3
        assert all(m == [] for m in moments), moments
        assert plan(gcp, topology, new).empty
        assert_cloud_matches_intent(gcp, topology, new)

    transition(plain, more)
    transition(more, plain)


def test_a_rule_deleted_by_hand_after_the_plan_stops_the_apply_before_it(gcp: Gcp) -> None:
    topology, intent = example()
    apply(gcp, topology, intent)
    provider = configure(topology)
    conn = connect(gcp, topology)
    planned = make_plan(provider, Intent(cluster=topology.cluster, segments=()), session=conn)
    names = sorted(fw["name"] for fw in gcp.fake.firewalls(PROJECT))
    # Between the plan and its apply, a person deletes one of the rules it removes.
    gcp.client.delete(project=PROJECT, firewall=names[0]).result()
    gcp.fake.clear_calls()
    with pytest.raises(ConcurrentChangeError) as stopped:
        apply_plan(provider, planned, conn, progress=lambda _: None)
    assert f"firewall {names[0]}" in str(stopped.value)
    assert "is gone, but existed when the plan was made" in str(stopped.value)
    assert not gcp.fake.writes()  # it stopped before its first write
    assert sorted(fw["name"] for fw in gcp.fake.firewalls(PROJECT)) == names[1:]
    apply(gcp, topology, Intent(cluster=topology.cluster, segments=()))  # planned again
    assert not gcp.fake.firewalls(PROJECT)
