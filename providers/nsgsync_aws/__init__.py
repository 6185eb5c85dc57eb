"""nsgsync's AWS adapter: a security group per segment, rules from the Intent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from nsgsync.intent import Finding, Intent
from nsgsync.model import Topology
from nsgsync.net import AddressSet
from nsgsync.plan import Change, Resource, Role
from nsgsync.provider import (
    ALL_PORTS,
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
    any_protocol,
)
from nsgsync_aws import render as _render
from nsgsync_aws.attach import security_group_policies
from nsgsync_aws.config import AwsConfig, AwsSegmentConfig, load_config
from nsgsync_aws.render import GROUP, group_key, group_name, group_resource, rule_resource


@lru_cache(maxsize=65_536)  # one per scope, shared by its rules: a plan asks for each rule's
def _budget(
    cluster: str, group: tuple[str, ...], side: str, family: int, segment: str, limit: int
) -> Budget:
    return Budget(
        # Per group: a copy's rules never pair with (nor count against) the segment's.
        scope=("sg", *group, side, f"v{family}"),
        what=f"the {side} IPv{family} rules of security group {group_name(cluster, segment)}",
        limit=limit,
        segment=segment,
        direction=side,
        family=family,
        hint=_render.LIMIT_HINT,
    )


@dataclass(frozen=True)
class AwsAdapter:
    """Configured once from the topology's `aws:` block; holds nothing else."""

    topology: Topology
    config: AwsConfig
    segments: Mapping[str, AwsSegmentConfig]
    name: str = "aws"
    pairs: bool = True  # ModifySecurityGroupRules replaces a rule by another in place
    # A group that another group's rule references cannot be deleted: revoke every rule first.
    cascades: bool = False

    @property
    def cluster(self) -> str:
        return self.topology.cluster

    def session(self, **clients: Any) -> Any:
        """`ec2=` a boto3 EC2 client (tests); else one from the environment. `timeouts=`
        bounds every call and the run; `progress=` hears how many calls were made."""
        # The client module (and boto3 with it) is imported where it is used, never at the
        # top: an offline plan talks to nobody and should not pay for the import.
        from nsgsync_aws import client as ec2

        timeouts = clients.get("timeouts") or Timeouts()
        client = clients.get("ec2") or ec2.make_client(self.config.region, timeouts=timeouts)
        return ec2.guard(client, timeouts, progress=clients.get("progress"))

    def read(self, session: Any) -> Snapshot:
        from nsgsync_aws import client as ec2

        resources, users = ec2.read(session, self.config, self.cluster)
        return Snapshot(tuple(resources), users=users)

    def reread(
        self, session: Any, touched: Sequence[Resource], *, applied: Applied
    ) -> tuple[Resource, ...]:
        """The touched segments' groups and their rules: one filtered call for the groups,
        one per 200 groups for their rules."""
        from nsgsync_aws import client as ec2

        known = {i.name: gid for i, gid in applied.ids.items() if i.kind == group_key("").kind}
        segments = sorted({r.segment for r in touched if r.segment is not None})
        resources, _ = ec2.read(session, self.config, self.cluster, segments=segments, known=known)
        return tuple(resources)

    def desired(self, intent: Intent, snapshot: Snapshot) -> tuple[list[Resource], list[Finding]]:
        desired, findings = _render.render(intent, self.topology, self.config)
        _render.check_limits(desired, self.config)
        return desired, findings

    def restore(
        self, type_: str, key: str, body: Mapping[str, Any], segment: str | None
    ) -> Resource:
        assert segment is not None
        if type_ == GROUP:
            return group_resource(body, segment)
        # The one place a key is read back: a saved plan names a peer segment only there.
        peer = key.split("/", 5)[5] if key.count("/") >= 5 else ""
        ref = str((body.get("ReferencedGroupInfo") or {}).get("GroupId", ""))
        by_name = peer.startswith("sg:") and ref.startswith("${")
        return rule_resource(body, segment, peer_segment=peer[3:] if by_name else None)

    def budget(self, resource: Resource, snapshot: Snapshot) -> Budget | None:
        if resource.role is not Role.RULE or resource.segment is None:
            return None
        side = resource.direction or "ingress"
        group = resource.container.parts if resource.container else (resource.segment,)
        # EC2 counts a group's IPv4 and IPv6 rules apart, each against the quota.
        family = _render.family(resource.body)
        return _budget(
            self.cluster, group, side, family, resource.segment, self.config.max_rules_per_group
        )

    def footprint(self, resource: Resource) -> Footprint | None:
        if resource.type != _render.RULE or resource.segment is None:
            return None
        body = resource.body
        peers = AddressSet.everything()  # a group nsgsync does not know: anyone, to be safe
        # A group's members are not addresses nsgsync can be sure of: it overlaps, never covers.
        exact = bool(body.get("CidrIpv4") or body.get("CidrIpv6"))
        if exact:
            peers = AddressSet.of(str(body.get("CidrIpv4") or body.get("CidrIpv6")))
        else:
            peer = resource.ident.parts[-1]
            names = {s.name: s for s in self.topology.segments}
            if peer.startswith("sg:") and peer[3:] in names:
                peers = names[peer[3:]].addresses
        proto = str(body.get("IpProtocol"))
        low, high = int(body.get("FromPort", -1)), int(body.get("ToPort", -1))
        if proto in ("tcp", "udp") and low >= 0:
            ports: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = ((proto, ((low, high),)),)
        elif proto in ("tcp", "udp", "132"):
            ports = (("sctp" if proto == "132" else proto, ALL_PORTS),)
        elif proto == "-1":
            ports = any_protocol()
        else:
            ports, exact = (("other", ALL_PORTS),), False
        group = resource.container.parts if resource.container else (resource.segment,)
        return Footprint(
            scope=("sg", *group, resource.direction or "ingress"),
            peers=peers,
            ports=ports,
            exact=exact,
        )

    def denies(self, resource: Resource) -> bool:
        return False  # security groups only allow

    def widens(self, old: Resource, new: Resource) -> bool:
        # A rule's identity is its group, side, protocol, ports and peer: a change under
        # one identity touches only its description and tags.
        return old.ident == new.ident

    def batch_size(self, phase: Phase) -> int:
        from nsgsync_aws import client as ec2

        return ec2.BATCH

    def create(
        self,
        session: Any,
        change: Change,
        rules: Sequence[Change],
        *,
        applied: Applied,
        progress: Progress,
    ) -> Created | None:
        from nsgsync_aws import client as ec2

        if change.old is None:
            return ec2.create_group(session, change, progress=progress)
        gid = ec2.group_id(applied, change.resource.segment)
        ec2.retag_group(session, change, gid, progress=progress)
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
        from nsgsync_aws import client as ec2

        if phase is Phase.ADD:
            ec2.authorize(session, batch, applied, self.cluster, progress=progress)
        elif phase in (Phase.WIDEN, Phase.NARROW):
            ec2.modify(session, batch, applied, self.cluster, progress=progress)
        elif phase is Phase.REMOVE:
            ec2.revoke(session, batch, applied, progress=progress)
        elif phase is Phase.DELETE:
            for c in batch:
                ec2.delete_group(session, c, progress=progress)
        else:
            raise AssertionError(f"AWS has no {phase} phase")

    def attachments(
        self, namespaces: Mapping[str, Mapping[str, str]], snapshot: Snapshot
    ) -> tuple[list[dict[str, Any]], list[Finding]]:
        """SecurityGroupPolicy objects giving each segment's pods its group."""
        ids = {
            r.segment: r.cloud_id
            for r in snapshot.resources
            if r.type == GROUP and r.segment and r.cloud_id and r.ident == group_key(r.segment)
        }
        return security_group_policies(self.topology, namespaces, ids)


class AwsProvider:
    name = "aws"

    def configure(self, topology: Topology, *, source: str | None = None) -> AwsAdapter:
        config, segments = load_config(topology, source=source)
        return AwsAdapter(topology, config, segments)


provider = AwsProvider()

__all__ = ["AwsAdapter", "AwsProvider", "group_key", "provider"]


def _conforms(adapter: AwsAdapter, provider: AwsProvider) -> tuple[Adapter, Provider]:
    """mypy checks here that the adapter and provider keep the contract (docs/providers.md)."""
    return adapter, provider
