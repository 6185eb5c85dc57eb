"""Resources, changes and plans. A diff is a plain sequence of (op, key, old, new)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from nsgsync.intent import API_VERSION


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

    def canonical(self) -> str:
        return json.dumps(self.body, sort_keys=True, separators=(",", ":"))


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
        elif new is not None and old is not None and new.canonical() != old.canonical():
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

    @classmethod
    def build(
        cls,
        *,
        provider: str,
        cluster: str,
        desired: Sequence[Resource],
        actual: Sequence[Resource],
        offline: bool = False,
    ) -> Plan:
        ordered = tuple(sorted(desired, key=lambda r: r.key))
        return cls(provider, cluster, ordered, diff(ordered, actual), offline)

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
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"
