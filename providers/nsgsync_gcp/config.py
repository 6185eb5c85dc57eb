"""The topology's `gcp:` block, validated here: only this adapter knows its keys."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nsgsync.model import Topology
from nsgsync.provider import segment_settings, settings

# GKE's own allow rules for the pod ranges sit at 1000; a deny that must win sits below it.
GKE_PRIORITY = 1000
_RFC1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_NETWORK = re.compile(
    r"^(?:(?:https?://[^/]+/compute/(?:v1|beta|alpha)/)?projects/(?P<project>[^/]+)/global/networks/)?"
    r"(?P<name>[^/]+)$"
)
_SERVICE_ACCOUNT = re.compile(r"^[^@\s]+@[^@\s]+$")


def _tags(values: tuple[str, ...]) -> tuple[str, ...]:
    for tag in values:
        if not _RFC1035.match(tag):
            raise ValueError(f"network tag {tag!r} must be 1-63 lowercase letters, digits or '-'")
    return values


def _accounts(values: tuple[str, ...]) -> tuple[str, ...]:
    for account in values:
        if not _SERVICE_ACCOUNT.match(account):
            raise ValueError(f"{account!r} is not a service account email")
    return values


class GcpConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    project: str = Field(pattern=r"^(?:[a-z][-a-z0-9.]*:)?[a-z][-a-z0-9]{4,28}[a-z0-9]$")
    # A name (`vpc-prod`), a path (`projects/{project}/global/networks/vpc-prod`) or a URL.
    network: str
    target_tags: tuple[str, ...] = Field(default=(), alias="targetTags")
    target_service_accounts: tuple[str, ...] = Field(default=(), alias="targetServiceAccounts")
    priority_band: tuple[int, int] = Field(default=(100, 899), alias="priorityBand")
    # Firewall rules per project is a quota (compute.project-info), not a fixed number.
    max_rules: int = Field(default=500, alias="maxRules", ge=1)
    # The compute API's host, for Private Service Connect (`https://compute-xyz.p.googleapis.com`)
    # or a stand-in; the default is the SDK's (compute.googleapis.com).
    api_endpoint: str | None = Field(default=None, alias="apiEndpoint", pattern=r"^https?://\S+$")

    @field_validator("target_tags")
    @classmethod
    def _target_tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _tags(value)

    @field_validator("target_service_accounts")
    @classmethod
    def _target_accounts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _accounts(value)

    @field_validator("network")
    @classmethod
    def _network(cls, value: str) -> str:
        m = _NETWORK.match(value)
        if not m or not _RFC1035.match(m.group("name")):
            raise ValueError(
                f"network {value!r} must be a VPC name or projects/PROJECT/global/networks/NAME"
            )
        return value

    @field_validator("priority_band")
    @classmethod
    def _band(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 0 <= low < high < GKE_PRIORITY:
            raise ValueError(
                f"priorityBand {list(value)} must be [low, high] with 0 <= low < high < "
                f"{GKE_PRIORITY}: nsgsync's deny rules sit at `high` and must win over GKE's own "
                f"allow rules at {GKE_PRIORITY}"
            )
        return value

    @model_validator(mode="after")
    def _network_in_project(self) -> GcpConfig:
        m = _NETWORK.match(self.network)
        if m and m.group("project") not in (None, self.project):
            raise ValueError(
                f"network {self.network!r} belongs to project {m.group('project')}, not "
                f"{self.project}: firewall rules live in their network's project (for a "
                "Shared VPC, set project to the host project)"
            )
        return self

    @model_validator(mode="after")
    def _one_target(self) -> GcpConfig:
        if bool(self.target_tags) == bool(self.target_service_accounts):
            raise ValueError(
                "give exactly one of targetTags or targetServiceAccounts (the cluster's nodes: "
                "GKE pods use alias ranges on the nodes, so the rules target the nodes)"
            )
        return self

    @property
    def network_path(self) -> str:
        """`projects/{project}/global/networks/{name}`, the form read normalises to."""
        m = _NETWORK.match(self.network)
        assert m is not None
        return f"projects/{m.group('project') or self.project}/global/networks/{m.group('name')}"

    @property
    def allow_priority(self) -> int:
        return self.priority_band[0]

    @property
    def deny_priority(self) -> int:
        return self.priority_band[1]

    def in_band(self, priority: int) -> bool:
        return self.priority_band[0] <= priority <= self.priority_band[1]


class GcpSegmentConfig(BaseModel):
    """Per segment: other targets, for a segment whose pods run on a node pool of their own."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    target_tags: tuple[str, ...] = Field(default=(), alias="targetTags")
    target_service_accounts: tuple[str, ...] = Field(default=(), alias="targetServiceAccounts")

    @field_validator("target_tags")
    @classmethod
    def _target_tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _tags(value)

    @field_validator("target_service_accounts")
    @classmethod
    def _target_accounts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _accounts(value)

    @model_validator(mode="after")
    def _at_most_one_target(self) -> GcpSegmentConfig:
        if self.target_tags and self.target_service_accounts:
            raise ValueError("give at most one of targetTags or targetServiceAccounts")
        return self


def targets(config: GcpConfig, segment: GcpSegmentConfig | None) -> dict[str, list[str]]:
    """The `targetTags` or `targetServiceAccounts` field of a segment's rules."""
    if segment is not None and segment.target_tags:
        return {"targetTags": sorted(segment.target_tags)}
    if segment is not None and segment.target_service_accounts:
        return {"targetServiceAccounts": sorted(segment.target_service_accounts)}
    if config.target_tags:
        return {"targetTags": sorted(config.target_tags)}
    return {"targetServiceAccounts": sorted(config.target_service_accounts)}


def load_config(
    topology: Topology, *, source: str | None = None
) -> tuple[GcpConfig, dict[str, GcpSegmentConfig]]:
    config = settings(
        GcpConfig, topology.provider_block("gcp"), topology=topology, field="gcp", source=source
    )
    return config, segment_settings(GcpSegmentConfig, topology, "gcp", source=source)
