"""terraform/: the reusable modules and examples parse, are formatted, and are current."""

from __future__ import annotations

import json
from pathlib import Path

import hcl2
import pytest

from nsgsync.cli.main import main
from tests.terraform.fmtcheck import problems

ROOT = Path(__file__).parent.parent.parent
TERRAFORM = ROOT / "terraform"
FILES = sorted(TERRAFORM.rglob("*.tf"))
MODULE = TERRAFORM / "modules/aws-security-groups"


def test_there_is_a_module_and_an_example() -> None:
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
        assert (MODULE / name).is_file(), name
    assert (TERRAFORM / "examples/aws/main.tf").is_file()
    assert (TERRAFORM / "README.md").is_file()


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(TERRAFORM)) for p in FILES])
def test_every_file_parses_and_is_formatted(path: Path) -> None:
    text = path.read_text()
    assert problems(text) == []
    hcl2.loads(text)


def test_the_module_keys_everything_by_the_nsgsync_keys() -> None:
    doc = hcl2.loads((MODULE / "main.tf").read_text())
    resources = {
        rtype.strip('"'): attrs
        for block in doc["resource"]
        for rtype, named in block.items()
        for attrs in named.values()
    }
    assert set(resources) == {
        "aws_security_group",
        "aws_vpc_security_group_ingress_rule",
        "aws_vpc_security_group_egress_rule",
    }
    assert resources["aws_security_group"]["for_each"] == "${local.groups}"
    assert resources["aws_vpc_security_group_ingress_rule"]["for_each"] == "${local.ingress}"
    assert resources["aws_vpc_security_group_egress_rule"]["for_each"] == "${local.egress}"
    for attrs in resources.values():
        assert "ingress" not in attrs and "egress" not in attrs
    variables = {
        name.strip('"')
        for block in hcl2.loads((MODULE / "variables.tf").read_text())["variable"]
        for name in block
    }
    assert variables == {"resources_file", "vpc_id", "tags"}


def test_the_examples_json_is_what_export_json_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = ROOT / "config/example"
    out = tmp_path / "nsgsync.json"
    args = ["-f", str(example / "cluster"), "--topology", str(example / "topology.yaml")]
    assert main(["export", "json", *args, "-o", str(out)]) == 0
    committed = TERRAFORM / "examples/aws/nsgsync.json"
    assert json.loads(committed.read_text()) == json.loads(out.read_text()), (
        f"{committed} is stale: regenerate it with nsgsync export json ... -o {committed}"
    )
