"""`nsgsync export terraform` and `nsgsync export json`: the resources, for Terraform to own.

For shops where nothing but Terraform touches the cloud. `terraform` writes the
resources that realise the Intent as .tf files (one per segment), with import blocks for
what already exists; `json` writes the desired resources for the reusable modules under
terraform/modules/ to consume.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nsgsync.cli.common import add_input_options, progress, read_inputs
from nsgsync.cli.findings import render_findings
from nsgsync.engine import make_plan
from nsgsync.errors import InputError
from nsgsync.intent import API_VERSION, Finding, Intent, Severity
from nsgsync.jsontext import pretty
from nsgsync.model import Topology
from nsgsync.plan import Change, Op, Resource
from nsgsync.provider import Adapter, Attaching, Snapshot, configure
from nsgsync.terraform import (
    DEFAULT_OPTIONS,
    ExportOptions,
    TerraformRenderer,
    load_renderer,
    render_files,
    write_files,
)

EXPORT_EXAMPLES = """\
examples:
  nsgsync export terraform -f manifests/ --topology topology.yaml --out infra/nsgsync/
  nsgsync export json -f manifests/ --topology topology.yaml -o infra/nsgsync.json

Run `nsgsync export FORMAT --help` for each format's options.
"""

TERRAFORM_EXAMPLES = """\
examples:
  # generated code, committed and applied by Terraform
  nsgsync export terraform -f manifests/ --topology topology.yaml --out infra/nsgsync/
  # moving from `nsgsync apply` to Terraform: adopt what exists instead of recreating it
  nsgsync export terraform -f manifests/ --topology topology.yaml --out infra/nsgsync/ \\
      --import-existing
  # into a root module that configures the provider itself
  nsgsync export terraform -f manifests/ --topology topology.yaml --out infra/ \\
      --no-provider-block

Writes one file per segment (segment_<name>.tf: its group and rules), versions.tf,
variables.tf, outputs.tf, provider.tf and, with --import-existing, imports.tf. Files in
--out that nsgsync did not write are left alone; those it wrote before and no longer
needs are removed. Regenerating after a policy change changes only what changed.
--import-existing reads the cloud as `nsgsync plan` does (credentials needed).
"""

JSON_EXAMPLES = """\
examples:
  nsgsync export json -f manifests/ --topology topology.yaml > nsgsync.json
  nsgsync export json -f manifests/ --topology topology.yaml -o terraform/nsgsync.json
  nsgsync export json -f manifests/ --topology topology.yaml -o nsgsync.json --import-existing

The document holds `desired`, the same list as the Plan JSON: every resource nsgsync
wants, keyed by its stable key, its body in the cloud API's shape. The modules under
terraform/modules/ read it with jsondecode(file(...)). With --import-existing it also
holds `existing`: the cloud id of each desired resource that already exists, for import
blocks (see terraform/examples/aws/imports.tf).
"""


ATTACHMENT_EXAMPLES = """\
examples:
  nsgsync export attachments -f manifests/ --topology topology.yaml > sgp.yaml
  kubectl apply -f sgp.yaml        # or: nsgsync apply ... --apply-attachments
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = sub.add_parser(
        "export",
        help="write the resources as Terraform code or as JSON, for Terraform to apply",
        description="Write the resources that realise the policies for another tool to "
        "apply: Terraform code (`terraform`) or JSON for nsgsync's Terraform modules (`json`).",
        epilog=EXPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    formats = export.add_subparsers(dest="format", required=True, metavar="FORMAT")

    tf = formats.add_parser(
        "terraform",
        help="write .tf files: a security group per segment and one resource per rule",
        description="Compile the policies and write the topology provider's resources as "
        "Terraform files, formatted as `terraform fmt` would.",
        epilog=TERRAFORM_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_options(tf)
    tf.add_argument(
        "--out", required=True, metavar="DIR", help="the folder to write into (created)"
    )
    tf.add_argument(
        "--import-existing",
        action="store_true",
        help="read the cloud and write an import block for every resource that already "
        "exists (Terraform >= 1.5), so that none is created twice",
    )
    tf.add_argument(
        "--no-provider-block",
        dest="provider_block",
        action="store_false",
        help="leave out provider.tf, for a root module that configures the provider itself",
    )
    tf.set_defaults(run=run_terraform)

    js = formats.add_parser(
        "json",
        help="write the desired resources as JSON, for the modules under terraform/modules/",
        description="Compile the policies and write the desired resources (the Plan JSON's "
        "`desired` list) without reading the cloud.",
        epilog=JSON_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_options(js)
    js.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    js.add_argument(
        "--import-existing",
        action="store_true",
        help="read the cloud and add `existing`: the id of every desired resource that "
        "already exists, for import blocks",
    )
    js.set_defaults(run=run_json)

    at = formats.add_parser(
        "attachments",
        help="print the Kubernetes objects that attach the cloud resources to pods (AWS: "
        "SecurityGroupPolicy)",
        description="Print, as YAML, the objects that give each segment's pods its cloud "
        "resources (AWS: one SecurityGroupPolicy per segment and namespace). Reads the cloud "
        "for the groups' ids; with --offline they are placeholders.",
        epilog=ATTACHMENT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_options(at)
    at.add_argument("--offline", action="store_true", help="do not read the cloud")
    at.set_defaults(run=run_attachments)


@dataclass(frozen=True)
class TerraformExport:
    texts: dict[str, str]  # file name -> contents
    addresses: dict[str, str]  # Resource.key -> Terraform address
    desired: tuple[Resource, ...]
    imports: dict[str, str]  # Resource.key -> import id, for what already exists
    changes: tuple[Change, ...]  # the cloud against the policies (empty when offline)
    findings: tuple[Finding, ...]


def export_terraform(
    adapter: Adapter,
    renderer: TerraformRenderer,
    topology: Topology,
    intent: Intent,
    *,
    session: object | None = None,
    options: ExportOptions = DEFAULT_OPTIONS,
) -> TerraformExport:
    """The Terraform files for `intent`; with a session, import blocks for what exists."""
    # The plan renders once, checks quotas and, online, reads what nsgsync owns; a peer
    # that is one of nsgsync's groups stays a reference that Terraform resolves.
    planned = make_plan(adapter, intent, session=session)
    desired = list(planned.plan.desired)
    existing: dict[str, Resource] | None = None
    if session is not None:
        existing = {}
        for r in planned.actual:
            existing.setdefault(r.key, r)
    files = renderer.files(desired, topology, existing=existing, options=options)
    imports = {
        r.key: existing[r.key].cloud_id or ""
        for r in desired
        if existing is not None and r.key in existing and existing[r.key].cloud_id
    }
    return TerraformExport(
        texts=render_files(files),
        addresses=renderer.addresses(desired, topology),
        desired=tuple(sorted(desired, key=lambda r: r.key)),
        imports=imports,
        changes=planned.plan.changes if session is not None else (),
        findings=(*intent.findings, *planned.findings),
    )


def export_json(
    adapter: Adapter,
    intent: Intent,
    *,
    session: object | None = None,
) -> dict[str, Any]:
    """The desired resources, as the Plan JSON's `desired` list; with a connection, also
    `existing`: Resource.key to the cloud's id, for each desired resource that exists."""
    # Offline: peers stay placeholders the modules resolve, whatever exists in the cloud.
    plan = make_plan(adapter, intent).plan
    doc: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "Desired",
        "provider": plan.provider,
        "cluster": plan.cluster,
        "desired": plan.to_dict()["desired"],
    }
    if session is not None:
        have: dict[str, str] = {}
        for r in adapter.read(session).resources:
            if r.cloud_id:
                have.setdefault(r.key, r.cloud_id)
        doc["existing"] = {r.key: have[r.key] for r in plan.desired if r.key in have}
    return doc


def _warn(findings: Sequence[Finding]) -> None:
    for line in render_findings(findings, severities=(Severity.WARNING,)):
        progress(line)


def _some(keys: Sequence[str], n: int = 5) -> str:
    more = f" (and {len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def run_terraform(args: argparse.Namespace) -> int:
    inputs = read_inputs(args)
    topology = inputs.topology
    adapter = configure(topology, source=args.topology)
    renderer = load_renderer(topology.provider)
    session = None
    if args.import_existing:
        session = adapter.session()
        progress(f"reading what nsgsync owns for cluster {topology.cluster} ...")
    result = export_terraform(
        adapter,
        renderer,
        topology,
        inputs.intent,
        session=session,
        options=ExportOptions(provider_block=args.provider_block),
    )
    _warn(result.findings)
    out = Path(args.out)
    written = write_files(result.texts, out)
    for name in result.texts:
        print(out / name)
    progress(
        f"{len(result.desired)} resources in {len(result.texts)} files under {out}: "
        f"{len(written.written)} written, {len(written.unchanged)} unchanged, "
        f"{len(written.removed)} removed"
    )
    if session is not None:
        _report_existing(result)
    return 0


def _report_existing(result: TerraformExport) -> None:
    progress(
        f"{len(result.imports)} of them exist already and get an import block (imports.tf); "
        f"terraform will create {len(result.desired) - len(result.imports)}"
    )
    changed = [c.key for c in result.changes if c.op is Op.CHANGE]
    stale = [c.key for c in result.changes if c.op is Op.DESTROY]
    if changed:
        progress(
            f"warning: {len(changed)} existing resources differ from the policies; terraform's "
            f"first apply changes them (a group whose name or description differs is "
            f"replaced): {_some(changed)}"
        )
    if stale:
        progress(
            f"warning: {len(stale)} resources nsgsync owns in the cloud are not in the export; "
            f"Terraform will neither manage nor remove them, and they keep allowing traffic: "
            f"{_some(stale)}. Remove them first (`nsgsync apply`), or by hand."
        )


def run_json(args: argparse.Namespace) -> int:
    inputs = read_inputs(args)
    adapter = configure(inputs.topology, source=args.topology)
    session = None
    if args.import_existing:
        session = adapter.session()
        progress(f"reading what nsgsync owns for cluster {inputs.topology.cluster} ...")
    doc = export_json(adapter, inputs.intent, session=session)
    _warn(inputs.intent.findings)
    if "existing" in doc:
        progress(f"{len(doc['existing'])} of the resources exist already (`existing`)")
    text = pretty(doc)
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as exc:
            raise InputError(f"cannot write the export: {exc}", file=args.output) from exc
        progress(f"{len(doc['desired'])} resources written to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def run_attachments(args: argparse.Namespace) -> int:
    inputs = read_inputs(args)
    adapter = configure(inputs.topology, source=args.topology)
    if not isinstance(adapter, Attaching):
        progress(f"provider {adapter.name} attaches without Kubernetes objects; none to print")
        return 0
    snapshot = Snapshot(offline=True) if args.offline else adapter.read(adapter.session())
    docs, findings = adapter.attachments(inputs.inventory.namespaces, snapshot)
    _warn(findings)
    print(yaml.safe_dump_all(docs, sort_keys=False), end="")
    return 0
