"""The topology: how a cluster's pods map onto address space (docs/contracts.md).

The key names are a contract; unknown keys are an error. Provider blocks are kept as
raw mappings here and validated by the provider in use, so the core knows no cloud.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import re
import sys
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from nsgsync.errors import did_you_mean, excerpt
from nsgsync.model.k8s import EVERYTHING, LabelSelector
from nsgsync.net import AddressSet

_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
_NODES_APART = (
    "every isolated segment allows the nodes, so pods at those addresses would reach them "
    "all; list only the nodes' own ranges in nodeCIDRs and only pod ranges in podCIDRs"
)
_OPAQUE = ConfigDict(
    frozen=True,
    extra="allow",
    populate_by_name=True,
    json_schema_extra={"additionalProperties": False},
)


def _providers() -> frozenset[str]:
    # The names installed adapters register (docs/providers.md); read from package metadata,
    # so the model names no cloud and imports no adapter.
    return _providers_on(tuple(sys.path))


@functools.lru_cache(maxsize=4)
def _providers_on(path: tuple[str, ...]) -> frozenset[str]:
    # Once per import path: every segment asks, and scanning the installed distributions'
    # metadata cost 6 ms a time (2.6 s for 400 segments); a changed sys.path (a plugin
    # added at run time) is a new key.
    return frozenset(ep.name for ep in entry_points(group="nsgsync.providers"))


def _provider_blocks(data: Any, model: type[BaseModel]) -> Any:
    """Keys that are no field must name an installed provider and hold a mapping."""
    if not isinstance(data, Mapping):
        return data
    spelled = {f.alias or n for n, f in model.model_fields.items()}  # as files spell them
    known = spelled | set(model.model_fields)
    providers = _providers() | ({str(data.get("provider"))} if "provider" in data else set())
    for key, value in data.items():
        if key in known:
            continue
        if key not in providers:
            # Reported as an unknown field at its own place (segments[0].podSelecter), with
            # the closest key, as readers of manifests report theirs.
            raise PydanticCustomError(
                "unknown_key",
                "unknown key {key}{hint}",
                {"key": str(key), "hint": did_you_mean(str(key), sorted(spelled | providers))},
            )
        if value is not None and not isinstance(value, Mapping):
            raise ValueError(f"{key}: a provider block must be a mapping, not {excerpt(value)}")
    return data


def _cidr_list(values: list[str]) -> list[str]:
    for text in values:
        if "/" not in text:
            raise ValueError(f"{excerpt(text)} is not a CIDR: it has no prefix length")
        try:
            ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise ValueError(
                f"{excerpt(text)} is not a valid network CIDR ({excerpt(str(exc))})"
            ) from None
    return values


class Segment(BaseModel):
    # Keys beyond the fields are provider blocks, kept opaque: the adapter validates its own.
    model_config = _OPAQUE

    name: str
    namespace: str | None = None
    namespace_selector: LabelSelector | None = Field(default=None, alias="namespaceSelector")
    pod_selector: LabelSelector = Field(default=EVERYTHING, alias="podSelector")
    cidrs: list[str]

    _blocks = model_validator(mode="before")(lambda data: _provider_blocks(data, Segment))

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            raise ValueError(
                f"segment name {excerpt(value)} must be 1-40 lowercase letters, digits or '-', "
                "starting with a letter (it becomes part of cloud resource names)"
            )
        return value

    @field_validator("cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("a segment needs at least one CIDR")
        return _cidr_list(value)

    @model_validator(mode="after")
    def _one_namespace_form(self) -> Segment:
        if (self.namespace is None) == (self.namespace_selector is None):
            raise ValueError("give exactly one of namespace or namespaceSelector")
        return self

    @property
    def addresses(self) -> AddressSet:
        return AddressSet.from_cidrs(self.cidrs)

    def takes_namespace(self, namespace: str, namespace_labels: Mapping[str, str]) -> bool:
        if self.namespace is not None:
            return self.namespace == namespace
        assert self.namespace_selector is not None
        return self.namespace_selector.matches(namespace_labels)

    def provider_settings(self, provider: str) -> dict[str, Any]:
        return dict((self.model_extra or {}).get(provider) or {})


class Topology(BaseModel):
    model_config = _OPAQUE

    api_version: Literal["nsgsync.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Topology"]
    cluster: str
    provider: str
    pod_cidrs: list[str] = Field(alias="podCIDRs")
    node_cidrs: list[str] = Field(default_factory=list, alias="nodeCIDRs")
    segments: list[Segment]
    # The network plugin that enforces the policies, which decides how dialects order
    # (docs/admin-policies.md#policy-engines); None: inferred from the kinds present.
    policy_engine: Literal["kubernetes", "calico", "cilium"] | None = Field(
        default=None, alias="policyEngine"
    )

    _blocks = model_validator(mode="before")(lambda data: _provider_blocks(data, Topology))

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str) -> str:
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            raise ValueError(
                f"cluster {excerpt(value)} must be 1-40 lowercase letters, digits or '-', starting "
                "with a letter (it names and tags everything nsgsync owns)"
            )
        return value

    @field_validator("pod_cidrs")
    @classmethod
    def _pod_cidrs(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("podCIDRs needs at least one CIDR")
        return _cidr_list(value)

    @field_validator("node_cidrs")
    @classmethod
    def _node_cidrs(cls, value: list[str]) -> list[str]:
        return _cidr_list(value)

    @model_validator(mode="after")
    def _segments_fit(self) -> Topology:
        pods = AddressSet.from_cidrs(self.pod_cidrs)
        seen: dict[str, int] = {}
        spans: list[tuple[int, int, int, int]] = []  # (family, first, last, segment index)
        for i, seg in enumerate(self.segments):
            if seg.name in seen:
                raise ValueError(
                    f"segments[{i}]: duplicate segment name {seg.name!r} "
                    f"(first at segments[{seen[seg.name]}])"
                )
            seen[seg.name] = i
            addrs = seg.addresses
            if not addrs.issubset(pods):
                outside = ", ".join((addrs - pods).cidrs()[:3])
                raise ValueError(
                    f"segments[{i}] ({seg.name}): cidrs reach outside podCIDRs ({outside})"
                )
            spans += [(4, lo, hi, i) for lo, hi in addrs.v4] + [
                (6, lo, hi, i) for lo, hi in addrs.v6
            ]
        # Sorted by start, two segments overlap only if some span starts before the
        # previous one ends: one pass instead of comparing every pair.
        spans.sort()
        for (fam_a, _, end_a, a), (fam_b, start_b, _, b) in itertools.pairwise(spans):
            if fam_a == fam_b and start_b <= end_a and a != b:
                first, second = sorted((a, b))
                one, two = self.segments[first], self.segments[second]
                both = ", ".join((one.addresses & two.addresses).cidrs()[:3])
                raise ValueError(
                    f"segments[{second}] ({two.name}): cidrs overlap segment {one.name!r} ({both})"
                )
        self._nodes_apart(pods)
        return self

    def _nodes_apart(self, pods: AddressSet) -> None:
        """Node addresses must not be pod addresses.

        Every isolated direction allows `nodeCIDRs` (kubelet probes); pods inside them would
        then reach every isolated segment with every protocol, whatever the policies say.
        """
        nodes = self.node_addresses
        if not nodes.overlaps(pods):
            return
        for node_cidr in self.node_cidrs:
            node = AddressSet.of(node_cidr)
            for pod_cidr in self.pod_cidrs:
                both = node & AddressSet.of(pod_cidr)
                if not both:
                    continue
                # Segments lie inside podCIDRs; those hit are where the harm lands.
                hit = [seg.name for seg in self.segments if seg.addresses.overlaps(both)]
                within = ""
                if hit:
                    more = f" and {len(hit) - 3} more" if len(hit) > 3 else ""
                    within = f", within segments {', '.join(hit[:3])}{more}"
                raise ValueError(
                    f"nodeCIDRs {node_cidr} overlaps podCIDRs {pod_cidr} "
                    f"({', '.join(both.cidrs()[:3])}{within}): {_NODES_APART}"
                )

    @property
    def pod_addresses(self) -> AddressSet:
        return AddressSet.from_cidrs(self.pod_cidrs)

    @property
    def node_addresses(self) -> AddressSet:
        return AddressSet.from_cidrs(self.node_cidrs)

    def segment_for(
        self, namespace: str, namespace_labels: Mapping[str, str], labels: Mapping[str, str]
    ) -> Segment | None:
        """A pod's segment: the first that selects it (never decided from its IP)."""
        for seg in self.segments:
            if seg.takes_namespace(namespace, namespace_labels) and seg.pod_selector.matches(
                labels
            ):
                return seg
        return None

    def unsegmented_addresses(self) -> AddressSet:
        taken = AddressSet()
        for seg in self.segments:
            taken = taken | seg.addresses
        return self.pod_addresses - taken

    def segment(self, name: str) -> Segment:
        for seg in self.segments:
            if seg.name == name:
                return seg
        raise KeyError(name)

    def provider_block(self, provider: str | None = None) -> dict[str, Any]:
        return dict((self.model_extra or {}).get(provider or self.provider) or {})
