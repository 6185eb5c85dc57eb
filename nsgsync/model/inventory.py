"""What the sources yield: policies, namespace labels and the pods nsgsync knows of."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from nsgsync.model.k8s import NAMESPACE_NAME_LABEL, NetworkPolicy, PodInfo
from nsgsync.model.kinds import ForeignPolicy
from nsgsync.model.tiers import TPolicy


@dataclass(frozen=True)
class Inventory:
    policies: tuple[NetworkPolicy, ...] = ()
    # Every namespace anything names, with its labels; for those in `unknown_namespaces`
    # only the name label is known (no Namespace object described them).
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    pods: tuple[PodInfo, ...] = ()
    unknown_namespaces: frozenset[str] = frozenset()
    # True when `namespaces` is every namespace of the cluster (read from the cluster, or
    # said by the user); otherwise others may exist, their labels and pods unknown.
    namespaces_complete: bool = False
    foreign: tuple[ForeignPolicy, ...] = ()
    # Policies of the other dialects (admin kinds, Calico, Cilium), lowered into the ordered
    # model; nsgsync.semantics arranges them into stages for the cluster's policy engine.
    ordered: tuple[TPolicy, ...] = ()
    # What lowering them widened or left out: (finding code, policy, message), reported by
    # the compiler as findings.
    notes: tuple[tuple[str, str, str], ...] = ()

    @classmethod
    def build(
        cls,
        policies: Iterable[NetworkPolicy] = (),
        namespaces: Mapping[str, Mapping[str, str]] | None = None,
        pods: Iterable[PodInfo] = (),
        *,
        extra_namespaces: Iterable[str] = (),
        unknown_namespaces: Iterable[str] = (),
        namespaces_complete: bool = False,
        foreign: Iterable[ForeignPolicy] = (),
        ordered: Iterable[TPolicy] = (),
        notes: Iterable[tuple[str, str, str]] = (),
    ) -> Inventory:
        """Sorted, with every namespace that anything names and its name label set.

        `namespaces` are the namespaces whose labels are known (a Namespace object
        described them), less any named in `unknown_namespaces`; a namespace that only
        policies, pods or `extra_namespaces` name has unknown labels. The API server sets
        `kubernetes.io/metadata.name` on every namespace, declared or not, so selectors on
        it see it here too.
        """
        pols = tuple(sorted(policies, key=lambda p: (p.namespace, p.name)))
        pod_list = tuple(sorted(pods, key=lambda p: (p.namespace, p.kind, p.name)))
        labels: dict[str, dict[str, str]] = {
            name: dict(value) for name, value in (namespaces or {}).items()
        }
        unknown = set(unknown_namespaces)
        mentioned = [p.namespace for p in pols] + [p.namespace for p in pod_list]
        for name in [*mentioned, *extra_namespaces]:
            if name not in labels:
                labels[name] = {}
                unknown.add(name)
        for name, value in labels.items():
            value[NAMESPACE_NAME_LABEL] = name
        frozen = {n: MappingProxyType(labels[n]) for n in sorted(labels)}
        return cls(
            pols,
            MappingProxyType(frozen),
            pod_list,
            unknown_namespaces=frozenset(unknown & labels.keys()),
            namespaces_complete=namespaces_complete,
            foreign=tuple(sorted(set(foreign))),
            ordered=tuple(sorted(ordered, key=lambda p: (p.dialect, p.ref))),
            notes=tuple(sorted(set(notes))),
        )

    @property
    def described_namespaces(self) -> dict[str, Mapping[str, str]]:
        """The namespaces whose labels are known, with their labels."""
        return {n: v for n, v in self.namespaces.items() if n not in self.unknown_namespaces}
