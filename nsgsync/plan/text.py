"""A plan as people read it, in the style Terraform users know."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from nsgsync.plan.model import Change, Op, Plan

_VERB = {
    Op.ADD: "will be created",
    Op.CHANGE: "will be updated in place",
    Op.DESTROY: "will be destroyed",
}
_MARK = {Op.ADD: "+", Op.CHANGE: "~", Op.DESTROY: "-"}
# ANSI colours as Terraform uses them; only ever on a terminal (the CLI decides).
_COLOUR = {Op.ADD: "\033[32m", Op.CHANGE: "\033[33m", Op.DESTROY: "\033[31m"}
_BOLD, _RESET = "\033[1m", "\033[0m"


def _value(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _fields(mark: str, body: Mapping[str, Any]) -> list[str]:
    width = max((len(k) for k in body), default=0)
    return [f"      {mark} {k:<{width}} = {_value(v)}" for k, v in body.items()]


def _change(c: Change) -> list[str]:
    res = c.resource
    where = f" (segment {res.segment})" if res.segment else ""
    ident = f" [{c.old.cloud_id}]" if c.old is not None and c.old.cloud_id else ""
    lines = [f"  # {res.type} {c.key}{where}{ident} {_VERB[c.op]}"]
    lines.append(f'  {_MARK[c.op]} {res.type} "{c.key}" {{')
    if c.op is Op.ADD and c.new is not None:
        lines += _fields("+", c.new.body)
    elif c.op is Op.DESTROY and c.old is not None:
        lines += _fields("-", c.old.body)
    elif c.old is not None and c.new is not None:
        keys = sorted(set(c.old.body) | set(c.new.body))
        width = max(len(k) for k in keys)
        for k in keys:
            before, after = c.old.body.get(k), c.new.body.get(k)
            if before != after:
                lines.append(f"      ~ {k:<{width}} = {_value(before)} -> {_value(after)}")
    lines.append("    }")
    return lines


def _paint(lines: list[str], op: Op, color: bool) -> list[str]:
    return [f"{_COLOUR[op]}{line}{_RESET}" for line in lines] if color else lines


def compact_line(c: Change) -> str:
    """One line per resource: mark, type, key, segment, and for a change what differs."""
    res = c.resource
    where = f" (segment {res.segment})" if res.segment else ""
    line = f"{_MARK[c.op]} {res.type} {c.key}{where}"
    if c.op is Op.CHANGE and c.old is not None and c.new is not None:
        keys = sorted(set(c.old.body) | set(c.new.body))
        diffs = [
            f"{k} {_value(c.old.body.get(k))} -> {_value(c.new.body.get(k))}"
            for k in keys
            if c.old.body.get(k) != c.new.body.get(k)
        ]
        line += ": " + "; ".join(diffs)
    return line


def retiring_lines(plan: Plan) -> list[str]:
    """The containers kept because something still uses them, one line each."""
    lines = []
    for r in plan.retiring:
        where = f" (segment {r.segment})" if r.segment else ""
        ident = f" [{r.cloud_id}]" if r.cloud_id else ""
        lines.append(
            f"  # {r.type} {r.key}{where}{ident} is retiring: {r.users} {r.what} still use "
            f"it, so it keeps its {r.rules} rule(s); it is destroyed by the first apply "
            "after nothing uses it"
        )
    if lines:
        lines.append("")
    return lines


def render_plan(plan: Plan, *, color: bool = False, compact: bool = False) -> str:
    """The plan as text; `compact`: one line per resource; `color`: ANSI, for terminals."""
    head = f"nsgsync plan: provider {plan.provider}, cluster {plan.cluster}"
    if plan.offline:
        head += " (offline: against an empty cloud state)"
    lines = [head, ""]
    for note in plan.notes:
        lines.append(f"note: {note}")
    if plan.notes:
        lines.append("")
    lines += retiring_lines(plan)
    if plan.empty:
        lines.append("No changes. The cloud already matches the policies.")
        return "\n".join(lines) + "\n"
    lines.append("nsgsync will perform the following actions:")
    lines.append("")
    for c in plan.changes:
        if compact:
            lines += _paint([compact_line(c)], c.op, color)
        else:
            lines += _paint(_change(c), c.op, color)
            lines.append("")
    if compact:
        lines.append("")
    s = plan.summary()
    summary = f"Plan: {s['add']} to add, {s['change']} to change, {s['destroy']} to destroy."
    lines.append(f"{_BOLD}{summary}{_RESET}" if color else summary)
    return "\n".join(lines) + "\n"
