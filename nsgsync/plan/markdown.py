"""A plan as a pull-request comment: a summary per segment, details folded per segment.

GitHub refuses comments over 65,536 characters (GitLab's notes allow more): the summary
and the findings always fit, and the folded details stop, with a note, where the next
segment would not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from nsgsync.intent import Finding, Severity
from nsgsync.plan.model import Change, Op, Plan

GITHUB_COMMENT_LIMIT = 65_536
FINDINGS_SHOWN = 50
_MARK = {Op.ADD: "+", Op.CHANGE: "~", Op.DESTROY: "-"}
_NO_SEGMENT = "(no segment)"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _value(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _fence(lines: Sequence[str]) -> str:
    # A fence longer than any run of backticks inside keeps the block closed.
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 3)
    return "\n".join([f"{fence}diff", *lines, fence])


def _change_lines(c: Change) -> list[str]:
    res = c.resource
    mark = _MARK[c.op]
    ident = f" [{c.old.cloud_id}]" if c.old is not None and c.old.cloud_id else ""
    lines = [f'{mark} {res.type} "{c.key}"{ident}']
    if c.op is Op.CHANGE and c.old is not None and c.new is not None:
        for k in sorted(set(c.old.body) | set(c.new.body)):
            before, after = c.old.body.get(k), c.new.body.get(k)
            if before != after:
                lines.append(f"-     {k} = {_value(before)}")
                lines.append(f"+     {k} = {_value(after)}")
        return lines
    body = c.new.body if c.new is not None else c.old.body if c.old is not None else {}
    lines += [f"{mark}     {k} = {_value(v)}" for k, v in body.items()]
    return lines


def _key(f: Finding) -> tuple[str, str, str, str]:
    return (f.code, f.policy or "", ", ".join(f.concerns()), f.message)


def render_markdown(
    plan: Plan,
    findings: Sequence[Finding] = (),
    *,
    baseline: Sequence[Finding] | None = None,
    limit: int = GITHUB_COMMENT_LIMIT,
) -> str:
    """`baseline`: the findings before the change (from the base branch's Intent), so that
    only those the change introduces are listed; None lists every finding."""
    s = plan.summary()
    head = [f"### nsgsync plan: {plan.provider}, cluster `{plan.cluster}`", ""]
    if plan.offline:
        head += ["_Offline: planned against an empty cloud state._", ""]
    head += [
        f"**Plan: {s['add']} to add, {s['change']} to change, {s['destroy']} to destroy.**",
        "",
    ]
    head += [f"> note: {n}" for n in plan.notes]
    head += [
        f"> retiring: {r.type} `{_cell(r.key)}`"
        + (f" ({r.cloud_id})" if r.cloud_id else "")
        + f": {r.users} {r.what} still use it; kept with its {r.rules} rule(s) until unused"
        for r in plan.retiring
    ]
    by_segment: dict[str, list[Change]] = {}
    for c in plan.changes:
        by_segment.setdefault(c.resource.segment or _NO_SEGMENT, []).append(c)
    if plan.empty:
        head += ["No changes. The cloud already matches the policies.", ""]
    else:
        head += ["| segment | to add | to change | to destroy |", "|---|---:|---:|---:|"]
        rows = []
        for seg in sorted(by_segment):
            changes = by_segment[seg]
            numbers = [sum(1 for c in changes if c.op is op) for op in Op]
            rows.append(f"| `{_cell(seg)}` | " + " | ".join(str(n) for n in numbers) + " |")
        # The table takes at most a third of the comment; the rest is findings and details.
        budget, kept = limit // 3, 0
        for row in rows:
            if budget - len(row) - 1 < 0:
                break
            head.append(row)
            budget -= len(row) + 1
            kept += 1
        if kept < len(rows):
            head.append(f"| _{len(rows) - kept} more segment(s)_ | | | |")
        head.append("")
    head += _findings(findings, baseline)
    tail: list[str] = []
    sections = []
    for seg in sorted(by_segment):
        changes = by_segment[seg]
        counts = ", ".join(
            f"{n} to {op.value}" for op in Op if (n := sum(1 for c in changes if c.op is op))
        )
        lines = [line for c in changes for line in _change_lines(c)]
        sections.append(
            f"<details><summary><code>{seg}</code>: {counts}</summary>\n\n"
            f"{_fence(lines)}\n\n</details>\n"
        )
    text = "\n".join(head) + "\n"
    room = limit - len(text) - 400  # the note below, with room to spare
    shown = 0
    for section in sections:
        if len(section) + 1 > room:
            break
        tail.append(section)
        room -= len(section) + 1
        shown += 1
    if shown < len(sections):
        tail.append(
            f"_Details of {len(sections) - shown} more segment(s) left out to fit a "
            f"{limit:,}-character comment; run `nsgsync plan` (or `-o json`) for all of them._\n"
        )
    return text + "\n".join(tail)


def _findings(findings: Sequence[Finding], baseline: Sequence[Finding] | None) -> list[str]:
    if baseline is not None:
        before = {_key(f) for f in baseline}
        items = [f for f in findings if _key(f) not in before]
        title = "Findings this change introduces"
    else:
        items = list(findings)
        title = "Findings"
    order = {Severity.WARNING: 0, Severity.INFO: 1}
    items.sort(key=lambda f: (order[f.severity], *f.sort_key()))
    if not items:
        return [f"**{title}:** none.", ""] if baseline is not None else []
    warnings = sum(1 for f in items if f.severity is Severity.WARNING)
    out = [
        f"**{title}:** {warnings} warning(s), {len(items) - warnings} info.",
        "",
        "| severity | code | segment | policy | message |",
        "|---|---|---|---|---|",
    ]
    for f in items[:FINDINGS_SHOWN]:
        out.append(
            f"| {f.severity.value} | `{f.code}` | {_cell(', '.join(f.concerns()))} | "
            f"{_cell(f.policy or '')} | {_cell(f.message)} |"
        )
    if len(items) > FINDINGS_SHOWN:
        out.append(
            f"\n_{len(items) - FINDINGS_SHOWN} more finding(s): run `nsgsync compile` for all._"
        )
    out.append("")
    return out
