"""The topology's `aws:` block, validated here: only this adapter knows its keys."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nsgsync.model import Topology
from nsgsync.provider import segment_settings, settings


class AwsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    region: str
    vpc_id: str = Field(alias="vpcId", pattern=r"^vpc-[0-9a-z]+$")
    # cidr: one rule per peer prefix; security-group: a segment that is wholly a peer is
    # named by its group (fewer rules, robust to the segment's CIDRs growing); auto: by its
    # group where that is one rule in place of several CIDRs, else by CIDRs.
    peer_mode: Literal["auto", "cidr", "security-group"] = Field(default="auto", alias="peerMode")
    max_rules_per_group: int = Field(default=60, alias="maxRulesPerGroup", ge=1, le=1000)
    # fail: a side over maxRulesPerGroup fails the plan; widen: merge the rules that let
    # through least beyond themselves (wider addresses or ports) until it fits, each a
    # finding (aws-widened-to-fit).
    on_limit: Literal["fail", "widen"] = Field(default="fail", alias="onLimit")


class AwsSegmentConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    # Groups every pod of the segment also gets in its SecurityGroupPolicy (e.g. the
    # cluster's shared group); nsgsync never changes them.
    extra_group_ids: tuple[str, ...] = Field(default=(), alias="extraGroupIds")


def load_config(
    topology: Topology, *, source: str | None = None
) -> tuple[AwsConfig, dict[str, AwsSegmentConfig]]:
    config = settings(
        AwsConfig, topology.provider_block("aws"), topology=topology, field="aws", source=source
    )
    return config, segment_settings(AwsSegmentConfig, topology, "aws", source=source)
