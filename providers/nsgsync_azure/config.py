"""The topology's `azure:` blocks, validated here: only this adapter knows their keys.

Besides the keys, this decides where each segment's rules live: which NSG, on which
subnets. Segments sharing a subnet share its NSG (a subnet takes one NSG); their rules are
told apart by the segments' CIDRs.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nsgsync.errors import TopologyError
from nsgsync.model import Topology
from nsgsync.provider import segment_settings, settings

_GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# ARM's rule for resource names: 1-80 word characters, '.', '-', '_'; no trailing '.' or '-'.
_ARM_NAME = r"^\w(?:[\w.-]{0,78}\w)?$"
SUBNET_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Network"
    r"/virtualNetworks/(?P<vnet>[^/]+)/subnets/(?P<subnet>[^/]+)$",
    re.IGNORECASE,
)
MIN_PRIORITY = 100
MAX_PRIORITY = 4096


class AzureConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    subscription_id: str = Field(alias="subscriptionId", pattern=_GUID)
    resource_group: str = Field(alias="resourceGroup", min_length=1, max_length=90)
    location: str = Field(min_length=1)
    # The VNet's address space: what the VirtualNetwork service tag (and so Azure's default
    # allow rules) covers. Used to warn when pods would be invisible to an NSG.
    vnet_cidrs: tuple[str, ...] = Field(default=(), alias="vnetCIDRs")
    # Priorities nsgsync owns in every NSG it writes to; rules outside are never touched.
    priority_band: tuple[int, int] = Field(default=(1000, 3999), alias="priorityBand")
    # The cloud the subscription lives in (its ARM endpoint and sign-in authority), or an
    # explicit ARM endpoint (Azure Stack Hub, a stand-in); armEndpoint wins.
    cloud: Literal["AzurePublicCloud", "AzureUSGovernment", "AzureChinaCloud"] = "AzurePublicCloud"
    arm_endpoint: str | None = Field(default=None, alias="armEndpoint", pattern=r"^https?://\S+$")

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        # ARM reports "West Europe" back as "westeurope"; compare in that form.
        return value.replace(" ", "").lower()

    @field_validator("vnet_cidrs")
    @classmethod
    def _vnet_cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            try:
                ipaddress.ip_network(text, strict=True)
            except ValueError as exc:
                raise ValueError(f"{text!r} is not a valid network CIDR ({exc})") from None
        return value

    @field_validator("priority_band")
    @classmethod
    def _band(cls, value: tuple[int, int]) -> tuple[int, int]:
        lo, hi = value
        if not MIN_PRIORITY <= lo <= hi <= MAX_PRIORITY:
            raise ValueError(
                f"priorityBand [{lo}, {hi}] must be two priorities with "
                f"{MIN_PRIORITY} <= first <= last <= {MAX_PRIORITY}"
            )
        return value


class AzureSegmentConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    subnet_id: str | None = Field(default=None, alias="subnetId")
    # An NSG that exists already (made by hand or by Terraform): nsgsync keeps its own rules
    # in it and never creates, retags or deletes it.
    nsg_name: str | None = Field(default=None, alias="nsgName", pattern=_ARM_NAME)

    @field_validator("subnet_id")
    @classmethod
    def _subnet_id(cls, value: str | None) -> str | None:
        if value is not None and not SUBNET_ID.match(value):
            raise ValueError(
                f"{value!r} is not a subnet resource id (/subscriptions/<id>/resourceGroups/"
                "<rg>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>)"
            )
        return value


@dataclass(frozen=True)
class Placement:
    """One NSG nsgsync writes rules into, the segments whose rules it holds, its subnets."""

    name: str
    segments: tuple[str, ...]  # topology order; the first names and tags the NSG
    subnets: tuple[str, ...]  # subnet ids, as the topology spells them
    owned: bool  # False: an existing NSG named by nsgName

    @property
    def segment(self) -> str:
        return self.segments[0]


@dataclass(frozen=True)
class Settings:
    config: AzureConfig
    segments: dict[str, AzureSegmentConfig]
    placements: tuple[Placement, ...]

    def placement_of(self, segment: str) -> Placement:
        return self._placement_by_segment[segment]

    @cached_property
    def _placement_by_segment(self) -> dict[str, Placement]:
        # One lookup per segment: a scan of the placements each time was quadratic in
        # segments (0.8 s of a 4,000-segment plan).
        index: dict[str, Placement] = {}
        for p in self.placements:
            for segment in p.segments:
                index.setdefault(segment, p)
        return index

    def placement_named(self, name: str) -> Placement | None:
        for p in self.placements:
            if p.name.lower() == name.lower():
                return p
        return None

    def nsg_id(self, name: str) -> str:
        c = self.config
        return (
            f"/subscriptions/{c.subscription_id}/resourceGroups/{c.resource_group}"
            f"/providers/Microsoft.Network/networkSecurityGroups/{name}"
        )


def nsg_name(cluster: str, segment: str) -> str:
    name = f"nsgsync-{cluster}-{segment}"
    if len(name) <= 80:
        return name
    # Cluster and segment names are 40 characters each at most: keep the name unique.
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[:69]}-{digest}"


def load_config(topology: Topology, *, source: str | None = None) -> AzureConfig:
    block = topology.provider_block("azure")
    return settings(AzureConfig, block, topology=topology, field="azure", source=source)


def load(topology: Topology, *, source: str | None = None) -> Settings:
    config = load_config(topology, source=source)
    where = f"Topology {topology.cluster}"
    segments: dict[str, AzureSegmentConfig] = {}
    groups: dict[str, list[str]] = {}
    explicit: dict[str, str] = {}
    subnets: dict[str, list[str]] = {}
    spelled: dict[str, str] = {}
    validated = segment_settings(AzureSegmentConfig, topology, "azure", source=source)
    for i, seg in enumerate(topology.segments):
        cfg = segments[seg.name] = validated[seg.name]
        if cfg.nsg_name is None and cfg.subnet_id is None:
            raise TopologyError(
                "give subnetId (the pod subnet whose NSG nsgsync creates and associates) or "
                "nsgName (an existing NSG nsgsync keeps its rules in)",
                obj=where,
                field=f"segments[{i}].azure",
            )
        if cfg.subnet_id is not None:
            found = SUBNET_ID.match(cfg.subnet_id)
            assert found is not None
            if found["sub"].lower() != config.subscription_id.lower():
                raise TopologyError(
                    f"subnet {cfg.subnet_id} is in subscription {found['sub']}, not in "
                    f"azure.subscriptionId {config.subscription_id}: an NSG and its subnet "
                    "share a subscription",
                    obj=where,
                    field=f"segments[{i}].azure.subnetId",
                )
            subnets.setdefault(cfg.subnet_id.lower(), []).append(seg.name)
            spelled.setdefault(cfg.subnet_id.lower(), cfg.subnet_id)
        if cfg.nsg_name is not None:
            key = "name:" + cfg.nsg_name.lower()
            explicit[key] = cfg.nsg_name
        else:
            assert cfg.subnet_id is not None
            key = "subnet:" + cfg.subnet_id.lower()
        groups.setdefault(key, []).append(seg.name)
    # A subnet takes one NSG, so every segment on a subnet must land in the same group.
    group_of = {seg: key for key, members in groups.items() for seg in members}
    for subnet, members in subnets.items():
        keys = {group_of[s] for s in members}
        if len(keys) > 1:
            raise TopologyError(
                f"segments {', '.join(members)} share subnet {spelled[subnet]} but not an NSG "
                "(a subnet takes one NSG): give them all the same azure.nsgName, or none",
                obj=where,
                field="segments[].azure",
            )
    placements: list[Placement] = []
    names: dict[str, str] = {}
    for key, members in groups.items():
        owned = key not in explicit
        name = nsg_name(topology.cluster, members[0]) if owned else explicit[key]
        if name.lower() in names:
            raise TopologyError(
                f"NSG name {name} is used for segments {names[name.lower()]} and "
                f"{', '.join(members)}; give one of them another azure.nsgName",
                obj=where,
                field="segments[].azure.nsgName",
            )
        names[name.lower()] = ", ".join(members)
        on = tuple(
            dict.fromkeys(
                spelled[sid.lower()]
                for sid in (segments[m].subnet_id for m in members)
                if sid is not None
            )
        )
        placements.append(Placement(name, tuple(members), on, owned))
    return Settings(config, segments, tuple(placements))
