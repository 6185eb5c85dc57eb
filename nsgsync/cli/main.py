"""Entry point of the `nsgsync` console script."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from nsgsync import __version__
from nsgsync.cli import (
    compile_cmd,
    completion_cmd,
    destroy_cmd,
    explain_cmd,
    export_cmd,
    graph_cmd,
    plan_cmd,
    run_cmd,
)
from nsgsync.errors import NsgsyncError, excerpt

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

Run `nsgsync VERB --help` for each verb's options and examples. Exit codes: 0 success,
1 error (usage errors included), 2 changes present (`plan --detailed-exitcode` only).
An error is one line and a hint; --debug adds the traceback of what caused it.
"""

VERBS = (
    compile_cmd,
    explain_cmd,
    plan_cmd,
    destroy_cmd,
    export_cmd,
    graph_cmd,
    run_cmd,
    completion_cmd,
)


USAGE_ERROR = 1  # not argparse's 2: with --detailed-exitcode, 2 means "changes present"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 1: a CI job must never read a typo as a plan."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def _add_debug(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="on an error, print its traceback (and its cause's) to stderr",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nsgsync",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nsgsync {__version__}")
    _add_debug(parser, default=False)
    # Subparsers are made of the same class (argparse uses type(parser)), so theirs exit 1 too.
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        verb.register(sub)
    # `--debug` after the verb works as well; SUPPRESS keeps a verb from resetting it to
    # False when it was given before the verb.
    pending = list(sub.choices.values())
    while pending:  # verbs, and the verbs of verbs (`export terraform`)
        verb_parser = pending.pop()
        _add_debug(verb_parser, default=argparse.SUPPRESS)
        for action in verb_parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending += action.choices.values()
    return parser


def _print_traceback(exc: BaseException) -> None:
    """The traceback of what went wrong underneath, then of the error nsgsync made of it.

    The cause is shown even where it was raised `from None` (kept out of the one-line
    message, not out of a debugging session).
    """
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        traceback.print_exception(cause, file=sys.stderr)
        print("\nwhich nsgsync reported as:\n", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr, chain=False)


# The collector's thresholds for this process: a large cluster's compile allocates millions
# of small objects that survive it, and each full collection walks all of them. Measured at
# 10,000 policies (docs/benchmarks.md): 4.6 s with the defaults, 2.9 s with these, 2.8 s with
# the collector off. The library leaves the collector alone; the process that runs it sets it.
GC_THRESHOLDS = (100_000, 50, 1000)


def main(argv: Sequence[str] | None = None) -> int:
    gc.set_threshold(*GC_THRESHOLDS)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        code: int = args.run(args)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at exit
    except NsgsyncError as exc:
        if debug:
            _print_traceback(exc)
        print(f"error: {exc}", file=sys.stderr)
        if not debug and exc.__cause__ is not None:
            print("  (run with --debug to see what caused it)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; nothing more was changed", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`nsgsync compile | head`); nothing is left to say to it.
        # Point stdout at devnull so the interpreter's final flush does not fail again.
        # (When stdout is no file, an embedding program's, there is nothing to redirect.)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:  # a net only: every expected failure is an NsgsyncError
        if debug:
            _print_traceback(exc)
        print(
            f"error: internal error: {type(exc).__name__}: {excerpt(str(exc), limit=200)} "
            "(run with --debug for the traceback; please report it)",
            file=sys.stderr,
        )
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
