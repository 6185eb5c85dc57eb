"""nsgsync's AWS adapter: a security group per segment, rules from the Intent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nsgsync.intent import Finding, Intent
from nsgsync.model import Topology
from nsgsync.plan import Resource
from nsgsync_aws import render as _render
from nsgsync_aws.attach import security_group_policies
from nsgsync_aws.client import AwsConnection, make_client
from nsgsync_aws.config import load_config
from nsgsync_aws.render import GROUP


class AwsProvider:
    name = "aws"

    def validate(self, topology: Topology) -> None:
        load_config(topology)

    def render(self, intent: Intent, topology: Topology) -> tuple[list[Resource], list[Finding]]:
        return _render.render(intent, topology)

    def check_limits(self, desired: Sequence[Resource], topology: Topology) -> None:
        _render.check_limits(desired, topology)

    def attachments(
        self,
        topology: Topology,
        namespaces: Mapping[str, Mapping[str, str]],
        actual: Sequence[Resource],
    ) -> tuple[list[dict[str, Any]], list[Finding]]:
        """SecurityGroupPolicy objects giving each segment's pods its group."""
        ids = {
            r.segment: r.cloud_id for r in actual if r.type == GROUP and r.segment and r.cloud_id
        }
        return security_group_policies(topology, namespaces, ids)

    def connect(self, topology: Topology, **clients: Any) -> AwsConnection:
        client = clients.get("ec2") or make_client(load_config(topology)[0].region)
        return AwsConnection(topology, client)


provider = AwsProvider()

__all__ = ["AwsConnection", "AwsProvider", "provider"]
