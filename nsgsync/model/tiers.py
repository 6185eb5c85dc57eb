"""Ordered allow/deny/pass policies: one model for every policy dialect nsgsync reads.

Each dialect (network-policy-api's admin kinds, Calico, Cilium, and NetworkPolicy v1 itself
when it runs beside them) is lowered into a `Pipeline`: stages evaluated in order, each an
ordered list of rules whose first match decides (Allow, Deny) or jumps to the next stage
(Pass). A stage that ends without a decision either denies the pod a policy of that stage
selects (NetworkPolicy v1's isolation, Calico's end-of-tier deny) or hands the connection to
the next stage; after the last stage, the connection is allowed.

The reference evaluator (nsgsync.semantics) walks a pipeline for one connection and the
compiler over-approximates it per segment; both read only this module's types, so a dialect
is a function from its objects to a Pipeline (docs/semantics.md, one section per dialect).

A condition nsgsync cannot evaluate (L7 rules, DNS names, source ports) is never dropped: it
is kept in `TRule.unmodeled` and makes the rule's match uncertain, so an Allow may apply, a
Deny is not relied on, and a Pass may or may not skip the stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol as TypingProtocol
from typing import runtime_checkable

from nsgsync.model.k8s import LabelSelector, PodInfo, PolicyType, Protocol


class Action(StrEnum):
    ALLOW = "Allow"
    DENY = "Deny"
    PASS = "Pass"


class End(StrEnum):
    """What a stage does with a connection none of its rules decided."""

    DENY_IF_SELECTED = "deny-if-selected"  # isolation: a policy of the stage selects the pod
    NEXT = "next"


class Entity(StrEnum):
    """Addresses named by role rather than by CIDR (Cilium's entities, Calico's nets)."""

    ALL = "all"
    WORLD = "world"  # outside the cluster: neither a pod nor a node
    CLUSTER = "cluster"  # every pod and node of the cluster
    HOST = "host"  # the node the pod runs on
    REMOTE_NODE = "remote-node"  # every other node
    KUBE_APISERVER = "kube-apiserver"
    WORLD_IPV4 = "world-ipv4"  # the world's IPv4 addresses
    WORLD_IPV6 = "world-ipv6"
    # Cluster-side identities that are no pods nsgsync knows as such: Cilium's health
    # checkers and its ingress proxy (on the nodes), and endpoints whose identity is not
    # resolved yet (init) or that Cilium does not manage (unmanaged), which may be any pod.
    HEALTH = "health"
    INGRESS = "ingress"
    INIT = "init"
    UNMANAGED = "unmanaged"


@runtime_checkable
class PodPredicate(TypingProtocol):
    """Which pods a subject or peer names; `namespace_labels` are the pod's namespace's."""

    def matches(self, pod: PodInfo, namespace_labels: Mapping[str, str]) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Pods:
    """Pods by namespace and labels, the way Kubernetes selectors say it.

    `namespace` fixes one namespace (a namespaced policy's own); otherwise
    `namespace_selector` chooses namespaces (None: every namespace). `pod_selector` None or
    empty: every pod there.
    """

    namespace: str | None = None
    namespace_selector: LabelSelector | None = None
    pod_selector: LabelSelector | None = None

    def matches(self, pod: PodInfo, namespace_labels: Mapping[str, str]) -> bool:
        if self.namespace is not None and pod.namespace != self.namespace:
            return False
        if self.namespace_selector is not None and not self.namespace_selector.matches(
            namespace_labels
        ):
            return False
        return self.pod_selector is None or self.pod_selector.matches(pod.labels)

    def describe(self) -> str:
        where = (
            f"namespace {self.namespace}"
            if self.namespace is not None
            else "every namespace"
            if self.namespace_selector is None or self.namespace_selector.is_empty()
            else f"namespaces {self.namespace_selector.describe()}"
        )
        pods = (
            "every pod"
            if self.pod_selector is None or self.pod_selector.is_empty()
            else f"pods {self.pod_selector.describe()}"
        )
        return f"{pods} in {where}"


@dataclass(frozen=True)
class Net:
    """An address block less its exceptions."""

    cidr: str
    except_: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ent:
    entity: Entity


TPeer = PodPredicate | Net | Ent


@dataclass(frozen=True)
class PortRange:
    """Destination ports: `protocol` None is any protocol; `first` None is every port.

    `name` is a named container port, looked up on the destination pod.
    """

    protocol: Protocol | None = None
    first: int | None = None
    last: int | None = None
    name: str | None = None


@dataclass(frozen=True)
class TRule:
    """One rule: it matches when every condition holds (peers, not_peers, ports, local)."""

    action: Action
    direction: PolicyType
    index: int  # its position in the policy, as users count (from 0)
    peers: tuple[TPeer, ...] | None = None  # None: any peer
    not_peers: tuple[TPeer, ...] = ()
    ports: tuple[PortRange, ...] | None = None  # None: any protocol and port
    not_ports: tuple[PortRange, ...] = ()
    local: PodPredicate | None = None  # a further condition on the policy's own pod
    unmodeled: str = ""  # why the match is uncertain ("" when it is not)


@dataclass(frozen=True)
class TPolicy:
    dialect: str  # "AdminNetworkPolicy", "Calico", "Cilium", "NetworkPolicy", ...
    ref: str  # namespace/name, or name for a cluster-scoped policy
    where: str  # file:line, or the cluster it was read from
    subject: PodPredicate
    types: frozenset[PolicyType]  # the directions in which it selects its subject
    rules: tuple[TRule, ...]
    stage: str = ""  # the stage it belongs to, named by its dialect ("Admin", "tier default")
    order: tuple[float | int | str, ...] = ()  # the dialect's sort key within its stage
    # Whether selecting a pod makes an isolating stage deny what no rule allowed; False for
    # a Cilium policy with enableDefaultDeny off, for example.
    isolates: bool = True
    # What the dialect's parser could not compile exactly, as (finding code, message): the
    # compiler reports each as a finding of that code (the Code enum in nsgsync.intent).
    notes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Stage:
    name: str  # shown by explain: "Admin", "NetworkPolicy", "Baseline", "tier default"
    policies: tuple[TPolicy, ...]  # in evaluation order
    end: End


@dataclass(frozen=True)
class Pipeline:
    stages: tuple[Stage, ...]
    # Node and apiserver ranges the entities stand for (from the topology).
    node_cidrs: tuple[str, ...] = ()
    cluster_cidrs: tuple[str, ...] = ()
    apiserver_cidrs: tuple[str, ...] = ()
