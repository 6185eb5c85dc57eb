"""Reasoning over label selectors without knowing the labels: satisfiability.

`satisfiable(must, must_not)` answers whether some set of labels matches every
selector in `must` and none in `must_not`. Coverage questions reduce to it:
"selector X selects every pod of segment S" is "S and not X" unsatisfiable.

Labels are abstracted per key to: absent, one of the values the selectors mention, or
some other value. That abstraction is exact for In/NotIn/Exists/DoesNotExist. The search
is a small DPLL over the keys of the negated selectors with a budget; when the budget
runs out the answer is "maybe" (True), which callers treat as "some", the sound side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

from nsgsync.model import LabelSelector, Operator

ABSENT = "\x00absent"
OTHER = "\x00other"

SelectorKey = tuple[tuple[str, str, tuple[str, ...]], ...]
_BUDGET = 20_000
_IN = Operator.IN.value
_NOT_IN = Operator.NOT_IN.value
_EXISTS = Operator.EXISTS.value


class _Budget(Exception):
    pass


def _allowed(op: str, values: tuple[str, ...], domain: frozenset[str]) -> frozenset[str]:
    if op == Operator.IN.value:
        return domain & frozenset(values)
    if op == Operator.NOT_IN.value:
        return domain - frozenset(values)
    if op == Operator.EXISTS.value:
        return domain - {ABSENT}
    return domain & {ABSENT}


def satisfiable(must: Sequence[LabelSelector], must_not: Sequence[LabelSelector]) -> bool:
    return satisfiable_keys(tuple(s.key() for s in must), must_not=(s.key() for s in must_not))


def satisfiable_keys(must: tuple[SelectorKey, ...], must_not: Iterable[SelectorKey]) -> bool:
    """`satisfiable` on canonical selector keys.

    `LabelSelector.key()` rebuilds validated Requirement models on every call, which at
    thousands of segments and policies costs more than the search itself; the compiler
    computes each selector's key once and asks here.
    """
    return _sat(must, tuple(sorted(set(must_not))))


def matches_key(key: SelectorKey, labels: Mapping[str, str]) -> bool:
    """`LabelSelector.matches` on the selector's canonical key (same requirements, no models)."""
    for name, op, values in key:
        if op == _IN:
            if name not in labels or labels[name] not in values:
                return False
        elif op == _NOT_IN:
            if name in labels and labels[name] in values:
                return False
        elif op == _EXISTS:
            if name not in labels:
                return False
        elif name in labels:
            return False
    return True


@lru_cache(maxsize=200_000)
def _sat(must: tuple[SelectorKey, ...], must_not: tuple[SelectorKey, ...]) -> bool:
    mentioned: dict[str, set[str]] = {}
    for sel in (*must, *must_not):
        for key, _op, values in sel:
            mentioned.setdefault(key, set()).update(values)
    full = {k: frozenset(v) | {ABSENT, OTHER} for k, v in mentioned.items()}
    domains = dict(full)
    for sel in must:
        for key, op, values in sel:
            domains[key] = _allowed(op, values, domains[key])
            if not domains[key]:
                return False
    # Each negated selector must be broken by at least one of its requirements.
    clauses: list[list[tuple[str, frozenset[str]]]] = []
    for sel in must_not:
        options: list[tuple[str, frozenset[str]]] = []
        always_broken = False
        for key, op, values in sel:
            breaking = domains[key] - _allowed(op, values, full[key])
            if breaking == domains[key]:
                always_broken = True
                break
            if breaking:
                options.append((key, breaking))
        if always_broken:
            continue
        if not options:
            return False
        clauses.append(options)
    budget = [_BUDGET]
    try:
        return _search(domains, clauses, budget)
    except _Budget:
        return True


def _search(
    domains: dict[str, frozenset[str]],
    clauses: list[list[tuple[str, frozenset[str]]]],
    budget: list[int],
) -> bool:
    budget[0] -= 1
    if budget[0] < 0:
        raise _Budget
    pending: list[list[tuple[str, frozenset[str]]]] = []
    for clause in clauses:
        live = []
        done = False
        for key, breaking in clause:
            narrowed = domains[key] & breaking
            if narrowed == domains[key]:
                done = True
                break
            if narrowed:
                live.append((key, narrowed))
        if done:
            continue
        if not live:
            return False
        pending.append(live)
    if not pending:
        return True
    pending.sort(key=len)
    for key, narrowed in pending[0]:
        trial = dict(domains)
        trial[key] = narrowed
        if _search(trial, pending[1:], budget):
            return True
    return False
