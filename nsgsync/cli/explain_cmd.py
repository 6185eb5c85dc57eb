"""`nsgsync explain`: one connection, as Kubernetes sees it and as the cloud will."""

from __future__ import annotations

import argparse

from nsgsync.cli.common import add_input_options, read_inputs
from nsgsync.explain import cloud_side_tables, explain, render, to_dict
from nsgsync.jsontext import pretty

EXAMPLES = """\
examples:
  nsgsync explain -f config/example/cluster --topology config/example/topology.yaml \\
      --from shop/frontend --to shop/backend --port 8081/TCP
  nsgsync explain -f policies/ --topology topology.yaml \\
      --from 10.0.2.17 --to shop/db --port postgres/TCP --cloud
  nsgsync explain -f policies/ --topology topology.yaml \\
      --from 203.0.113.7 --to shop-frontend --port 8080 -o json

Endpoints (--from, --to):
  NAMESPACE/NAME         a Pod or workload (Deployment, StatefulSet, ...) in the inputs;
                         NAMESPACE/KIND/NAME when a Pod and a workload share a name
  SEGMENT                a segment of the topology (a known pod of it speaks for Kubernetes)
  IP                     the pod known to have it (status.podIP); else the segment whose
                         CIDRs hold it, the nodes, pods in no segment, or outside the cluster
Ports: a number or a container port's name, with /TCP, /UDP or /SCTP (default TCP).
--cloud adds the verdict of the rules the topology's provider renders, naming the rule
(AWS security group rule, Azure NSG rule and priority, GCP firewall and priority).

Exit codes:
  0  allowed by Kubernetes, the Intent and (with --cloud) the rendered rules
  3  denied by all of them
  4  they differ (the text says which; a cloud wider than Kubernetes is a widening,
     one narrower is a bug: please report it)
  5  Kubernetes's verdict is unknown: no known pod has the address
  1  error
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "explain",
        help="say whether a connection is allowed, by Kubernetes and by the cloud rules",
        description="Explain one connection: whether Kubernetes allows it and through which "
        "policies, and whether the Intent (and, with --cloud, the provider's rendered "
        "rules) allows it and through which rules.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_options(parser)
    parser.add_argument("--from", dest="src", required=True, metavar="NS/NAME|SEGMENT|IP")
    parser.add_argument("--to", dest="dst", required=True, metavar="NS/NAME|SEGMENT|IP")
    parser.add_argument(
        "--port", required=True, metavar="PORT[/PROTO]", help="e.g. 5432/TCP, 53/UDP, http/TCP"
    )
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text")
    parser.add_argument(
        "--cloud",
        action="store_true",
        help="also evaluate the rules the topology's provider renders (offline, no credentials)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    inputs = read_inputs(args)
    cloud = cloud_side_tables(inputs.intent, inputs.topology) if args.cloud else None
    result = explain(
        inputs.intent,
        inputs.topology,
        inputs.inventory,
        src=args.src,
        dst=args.dst,
        port=args.port,
        cloud=cloud,
    )
    if args.output == "json":
        print(pretty(to_dict(result)), end="")
    else:
        print(render(result), end="")
    return result.exit_code
