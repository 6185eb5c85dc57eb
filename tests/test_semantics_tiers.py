"""The ordered-policy walk (nsgsync.semantics.tiered_verdict) on its own terms.

NetworkPolicy v1 lowered into one isolating stage must give the same verdict as the v1
reference, connection by connection; and the walk's order rules (first match decides,
Pass skips a stage, an uncertain match keeps both outcomes) hold on small hand-made cases.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from nsgsync.model import LabelSelector, PodInfo, PolicyType, Protocol
from nsgsync.model.tiers import Action, End, Net, Pipeline, Pods, PortRange, Stage, TPolicy, TRule
from nsgsync.semantics import Endpoint, network_policy_stage, tiered_verdict, verdict
from tests.scenarios import EXTERNAL_IPS, PROBE_PORTS, Scenario, scenarios


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_network_policy_lowered_walks_like_the_v1_reference(s: Scenario) -> None:
    pipeline = Pipeline((network_policy_stage(s.inventory.policies),))
    ends = [Endpoint(p.ip or "", p) for p in s.pods] + [Endpoint(ip) for ip in EXTERNAL_IPS]
    for a in ends:
        for b in ends:
            if a.ip == b.ip:
                continue
            for proto in (Protocol.TCP, Protocol.UDP):
                for port in PROBE_PORTS:
                    v1 = verdict(a, b, proto, port, s.inventory.policies, s.inventory.namespaces)
                    walked = tiered_verdict(a, b, proto, port, pipeline, s.inventory.namespaces)
                    assert walked.allowed == v1.allowed, (a, b, proto, port, v1, walked)
                    assert walked.egress.certain and walked.ingress.certain


WEB = PodInfo(namespace="shop", name="web", labels={"app": "web"}, ip="10.0.0.1")
DB = PodInfo(namespace="shop", name="db", labels={"app": "db"}, ip="10.0.0.2")
NAMESPACES = {"shop": {"kubernetes.io/metadata.name": "shop"}}


def _admin(ref: str, *rules: TRule) -> TPolicy:
    return TPolicy("test", ref, "", Pods(), frozenset(PolicyType), rules)


def _db_ingress(pipeline: Pipeline, port: int = 5432) -> tuple[bool, frozenset[Action], str]:
    v = tiered_verdict(
        Endpoint(WEB.ip or "", WEB),
        Endpoint(DB.ip or "", DB),
        Protocol.TCP,
        port,
        pipeline,
        NAMESPACES,
    )
    return v.ingress.allowed, v.ingress.outcomes, " → ".join(s.describe() for s in v.ingress.steps)


def _isolating_db() -> Stage:
    only_db = TPolicy(
        "NetworkPolicy",
        "shop/db",
        "",
        Pods("shop", pod_selector=LabelSelector(match_labels={"app": "db"})),
        frozenset({PolicyType.INGRESS}),
        (),
    )
    return Stage("NetworkPolicy", (only_db,), End.DENY_IF_SELECTED)


def test_first_match_decides_and_pass_skips_to_the_next_stage() -> None:
    deny = TRule(Action.DENY, PolicyType.INGRESS, 0)
    allow = TRule(Action.ALLOW, PolicyType.INGRESS, 1)
    passing = TRule(Action.PASS, PolicyType.INGRESS, 0)
    admin = Stage("Admin", (_admin("a", deny, allow),), End.NEXT)
    assert _db_ingress(Pipeline((admin,)))[:2] == (False, frozenset({Action.DENY}))
    # Pass jumps over the Admin stage's later Deny into the isolating stage, which denies.
    admin = Stage("Admin", (_admin("a", passing, deny),), End.NEXT)
    allowed, _, steps = _db_ingress(Pipeline((admin, _isolating_db())))
    assert not allowed
    assert steps == "[Admin] Pass by a rule 0 → [NetworkPolicy] Deny (selected, no rule allowed it)"
    # Without the isolating stage the connection falls through to the default allow.
    assert _db_ingress(Pipeline((admin,)))[0]


def test_an_uncertain_deny_keeps_the_allow_possible_and_a_certain_one_does_not() -> None:
    fqdn_deny = TRule(Action.DENY, PolicyType.INGRESS, 0, unmodeled="toFQDNs")
    admin = Stage("Admin", (_admin("a", fqdn_deny),), End.NEXT)
    allowed, outcomes, _ = _db_ingress(Pipeline((admin,)))
    assert allowed and outcomes == {Action.ALLOW, Action.DENY}
    port_deny = TRule(
        Action.DENY, PolicyType.INGRESS, 0, ports=(PortRange(Protocol.TCP, 5432, 5432),)
    )
    admin = Stage("Admin", (_admin("a", port_deny),), End.NEXT)
    assert not _db_ingress(Pipeline((admin,)))[0]
    assert _db_ingress(Pipeline((admin,)), port=80)[0]


def test_not_peers_exclude_and_networks_match_addresses() -> None:
    allow_but_web = TRule(Action.ALLOW, PolicyType.INGRESS, 0, not_peers=(Net("10.0.0.1/32"),))
    stage = Stage("tier default", (_admin("a", allow_but_web),), End.DENY_IF_SELECTED)
    assert not _db_ingress(Pipeline((stage,)))[0]
    allow_net = TRule(
        Action.ALLOW, PolicyType.INGRESS, 0, peers=(Net("10.0.0.0/24", ("10.0.0.2/32",)),)
    )
    stage = Stage("tier default", (_admin("a", allow_net),), End.DENY_IF_SELECTED)
    assert _db_ingress(Pipeline((stage,)))[0]
