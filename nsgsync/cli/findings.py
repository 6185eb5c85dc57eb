"""Findings as a person reads them: grouped by code, counted, a few examples each.

A large cluster can raise thousands; `--findings all` prints every one, and `-o json`
always carries them all, in a stable order.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Iterable, Sequence

from nsgsync.intent import Finding, Severity

EXAMPLES_PER_CODE = 3


def add_findings_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--findings",
        choices=["summary", "all"],
        default="summary",
        help="in text output, findings grouped by code with a few examples each (summary, "
        "the default) or every finding (all); -o json always carries every finding",
    )


def render_findings(
    findings: Sequence[Finding],
    *,
    every: bool = False,
    severities: Iterable[Severity] = (Severity.WARNING, Severity.INFO),
) -> list[str]:
    """Lines describing the findings of the given severities, warnings first."""
    wanted = set(severities)
    by_code: dict[tuple[int, str], list[Finding]] = defaultdict(list)
    for f in findings:
        if f.severity in wanted:
            rank = 0 if f.severity is Severity.WARNING else 1
            by_code[(rank, f.code)].append(f)
    if not by_code:
        return []
    total = sum(len(v) for v in by_code.values())
    counts = ", ".join(
        f"{n} {s.value}{'s' if n != 1 and s is Severity.WARNING else ''}"
        for s in (Severity.WARNING, Severity.INFO)
        if (n := sum(len(v) for (r, _), v in by_code.items() if r == (s is Severity.INFO)))
    )
    lines = [f"Findings: {total} ({counts})"]
    hidden = 0
    for (_, code), group in sorted(by_code.items()):
        severity = group[0].severity.value
        lines.append(f"  {severity} {code} ({len(group)}):")
        shown = group if every else group[:EXAMPLES_PER_CODE]
        lines += [f"    - {f.message}" for f in shown]
        if len(group) > len(shown):
            hidden += len(group) - len(shown)
            lines.append(f"    ... and {len(group) - len(shown)} more")
    if hidden:
        lines.append(f"  ({hidden} not shown: --findings all prints every one, -o json too)")
    return lines
