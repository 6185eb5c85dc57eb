"""How the groups reach the pods: SecurityGroupPolicy objects for Security Groups for Pods.

One SecurityGroupPolicy (vpcresources.k8s.aws/v1beta1) per segment and namespace, selecting
the segment's pods. A pod belongs to the first segment that selects it, so a later
segment's selector excludes the earlier ones where a label selector can say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nsgsync.compile.labels import satisfiable
from nsgsync.intent import Finding, Severity
from nsgsync.model import LabelSelector, Operator, Requirement, Topology
from nsgsync.provider import CLUSTER_TAG, SEGMENT_TAG

API_VERSION = "vpcresources.k8s.aws/v1beta1"

_NEGATE = {
    Operator.IN: Operator.NOT_IN,
    Operator.NOT_IN: Operator.IN,
    Operator.EXISTS: Operator.DOES_NOT_EXIST,
    Operator.DOES_NOT_EXIST: Operator.EXISTS,
}


def _negation(selector: LabelSelector) -> Requirement | None:
    """`not selector` as one requirement, where one requirement can say it."""
    reqs = selector.requirements()
    if len(reqs) != 1:
        return None
    r = reqs[0]
    return Requirement(key=r.key, operator=_NEGATE[r.operator], values=r.values)


def _selector_dict(selector: LabelSelector, extra: list[Requirement]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if selector.match_labels:
        out["matchLabels"] = dict(sorted(selector.match_labels.items()))
    exprs = [
        {
            "key": r.key,
            "operator": r.operator.value,
            **({"values": list(r.values)} if r.values else {}),
        }
        for r in (*selector.match_expressions, *extra)
    ]
    if exprs:
        out["matchExpressions"] = exprs
    return out


def security_group_policies(
    topology: Topology,
    namespaces: Mapping[str, Mapping[str, str]],
    group_ids: Mapping[str, str],
) -> tuple[list[dict[str, Any]], list[Finding]]:
    """The SecurityGroupPolicy manifests, sorted by namespace and name, and what they miss."""
    docs: list[dict[str, Any]] = []
    findings: list[Finding] = []
    earlier: dict[str, list[LabelSelector]] = {}
    for seg in topology.segments:
        gid = group_ids.get(seg.name, f"<group of {seg.name}: created by nsgsync apply>")
        extra_ids = list(seg.provider_settings("aws").get("extraGroupIds", []))
        names = sorted(ns for ns, labels in namespaces.items() if seg.takes_namespace(ns, labels))
        if seg.namespace is not None and seg.namespace not in names:
            names.append(seg.namespace)
        for ns in sorted(names):
            if not satisfiable([seg.pod_selector], earlier.get(ns, [])):
                continue  # earlier segments take every pod of this namespace
            exclusions: list[Requirement] = []
            for before in earlier.get(ns, []):
                if not satisfiable([seg.pod_selector, before], []):
                    continue  # the selectors never meet: nothing to exclude
                neg = _negation(before)
                if neg is None:
                    findings.append(
                        Finding(
                            severity=Severity.WARNING,
                            code="aws-attachment-overlap",
                            segment=seg.name,
                            message=(
                                f"the SecurityGroupPolicy of {seg.name} in {ns} cannot exclude "
                                f"the pods of an earlier segment ({before.describe()}): "
                                "those pods match both"
                            ),
                        )
                    )
                else:
                    exclusions.append(neg)
            docs.append(
                {
                    "apiVersion": API_VERSION,
                    "kind": "SecurityGroupPolicy",
                    "metadata": {
                        "name": f"nsgsync-{seg.name}",
                        "namespace": ns,
                        "labels": {
                            CLUSTER_TAG: topology.cluster,
                            SEGMENT_TAG: seg.name,
                        },
                    },
                    "spec": {
                        "podSelector": _selector_dict(seg.pod_selector, exclusions),
                        "securityGroups": {"groupIds": [gid, *extra_ids]},
                    },
                }
            )
            earlier.setdefault(ns, []).append(seg.pod_selector)
    docs.sort(key=lambda d: (d["metadata"]["namespace"], d["metadata"]["name"]))
    return docs, findings
