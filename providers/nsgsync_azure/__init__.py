"""nsgsync's Azure adapter: an NSG per pod subnet, rules in a priority band nsgsync owns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nsgsync.intent import Finding, Intent
from nsgsync.model import Topology
from nsgsync.plan import Resource
from nsgsync_azure import render as _render
from nsgsync_azure.client import AzureConnection, make_client
from nsgsync_azure.config import load


class AzureProvider:
    name = "azure"

    def validate(self, topology: Topology) -> None:
        load(topology)

    def render(self, intent: Intent, topology: Topology) -> tuple[list[Resource], list[Finding]]:
        return _render.render(intent, topology)

    def check_limits(self, desired: Sequence[Resource], topology: Topology) -> None:
        _render.check_limits(desired, topology)

    def connect(self, topology: Topology, **clients: Any) -> AzureConnection:
        client = clients.get("network_client") or make_client(load(topology).config)
        return AzureConnection(topology, client)


provider = AzureProvider()

__all__ = ["AzureConnection", "AzureProvider", "provider"]
