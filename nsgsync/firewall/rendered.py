"""The provider's rendered rules, through the provider's public API, in one place."""

from __future__ import annotations

from nsgsync.intent import Finding, Intent
from nsgsync.model import Topology
from nsgsync.plan import Resource
from nsgsync.provider import Snapshot, configure


def rendered_rules(intent: Intent, topology: Topology) -> tuple[list[Resource], list[Finding]]:
    """The resources the topology's provider would write for the Intent (pure, offline)."""
    return configure(topology).desired(intent, Snapshot(offline=True))
