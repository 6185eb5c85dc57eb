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

from nsgsync.compile.labels import SelectorKey, matches_key, satisfiable_keys
from nsgsync.intent import (
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

UNSEGMENTED = "(unsegmented pods)"
_IN = Operator.IN.value

# A set of pods: namespaces it may be in, and a selector on the pods' labels, held as
# its canonical key (hashable, and cheap to match, unlike the LabelSelector model).
Term = tuple[frozenset[str], SelectorKey]


class Cover(Enum):
    NONE = "none"
    SOME = "some"
    ALL = "all"


@dataclass(frozen=True)
class CompileOptions:
    # Ignore known pods when deciding coverage and named ports: rules then hold for
    # any pod the selectors admit, including pods that do not exist yet.
    selector_only: bool = False


@dataclass
class _Seg:
    index: int
    name: str
    addresses: AddressSet
    pod_selector: SelectorKey
    namespaces: frozenset[str]
    possible: frozenset[str] = frozenset()
    known: list[PodInfo] = field(default_factory=list)


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
        self.findings: set[tuple[str, str, str, str, Severity]] = set()
        # Namespaces the topology names exist too, with only their name label.
        self.namespace_labels = dict(inventory.namespaces)
        for spec in topology.segments:
            if spec.namespace is not None and spec.namespace not in self.namespace_labels:
                self.namespace_labels[spec.namespace] = {NAMESPACE_NAME_LABEL: spec.namespace}
        self.all_namespaces = frozenset(self.namespace_labels)
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
        self._ns_match_cache: dict[SelectorKey, frozenset[str]] = {}
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
        return self.just(policy.namespace), self.key(policy.pod_selector)

    # --- the universe: segments, the namespaces they cover, the pods they hold ---

    def _build_segments(self) -> None:
        self.segments: list[_Seg] = []
        for i, spec in enumerate(self.topology.segments):
            if spec.namespace is not None:
                nss = self.just(spec.namespace)
            else:
                assert spec.namespace_selector is not None
                nss = self.namespaces_matching(spec.namespace_selector)
            seg = _Seg(i, spec.name, spec.addresses, self.key(spec.pod_selector), nss)
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
        """Selectors of the segments before `seg` that take pods of `ns` first."""
        hit = self._earlier_cache.get((seg.index, ns))
        if hit is None:
            out = []
            for other in self.by_ns.get(ns, ()):
                if other.index >= seg.index:
                    break
                out.append(other.pod_selector)
            hit = self._earlier_cache[(seg.index, ns)] = tuple(out)
        return hit

    def _assign_pods(self) -> None:
        for pod in self.inventory.pods:
            if pod.host_network:
                continue  # policies do not apply to it; as a peer it has a node address
            self.segment_of_pod(pod).known.append(pod)

    def segment_of_pod(self, pod: PodInfo) -> _Seg:
        for seg in self.by_ns.get(pod.namespace, ()):
            if matches_key(seg.pod_selector, pod.labels):
                return seg
        return self.rest

    def namespaces_matching(self, selector: LabelSelector) -> frozenset[str]:
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
            hit = frozenset(ns for ns in candidates if matches_key(key, self.namespace_labels[ns]))
            self._ns_match_cache[key] = hit
        return hit

    # --- coverage: does a set of pods hold all, none or some of a segment's pods ---

    def coverage(self, seg: _Seg, terms: Sequence[Term]) -> Cover:
        # Cached: both directions, and policies with the same selector, ask the same.
        key = (seg.index, tuple(terms))
        hit = self._cover_cache.get(key)
        if hit is None:
            hit = self._cover_cache[key] = self._coverage(seg, terms)
        return hit

    def _coverage(self, seg: _Seg, terms: Sequence[Term]) -> Cover:
        named = frozenset().union(*(nss for nss, _ in terms)) if terms else frozenset()
        relevant = seg.possible & named
        if not relevant:
            return Cover.NONE
        results: set[Cover] = set()
        if seg.possible - named:
            results.add(Cover.NONE)
        for ns in sorted(relevant):
            earlier = self._earlier(seg, ns)
            selectors = [sel for nss, sel in terms if ns in nss]
            if not satisfiable_keys((seg.pod_selector,), (*earlier, *selectors)):
                results.add(Cover.ALL)
            elif all(not satisfiable_keys((seg.pod_selector, sel), earlier) for sel in selectors):
                results.add(Cover.NONE)
            else:
                results.add(Cover.SOME)
            if Cover.SOME in results or len(results) > 1:
                break
        cover = results.pop() if len(results) == 1 else Cover.SOME
        if cover is Cover.SOME and seg.known and not self.options.selector_only:
            hits = [self._pod_in(pod, terms) for pod in seg.known]
            if all(hits):
                return Cover.ALL
            if not any(hits):
                return Cover.NONE
        return cover

    @staticmethod
    def _pod_in(pod: PodInfo, terms: Iterable[Term]) -> bool:
        return any(pod.namespace in nss and matches_key(sel, pod.labels) for nss, sel in terms)

    # --- peers and ports ---

    def peer_term(self, policy: NetworkPolicy, peer: Peer) -> Term:
        if peer.namespace_selector is not None:
            nss = self.namespaces_matching(peer.namespace_selector)
        else:
            nss = self.just(policy.namespace)
        return nss, self.key(peer.pod_selector or EVERYTHING)

    def peer_segments(self, term: Term) -> tuple[list[tuple[_Seg, Cover]], AddressSet]:
        """The segments a peer's pods may be in, with coverage, and their addresses."""
        hit = self._peer_cache.get(term)
        if hit is None:
            nss, _ = term
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
        if self.options.selector_only or not seg.known:
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
            for policy, _ in selecting:
                self._find(
                    Severity.WARNING,
                    "isolation-partial",
                    policy=policy.ref,
                    segment=seg.name,
                    message=(
                        f"{policy.ref} isolates only some pods of segment {seg.name} for {what}; "
                        f"other pods of the segment are not isolated, so its {what} stays open "
                        "(give the selected pods a segment of their own to enforce it)"
                    ),
                )
            return DirectionIntent(isolated=False)
        grants: list[_Grant] = []
        for policy, cover in selecting:
            if cover is Cover.SOME:
                self._find(
                    Severity.WARNING,
                    "selector-widened",
                    policy=policy.ref,
                    segment=seg.name,
                    message=(
                        f"{policy.ref} selects only some pods of segment {seg.name}; its {what} "
                        "rules are applied to the whole segment"
                    ),
                )
            for index, rule in enumerate(policy.rules(direction)):
                grants.extend(self._rule_grants(seg, policy, index, rule, direction))
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
        if other is self.rest:
            self._find(
                Severity.WARNING,
                "peer-unsegmented",
                policy=policy.ref,
                segment=seg.name,
                message=(
                    f"{policy.ref} rule {index} peer {j} may match pods in no segment; "
                    "every unsegmented pod address is allowed "
                    f"({', '.join(other.addresses.cidrs()[:4])})"
                ),
            )
        else:
            self._find(
                Severity.WARNING,
                "peer-widened",
                policy=policy.ref,
                segment=seg.name,
                message=(
                    f"{policy.ref} rule {index} peer {j} matches only some pods of segment "
                    f"{other.name}; the whole segment is allowed"
                ),
            )

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
        where = dest.name if dest is not None else "addresses outside the pod CIDRs"
        if numbers is None:
            self._find(
                Severity.WARNING,
                "named-port-widened",
                policy=policy.ref,
                segment=seg.name,
                message=(
                    f"{policy.ref} names port {name!r}; no pod of {where} is known to give it a "
                    f"number, so every {protocol.value} port is allowed there"
                ),
            )
            return [_Grant(addresses, proto, None, source)]
        if not numbers:
            self._find(
                Severity.INFO,
                "named-port-unmatched",
                policy=policy.ref,
                segment=seg.name,
                message=(
                    f"{policy.ref} names port {name!r}, which no known pod of {where} declares "
                    f"for {protocol.value}; it allows nothing there"
                ),
            )
            return []
        return [_Grant(addresses, proto, numbers, source)]

    def _find(
        self,
        severity: Severity,
        code: str,
        *,
        message: str,
        policy: str | None = None,
        segment: str | None = None,
    ) -> None:
        self.findings.add((segment or "", policy or "", code, message, severity))

    # --- the whole cluster ---

    def run(self) -> Intent:
        segments = []
        for seg in self.segments:
            ingress = self.compile_direction(seg, PolicyType.INGRESS)
            egress = self.compile_direction(seg, PolicyType.EGRESS)
            isolated = [
                d for d, side in (("ingress", ingress), ("egress", egress)) if side.isolated
            ]
            if isolated and self.topology.node_addresses:
                self._find(
                    Severity.INFO,
                    "node-traffic",
                    segment=seg.name,
                    message=(
                        f"segment {seg.name} allows {' and '.join(isolated)} traffic with the "
                        f"nodes ({', '.join(self.topology.node_cidrs)}), as Kubernetes always does"
                    ),
                )
            elif isolated:
                self._find(
                    Severity.WARNING,
                    "no-node-cidrs",
                    segment=seg.name,
                    message=(
                        f"segment {seg.name} is isolated but the topology names no nodeCIDRs: "
                        "kubelet probes and host-network pods may be blocked"
                    ),
                )
            segments.append(
                SegmentIntent(
                    name=seg.name,
                    cidrs=tuple(seg.addresses.cidrs()),
                    ingress=ingress,
                    egress=egress,
                )
            )
        self._unsegmented_findings()
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
                )
                for segment, policy, code, message, severity in sorted(self.findings)
            ),
        )

    def _unsegmented_findings(self) -> None:
        if not self.rest.possible:
            return
        if not self.rest.addresses:
            self._find(
                Severity.WARNING,
                "unsegmented-without-addresses",
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
                        "not-enforced",
                        policy=policy.ref,
                        message=(
                            f"{policy.ref} selects pods that are in no segment; the cloud does "
                            "not enforce it for them"
                        ),
                    )


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
