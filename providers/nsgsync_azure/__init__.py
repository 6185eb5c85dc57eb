"""nsgsync's Azure adapter: an NSG per pod subnet, rules in a priority band nsgsync owns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nsgsync.intent import Finding, Intent
from nsgsync.model import Topology
from nsgsync.plan import Change, Resource, Role
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
)
from nsgsync_azure import render as _render
from nsgsync_azure.binding import Held, bind
from nsgsync_azure.config import Settings, load
from nsgsync_azure.render import ASSOCIATION, MAX_RULES_PER_NSG, NSG

if TYPE_CHECKING:
    from nsgsync_azure.client import Arm


@dataclass(frozen=True)
class AzureAdapter:
    """Configured once from the topology's `azure:` block; holds nothing else."""

    topology: Topology
    settings: Settings
    name: str = "azure"
    # A rule PUT under an existing rule's name (and priority) replaces its content in one
    # call; desired then keeps that name for that content (binding.adopt_names).
    pairs: bool = True
    # An NSG is deleted with its rules.
    cascades: bool = True

    @property
    def cluster(self) -> str:
        return self.topology.cluster

    def session(self, **clients: Any) -> Any:
        """`network_client=` a NetworkManagementClient (tests), `credential=` a token
        credential; else a client from the environment at azure.cloud / azure.armEndpoint."""
        # Imported here, not at the top: an offline plan never talks to ARM, and the SDK
        # takes most of a second to import.
        from nsgsync_azure.client import make_client

        return clients.get("network_client") or make_client(
            self.settings.config, clients.get("credential"), timeouts=clients.get("timeouts")
        )

    def _arm(self, session: Any) -> Arm:
        from nsgsync_azure.client import Arm

        return Arm(session, self.settings, self.cluster)

    def read(self, session: Any) -> Snapshot:
        arm = self._arm(session)
        resources = arm.read()
        return Snapshot(tuple(resources), arm.held(), users=dict(arm.users))

    def reread(
        self, session: Any, touched: Sequence[Resource], *, applied: Applied
    ) -> tuple[Resource, ...]:
        """The touched NSGs with their rules (one GET each) and the touched subnets'
        associations, with the NSGs they name."""
        nsgs: set[str] = set()
        subnets: set[str] = set()
        for r in touched:
            if r.type == ASSOCIATION:
                subnets.add(str(r.body["id"]))
                ref = ((r.body.get("properties") or {}).get("networkSecurityGroup") or {}).get("id")
                if ref:
                    nsgs.add(str(ref).rsplit("/", 1)[-1])
            else:
                nsgs.add(r.ident.parts[0])
        return tuple(self._arm(session).read(nsgs=nsgs, subnets=subnets))

    def desired(self, intent: Intent, snapshot: Snapshot) -> tuple[list[Resource], list[Finding]]:
        desired, findings = _render.render_with(intent, self.topology, self.settings)
        _render.check_limits(desired)
        held = snapshot.constraints if isinstance(snapshot.constraints, Held) else None
        if held is not None:
            desired = bind(desired, snapshot.resources, held, self.settings.config, self.cluster)
        return sorted(desired, key=lambda r: r.key), findings

    def restore(
        self, type_: str, key: str, body: Mapping[str, Any], segment: str | None
    ) -> Resource:
        if type_ == NSG:
            return _render.nsg_resource(body, segment)
        if type_ == ASSOCIATION:
            return _render.association_resource(str(body["id"]), body, segment)
        # The one place a key is read back: a saved plan names a rule's NSG only there.
        return _render.rule_resource(key.split("/", 2)[1], body, segment)

    def budget(self, resource: Resource, snapshot: Snapshot) -> Budget | None:
        if resource.role is not Role.RULE:
            return None
        nsg = resource.ident.parts[0]
        held = snapshot.constraints if isinstance(snapshot.constraints, Held) else Held()
        return Budget(
            scope=("nsg", nsg),
            what=f"NSG {nsg}",
            limit=MAX_RULES_PER_NSG - held.count(nsg),
            segment=resource.segment,
            hint="give the segments fewer, larger CIDRs, or remove rules nsgsync does not "
            "own from the NSG",
        )

    def denies(self, resource: Resource) -> bool:
        return (resource.body.get("properties") or {}).get("access") == "Deny"

    def footprint(self, resource: Resource) -> Footprint | None:
        return _render.footprint(resource)

    def widens(self, old: Resource, new: Resource) -> bool:
        return False  # a priority or its prefixes may move: narrowing is the safe reading

    def batch_size(self, phase: Phase) -> int:
        return 1  # ARM writes one rule (or subnet) per call

    def create(
        self,
        session: Any,
        change: Change,
        rules: Sequence[Change],
        *,
        applied: Applied,
        progress: Progress,
    ) -> Created | None:
        arm = self._arm(session)
        if change.old is None:
            return arm.create_nsg(change, rules, progress)
        arm.retag(change, progress)
        return None

    def write(
        self,
        session: Any,
        phase: Phase,
        batch: Sequence[Change],
        *,
        applied: Applied,
        progress: Progress,
    ) -> None:
        arm = self._arm(session)
        for c in batch:
            if phase is Phase.LINK:
                arm.associate(c, progress)
            elif phase is Phase.UNLINK:
                arm.dissociate(c, progress)
            elif phase is Phase.DELETE:
                assert c.old is not None
                name = str(c.old.body["name"])
                progress(f"- deleting NSG {name}")
                arm.delete_nsg(name)
            elif phase is Phase.REMOVE:
                arm.delete_rule(c, progress)
            else:
                arm.put_rule(c, "+ creating" if c.old is None else "~ updating", progress)


class AzureProvider:
    name = "azure"

    def configure(self, topology: Topology, *, source: str | None = None) -> AzureAdapter:
        return AzureAdapter(topology, load(topology, source=source))


provider = AzureProvider()

__all__ = ["AzureAdapter", "AzureProvider", "provider"]


def _conforms(adapter: AzureAdapter, provider: AzureProvider) -> tuple[Adapter, Provider]:
    """mypy checks here that the adapter and provider keep the contract (docs/providers.md)."""
    return adapter, provider
