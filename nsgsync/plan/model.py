"""Resources, changes and plans. A diff is a plain sequence of (op, key, old, new)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from operator import attrgetter
from typing import Any, NamedTuple

import orjson

from nsgsync.intent import API_VERSION
from nsgsync.jsontext import pretty_bytes


class Op(StrEnum):
    ADD = "add"
    CHANGE = "change"
    DESTROY = "destroy"


class Role(StrEnum):
    """What a resource is to the engine, which orders writes by it.

    A container (security group, NSG) holds rules and must exist before them; a rule allows
    traffic; a link (an NSG's association with a subnet) puts a container in force.
    """

    CONTAINER = "container"
    RULE = "rule"
    LINK = "link"


@dataclass(frozen=True, order=True)
class Ident:
    """A resource's typed identity: a kind and the parts that name it, never re-parsed.

    Its text form (`kind/part/part`) is the plan JSON's `key`; parts may themselves hold a
    slash (a CIDR), which is why code reads `parts`, not the text.
    """

    kind: str
    parts: tuple[str, ...]
    # Joined once: a plan sorts, diffs and prints by it, 670,000 times at 10,000 policies
    # on AWS. Not compared, so equality, order and hash stay the parts'.
    text: str = field(init=False, repr=False, compare=False)
    # Hashed once, as a str is: plans look identities up in dicts and sets 500,000 times
    # at 10,000 policies on AWS, and the generated __hash__ hashed the parts each time.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text = "/".join((self.kind, *self.parts)) if self.kind else "/".join(self.parts)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "_hash", hash((self.kind, self.parts)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[Ident], tuple[str, tuple[str, ...]]]:
        # Made again from its parts: a str's hash differs from one process to the next.
        return (Ident, (self.kind, self.parts))

    def __str__(self) -> str:
        return self.text

    @property
    def name(self) -> str:
        return self.parts[-1]


def _plain(value: object) -> object:
    if isinstance(value, Body):
        return value._data
    raise TypeError(f"{type(value).__name__} is not JSON")


def _canonical(value: Mapping[str, Any]) -> str:
    # orjson: a plan builds one per resource, 134,000 at 10,000 policies on AWS.
    return orjson.dumps(value, default=_plain, option=orjson.OPT_SORT_KEYS).decode()


class Body(Mapping[str, Any]):
    """A resource body: read-only and hashable, compared by its canonical JSON.

    Values are handed out as parsed JSON; a caller that wants to change one copies it
    (`dict(body)`), so a Resource's identity and equality never move.
    """

    __slots__ = ("_canon", "_data")
    _data: dict[str, Any]
    _canon: str | None

    def __init__(self, data: Mapping[str, Any]) -> None:
        if isinstance(data, Body):
            self._canon, self._data = data._canon, data._data
            return
        # A copy in the caller's key order (plans print it), with tuples as JSON lists.
        self._data = orjson.loads(orjson.dumps(data, default=_plain))
        # The canonical text when first compared: an offline plan never compares.
        self._canon = None

    @classmethod
    def owned(cls, data: dict[str, Any]) -> Body:
        """A body holding `data` itself, not a copy: for a renderer that has just built it
        of JSON values (dicts, lists, strings, numbers) and keeps no way to change it. A
        plan makes one per rule, 134,000 at 10,000 policies on AWS, where the copy cost
        about a second."""
        new = cls.__new__(cls)
        new._canon = None
        new._data = data
        return new

    @property
    def _text(self) -> str:
        if self._canon is None:
            self._canon = _canonical(self._data)
        return self._canon

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    # Straight to the dict: Mapping's versions go through __getitem__ and KeyError, and
    # renderers and budgets ask a body for its fields hundreds of thousands of times.
    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def __hash__(self) -> int:
        return hash(self._text)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Body):
            return self._text == other._text
        if isinstance(other, Mapping):
            return bool(self._data == dict(other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"Body({self._text})"

    @property
    def canonical(self) -> str:
        return self._text

    def with_value(self, path: tuple[str, ...], value: Any) -> Body:
        """This body with the mapping at `path` holding `value` at its end: only that path's
        mappings are copied (the rest is shared, never changed in place), so setting a
        priority does not copy a rule of thousands of prefixes."""
        new = Body.__new__(Body)
        new._canon = None
        new._data = _set_in(self._data, path, orjson.loads(orjson.dumps(value, default=_plain)))
        return new


def _set_in(data: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    head, *rest = path
    out = dict(data)
    out[head] = _set_in(data[head], tuple(rest), value) if rest else value
    return out


@dataclass(frozen=True)
class Resource:
    """One cloud resource: its type, a typed identity, and its body in the cloud API's shape.

    `cloud_id` is the cloud's own id of an existing resource (sg-..., a resource id, a
    self link); it is not part of identity and not compared. `container` is the identity of
    the container a rule lives in, and `direction` ("ingress"/"egress") the side of it
    whose quota the rule counts against: the engine orders writes and checks every moment
    of an apply against the adapter's limits by them.
    """

    type: str
    ident: Ident
    body: Mapping[str, Any]
    segment: str | None = None
    cloud_id: str | None = None
    # Fields the cloud did not report for this resource: not compared (e.g. a description
    # an API drops), so that they cannot make a plan that never converges.
    unreported: frozenset[str] = frozenset()
    role: Role = Role.RULE
    container: Ident | None = None
    direction: str | None = None
    # The policies a rule realises (for messages that name them); not compared.
    sources: tuple[str, ...] = field(default=(), compare=False)
    # The container a rule names as its peer (an AWS rule referencing a group), if any: a
    # retiring container keeps the rules that let its interfaces through. Not compared.
    peer: Ident | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.body, Body):
            object.__setattr__(self, "body", Body(self.body))

    @property
    def key(self) -> str:
        return self.ident.text

    def canonical(self, skip: frozenset[str] = frozenset()) -> str:
        if not skip and isinstance(self.body, Body):
            return self.body.canonical
        return _canonical({k: v for k, v in self.body.items() if k not in skip})

    def with_body(self, body: Mapping[str, Any]) -> Resource:
        """This resource with another body (a Body is taken as it is, not copied).

        Copied field by field rather than through `dataclasses.replace`, which calls
        `__init__` again: Azure sets a priority this way on each of 45,000 rules at
        10,000 policies, where replace cost half a second."""
        new = object.__new__(Resource)
        new.__dict__.update(self.__dict__)
        new.__dict__["body"] = body if isinstance(body, Body) else Body(body)
        return new

    def with_id(self, cloud_id: str | None) -> Resource:
        return replace(self, cloud_id=cloud_id)


class Change(NamedTuple):
    op: Op
    key: str
    old: Resource | None
    new: Resource | None

    @property
    def resource(self) -> Resource:
        res = self.new if self.new is not None else self.old
        assert res is not None
        return res


def _differ(old: Resource, new: Resource) -> bool:
    skip = old.unreported | new.unreported
    return old.canonical(skip) != new.canonical(skip)


_text = attrgetter("text")
_resource_text = attrgetter("ident.text")  # a Resource's key, without a property call


def diff(desired: Iterable[Resource], actual: Iterable[Resource]) -> tuple[Change, ...]:
    """Changes that turn `actual` into `desired`, sorted by key (adds, changes, destroys)."""
    want = {r.ident: r for r in desired}
    have: dict[Ident, Resource] = {}
    duplicates: list[Resource] = []
    for r in actual:
        # Two actual resources under one identity (a duplicate made by hand): keep the
        # first, destroy the others, so the cloud converges on one.
        if r.ident in have:
            duplicates.append(r)
        else:
            have[r.ident] = r
    changes: list[Change] = []
    for ident in sorted(want.keys() | have.keys(), key=_text):
        new, old = want.get(ident), have.get(ident)
        key = ident.text
        if old is None and new is not None:
            changes.append(Change(Op.ADD, key, None, new))
        elif new is None and old is not None:
            changes.append(Change(Op.DESTROY, key, old, None))
        elif new is not None and old is not None and _differ(old, new):
            changes.append(Change(Op.CHANGE, key, old, new))
    changes += [Change(Op.DESTROY, r.key, r, None) for r in duplicates]
    return tuple(changes)


@dataclass(frozen=True)
class Retiring:
    """A container that is to go away but that something still uses (network interfaces,
    subnets): kept whole, rules and all, until nothing uses it; a later plan destroys it."""

    type: str
    key: str
    segment: str | None
    cloud_id: str | None
    users: int  # how many still use it
    what: str  # what they are, for people: "network interfaces"
    rules: int  # the rules it keeps

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "key": self.key,
            "segment": self.segment,
            "id": self.cloud_id,
            "users": self.users,
            "usedBy": self.what,
            "rules": self.rules,
        }


@dataclass(frozen=True)
class Plan:
    provider: str
    cluster: str
    desired: tuple[Resource, ...]
    changes: tuple[Change, ...]
    offline: bool = False
    notes: tuple[str, ...] = field(default=())
    fingerprint: str | None = None
    retiring: tuple[Retiring, ...] = field(default=())
    # The cloud state the plan was made from (the engine's Snapshot), kept in memory for
    # the apply that follows; a saved plan has none and its apply reads the cloud again.
    basis: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        *,
        provider: str,
        cluster: str,
        desired: Sequence[Resource],
        actual: Sequence[Resource],
        offline: bool = False,
        notes: Sequence[str] = (),
    ) -> Plan:
        ordered = tuple(sorted(desired, key=_resource_text))
        return cls(
            provider,
            cluster,
            ordered,
            diff(ordered, actual),
            offline,
            tuple(notes),
            None if offline else fingerprint(actual),
        )

    def count(self, op: Op) -> int:
        return sum(1 for c in self.changes if c.op is op)

    @property
    def empty(self) -> bool:
        return not self.changes

    def summary(self) -> dict[str, int]:
        return {
            "add": self.count(Op.ADD),
            "change": self.count(Op.CHANGE),
            "destroy": self.count(Op.DESTROY),
        }

    def to_dict(self) -> dict[str, Any]:
        return self._document(lambda body: dict(body))

    def _document(self, body: Callable[[Mapping[str, Any]], Any]) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": "Plan",
            "provider": self.provider,
            "cluster": self.cluster,
            "offline": self.offline,
            "fingerprint": self.fingerprint,
            "notes": list(self.notes),
            "summary": self.summary(),
        }
        if self.retiring:
            # Only when there are some: plans without keep the bytes they always had.
            doc["retiring"] = [r.to_dict() for r in self.retiring]
        return doc | {
            "changes": [
                {
                    "op": c.op.value,
                    "type": c.resource.type,
                    "key": c.key,
                    "segment": c.resource.segment,
                    "id": c.old.cloud_id if c.old is not None else None,
                    "before": body(c.old.body) if c.old is not None else None,
                    "after": body(c.new.body) if c.new is not None else None,
                }
                for c in self.changes
            ],
            "desired": [
                {"type": r.type, "key": r.key, "segment": r.segment, "body": body(r.body)}
                for r in self.desired
            ],
        }

    def to_json_bytes(self) -> bytes:
        """The Plan JSON as UTF-8, the bodies encoded where they are (not copied first)."""
        return pretty_bytes(self._document(_as_is), default=_body_json)

    def to_json(self) -> str:
        return self.to_json_bytes().decode()


def _as_is(body: Mapping[str, Any]) -> Any:
    return body


def _body_json(value: object) -> object:
    # orjson encodes dicts natively; a Body (or another Mapping) comes here.
    if isinstance(value, Body):
        return value._data
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


Restore = Callable[[str, str, Mapping[str, Any], "str | None"], Resource]
"""(type, key, body, segment) -> the Resource, typed again by the adapter that made it."""


def _resource(
    doc: Mapping[str, Any], body: Any, restore: Restore, *, cloud_id: str | None = None
) -> Resource:
    r = restore(str(doc["type"]), str(doc["key"]), dict(body), doc.get("segment"))
    return r if cloud_id is None else r.with_id(cloud_id)


def plan_from_dict(doc: Mapping[str, Any], restore: Restore) -> Plan:
    """A plan as `to_dict` wrote it (a saved plan, applied later); `restore` is the
    adapter's, which alone knows how its keys are made."""
    desired = tuple(_resource(d, d["body"], restore) for d in doc["desired"])
    changes = []
    for c in doc["changes"]:
        old = (
            _resource(c, c["before"], restore, cloud_id=c.get("id"))
            if c["before"] is not None
            else None
        )
        new = _resource(c, c["after"], restore) if c["after"] is not None else None
        changes.append(Change(Op(c["op"]), str(c["key"]), old, new))
    return Plan(
        provider=str(doc["provider"]),
        cluster=str(doc["cluster"]),
        desired=desired,
        changes=tuple(changes),
        offline=bool(doc.get("offline", False)),
        notes=tuple(doc.get("notes", ())),
        fingerprint=doc.get("fingerprint"),
        retiring=tuple(
            Retiring(
                str(r["type"]),
                str(r["key"]),
                r.get("segment"),
                r.get("id"),
                int(r["users"]),
                str(r.get("usedBy", "")),
                int(r.get("rules", 0)),
            )
            for r in doc.get("retiring", ())
        ),
    )


def fingerprint(actual: Iterable[Resource]) -> str:
    """A digest of the cloud state a plan was made against, to refuse applying it stale."""
    digest = hashlib.sha256()
    for r in sorted(actual, key=lambda r: (r.key, r.cloud_id or "")):
        digest.update(f"{r.key}\0{r.cloud_id}\0{r.canonical()}\n".encode())
    return digest.hexdigest()
