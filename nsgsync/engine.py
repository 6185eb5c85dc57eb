"""Plan and apply: the Intent through an adapter, against the cloud, with guardrails.

The engine owns the order of every apply, for every cloud (docs/providers.md):

    create containers -> add allow rules -> change rules in place (widening first) ->
    deny rules -> links -> remove rules -> unlink -> delete containers

so that every connection allowed both before and after an apply is allowed at every
moment of it. Each rule quota is checked at its transient peak (adds come before removes);
where the peak would not fit, a removal and an addition become one in-place change
(count-neutral) if the adapter can make one and no moment of it blocks what stays allowed
(`_pairs`); otherwise the plan fails before any write.
Before each phase writes, what it touches is re-read (`Adapter.reread`) and compared with
the plan's snapshot plus this apply's own writes: another writer's change stops the apply
there (docs/operating-in-production.md, Locking).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from nsgsync.errors import (
    CloudError,
    ConcurrentChangeError,
    GuardrailError,
    LimitError,
    ProviderError,
    StalePlanError,
    excerpt,
)
from nsgsync.intent import Finding, Intent
from nsgsync.plan import Change, Ident, Op, Plan, Resource, Retiring, Role, fingerprint
from nsgsync.provider import (
    Adapter,
    Applied,
    Budget,
    Footprint,
    Phase,
    Progress,
    Snapshot,
    Timeouts,
)

ORDER = (
    Phase.ADD,
    Phase.WIDEN,
    Phase.NARROW,
    Phase.DENY,
    Phase.LINK,
    Phase.REMOVE,
    Phase.UNLINK,
    Phase.DELETE,
)


@dataclass(frozen=True)
class Planned:
    plan: Plan
    findings: tuple[Finding, ...]
    snapshot: Snapshot

    @property
    def actual(self) -> tuple[Resource, ...]:
        return self.snapshot.resources


def read(adapter: Adapter, session: object | None) -> Snapshot:
    """The cloud as it is (an empty, offline snapshot without a session)."""
    return Snapshot(offline=True) if session is None else adapter.read(session)


def make_plan(
    adapter: Adapter,
    intent: Intent,
    *,
    session: object | None = None,
    snapshot: Snapshot | None = None,
    notes: Sequence[str] = (),
    destroy: bool = False,
) -> Planned:
    """Desired from the Intent (nothing, to destroy), actual from the cloud, the diff, and
    its schedule checked against every quota before anything is written."""
    snap = snapshot if snapshot is not None else read(adapter, session)
    desired: list[Resource] = []
    findings: list[Finding] = []
    if not destroy:
        desired, findings = adapter.desired(intent, snap)
    plan = derive(adapter, cluster=intent.cluster, desired=desired, snapshot=snap, notes=notes)
    return Planned(plan, tuple(findings), snap)


def derive(
    adapter: Adapter,
    *,
    cluster: str,
    desired: Sequence[Resource],
    snapshot: Snapshot,
    notes: Sequence[str] = (),
) -> Plan:
    """The plan that turns the snapshot into `desired`: the diff, less what retires, and
    its schedule checked against every quota before anything is written."""
    plan = Plan.build(
        provider=adapter.name,
        cluster=cluster,
        desired=desired,
        actual=snapshot.resources,
        offline=snapshot.offline,
        notes=notes,
    )
    plan = replace(_retire(plan, snapshot), basis=snapshot)
    schedule(adapter, plan, snapshot)
    return plan


def _retire(plan: Plan, snapshot: Snapshot) -> Plan:
    """A container to destroy that interfaces (or subnets) still use is kept whole: emptied,
    it would cut the traffic of the pods behind them, and the cloud refuses to delete it
    anyway. Its replacement is made by the same plan; a later plan destroys it, once unused
    (docs/operating-in-production.md#retiring-groups-and-ownership)."""
    users = snapshot.users or {}
    used = {
        c.resource.ident: c.resource
        for c in plan.changes
        if c.op is Op.DESTROY
        and c.resource.role is Role.CONTAINER
        and users.get(c.resource.cloud_id or "", 0) > 0
    }
    if not used:
        return plan
    kept: Counter[Ident] = Counter()
    changes = []
    for c in plan.changes:
        res = c.resource
        if c.op is Op.DESTROY and (res.ident in used or res.container in used):
            if res.container is not None:
                kept[res.container] += 1
            continue
        if c.op is Op.DESTROY and res.peer in used:
            continue  # another container's rule that lets the retiring one's users through
        changes.append(c)
    retiring = tuple(
        Retiring(
            r.type,
            r.key,
            r.segment,
            r.cloud_id,
            users[r.cloud_id or ""],
            snapshot.users_are,
            kept[ident],
        )
        for ident, r in sorted(used.items(), key=lambda kv: kv[1].key)
    )
    return replace(plan, changes=tuple(changes), retiring=retiring)


def rederive(adapter: Adapter, saved: Plan, snapshot: Snapshot) -> Plan:
    """A saved plan made again from its own desired state and the cloud as it is now; only
    this plan is applied, and only when its changes are the saved ones, entry for entry. An
    entry edited in the file (a destroy of a group nsgsync does not own, a changed rule)
    can so never reach the cloud."""
    fresh = derive(
        adapter,
        cluster=saved.cluster,
        desired=saved.desired,
        snapshot=snapshot,
        notes=saved.notes,
    )
    theirs = {_entry(c): i for i, c in enumerate(saved.changes)}
    ours = {_entry(c) for c in fresh.changes}
    for entry, i in sorted(theirs.items(), key=lambda kv: kv[1]):
        if entry not in ours:
            c = saved.changes[i]
            raise StalePlanError(
                f"entry changes[{i}] of the saved plan ({c.op.value} {c.resource.type} "
                f"{excerpt(c.key)}) is not what its desired state and the cloud give now: "
                "the file was edited, or the cloud changed; nothing was applied",
                hint="make and review a new plan (`nsgsync plan --save-plan FILE`); never "
                "edit a saved plan",
            )
    if len(theirs) != len(saved.changes) or len(ours) != len(theirs):
        missing = sorted(c.key for c in fresh.changes if _entry(c) not in theirs)
        raise StalePlanError(
            f"the saved plan lacks {len(missing)} change(s) that its desired state and the "
            f"cloud give now (first: {excerpt(missing[0]) if missing else 'a duplicate'}); "
            "nothing was applied",
            hint="make and review a new plan (`nsgsync plan --save-plan FILE`); never "
            "edit a saved plan",
        )
    return fresh


def _entry(c: Change) -> tuple[str, str, str, str, str | None, str | None, str | None]:
    """A change as the Plan JSON states it: what a saved plan is compared by."""
    res = c.resource
    return (
        c.op.value,
        res.type,
        c.key,
        str(res.segment),
        c.old.cloud_id if c.old is not None else None,
        c.old.canonical() if c.old is not None else None,
        c.new.canonical() if c.new is not None else None,
    )


# --- the schedule: which change runs in which phase ---


@dataclass
class Schedule:
    creates: list[Change] = field(default_factory=list)
    retags: list[Change] = field(default_factory=list)
    # Removal/addition pairs, changed in place one at a time in this order (NARROW's first).
    pairs: list[Change] = field(default_factory=list)
    phases: dict[Phase, list[Change]] = field(default_factory=lambda: defaultdict(list))
    # The NARROW phase's changes must be written one at a time, in the order of
    # phases[NARROW] (`_order_narrowing`), not batched.
    serial_narrow: bool = False

    def add(self, phase: Phase, change: Change) -> None:
        self.phases[phase].append(change)


def _phase(adapter: Adapter, c: Change) -> Phase:
    res = c.resource
    if res.role is Role.LINK:
        return Phase.UNLINK if c.op is Op.DESTROY else Phase.LINK
    if c.op is Op.DESTROY:
        return Phase.REMOVE
    if adapter.denies(res):
        return Phase.DENY
    if c.op is Op.ADD:
        return Phase.ADD
    assert c.old is not None and c.new is not None
    return Phase.WIDEN if adapter.widens(c.old, c.new) else Phase.NARROW


def schedule(adapter: Adapter, plan: Plan, snapshot: Snapshot) -> Schedule:
    """Sort the plan's changes into phases, and fit every quota at its peak."""
    out = Schedule()
    leaving = {
        c.resource.ident
        for c in plan.changes
        if c.resource.role is Role.CONTAINER and c.op is Op.DESTROY
    }
    for c in plan.changes:
        res = c.resource
        if res.role is Role.CONTAINER:
            if c.op is Op.ADD:
                out.creates.append(c)
            elif c.op is Op.CHANGE:
                out.retags.append(c)
            else:
                out.add(Phase.DELETE, c)
        elif c.op is Op.DESTROY and res.container in leaving and adapter.cascades:
            continue  # a rule goes with its container
        else:
            out.add(_phase(adapter, c), c)
    _fit(adapter, out, snapshot)
    _order_narrowing(adapter, out)
    return out


def _order_narrowing(adapter: Adapter, out: Schedule) -> None:
    """Order the in-place changes that are not known to widen, so that none takes away
    what the end state allows before the change that allows it there is written.

    Writing change i drops what its old content lets through and its new does not
    (`Footprint.beyond`). If that overlaps the new content of a change still to come, it
    may be what that change allows at the end (a rule for all protocols losing a peer
    that a DNS rule gains): i may go now only if one rule there once it is written lets
    through all it drops (the old content of another change still to come, the new
    content of one already written, an addition). The changes are then written one at a
    time in that order; where none may go, the plan fails before any write. Unknown
    footprints overlap everything and cover nothing. The order is chosen greedily, without
    backtracking, and costs a cube of the changes only where some overlap: a policy edit
    touches few rules in place.
    """
    changes = sorted(out.phases.get(Phase.NARROW, []), key=lambda c: c.key)
    if len(changes) < 2:
        return
    olds: dict[str, Footprint | None] = {}
    news: dict[str, Footprint | None] = {}
    # What writing each change takes away (at least): None where it takes nothing away.
    drops: dict[str, Footprint | None] = {}
    unknown: set[str] = set()
    for c in changes:
        assert c.old is not None and c.new is not None
        olds[c.key], news[c.key] = adapter.footprint(c.old), adapter.footprint(c.new)
        old = olds[c.key]
        if adapter.denies(c.old):
            drops[c.key] = None  # a deny rule going away takes nothing away
        elif old is None:
            unknown.add(c.key)
        else:
            drops[c.key] = old.beyond(news[c.key])

    def overlap(a: Footprint | None, b: Footprint | None) -> bool:
        return a is None or b is None or a.overlaps(b)

    def covered(what: Footprint | None, by: Sequence[Footprint | None]) -> bool:
        return what is not None and any(f is not None and f.covers(what) for f in by)

    def takes_away(key: str) -> bool:
        return key in unknown or drops.get(key) is not None

    # The others whose new content what each change takes away may be needed for.
    blockers = {
        c.key: {
            d.key
            for d in changes
            if d.key != c.key and takes_away(c.key) and overlap(drops.get(c.key), news[d.key])
        }
        for c in changes
    }
    if not any(blockers.values()):
        return  # no change can take away what another brings: any order, batched
    present: list[Footprint | None] = [
        adapter.footprint(c.new)
        for phase in (Phase.ADD, Phase.WIDEN)
        for c in out.phases.get(phase, [])
        if c.new is not None
    ]
    present += [adapter.footprint(c.new) for c in out.pairs if c.new is not None]
    pending = list(changes)
    done: list[Change] = []
    while pending:
        for c in pending:
            waiting = blockers[c.key] & {p.key for p in pending}
            there = [olds[p.key] for p in pending if p is not c]
            there += [news[d.key] for d in done]
            if not waiting or covered(drops.get(c.key), there + present):
                break
        else:
            first = pending[0]
            raise GuardrailError(
                f"no order of the {len(pending)} in-place changes left (the first: "
                f"{first.key}) keeps allowing, at every moment, all that is allowed both "
                "before and after: each takes away what another brings only when it is "
                "written; nothing was applied",
                hint="apply in two steps: first with the old and the new policies both in "
                "place, then with the new ones alone",
            )
        pending.remove(c)
        done.append(c)
    out.phases[Phase.NARROW] = done
    out.serial_narrow = True


def _fit(adapter: Adapter, out: Schedule, snapshot: Snapshot) -> None:
    """Check each quota at its transient peak; pair removals with additions where needed."""
    budgets: dict[tuple[str, ...], Budget] = {}
    held: Counter[tuple[str, ...]] = Counter()
    adds: dict[tuple[str, ...], list[Change]] = defaultdict(list)
    removes: dict[tuple[str, ...], list[Change]] = defaultdict(list)

    def scope(r: Resource) -> tuple[str, ...] | None:
        b = adapter.budget(r, snapshot)
        if b is None:
            return None
        budgets.setdefault(b.scope, b)
        return b.scope

    for r in snapshot.resources:
        if r.role is Role.RULE and (s := scope(r)) is not None:
            held[s] += 1
    for phase in (Phase.ADD, Phase.DENY):
        for c in out.phases.get(phase, []):
            if c.op is Op.ADD and (s := scope(c.resource)) is not None:
                adds[s].append(c)
    for c in out.phases.get(Phase.REMOVE, []):
        if (s := scope(c.resource)) is not None:
            removes[s].append(c)
    need: dict[tuple[str, ...], int] = {}
    for s in sorted(adds):
        b = budgets[s]
        peak = held[s] + len(adds[s])
        if peak <= b.limit:
            continue
        final = peak - len(removes[s])
        if final > b.limit or not adapter.pairs:
            raise _over(b, held[s], adds[s], removes[s], final=final)
        need[s] = peak - b.limit
    if not need:
        return
    pairs = _pairs(adapter, out, need, adds, removes)
    for s, n in sorted(need.items()):
        done = sum(1 for old, _ in pairs if scope(old.resource) == s)
        if done < n:
            b = budgets[s]
            raise _over(
                b,
                held[s],
                adds[s],
                removes[s],
                final=held[s] + len(adds[s]) - len(removes[s]),
                paired=done,
            )
    for old, new in pairs:
        assert old.old is not None and new.new is not None
        out.phases[Phase.ADD].remove(new)
        out.phases[Phase.REMOVE].remove(old)
        out.pairs.append(Change(Op.CHANGE, new.key, old.old, new.new))


def _pairs(
    adapter: Adapter,
    out: Schedule,
    need: dict[tuple[str, ...], int],
    adds: dict[tuple[str, ...], list[Change]],
    removes: dict[tuple[str, ...], list[Change]],
) -> list[tuple[Change, Change]]:
    """Removal/addition pairs, as many as each budget needs, in an order that never blocks
    a connection allowed both before and after.

    When a pair runs, its old rule's traffic is gone except where other rules allow it.
    Every rule of the end state is there by then, but for the new rules of the pairs that
    run later (and the new content of rules changed in place after the pairs): so a pair
    is safe where its old rule overlaps none of those. The order is built from the last
    pair backwards, each time taking a removal that overlaps nothing that comes after it.
    """
    prints: dict[int, Footprint | None] = {}
    keep: list[Resource] = []  # alive while their ids key `prints`

    def fp(r: Resource) -> Footprint | None:
        if id(r) not in prints:
            keep.append(r)
            prints[id(r)] = adapter.footprint(r)
        return prints[id(r)]

    # What arrives after every pair: the new content of the other in-place changes (none
    # of it known, where a footprint is unknown: then nothing may be paired at all).
    later: list[Footprint] = []
    for phase in (Phase.WIDEN, Phase.NARROW):
        for c in out.phases.get(phase, []):
            assert c.old is not None and c.new is not None
            if adapter.widens(c.new, c.old):
                continue  # its old content, there until then, lets through all the new does
            new_fp = fp(c.new)
            if new_fp is None:
                return []
            later.append(new_fp)
    olds = {
        s: [c for c in sorted(removes[s], key=lambda c: c.key) if _pairable(fp(c.resource))]
        for s in need
    }
    news = {
        s: [
            c
            for c in sorted(adds[s], key=lambda c: c.key)
            if c in out.phases.get(Phase.ADD, []) and _pairable(fp(c.resource))
        ]
        for s in need
    }
    # Removals that something arriving later overlaps: each may still pair with a new rule
    # that lets through all it did (then nothing of it is missing at any moment).
    blocked = {
        o.key for t in olds for o in olds[t] if any(_fp(fp(o.resource)).overlaps(f) for f in later)
    }
    left = dict(need)
    backwards: list[tuple[Change, Change]] = []
    progress = True
    while progress and any(left.values()):
        progress = False
        for s in sorted(left):
            if not left[s] or not news[s]:
                continue
            pick = _pick(olds[s], news[s], blocked, olds, lambda c: _fp(fp(c.resource)))
            if pick is None:
                continue
            old, new = pick
            olds[s].remove(old)
            news[s].remove(new)
            arriving = _fp(fp(new.resource))
            for t in olds:
                for o in olds[t]:
                    if o.key not in blocked and _fp(fp(o.resource)).overlaps(arriving):
                        blocked.add(o.key)
            backwards.append((old, new))
            left[s] -= 1
            progress = True
    return backwards[::-1]


def _pick(
    olds: list[Change],
    news: list[Change],
    blocked: set[str],
    every: dict[tuple[str, ...], list[Change]],
    fp: Callable[[Change], Footprint],
) -> tuple[Change, Change] | None:
    """The pair to run before those already chosen: a removal nothing later overlaps, with
    an addition (of the first few) that covers it or overlaps no removal still open; else a
    removal with an addition that covers it."""
    free = next((o for o in olds if o.key not in blocked), None)
    if free is not None:
        mine = fp(free)
        covering = [n for n in news[:_LOOK] if fp(n).covers(mine)]
        if covering:
            return free, covering[0]
        # An addition that stands in the way of no removal still open, if one of the
        # first few is such; else the first.
        rest = [fp(o) for t in every for o in every[t] if o is not free]
        clear = (n for n in news[:_LOOK] if not any(fp(n).overlaps(f) for f in rest))
        return free, next(clear, news[0])
    for o in olds:
        mine = fp(o)
        new = next((n for n in news if fp(n).covers(mine)), None)
        if new is not None:
            return o, new
    return None


_LOOK = 8  # additions weighed per pair: enough to steer, few enough to stay fast


def _pairable(f: Footprint | None) -> bool:
    return f is not None and f.pairable


def _fp(f: Footprint | None) -> Footprint:
    assert f is not None
    return f


def _over(
    b: Budget,
    held: int,
    adds: list[Change],
    removes: list[Change],
    *,
    final: int,
    paired: int | None = None,
) -> LimitError:
    """The plan cannot fit `b`: where, by how much, and which policies and rules add most."""
    rules: Counter[str] = Counter()
    for c in adds:
        if c.new is not None:
            rules.update(dict.fromkeys(c.new.sources, 1))
    policies: Counter[str] = Counter()
    for source, n in rules.items():
        policies[source.split(" rule ", 1)[0]] += n
    top = ", ".join(f"{p} ({n})" for p, n in policies.most_common(3)) or "none recorded"
    detail = [s for s, _ in rules.most_common(5) if " rule " in s]
    peak = held + len(adds)
    where = []
    if b.segment:
        where.append(f"segment {b.segment}")
    if b.direction:
        where.append(b.direction)
    if b.family:
        where.append(f"IPv{b.family}")
    head = f"{', '.join(where)}: " if where else ""
    counts = f"{held} held now, {final} at the end, {peak} at the peak of an apply that adds first"
    if final > b.limit:
        what = f"would hold {final} rules, over the limit of {b.limit} ({counts})"
    elif paired is not None:
        what = (
            f"would hold {peak} rules at the peak of the apply, over the limit of {b.limit} "
            f"({counts}); only {paired} of the {peak - b.limit} removal/addition pairs needed "
            "can be changed in place without a moment that blocks what stays allowed"
        )
    else:
        what = (
            f"would hold {peak} rules at the peak of the apply ({held} now, {len(adds)} added "
            f"before {len(removes)} removed; {final} at the end), over the limit of {b.limit}"
        )
    rules_text = f" (rules: {'; '.join(detail)})" if detail else ""
    return LimitError(
        f"{head}{b.what} {what}; the policies adding most: {top}{rules_text}; nothing was applied",
        hint=b.hint
        or "give the segments fewer, larger CIDRs, or raise the quota and the limit setting",
    )


# --- guardrails ---


@dataclass(frozen=True)
class Guardrails:
    max_deletions: int | None = None
    allow_empty: bool = False


def check_guardrails(
    plan: Plan, *, guardrails: Guardrails, policy_count: int, owned_count: int
) -> None:
    deletions = plan.count(Op.DESTROY)
    if guardrails.max_deletions is not None and deletions > guardrails.max_deletions:
        raise GuardrailError(
            f"the plan destroys {deletions} resources, more than --max-deletions "
            f"{guardrails.max_deletions}; nothing was applied",
            hint="review `nsgsync plan`; raise --max-deletions if the deletions are intended",
        )
    if policy_count == 0 and owned_count and not plan.empty and not guardrails.allow_empty:
        raise GuardrailError(
            f"no NetworkPolicy was read, but nsgsync owns {owned_count} resources in the cloud "
            "that this would change or remove; nothing was applied",
            hint="check the -f paths (an empty folder?); pass --allow-empty if the cluster "
            "really has no policies any more",
        )


# --- apply ---


def _chunks(items: Sequence[Change], size: int) -> Iterator[Sequence[Change]]:
    for i in range(0, len(items), max(size, 1)):
        yield items[i : i + size]


def _batches(adapter: Adapter, phase: Phase, changes: Sequence[Change]) -> Iterator[list[Change]]:
    """Changes of one container and side together (what one API call can take), chunked."""
    groups: dict[tuple[str, str], list[Change]] = defaultdict(list)
    for c in changes:
        res = c.resource
        groups[(str(res.container or ""), res.direction or "")].append(c)
    for _, group in sorted(groups.items()):
        for chunk in _chunks(sorted(group, key=lambda c: c.key), adapter.batch_size(phase)):
            yield list(chunk)


def apply_plan(
    adapter: Adapter,
    plan: Plan | Planned,
    session: object,
    *,
    progress: Progress,
    snapshot: Snapshot | None = None,
    saved: bool = False,
    timeouts: Timeouts | None = None,
) -> None:
    """Apply `plan` (read against `snapshot`, the one the plan was made from, or a fresh
    read). A saved plan is refused if the cloud changed since it was made. With `timeouts`,
    the apply stops between two calls once the run's deadline has passed."""
    if isinstance(plan, Planned):
        snapshot = snapshot or plan.snapshot
        plan = plan.plan
    if snapshot is None and isinstance(plan.basis, Snapshot) and not plan.basis.offline:
        snapshot = plan.basis
    if saved or snapshot is None:
        snapshot = adapter.read(session)
    if saved and (plan.fingerprint is None or fingerprint(snapshot.resources) != plan.fingerprint):
        raise StalePlanError(
            "the cloud changed since this plan was saved (or it was an offline plan); "
            "nothing was applied"
        )
    if saved:
        plan = rederive(adapter, plan, snapshot)
    if plan.empty:
        progress("nothing to do: the cloud already matches")
        return
    run(
        adapter,
        schedule(adapter, plan, snapshot),
        plan,
        session,
        snapshot,
        progress=progress,
        timeouts=timeouts,
    )


@dataclass
class Ledger:
    """What an apply has done so far: the segments' progress on stderr while it runs, and,
    when it stops midway, what was done and what was not."""

    todo: Counter[tuple[str, str]] = field(default_factory=Counter)  # (type, verb) -> count
    done: Counter[tuple[str, str]] = field(default_factory=Counter)
    left: Counter[str] = field(default_factory=Counter)  # segment -> changes not yet done
    calls: int = 0

    @staticmethod
    def _what(c: Change) -> tuple[str, str]:
        verb = {Op.ADD: "added", Op.CHANGE: "changed", Op.DESTROY: "destroyed"}[c.op]
        return (c.resource.type, verb)

    @classmethod
    def of(cls, plan: Plan) -> Ledger:
        ledger = cls()
        for c in plan.changes:
            ledger.todo[cls._what(c)] += 1
            ledger.left[c.resource.segment or ""] += 1
        return ledger

    def made(self, changes: Sequence[Change]) -> None:
        """One write call made, which did `changes`."""
        self.calls += 1
        self.settle(changes)

    def settle(self, changes: Sequence[Change]) -> None:
        """Changes that needed no call of their own (the cloud made the rule with its group)."""
        for c in changes:
            self.done[self._what(c)] += 1
            self.left[c.resource.segment or ""] -= 1

    def line(self) -> str:
        segments = [n for s, n in self.left.items() if s]
        finished = sum(1 for n in segments if n <= 0)
        return f"[{finished}/{len(segments)} segments done, {self.calls} write calls]"

    @staticmethod
    def _say(counts: Counter[tuple[str, str]]) -> str:
        items = sorted((k, n) for k, n in counts.items() if n > 0)
        return ", ".join(f"{n} {type_} {verb}" for (type_, verb), n in items) or "nothing"

    def summary(self) -> str:
        return (
            f"  done before it stopped ({self.calls} write calls): {self._say(self.done)}\n"
            f"  not done: {self._say(self.todo - self.done)}"
        )


def run(
    adapter: Adapter,
    sched: Schedule,
    plan: Plan,
    session: object,
    snapshot: Snapshot,
    *,
    progress: Progress,
    timeouts: Timeouts | None = None,
) -> None:
    """Run the schedule; when a call fails (or the run's deadline passes between two), stop,
    and let the error say what was done and what was not."""
    ledger = Ledger.of(plan)
    limits = timeouts or Timeouts()

    def tell(message: str) -> None:
        progress(f"{message} {ledger.line()}")

    try:
        _run(adapter, sched, plan, session, snapshot, tell=tell, ledger=ledger, limits=limits)
    except ProviderError as exc:  # a cloud call failed (not a stop asked for by the caller)
        transient = isinstance(exc, CloudError) and exc.transient
        exc.stopped_apply(
            ledger.summary(),
            then="the next apply completes it (it reads the cloud as it is now)"
            if transient
            else "once that is fixed, the next apply completes it",
        )
        raise


def _run(
    adapter: Adapter,
    sched: Schedule,
    plan: Plan,
    session: object,
    snapshot: Snapshot,
    *,
    tell: Progress,
    ledger: Ledger,
    limits: Timeouts,
) -> None:
    progress = tell
    # Changes made up on the way (the removal of a rule the cloud made with its group) are
    # not the plan's: the ledger counts the plan's own.
    plan_keys = {c.key for c in plan.changes}
    applied = Applied(
        {r.ident: r.cloud_id for r in snapshot.resources if r.role is Role.CONTAINER and r.cloud_id}
    )
    phases = {p: list(cs) for p, cs in sched.phases.items()}
    new_rules: dict[Ident, list[Change]] = defaultdict(list)
    for phase in (Phase.ADD, Phase.DENY):
        for c in phases.get(phase, []):
            if c.op is Op.ADD and c.resource.container is not None:
                new_rules[c.resource.container].append(c)
    absorbed: set[Ident] = set()
    implicit: list[Resource] = []
    expect = Expected(snapshot.resources)
    containers = [*sched.creates, *sched.retags]
    if containers:
        expect.verify(adapter, session, Phase.CREATE, containers, applied=applied)
    for c in sched.creates:
        limits.check(f"creating {c.key}")
        rules = new_rules.get(c.resource.ident, [])
        made = adapter.create(session, c, rules, applied=applied, progress=progress)
        expect.done([c])
        if made is not None:
            applied.ids[made.ident] = made.cloud_id
            absorbed |= made.absorbed
            implicit += made.implicit
            expect.done(rules, only=made.absorbed)
            expect.made(made.implicit)
        ledger.made([c, *(r for r in rules if made and r.resource.ident in made.absorbed)])
    for c in sched.retags:
        limits.check(f"changing {c.key}")
        adapter.create(session, c, (), applied=applied, progress=progress)
        expect.done([c])
        ledger.made([c])
    if implicit:
        _adopt(adapter, phases, implicit, plan)
        # An implicit rule kept as it is needs no call: its planned add is done.
        kept = {r.key for r in implicit} - {c.key for cs in phases.values() for c in cs}
        ledger.settle([c for c in plan.changes if c.key in kept])
    for phase in ORDER:
        if phase is Phase.NARROW and sched.pairs:
            expect.verify(adapter, session, phase, sched.pairs, applied=applied)
            for pair in sched.pairs:
                adapter.write(session, phase, [pair], applied=applied, progress=progress)
                expect.paired(pair)
        todo = [c for c in phases.get(phase, []) if c.resource.ident not in absorbed]
        if todo:
            expect.verify(adapter, session, phase, todo, applied=applied)
        serial = phase is Phase.NARROW and sched.serial_narrow
        for batch in [[c] for c in todo] if serial else _batches(adapter, phase, todo):
            limits.check(f"the {phase} phase's next call")
            adapter.write(session, phase, batch, applied=applied, progress=progress)
            expect.done(batch, cascade=phase is Phase.DELETE and adapter.cascades)
            ledger.made([c for c in batch if c.key in plan_keys])


# --- the optimistic check: what a phase touches is as the plan saw it ---


def _same(a: Sequence[Resource], b: Sequence[Resource]) -> bool:
    """The same resources under one identity, as the plan's diff compares them."""
    if len(a) != len(b):
        return False
    skip = frozenset().union(*(r.unreported for r in (*a, *b)))
    return sorted(r.canonical(skip) for r in a) == sorted(r.canonical(skip) for r in b)


def _difference(ident: Ident, want: Sequence[Resource], found: Sequence[Resource]) -> str:
    res = (want or found)[0]
    where = f" (segment {res.segment})" if res.segment else ""
    name = f"{res.type} {ident}{where}"
    if not want:
        return f"{name} exists, but did not when the plan was made"
    if not found:
        return f"{name} is gone, but existed when the plan was made"
    if len(want) != 1 or len(found) != 1:
        return f"{name} is there {len(found)} times, {len(want)} when the plan was made"
    old, new = want[0].body, found[0].body
    fields = [
        f"{k} {excerpt(old.get(k))} -> {excerpt(new.get(k))}"
        for k in sorted(set(old) | set(new))
        if k not in want[0].unreported | found[0].unreported and old.get(k) != new.get(k)
    ]
    return f"{name} changed: {'; '.join(fields[:3]) or 'its body differs'}"


class Expected:
    """The cloud as this apply expects it: the plan's snapshot, plus what it has written."""

    def __init__(self, resources: Sequence[Resource]) -> None:
        self.have: dict[Ident, list[Resource]] = defaultdict(list)
        for r in resources:
            self.have[r.ident].append(r)
        self.writes = 0
        self.blind: set[Ident] = set()

    def done(
        self,
        changes: Sequence[Change],
        *,
        only: frozenset[Ident] | None = None,
        cascade: bool = False,
    ) -> None:
        for c in changes:
            if only is not None and c.resource.ident not in only:
                continue
            self.writes += 1
            if c.old is not None:
                rs = self.have[c.old.ident]
                hit = next((i for i, r in enumerate(rs) if _same([r], [c.old])), None)
                if hit is not None:
                    del rs[hit]  # one entry: a duplicate under the same identity stays
                if cascade and c.old.role is Role.CONTAINER:
                    for ident, kept in self.have.items():
                        self.have[ident] = [r for r in kept if r.container != c.old.ident]
            if c.new is not None:
                self.have[c.new.ident].append(c.new)

    def paired(self, pair: Change) -> None:
        """A pair wrote the new rule in the old one's place: under which identity the cloud
        now shows it is the adapter's (AWS: the new; Azure, GCP: the old name), so neither
        is checked again in this apply."""
        assert pair.old is not None and pair.new is not None
        self.writes += 1
        self.have.pop(pair.old.ident, None)
        self.have.pop(pair.new.ident, None)
        self.blind |= {pair.old.ident, pair.new.ident}

    def made(self, resources: Sequence[Resource]) -> None:
        for r in resources:
            self.have[r.ident].append(r)

    def verify(
        self,
        adapter: Adapter,
        session: object,
        phase: Phase,
        changes: Sequence[Change],
        *,
        applied: Applied,
    ) -> None:
        """Re-read what this phase touches; stop before writing when it moved."""
        touched = [r for c in changes for r in (c.old, c.new) if r is not None]
        idents = {r.ident for r in touched}
        boxes = {r.container for r in touched if r.container is not None}
        boxes |= {r.ident for r in touched if r.role is Role.CONTAINER}

        def inside(r: Resource) -> bool:
            return r.ident in idents or r.ident in boxes or r.container in boxes

        reread = getattr(adapter, "reread", None)
        if reread is None:  # an adapter of an older contract: the whole read, narrowed here
            found_all: Sequence[Resource] = adapter.read(session).resources
        else:
            found_all = reread(session, touched, applied=applied)
        found: dict[Ident, list[Resource]] = defaultdict(list)
        for r in found_all:
            if inside(r):
                found[r.ident].append(r)
        want = {i: rs for i, rs in self.have.items() if rs and inside(rs[0])}
        moved = [
            _difference(i, want.get(i, []), found.get(i, []))
            for i in sorted(want.keys() | found.keys(), key=str)
            if i not in self.blind and not _same(want.get(i, []), found.get(i, []))
        ]
        if moved:
            more = f" (and {len(moved) - 3} more)" if len(moved) > 3 else ""
            raise ConcurrentChangeError(
                f"the cloud changed since the plan was made: {'; '.join(moved[:3])}{more}; "
                f"the apply stopped before its {phase} phase wrote there, after "
                f"{self.writes} of its changes (each left every allowed connection open)"
            )


def _adopt(
    adapter: Adapter, phases: dict[Phase, list[Change]], implicit: list[Resource], plan: Plan
) -> None:
    """Rules the cloud made with a container: kept (and changed) where desired, else removed
    once the adds are in."""
    want = {r.ident: r for r in plan.desired}
    for r in implicit:
        new = want.get(r.ident)
        for phase in (Phase.ADD, Phase.DENY):
            phases[phase] = [c for c in phases.get(phase, []) if c.resource.ident != r.ident]
        if new is None:
            phases.setdefault(Phase.REMOVE, []).append(Change(Op.DESTROY, r.key, r, None))
        elif new.canonical(r.unreported) != r.canonical(r.unreported):
            change = Change(Op.CHANGE, r.key, r, new)
            phases.setdefault(_phase(adapter, change), []).append(change)
