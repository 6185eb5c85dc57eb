"""What the sources yield: policies, namespace labels and the pods nsgsync knows of."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from nsgsync.model.k8s import NAMESPACE_NAME_LABEL, NetworkPolicy, PodInfo


@dataclass(frozen=True)
class Inventory:
    policies: tuple[NetworkPolicy, ...] = ()
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    pods: tuple[PodInfo, ...] = ()

    @classmethod
    def build(
        cls,
        policies: Iterable[NetworkPolicy] = (),
        namespaces: Mapping[str, Mapping[str, str]] | None = None,
        pods: Iterable[PodInfo] = (),
        *,
        extra_namespaces: Iterable[str] = (),
    ) -> Inventory:
        """Sorted, with every namespace that anything names and its name label set.

        The API server sets `kubernetes.io/metadata.name` on every namespace, declared or
        not, so selectors on it must see it here too.
        """
        pols = tuple(sorted(policies, key=lambda p: (p.namespace, p.name)))
        pod_list = tuple(sorted(pods, key=lambda p: (p.namespace, p.kind, p.name)))
        labels: dict[str, dict[str, str]] = {
            name: dict(value) for name, value in (namespaces or {}).items()
        }
        for name in [p.namespace for p in pols] + [p.namespace for p in pod_list]:
            labels.setdefault(name, {})
        for name in extra_namespaces:
            labels.setdefault(name, {})
        for name, value in labels.items():
            value[NAMESPACE_NAME_LABEL] = name
        frozen = {n: MappingProxyType(labels[n]) for n in sorted(labels)}
        return cls(pols, MappingProxyType(frozen), pod_list)
