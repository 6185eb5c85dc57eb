"""`nsgsync export terraform` for AWS: goldens, format, meaning, and import ids against moto."""

from __future__ import annotations

import difflib
import json
import re
import shutil
import subprocess
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

import nsgsync.terraform as terraform_core
from nsgsync.cli.export_cmd import TerraformExport, export_json, export_terraform
from nsgsync.cli.main import main
from nsgsync.compile import compile_intent
from nsgsync.engine import apply_plan, make_plan
from nsgsync.errors import ProviderError
from nsgsync.intent import Intent
from nsgsync.model import Inventory, Topology
from nsgsync.plan import Ident
from nsgsync.provider import configure
from nsgsync.sources import load_manifests, load_topology
from nsgsync.sources.files import Document, parse_policy
from nsgsync.terraform import (
    MARKER,
    ExportOptions,
    TerraformRenderer,
    load_renderer,
)
from nsgsync.terraform.hcl import is_identifier
from nsgsync_aws.terraform import renderer
from tests.aws.conftest import Ec2
from tests.cycle import probe_addresses
from tests.terraform.evaluate_hcl import GROUP, RULES, Parsed, groups_from_hcl, rule_dict, unquote
from tests.terraform.fmtcheck import problems
from tests.test_goldens import check_golden_folder

ROOT = Path(__file__).parent.parent.parent
CASES = sorted(p for p in (ROOT / "tests/cases").iterdir() if p.is_dir())
EXAMPLE = ROOT / "config/example"
PORTS = [("TCP", 80), ("TCP", 5432), ("TCP", 8080), ("UDP", 53), ("TCP", 9090), ("SCTP", 7)]
GOLDEN = "terraform-aws"


def with_aws(topology: Topology, **aws: Any) -> Topology:
    return topology.model_copy(update={"aws": {**topology.provider_block("aws"), **aws}})


def export(
    topology: Topology,
    intent: Intent,
    connection: object | None = None,
    **options: Any,
) -> TerraformExport:
    provider = configure(topology)
    return export_terraform(
        provider,
        renderer,
        topology,
        intent,
        session=connection,
        options=ExportOptions(**options),
    )


@cache
def case_export(case: Path) -> tuple[Topology, Intent, TerraformExport]:
    topology = load_topology(case / "topology.yaml")
    intent = compile_intent(topology, load_manifests([case / "manifests"]))
    return topology, intent, export(topology, intent)


@cache
def example(peer_mode: str = "cidr") -> tuple[Topology, Intent, TerraformExport]:
    topology = with_aws(load_topology(EXAMPLE / "topology.yaml"), peerMode=peer_mode)
    intent = compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))
    return topology, intent, export(topology, intent)


# --- goldens ---


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_terraform_golden(case: Path, update_goldens: bool) -> None:
    check_golden_folder(case / GOLDEN, case_export(case)[2].texts, update_goldens)


# --- every file parses, is formatted, and refers only to what exists ---

_TRAVERSAL = re.compile(r"\b(var|local|aws_[a-z0-9_]+)\.([A-Za-z0-9_]+)")


def references(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [r for v in value.values() for r in references(v)]
    if isinstance(value, list):
        return [r for v in value for r in references(v)]
    if isinstance(value, str) and value.startswith("${"):
        return _TRAVERSAL.findall(value)
    return []


def check_files(texts: dict[str, str]) -> Parsed:
    for name, text in texts.items():
        assert problems(text) == [], name
        assert text.startswith(MARKER), name
        hcl2.loads(text)
    parsed = Parsed.texts(texts)
    assert not {"ingress", "egress"} & {k for _, attrs in parsed.of_type(GROUP) for k in attrs}, (
        "inline rules must never be mixed with rule resources"
    )
    assert set(parsed.other) <= {"terraform", "provider"}
    everything = [*parsed.resources.values(), *parsed.outputs.values(), parsed.locals]
    for kind, name in references(everything):
        if kind == "var":
            assert name in parsed.variables, f"var.{name} is not declared"
        elif kind == "local":
            assert name in parsed.locals, f"local.{name} is not declared"
        else:
            assert f"{kind}.{name}" in parsed.resources, f"{kind}.{name} does not exist"
    for address in parsed.resources:
        rtype, name = address.split(".")
        assert is_identifier(name) and name[0].isalpha()
    for rtype in RULES:
        for address, attrs in parsed.of_type(rtype):
            with_ports = unquote(attrs["ip_protocol"]) in ("tcp", "udp")
            assert ("from_port" in attrs) == ("to_port" in attrs) == with_ports, address
    return parsed


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_generated_files_parse_are_formatted_and_consistent(case: Path) -> None:
    _, _, result = case_export(case)
    parsed = check_files(result.texts)
    assert "imports.tf" not in result.texts
    assert len(parsed.resources) == len(result.desired)
    assert sorted(parsed.resources) == sorted(result.addresses.values())


def test_terraform_fmt_check_agrees_where_terraform_exists(tmp_path: Path) -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary on PATH (tests/terraform/fmtcheck.py checks the rules)")
    folders = [c / GOLDEN for c in CASES] + [ROOT / "terraform"]
    for name, text in example("security-group")[2].texts.items():
        (tmp_path / name).write_text(text)
    for folder in [*folders, tmp_path]:
        done = subprocess.run(
            [terraform, "fmt", "-check", "-recursive", "-diff", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


# --- the files mean what the Intent means ---


def assert_hcl_matches_intent(texts: dict[str, str], topology: Topology, intent: Intent) -> None:
    groups = groups_from_hcl(Parsed.texts(texts), topology)
    assert set(groups.by_segment) == {s.name for s in intent.segments}
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


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_parsed_rules_allow_exactly_what_the_intent_allows(case: Path) -> None:
    topology, intent, result = case_export(case)
    assert_hcl_matches_intent(result.texts, topology, intent)


@pytest.mark.parametrize("peer_mode", ["cidr", "security-group"])
def test_example_allows_exactly_what_the_intent_allows(peer_mode: str) -> None:
    topology, intent, result = example(peer_mode)
    check_files(result.texts)
    assert_hcl_matches_intent(result.texts, topology, intent)


def test_peer_groups_are_terraform_references() -> None:
    _, _, result = example("security-group")
    db = hcl2.loads(result.texts["segment_shop_db.tf"])
    rules = [
        attrs
        for block in db["resource"]
        for rtype, named in block.items()
        for attrs in named.values()
        if rtype == '"aws_vpc_security_group_ingress_rule"'
    ]
    refs = [r["referenced_security_group_id"] for r in rules if "referenced_security_group_id" in r]
    assert refs == ["${aws_security_group.shop_backend.id}"]


def test_isolated_egress_keeps_only_its_rules_and_open_egress_gets_allow_all() -> None:
    # block-all-egress: demo's egress is isolated (only its nodes), the others are open.
    _, _, result = case_export(ROOT / "tests/cases/block-all-egress")
    parsed = Parsed.texts(result.texts)
    ids = {a: a for a, _ in parsed.of_type(GROUP)}
    egress: dict[str, list[tuple[str, str | None]]] = {}
    for _, attrs in parsed.of_type("aws_vpc_security_group_egress_rule"):
        rule = rule_dict("aws_vpc_security_group_egress_rule", attrs, ids)
        egress.setdefault(rule["GroupId"], []).append((rule["IpProtocol"], rule.get("CidrIpv4")))
    assert egress["aws_security_group.demo"] == [("-1", "10.1.0.0/20")]
    assert egress["aws_security_group.rest"] == [("-1", "0.0.0.0/0")]
    # nothing inline: aws_security_group revokes AWS's default egress rule when it creates
    # a group in a VPC, and the rule resources own every rule
    for _, attrs in parsed.of_type(GROUP):
        assert "egress" not in attrs and "ingress" not in attrs


# --- addresses ---


def test_addresses_are_readable_unique_and_derived_from_the_key() -> None:
    topology, _, result = example()
    addresses = result.addresses
    assert addresses["sg/shop-db"] == "aws_security_group.shop_db"
    assert (
        addresses["sgr/shop-db/in/tcp/5432-5432/10.0.2.0/24"]
        == "aws_vpc_security_group_ingress_rule.shop_db_tcp_5432_10_0_2_0_24"
    )
    assert (
        addresses["sgr/shop-db/out/udp/53-53/10.0.128.0/17"]
        == "aws_vpc_security_group_egress_rule.shop_db_udp_53_10_0_128_0_17"
    )
    assert addresses["sgr/rest/in/-1/all/0.0.0.0/0"] == (
        "aws_vpc_security_group_ingress_rule.rest_all_0_0_0_0_0"
    )
    assert len(set(addresses.values())) == len(addresses)
    # each resource's address depends on its own key only
    some = [r for r in result.desired if r.segment == "shop-db"]
    assert renderer.addresses(some, topology) == {r.key: addresses[r.key] for r in some}


def test_addresses_that_sanitise_alike_are_numbered() -> None:
    topology, _, result = example()
    group = next(r for r in result.desired if r.key == "sg/shop-db")
    twin = replace(group, ident=Ident("sg", ("shop-db-",)), segment="shop-db-")
    got = renderer.addresses([group, twin], topology)
    assert got == {
        "sg/shop-db": "aws_security_group.shop_db",
        "sg/shop-db-": "aws_security_group.shop_db_2",
    }


def extra_policy(inventory: Inventory) -> Inventory:
    extra = parse_policy(
        Document(
            "<test>",
            1,
            {
                "kind": "NetworkPolicy",
                "metadata": {"name": "extra", "namespace": "shop"},
                "spec": {
                    "podSelector": {"matchLabels": {"tier": "db"}},
                    "ingress": [
                        {"from": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [{"port": 443}]}
                    ],
                },
            },
        )
    )
    return Inventory.build([*inventory.policies, extra], inventory.namespaces, inventory.pods)


def test_a_policy_change_gives_a_small_diff() -> None:
    topology, _, before = example()
    intent = compile_intent(topology, extra_policy(load_manifests([EXAMPLE / "cluster"])))
    after = export(topology, intent)
    assert sorted(before.texts) == sorted(after.texts)
    changed = [n for n in before.texts if before.texts[n] != after.texts[n]]
    assert changed == ["segment_shop_db.tf"]
    diff = list(
        difflib.unified_diff(
            before.texts["segment_shop_db.tf"].splitlines(),
            after.texts["segment_shop_db.tf"].splitlines(),
            lineterm="",
            n=0,
        )
    )
    body = [d for d in diff if not d.startswith(("---", "+++", "@@"))]
    assert body and all(d.startswith("+") for d in body), "only additions expected"
    assert any("shop_db_tcp_443_192_0_2_0_24" in d for d in body)
    assert {k: v for k, v in after.addresses.items() if k in before.addresses} == before.addresses


# --- import blocks against moto's EC2 ---


def _same_rule(cloud: dict[str, Any], want: dict[str, Any]) -> bool:
    if (cloud["GroupId"], bool(cloud["IsEgress"]), str(cloud["IpProtocol"])) != (
        want["GroupId"],
        want["IsEgress"],
        want["IpProtocol"],
    ):
        return False
    if want["IpProtocol"] in ("tcp", "udp") and (cloud["FromPort"], cloud["ToPort"]) != (
        want["FromPort"],
        want["ToPort"],
    ):
        return False
    ref = (cloud.get("ReferencedGroupInfo") or {}).get("GroupId")
    return (cloud.get("CidrIpv4"), cloud.get("CidrIpv6"), ref) == (
        want.get("CidrIpv4"),
        want.get("CidrIpv6"),
        (want.get("ReferencedGroupInfo") or {}).get("GroupId"),
    )


def cloud_ids(ec2: Ec2, parsed: Parsed) -> dict[str, str]:
    """Each resource address's id in the cloud, found from the .tf attributes alone."""
    client = ec2.client
    groups = client.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [ec2.vpc_id]}])[
        "SecurityGroups"
    ]
    by_name = {g["GroupName"]: g["GroupId"] for g in groups}
    ids = {a: by_name[unquote(attrs["name"])] for a, attrs in parsed.of_type(GROUP)}
    rules = [
        r
        for page in client.get_paginator("describe_security_group_rules").paginate(
            Filters=[{"Name": "group-id", "Values": list(ids.values())}]
        )
        for r in page["SecurityGroupRules"]
    ]
    out = dict(ids)
    for rtype in RULES:
        for address, attrs in parsed.of_type(rtype):
            want = rule_dict(rtype, attrs, ids)
            found = [r for r in rules if _same_rule(r, want)]
            assert len(found) == 1, (address, want, found)
            out[address] = found[0]["SecurityGroupRuleId"]
    return out


@pytest.mark.parametrize("peer_mode", ["cidr", "security-group"])
def test_import_blocks_carry_the_cloud_ids_of_what_exists(ec2: Ec2, peer_mode: str) -> None:
    topology = with_aws(
        load_topology(EXAMPLE / "topology.yaml"), vpcId=ec2.vpc_id, peerMode=peer_mode
    )
    inventory = load_manifests([EXAMPLE / "cluster"])
    intent = compile_intent(topology, inventory)
    provider = configure(topology)
    conn = provider.session(ec2=ec2.client)
    apply_plan(
        provider, make_plan(provider, intent, session=conn).plan, conn, progress=lambda _: None
    )

    result = export(topology, intent, provider.session(ec2=ec2.client))
    parsed = check_files(result.texts)
    imports = dict(parsed.imports)
    assert len(imports) == len(parsed.imports), "one import block per address"
    assert sorted(imports) == sorted(parsed.resources), "every desired resource exists"
    assert imports == cloud_ids(ec2, parsed)
    assert all(i.startswith(("sg-", "sgr-")) for i in imports.values())
    assert list(result.changes) == []

    # After a policy change, what exists is imported and the new rule is created.
    intent2 = compile_intent(topology, extra_policy(inventory))
    again = export(topology, intent2, provider.session(ec2=ec2.client))
    parsed2 = Parsed.texts(again.texts)
    new = set(parsed2.resources) - set(dict(parsed2.imports))
    assert new == {"aws_vpc_security_group_ingress_rule.shop_db_tcp_443_192_0_2_0_24"}
    assert dict(parsed2.imports) == imports


# --- the command line ---


EXAMPLE_ARGS = ["-f", str(EXAMPLE / "cluster"), "--topology", str(EXAMPLE / "topology.yaml")]


def test_cli_writes_the_files_and_removes_only_its_own_stale_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tf"
    out.mkdir()
    (out / "main.tf").write_text("# mine\n")
    (out / "segment_gone.tf").write_text(MARKER + "; do not edit by hand.\n")
    assert main(["export", "terraform", *EXAMPLE_ARGS, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    _, _, result = example()
    assert captured.out.split() == [str(out / n) for n in sorted(result.texts)]
    assert "written" in captured.err
    assert sorted(p.name for p in out.glob("*.tf")) == sorted([*result.texts, "main.tf"])
    assert (out / "main.tf").read_text() == "# mine\n"
    for name, text in result.texts.items():
        assert (out / name).read_text() == text
    # --no-provider-block: no provider.tf, no region variable
    args = ["export", "terraform", *EXAMPLE_ARGS, "--out", str(out), "--no-provider-block"]
    assert main(args) == 0
    assert not (out / "provider.tf").exists()
    assert 'variable "region"' not in (out / "variables.tf").read_text()


def test_cli_refuses_to_overwrite_a_file_it_did_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "versions.tf").write_text("terraform {}\n")
    assert main(["export", "terraform", *EXAMPLE_ARGS, "--out", str(tmp_path)]) == 1
    assert "was not written by nsgsync" in capsys.readouterr().err
    assert (tmp_path / "versions.tf").read_text() == "terraform {}\n"


def test_cli_export_json_is_the_plans_desired_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", *EXAMPLE_ARGS, "--offline", "-o", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert main(["export", "json", *EXAMPLE_ARGS]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "Desired"
    assert (doc["provider"], doc["cluster"]) == ("aws", "demo-eu-1")
    assert doc["desired"] == plan["desired"]
    target = tmp_path / "nsgsync.json"
    assert main(["export", "json", *EXAMPLE_ARGS, "-o", str(target)]) == 0
    assert json.loads(target.read_text()) == doc


def test_a_missing_renderer_names_the_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ProviderError, match=r"entry point 'nope' in group 'nsgsync.terraform'"):
        load_renderer("nope")


def test_export_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["export"], ["export", "terraform"], ["export", "json"]):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        assert "examples:" in capsys.readouterr().out


def test_export_json_lists_the_cloud_ids_of_what_exists(ec2: Ec2) -> None:
    topology = with_aws(load_topology(EXAMPLE / "topology.yaml"), vpcId=ec2.vpc_id)
    intent = compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))
    provider = configure(topology)
    offline = export_json(provider, intent)
    assert "existing" not in offline
    conn = provider.session(ec2=ec2.client)
    assert export_json(provider, intent, session=conn)["existing"] == {}
    apply_plan(
        provider, make_plan(provider, intent, session=conn).plan, conn, progress=lambda _: None
    )
    doc = export_json(provider, intent, session=provider.session(ec2=ec2.client))
    assert doc["desired"] == offline["desired"], "desired stays unbound: peers as placeholders"
    parsed = Parsed.texts(export(topology, intent).texts)
    by_address = cloud_ids(ec2, parsed)
    addresses = export(topology, intent).addresses
    assert doc["existing"] == {key: by_address[addresses[key]] for key in addresses}


def test_the_entry_point_to_declare_loads_the_aws_renderer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Exactly the line pyproject.toml declares under [project.entry-points."nsgsync.terraform"],
    # installed under other names by a distribution of the test's own (a dist-info on sys.path).
    info = tmp_path / "nsgsync_declared-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nsgsync-declared\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{terraform_core.GROUP}]\n"
        "declared = nsgsync_aws.terraform:renderer\n"
        "wrong = nsgsync_aws.terraform:GROUP_TYPE\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_renderer("declared") is renderer
    assert isinstance(renderer, TerraformRenderer)
    with pytest.raises(ProviderError, match="not a Terraform renderer"):
        load_renderer("wrong")
