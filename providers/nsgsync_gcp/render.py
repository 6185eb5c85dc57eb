"""Intent to VPC firewall rules, each body a compute v1 Firewall in its REST JSON shape.

GKE pods take their addresses from alias ranges on the nodes, so every rule targets the
nodes and names the segment's CIDRs: in `destinationRanges` for ingress, in `sourceRanges`
for egress (the API narrows egress rules by source too). Per segment and direction:

- isolated: one `allowed` rule per (protocol, ports) of the Intent at the band's start, and
  one `denied` rule for all protocols at the band's end, which beats GKE's own allow rules
  at 1000 and the allow-all egress implied at 65535;
- open: one explicit allow-all at the band's start, so that the direction stays open
  whatever other rules (a deny of someone else's, the implied deny of ingress) say.

Pure: no GCP calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nsgsync.errors import LimitError, ProviderError
from nsgsync.intent import Direction, DirectionIntent, Finding, Intent, IntentProtocol
from nsgsync.model import Topology
from nsgsync.net import AddressSet
from nsgsync.plan import Ident, Resource, Role
from nsgsync.provider import cut
from nsgsync_gcp.config import GcpConfig, GcpSegmentConfig, targets

FIREWALL = "firewall"
MAX_RANGES = 5000  # per side of one rule
MAX_NAME = 63
MAX_DESCRIPTION = 2048
_HASH = 10  # hex digits: 40 bits, so that a project's few hundred names do not collide

_PROTOCOL = {
    IntentProtocol.ANY: "all",
    IntentProtocol.TCP: "tcp",
    IntentProtocol.UDP: "udp",
    IntentProtocol.SCTP: "sctp",
}
_EVERYTHING = {4: "0.0.0.0/0", 6: "::/0"}
_LETTER = {Direction.INGRESS: "i", Direction.EGRESS: "e"}


def name_prefix(cluster: str) -> str:
    """Every rule nsgsync writes for `cluster` starts so; read lists on it."""
    return f"nsgsync-{cluster}-"


def marker(cluster: str) -> str:
    """The first word of the description of every rule nsgsync owns for `cluster`.

    The name prefix alone cannot tell cluster `prod` from cluster `prod-eu`.
    """
    return f"nsgsync:{cluster}"


def owner_of(description: str) -> tuple[str | None, str | None]:
    """(cluster, segment) from a description nsgsync wrote; Nones for anything else."""
    words = description.split(" ", 2)
    if not words[0].startswith("nsgsync:"):
        return None, None
    return words[0].removeprefix("nsgsync:"), words[1] if len(words) > 1 else None


def describe(cluster: str, segment: str, direction: Direction, text: str) -> str:
    full = f"{marker(cluster)} {segment} {direction.value}: {text}"
    return cut(full, MAX_DESCRIPTION)


def family(cidr: str) -> int:
    return 6 if ":" in cidr else 4


@dataclass(frozen=True)
class Identity:
    """What makes a rule the same rule from run to run: never its peers or its text.

    Peers are left out so that a peer added to a policy updates a rule in place.
    """

    cluster: str
    segment: str
    direction: Direction
    action: str  # allow | deny
    protocol: str
    ports: tuple[tuple[int, int], ...] | None
    family: int
    chunk: tuple[int, int] = (0, 0)

    def text(self) -> str:
        ports = "*" if self.ports is None else ",".join(f"{lo}-{hi}" for lo, hi in self.ports)
        parts = [
            self.cluster,
            self.segment,
            self.direction.value,
            self.action,
            self.protocol,
            ports,
            f"v{self.family}",
        ]
        if self.chunk != (0, 0):
            parts.append(f"{self.chunk[0]}.{self.chunk[1]}")
        return "|".join(parts)

    def name(self) -> str:
        """`nsgsync-<cluster>-<segment>-<i|e>-<hash>`, the segment cut to fit 63 characters.

        The hash covers the whole identity, so a cut segment name loses nothing; the
        cluster is never cut, so that the name prefix still finds every rule.
        """
        digest = hashlib.sha256(self.text().encode()).hexdigest()[:_HASH]
        head = name_prefix(self.cluster)
        tail = f"{_LETTER[self.direction]}-{digest}"
        room = MAX_NAME - len(head) - len(tail) - 1
        segment = self.segment[: max(room, 0)].rstrip("-")
        return f"{head}{segment}-{tail}" if segment else f"{head}{tail}"


def port_text(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


def _chunks(items: Sequence[str]) -> Iterator[tuple[int, Sequence[str]]]:
    for i in range(0, max(len(items), 1), MAX_RANGES):
        yield i // MAX_RANGES, items[i : i + MAX_RANGES]


@dataclass(frozen=True)
class _Grant:
    protocol: str
    ports: tuple[tuple[int, int], ...] | None
    peers: AddressSet
    text: str
    policies: tuple[str, ...] = ()


def _grants(side: DirectionIntent) -> list[_Grant]:
    """One grant per (protocol, ports); the compiler already merges so, this is a guard."""
    peers: dict[tuple[str, tuple[tuple[int, int], ...] | None], list[AddressSet]] = {}
    texts: dict[tuple[str, tuple[tuple[int, int], ...] | None], list[str]] = {}
    policies: dict[tuple[str, tuple[tuple[int, int], ...] | None], set[str]] = {}
    for rule in side.rules:
        protocol = _PROTOCOL[rule.protocol]
        ports = rule.ports if protocol != "all" else None
        peers.setdefault((protocol, ports), []).append(rule.peer_set)
        texts.setdefault((protocol, ports), []).append(rule.explanation())
        policies.setdefault((protocol, ports), set()).update(rule.policies)
    return [
        _Grant(
            protocol,
            ports,
            AddressSet.union_all(sets),
            "; ".join(texts[(protocol, ports)]),
            tuple(sorted(policies[(protocol, ports)])),
        )
        for (protocol, ports), sets in peers.items()
    ]


@dataclass(frozen=True)
class _Context:
    cluster: str
    config: GcpConfig
    targets: dict[str, list[str]]


def _firewalls(
    ctx: _Context,
    *,
    segment: str,
    direction: Direction,
    action: str,
    protocol: str,
    ports: tuple[tuple[int, int], ...] | None,
    own: AddressSet,
    peers: AddressSet,
    text: str,
    policies: tuple[str, ...] = (),
) -> Iterator[Resource]:
    """The rules for one grant: one per IP family, split at 5,000 ranges a side."""
    ingress = direction is Direction.INGRESS
    for fam in (4, 6):
        own_cidrs = [c for c in own.cidrs() if family(c) == fam]
        peer_cidrs = [c for c in peers.cidrs() if family(c) == fam]
        # A family the segment has no address of carries no traffic of this segment, and
        # an empty side would mean "any address" to the API: never write one.
        if not own_cidrs or not peer_cidrs:
            continue
        for i, own_part in _chunks(own_cidrs):
            for j, peer_part in _chunks(peer_cidrs):
                ident = Identity(
                    ctx.cluster, segment, direction, action, protocol, ports, fam, (i, j)
                )
                entry: dict[str, Any] = {"IPProtocol": protocol}
                if ports is not None:
                    entry["ports"] = [port_text(lo, hi) for lo, hi in ports]
                name = ident.name()
                body: dict[str, Any] = {
                    "name": name,
                    "network": ctx.config.network_path,
                    "priority": (
                        ctx.config.allow_priority if action == "allow" else ctx.config.deny_priority
                    ),
                    "direction": "INGRESS" if ingress else "EGRESS",
                    "allowed" if action == "allow" else "denied": [entry],
                    "sourceRanges": list(peer_part if ingress else own_part),
                    "destinationRanges": list(own_part if ingress else peer_part),
                    **ctx.targets,
                    "description": describe(ctx.cluster, segment, direction, text),
                    "disabled": False,
                }
                yield firewall_resource(body, segment, sources=policies)


def _direction_rules(
    ctx: _Context, segment: str, own: AddressSet, side: DirectionIntent, direction: Direction
) -> Iterator[Resource]:
    everything = AddressSet.from_cidrs(_EVERYTHING[f] for f in own.families())
    if not side.isolated:
        yield from _firewalls(
            ctx,
            segment=segment,
            direction=direction,
            action="allow",
            protocol="all",
            ports=None,
            own=own,
            peers=everything,
            text="open: no NetworkPolicy isolates the segment",
        )
        return
    for grant in _grants(side):
        yield from _firewalls(
            ctx,
            segment=segment,
            direction=direction,
            action="allow",
            protocol=grant.protocol,
            ports=grant.ports,
            own=own,
            peers=grant.peers,
            text=grant.text,
            policies=grant.policies,
        )
    yield from _firewalls(
        ctx,
        segment=segment,
        direction=direction,
        action="deny",
        protocol="all",
        ports=None,
        own=own,
        peers=everything,
        text="isolated: deny what the allow rules above do not allow",
    )


def firewall_resource(
    body: Mapping[str, Any],
    segment: str | None,
    cloud_id: str | None = None,
    *,
    sources: tuple[str, ...] = (),
) -> Resource:
    """A firewall rule under its name, the one identity compute has; its quota is the
    project's, so it has no container."""
    return Resource(
        FIREWALL,
        Ident("", (str(body["name"]),)),
        body,
        segment,
        cloud_id,
        role=Role.RULE,
        direction="ingress" if body.get("direction") == "INGRESS" else "egress",
        sources=sources,
    )


def render(
    intent: Intent,
    topology: Topology,
    config: GcpConfig,
    seg_configs: Mapping[str, GcpSegmentConfig],
) -> tuple[list[Resource], list[Finding]]:
    out: list[Resource] = []
    for seg in intent.segments:
        ctx = _Context(topology.cluster, config, targets(config, seg_configs.get(seg.name)))
        own = seg.addresses
        for direction in (Direction.INGRESS, Direction.EGRESS):
            out += _direction_rules(ctx, seg.name, own, seg.direction(direction), direction)
    _check_unique(out)
    # GCP can express everything the Intent says (ports for SCTP too): nothing is widened.
    return sorted(out, key=lambda r: r.key), []


def _check_unique(resources: Iterable[Resource]) -> None:
    seen: dict[str, Resource] = {}
    for r in resources:
        if r.key in seen:
            raise ProviderError(
                f"two firewall rules of segments {seen[r.key].segment} and {r.segment} would "
                f"share the name {r.key}",
                hint="rename one of the segments; rule names hash the segment's name",
            )
        seen[r.key] = r


def check_limits(desired: Sequence[Resource], topology: Topology, config: GcpConfig) -> None:
    count = sum(1 for r in desired if r.type == FIREWALL)
    if count > config.max_rules:
        per_segment: dict[str, int] = {}
        for r in desired:
            per_segment[r.segment or "?"] = per_segment.get(r.segment or "?", 0) + 1
        worst = ", ".join(
            f"{seg} {n}"
            for seg, n in sorted(per_segment.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        )
        raise LimitError(
            f"cluster {topology.cluster} needs {count} firewall rules in project "
            f"{config.project}, over the limit of {config.max_rules} (gcp.maxRules); most "
            f"rules: {worst}; nothing was applied",
            hint="raise the project's FIREWALLS quota and gcp.maxRules with it, or have the "
            "policies share ports (one rule per protocol and port list per segment direction)",
        )
