"""The real thing: Terraform and the hashicorp/aws provider against moto's EC2 server.

Slow (a minute or two: the provider loads its schema for every command), so opt-in:
NSGSYNC_TERRAFORM_E2E=1. Needs a `terraform` binary and the provider in a local mirror
(NSGSYNC_TF_PROVIDER_MIRROR, default /opt/tf-plugins, laid out as
registry.terraform.io/hashicorp/aws/<version>/<os_arch>/); nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nsgsync.cli.export_cmd import export_json
from nsgsync.compile import compile_intent
from nsgsync.engine import apply_plan, make_plan
from nsgsync.intent import Intent
from nsgsync.model import Topology
from nsgsync.provider import configure
from nsgsync.sources import load_manifests, load_topology
from tests.aws.conftest import REGION, Ec2
from tests.aws.evaluate import Groups
from tests.cycle import probe_addresses
from tests.terraform.test_export_aws import EXAMPLE, PORTS, ROOT, export, with_aws

MIRROR = Path(os.environ.get("NSGSYNC_TF_PROVIDER_MIRROR", "/opt/tf-plugins"))
TERRAFORM = shutil.which("terraform")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("NSGSYNC_TERRAFORM_E2E") != "1",
        reason="set NSGSYNC_TERRAFORM_E2E=1 to run Terraform against moto (1-2 minutes)",
    ),
    pytest.mark.skipif(TERRAFORM is None, reason="no terraform binary on PATH"),
    pytest.mark.skipif(
        not (MIRROR / "registry.terraform.io/hashicorp/aws").is_dir(),
        reason=f"no hashicorp/aws provider in the mirror {MIRROR} (NSGSYNC_TF_PROVIDER_MIRROR)",
    ),
]


class Terraform:
    def __init__(self, folder: Path, endpoint: str, *, override: bool = False) -> None:
        self.folder = folder
        config = folder.parent / f"{folder.name}.tfrc"
        config.write_text(
            "provider_installation {\n"
            f'  filesystem_mirror {{\n    path    = "{MIRROR}"\n'
            '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n'
            '  direct {\n    exclude = ["registry.terraform.io/*/*"]\n  }\n}\n'
        )
        self.env = {
            **os.environ,
            "TF_CLI_CONFIG_FILE": str(config),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }
        # The provider, pointed at moto; STS too, so that it learns moto's account id. In
        # a folder that configures the provider, as an override file merged into it.
        name = "moto_override.tf" if override else "moto_provider.tf"
        (folder / name).write_text(
            f"""provider "aws" {{
  region                      = "{REGION}"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true

  endpoints {{
    ec2 = "{endpoint}"
    sts = "{endpoint}"
  }}
}}
"""
        )

    def __call__(self, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        assert TERRAFORM is not None
        done = subprocess.run(
            [TERRAFORM, *args, "-no-color"],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        assert done.returncode in ok, done.stdout + done.stderr
        return done.stdout

    def init(self) -> Terraform:
        self("init", "-input=false")
        return self


def assert_cloud_matches_intent(ec2: Ec2, topology: Topology, intent: Intent) -> None:
    groups = Groups.read(ec2.client, ec2.vpc_id, topology)
    addresses = probe_addresses(topology)
    wrong = [
        (src, dst, proto, port)
        for src in addresses
        for dst in addresses
        for proto, port in PORTS
        if src != dst
        and groups.allows(src, dst, proto, port) != intent.allows(src, dst, proto, port)
    ]
    assert wrong == []


def test_generated_code_applied_by_terraform_enforces_the_intent(ec2: Ec2, tmp_path: Path) -> None:
    # block-all-egress: an isolated egress direction, where AWS's default allow-all egress
    # rule must go, beside open ones, where it must stay (as an explicit rule).
    case = ROOT / "tests/cases/block-all-egress"
    topology = with_aws(load_topology(case / "topology.yaml"), vpcId=ec2.vpc_id)
    intent = compile_intent(topology, load_manifests([case / "manifests"]))
    folder = tmp_path / "generated"
    folder.mkdir()
    for name, text in export(topology, intent, provider_block=False).texts.items():
        (folder / name).write_text(text)
    tf = Terraform(folder, ec2.endpoint).init()
    tf("apply", "-auto-approve", "-input=false")
    assert_cloud_matches_intent(ec2, topology, intent)
    demo = Groups.read(ec2.client, ec2.vpc_id, topology).by_segment["demo"]
    assert [r.get("CidrIpv4") for r in demo if r["IsEgress"]] == ["10.1.0.0/20"]
    # converged: nothing to do on the next plan
    assert "No changes." in tf("plan", "-input=false", "-detailed-exitcode")


def test_terraform_adopts_what_nsgsync_applied_without_recreating_it(
    ec2: Ec2, tmp_path: Path
) -> None:
    topology = with_aws(load_topology(EXAMPLE / "topology.yaml"), vpcId=ec2.vpc_id)
    intent = compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))
    provider = configure(topology)
    conn = provider.session(ec2=ec2.client)
    apply_plan(
        provider, make_plan(provider, intent, session=conn).plan, conn, progress=lambda _: None
    )
    result = export(topology, intent, provider.session(ec2=ec2.client), provider_block=False)
    folder = tmp_path / "adopt"
    folder.mkdir()
    for name, text in result.texts.items():
        (folder / name).write_text(text)
    tf = Terraform(folder, ec2.endpoint).init()
    out = tf("plan", "-input=false")
    n = len(result.desired)
    assert f"Plan: {n} to import, 0 to add, 0 to change, 0 to destroy." in out, out[-3000:]


def test_the_module_applied_by_terraform_enforces_the_intent(ec2: Ec2, tmp_path: Path) -> None:
    topology = with_aws(load_topology(EXAMPLE / "topology.yaml"), vpcId=ec2.vpc_id)
    intent = compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))
    folder = tmp_path / "module"
    folder.mkdir()
    module = ROOT / "terraform/modules/aws-security-groups"
    resources = ROOT / "terraform/examples/aws/nsgsync.json"
    (folder / "main.tf").write_text(
        f"""module "nsgsync" {{
  source         = "{module}"
  resources_file = "{resources}"
  vpc_id         = "{ec2.vpc_id}"
  tags           = {{ team = "platform" }}
}}

output "security_group_ids" {{
  value = module.nsgsync.security_group_ids
}}
"""
    )
    tf = Terraform(folder, ec2.endpoint).init()
    out = tf("apply", "-auto-approve", "-input=false")
    assert re.search(r"Resources: \d+ added, 0 changed, 0 destroyed", out)
    assert_cloud_matches_intent(ec2, topology, intent)
    assert "No changes." in tf("plan", "-input=false", "-detailed-exitcode")


def test_the_example_root_adopts_what_nsgsync_applied(ec2: Ec2, tmp_path: Path) -> None:
    topology = with_aws(load_topology(EXAMPLE / "topology.yaml"), vpcId=ec2.vpc_id)
    intent = compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))
    provider = configure(topology)
    conn = provider.session(ec2=ec2.client)
    apply_plan(
        provider, make_plan(provider, intent, session=conn).plan, conn, progress=lambda _: None
    )
    doc = export_json(provider, intent, session=provider.session(ec2=ec2.client))
    assert len(doc["existing"]) == len(doc["desired"])
    shutil.copytree(ROOT / "terraform", tmp_path / "terraform")
    root = tmp_path / "terraform/examples/aws"
    (root / "nsgsync.json").write_text(json.dumps(doc))
    tf = Terraform(root, ec2.endpoint, override=True).init()
    out = tf("plan", "-input=false")
    n = len(doc["desired"])
    assert f"Plan: {n} to import, 0 to add, 0 to change, 0 to destroy." in out, out[-3000:]
