"""Options and steps every verb shares: reading inputs and compiling them."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from nsgsync.compile import CompileOptions, compile_intent
from nsgsync.intent import Intent
from nsgsync.model import Inventory, Topology
from nsgsync.sources import load_manifests, load_topology


def add_input_options(parser: argparse.ArgumentParser, *, topology_required: bool = True) -> None:
    group = parser.add_argument_group("input")
    group.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        default=[],
        metavar="PATH",
        help="a YAML/JSON manifest or a folder of them (repeatable; folders are read recursively)",
    )
    group.add_argument(
        "--topology",
        required=topology_required,
        metavar="FILE",
        help="the cluster's topology file (see config/example/topology.yaml)",
    )
    group.add_argument(
        "--selector-only",
        action="store_true",
        help="decide coverage from selectors alone, ignoring known pods: rules then also "
        "hold for pods that do not exist yet, at the cost of precision",
    )


@dataclass(frozen=True)
class Inputs:
    topology: Topology
    inventory: Inventory
    intent: Intent


def read_inputs(args: argparse.Namespace) -> Inputs:
    topology = load_topology(args.topology)
    inventory = load_manifests(args.files)
    intent = compile_intent(
        topology, inventory, options=CompileOptions(selector_only=args.selector_only)
    )
    return Inputs(topology, inventory, intent)


def progress(message: str) -> None:
    """Progress goes to stderr, so stdout stays the machine-readable result."""
    print(message, file=sys.stderr, flush=True)
