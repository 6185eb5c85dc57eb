"""Calico's policies: the selector language, validation, and the lowering into ordered stages
checked connection by connection against a literal reading of Calico's documented semantics.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsgsync.errors import InputError
from nsgsync.model import Inventory, NetworkPolicy, PodInfo, PolicyType, Protocol
from nsgsync.model.calico_selector import Endpoint as Labels
from nsgsync.model.calico_selector import SelectorError, parse_selector
from nsgsync.model.tiers import Action, Pipeline
from nsgsync.semantics import Endpoint, calico_stages, tiered_verdict
from nsgsync.sources.files import load_manifests
from tests.scenarios import EXTERNAL_IPS, NAMESPACES, PROBE_PORTS, Scenario, scenarios

# --- the selector language -------------------------------------------------------------

LABELS = {"app": "web", "tier": "front", "team.io/owner": "x-y", "empty": ""}

SELECTOR_TABLE: list[tuple[str, bool]] = [
    ("", True),
    ("all()", True),
    ("global()", False),
    ('app == "web"', True),
    ("app == 'db'", False),
    ('app != "db"', True),
    ('missing != "x"', True),  # an absent label is != anything
    ('missing == ""', False),
    ('empty == ""', True),
    ('app in {"db", "web"}', True),
    ("app in {}", False),
    ('app not in {"db"}', True),
    ('missing not in {"a"}', True),
    ('missing in {"a"}', False),
    ("has(tier)", True),
    ("!has(tier)", False),
    ("has( tier )", True),
    ("!!has(tier)", True),
    ("has(missing)", False),
    ('app contains "e"', True),
    ('app starts with "we"', True),
    ('app ends with "eb"', True),
    ('app ends with "we"', False),
    ('missing contains ""', False),
    ('team.io/owner == "x-y"', True),
    ('app == "web" && tier == "back"', False),
    ('app == "db" || tier == "front"', True),
    ('app == "db" || tier == "front" && has(missing)', False),  # && binds tighter
    ('(app == "db" || tier == "front") && has(app)', True),
    ('!(app == "db" || tier == "back")', True),
    ("all() && !global()", True),
    ("app\tin\t{'web'}", True),
]


@pytest.mark.parametrize(("text", "expected"), SELECTOR_TABLE)
def test_selector_table(text: str, expected: bool) -> None:
    assert parse_selector(text).evaluate(Labels(LABELS)) is expected
    # What it prints parses back to the same expression.
    again = parse_selector(str(parse_selector(text)))
    assert again.evaluate(Labels(LABELS)) is expected


def test_selector_global_holds_for_endpoints_outside_namespaces() -> None:
    assert parse_selector("global()").evaluate(Labels({}, is_global=True)) is True


def test_selector_unknown_labels_give_no_answer() -> None:
    labels = Labels({"app": "web"}, unknown=lambda k: k.startswith("pcsa."))
    assert parse_selector('pcsa.team == "x"').evaluate(labels) is None
    assert parse_selector('pcsa.team == "x" || app == "web"').evaluate(labels) is True
    assert parse_selector('pcsa.team == "x" && app == "db"').evaluate(labels) is False
    assert parse_selector("!has(pcsa.team)").evaluate(labels) is None


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ('app = "web"', 5, '"=="'),
        ("app == web", 8, "quoted value"),
        ('app == "web', 8, "unterminated"),
        ("has(", 5, "label name"),
        ("has(app", 8, '")"'),
        ('(app == "a"', 12, '")"'),
        ('app == "a" &', 12, '"&&"'),
        ('app == "a" app', 12, "&&"),
        ("app", 4, "operator"),
        ('app is "a"', 5, "operator"),
        ("app in {'a' 'b'}", 13, '"}"'),
        ("app in 'a'", 8, '"{"'),
        ('app starts "a"', 5, "starts with"),
        ("&& has(a)", 1, "expected a label"),
        ("all(x)", 5, '")"'),
        ('app == "a" #', 12, "unexpected character"),
        ("(" * 101 + "all()" + ")" * 101, 101, "nested"),
    ],
)
def test_selector_errors_name_the_position(text: str, position: int, words: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    assert caught.value.position == position, str(caught.value)
    assert words in str(caught.value)
    assert f"at character {position}" in str(caught.value)


# --- reading manifests -------------------------------------------------------------------


def _write(tmp_path: Path, docs: list[dict[str, Any]]) -> Path:
    path = tmp_path / "calico.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _cnp(name: str, spec: dict[str, Any], ns: str | None = "shop", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy" if ns else "GlobalNetworkPolicy",
        "metadata": {"name": name, **({"namespace": ns} if ns else {}), **meta},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"selector": "app = 'x'"}, "spec.selector", "at character 5"),
        ({"ingress": [{"action": "Accept"}]}, "spec.ingress[0].action", "Allow, Deny, Pass, Log"),
        ({"ingres": []}, "spec.ingres", 'did you mean "ingress"'),
        (
            {"ingress": [{"action": "Allow", "destination": {"ports": [80]}}]},
            "spec.ingress[0].destination.ports",
            "need protocol",
        ),
        (
            {
                "ingress": [
                    {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["9:1"]}}
                ]
            },
            "spec.ingress[0].destination.ports[0]",
            "low first",
        ),
        (
            {"egress": [{"action": "Deny", "destination": {"nets": ["10.0.0.0/33"]}}]},
            "spec.egress[0].destination.nets[0]",
            "not an address",
        ),
        ({"order": "first"}, "spec.order", "must be a number"),
        ({"types": ["Ingres"]}, "spec.types[0]", 'did you mean "Ingress"'),
        (
            {"types": ["Egress"], "ingress": [{"action": "Allow"}]},
            "spec.types",
            "does not include Ingress",
        ),
        ({"ingress": [{"action": "Allow", "protocol": "GRE"}]}, "spec.ingress[0].protocol", "GRE"),
        (
            {"ingress": [{"action": "Allow", "icmp": {"type": 8}}]},
            "spec.ingress[0].icmp",
            "ICMP",
        ),
        (
            {"ingress": [{"action": "Allow", "source": {"namespaceSelector": "has("}}]},
            "spec.ingress[0].source.namespaceSelector",
            "label name",
        ),
        ({"doNotTrack": True}, "spec.doNotTrack", "unknown field"),  # namespaced: no such field
    ],
)
def test_validation_errors_name_file_line_object_and_field(
    tmp_path: Path, spec: dict[str, Any], field: str, words: str
) -> None:
    path = _write(tmp_path, [_cnp("bad", spec)])
    with pytest.raises(InputError) as caught:
        load_manifests([path])
    err = caught.value
    assert "calico.yaml" in (err.file or "")
    assert err.obj == "NetworkPolicy shop/bad"
    assert err.field == field, str(err)
    assert words in str(err)
    assert err.line is not None and err.line > 1


def test_a_policy_in_an_unknown_tier_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, [_cnp("p", {"tier": "security", "selector": "all()"})])
    with pytest.raises(InputError, match="no Tier of that name") as caught:
        load_manifests([path])
    assert caught.value.field == "spec.tier"


def test_both_api_groups_are_read_and_pods_keep_their_service_account(tmp_path: Path) -> None:
    crd = _cnp("p", {"ingress": [{"action": "Allow"}]})
    crd["apiVersion"] = "crd.projectcalico.org/v1"
    gnp = _cnp("g", {"egress": [{"action": "Deny"}]}, ns=None)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"serviceAccountName": "frontend", "containers": []},
    }
    inv = load_manifests([_write(tmp_path, [crd, gnp, pod])])
    assert [(p.ref, p.stage, sorted(p.types)) for p in inv.ordered] == [
        ("g", "tier default", [PolicyType.EGRESS]),
        ("shop/p", "tier default", [PolicyType.INGRESS]),
    ]
    assert inv.pods[0].service_account == "frontend"


# --- what the lowered stages decide -------------------------------------------------------

SHOP = {"kubernetes.io/metadata.name": "shop", "team": "x"}
OPS = {"kubernetes.io/metadata.name": "ops"}
WEB = PodInfo(namespace="shop", name="web", labels={"app": "web"}, ip="10.0.0.1")
DB = PodInfo(namespace="shop", name="db", labels={"app": "db"}, ip="10.0.0.2", service_account="db")
PROM = PodInfo(namespace="ops", name="prom", labels={"app": "prom"}, ip="10.0.9.1")
DNS = PodInfo(namespace="ops", name="dns", labels={"k8s-app": "kube-dns"}, ip="10.0.9.53")


def _pipeline(
    tmp_path: Path, docs: list[dict[str, Any]], knps: tuple[NetworkPolicy, ...] = ()
) -> tuple[Pipeline, Inventory]:
    inv = load_manifests([_write(tmp_path, docs)])
    return Pipeline(calico_stages(knps or inv.policies, inv.ordered)), inv


def _allowed(
    pipeline: Pipeline,
    src: PodInfo | str,
    dst: PodInfo | str,
    port: int,
    proto: Protocol = Protocol.TCP,
) -> frozenset[Action]:
    """The connection's possible outcomes: Allow when both ends may allow it, Deny when
    either may deny it."""
    a = Endpoint(src, None) if isinstance(src, str) else Endpoint(src.ip or "", src)
    b = Endpoint(dst, None) if isinstance(dst, str) else Endpoint(dst.ip or "", dst)
    v = tiered_verdict(a, b, proto, port, pipeline, {"shop": SHOP, "ops": OPS})
    out = {Action.DENY} if Action.DENY in v.egress.outcomes | v.ingress.outcomes else set()
    if v.allowed:
        out.add(Action.ALLOW)
    return frozenset(out)


def test_deny_all_then_allow_dns(tmp_path: Path) -> None:
    """Calico's documented pattern: a default deny in the default tier at a late order, with
    a DNS allow ahead of it; egress elsewhere is denied."""
    docs = [
        _cnp(
            "allow-dns",
            {
                "order": 100,
                "selector": "all()",
                "types": ["Egress"],
                "egress": [
                    {
                        "action": "Allow",
                        "protocol": "UDP",
                        "destination": {
                            "selector": "k8s-app == 'kube-dns'",
                            "namespaceSelector": "projectcalico.org/name == 'ops'",
                            "ports": [53],
                        },
                    }
                ],
            },
            ns=None,
        ),
        _cnp(
            "default-deny",
            {
                "namespaceSelector": "has(projectcalico.org/name) && "
                "projectcalico.org/name not in {'kube-system', 'ops'}",
                "types": ["Ingress", "Egress"],
            },
            ns=None,
        ),
    ]
    pipeline, _ = _pipeline(tmp_path, docs)
    assert _allowed(pipeline, WEB, DNS, 53, Protocol.UDP) == {Action.ALLOW}
    assert _allowed(pipeline, WEB, DNS, 53, Protocol.TCP) == {Action.DENY}
    assert _allowed(pipeline, WEB, "8.8.8.8", 443) == {Action.DENY}
    assert _allowed(pipeline, WEB, DB, 5432) == {Action.DENY}
    # ops is not selected by the deny, but allow-dns selects every pod for egress: the
    # tier denies what it does not allow. Nothing selects prom for ingress.
    assert _allowed(pipeline, PROM, "8.8.8.8", 443) == {Action.DENY}
    assert _allowed(pipeline, "8.8.8.8", PROM, 9090) == {Action.ALLOW}


def test_tiers_pass_and_order(tmp_path: Path) -> None:
    """A security tier ahead of default: Deny wins over a later Allow, Pass hands on to the
    default tier, and a Kubernetes NetworkPolicy there allows what it names."""
    docs = [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Tier",
            "metadata": {"name": "security"},
            "spec": {"order": 100},
        },
        _cnp(
            "security.block-ops",
            {
                "tier": "security",
                "order": 10,
                "selector": "all()",
                "ingress": [
                    {
                        "action": "Deny",
                        "source": {"namespaceSelector": "projectcalico.org/name == 'ops'"},
                    },
                    {"action": "Pass"},
                ],
            },
            ns=None,
        ),
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "db-from-web", "namespace": "shop"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "db"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
            },
        },
        _cnp(
            "allow-prom",
            {
                "order": 2000,
                "ingress": [{"action": "Allow", "source": {"namespaceSelector": "all()"}}],
            },
        ),
    ]
    pipeline, _ = _pipeline(tmp_path, docs)
    assert [s.name for s in pipeline.stages if s.policies] == ["tier security", "tier default"]
    assert _allowed(pipeline, WEB, DB, 5432) == {Action.ALLOW}
    # ops is denied in the security tier, before allow-prom could allow it.
    assert _allowed(pipeline, PROM, DB, 9090) == {Action.DENY}
    # From outside: passed, then no default-tier rule allows it: the tier denies.
    assert _allowed(pipeline, "8.8.8.8", DB, 5432) == {Action.DENY}


def test_missing_order_is_last_and_log_goes_on(tmp_path: Path) -> None:
    docs = [
        _cnp("a-allow", {"ingress": [{"action": "Allow"}]}),  # no order: after b-deny
        _cnp(
            "b-deny",
            {
                "order": 5,
                "ingress": [
                    {"action": "Log"},
                    {"action": "Deny", "source": {"nets": ["192.0.2.0/24"]}},
                ],
            },
        ),
    ]
    pipeline, _ = _pipeline(tmp_path, docs)
    (tier,) = [s for s in pipeline.stages if s.policies]
    assert [p.ref for p in tier.policies] == ["shop/b-deny", "shop/a-allow"]
    assert math.isinf(float(tier.policies[1].order[1]))
    assert _allowed(pipeline, "192.0.2.10", WEB, 80) == {Action.DENY}
    assert _allowed(pipeline, "8.8.8.8", WEB, 80) == {Action.ALLOW}


def test_not_nets_not_ports_service_accounts_and_network_sets(tmp_path: Path) -> None:
    docs = [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "GlobalNetworkSet",
            "metadata": {"name": "partners", "labels": {"role": "partner"}},
            "spec": {"nets": ["198.51.100.0/24"]},
        },
        _cnp(
            "db",
            {
                "selector": "app == 'db'",
                "ingress": [
                    {
                        "action": "Allow",
                        "protocol": "TCP",
                        "source": {"serviceAccounts": {"names": ["web-sa"]}},
                        "destination": {"notPorts": ["6000:7000"]},
                    },
                    {"action": "Allow", "source": {"selector": "role == 'partner'"}},
                ],
                "egress": [{"action": "Allow", "destination": {"notNets": ["10.0.0.0/8"]}}],
            },
            ns=None,
        ),
    ]
    pipeline, _ = _pipeline(tmp_path, docs)
    web_sa = WEB.model_copy(update={"service_account": "web-sa"})
    assert _allowed(pipeline, web_sa, DB, 5432) == {Action.ALLOW}
    assert _allowed(pipeline, web_sa, DB, 6500) == {Action.DENY}
    assert _allowed(pipeline, WEB, DB, 5432) == {Action.DENY}
    assert _allowed(pipeline, "198.51.100.7", DB, 22) == {Action.ALLOW}
    assert _allowed(pipeline, DB, "8.8.8.8", 443) == {Action.ALLOW}
    assert _allowed(pipeline, DB, WEB, 80) == {Action.DENY}


def test_what_cannot_be_evaluated_is_uncertain_and_noted(tmp_path: Path) -> None:
    docs = [
        _cnp(
            "l7",
            {
                "selector": "app == 'web'",
                "ingress": [
                    {"action": "Deny", "http": {"methods": ["POST"]}},
                    {"action": "Allow", "protocol": "ICMP"},
                    {"action": "Deny", "protocol": "TCP", "source": {"ports": [1234]}},
                ],
            },
        ),
        _cnp(
            "host",
            {"preDNAT": True, "applyOnForward": True, "ingress": [{"action": "Deny"}]},
            ns=None,
        ),
    ]
    pipeline, inv = _pipeline(tmp_path, docs)
    notes = {p.ref: p.notes for p in inv.ordered}
    assert {code for code, _ in notes["shop/l7"]} == {"calico-unmodeled", "calico-protocol-widened"}
    assert notes["host"][0][0] == "calico-not-compiled"
    assert [s.name for s in pipeline.stages if s.policies] == ["untracked", "tier default"]
    # The L7 Deny may or may not deny; the ICMP Allow may apply to TCP: both outcomes.
    assert _allowed(pipeline, "8.8.8.8", WEB, 80) == {Action.ALLOW, Action.DENY}


# --- the property: the lowered stages decide as Calico does --------------------------------

POD_ATOMS = [
    "app == 'web'",
    "app != 'db'",
    "app in {'web', 'api'}",
    "tier not in {'front'}",
    "has(tier)",
    "!has(app)",
    "all()",
    "projectcalico.org/serviceaccount == 'sa1'",
]
NS_ATOMS = [
    "team == 'x'",
    "env != 'prod'",
    "has(team)",
    "projectcalico.org/name == 'a'",
    "all()",
    "kubernetes.io/metadata.name in {'b', 'c'}",
]
NETS = ["10.0.0.0/16", "192.0.2.0/24", "10.0.1.0/24", "0.0.0.0/0"]


def _expr(atoms: list[str]) -> st.SearchStrategy[str]:
    atom = st.sampled_from(atoms)
    return st.one_of(
        atom,
        st.builds(lambda a, b: f"{a} && {b}", atom, atom),
        st.builds(lambda a, b: f"({a}) || !({b})", atom, atom),
    )


def _entity(peer: bool) -> st.SearchStrategy[dict[str, Any]]:
    opt: dict[str, st.SearchStrategy[Any]] = {
        "selector": _expr(POD_ATOMS),
        "notSelector": _expr(POD_ATOMS),
        "namespaceSelector": _expr(NS_ATOMS),
    }
    if peer:
        opt |= {
            "nets": st.lists(st.sampled_from(NETS), min_size=1, max_size=2, unique=True),
            "notNets": st.lists(st.sampled_from(NETS), min_size=1, max_size=1),
        }
    return st.fixed_dictionaries({}, optional=opt).filter(
        lambda e: (
            not (
                "nets" in e and ("selector" in e or "notSelector" in e or "namespaceSelector" in e)
            )
        )
    )


def _ports() -> st.SearchStrategy[dict[str, Any]]:
    port = st.sampled_from([80, 5432, "8000:8100", "http", "db"])
    return st.fixed_dictionaries(
        {},
        optional={
            "ports": st.lists(port, min_size=1, max_size=2),
            "notPorts": st.lists(port, min_size=1, max_size=1),
        },
    )


@st.composite
def _rule(draw: st.DrawFn, direction: str) -> dict[str, Any]:
    action = draw(st.sampled_from(["Allow", "Deny", "Pass", "Log"]))
    protocol = draw(st.sampled_from([None, "TCP", "UDP", 17]))
    peer = draw(_entity(True))
    local = draw(_entity(False))
    if protocol is not None:
        local_or_peer = draw(_ports())
        if direction == "ingress":
            local |= local_or_peer
        else:
            peer |= local_or_peer
    rule: dict[str, Any] = {"action": action}
    if protocol is not None:
        rule["protocol"] = protocol
    if draw(st.booleans()):
        rule["notProtocol"] = "UDP"
    src, dst = (peer, local) if direction == "ingress" else (local, peer)
    if src:
        rule["source"] = src
    if dst:
        rule["destination"] = dst
    return rule


@st.composite
def _calico(draw: st.DrawFn, i: int) -> dict[str, Any]:
    namespaced = draw(st.booleans())
    spec: dict[str, Any] = {}
    # Few orders and mostly one tier, so that policies meet and their order decides.
    order = draw(st.sampled_from([None, None, 100, 1000, 1000.5]))
    if order is not None:
        spec["order"] = order
    spec["tier"] = draw(st.sampled_from(["default", "default", "first", "last"]))
    if draw(st.booleans()):
        spec["selector"] = draw(_expr(POD_ATOMS))
    if not namespaced and draw(st.booleans()):
        spec["namespaceSelector"] = draw(_expr(NS_ATOMS))
    ingress = draw(st.lists(_rule("ingress"), max_size=3))
    egress = draw(st.lists(_rule("egress"), max_size=2))
    if ingress:
        spec["ingress"] = ingress
    if egress:
        spec["egress"] = egress
    if draw(st.booleans()):
        given = [t for t, rules in (("Ingress", ingress), ("Egress", egress)) if rules]
        spec["types"] = given or ["Ingress"]
        if draw(st.booleans()) and "Egress" not in spec["types"]:
            spec["types"].append("Egress")
    ns = draw(st.sampled_from(NAMESPACES)) if namespaced else None
    return _cnp(f"p{i}", spec, ns=ns)


TIERS = [
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Tier",
        "metadata": {"name": "first"},
        "spec": {"order": 10},
    },
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Tier",
        "metadata": {"name": "last"},
        "spec": {"order": 2_000_000, "defaultAction": "Pass"},
    },
]
NETWORK_SET = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "GlobalNetworkSet",
    "metadata": {"name": "docs", "labels": {"app": "web"}},
    "spec": {"nets": ["192.0.2.0/24"]},
}


# A literal reading of Calico's documentation, independent of nsgsync.model.calico.


def _ref_labels(pod: PodInfo, ns_labels: dict[str, str]) -> dict[str, str]:
    out = dict(pod.labels)
    out.update({"pcns." + k: v for k, v in ns_labels.items()})
    out["pcns.projectcalico.org/name"] = pod.namespace
    out["pcsa.projectcalico.org/name"] = pod.service_account
    out["projectcalico.org/namespace"] = pod.namespace
    out["projectcalico.org/orchestrator"] = "k8s"
    out["projectcalico.org/serviceaccount"] = pod.service_account
    return out


def _sel(text: str | None, labels: dict[str, str], *, is_global: bool = False) -> bool:
    return (
        text is None or parse_selector(text).evaluate(Labels(labels, is_global=is_global)) is True
    )


def _ns_sel(text: str, ns: str | None, ns_labels: dict[str, str]) -> bool:
    # Calico matches a namespaceSelector against the namespace's labels, all() meaning
    # "has a namespace"; an endpoint outside namespaces has none of those labels.
    text = text.replace("all()", "has(projectcalico.org/namespace)")
    if ns is None:
        return _sel(text, {}, is_global=True)
    return _sel(
        text, {**ns_labels, "projectcalico.org/name": ns, "projectcalico.org/namespace": ns}
    )


def _entity_matches(
    policy_ns: str | None,
    entity: dict[str, Any],
    ep: Endpoint,
    namespaces: dict[str, dict[str, str]],
) -> bool:
    import ipaddress

    ip = ipaddress.ip_address(ep.ip)
    if "nets" in entity and not any(ip in ipaddress.ip_network(n) for n in entity["nets"]):
        return False
    if any(ip in ipaddress.ip_network(n) for n in entity.get("notNets", [])):
        return False
    selects = any(k in entity for k in ("selector", "notSelector", "namespaceSelector"))
    if not selects:
        return True
    # The endpoint the address belongs to: a pod, the docs network set, or none.
    if ep.pod is not None:
        ns: str | None = ep.pod.namespace
        labels = _ref_labels(ep.pod, namespaces[ep.pod.namespace])
    elif ip in ipaddress.ip_network("192.0.2.0/24"):
        ns, labels = None, {"app": "web"}
    else:
        ns, labels = None, None
    if (
        labels is not None
        and "notSelector" in entity
        and _sel(entity["notSelector"], labels, is_global=ns is None)
    ):
        return False
    positive = "selector" in entity or "namespaceSelector" in entity or policy_ns is not None
    if not positive:
        return True
    if labels is None:
        return False
    if "namespaceSelector" in entity:
        if not _ns_sel(entity["namespaceSelector"], ns, namespaces.get(ns or "", {})):
            return False
    elif policy_ns is not None and ns != policy_ns:
        return False
    return _sel(entity.get("selector"), labels, is_global=ns is None)


def _ports_match(
    protocol: Any, entity: dict[str, Any], dst: Endpoint, proto: Protocol, port: int
) -> bool:
    def one(p: Any) -> bool:
        if isinstance(p, int):
            return p == port
        if ":" in p:
            lo, hi = p.split(":")
            return int(lo) <= port <= int(hi)
        return dst.pod is not None and port in dst.pod.port_numbers(p, proto)

    if "ports" in entity and not any(one(p) for p in entity["ports"]):
        return False
    return not any(one(p) for p in entity.get("notPorts", []))


def _ref_rule(
    policy_ns: str | None,
    rule: dict[str, Any],
    direction: str,
    pod_end: Endpoint,
    other: Endpoint,
    proto: Protocol,
    port: int,
    namespaces: dict[str, dict[str, str]],
) -> bool:
    want = {None: None, "TCP": Protocol.TCP, "UDP": Protocol.UDP, 17: Protocol.UDP}[
        rule.get("protocol")
    ]
    if want is not None and want is not proto:
        return False
    if rule.get("notProtocol") == "UDP" and proto is Protocol.UDP:
        return False
    src, dst = (other, pod_end) if direction == "ingress" else (pod_end, other)
    return (
        _entity_matches(policy_ns, rule.get("source", {}), src, namespaces)
        and _entity_matches(policy_ns, rule.get("destination", {}), dst, namespaces)
        and _ports_match(rule.get("protocol"), rule.get("destination", {}), dst, proto, port)
    )


def _types(spec: dict[str, Any]) -> set[str]:
    if "types" in spec:
        return set(spec["types"])
    if spec.get("egress") and not spec.get("ingress"):
        return {"Egress"}
    return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}


def _reference(
    docs: list[dict[str, Any]],
    knps: tuple[NetworkPolicy, ...],
    pod_end: Endpoint,
    other: Endpoint,
    direction: str,
    proto: Protocol,
    port: int,
    namespaces: dict[str, dict[str, str]],
) -> bool:
    from nsgsync.semantics import side

    pod = pod_end.pod
    if pod is None:
        return True
    labels = _ref_labels(pod, namespaces[pod.namespace])
    tiers = {
        "first": (10.0, "Deny"),
        "default": (1_000_000.0, "Deny"),
        "last": (2_000_000.0, "Pass"),
    }
    for tier in sorted(tiers, key=lambda t: tiers[t][0]):
        chosen = []
        for d in docs:
            spec, ns = d["spec"], d["metadata"].get("namespace")
            if spec.get("tier", "default") != tier or direction.capitalize() not in _types(spec):
                continue
            if ns is not None and ns != pod.namespace:
                continue
            if not _sel(spec.get("selector"), labels):
                continue
            if "namespaceSelector" in spec and not _ns_sel(
                spec["namespaceSelector"], pod.namespace, namespaces[pod.namespace]
            ):
                continue
            name = f"{ns}/{d['metadata']['name']}" if ns else d["metadata"]["name"]
            chosen.append((spec.get("order", math.inf), name, ns, spec.get(direction, [])))
        knp_side = None
        if tier == "default":
            pt = PolicyType(direction.capitalize())
            knp_side = side(pod_end, other, pt, knps, namespaces, proto, port)
            if knp_side.isolated_by:
                chosen.append((1000.0, "knp.default", None, None))
        if not chosen:
            continue
        decided: str | None = None
        for _, _, ns, rules in sorted(chosen, key=lambda c: (c[0], c[1])):
            if rules is None:
                assert knp_side is not None
                if knp_side.allowed_by:
                    decided = "Allow"
                    break
                continue
            for rule in rules:
                if rule["action"] == "Log":
                    continue
                if _ref_rule(ns, rule, direction, pod_end, other, proto, port, namespaces):
                    decided = rule["action"]
                    break
            if decided:
                break
        if decided == "Allow":
            return True
        if decided == "Deny":
            return False
        if decided == "Pass":
            continue
        if tiers[tier][1] == "Deny":
            return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(max_pods=5), st.data())
def test_lowered_calico_decides_as_calico_does(s: Scenario, data: st.DataObject) -> None:
    docs = [data.draw(_calico(i)) for i in range(data.draw(st.integers(1, 4)))]
    namespaces = {n: dict(v) for n, v in s.inventory.namespaces.items()}
    pods = tuple(
        p.model_copy(update={"service_account": "sa1" if i % 2 else "default"})
        for i, p in enumerate(s.pods)
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump_all([*TIERS, NETWORK_SET, *docs], sort_keys=False))
        inv = load_manifests([path])
    pipeline = Pipeline(calico_stages(s.inventory.policies, inv.ordered))
    ends = [Endpoint(p.ip or "", p) for p in pods] + [Endpoint(ip) for ip in EXTERNAL_IPS]
    for a in ends:
        for b in ends:
            if a.ip == b.ip:
                continue
            for proto in (Protocol.TCP, Protocol.UDP):
                for port in PROBE_PORTS:
                    walked = tiered_verdict(a, b, proto, port, pipeline, namespaces)
                    expected = _reference(
                        docs, s.inventory.policies, a, b, "egress", proto, port, namespaces
                    ) and _reference(
                        docs, s.inventory.policies, b, a, "ingress", proto, port, namespaces
                    )
                    assert walked.allowed == expected, (a, b, proto, port, walked, docs)
                    assert walked.egress.certain and walked.ingress.certain, walked


# --- through the CLI: findings ---------------------------------------------------------

CASE = Path(__file__).parent / "cases" / "calico-tiers"


def test_compile_reports_what_it_could_not_compile_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nsgsync.cli.main import main

    docs = [
        _cnp(
            "api-l7",
            {
                "selector": "app == 'api'",
                "ingress": [
                    {"action": "Deny", "http": {"methods": ["DELETE"]}},
                    {"action": "Allow", "protocol": "ICMP"},
                ],
            },
        ),
        _cnp(
            "untracked",
            {"doNotTrack": True, "applyOnForward": True, "ingress": [{"action": "Allow"}]},
            ns=None,
        ),
    ]
    folder = tmp_path / "manifests"
    folder.mkdir()
    for src in (CASE / "manifests").iterdir():
        (folder / src.name).write_text(src.read_text())
    (folder / "more.yaml").write_text(yaml.safe_dump_all(docs))
    topology = str(CASE / "topology.yaml")
    assert main(["compile", "-f", str(folder), "--topology", topology, "-o", "json"]) == 0
    findings = json.loads(capsys.readouterr().out)["findings"]
    by_code: dict[str, list[dict[str, Any]]] = {}
    for f in findings:
        by_code.setdefault(f["code"], []).append(f)
    assert {f["policy"] for f in by_code["calico-unmodeled"]} >= {"shop/api-l7"}
    assert any("http" in f["message"] for f in by_code["calico-unmodeled"])
    assert by_code["calico-protocol-widened"][0]["policy"] == "shop/api-l7"
    assert "ICMP" in by_code["calico-protocol-widened"][0]["message"]
    assert by_code["calico-not-compiled"][0]["policy"] == "untracked"


def test_the_cluster_source_reads_calico_where_served(tmp_path: Path) -> None:
    from nsgsync.sources.cluster import load_cluster
    from tests.fakes.kube_api import KubeApi

    tier = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Tier",
        "metadata": {"name": "security"},
        "spec": {"order": 100},
    }
    netset = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkSet",
        "metadata": {"name": "partners", "labels": {"role": "partner"}},
        "spec": {"nets": ["198.51.100.0/24"]},
    }
    gnp = _cnp(
        "security.partners",
        {
            "tier": "security",
            "order": 5,
            "ingress": [{"action": "Allow", "source": {"selector": "role == 'partner'"}}],
        },
        ns=None,
    )
    np = _cnp("db", {"selector": "app == 'db'", "egress": [{"action": "Deny"}]})
    knp_shown = _cnp("knp.default.db", {"ingress": [{"action": "Allow"}]})
    with KubeApi() as api:
        for obj in (tier, netset, gnp, np, knp_shown):
            api.add(obj)
        client = api.api_client()
        try:
            inv = load_cluster(client)
        finally:
            client.close()
    got = {p.ref: p for p in inv.ordered}
    assert sorted(got) == ["security.partners", "shop/db"]  # knp.* are read as themselves
    assert got["security.partners"].stage == "tier security"
    assert got["security.partners"].order[:2] == (100.0, 5.0)
    assert got["shop/db"].types == {PolicyType.EGRESS}
    # The network set's addresses are among the peers of the partners rule.
    pipeline = Pipeline(calico_stages((), inv.ordered))
    assert _allowed(pipeline, "198.51.100.9", DB, 22) == {Action.ALLOW}


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(_expr(POD_ATOMS), _expr(NS_ATOMS).map(lambda t: t.replace("all()", "has(x)"))),
    st.sampled_from(["pod", "ns"]),
    st.fixed_dictionaries(
        {}, optional={"app": st.sampled_from(["web", "db", "api"]), "tier": st.just("front")}
    ),
    st.fixed_dictionaries(
        {}, optional={"team": st.sampled_from(["x", "y"]), "env": st.just("prod")}
    ),
    st.sampled_from(NAMESPACES),
)
def test_kubernetes_style_predicates_say_what_the_expression_says(
    text: str, where: str, pod_labels: dict[str, str], ns_labels: dict[str, str], ns: str
) -> None:
    from nsgsync.model.calico import CalicoPods, as_pods, namespace_expr

    expr = parse_selector(text)
    if where == "ns":
        expr = namespace_expr(expr)
    exact = as_pods(expr)
    pod = PodInfo(namespace=ns, name="p", labels=pod_labels, service_account="sa1")
    labels = {**ns_labels, "kubernetes.io/metadata.name": ns}
    if exact is not None:
        assert exact.matches(pod, labels) == CalicoPods(expr).matches(pod, labels), exact


def test_a_cluster_without_calico_says_so(tmp_path: Path) -> None:
    from nsgsync.sources.cluster import load_cluster
    from tests.fakes.kube_api import KubeApi

    for absent, said in ((frozenset(), False), (frozenset(GROUPS_SERVED), True)):
        with KubeApi(absent_groups=absent) as api:
            client = api.api_client()
            try:
                inv = load_cluster(client)
            finally:
                client.close()
        notes = [n for n in inv.notes if n[0] == "calico-crds-absent"]
        assert bool(notes) is said, (absent, inv.notes)
        if said:
            assert "projectcalico.org" in notes[0][2]


GROUPS_SERVED = ("projectcalico.org", "crd.projectcalico.org")
