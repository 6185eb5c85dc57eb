"""`nsgsync explain`: one connection, as Kubernetes sees it and as the cloud will."""

from __future__ import annotations

import argparse

from nsgsync.cli.common import add_input_options, read_inputs
from nsgsync.explain import explain, render

EXAMPLES = """\
examples:
  nsgsync explain -f config/example/cluster --topology config/example/topology.yaml \\
      --from shop/frontend --to shop/backend --port 8081/TCP
  nsgsync explain -f policies/ --topology topology.yaml \\
      --from 203.0.113.7 --to shop/frontend --port 8080

Endpoints are NAMESPACE/NAME of a Pod or workload in the manifests, or an IP address.
Exit code: 0 when Kubernetes and the cloud agree, 3 when the cloud is wider, 4 when it
would block what Kubernetes allows (a bug: please report it).
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "explain",
        help="say whether a connection is allowed, by Kubernetes and by the cloud rules",
        description="Explain one connection: whether Kubernetes allows it and through which "
        "policies, and whether the Intent allows it and through which rules.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_options(parser)
    parser.add_argument("--from", dest="src", required=True, metavar="NS/NAME|IP")
    parser.add_argument("--to", dest="dst", required=True, metavar="NS/NAME|IP")
    parser.add_argument("--port", required=True, metavar="PORT[/PROTO]", help="e.g. 5432/TCP")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    inputs = read_inputs(args)
    result = explain(
        inputs.intent, inputs.topology, inputs.inventory, src=args.src, dst=args.dst, port=args.port
    )
    print(render(result), end="")
    if result.kubernetes.allowed and not result.cloud_allowed:
        return 4
    if not result.kubernetes.allowed and result.cloud_allowed:
        return 3
    return 0
