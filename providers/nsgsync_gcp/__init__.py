"""nsgsync's GCP adapter: VPC firewall rules targeting the nodes, from the Intent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nsgsync.intent import Finding, Intent
from nsgsync.model import Topology
from nsgsync.plan import Resource
from nsgsync_gcp import render as _render
from nsgsync_gcp.client import GcpConnection, make_client
from nsgsync_gcp.config import load_config


class GcpProvider:
    name = "gcp"

    def validate(self, topology: Topology) -> None:
        load_config(topology)

    def render(self, intent: Intent, topology: Topology) -> tuple[list[Resource], list[Finding]]:
        return _render.render(intent, topology)

    def check_limits(self, desired: Sequence[Resource], topology: Topology) -> None:
        _render.check_limits(desired, topology)

    def connect(self, topology: Topology, **clients: Any) -> GcpConnection:
        """`firewalls_client=` a FirewallsClient (tests); `retry=` a google-api-core Retry
        and `operation_timeout=` seconds override the defaults. Without a client, one is
        built from the environment's credentials."""
        load_config(topology)
        client = clients.get("firewalls_client") or make_client()
        return GcpConnection(
            topology,
            client,
            retry=clients.get("retry"),
            operation_timeout=clients.get("operation_timeout"),
        )


provider = GcpProvider()

__all__ = ["GcpConnection", "GcpProvider", "provider"]
