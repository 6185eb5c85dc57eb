"""nsgsync's GCP adapter: VPC firewall rules targeting the nodes, from the Intent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nsgsync.intent import Finding, Intent
from nsgsync.model import Topology
from nsgsync.plan import Change, Resource
from nsgsync.provider import (
    Adapter,
    Applied,
    Budget,
    Created,
    Footprint,
    Phase,
    Progress,
    Provider,
    Snapshot,
    Timeouts,
)
from nsgsync_gcp import render as _render
from nsgsync_gcp import rules
from nsgsync_gcp.config import GcpConfig, GcpSegmentConfig, load_config

if TYPE_CHECKING:
    from nsgsync_gcp.client import Session


@dataclass(frozen=True)
class GcpAdapter:
    """Configured once from the topology's `gcp:` block; holds nothing else."""

    topology: Topology
    config: GcpConfig
    segments: Mapping[str, GcpSegmentConfig]
    name: str = "gcp"
    # A PUT under an existing rule's name replaces its content in one call; desired then
    # keeps that name for that content (rules.adopt_names), so the next plan is empty.
    pairs: bool = True
    # No containers.
    cascades: bool = False

    @property
    def cluster(self) -> str:
        return self.topology.cluster

    def session(self, **clients: Any) -> Session:
        """`firewalls_client=` a FirewallsClient (tests); `retry=` a google-api-core Retry
        and `operation_timeout=` seconds override the defaults. Without a client, one is
        built from the environment's credentials, at `gcp.apiEndpoint` if set."""
        # Imported here, not at the top: an offline plan never talks to compute, and the
        # SDK takes seconds to import.
        from nsgsync_gcp import client as compute

        client = clients.get("firewalls_client") or compute.make_client(self.config.api_endpoint)
        return compute.Session(
            client,
            retry=clients.get("retry") or compute.DEFAULT_RETRY,
            operation_timeout=clients.get("operation_timeout") or compute.OPERATION_TIMEOUT,
            timeouts=clients.get("timeouts") or Timeouts(),
        )

    def read(self, session: Any) -> Snapshot:
        from nsgsync_gcp import client as compute

        resources, foreign = compute.read(session, self.config, self.cluster)
        return Snapshot(tuple(resources), foreign)

    def reread(
        self, session: Any, touched: Sequence[Resource], *, applied: Applied
    ) -> tuple[Resource, ...]:
        """The touched rules by name (no containers here): one list call per 20 names."""
        from nsgsync_gcp import client as compute

        resources, _ = compute.read(
            session, self.config, self.cluster, names=[r.key for r in touched]
        )
        return tuple(resources)

    def desired(self, intent: Intent, snapshot: Snapshot) -> tuple[list[Resource], list[Finding]]:
        desired, findings = _render.render(intent, self.topology, self.config, self.segments)
        _render.check_limits(desired, self.topology, self.config)
        if isinstance(snapshot.constraints, rules.Foreign):
            rules.check_names(desired, snapshot.constraints, self.config.project)
        return rules.adopt_names(desired, snapshot.resources), findings

    def restore(
        self, type_: str, key: str, body: Mapping[str, Any], segment: str | None
    ) -> Resource:
        return _render.firewall_resource(body, segment)

    def budget(self, resource: Resource, snapshot: Snapshot) -> Budget | None:
        return Budget(
            scope=("project", self.config.project),
            what=f"the firewall rules of project {self.config.project}",
            limit=self.config.max_rules,
            hint="raise the project's FIREWALLS quota and gcp.maxRules with it",
        )

    def denies(self, resource: Resource) -> bool:
        return rules.denies(resource)

    def footprint(self, resource: Resource) -> Footprint | None:
        return rules.footprint(resource, self.config.network_path)

    def widens(self, old: Resource, new: Resource) -> bool:
        return rules.widens(old, new)

    def batch_size(self, phase: Phase) -> int:
        return rules.IN_FLIGHT

    def create(
        self,
        session: Any,
        change: Change,
        rules: Sequence[Change],
        *,
        applied: Applied,
        progress: Progress,
    ) -> Created | None:
        raise AssertionError("GCP firewall rules have no container")

    def write(
        self,
        session: Any,
        phase: Phase,
        batch: Sequence[Change],
        *,
        applied: Applied,
        progress: Progress,
    ) -> None:
        from nsgsync_gcp import client as compute

        compute.write(session, self.config.project, batch, progress=progress)


class GcpProvider:
    name = "gcp"

    def configure(self, topology: Topology, *, source: str | None = None) -> GcpAdapter:
        config, segments = load_config(topology, source=source)
        return GcpAdapter(topology, config, segments)


provider = GcpProvider()

__all__ = ["GcpAdapter", "GcpProvider", "provider"]


def _conforms(adapter: GcpAdapter, provider: GcpProvider) -> tuple[Adapter, Provider]:
    """mypy checks here that the adapter and provider keep the contract (docs/providers.md)."""
    return adapter, provider
