"""Random clusters for property tests: namespaces, pods, segments and policies.

Small vocabularies on purpose, so that selectors, names and ports collide often.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from nsgsync.model import Inventory, NetworkPolicy, PodInfo, Topology
from nsgsync.sources.files import Document, parse_policy, topology_from_mapping

NAMESPACES = ["a", "b", "c"]
LABEL_VALUES = {"app": ["web", "db", "api"], "tier": ["front", "back"]}
NS_LABEL_VALUES = {"team": ["x", "y"], "env": ["prod", "dev"]}
PORT_NAMES = ["http", "db"]
PORT_NUMBERS = [80, 8080, 5432]
EXTERNAL_IPS = ["192.0.2.10", "8.8.8.8"]
PROBE_PORTS = [80, 8080, 5432, 8050, 9999]
IP_BLOCKS: list[dict[str, Any]] = [
    {"cidr": "10.0.0.0/16"},
    {"cidr": "10.0.1.0/24", "except": ["10.0.1.0/25"]},
    {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]},
    {"cidr": "192.0.2.0/24"},
    {"cidr": "10.0.0.0/8", "except": ["10.0.2.0/24"]},
]


def labels(values: dict[str, list[str]]) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({}, optional={k: st.sampled_from(v) for k, v in values.items()})


def selector(values: dict[str, list[str]]) -> st.SearchStrategy[dict[str, Any]]:
    keys = list(values)
    expression = st.one_of(
        st.builds(
            lambda k, op, vs: {"key": k, "operator": op, "values": vs},
            st.sampled_from(keys),
            st.sampled_from(["In", "NotIn"]),
            st.lists(
                st.sampled_from([v for vs in values.values() for v in vs]),
                min_size=1,
                max_size=2,
                unique=True,
            ),
        ),
        st.builds(
            lambda k, op: {"key": k, "operator": op},
            st.sampled_from(keys),
            st.sampled_from(["Exists", "DoesNotExist"]),
        ),
    )
    return st.builds(
        lambda ml, me: {
            **({"matchLabels": ml} if ml else {}),
            **({"matchExpressions": me} if me else {}),
        },
        labels(values),
        st.lists(expression, max_size=1),
    )


def port() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(lambda p: {"protocol": p}, st.sampled_from(["TCP", "UDP"])),
        st.builds(
            lambda p, n: {"protocol": p, "port": n},
            st.sampled_from(["TCP", "UDP"]),
            st.sampled_from(PORT_NUMBERS),
        ),
        st.builds(
            lambda p, n: {"protocol": p, "port": n},
            st.sampled_from(["TCP", "UDP"]),
            st.sampled_from(PORT_NAMES),
        ),
        st.just({"port": 8000, "endPort": 8100}),
    )


def peer() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(lambda s: {"podSelector": s}, selector(LABEL_VALUES)),
        st.builds(lambda s: {"namespaceSelector": s}, selector(NS_LABEL_VALUES)),
        st.builds(
            lambda n, p: {"namespaceSelector": n, "podSelector": p},
            selector(NS_LABEL_VALUES),
            selector(LABEL_VALUES),
        ),
        st.builds(lambda b: {"ipBlock": b}, st.sampled_from(IP_BLOCKS)),
    )


def rule(side: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda peers, ports: {
            **({side: peers} if peers is not None else {}),
            **({"ports": ports} if ports else {}),
        },
        st.one_of(st.none(), st.lists(peer(), min_size=1, max_size=2)),
        st.lists(port(), max_size=2),
    )


def policy_body() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda ns, sel, types, ing, eg: {
            "kind": "NetworkPolicy",
            "metadata": {"namespace": ns},
            "spec": {
                "podSelector": sel,
                **({"policyTypes": types} if types is not None else {}),
                **({"ingress": ing} if ing else {}),
                **({"egress": eg} if eg else {}),
            },
        },
        st.sampled_from(NAMESPACES),
        selector(LABEL_VALUES),
        st.one_of(
            st.none(),
            st.lists(st.sampled_from(["Ingress", "Egress"]), min_size=1, max_size=2, unique=True),
        ),
        st.lists(rule("from"), max_size=2),
        st.lists(rule("to"), max_size=2),
    )


def container_ports() -> st.SearchStrategy[list[tuple[str, int, str]]]:
    return st.lists(
        st.tuples(
            st.sampled_from(PORT_NAMES),
            st.sampled_from(PORT_NUMBERS),
            st.sampled_from(["TCP", "UDP"]),
        ),
        max_size=2,
        unique_by=lambda t: (t[0], t[2]),
    )


def segment_body() -> st.SearchStrategy[dict[str, Any]]:
    where = st.one_of(
        st.builds(lambda ns: {"namespace": ns}, st.sampled_from(NAMESPACES)),
        st.builds(lambda s: {"namespaceSelector": s}, selector(NS_LABEL_VALUES)),
    )
    return st.builds(
        lambda w, sel: {**w, "podSelector": sel},
        where,
        selector(LABEL_VALUES),
    )


# Built once: hypothesis validates a strategy tree the first time it draws from it.
POLICY = policy_body()
SEGMENT = segment_body()
POD_LABELS = labels(LABEL_VALUES)
NS_LABELS = labels(NS_LABEL_VALUES)
CONTAINER_PORTS = container_ports()


@dataclass(frozen=True)
class Scenario:
    topology: Topology
    inventory: Inventory
    pods: tuple[PodInfo, ...]  # with their IPs

    def describe(self) -> str:
        return f"{self.topology!r}\n{self.inventory!r}"

    def seen(self, *, pods: bool = True, described: frozenset[str] | None = None) -> Inventory:
        """What nsgsync is given of the cluster: its pods or none, and Namespace objects
        for `described` only (None: all, and the namespaces are then known complete)."""
        truth = self.inventory
        if described is None:
            return Inventory.build(
                truth.policies,
                truth.namespaces,
                truth.pods if pods else (),
                namespaces_complete=True,
            )
        return Inventory.build(
            truth.policies,
            {ns: labels for ns, labels in truth.namespaces.items() if ns in described},
            truth.pods if pods else (),
        )


# Node ranges drawn apart from the pods' and overlapping them: a topology whose nodes
# overlap its pods must be refused, never compiled.
NODE_CIDRS = [
    "10.1.0.0/24",
    "192.168.0.0/16",
    "10.0.0.0/8",
    "10.0.1.128/25",
    "10.0.64.0/18",
    "10.0.200.0/24",
]


def topology_body(segments: list[dict[str, Any]], node_cidrs: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "nsgsync.io/v1alpha1",
        "kind": "Topology",
        "cluster": "prop",
        "provider": "aws",
        "podCIDRs": ["10.0.0.0/16"],
        "nodeCIDRs": node_cidrs,
        "segments": segments,
    }


@st.composite
def scenarios(draw: st.DrawFn, *, catch_all: bool | None = None, max_pods: int = 6) -> Scenario:
    n_segments = draw(st.integers(1, 4))
    segments = [
        {"name": f"s{i}", **draw(SEGMENT), "cidrs": [f"10.0.{i + 1}.0/24"]}
        for i in range(n_segments)
    ]
    if catch_all if catch_all is not None else draw(st.booleans()):
        segments.append({"name": "rest", "namespaceSelector": {}, "cidrs": ["10.0.64.0/18"]})
    topology = topology_from_mapping(topology_body(segments, ["10.1.0.0/24"]))
    namespaces = {ns: draw(NS_LABELS) for ns in NAMESPACES}
    n_policies = draw(st.integers(0, 4))
    policies: list[NetworkPolicy] = []
    for i in range(n_policies):
        body = draw(POLICY)
        body["metadata"]["name"] = f"p{i}"
        policies.append(parse_policy(Document("<random>", 1, body)))
    pods = []
    n_pods = draw(st.integers(1, max_pods))
    for i in range(n_pods):
        ns = draw(st.sampled_from(NAMESPACES))
        pod_labels = draw(POD_LABELS)
        pods.append(
            PodInfo(
                namespace=ns,
                name=f"pod{i}",
                labels=pod_labels,
                ports=tuple(
                    {"name": n, "port": p, "protocol": proto}
                    for n, p, proto in draw(CONTAINER_PORTS)
                ),
            )
        )
    inventory = Inventory.build(policies, namespaces, pods, namespaces_complete=True)
    placed = []
    for i, pod in enumerate(pods):
        seg = topology.segment_for(pod.namespace, inventory.namespaces[pod.namespace], pod.labels)
        space = seg.addresses if seg is not None else topology.unsegmented_addresses()
        first = space.first_address()
        assert first is not None
        base = first.rsplit(".", 1)[0]
        placed.append(pod.model_copy(update={"ip": f"{base}.{10 + i}"}))
    truth = Inventory.build(policies, namespaces, placed, namespaces_complete=True)
    return Scenario(topology, truth, tuple(placed))


def one_pod_per_segment(s: Scenario) -> Scenario | None:
    """The first pod of each segment, or None when a segment has none."""
    chosen: dict[str, PodInfo] = {}
    for pod in s.pods:
        seg = s.topology.segment_for(
            pod.namespace, s.inventory.namespaces[pod.namespace], pod.labels
        )
        if seg is not None:
            chosen.setdefault(seg.name, pod)
    if len(chosen) != len(s.topology.segments):
        return None
    pods = tuple(chosen.values())
    inventory = Inventory.build(
        s.inventory.policies, s.inventory.namespaces, pods, namespaces_complete=True
    )
    return Scenario(s.topology, inventory, pods)
