"""How `nsgsync plan` shows a plan: colour, compact lines, Markdown, and --fail-on."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from nsgsync.cli.common import progress
from nsgsync.errors import InputError
from nsgsync.intent import Finding, Severity
from nsgsync.plan import Plan
from nsgsync.plan.markdown import render_markdown
from nsgsync.plan.text import render_plan


def add_view_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compact", action="store_true", help="text: one line per resource (for terminals)"
    )
    parser.add_argument(
        "--no-color",
        action="store_true",
        help="no colour in text output (colour is used only on a terminal, and never "
        "when NO_COLOR is set)",
    )
    parser.add_argument(
        "--fail-on",
        choices=["warning", "info"],
        help="exit 1 when there are findings of this severity or above (for CI)",
    )
    parser.add_argument(
        "--baseline",
        metavar="INTENT_JSON",
        help="-o markdown: the Intent before the change (`nsgsync compile -o json` on the "
        "base branch); only the findings the change introduces are listed",
    )


def use_colour(args: argparse.Namespace) -> bool:
    # https://no-color.org: set and not empty turns colour off.
    return not args.no_color and not os.environ.get("NO_COLOR") and sys.stdout.isatty()


def text(plan: Plan, args: argparse.Namespace) -> str:
    return render_plan(plan, color=use_colour(args), compact=args.compact)


def _baseline(path: str) -> list[Finding]:
    try:
        doc = json.loads(Path(path).read_text())
        return [Finding.model_validate(f) for f in doc.get("findings", [])]
    except (OSError, ValueError, AttributeError) as exc:
        raise InputError(
            f"--baseline: not an Intent JSON file: {exc}",
            file=path,
            hint="write it with `nsgsync compile ... -o json > base-intent.json`",
        ) from None


def markdown(plan: Plan, findings: Sequence[Finding], args: argparse.Namespace) -> str:
    baseline = _baseline(args.baseline) if args.baseline else None
    return render_markdown(plan, findings, baseline=baseline)


def failing(findings: Sequence[Finding], args: argparse.Namespace) -> bool:
    if args.fail_on is None:
        return False
    wanted = {Severity.WARNING} if args.fail_on == "warning" else {Severity.WARNING, Severity.INFO}
    hits = [f for f in findings if f.severity in wanted]
    if hits:
        progress(f"--fail-on {args.fail_on}: {len(hits)} finding(s) of that severity or above")
    return bool(hits)
