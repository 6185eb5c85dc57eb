"""The topology's `aws:` block, validated here: only this adapter knows its keys."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nsgsync.errors import TopologyError
from nsgsync.model import Topology


class AwsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    region: str
    vpc_id: str = Field(alias="vpcId", pattern=r"^vpc-[0-9a-z]+$")
    # cidr: one rule per peer prefix; security-group: a peer that is exactly a segment is
    # named by that segment's group (fewer rules, robust to the segment's CIDRs growing).
    peer_mode: Literal["cidr", "security-group"] = Field(default="cidr", alias="peerMode")
    max_rules_per_group: int = Field(default=60, alias="maxRulesPerGroup", ge=1, le=1000)


class AwsSegmentConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    # Groups every pod of the segment also gets in its SecurityGroupPolicy (e.g. the
    # cluster's shared group); nsgsync never changes them.
    extra_group_ids: tuple[str, ...] = Field(default=(), alias="extraGroupIds")


def load_config(topology: Topology) -> tuple[AwsConfig, dict[str, AwsSegmentConfig]]:
    try:
        config = AwsConfig.model_validate(topology.provider_block("aws"))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = "aws." + ".".join(str(p) for p in err["loc"])
        raise TopologyError(
            str(err["msg"]), obj=f"Topology {topology.cluster}", field=field
        ) from None
    segments = {}
    for i, seg in enumerate(topology.segments):
        try:
            segments[seg.name] = AwsSegmentConfig.model_validate(seg.provider_settings("aws"))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = f"segments[{i}].aws." + ".".join(str(p) for p in err["loc"])
            raise TopologyError(
                str(err["msg"]), obj=f"Topology {topology.cluster}", field=field
            ) from None
    return config, segments
