"""`nsgsync export terraform` for GCP: goldens, format, meaning, and import ids against the
compute stand-in (tests/fakes/gcp_compute.py, through the real FirewallsClient)."""

from __future__ import annotations

import difflib
import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

from nsgsync.cli.export_cmd import TerraformExport, export_json, export_terraform
from nsgsync.cli.main import main
from nsgsync.compile import compile_intent
from nsgsync.engine import apply_plan, make_plan
from nsgsync.intent import Intent
from nsgsync.model import Inventory, Topology
from nsgsync.plan import Ident, Resource
from nsgsync.provider import configure
from nsgsync.sources import load_manifests, load_topology
from nsgsync.sources.files import Document, parse_policy
from nsgsync.terraform import MARKER, ExportOptions, TerraformRenderer, load_renderer
from nsgsync.terraform.hcl import is_identifier
from nsgsync_gcp.terraform import renderer
from tests.fakes.gcp_compute import API_ROOT, FakeCompute, make_client
from tests.gcp.conftest import FAST_RETRY, NETWORK, NODE_TAG, PROJECT, Gcp, with_gcp
from tests.gcp.evaluate import probe_addresses
from tests.terraform.evaluate_hcl import Parsed, unquote
from tests.terraform.evaluate_hcl_gcp import FIREWALL, firewall_dict, firewalls_from_hcl
from tests.terraform.fmtcheck import problems
from tests.test_goldens import check_golden_folder

ROOT = Path(__file__).parent.parent.parent
CASES = sorted(p for p in (ROOT / "tests/cases").iterdir() if p.is_dir())
EXAMPLE = ROOT / "config/example"
MODULE = ROOT / "terraform/modules/gcp-firewall"
PORTS = [("TCP", 80), ("TCP", 5432), ("TCP", 8080), ("UDP", 53), ("TCP", 9090), ("SCTP", 7)]
GOLDEN = "terraform-gcp"
# The block of tests/gcp/test_gcp_goldens.py, so that the rules here are those of the
# cases' plan-gcp.json, and the goldens depend on the policies and the adapter only.
SEEDS_PROJECT = "nsgsync-seeds"
SEEDS_NETWORK = "vpc-seeds"
SEEDS_NODE = "gke-seeds-node"
SEEDS: dict[str, Any] = {
    "project": SEEDS_PROJECT,
    "network": SEEDS_NETWORK,
    "targetTags": [SEEDS_NODE],
    "priorityBand": [100, 899],
}


def seeds_topology(path: Path) -> Topology:
    return load_topology(path).model_copy(update={"provider": "gcp", "gcp": SEEDS})


def export(
    topology: Topology, intent: Intent, connection: object | None = None, **options: Any
) -> TerraformExport:
    return export_terraform(
        configure(topology),
        renderer,
        topology,
        intent,
        session=connection,
        options=ExportOptions(**options),
    )


@cache
def case_export(case: Path) -> tuple[Topology, Intent, TerraformExport]:
    topology = seeds_topology(case / "topology.yaml")
    intent = compile_intent(topology, load_manifests([case / "manifests"]))
    return topology, intent, export(topology, intent)


@cache
def example() -> tuple[Topology, Intent, TerraformExport]:
    topology = with_gcp(load_topology(EXAMPLE / "topology.yaml"))
    intent = compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))
    return topology, intent, export(topology, intent)


# --- goldens ---


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_terraform_golden(case: Path, update_goldens: bool) -> None:
    check_golden_folder(case / GOLDEN, case_export(case)[2].texts, update_goldens)


# --- every file parses, is formatted, and refers only to what exists ---

_TRAVERSAL = re.compile(r"\b(var|local|google_[a-z0-9_]+)\.([A-Za-z0-9_]+)")


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
    assert set(parsed.other) <= {"terraform", "provider"}
    assert not parsed.locals
    everything = [*parsed.resources.values(), *parsed.outputs.values()]
    for kind, name in references(everything):
        if kind == "var":
            assert name in parsed.variables, f"var.{name} is not declared"
        else:
            assert f"{kind}.{name}" in parsed.resources, f"{kind}.{name} does not exist"
    for address, attrs in parsed.resources.items():
        rtype, name = address.split(".")
        assert rtype == FIREWALL
        assert is_identifier(name) and name[0].isalpha()
        assert ("allow" in attrs) != ("deny" in attrs), address
        # One kind of target, and ranges on both sides: an empty side would be "any".
        assert ("target_tags" in attrs) != ("target_service_accounts" in attrs), address
        assert attrs["source_ranges"] and attrs["destination_ranges"], address
    return parsed


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_generated_files_parse_are_formatted_and_consistent(case: Path) -> None:
    _, _, result = case_export(case)
    parsed = check_files(result.texts)
    assert "imports.tf" not in result.texts
    assert len(parsed.resources) == len(result.desired)
    assert sorted(parsed.resources) == sorted(result.addresses.values())
    segments = {r.segment or "" for r in result.desired}
    assert sorted(result.texts) == sorted(
        [f"segment_{s.replace('-', '_')}.tf" for s in segments]
        + ["outputs.tf", "provider.tf", "variables.tf", "versions.tf"]
    )


def test_terraform_fmt_check_agrees_where_terraform_exists(tmp_path: Path) -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary on PATH (tests/terraform/fmtcheck.py checks the rules)")
    for name, text in example()[2].texts.items():
        (tmp_path / name).write_text(text)
    for folder in [*(c / GOLDEN for c in CASES), MODULE, tmp_path]:
        done = subprocess.run(
            [terraform, "fmt", "-check", "-recursive", "-diff", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_versions_pin_the_google_provider() -> None:
    versions = hcl2.loads(example()[2].texts["versions.tf"])["terraform"][0]
    assert versions["required_version"] == '">= 1.5.0"'
    google = versions["required_providers"][0]["google"]
    assert (google["source"], google["version"]) == ('"hashicorp/google"', '"~> 6.0"')


# --- the files mean what the Intent means ---


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_parsed_bodies_are_the_offline_plans_bodies(case: Path) -> None:
    """Field by field: what Terraform creates is what `nsgsync apply` would create."""
    _, _, result = case_export(case)
    parsed = Parsed.texts(result.texts)
    plan = json.loads((case / "plan-gcp.json").read_text())
    want = {c["key"]: c["after"] for c in plan["changes"]}
    got = {}
    for _, attrs in parsed.of_type(FIREWALL):
        project, body = firewall_dict(attrs, parsed)
        assert project == SEEDS_PROJECT
        got[body["name"]] = body
    assert got == want


def same_family(a: str, b: str) -> bool:
    return (":" in a) == (":" in b)  # no connection crosses IP families


def assert_hcl_matches_intent(
    texts: dict[str, str],
    topology: Topology,
    intent: Intent,
    *,
    project: str,
    network: str,
    node_tags: Iterable[str] = (),
    node_accounts: Iterable[str] = (),
) -> None:
    firewalls = firewalls_from_hcl(
        Parsed.texts(texts),
        topology,
        project=project,
        network=network,
        node_tags=node_tags,
        node_accounts=node_accounts,
    )
    addresses = probe_addresses(topology)
    wrong = [
        (src, dst, proto, port)
        for src in addresses
        for dst in addresses
        for proto, port in PORTS
        if src != dst
        and same_family(src, dst)
        and firewalls.allows(src, dst, proto, port) != intent.allows(src, dst, proto, port)
    ]
    assert wrong == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_parsed_rules_allow_exactly_what_the_intent_allows(case: Path) -> None:
    topology, intent, result = case_export(case)
    assert_hcl_matches_intent(
        result.texts,
        topology,
        intent,
        project=SEEDS_PROJECT,
        network=SEEDS_NETWORK,
        node_tags={SEEDS_NODE},
    )


def test_example_allows_exactly_what_the_intent_allows() -> None:
    topology, intent, result = example()
    check_files(result.texts)
    assert_hcl_matches_intent(
        result.texts, topology, intent, project=PROJECT, network=NETWORK, node_tags={NODE_TAG}
    )


def dual_stack() -> tuple[Topology, Intent]:
    raw = load_topology(EXAMPLE / "topology.yaml")
    six = {"shop-frontend": "fd00:0:0:1::/64", "shop-db": "fd00:0:0:3::/64"}
    segments = [
        s.model_copy(update={"cidrs": [*s.cidrs, six[s.name]]}) if s.name in six else s
        for s in raw.segments
    ]
    topology = with_gcp(
        Topology.model_validate(
            {
                **raw.model_dump(by_alias=True, exclude_none=True),
                "podCIDRs": [*raw.pod_cidrs, "fd00::/48"],
                "segments": [s.model_dump(by_alias=True, exclude_none=True) for s in segments],
            }
        )
    )
    return topology, compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))


def test_dual_stack_rules_keep_one_family_each_and_mean_the_intent() -> None:
    topology, intent = dual_stack()
    result = export(topology, intent)
    parsed = check_files(result.texts)
    for address, attrs in parsed.of_type(FIREWALL):
        ranges = [*attrs["source_ranges"], *attrs["destination_ranges"]]
        v6 = {":" in r for r in ranges}
        assert len(v6) == 1, address
        assert address.endswith("_v6") == v6.pop(), address
    assert "google_compute_firewall.shop_db_ingress_deny_all_v6" in parsed.resources
    assert_hcl_matches_intent(
        result.texts, topology, intent, project=PROJECT, network=NETWORK, node_tags={NODE_TAG}
    )


def test_service_account_targets_are_exported() -> None:
    node = "gke-nodes@nsgsync-test.iam.gserviceaccount.com"
    pool = "db-pool@nsgsync-test.iam.gserviceaccount.com"
    raw = with_gcp(load_topology(EXAMPLE / "topology.yaml"))
    gcp = {k: v for k, v in raw.provider_block("gcp").items() if k != "targetTags"}
    segments = [
        s.model_copy(update={"gcp": {"targetServiceAccounts": [pool]}})
        if s.name == "shop-db"
        else s
        for s in raw.segments
    ]
    topology = Topology.model_validate(
        {
            **raw.model_dump(by_alias=True, exclude_none=True),
            "gcp": {**gcp, "targetServiceAccounts": [node]},
            "segments": [s.model_dump(by_alias=True, exclude_none=True) for s in segments],
        }
    )
    intent = compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))
    result = export(topology, intent)
    parsed = check_files(result.texts)
    accounts = {
        address: [a.strip('"') for a in attrs["target_service_accounts"]]
        for address, attrs in parsed.of_type(FIREWALL)
    }
    assert {a for a, v in accounts.items() if v == [pool]} == {
        result.addresses[r.key] for r in result.desired if r.segment == "shop-db"
    }
    # Every node carries one of the two accounts in this test, so both apply.
    assert_hcl_matches_intent(
        result.texts,
        topology,
        intent,
        project=PROJECT,
        network=NETWORK,
        node_accounts={node, pool},
    )


# --- addresses ---


def test_addresses_are_readable_unique_and_derived_from_the_key() -> None:
    topology, _, result = example()
    by_address = {a: k for k, a in result.addresses.items()}
    assert len(by_address) == len(result.addresses)
    db = {a for a in by_address if a.startswith("google_compute_firewall.shop_db_")}
    assert db == {
        "google_compute_firewall.shop_db_ingress_allow_all",
        "google_compute_firewall.shop_db_ingress_allow_tcp_5432",
        "google_compute_firewall.shop_db_ingress_deny_all",
        "google_compute_firewall.shop_db_egress_allow_all",
        "google_compute_firewall.shop_db_egress_allow_tcp_53",
        "google_compute_firewall.shop_db_egress_allow_udp_53",
        "google_compute_firewall.shop_db_egress_deny_all",
    }
    rule = next(r for r in result.desired if r.key == by_address[min(db)])
    assert rule.segment == "shop-db"
    # each resource's address depends on its own key only
    some = [r for r in result.desired if r.segment == "shop-db"]
    assert renderer.addresses(some, topology) == {r.key: result.addresses[r.key] for r in some}


def variant(rule: Resource, key: str, **body: Any) -> Resource:
    return replace(rule, ident=Ident("", (key,)), body={**rule.body, "name": key, **body})


def test_addresses_name_ports_ranges_and_fall_back_on_the_hash() -> None:
    topology, _, result = example()
    rule = next(
        r
        for r in result.addresses
        if result.addresses[r].endswith("shop_db_ingress_allow_tcp_5432")
    )
    base = next(r for r in result.desired if r.key == rule)
    prefix = base.key.rsplit("-", 1)[0]
    ranges = variant(
        base,
        f"{prefix}-aaaaaaaaaa",
        allowed=[{"IPProtocol": "tcp", "ports": ["80-81"]}],
    )
    pair = variant(
        base,
        f"{prefix}-bbbbbbbbbb",
        allowed=[{"IPProtocol": "tcp", "ports": ["80", "81"]}],
    )
    many = variant(
        base,
        f"{prefix}-cccccccccc",
        allowed=[{"IPProtocol": "tcp", "ports": [str(p) for p in range(1, 8)]}],
    )
    got = renderer.addresses([ranges, pair, many], topology)
    # Not the names render would give these bodies: the hash is added to tell them apart
    # (as for the parts of a rule split at 5,000 ranges).
    assert got == {
        ranges.key: "google_compute_firewall.shop_db_ingress_allow_tcp_80to81_aaaaaaaaaa",
        pair.key: "google_compute_firewall.shop_db_ingress_allow_tcp_80_81_bbbbbbbbbb",
        many.key: "google_compute_firewall.shop_db_ingress_allow_tcp_7_ports_cccccccccc",
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
    assert changed == ["outputs.tf", "segment_shop_db.tf"]
    for name in changed:
        diff = difflib.unified_diff(
            before.texts[name].splitlines(), after.texts[name].splitlines(), lineterm="", n=0
        )
        body = [d for d in diff if not d.startswith(("---", "+++", "@@"))]
        assert body and all(d.startswith("+") for d in body), "only additions expected"
        assert any("shop_db_ingress_allow_tcp_443" in d for d in body)
    assert {k: v for k, v in after.addresses.items() if k in before.addresses} == before.addresses


# --- against the compute stand-in ---


@pytest.fixture
def compute() -> Iterator[Gcp]:
    with FakeCompute() as fake:
        yield Gcp(fake, make_client(fake))


def connect(gcp: Gcp, topology: Topology) -> object:
    return configure(topology).session(firewalls_client=gcp.client, retry=FAST_RETRY)


def test_import_blocks_carry_the_ids_of_what_exists(compute: Gcp) -> None:
    topology = with_gcp(load_topology(EXAMPLE / "topology.yaml"))
    inventory = load_manifests([EXAMPLE / "cluster"])
    intent = compile_intent(topology, inventory)
    provider = configure(topology)
    conn = connect(compute, topology)
    apply_plan(
        provider, make_plan(provider, intent, session=conn).plan, conn, progress=lambda _: None
    )

    result = export(topology, intent, connect(compute, topology))
    parsed = check_files(result.texts)
    imports = dict(parsed.imports)
    assert len(imports) == len(parsed.imports), "one import block per address"
    assert sorted(imports) == sorted(parsed.resources), "every desired resource exists"
    # Each address's id, found from its `name` argument and the stand-in's selfLink.
    links = {fw["name"]: fw["selfLink"] for fw in compute.fake.firewalls(PROJECT)}
    expected = {
        address: links[attrs["name"].strip('"')].removeprefix(API_ROOT + "/")
        for address, attrs in parsed.resources.items()
    }
    assert imports == expected
    assert all(
        i.startswith(f"projects/{PROJECT}/global/firewalls/nsgsync-") for i in imports.values()
    )
    assert result.imports == {k: imports[a] for k, a in result.addresses.items()}
    assert list(result.changes) == []

    # `export json --import-existing` names the same ids, for the module's import blocks.
    doc = export_json(configure(topology), intent, session=connect(compute, topology))
    assert doc["existing"] == result.imports

    # After a policy change, what exists is imported and the new rule is created.
    intent2 = compile_intent(topology, extra_policy(inventory))
    again = export(topology, intent2, connect(compute, topology))
    parsed2 = Parsed.texts(again.texts)
    new = set(parsed2.resources) - set(dict(parsed2.imports))
    assert new == {"google_compute_firewall.shop_db_ingress_allow_tcp_443"}
    assert dict(parsed2.imports) == imports


def test_what_the_files_create_is_what_nsgsync_wants(compute: Gcp) -> None:
    # As `terraform apply` would: each resource's arguments sent as a Firewall. nsgsync then
    # owns every rule (name, marker, band) and wants nothing changed.
    topology, intent, result = example()
    parsed = Parsed.texts(result.texts)
    for _, attrs in parsed.of_type(FIREWALL):
        project, body = firewall_dict(attrs, parsed)
        compute.fake.seed_firewall(project, body)
    planned = make_plan(configure(topology), intent, session=connect(compute, topology))
    assert planned.plan.empty, [c.key for c in planned.plan.changes]
    imported = export(topology, intent, connect(compute, topology))
    assert sorted(imported.imports) == sorted(imported.addresses)


# --- the module (terraform/modules/gcp-firewall) ---


def test_the_module_sets_what_the_generated_code_sets() -> None:
    doc = hcl2.loads((MODULE / "main.tf").read_text())
    resources = {
        (rtype.strip('"'), name.strip('"')): attrs
        for block in doc["resource"]
        for rtype, named in block.items()
        for name, attrs in named.items()
    }
    assert list(resources) == [(FIREWALL, "this")]
    module = resources[(FIREWALL, "this")]
    assert module["for_each"] == "${local.firewalls}"
    dynamic = {unquote(k) for block in module.get("dynamic", []) for k in block}
    arguments = {k for k in module if not k.startswith("__")} - {"for_each", "dynamic", "lifecycle"}
    # Everything the renderer writes for some rule, the module writes from the export too.
    result = example()[2]
    generated = {
        k
        for _, attrs in Parsed.texts(result.texts).of_type(FIREWALL)
        for k in attrs
        if not k.startswith("__")
    }
    assert generated | {"target_service_accounts", "deny"} <= arguments | dynamic
    assert dynamic == {"allow", "deny"}
    variables = {
        unquote(name) if name.startswith('"') else name
        for block in hcl2.loads((MODULE / "variables.tf").read_text())["variable"]
        for name in block
        if not name.startswith("__")
    }
    assert variables == {"resources_file", "project", "network"}
    versions = hcl2.loads((MODULE / "versions.tf").read_text())["terraform"][0]
    google = versions["required_providers"][0]["google"]
    assert (google["source"], google["version"]) == ('"hashicorp/google"', '"~> 6.0"')


# --- options and the command line ---


def test_no_provider_block_keeps_the_variables() -> None:
    topology, intent, _ = example()
    result = export(topology, intent, provider_block=False)
    assert "provider.tf" not in result.texts
    parsed = check_files(result.texts)
    assert set(parsed.variables) == {"project", "network"}
    assert parsed.variables["project"]["default"] == f'"{PROJECT}"'
    assert parsed.variables["network"]["default"] == f'"{NETWORK}"'


def test_cli_exports_a_gcp_topology_through_the_entry_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (EXAMPLE / "topology.yaml").read_text()
    assert "provider: aws\n" in text
    topology_file = tmp_path / "topology.yaml"
    topology_file.write_text(text.replace("provider: aws\n", "provider: gcp\n"))
    out = tmp_path / "tf"
    args = ["-f", str(EXAMPLE / "cluster"), "--topology", str(topology_file), "--out", str(out)]
    assert main(["export", "terraform", *args]) == 0
    captured = capsys.readouterr()
    topology = load_topology(topology_file)
    intent = compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))
    expected = export(topology, intent).texts
    assert captured.out.split() == [str(out / n) for n in sorted(expected)]
    assert {p.name: p.read_text() for p in out.glob("*.tf")} == expected


def test_the_entry_point_loads_the_gcp_renderer() -> None:
    assert load_renderer("gcp") is renderer
    assert isinstance(renderer, TerraformRenderer)
    assert renderer.provider == "gcp"
