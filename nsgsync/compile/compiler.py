"""The compiler: Kubernetes NetworkPolicy semantics onto segments, sound first.

Soundness: every connection Kubernetes allows is allowed by the Intent. Where the
cloud cannot be as fine as Kubernetes (it sees segments, not pods), the Intent widens
and a finding says where and why.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from nsgsync.compile.labels import SelectorKey, matches_key, satisfiable_keys
from nsgsync.errors import UnsupportedKindError
from nsgsync.intent import (
    Code,
    DirectionIntent,
    Finding,
    Intent,
    IntentProtocol,
    Rule,
    SegmentIntent,
    Severity,
    Source,
)
from nsgsync.model import (
    Effect,
    ForeignPolicy,
    Inventory,
    LabelSelector,
    NetworkPolicy,
    Peer,
    PodInfo,
    PolicyPort,
    PolicyRule,
    PolicyType,
    Protocol,
    Topology,
)
from nsgsync.model.k8s import EVERYTHING, NAMESPACE_NAME_LABEL, Operator
from nsgsync.net import AddressSet, PortSet

if TYPE_CHECKING:
    from nsgsync.compile.tiers import TieredCompiler

UNSEGMENTED = "(unsegmented pods)"
# Notes from the sources that change no rule: what is left out allows nothing here.
_INFO_NOTES = frozenset(
    {
        Code.CILIUM_HOST_POLICY,
        Code.CILIUM_AUTH_IGNORED,
        Code.CILIUM_CRDS_ABSENT,
        Code.CALICO_CRDS_ABSENT,
    }
)
# Namespaces nobody told nsgsync of: when the namespaces read are not known to be all of
# the cluster's, pods may live in others, with unknown labels. Not a valid namespace name.
OTHER_NAMESPACES = "(other namespaces)"
_IN = Operator.IN.value
_NOT_IN = Operator.NOT_IN.value
_DOES_NOT_EXIST = Operator.DOES_NOT_EXIST.value
_NONE: frozenset[str] = frozenset()

# A set of pods: the namespaces it may be in, a selector on the pods' labels, held as
# its canonical key (hashable, and cheap to match, unlike the LabelSelector model), and
# the namespaces among the first whose labels are unknown, so that they only *may* hold
# the pods (a namespaceSelector on other labels than the name may or may not match them).
Term = tuple[frozenset[str], SelectorKey, frozenset[str]]


class Cover(Enum):
    NONE = "none"
    SOME = "some"
    ALL = "all"


@dataclass(frozen=True)
class CompileOptions:
    # Ignore known pods when deciding coverage and named ports: rules then hold for
    # any pod the selectors admit, including pods that do not exist yet.
    selector_only: bool = False
    # Policy kinds nsgsync does not compile that the user says may be ignored
    # (--ignore-kind): by kind (CiliumNetworkPolicy) or kind.group.
    ignore_kinds: frozenset[str] = frozenset()


@dataclass
class _Seg:
    index: int
    name: str
    addresses: AddressSet
    pod_selector: SelectorKey
    namespaces: frozenset[str]
    # Namespaces of `namespaces` whose labels are unknown, so that the segment only may
    # take their pods.
    uncertain: frozenset[str] = frozenset()
    possible: frozenset[str] = frozenset()
    known: list[PodInfo] = field(default_factory=list)

    @property
    def pods_unknown(self) -> bool:
        """Whether it may hold pods of namespaces nsgsync was not given, none of them known."""
        return OTHER_NAMESPACES in self.possible


# Where a peer's addresses fall: a segment (None: outside the pod CIDRs) and the pods
# of it the peer stands for (None: any of them).
_Region = tuple[_Seg | None, list[Term] | None]


@dataclass(frozen=True)
class _Grant:
    addresses: AddressSet
    protocol: IntentProtocol
    ports: PortSet | None
    source: Source


class _Compiler:
    def __init__(self, topology: Topology, inventory: Inventory, options: CompileOptions) -> None:
        self.topology = topology
        self.inventory = inventory
        self.options = options
        # Findings as plain tuples in Finding.sort_key order, (segment, policy, code,
        # message, severity): a large cluster raises tens of thousands, and building and
        # hashing a model for each, duplicates included, cost more than the tuples.
        self.findings: set[tuple[str, str, Code, str, Severity, tuple[str, ...]]] = set()
        # One finding per cause: a policy's peer widens the same way for every segment the
        # policy selects, and a segment's node rule is one fact. What a cause touches is
        # gathered here, (code, policy or segment, detail) -> items, and written once at
        # the end, so findings grow with policies plus segments, never with their product.
        self._gathered: defaultdict[tuple[Code, str, str], set[str]] = defaultdict(set)
        # Namespaces with known labels; those that something names but no Namespace object
        # describes (the topology's too) have unknown labels but for the name label, and
        # unless the namespaces read are all of the cluster's, others may exist.
        self.namespace_labels = inventory.described_namespaces
        unknown = set(inventory.unknown_namespaces)
        for spec in topology.segments:
            if spec.namespace is not None and spec.namespace not in self.namespace_labels:
                unknown.add(spec.namespace)
        self.unknown_namespaces = frozenset(unknown)
        self.all_namespaces = frozenset(self.namespace_labels) | self.unknown_namespaces
        if not inventory.namespaces_complete:
            self.all_namespaces |= {OTHER_NAMESPACES}
        self._unknown_cache: dict[SelectorKey, tuple[frozenset[str], frozenset[str]]] = {}
        self.pod_addresses = topology.pod_addresses
        self.families = self.pod_addresses.families()
        self.everywhere = AddressSet.everything(self.families)
        # The topology parses its CIDRs on every access; read them once.
        self.node_addresses = topology.node_addresses
        # Caches. Everything below is a pure function of the inputs, so each answer is
        # worked out once per compile: at thousands of segments the same selectors,
        # peers and blocks come back for segment after segment.
        self._keys: dict[int, tuple[LabelSelector, SelectorKey]] = {}
        self._singletons: dict[str, frozenset[str]] = {}
        self._earlier_cache: dict[tuple[int, str], tuple[SelectorKey, ...]] = {}
        self._peer_cache: dict[Term, tuple[list[tuple[_Seg, Cover]], AddressSet]] = {}
        self._ns_match_cache: dict[SelectorKey, tuple[frozenset[str], frozenset[str]]] = {}
        self._named_cache: dict[
            tuple[int, str, Protocol, tuple[Term, ...] | None], PortSet | None
        ] = {}
        self._cover_cache: dict[tuple[int, tuple[Term, ...]], Cover] = {}
        self._sources: dict[tuple[str, int, int | None], Source] = {}
        self._block_cache: dict[tuple[str, tuple[str, ...]], AddressSet] = {}
        self._regions_cache: dict[AddressSet, list[_Region]] = {}
        # Namespaces by label, so that a selector with an `In` requirement (matchLabels)
        # looks only at the namespaces carrying one of its values, not at all of them.
        self._ns_by_label: dict[tuple[str, str], list[str]] = defaultdict(list)
        for ns, labels in self.namespace_labels.items():
            for item in labels.items():
                self._ns_by_label[item].append(ns)
        self._build_segments()
        self._assign_pods()
        self.policies_by_ns: dict[str, list[NetworkPolicy]] = defaultdict(list)
        for policy in inventory.policies:
            self.policies_by_ns[policy.namespace].append(policy)
        # Policies of other dialects: compiled over the engine's stages (nsgsync.compile.
        # tiers); without them, the NetworkPolicy-only path above and its Intent, unchanged.
        self.tiers: TieredCompiler | None = None
        if inventory.ordered:
            from nsgsync.compile.tiers import TieredCompiler  # it builds on this module

            self.tiers = TieredCompiler(self)

    # --- selectors, by key ---

    def key(self, selector: LabelSelector) -> SelectorKey:
        """The selector's canonical key, computed once per selector object.

        By identity: the same model objects (a policy's selectors, a segment's) come back
        again and again; the entry holds the selector, so its id cannot be reused.
        """
        hit = self._keys.get(id(selector))
        if hit is None:
            hit = (selector, selector.key())
            self._keys[id(selector)] = hit
        return hit[1]

    def just(self, namespace: str) -> frozenset[str]:
        """frozenset({namespace}), shared, so its hash is computed once."""
        hit = self._singletons.get(namespace)
        if hit is None:
            hit = self._singletons[namespace] = frozenset({namespace})
        return hit

    def own_term(self, policy: NetworkPolicy) -> Term:
        """The pods a policy selects."""
        return self.just(policy.namespace), self.key(policy.pod_selector), _NONE

    # --- the universe: segments, the namespaces they cover, the pods they hold ---

    def _build_segments(self) -> None:
        self.segments: list[_Seg] = []
        for i, spec in enumerate(self.topology.segments):
            if spec.namespace is not None:
                nss, uncertain = self.just(spec.namespace), _NONE
            else:
                assert spec.namespace_selector is not None
                nss, uncertain = self.namespaces_matching(spec.namespace_selector)
            seg = _Seg(i, spec.name, spec.addresses, self.key(spec.pod_selector), nss, uncertain)
            self.segments.append(seg)
        taken = AddressSet.union_all(seg.addresses for seg in self.segments)
        self.rest = _Seg(
            len(self.segments),
            UNSEGMENTED,
            self.pod_addresses - taken,
            self.key(EVERYTHING),
            self.all_namespaces,
        )
        self.by_ns: dict[str, list[_Seg]] = defaultdict(list)
        for seg in self.segments:
            for ns in seg.namespaces:
                self.by_ns[ns].append(seg)
        for seg in [*self.segments, self.rest]:
            seg.possible = frozenset(
                ns
                for ns in seg.namespaces
                if satisfiable_keys((seg.pod_selector,), self._earlier(seg, ns))
            )

    def _earlier(self, seg: _Seg, ns: str) -> tuple[SelectorKey, ...]:
        """Selectors of the segments before `seg` that take pods of `ns` first.

        Only those certain to take the namespace: leaving out one that only may take it
        makes `seg`'s pods a superset of the truth, which every use of them tolerates.
        """
        hit = self._earlier_cache.get((seg.index, ns))
        if hit is None:
            out = []
            for other in self.by_ns.get(ns, ()):
                if other.index >= seg.index:
                    break
                if ns not in other.uncertain:
                    out.append(other.pod_selector)
            hit = self._earlier_cache[(seg.index, ns)] = tuple(out)
        return hit

    def _assign_pods(self) -> None:
        for pod in self.inventory.pods:
            if pod.host_network:
                continue  # policies do not apply to it; as a peer it has a node address
            for seg in self.segments_of_pod(pod):
                seg.known.append(pod)

    def segments_of_pod(self, pod: PodInfo) -> list[_Seg]:
        """The segments a pod may be in: one, unless its namespace's labels are unknown.

        A pod is counted in each: every segment's known pods then hold all it may have.
        """
        found = []
        for seg in self.by_ns.get(pod.namespace, ()):
            if matches_key(seg.pod_selector, pod.labels):
                found.append(seg)
                if pod.namespace not in seg.uncertain:
                    return found
        found.append(self.rest)
        return found

    def namespaces_matching(self, selector: LabelSelector) -> tuple[frozenset[str], frozenset[str]]:
        """The namespaces a selector may match, and those of them it only may match."""
        key = self.key(selector)
        hit = self._ns_match_cache.get(key)
        if hit is None:
            candidates: Iterable[str] = self.namespace_labels
            for name, op, values in key:
                if op == _IN:
                    # Only namespaces with one of these values can match; all of them
                    # are still checked against the whole selector below.
                    candidates = {
                        ns for value in values for ns in self._ns_by_label.get((name, value), ())
                    }
                    break
            exact = frozenset(
                ns for ns in candidates if matches_key(key, self.namespace_labels[ns])
            )
            possible, uncertain = self._unknown_matching(key)
            hit = self._ns_match_cache[key] = (exact | possible, uncertain)
        return hit

    def _unknown_matching(self, key: SelectorKey) -> tuple[frozenset[str], frozenset[str]]:
        """The namespaces of unknown labels a selector may match, and those it may miss.

        A namespace's name label is all that is known of it: the selector may match it if
        some labels with that name satisfy it, and is sure to only if all such labels do.
        """
        hit = self._unknown_cache.get(key)
        if hit is not None:
            return hit
        possible, uncertain = set(), set()
        for ns in self.all_namespaces - self.namespace_labels.keys():
            if ns == OTHER_NAMESPACES:
                may, must = self._other_matching(key)
            else:
                named = ((NAMESPACE_NAME_LABEL, _IN, (ns,)),)
                may = satisfiable_keys((key, named), ())
                must = not satisfiable_keys((named,), (key,))
            if may:
                possible.add(ns)
                if not must:
                    uncertain.add(ns)
        hit = self._unknown_cache[key] = (frozenset(possible), frozenset(uncertain))
        return hit

    def _other_matching(self, key: SelectorKey) -> tuple[bool, bool]:
        """(may, must) match for a namespace nobody named: its name is none of the known."""
        rest = []
        named_in = False
        for name, op, values in key:
            if name != NAMESPACE_NAME_LABEL:
                rest.append((name, op, values))
            elif op == _DOES_NOT_EXIST:
                return False, False  # the API server sets the name label on every namespace
            elif op == _IN:
                if not set(values) - self.all_namespaces:
                    return False, False
                named_in = True  # its name may or may not be one of those
            # NotIn known names, Exists: true of a namespace with another name.
            elif op == _NOT_IN and set(values) - self.all_namespaces:
                named_in = True  # it may carry one of the unknown names excluded
        may = satisfiable_keys((tuple(rest),), ())
        return may, may and not rest and not named_in

    # --- coverage: does a set of pods hold all, none or some of a segment's pods ---

    def coverage(self, seg: _Seg, terms: Sequence[Term]) -> Cover:
        # Cached: both directions, and policies with the same selector, ask the same.
        key = (seg.index, tuple(terms))
        hit = self._cover_cache.get(key)
        if hit is None:
            hit = self._cover_cache[key] = self._coverage(seg, terms)
        return hit

    def _coverage(self, seg: _Seg, terms: Sequence[Term]) -> Cover:
        named = frozenset().union(*(nss for nss, _, _ in terms)) if terms else frozenset()
        relevant = seg.possible & named
        if not relevant:
            return Cover.NONE
        results: set[Cover] = set()
        if seg.possible - named:
            results.add(Cover.NONE)
        for ns in sorted(relevant):
            earlier = self._earlier(seg, ns)
            selectors = [sel for nss, sel, _ in terms if ns in nss]
            # Only the terms sure to take the namespace can make the cover whole.
            sure = [sel for nss, sel, maybe in terms if ns in nss and ns not in maybe]
            if sure and not satisfiable_keys((seg.pod_selector,), (*earlier, *sure)):
                results.add(Cover.ALL)
            elif all(not satisfiable_keys((seg.pod_selector, sel), earlier) for sel in selectors):
                results.add(Cover.NONE)
            else:
                results.add(Cover.SOME)
            if Cover.SOME in results or len(results) > 1:
                break
        cover = results.pop() if len(results) == 1 else Cover.SOME
        if cover is Cover.SOME and self._pods_known(seg):
            if all(self._pod_in(pod, terms, sure=True) for pod in seg.known):
                return Cover.ALL
            if not any(self._pod_in(pod, terms) for pod in seg.known):
                return Cover.NONE
        return cover

    def _pods_known(self, seg: _Seg) -> bool:
        """Whether the known pods of `seg` may stand for all its pods."""
        return bool(seg.known) and not self.options.selector_only and not seg.pods_unknown

    @staticmethod
    def _pod_in(pod: PodInfo, terms: Iterable[Term], *, sure: bool = False) -> bool:
        """Whether the pod may be among the terms' pods (with `sure`, is sure to be)."""
        return any(
            pod.namespace in nss
            and not (sure and pod.namespace in maybe)
            and matches_key(sel, pod.labels)
            for nss, sel, maybe in terms
        )

    # --- peers and ports ---

    def peer_term(self, policy: NetworkPolicy, peer: Peer) -> Term:
        if peer.namespace_selector is not None:
            nss, maybe = self.namespaces_matching(peer.namespace_selector)
        else:
            nss, maybe = self.just(policy.namespace), _NONE
        return nss, self.key(peer.pod_selector or EVERYTHING), maybe

    def peer_segments(self, term: Term) -> tuple[list[tuple[_Seg, Cover]], AddressSet]:
        """The segments a peer's pods may be in, with coverage, and their addresses."""
        hit = self._peer_cache.get(term)
        if hit is None:
            nss, _, _ = term
            candidates: dict[int, _Seg] = {}
            for ns in nss:
                for seg in self.by_ns.get(ns, ()):
                    candidates[seg.index] = seg
            found: list[tuple[_Seg, Cover]] = []
            for seg in [*sorted(candidates.values(), key=lambda s: s.index), self.rest]:
                cover = self.coverage(seg, [term])
                if cover is not Cover.NONE:
                    found.append((seg, cover))
            hit = (found, AddressSet.union_all(seg.addresses for seg, _ in found))
            self._peer_cache[term] = hit
        return hit

    def resolve_named(
        self, seg: _Seg, name: str, protocol: Protocol, terms: Sequence[Term] | None
    ) -> PortSet | None:
        """The numbers a port name has on the known pods of `seg` (None: no pod known)."""
        if not self._pods_known(seg):
            return None
        key = (seg.index, name, protocol, None if terms is None else tuple(terms))
        if key in self._named_cache:
            return self._named_cache[key]
        pods = seg.known if terms is None else [p for p in seg.known if self._pod_in(p, terms)]
        numbers = sorted({n for p in pods for n in p.port_numbers(name, protocol)})
        hit = self._named_cache[key] = PortSet.of((n, n) for n in numbers)
        return hit

    # --- per segment and direction ---

    def compile_direction(self, seg: _Seg, direction: PolicyType) -> DirectionIntent:
        if self.tiers is not None:
            return self.tiers.direction(seg, direction)
        candidates = [
            p
            for ns in sorted(seg.possible)
            for p in self.policies_by_ns.get(ns, ())
            if direction in p.policy_types
        ]
        selecting = []
        for policy in candidates:
            cover = self.coverage(seg, [self.own_term(policy)])
            if cover is not Cover.NONE:
                selecting.append((policy, cover))
        if not selecting:
            return DirectionIntent(isolated=False)
        union = [self.own_term(p) for p, _ in selecting]
        what = direction.value.lower()
        if self.coverage(seg, union) is not Cover.ALL:
            self._gathered[(Code.ISOLATION_PARTIAL, seg.name, what)].update(
                p.ref for p, _ in selecting
            )
            return DirectionIntent(isolated=False)
        grants: list[_Grant] = []
        for policy, cover in selecting:
            grants.extend(self._policy_grants(seg, policy, cover, direction))
        return self._isolated(grants)

    def _policy_grants(
        self, seg: _Seg, policy: NetworkPolicy, cover: Cover, direction: PolicyType
    ) -> list[_Grant]:
        """What one NetworkPolicy's rules allow a segment it selects (all, or some pods of)."""
        if cover is Cover.SOME:
            self._gathered[(Code.SELECTOR_WIDENED, policy.ref, direction.value.lower())].add(
                seg.name
            )
        grants: list[_Grant] = []
        for index, rule in enumerate(policy.rules(direction)):
            grants.extend(self._rule_grants(seg, policy, index, rule, direction))
        return grants

    def _isolated(self, grants: list[_Grant]) -> DirectionIntent:
        nodes = self.node_addresses
        if nodes:
            grants.append(
                _Grant(
                    nodes,
                    IntentProtocol.ANY,
                    None,
                    Source(reason="pods and their nodes (kubelet probes, host-network pods)"),
                )
            )
        return DirectionIntent(isolated=True, rules=_merge(grants))

    def _rule_grants(
        self, seg: _Seg, policy: NetworkPolicy, index: int, rule: PolicyRule, direction: PolicyType
    ) -> list[_Grant]:
        # Each peer as (peer index, addresses, the regions its pods fall in); regions None
        # for an address block, whose regions are worked out only if a port is named.
        peers: list[tuple[int | None, AddressSet, list[_Region] | None]] = []
        if rule.peers is None:
            peers.append((None, self.everywhere, None))
        else:
            for j, peer in enumerate(rule.peers):
                if peer.ip_block is not None:
                    peers.append((j, self._block(peer.ip_block.cidr, peer.ip_block.except_), None))
                    continue
                term = self.peer_term(policy, peer)
                segs, union = self.peer_segments(term)
                if term[2]:
                    self._labels_unknown_peer(policy, index, j, term, segs)
                found: list[_Region] = []
                for other, cover in segs:
                    found.append((other, [term]))
                    if cover is Cover.SOME:
                        self._peer_widened(policy, seg, other, index, j)
                peers.append((j, union, found))
        ports = rule.ports or (None,)
        out: list[_Grant] = []
        for peer_index, addresses, regions in peers:
            if not addresses:
                continue
            source = self._source(policy.ref, index, peer_index)
            for port in ports:
                out.extend(
                    self._port_grants(seg, policy, port, addresses, regions, source, direction)
                )
        return out

    def _labels_unknown_peer(
        self,
        policy: NetworkPolicy,
        index: int,
        j: int,
        term: Term,
        segs: list[tuple[_Seg, Cover]],
    ) -> None:
        maybe = term[2] & frozenset().union(*(seg.possible for seg, _ in segs))
        if not maybe:
            return
        code = Code.NAMESPACE_LABELS_UNKNOWN
        self._gathered[(code, policy.ref, "peers")].add(f"rule {index} peer {j}")
        self._gathered[(code, policy.ref, "namespaces")].update(maybe)
        self._gathered[(code, policy.ref, "segments")].update(
            seg.name for seg, _ in segs if seg.possible & maybe
        )

    def _source(self, policy: str, rule: int, peer: int | None) -> Source:
        # One model per policy, rule and peer, however many segments it lands in.
        key = (policy, rule, peer)
        hit = self._sources.get(key)
        if hit is None:
            hit = self._sources[key] = Source(policy=policy, rule=rule, peer=peer)
        return hit

    def _block(self, cidr: str, except_: tuple[str, ...]) -> AddressSet:
        """An ipBlock's addresses: its CIDR minus the exceptions."""
        key = (cidr, except_)
        hit = self._block_cache.get(key)
        if hit is None:
            hit = self._block_cache[key] = AddressSet.of(cidr) - AddressSet.from_cidrs(except_)
        return hit

    def _peer_widened(
        self, policy: NetworkPolicy, seg: _Seg, other: _Seg, index: int, j: int
    ) -> None:
        peer = f"rule {index} peer {j}"
        if other is self.rest:
            self._gathered[(Code.PEER_UNSEGMENTED, policy.ref, "")].add(peer)
        else:
            self._gathered[(Code.PEER_WIDENED, policy.ref, "peers")].add(peer)
            self._gathered[(Code.PEER_WIDENED, policy.ref, "segments")].add(other.name)

    def _port_grants(
        self,
        seg: _Seg,
        policy: NetworkPolicy,
        port: PolicyPort | None,
        addresses: AddressSet,
        regions: list[_Region] | None,
        source: Source,
        direction: PolicyType,
    ) -> list[_Grant]:
        if port is None:
            return [_Grant(addresses, IntentProtocol.ANY, None, source)]
        protocol = IntentProtocol(port.protocol.value)
        if port.port is None:
            return [_Grant(addresses, protocol, None, source)]
        if isinstance(port.port, int):
            span = PortSet.of([(port.port, port.end_port or port.port)])
            return [_Grant(addresses, protocol, span, source)]
        name = port.port
        if direction is PolicyType.INGRESS:
            # The name is looked up on the pods receiving: the pods this policy selects.
            own = [self.own_term(policy)]
            return self._named(seg, policy, name, port.protocol, addresses, seg, own, source)
        # Egress: looked up on the destination pods, per segment they fall in.
        out: list[_Grant] = []
        # A selector peer's addresses are the union of its regions' (segments never
        # overlap), so each region's piece is the region itself; only an address block
        # has to be cut along the segments.
        block = regions is None
        if regions is None:
            regions = self._block_regions(addresses)
        for region, terms in regions:
            if region is None:
                piece = addresses - self.pod_addresses
            elif block:
                piece = addresses & region.addresses
            else:
                piece = region.addresses
            if piece:
                out.extend(
                    self._named(seg, policy, name, port.protocol, piece, region, terms, source)
                )
        return out

    def _block_regions(self, addresses: AddressSet) -> list[_Region]:
        """Where a block of addresses falls: segments (any of their pods), then outside."""
        hit = self._regions_cache.get(addresses)
        if hit is None:
            hit = [
                (other, None)
                for other in [*self.segments, self.rest]
                if other.addresses.overlaps(addresses)
            ]
            hit.append((None, None))
            self._regions_cache[addresses] = hit
        return hit

    def _named(
        self,
        seg: _Seg,
        policy: NetworkPolicy,
        name: str,
        protocol: Protocol,
        addresses: AddressSet,
        dest: _Seg | None,
        terms: list[Term] | None,
        source: Source,
    ) -> list[_Grant]:
        proto = IntentProtocol(protocol.value)
        numbers = self.resolve_named(dest, name, protocol, terms) if dest is not None else None
        if dest is None:
            where = "addresses outside the pod CIDRs"
        else:
            where = "unsegmented pods" if dest is self.rest else f"segment {dest.name}"
        port = f"{name}/{protocol.value}"
        if numbers is None:
            self._gathered[(Code.NAMED_PORT_WIDENED, policy.ref, port)].add(where)
            return [_Grant(addresses, proto, None, source)]
        if not numbers:
            self._gathered[(Code.NAMED_PORT_UNMATCHED, policy.ref, port)].add(where)
            return []
        return [_Grant(addresses, proto, numbers, source)]

    def _find(
        self,
        severity: Severity,
        code: Code,
        *,
        message: str,
        policy: str | None = None,
        segment: str | None = None,
        segments: set[str] | None = None,
    ) -> None:
        """Record a finding; `segments`: those it concerns, where there may be several."""
        many: tuple[str, ...] = ()
        if segments:
            ordered = sorted(segments)
            if len(ordered) == 1:
                segment = ordered[0]
            else:
                many = tuple(ordered)
        self.findings.add((segment or "", policy or "", code, message, severity, many))

    # --- the whole cluster ---

    def run(self) -> Intent:
        self._foreign_findings()
        self._note_findings()
        if self.tiers is not None:
            self.tiers.cluster_findings()
        for seg in self.segments:
            maybe = seg.uncertain & seg.possible
            if maybe:
                self._find(
                    Severity.WARNING,
                    Code.NAMESPACE_LABELS_UNKNOWN,
                    segment=seg.name,
                    message=(
                        f"segment {seg.name} selects namespaces by label, and nsgsync does not "
                        f"know the labels of {_namespaces_named(maybe)}: it is compiled as if "
                        f"it may hold their pods; {_labels_remedy(maybe)}"
                    ),
                )
        segments = []
        for seg in self.segments:
            ingress = self.compile_direction(seg, PolicyType.INGRESS)
            egress = self.compile_direction(seg, PolicyType.EGRESS)
            if ingress.isolated or egress.isolated:
                code = Code.NODE_TRAFFIC if self.topology.node_cidrs else Code.NO_NODE_CIDRS
                self._gathered[(code, "", "")].add(seg.name)
            segments.append(
                SegmentIntent(
                    name=seg.name,
                    cidrs=tuple(seg.addresses.cidrs()),
                    ingress=ingress,
                    egress=egress,
                )
            )
        self._unsegmented_findings()
        self._write_gathered()
        return Intent(
            cluster=self.topology.cluster,
            segments=tuple(segments),
            findings=tuple(
                Finding(
                    severity=severity,
                    code=code,
                    message=message,
                    policy=policy or None,
                    segment=segment or None,
                    segments=many or None,
                )
                for segment, policy, code, message, severity, many in sorted(self.findings)
            ),
        )

    def _write_gathered(self) -> None:
        """The gathered findings, one per cause, naming a few of what each touches."""
        gathered = self._gathered
        for (code, subject, detail), items in sorted(gathered.items()):
            names = _listed(sorted(items))
            if code == Code.ISOLATION_PARTIAL:
                self._find(
                    Severity.WARNING,
                    code,
                    segment=subject,
                    policy=next(iter(items)) if len(items) == 1 else None,
                    message=(
                        f"{names} isolate{'s' if len(items) == 1 else ''} only some pods of "
                        f"segment {subject} for {detail}; its other pods are not isolated, so "
                        f"its {detail} stays open (give the selected pods a segment of their "
                        "own to enforce it)"
                    ),
                )
            elif code == Code.SELECTOR_WIDENED:
                self._find(
                    Severity.WARNING,
                    code,
                    policy=subject,
                    segments=items,
                    message=(
                        f"{subject} selects only some pods of {_segments(items)}; its {detail} "
                        f"rules are applied to the whole of {_it_or_each(items)}"
                    ),
                )
            elif code == Code.PEER_WIDENED and detail == "peers":
                segments = gathered[(code, subject, "segments")]
                self._find(
                    Severity.WARNING,
                    code,
                    policy=subject,
                    segments=segments,
                    message=(
                        f"{subject} {names} match{'es' if len(items) == 1 else ''} only some "
                        f"pods of {_segments(segments)}; {_it_or_each(segments)} is allowed whole"
                    ),
                )
            elif code == Code.NAMESPACE_LABELS_UNKNOWN and detail == "peers":
                maybe = frozenset(gathered[(code, subject, "namespaces")])
                where = gathered[(code, subject, "segments")]
                self._find(
                    Severity.WARNING,
                    code,
                    policy=subject,
                    message=(
                        f"{subject} {names} select{'s' if len(items) == 1 else ''} namespaces "
                        "by label, and nsgsync does not know the labels of "
                        f"{_namespaces_named(maybe)}: their pods are allowed wherever they may "
                        f"be ({_segments(where)}); {_labels_remedy(maybe)}"
                    ),
                )
            elif code == Code.PEER_UNSEGMENTED:
                self._find(
                    Severity.WARNING,
                    code,
                    policy=subject,
                    message=(
                        f"{subject} {names} may match pods in no segment; every unsegmented pod "
                        f"address is allowed ({_listed(self.rest.addresses.cidrs(), most=4)})"
                    ),
                )
            elif code == Code.NAMED_PORT_WIDENED:
                name, protocol = detail.split("/")
                self._find(
                    Severity.WARNING,
                    code,
                    policy=subject,
                    message=(
                        f"{subject} names port {name!r}; no pod of {names} is known to give it "
                        f"a number, so every {protocol} port is allowed there"
                    ),
                )
            elif code == Code.NAMED_PORT_UNMATCHED:
                name, protocol = detail.split("/")
                self._find(
                    Severity.INFO,
                    code,
                    policy=subject,
                    message=(
                        f"{subject} names port {name!r}, which no known pod of {names} declares "
                        f"for {protocol}; it allows nothing there"
                    ),
                )
            elif code == Code.DENY_PARTIAL:
                self._find(
                    Severity.WARNING,
                    code,
                    policy=subject,
                    segments=items,
                    message=(
                        f"{subject} {detail} may match only some of the traffic of "
                        f"{_segments(items)} (some of its pods or peers, or conditions nsgsync "
                        "cannot evaluate); where it is unsure the traffic goes on to later rules "
                        "and tiers, so the cloud rules may allow what it denies"
                    ),
                )
            elif code == Code.RULE_UNMODELED:
                rule, _, reason = detail.partition(": ")
                self._find(
                    Severity.WARNING,
                    code,
                    policy=subject,
                    segments=items,
                    message=(
                        f"{subject} {rule} (Allow) matches on {reason}, which nsgsync cannot "
                        f"evaluate: {_segments(items)} allow{'s' if len(items) == 1 else ''} "
                        "everything the rule may match"
                    ),
                )
            elif code == Code.PROTOCOLS_WIDENED:
                self._find(
                    Severity.WARNING,
                    code,
                    segment=subject,
                    message=(
                        f"segment {subject} allows {detail} traffic of protocols without ports "
                        "(ICMP and others) from addresses where TCP, UDP or SCTP are allowed "
                        "only in part; the Intent says that traffic as ANY, so every protocol "
                        "and port is allowed from those addresses"
                    ),
                )
            elif code == Code.NODE_TRAFFIC:
                self._find(
                    Severity.INFO,
                    code,
                    segments=items,
                    message=(
                        f"{_segments(items)} isolate{'s' if len(items) == 1 else ''} traffic "
                        f"and allow{'s' if len(items) == 1 else ''} the nodes "
                        f"({', '.join(self.topology.node_cidrs)}) in each isolated direction, "
                        "as Kubernetes always does (kubelet probes, host-network pods)"
                    ),
                )
            elif code == Code.NO_NODE_CIDRS:
                self._find(
                    Severity.WARNING,
                    code,
                    segments=items,
                    message=(
                        f"{_segments(items)} isolate{'s' if len(items) == 1 else ''} traffic "
                        "but the topology names no nodeCIDRs: kubelet probes and host-network "
                        "pods may be blocked"
                    ),
                )

    def _foreign_findings(self) -> None:
        """Policy kinds not compiled: refused when they may allow, unless ignored."""
        refused: list[ForeignPolicy] = []
        by_kind: dict[tuple[str, Effect], list[ForeignPolicy]] = defaultdict(list)
        for found in self.inventory.foreign:
            if found.effect is Effect.MAY_ALLOW and not found.ignored_by(self.options.ignore_kinds):
                refused.append(found)
            else:
                by_kind[(found.qualified_kind, found.effect)].append(found)
        if refused:
            shown = "; ".join(f"{f.kind} {f.name} ({f.where})" for f in refused[:10])
            more = f"; and {len(refused) - 10} more" if len(refused) > 10 else ""
            kinds = sorted({f.kind for f in refused})
            raise UnsupportedKindError(
                f"{len(refused)} policies of kinds nsgsync does not compile: {shown}{more}",
                hint=UnsupportedKindError.hint
                + " (e.g. "
                + " ".join(f"--ignore-kind {k}" for k in kinds)
                + ")",
            )
        for (kind, effect), objects in sorted(by_kind.items()):
            names = _listed([f.name for f in objects])
            if effect is Effect.MAY_ALLOW:
                self._find(
                    Severity.WARNING,
                    Code.KIND_IGNORED,
                    message=(
                        f"{len(objects)} {kind} objects ({names}) are not compiled, as "
                        "--ignore-kind says; traffic they allow beyond the NetworkPolicies "
                        "is blocked by the cloud rules"
                    ),
                )
            else:
                self._find(
                    Severity.INFO,
                    Code.KIND_NARROWS_ONLY,
                    message=(
                        f"{len(objects)} {kind} objects ({names}) are not compiled: they can "
                        "only narrow what the network allows, so the cloud rules stay sound "
                        "without them"
                    ),
                )

    def _note_findings(self) -> None:
        """What the sources' lowering of other dialects widened or left out, as said."""
        for code, policy, message in self.inventory.notes:
            found = Code(code)
            severity = Severity.INFO if found in _INFO_NOTES else Severity.WARNING
            self._find(severity, found, policy=policy or None, message=message)

    def _unsegmented_findings(self) -> None:
        if not self.rest.possible:
            return
        if not self.rest.addresses:
            self._find(
                Severity.WARNING,
                Code.UNSEGMENTED_WITHOUT_ADDRESSES,
                message=(
                    "pods may exist that no segment selects, but the segments' CIDRs cover all "
                    "of podCIDRs; end the segments with a catch-all (namespaceSelector: {})"
                ),
            )
        for ns in sorted(self.rest.possible):
            for policy in self.policies_by_ns.get(ns, ()):
                if self.coverage(self.rest, [self.own_term(policy)]) is not Cover.NONE:
                    self._find(
                        Severity.INFO,
                        Code.NOT_ENFORCED,
                        policy=policy.ref,
                        message=(
                            f"{policy.ref} selects pods that are in no segment; the cloud does "
                            "not enforce it for them"
                        ),
                    )


def _labels_remedy(namespaces: frozenset[str]) -> str:
    if namespaces == {OTHER_NAMESPACES}:
        return (
            "read the namespaces with --from-cluster, or pass --namespaces-complete if the "
            "Namespace manifests given are all of the cluster's"
        )
    return (
        "give the namespaces' labels with their Namespace manifests (-f namespaces.yaml) or "
        "read them with --from-cluster"
    )


def _listed(names: Sequence[str], *, most: int = 5) -> str:
    """`a, b, c and 4 more`: a finding names a few and counts the rest."""
    shown = ", ".join(names[:most])
    return f"{shown} and {len(names) - most} more" if len(names) > most else shown


def _segments(names: Iterable[str]) -> str:
    ordered = sorted("unsegmented pods" if n == UNSEGMENTED else n for n in names)
    if len(ordered) == 1:
        return f"segment {ordered[0]}"
    return f"{len(ordered)} segments ({_listed(ordered)})"


def _it_or_each(names: set[str]) -> str:
    return "the segment" if len(names) == 1 else "each"


def _namespaces_named(namespaces: frozenset[str]) -> str:
    names = sorted(n for n in namespaces if n != OTHER_NAMESPACES)
    text = ""
    if names:
        text = f"namespace {names[0]}" if len(names) == 1 else f"namespaces {_listed(names)}"
    if OTHER_NAMESPACES in namespaces:
        text += (", nor of " if text else "") + (
            "namespaces it was not given (it read no complete list of namespaces)"
        )
    return text


_PROTOCOL_ORDER = {
    IntentProtocol.ANY: 0,
    IntentProtocol.TCP: 1,
    IntentProtocol.UDP: 2,
    IntentProtocol.SCTP: 3,
}


def _source_key(s: Source) -> tuple[str, int, int, str]:
    return (
        s.policy or "",
        -1 if s.rule is None else s.rule,
        -1 if s.peer is None else s.peer,
        s.reason or "",
    )


def _merge(grants: Iterable[_Grant]) -> tuple[Rule, ...]:
    """Group by protocol and ports, merge peers, drop what a wider rule already allows."""
    # Collected first and merged once per group: merging pairwise as grants come in
    # re-sorts the growing set for every grant.
    groups: dict[
        tuple[IntentProtocol, tuple[tuple[int, int], ...] | None],
        tuple[list[AddressSet], set[Source]],
    ] = {}
    for grant in grants:
        span = grant.ports
        if span is not None and span.is_all():
            span = None
        if span is not None and not span:
            continue
        key = (grant.protocol, span.ranges if span is not None else None)
        entry = groups.get(key)
        if entry is None:
            entry = groups[key] = ([], set())
        entry[0].append(grant.addresses)
        entry[1].add(grant.source)
    merged = {key: AddressSet.union_all(parts) for key, (parts, _) in groups.items()}
    nothing = AddressSet()
    any_all = merged.get((IntentProtocol.ANY, None), nothing)
    rules = []
    for (protocol, ports), (_, sources) in groups.items():
        addresses = merged[(protocol, ports)]
        if (protocol, ports) != (IntentProtocol.ANY, None):
            addresses = addresses - any_all
        if ports is not None:
            addresses = addresses - merged.get((protocol, None), nothing)
        if not addresses:
            continue
        ordered = tuple(sorted(sources, key=_source_key))
        rules.append(
            Rule(
                peers=tuple(addresses.cidrs()),
                protocol=protocol,
                ports=ports,
                policies=tuple(sorted({s.policy for s in sources if s.policy})),
                sources=ordered,
            )
        )
    rules.sort(key=lambda r: (_PROTOCOL_ORDER[r.protocol], r.ports or (), r.peers))
    return tuple(rules)


def compile_intent(
    topology: Topology, inventory: Inventory, *, options: CompileOptions | None = None
) -> Intent:
    """Policies, namespaces, pods and topology in; the Intent and its findings out."""
    # No garbage-collector switch here: a library call must not change the process's
    # collector. The CLI tunes it for its own process (nsgsync.cli.main, docs/benchmarks.md).
    return _Compiler(topology, inventory, options or CompileOptions()).run()
