"""`nsgsync graph`: which segments may talk to which, as a picture or as data."""

from __future__ import annotations

import argparse

from nsgsync.cli.common import add_input_options, read_inputs
from nsgsync.errors import InputError, did_you_mean, excerpt
from nsgsync.firewall import cloud_tables, endpoints_for, intent_tables, rendered_rules
from nsgsync.graph import build_graph
from nsgsync.graph.html import to_html
from nsgsync.graph.text import to_dot, to_json, to_mermaid

EXAMPLES = """\
examples:
  nsgsync graph -f config/example/cluster --topology config/example/topology.yaml > graph.html
  nsgsync graph -f policies/ --topology topology.yaml -o mermaid --namespace shop
  nsgsync graph -f policies/ --topology topology.yaml --provider-rules -o json

A cell is what some pod of the source segment may open to some pod of the destination:
open (everything), restricted (the protocols and ports shown) or denied. `nodes`,
`unsegmented` and `outside` stand for addresses outside every segment. With
--provider-rules the cell is what the cloud's rendered rules allow, which may be wider
than the Intent where a cloud cannot be as fine (e.g. SCTP ports on AWS).
"""

RENDER = {"html": to_html, "json": to_json, "dot": to_dot, "mermaid": to_mermaid}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "graph",
        help="draw which segments may connect to which (HTML matrix, dot, mermaid, JSON)",
        description="The segment-to-segment connectivity the Intent allows (or, with "
        "--provider-rules, the cloud's rendered rules), as a self-contained HTML page, "
        "Graphviz dot, Mermaid or JSON, on stdout.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_options(parser)
    parser.add_argument("-o", "--output", choices=sorted(RENDER), default="html")
    parser.add_argument(
        "--provider-rules",
        action="store_true",
        help="evaluate the rules the topology's provider would write, not the Intent",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="only connections from or to segments of this namespace (repeatable)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    inputs = read_inputs(args)
    endpoints = endpoints_for(inputs.topology)
    findings = list(inputs.intent.findings)
    if args.provider_rules:
        resources, rendered = rendered_rules(inputs.intent, inputs.topology)
        tables = cloud_tables(inputs.topology.provider, resources, inputs.topology)
        findings += rendered
        rules = inputs.topology.provider
    else:
        tables = intent_tables(inputs.intent)
        rules = "intent"
    graph = build_graph(
        cluster=inputs.topology.cluster,
        rules=rules,
        endpoints=endpoints,
        tables=tables,
        findings=findings,
    )
    if args.namespace:
        known = {e.group for e in graph.endpoints}
        for ns in args.namespace:
            if ns not in known:
                raise InputError(
                    f"--namespace {excerpt(ns)}: no segment of the topology is in that "
                    f"namespace{did_you_mean(ns, known)}",
                    hint=f"give one of: {', '.join(sorted(known))}",
                )
        graph = graph.only(args.namespace)
    print(RENDER[args.output](graph), end="")
    return 0
