"""`nsgsync compile`: manifests and topology in, the Intent out."""

from __future__ import annotations

import argparse

from nsgsync.cli.common import add_input_options, read_inputs
from nsgsync.cli.findings import add_findings_option, render_findings
from nsgsync.intent import DirectionIntent, Intent

EXAMPLES = """\
examples:
  nsgsync compile -f config/example/cluster --topology config/example/topology.yaml
  nsgsync compile -f policies/ -f namespaces.yaml --topology topology.yaml -o json > intent.json
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "compile",
        help="print the Intent: per segment, the traffic the cloud must allow",
        description="Compile NetworkPolicies onto the topology's segments and print the Intent "
        "with its findings (where precision was lost, and why).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_options(parser)
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text")
    add_findings_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    inputs = read_inputs(args)
    if args.output == "json":
        print(inputs.intent.to_json(), end="")
    else:
        print(render_text(inputs.intent, every_finding=args.findings == "all"), end="")
    return 0


def _side(name: str, side: DirectionIntent) -> list[str]:
    if not side.isolated:
        return [f"  {name}: open (everything allowed)"]
    lines = [f"  {name}: isolated, {len(side.rules)} rule(s)"]
    for r in side.rules:
        ports = (
            "all"
            if r.ports is None
            else ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in r.ports)
        )
        peers = ", ".join(r.peers[:3]) + (
            f" (+{len(r.peers) - 3} more)" if len(r.peers) > 3 else ""
        )
        lines.append(f"    allow {r.protocol.value:<4} {ports:<12} {peers}  [{r.explanation()}]")
    return lines


def render_text(intent: Intent, *, every_finding: bool = False) -> str:
    lines = [f"Intent for cluster {intent.cluster}: {len(intent.segments)} segment(s)", ""]
    for seg in intent.segments:
        lines.append(f"segment {seg.name} ({', '.join(seg.cidrs)})")
        lines += _side("ingress", seg.ingress)
        lines += _side("egress", seg.egress)
        lines.append("")
    if intent.findings:
        lines += render_findings(intent.findings, every=every_finding)
    else:
        lines.append("No findings: the Intent is exactly as precise as the policies.")
    return "\n".join(lines) + "\n"
