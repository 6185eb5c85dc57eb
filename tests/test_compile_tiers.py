"""The compiler over ordered policies, on small clusters a user would recognise.

Admin tiers lowered into the ordered model (nsgsync.model.tiers) beside NetworkPolicies:
what the Intent allows, and the findings where it has to allow more than the cluster.
"""

from __future__ import annotations

from typing import Any

import pytest

from nsgsync.compile import compile_intent
from nsgsync.errors import InputError
from nsgsync.explain import explain, render
from nsgsync.intent import Intent
from nsgsync.model import Inventory, LabelSelector, PodInfo, PolicyType, Protocol
from nsgsync.model.tiers import Action, Net, Pods, PortRange, TPolicy, TRule
from nsgsync.sources.files import Document, parse_policy, topology_from_mapping

BOTH = frozenset({PolicyType.INGRESS, PolicyType.EGRESS})
INGRESS = PolicyType.INGRESS


def _topology(**extra: Any) -> Any:
    return topology_from_mapping(
        {
            "apiVersion": "nsgsync.io/v1alpha1",
            "kind": "Topology",
            "cluster": "tiers",
            "provider": "aws",
            "podCIDRs": ["10.0.0.0/16"],
            "nodeCIDRs": ["10.1.0.0/24"],
            "segments": [
                {"name": "shop", "namespace": "shop", "cidrs": ["10.0.1.0/24"]},
                {"name": "tools", "namespace": "tools", "cidrs": ["10.0.2.0/24"]},
            ],
            **extra,
        }
    )


def _pods(*labels: dict[str, str]) -> list[PodInfo]:
    return [PodInfo(namespace="shop", name=f"p{i}", labels=lab) for i, lab in enumerate(labels)]


def _admin(
    ref: str, *rules: TRule, subject: Pods | None = None, priority: int = 10, **kw: Any
) -> TPolicy:
    return TPolicy(
        kw.get("dialect", "AdminNetworkPolicy"),
        ref,
        "anp.yaml:1",
        subject or Pods(namespace="shop"),
        frozenset({r.direction for r in rules}),
        rules,
        stage=kw.get("stage", "Admin"),
        order=(priority,),
    )


def _compile(*ordered: TPolicy, pods: list[PodInfo] | None = None, **topo: Any) -> Intent:
    inventory = Inventory.build(
        [],
        {"shop": {}, "tools": {}},
        pods if pods is not None else _pods({"app": "web"}),
        namespaces_complete=True,
        ordered=ordered,
    )
    return compile_intent(_topology(**topo), inventory)


def _codes(intent: Intent) -> set[str]:
    return {f.code.value for f in intent.findings}


FROM_TOOLS = (Pods(namespace="tools"),)


def test_an_admin_deny_isolates_what_no_networkpolicy_touches() -> None:
    intent = _compile(_admin("deny-tools", TRule(Action.DENY, INGRESS, 0, peers=FROM_TOOLS)))
    shop = intent.segment("shop")
    assert shop.ingress.isolated
    assert not intent.allows("10.0.2.5", "10.0.1.5", "TCP", 80)
    assert intent.allows("192.0.2.1", "10.0.1.5", "TCP", 80)
    assert intent.allows("10.1.0.7", "10.0.1.5", "TCP", 80)  # the nodes, as always
    assert not intent.segment("tools").egress.isolated  # egress: nothing selects it
    assert "deny-partial" not in _codes(intent)


def test_admin_pass_hands_over_to_networkpolicy_and_baseline() -> None:
    web_only = parse_policy(
        Document(
            "np.yaml",
            1,
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {
                    "podSelector": {},
                    "ingress": [{"ports": [{"protocol": "TCP", "port": 80}]}],
                },
            },
        )
    )
    passing = _admin("pass-tools", TRule(Action.PASS, INGRESS, 0, peers=FROM_TOOLS))
    deny_all = _admin("deny-all", TRule(Action.DENY, INGRESS, 1), priority=20)
    inventory = Inventory.build(
        [web_only],
        {"shop": {}, "tools": {}},
        _pods({"app": "web"}),
        namespaces_complete=True,
        ordered=(passing, deny_all),
    )
    intent = compile_intent(_topology(), inventory)
    # tools passes to the NetworkPolicy, which allows port 80; everything else is denied.
    assert intent.allows("10.0.2.5", "10.0.1.5", "TCP", 80)
    assert not intent.allows("10.0.2.5", "10.0.1.5", "TCP", 81)
    assert not intent.allows("192.0.2.1", "10.0.1.5", "TCP", 80)


def test_deny_of_some_pods_of_a_segment_is_not_relied_on() -> None:
    deny = _admin(
        "deny-web",
        TRule(Action.DENY, INGRESS, 0, peers=FROM_TOOLS),
        subject=Pods(namespace="shop", pod_selector=LabelSelector(matchLabels={"app": "web"})),
    )
    intent = _compile(deny, pods=_pods({"app": "web"}, {"app": "db"}))
    assert intent.allows("10.0.2.5", "10.0.1.5", "TCP", 80)
    partial = [f for f in intent.findings if f.code == "deny-partial"]
    assert len(partial) == 1 and partial[0].policy == "deny-web"
    assert "ingress rule 0 (Deny)" in partial[0].message


def test_denying_some_ports_widens_portless_protocols() -> None:
    deny = _admin(
        "no-ssh",
        TRule(Action.DENY, INGRESS, 0, peers=FROM_TOOLS, ports=(PortRange(Protocol.TCP, 22, 22),)),
    )
    intent = _compile(deny)
    widened = [f for f in intent.findings if f.code == "protocols-widened"]
    assert [f.segment for f in widened] == ["shop"]
    # Sound: ICMP from tools must pass, and the Intent can only say that as ANY.
    assert intent.allows("10.0.2.5", "10.0.1.5", "UDP", 53)


def test_an_engine_that_does_not_enforce_a_dialect_reports_it() -> None:
    deny = _admin("deny-tools", TRule(Action.DENY, INGRESS, 0, peers=FROM_TOOLS))
    intent = _compile(deny, policyEngine="cilium")
    assert "dialect-not-enforced" in _codes(intent)
    assert not intent.segment("shop").ingress.isolated


def test_equal_priorities_are_compiled_for_either_order() -> None:
    allow = _admin("a-allow", TRule(Action.ALLOW, INGRESS, 0, peers=FROM_TOOLS), priority=5)
    deny = _admin("b-deny", TRule(Action.DENY, INGRESS, 0), priority=5)
    intent = _compile(allow, deny)
    ties = [f for f in intent.findings if f.code == "admin-priority-tie"]
    assert len(ties) == 1 and "a-allow" in ties[0].message and "b-deny" in ties[0].message
    assert intent.allows("10.0.2.5", "10.0.1.5", "TCP", 80)  # the allow may come first
    assert not intent.allows("192.0.2.1", "10.0.1.5", "TCP", 80)


def test_calico_and_cilium_kinds_together_need_a_policy_engine() -> None:
    calico = _admin("c", TRule(Action.DENY, INGRESS, 0), dialect="Calico", stage="default")
    cilium = _admin("d", TRule(Action.DENY, INGRESS, 0), dialect="Cilium", stage="Cilium")
    with pytest.raises(InputError, match="policyEngine") as caught:
        _compile(calico, cilium)
    assert "Calico" in str(caught.value) and "Cilium" in str(caught.value)
    assert _compile(calico, cilium, policyEngine="calico").segment("shop").ingress.isolated


def test_baseline_deny_applies_only_where_networkpolicy_does_not_isolate() -> None:
    baseline = _admin(
        "default",
        TRule(Action.DENY, INGRESS, 0, peers=(Net("0.0.0.0/0"),)),
        dialect="BaselineAdminNetworkPolicy",
        stage="Baseline",
    )
    intent = _compile(baseline)
    assert not intent.allows("192.0.2.1", "10.0.1.5", "TCP", 80)
    assert intent.allows("10.1.0.3", "10.0.1.5", "TCP", 80)


@pytest.mark.parametrize(
    ("dialect", "stage", "engine", "shown"),
    [
        ("AdminNetworkPolicy", "Admin", "kubernetes", "[Admin] Deny by deny-tools rule 0"),
        ("Calico", "security", "calico", "[tier security] Deny by deny-tools rule 0"),
        ("Cilium", "Cilium", "cilium", "[Cilium] Deny by deny-tools rule 0"),
    ],
)
def test_explain_walks_the_tiers_of_each_engine(
    dialect: str, stage: str, engine: str, shown: str
) -> None:
    deny = _admin(
        "deny-tools",
        TRule(Action.DENY, INGRESS, 0, peers=FROM_TOOLS),
        dialect=dialect,
        stage=stage,
    )
    pods = [
        PodInfo(namespace="shop", name="web", labels={"app": "web"}, ip="10.0.1.5"),
        PodInfo(namespace="tools", name="cli", labels={}, ip="10.0.2.5"),
    ]
    inventory = Inventory.build(
        [], {"shop": {}, "tools": {}}, pods, namespaces_complete=True, ordered=(deny,)
    )
    topology = _topology()
    intent = compile_intent(topology, inventory)
    found = explain(intent, topology, inventory, src="tools/cli", dst="shop/web", port="80")
    text = render(found)
    assert f"Kubernetes (policyEngine {engine}): DENIED" in text
    assert shown in text
    assert found.verdict == "denied"
