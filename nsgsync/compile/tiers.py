"""The compiler over ordered policies: admin tiers, Calico, Cilium (docs/semantics.md).

Per segment S and direction, over the space of (peer address, protocol, port), each rule
has a MAY region (some pod of S and some peer there may match it) and a SURE region (every
pod of S and every peer there match it, and nothing about it is uncertain). The stages are
walked in order:

    Reach = everything
    per stage:  Live = Reach; Next = nothing
        per rule, in order:  Allow: Allowed += Live & MAY;  Pass: Next += Live & MAY
                             every action: Live -= SURE
        at its end: Live is denied if the stage surely isolates S, else Next += Live
        Reach = Next
    Allowed += Reach   (after the last stage, what is left is allowed)

Sound: a connection some pod of S has allowed is decided by one rule r (or passes every
stage). Every rule before r that it met did not match it, so no SURE region before r held
it and it is still in Live at r; and it is in MAY(r). So an Allow puts it in Allowed, a
Pass carries it to the next stage, and the argument repeats. Policies of equal order (ties
the API leaves undefined) are walked each from the Live their group starts with, which holds
for every order among them.

NetworkPolicy v1's rules keep today's machinery (nsgsync.compile.compiler): their MAY
region is what it grants, their SURE region is empty (they only allow, and isolation is
decided at the stage's end), so a cluster of NetworkPolicies alone compiles as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

from nsgsync.compile.compiler import Cover, Term, _Compiler, _Grant, _listed, _Seg
from nsgsync.compile.space import OTHER, PORTED, PROTOCOLS, Ports, Space
from nsgsync.intent import Code, DirectionIntent, IntentProtocol, Severity, Source
from nsgsync.model import PolicyType, Protocol
from nsgsync.model.k8s import EVERYTHING
from nsgsync.model.tiers import (
    Action,
    End,
    Ent,
    Entity,
    Net,
    Pipeline,
    PodPredicate,
    Pods,
    PortRange,
    Stage,
    TPeer,
    TPolicy,
    TRule,
)
from nsgsync.net import AddressSet, PortSet
from nsgsync.semantics import ADMIN_DIALECTS, enforces, pipeline, resolve_engine

_AFTER_LAST = Source(reason="no policy decided it (allowed after the last tier)")
_NOTHING = Space()


def _both(a: Cover, b: Cover) -> Cover:
    """The cover of the pods two predicates both select, from each one's."""
    if Cover.NONE in (a, b):
        return Cover.NONE
    return Cover.ALL if a is b is Cover.ALL else Cover.SOME


class TieredCompiler:
    """Compiles each segment's directions over the policy engine's stages."""

    def __init__(self, base: _Compiler) -> None:
        self.base = base
        inventory, topology = base.inventory, base.topology
        self.engine = resolve_engine(topology.policy_engine, inventory.ordered)
        self.pipeline: Pipeline = pipeline(
            self.engine,
            inventory.policies,
            inventory.ordered,
            node_cidrs=topology.node_cidrs,
            cluster_cidrs=[*topology.pod_cidrs, *topology.node_cidrs],
        )
        self.left_out = [p for p in inventory.ordered if not enforces(self.engine, p.dialect)]
        self.network_policies = {p.ref: p for p in inventory.policies}
        self.everything = Space.of(base.everywhere, Ports.everything())
        self._terms: dict[int, tuple[Pods, Term]] = {}
        self._peers: dict[int, tuple[TPeer, AddressSet, AddressSet]] = {}
        self._peers_seen: dict[int, TRule] = {}  # by id; holds the rule so ids stay unique

    # --- where predicates and peers fall ---

    def term(self, pods: Pods) -> Term:
        hit = self._terms.get(id(pods))
        if hit is None:
            base = self.base
            if pods.namespace is not None:
                nss, maybe = base.just(pods.namespace), frozenset[str]()
                if pods.namespace_selector is not None:
                    # Both: the one namespace, if the selector may match it.
                    may, unsure = base.namespaces_matching(pods.namespace_selector)
                    nss, maybe = nss & may, nss & unsure
            elif pods.namespace_selector is not None:
                nss, maybe = base.namespaces_matching(pods.namespace_selector)
            else:
                nss, maybe = base.all_namespaces, frozenset()
            hit = (pods, (nss, base.key(pods.pod_selector or EVERYTHING), maybe))
            self._terms[id(pods)] = hit
        return hit[1]

    def cover(self, seg: _Seg, predicate: PodPredicate) -> Cover:
        """Whether a predicate selects all, none or some of a segment's pods."""
        if isinstance(predicate, Pods):
            return self.base.coverage(seg, [self.term(predicate)])
        if not seg.possible:
            return Cover.NONE
        # A dialect's own predicate (a Calico selector): decided on the known pods where
        # they stand for the segment, else "some", the sound side.
        labels = self.base.namespace_labels
        if self.base._pods_known(seg) and all(p.namespace in labels for p in seg.known):
            hits = {predicate.matches(p, labels[p.namespace]) for p in seg.known}
            if hits == {True}:
                return Cover.ALL
            if hits == {False}:
                return Cover.NONE
        return Cover.SOME

    def cover_any(self, seg: _Seg, predicates: Sequence[PodPredicate]) -> Cover:
        """The cover of the pods any of the predicates selects."""
        if predicates and all(isinstance(p, Pods) for p in predicates):
            terms = [self.term(p) for p in predicates if isinstance(p, Pods)]
            return self.base.coverage(seg, terms)
        covers = {self.cover(seg, p) for p in predicates}
        if Cover.ALL in covers:
            return Cover.ALL
        return Cover.SOME if Cover.SOME in covers else Cover.NONE

    def peer(self, peer: TPeer) -> tuple[AddressSet, AddressSet]:
        """The addresses a peer may match, and those it surely matches."""
        hit = self._peers.get(id(peer))
        if hit is None:
            may, sure = self._peer(peer)
            hit = self._peers[id(peer)] = (peer, may, sure)
        return hit[1], hit[2]

    def _peer(self, peer: TPeer) -> tuple[AddressSet, AddressSet]:
        base = self.base
        if isinstance(peer, Net):
            block = base._block(peer.cidr, peer.except_)
            return block, block
        if isinstance(peer, Ent):
            return self._entity(peer.entity)
        if isinstance(peer, Pods):
            found, may = base.peer_segments(self.term(peer))
            sure = AddressSet.union_all([s.addresses for s, c in found if c is Cover.ALL] or [])
            return may, sure
        may_parts, sure_parts = [], []
        for seg in [*base.segments, base.rest]:
            cover = self.cover(seg, peer)
            if cover is not Cover.NONE:
                may_parts.append(seg.addresses)
            if cover is Cover.ALL:
                sure_parts.append(seg.addresses)
        return AddressSet.union_all(may_parts or []), AddressSet.union_all(sure_parts or [])

    def _entity(self, entity: Entity) -> tuple[AddressSet, AddressSet]:
        base = self.base
        everywhere = base.everywhere
        cluster = base.pod_addresses | base.node_addresses
        apiserver = AddressSet.from_cidrs(self.pipeline.apiserver_cidrs)
        nothing = AddressSet()
        if entity is Entity.ALL:
            return everywhere, everywhere
        if entity is Entity.WORLD:
            return everywhere - cluster, everywhere - cluster
        if entity is Entity.CLUSTER:
            return cluster, cluster
        if entity in (Entity.HOST, Entity.REMOTE_NODE):
            # Which node is the pod's own is not known: any node may be either.
            return base.node_addresses, nothing
        if entity is Entity.KUBE_APISERVER:
            return (apiserver or everywhere - base.pod_addresses), apiserver
        if entity in (Entity.WORLD_IPV4, Entity.WORLD_IPV6):
            family = AddressSet.from_cidrs(["0.0.0.0/0" if entity is Entity.WORLD_IPV4 else "::/0"])
            world = (everywhere - cluster) & family
            return world, world
        if entity in (Entity.HEALTH, Entity.INGRESS, Entity.INIT, Entity.UNMANAGED):
            # Cluster-side identities nsgsync cannot place (semantics.entity_matches).
            return cluster, nothing
        raise AssertionError(entity)

    def addresses(self, rule: TRule) -> tuple[AddressSet, AddressSet]:
        everywhere = self.base.everywhere
        may, sure = everywhere, everywhere
        if rule.peers is not None:
            found = [self.peer(p) for p in rule.peers]
            may = AddressSet.union_all([m for m, _ in found] or [AddressSet()])
            sure = AddressSet.union_all([s for _, s in found] or [AddressSet()])
        for p in rule.not_peers:
            not_may, not_sure = self.peer(p)
            may, sure = may - not_sure, sure - not_may
        return may, sure

    def ports(self, seg: _Seg, rule: TRule, direction: PolicyType, ref: str) -> tuple[Ports, Ports]:
        if rule.ports is None:
            may = sure = Ports.everything()
        else:
            may, sure = self._port_ranges(seg, rule.ports, direction, ref)
        if rule.not_ports:
            not_may, not_sure = self._port_ranges(seg, rule.not_ports, direction, ref)
            may, sure = may - not_sure, sure - not_may
        return may, sure

    def _port_ranges(
        self, seg: _Seg, ranges: Sequence[PortRange], direction: PolicyType, ref: str
    ) -> tuple[Ports, Ports]:
        may, sure = Ports(), Ports()
        for r in ranges:
            protocols = PORTED if r.protocol is None else (r.protocol.value,)
            if r.name is not None:
                # A named port is looked up on the destination: on ingress the segment's
                # own known pods; on egress any pod, so every port of the protocol.
                widened = []
                for proto in protocols:
                    numbers = (
                        self.base.resolve_named(seg, r.name, Protocol(proto), None)
                        if direction is PolicyType.INGRESS
                        else None
                    )
                    may |= Ports.of((proto,), numbers)
                    if numbers is None:
                        widened.append(proto)
                if widened:
                    where = (
                        f"segment {seg.name}"
                        if direction is PolicyType.INGRESS
                        else "the rule's peers"
                    )
                    said = widened[0] if len(widened) == 1 else "TCP, UDP or SCTP"
                    key = (Code.NAMED_PORT_WIDENED, ref, f"{r.name}/{said}")
                    self.base._gathered[key].add(where)
                continue
            if r.first is None:
                span = Ports.everything() if r.protocol is None else Ports.of(protocols)
            else:
                span = Ports.of(protocols, PortSet.of([(r.first, r.last or r.first)]))
            may |= span
            sure |= span
        return may, sure

    def regions(
        self, seg: _Seg, cover: Cover, rule: TRule, direction: PolicyType, ref: str
    ) -> tuple[Space, Space]:
        """MAY and SURE regions of a rule for segment S, its policy covering `cover` of S."""
        if rule.local is not None:
            cover = _both(cover, self.cover(seg, rule.local))
        if cover is Cover.NONE:
            return _NOTHING, _NOTHING
        addr_may, addr_sure = self.addresses(rule)
        ports_may, ports_sure = self.ports(seg, rule, direction, ref)
        may = Space.of(addr_may, ports_may)
        if cover is not Cover.ALL or rule.unmodeled:
            return may, _NOTHING
        return may, Space.of(addr_sure, ports_sure)

    # --- the walk ---

    def direction(self, seg: _Seg, direction: PolicyType) -> DirectionIntent:
        what = direction.value.lower()
        reach = self.everything
        allowed: list[_Grant] = []
        total = _NOTHING
        for stage in self.pipeline.stages:
            live = reach
            nxt = _NOTHING
            selecting = self._selecting(seg, stage, direction)
            for _, group in groupby(selecting, key=lambda pc: pc[0].order):
                members = list(group)
                start = live
                removed = _NOTHING
                for policy, cover in members:
                    if policy.dialect == "NetworkPolicy":
                        if any(r.direction is direction for r in policy.rules):
                            hit_total, grants = self._network_policy(
                                seg, policy, cover, start, direction
                            )
                            allowed += grants
                            total |= hit_total
                        continue
                    local = start
                    for rule in policy.rules:
                        if rule.direction is not direction:
                            continue
                        may, sure = self.regions(seg, cover, rule, direction, policy.ref)
                        hit = local & may
                        if rule.action is Action.ALLOW and hit:
                            allowed += self._grants(hit, policy.ref, rule.index)
                            total |= hit
                            self._peers_widened(policy, rule, what)
                            if rule.unmodeled:
                                detail = f"{what} rule {rule.index}: {rule.unmodeled}"
                                self.base._gathered[(Code.RULE_UNMODELED, policy.ref, detail)].add(
                                    seg.name
                                )
                        elif rule.action is Action.PASS:
                            nxt |= hit
                        if rule.action is not Action.ALLOW and not (hit - sure).issubset(_NOTHING):
                            detail = f"{what} rule {rule.index} ({rule.action})"
                            self.base._gathered[(Code.DENY_PARTIAL, policy.ref, detail)].add(
                                seg.name
                            )
                        removed |= sure
                        local -= sure
                    if cover is Cover.SOME:
                        self._widened(seg, policy, direction)
                live = start - removed
            if stage.end is End.DENY_IF_SELECTED and self._isolates(seg, stage, direction):
                live = _NOTHING
            nxt |= live
            reach = nxt
        if reach:
            allowed += self._grants(reach, None, None)
            total |= reach
        if self.everything.issubset(total):
            return DirectionIntent(isolated=False)
        self._other_protocols(seg, total, what)
        return self.base._isolated(allowed)

    def _selecting(
        self, seg: _Seg, stage: Stage, direction: PolicyType
    ) -> list[tuple[TPolicy, Cover]]:
        out: list[tuple[TPolicy, Cover]] = []
        for policy in stage.policies:
            if direction not in policy.types:
                continue
            cover = self.cover(seg, policy.subject)
            if cover is not Cover.NONE:
                out.append((policy, cover))
        return out

    def _isolates(self, seg: _Seg, stage: Stage, direction: PolicyType) -> bool:
        """Whether the stage's isolating policies surely select every pod of S."""
        isolating = [p.subject for p in stage.policies if p.isolates and direction in p.types]
        if not isolating:
            return False
        cover = self.cover_any(seg, isolating)
        if cover is Cover.SOME:
            refs = [
                p.ref
                for p in stage.policies
                if p.isolates
                and direction in p.types
                and self.cover(seg, p.subject) is not Cover.NONE
            ]
            self.base._gathered[(Code.ISOLATION_PARTIAL, seg.name, direction.value.lower())].update(
                refs
            )
        return cover is Cover.ALL

    def _network_policy(
        self, seg: _Seg, policy: TPolicy, cover: Cover, live: Space, direction: PolicyType
    ) -> tuple[Space, list[_Grant]]:
        """A NetworkPolicy's grants (today's machinery), cut to what reaches it."""
        original = self.network_policies.get(policy.ref)
        if original is None:
            raise AssertionError(f"{policy.ref} lowered from no NetworkPolicy read")
        grants = self.base._policy_grants(seg, original, cover, direction)
        out: list[_Grant] = []
        total = _NOTHING
        whole = self.everything.issubset(live)
        for g in grants:
            if whole:
                out.append(g)
                total |= _space_of(g)
            else:
                hit = _space_of(g) & live
                total |= hit
                out += _to_grants(hit, g.source)
        return total, out

    def _grants(self, space: Space, policy: str | None, rule: int | None) -> list[_Grant]:
        source = _AFTER_LAST if policy is None else self.base._source(policy, rule or 0, None)
        return _to_grants(space, source)

    def _peers_widened(self, policy: TPolicy, rule: TRule, what: str) -> None:
        """An Allow's pod peers that match only some pods of a segment: it is allowed whole."""
        if id(rule) in self._peers_seen:
            return
        self._peers_seen[id(rule)] = rule
        base = self.base
        for j, peer in enumerate(rule.peers or ()):
            if not isinstance(peer, Pods):
                continue
            found, _ = base.peer_segments(self.term(peer))
            name = f"{what} rule {rule.index} peer {j}"
            for other, cover in found:
                if cover is not Cover.SOME:
                    continue
                if other is base.rest:
                    base._gathered[(Code.PEER_UNSEGMENTED, policy.ref, "")].add(name)
                else:
                    base._gathered[(Code.PEER_WIDENED, policy.ref, "peers")].add(name)
                    base._gathered[(Code.PEER_WIDENED, policy.ref, "segments")].add(other.name)

    def _widened(self, seg: _Seg, policy: TPolicy, direction: PolicyType) -> None:
        if any(r.action is Action.ALLOW and r.direction is direction for r in policy.rules):
            key = (Code.SELECTOR_WIDENED, policy.ref, direction.value.lower())
            self.base._gathered[key].add(seg.name)

    def _other_protocols(self, seg: _Seg, total: Space, what: str) -> None:
        """Protocols without ports can only be said as ANY: note where that widens."""
        other = total.addresses(OTHER)
        if not other:
            return
        whole = Space.of(other, Ports.everything())
        if not whole.issubset(total):
            self.base._gathered[(Code.PROTOCOLS_WIDENED, seg.name, what)].add(seg.name)

    # --- cluster-wide findings ---

    def cluster_findings(self) -> None:
        base = self.base
        self._dialect_notes()
        by_dialect: dict[str, list[TPolicy]] = {}
        for p in self.left_out:
            by_dialect.setdefault(p.dialect, []).append(p)
        for dialect, policies in sorted(by_dialect.items()):
            base._find(
                Severity.WARNING,
                Code.DIALECT_NOT_ENFORCED,
                message=(
                    f"{len(policies)} {dialect} policies ({_listed([p.ref for p in policies])}) "
                    f"are not compiled: policyEngine {self.engine} does not enforce them; set "
                    "the topology's policyEngine if another engine runs the cluster"
                ),
            )
        for stage in self.pipeline.stages:
            for _, group in groupby(stage.policies, key=lambda p: p.order):
                tied = list(group)
                if len(tied) > 1 and any(p.dialect in ADMIN_DIALECTS for p in tied):
                    refs = _listed([p.ref for p in tied])
                    base._find(
                        Severity.WARNING,
                        Code.ADMIN_PRIORITY_TIE,
                        policy=tied[0].ref,
                        message=(
                            f"{refs} share priority {tied[0].order[0] if tied[0].order else 0}"
                            f" in the {stage.name} tier; the API leaves their order undefined, "
                            "so each is compiled as if it came first (the cloud rules allow "
                            "what any order allows); give them distinct priorities"
                        ),
                    )

    def _dialect_notes(self) -> None:
        """What a dialect's parser noted about a policy it lowered (TPolicy.notes)."""
        for policy in self.inventory_ordered():
            for code, message in policy.notes:
                self.base._find(Severity.WARNING, Code(code), policy=policy.ref, message=message)

    def inventory_ordered(self) -> list[TPolicy]:
        return [p for p in self.base.inventory.ordered if enforces(self.engine, p.dialect)]


def _space_of(grant: _Grant) -> Space:
    if grant.protocol is IntentProtocol.ANY:
        return Space.of(grant.addresses, Ports.everything())
    return Space.of(grant.addresses, Ports.of((grant.protocol.value,), grant.ports))


def _to_grants(space: Space, source: Source) -> list[_Grant]:
    out = []
    for proto in PROTOCOLS:
        for addresses, ports in space.get(proto):
            if proto == OTHER:
                out.append(_Grant(addresses, IntentProtocol.ANY, None, source))
            else:
                span = None if ports.is_all() else ports
                out.append(_Grant(addresses, IntentProtocol(proto), span, source))
    return out
