"""Policy kinds other than networking.k8s.io/v1 NetworkPolicy, and what they can do.

nsgsync compiles NetworkPolicy v1 only. A kind that can *allow* traffic that v1 policies
deny (an admin Allow, a Calico allow ordered before the Kubernetes policies, a Cilium
allow added to a NetworkPolicy's) cannot be left out without risking the one rule:
ignoring it may block live traffic. A kind that can only narrow what the network allows
(an L7 authorization policy) cannot make the cloud rules too narrow, so it is noted only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Effect(StrEnum):
    MAY_ALLOW = "may-allow"  # can allow what NetworkPolicy v1 denies: refuse unless ignored
    NARROWS_ONLY = "narrows-only"  # can only deny more (or not enforce at all): a note


# (API group, kind) -> effect. Calico's kinds are served as projectcalico.org (API server)
# and crd.projectcalico.org (the CRDs underneath); both are what users keep in manifests.
KNOWN_KINDS: dict[tuple[str, str], Effect] = {
    # Calico's and Cilium's policies are compiled (nsgsync.model.calico, nsgsync.model.cilium).
    # network-policy-api: the versions nsgsync.model.adminpolicy reads are compiled (sources
    # look there first); any other version of these kinds is refused here.
    ("policy.networking.k8s.io", "AdminNetworkPolicy"): Effect.MAY_ALLOW,
    ("policy.networking.k8s.io", "BaselineAdminNetworkPolicy"): Effect.MAY_ALLOW,
    ("policy.networking.k8s.io", "ClusterNetworkPolicy"): Effect.MAY_ALLOW,
    ("crd.antrea.io", "ClusterNetworkPolicy"): Effect.MAY_ALLOW,
    ("crd.antrea.io", "NetworkPolicy"): Effect.MAY_ALLOW,
    # Staged policies are previews: enforced by nothing, so they allow nothing either.
    ("projectcalico.org", "StagedNetworkPolicy"): Effect.NARROWS_ONLY,
    ("projectcalico.org", "StagedGlobalNetworkPolicy"): Effect.NARROWS_ONLY,
    ("projectcalico.org", "StagedKubernetesNetworkPolicy"): Effect.NARROWS_ONLY,
    ("security.istio.io", "AuthorizationPolicy"): Effect.NARROWS_ONLY,
    ("policy.linkerd.io", "AuthorizationPolicy"): Effect.NARROWS_ONLY,
    ("policy.linkerd.io", "ServerAuthorization"): Effect.NARROWS_ONLY,
}

NETWORK_POLICY_V1 = "networking.k8s.io/v1"


def group_of(api_version: str) -> str:
    """`projectcalico.org/v3` -> `projectcalico.org`; the core group (`v1`) -> ``."""
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


@dataclass(frozen=True, order=True)
class ForeignPolicy:
    """A policy object of a kind nsgsync does not compile, and where it was read."""

    kind: str
    group: str
    name: str  # namespace/name, or name for a cluster-scoped kind
    where: str  # file:line, or the cluster it was listed from
    effect: Effect

    @property
    def qualified_kind(self) -> str:
        """`CiliumNetworkPolicy.cilium.io`: the name --ignore-kind takes, unambiguous."""
        return f"{self.kind}.{self.group}"

    def ignored_by(self, names: frozenset[str]) -> bool:
        """Whether --ignore-kind names it: by its kind alone, or by kind.group."""
        return self.kind in names or self.qualified_kind in names


def classify(api_version: str, kind: str) -> Effect | None:
    """The effect of a policy kind nsgsync does not compile; None for any other kind."""
    return KNOWN_KINDS.get((group_of(api_version), kind))
