"""Entry point of the `nsgsync` console script."""

from __future__ import annotations

import argparse
import gc
import sys
import traceback
from collections.abc import Sequence

from nsgsync import __version__
from nsgsync.cli import compile_cmd, destroy_cmd, explain_cmd, export_cmd, plan_cmd
from nsgsync.errors import NsgsyncError

DESCRIPTION = """\
nsgsync keeps cloud firewalls in step with Kubernetes NetworkPolicy: it compiles the
policies of a cluster onto the pod address ranges of a topology file, and writes them
as AWS security groups, Azure NSGs or GCP firewall rules.
"""

EPILOG = """\
examples:
  nsgsync compile -f config/example/cluster --topology config/example/topology.yaml
  nsgsync explain -f config/example/cluster --topology config/example/topology.yaml \\
      --from shop/frontend --to shop/backend --port 8081/TCP

Run `nsgsync VERB --help` for each verb's options and examples.
"""

VERBS = (compile_cmd, explain_cmd, plan_cmd, destroy_cmd, export_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nsgsync",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nsgsync {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, also print what caused it (the SDK's or library's own error)",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        verb.register(sub)
    return parser


# The collector's thresholds for this process: a large cluster's compile allocates millions
# of small objects that survive it, and each full collection walks all of them. Measured at
# 10,000 policies (docs/benchmarks.md): 4.6 s with the defaults, 2.9 s with these, 2.8 s with
# the collector off. The library leaves the collector alone; the process that runs it sets it.
GC_THRESHOLDS = (100_000, 50, 1000)


def main(argv: Sequence[str] | None = None) -> int:
    gc.set_threshold(*GC_THRESHOLDS)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except NsgsyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.debug:
            print("".join(traceback.format_exception(exc)), end="", file=sys.stderr)
        elif exc.__cause__ is not None:
            print("  (run with --debug to see what caused it)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; nothing more was changed", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
