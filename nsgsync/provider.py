"""What a cloud adapter is, and how nsgsync finds one (entry-point group `nsgsync.providers`).

Adapters live in providers/ and are the only code that imports a cloud SDK. The contract
(docs/providers.md):

- `Provider.configure(topology) -> Adapter` validates the provider's own topology block
  once; the adapter it returns holds that configuration and nothing else.
- `Adapter.read(session) -> Snapshot`: what nsgsync owns, under typed identities, and what
  constrains it (names and priorities others hold, quotas).
- `Adapter.desired(intent, snapshot) -> (resources, findings)`: pure.
- `Adapter.reread(session, touched, applied=) -> resources`: a narrow read of what one
  phase will touch, compared by the engine with the plan's snapshot before it writes.
- Primitive writes, one per phase, each given one batch: the engine (nsgsync.engine)
  decides the order and the batches, never the adapter.

An adapter keeps no state between calls: what a later call needs travels in the Snapshot
or in the `Applied` record the engine passes along.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError

from nsgsync.errors import CloudError, Failure, ProviderError, TopologyError, did_you_mean, excerpt
from nsgsync.intent import Finding, Intent, IntentProtocol, Rule
from nsgsync.model import Topology
from nsgsync.net import AddressSet, PortSet
from nsgsync.plan import Change, Ident, Resource

GROUP = "nsgsync.providers"

# Ownership marks (docs/contracts.md): the tags or labels on what nsgsync made, the same
# names in every cloud that has tags and on the Kubernetes objects that attach them.
CLUSTER_TAG = "nsgsync.io/cluster"
SEGMENT_TAG = "nsgsync.io/segment"


def cut(text: str, limit: int) -> str:
    """A rule's provenance cut to what the cloud takes, never refused: the head is kept
    and "..." marks the cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


M = TypeVar("M", bound=BaseModel)

Progress = Callable[[str], None]


class Phase(StrEnum):
    """The engine's phases, in the order it runs them (see nsgsync.engine)."""

    CREATE = "create"  # new containers, then changes to existing containers
    ADD = "add"  # new allow rules
    WIDEN = "widen"  # in-place changes that only widen
    NARROW = "narrow"  # other in-place changes, and removal/addition pairs
    DENY = "deny"  # deny rules, new or changed, once the allows they make way for exist
    LINK = "link"  # links (an NSG to its subnets), new or changed
    REMOVE = "remove"  # stale rules
    UNLINK = "unlink"  # stale links
    DELETE = "delete"  # stale containers


# Seconds, per attempt of one cloud call: a connection is made in well under a second where
# the endpoint is reachable at all, and the slowest call nsgsync makes (a page of 1,000 rules)
# answers in a few. An endpoint that accepts and never answers fails in seconds, not minutes.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
ATTEMPTS = 5  # per call, the first included; the SDKs back off between them


@dataclass(frozen=True)
class Timeouts:
    """How long one cloud call may take, and (`deadline`, on `time.monotonic()`'s clock)
    when the whole run stops: adapters give every SDK client these, and the engine checks
    the deadline between calls."""

    connect: float = CONNECT_TIMEOUT
    read: float = READ_TIMEOUT
    attempts: int = ATTEMPTS
    deadline: float | None = None
    limit: float | None = None  # the --timeout it came from, for messages

    @classmethod
    def run_for(cls, seconds: float | None) -> Timeouts:
        if seconds is None:
            return cls()
        return cls(deadline=time.monotonic() + seconds, limit=seconds)

    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def read_timeout(self) -> float:
        """The read timeout of one attempt: never past the run's deadline."""
        left = self.left()
        return self.read if left is None else max(0.5, min(self.read, left))

    def connect_timeout(self) -> float:
        left = self.left()
        return self.connect if left is None else max(0.5, min(self.connect, left))

    def check(self, doing: str) -> None:
        """Raise CloudError(TIMEOUT) when the deadline has passed, before `doing`."""
        left = self.left()
        if left is not None and left <= 0:
            raise CloudError(
                f"the run reached its --timeout of {self.limit:g} s before {doing}",
                failure=Failure.TIMEOUT,
            )


@dataclass(frozen=True)
class Budget:
    """One quota that rules count against: a container's side, or a whole project.

    `limit` is what nsgsync may hold there: the cloud's quota less what others hold.
    """

    scope: tuple[str, ...]
    what: str  # for people: "the ingress rules of security group nsgsync-c-web"
    limit: int
    segment: str | None = None
    direction: str | None = None
    hint: str = ""
    family: int | None = None  # 4 or 6 where the cloud counts the families apart (AWS)


Spans = tuple[tuple[int, int], ...]
# Every port of a protocol, and the protocols a firewall tells apart by name; "other" is
# every protocol without ports (ICMP, ESP, ...).
ALL_PORTS: Spans = ((0, 65535),)
PROTOCOLS = ("tcp", "udp", "sctp", "other")


def any_protocol(spans: Spans | None = None) -> tuple[tuple[str, Spans], ...]:
    """Every protocol: on `spans` where a protocol has ports, and the portless ones too
    (over-reaching is the safe side of a footprint, see Footprint)."""
    return tuple((p, spans or ALL_PORTS) for p in PROTOCOLS)


@dataclass(frozen=True)
class Footprint:
    """What an allow rule lets through, for the engine's pairing check: connections on the
    addresses `own` (None: every address the rule's container guards) to or from `peers`,
    on `ports` (protocol, port spans), where `scope` evaluates rules together (a group's
    side, an NSG's direction, a network's direction).

    The engine only asks whether two footprints overlap, so a footprint that says more
    than the rule lets through (a wider peer, every port) is safe, one that says less is
    not; `exact` says that it is neither (only an exact footprint may `cover` another).
    `pairable`: whether the adapter can write this rule in another one's place.
    """

    scope: tuple[str, ...]
    peers: AddressSet
    ports: tuple[tuple[str, Spans], ...]
    own: AddressSet | None = None
    pairable: bool = True
    exact: bool = True

    def overlaps(self, other: Footprint) -> bool:
        # Cheapest first: the ports tell most rules of one side apart.
        if self.scope != other.scope or not any(
            p == q and any(lo <= h2 and lo2 <= hi for lo, hi in a for lo2, h2 in b)
            for p, a in self.ports
            for q, b in other.ports
        ):
            return False
        if self.own is not None and other.own is not None and not self.own.overlaps(other.own):
            return False
        return self.peers.overlaps(other.peers)

    def beyond(self, other: Footprint | None) -> Footprint | None:
        """At least what this lets through and `other` does not (None: nothing), for a rule
        changed in place from this content to `other`'s: exact where the two differ in
        their peers only, else all of this."""
        if other is None or other.scope != self.scope:
            return self
        if self.ports == other.ports and self.own == other.own and self.exact and other.exact:
            rest = self.peers - other.peers
            return replace(self, peers=rest) if rest else None
        return None if other.covers(self) else self

    def covers(self, other: Footprint) -> bool:
        """Whether this surely lets through all `other` may."""
        if not self.exact or self.scope != other.scope or not other.peers.issubset(self.peers):
            return False
        if self.own is not None and (other.own is None or not other.own.issubset(self.own)):
            return False
        mine: dict[str, list[tuple[int, int]]] = {}
        for p, spans in self.ports:
            mine.setdefault(p, []).extend(spans)
        return all(
            any(lo <= a and b <= hi for lo, hi in mine.get(p, ()))
            for p, spans in other.ports
            for a, b in spans
        )


def lets_through(wide: Rule, narrow: Rule) -> bool:
    """Whether `wide` allows every protocol and port `narrow` does (addresses aside)."""
    if wide.protocol is not IntentProtocol.ANY and wide.protocol is not narrow.protocol:
        return False
    if wide.ports is None:
        return True
    if narrow.ports is None:
        return False
    return _ports_within(narrow.ports, wide.ports)


@lru_cache(maxsize=4096)  # a side's rules are compared pairwise; their ports repeat
def _ports_within(narrow: tuple[tuple[int, int], ...], wide: tuple[tuple[int, int], ...]) -> bool:
    return PortSet.of(narrow).issubset(PortSet.of(wide))


def dont_care_peers(
    rules: Sequence[Rule], peers: Sequence[AddressSet], *, exact: Sequence[bool] | None = None
) -> list[AddressSet]:
    """Each rule's `peers` as the fewest prefixes, where addresses that another rule of the
    same side already allows on the same or more protocols and ports (the node rule, for
    one) count as don't-care: `0.0.0.0/0` less the node CIDRs is `0.0.0.0/0` again.

    Sound: each rule keeps all its own peers, and what it gains another rule allows
    already, on at least its ports. `exact[i]` False: rule i is written wider than the
    Intent says (all ports of SCTP on AWS): it gains nothing, as no rule is known to
    cover what it writes.
    """
    out = []
    for i, (rule, mine) in enumerate(zip(rules, peers, strict=True)):
        if exact is not None and not exact[i]:
            out.append(mine)
            continue
        others = [peers[j] for j, other in enumerate(rules) if j != i and lets_through(other, rule)]
        out.append(mine.cover(AddressSet.union_all(others)) if others else mine)
    return out


@dataclass(frozen=True)
class Snapshot:
    """What nsgsync owns in the cloud, read once, and what constrains it.

    `constraints` is the adapter's own frozen record (names, priorities and quota shares
    others hold); the core never looks inside it.
    """

    resources: tuple[Resource, ...] = ()
    constraints: Any = None
    offline: bool = False
    # How many network interfaces (or subnets) use each container, by its cloud id, where
    # the adapter counts them (None: it does not). A container that is to go away while
    # this is above 0 retires instead: kept whole until nothing uses it (nsgsync.engine).
    users: Mapping[str, int] | None = field(default=None, compare=False, hash=False)
    users_are: str = "network interfaces"


@dataclass
class Applied:
    """The cloud's ids of the containers, as the engine learns them during one apply."""

    ids: dict[Ident, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Created:
    """A container the cloud made: its id, the rules written with it (an NSG takes its
    rules inline), and those the cloud added by itself (AWS's default egress rule)."""

    ident: Ident
    cloud_id: str
    absorbed: frozenset[Ident] = frozenset()
    implicit: tuple[Resource, ...] = ()


@runtime_checkable
class Adapter(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def cluster(self) -> str: ...

    @property
    def pairs(self) -> bool:
        """Whether NARROW can replace a rule by another in one call (count-neutral): given
        a CHANGE whose old and new resources differ in identity, `write` rewrites the old
        rule in place with the new one's content, and `desired` names a rule after an
        existing one of the same content, so that the next plan finds nothing to do."""
        ...

    @property
    def cascades(self) -> bool:
        """Whether deleting a container deletes its rules (they need no removal of their own)."""
        ...

    def session(self, **clients: Any) -> Any:
        """A live session; tests pass clients or transports in, the CLI lets the SDK find
        them from the environment and the topology's endpoint settings."""
        ...

    def read(self, session: Any) -> Snapshot: ...

    def reread(
        self, session: Any, touched: Sequence[Resource], *, applied: Applied
    ) -> tuple[Resource, ...]:
        """What nsgsync owns now of `touched`, read as `read` reads it: each of these
        resources, its container, and every resource in that container (those that exist).
        It may return more (the engine keeps what it asked for), never less. `applied`
        holds the containers' cloud ids, those made by this apply too. The engine calls it
        before each phase writes, to stop when the cloud moved since the plan's snapshot."""
        ...

    def desired(self, intent: Intent, snapshot: Snapshot) -> tuple[list[Resource], list[Finding]]:
        """The resources that realise the Intent against this snapshot (pure), what
        rendering widened; raises LimitError or ProviderError when they cannot exist."""
        ...

    def restore(
        self, type_: str, key: str, body: Mapping[str, Any], segment: str | None
    ) -> Resource:
        """A resource as a saved plan wrote it, typed again."""
        ...

    def budget(self, resource: Resource, snapshot: Snapshot) -> Budget | None:
        """The quota a rule counts against, or None."""
        ...

    def denies(self, resource: Resource) -> bool: ...

    def footprint(self, resource: Resource) -> Footprint | None:
        """What an allow rule lets through (None for a deny, or where unknown: such a rule
        is never paired, and a change of it blocks every pair that could overlap it)."""
        ...

    def widens(self, old: Resource, new: Resource) -> bool:
        """Whether `new` lets through at least what `old` did (same identity)."""
        ...

    def batch_size(self, phase: Phase) -> int: ...

    def create(
        self,
        session: Any,
        change: Change,
        rules: Sequence[Change],
        *,
        applied: Applied,
        progress: Progress,
    ) -> Created | None:
        """Create a container (ADD; `rules` are its new rules) or change one in place
        (CHANGE; returns None)."""
        ...

    def write(
        self,
        session: Any,
        phase: Phase,
        batch: Sequence[Change],
        *,
        applied: Applied,
        progress: Progress,
    ) -> None:
        """One batch of one phase, in as few calls as the API allows."""
        ...


@runtime_checkable
class Provider(Protocol):
    name: str

    def configure(self, topology: Topology, *, source: str | None = None) -> Adapter:
        """Validate this provider's topology block (and the segments' settings for it)
        once; TopologyError names `source` (the topology file) and the key."""
        ...


@runtime_checkable
class Attaching(Protocol):
    """An adapter whose resources reach pods through Kubernetes objects (AWS: SGPs)."""

    def attachments(
        self,
        namespaces: Mapping[str, Mapping[str, str]],
        snapshot: Snapshot,
    ) -> tuple[list[dict[str, Any]], list[Finding]]:
        """The Kubernetes manifests that attach the cloud resources to the pods."""
        ...


def settings(
    model: type[M],
    block: Mapping[str, Any] | None,
    *,
    topology: Topology,
    field: str,
    source: str | None = None,
) -> M:
    """`block` validated as `model`, once; a TopologyError names the file and the key
    (`aws.vpcID`), and suggests the key meant where one is unknown."""
    try:
        return model.model_validate(dict(block or {}))
    except ValidationError as exc:
        # A misspelt key is also a missing one: name the misspelling, which says both.
        errors = exc.errors()
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        loc = [str(p) for p in err["loc"]]
        message = str(err["msg"])
        if err["type"] == "extra_forbidden" and loc:
            keys = [f.alias or name for name, f in model.model_fields.items()]
            message = f"unknown key {excerpt(loc[-1])}{did_you_mean(loc[-1], keys)}"
        raise TopologyError(
            message,
            file=source,
            obj=f"Topology {topology.cluster}",
            field=".".join([field, *loc]),
        ) from exc


def segment_settings(
    model: type[M], topology: Topology, provider: str, *, source: str | None = None
) -> dict[str, M]:
    """Each segment's block for `provider` (`segments[i].aws`), validated as `model`."""
    return {
        seg.name: settings(
            model,
            seg.provider_settings(provider),
            topology=topology,
            field=f"segments[{i}].{provider}",
            source=source,
        )
        for i, seg in enumerate(topology.segments)
    }


def installed() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def load_provider(name: str) -> Provider:
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        have = ", ".join(installed()) or "none"
        raise ProviderError(
            f"no provider named {name!r} is installed (installed: {have})",
            hint=f"pip install 'nsgsync[{name}]', or fix `provider:` in the topology",
        )
    try:
        provider = found[0].load()
    except ImportError as exc:
        raise ProviderError(
            f"provider {name!r} is registered but cannot be imported: {exc}",
            hint=f"install its SDK with: pip install 'nsgsync[{name}]'",
        ) from exc
    if not isinstance(provider, Provider):
        raise ProviderError(f"entry point {name!r} in {GROUP} is not a provider")
    return provider


def configure(topology: Topology, *, source: str | None = None) -> Adapter:
    """The adapter for the topology's provider, configured from its block."""
    return load_provider(topology.provider).configure(topology, source=source)


__all__ = [
    "Adapter",
    "Applied",
    "Attaching",
    "Budget",
    "Created",
    "Footprint",
    "Phase",
    "Progress",
    "Provider",
    "Snapshot",
    "Timeouts",
    "any_protocol",
    "configure",
    "dont_care_peers",
    "installed",
    "lets_through",
    "load_provider",
    "settings",
]
