"""Calico objects read from manifests or the cluster, and lowered once all are read.

Policies are lowered last because a policy's order needs its Tier, and its selectors may
pick the addresses of NetworkSets read after it (docs/calico.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from nsgsync.errors import InputError, excerpt
from nsgsync.model import calico
from nsgsync.model.kinds import group_of
from nsgsync.model.tiers import TPolicy
from nsgsync.sources.files import Document, _format_loc, _line_at, _metadata, parse_labels

_KINDS = (*calico.POLICY_KINDS, *calico.SET_KINDS, calico.TIER_KIND)
_NAMESPACED = ("NetworkPolicy", "NetworkSet")
# Kubernetes NetworkPolicies as Calico's API server shows them: read as themselves instead.
_KNP_PREFIX = "knp.default."


def is_calico(doc: Document) -> bool:
    api_version, kind = doc.body.get("apiVersion"), doc.body.get("kind")
    return (
        isinstance(api_version, str) and group_of(api_version) in calico.GROUPS and kind in _KINDS
    )


@dataclass
class CalicoReader:
    """Collects Calico documents; `lowered` turns the policies into TPolicies."""

    policies: dict[str, tuple[calico.CalicoPolicy, Document]] = field(default_factory=dict)
    tiers: dict[str, calico.Tier] = field(default_factory=dict)
    sets: dict[str, calico.NetSet] = field(default_factory=dict)

    def add(self, doc: Document) -> None:
        kind = str(doc.body.get("kind"))
        namespaced = kind in _NAMESPACED
        namespace, name = _metadata(doc)
        ns = namespace if namespaced else None
        ref = f"{ns}/{name}" if ns else name
        obj = f"{kind} {ref}"
        if name.startswith(_KNP_PREFIX):
            return
        spec = doc.body.get("spec")
        try:
            if kind == calico.TIER_KIND:
                self.tiers[name] = calico.parse_tier(spec, name=name)
                return
            if kind in calico.SET_KINDS:
                meta = doc.body.get("metadata") or {}
                labels = parse_labels(meta.get("labels"), doc=doc, obj=obj, field="metadata.labels")
                found = calico.parse_network_set(spec, namespace=ns, name=name, labels=labels)
                self.sets[f"{kind}/{ref}"] = found
                return
            policy = calico.parse_policy(
                spec, kind=kind, namespace=ns, name=name, where=f"{doc.file}:{doc.line}"
            )
        except calico.CalicoError as exc:
            path = ["spec", *exc.path]
            raise InputError(
                exc.message,
                file=doc.file,
                line=_line_at(doc, path),
                obj=obj,
                field=_format_loc(path),
            ) from None
        key = f"{kind}/{ref}"
        if key in self.policies:
            raise InputError(
                f"{obj} is defined twice (also in {self.policies[key][0].where})",
                file=doc.file,
                line=doc.line,
                obj=obj,
            )
        self.policies[key] = (policy, doc)

    def lowered(self, namespaces: Mapping[str, Mapping[str, str]]) -> list[TPolicy]:
        out = []
        for policy, doc in self.policies.values():
            if policy.tier != calico.DEFAULT_TIER and policy.tier not in self.tiers:
                raise InputError(
                    f"the policy is in tier {excerpt(policy.tier)}, but no Tier of that name "
                    "was read: its order among the tiers is unknown",
                    file=doc.file,
                    line=_line_at(doc, ["spec", "tier"]),
                    obj=f"{policy.kind} {policy.ref}",
                    field="spec.tier",
                    hint="give the Tier object too (kubectl get tiers.projectcalico.org -o yaml)",
                )
            out.append(
                calico.lower(
                    policy,
                    tiers=self.tiers,
                    sets=tuple(self.sets.values()),
                    namespaces=namespaces,
                )
            )
        return out
