"""Resources, changes and plans. A diff is a plain sequence of (op, key, old, new)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from nsgsync.intent import API_VERSION
from nsgsync.jsontext import pretty


class Op(StrEnum):
    ADD = "add"
    CHANGE = "change"
    DESTROY = "destroy"


@dataclass(frozen=True)
class Resource:
    """One cloud resource: its type, a stable key, and its body in the cloud API's shape.

    `cloud_id` is the cloud's own id of an existing resource (sg-..., a resource id, a
    self link); it is not part of identity and not compared.
    """

    type: str
    key: str
    body: Mapping[str, Any]
    segment: str | None = None
    cloud_id: str | None = None
    # Fields the cloud did not report for this resource: not compared (e.g. a description
    # an API drops), so that they cannot make a plan that never converges.
    unreported: frozenset[str] = frozenset()

    def canonical(self, skip: frozenset[str] = frozenset()) -> str:
        body = {k: v for k, v in self.body.items() if k not in skip}
        return json.dumps(body, sort_keys=True, separators=(",", ":"))


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


def diff(desired: Iterable[Resource], actual: Iterable[Resource]) -> tuple[Change, ...]:
    """Changes that turn `actual` into `desired`, sorted by key (adds, changes, destroys)."""
    want = {r.key: r for r in desired}
    have: dict[str, Resource] = {}
    duplicates: list[Resource] = []
    for r in actual:
        # Two actual resources under one key (a duplicate made by hand): keep the first,
        # destroy the others, so the cloud converges on one.
        if r.key in have:
            duplicates.append(r)
        else:
            have[r.key] = r
    changes: list[Change] = []
    for key in sorted(want.keys() | have.keys()):
        new, old = want.get(key), have.get(key)
        if old is None and new is not None:
            changes.append(Change(Op.ADD, key, None, new))
        elif new is None and old is not None:
            changes.append(Change(Op.DESTROY, key, old, None))
        elif new is not None and old is not None and _differ(old, new):
            changes.append(Change(Op.CHANGE, key, old, new))
    changes += [Change(Op.DESTROY, r.key, r, None) for r in duplicates]
    return tuple(changes)


@dataclass(frozen=True)
class Plan:
    provider: str
    cluster: str
    desired: tuple[Resource, ...]
    changes: tuple[Change, ...]
    offline: bool = False
    notes: tuple[str, ...] = field(default=())
    fingerprint: str | None = None

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
        ordered = tuple(sorted(desired, key=lambda r: r.key))
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
        return {
            "apiVersion": API_VERSION,
            "kind": "Plan",
            "provider": self.provider,
            "cluster": self.cluster,
            "offline": self.offline,
            "fingerprint": self.fingerprint,
            "notes": list(self.notes),
            "summary": self.summary(),
            "changes": [
                {
                    "op": c.op.value,
                    "type": c.resource.type,
                    "key": c.key,
                    "segment": c.resource.segment,
                    "id": c.old.cloud_id if c.old is not None else None,
                    "before": dict(c.old.body) if c.old is not None else None,
                    "after": dict(c.new.body) if c.new is not None else None,
                }
                for c in self.changes
            ],
            "desired": [
                {"type": r.type, "key": r.key, "segment": r.segment, "body": dict(r.body)}
                for r in self.desired
            ],
        }

    def to_json(self) -> str:
        return pretty(self.to_dict())


def _resource(doc: Mapping[str, Any], body: Any, *, cloud_id: str | None = None) -> Resource:
    return Resource(
        type=str(doc["type"]),
        key=str(doc["key"]),
        body=dict(body),
        segment=doc.get("segment"),
        cloud_id=cloud_id,
    )


def plan_from_dict(doc: Mapping[str, Any]) -> Plan:
    """A plan as `to_dict` wrote it (a saved plan, applied later)."""
    desired = tuple(_resource(d, d["body"]) for d in doc["desired"])
    changes = []
    for c in doc["changes"]:
        old = _resource(c, c["before"], cloud_id=c.get("id")) if c["before"] is not None else None
        new = _resource(c, c["after"]) if c["after"] is not None else None
        changes.append(Change(Op(c["op"]), str(c["key"]), old, new))
    return Plan(
        provider=str(doc["provider"]),
        cluster=str(doc["cluster"]),
        desired=desired,
        changes=tuple(changes),
        offline=bool(doc.get("offline", False)),
        notes=tuple(doc.get("notes", ())),
        fingerprint=doc.get("fingerprint"),
    )


def fingerprint(actual: Iterable[Resource]) -> str:
    """A digest of the cloud state a plan was made against, to refuse applying it stale."""
    digest = hashlib.sha256()
    for r in sorted(actual, key=lambda r: (r.key, r.cloud_id or "")):
        digest.update(f"{r.key}\0{r.cloud_id}\0{r.canonical()}\n".encode())
    return digest.hexdigest()
