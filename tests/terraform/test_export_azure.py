"""`nsgsync export terraform` for Azure: goldens, format, meaning, and import ids against the
ARM stand-in (the real NetworkManagementClient, as tests/azure uses it)."""

from __future__ import annotations

import difflib
import json
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

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
from nsgsync_azure.config import SUBNET_ID
from nsgsync_azure.terraform import renderer
from tests.azure.conftest import RG, SUB, VNET_CIDRS, Arm
from tests.azure.evaluate import probe_addresses
from tests.azure.test_azure_goldens import with_fixed_azure
from tests.fakes.azure_arm import FakeArm, make_client
from tests.terraform.evaluate_hcl import Parsed, reference, unquote
from tests.terraform.evaluate_hcl_azure import (
    ASSOCIATION,
    NSG,
    PAIRS,
    RULE,
    data_sources,
    exported,
    loads,
    nsgs_from_hcl,
    parse,
)
from tests.terraform.fmtcheck import problems
from tests.test_goldens import check_golden_folder

ROOT = Path(__file__).parent.parent.parent
CASES = sorted(p for p in (ROOT / "tests/cases").iterdir() if p.is_dir())
EXAMPLE = ROOT / "config/example"
PORTS = [("TCP", 80), ("TCP", 5432), ("TCP", 8080), ("UDP", 53), ("TCP", 9090), ("SCTP", 7)]
GOLDEN = "terraform-azure"
# with_fixed_azure's address space (tests/azure/test_azure_goldens.py)
FIXED_VNET = ["10.0.0.0/8"]


@pytest.fixture
def arm() -> Arm:
    fake = FakeArm()
    return Arm(fake, make_client(fake, SUB))


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


def segment_subnets(topology: Topology) -> dict[str, list[str]]:
    """Each segment's subnet id -> the CIDRs of the segments on it: the subnet holds
    exactly its segments' pods."""
    out: dict[str, list[str]] = {}
    for seg in topology.segments:
        subnet = seg.provider_settings("azure").get("subnetId")
        if subnet:
            out.setdefault(subnet, []).extend(seg.cidrs)
    return out


@cache
def case_export(case: Path) -> tuple[Topology, Intent, TerraformExport]:
    topology = with_fixed_azure(load_topology(case / "topology.yaml"))
    intent = compile_intent(topology, load_manifests([case / "manifests"]))
    return topology, intent, export(topology, intent)


@cache
def example() -> tuple[Topology, Intent, TerraformExport]:
    topology = with_fixed_azure(load_topology(EXAMPLE / "topology.yaml"))
    intent = compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))
    return topology, intent, export(topology, intent)


# --- goldens ---


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_terraform_golden(case: Path, update_goldens: bool) -> None:
    check_golden_folder(case / GOLDEN, case_export(case)[2].texts, update_goldens)


# --- every file parses, is formatted, and refers only to what exists ---

_TRAVERSAL = re.compile(
    r"\b(var|local|data\.azurerm_[a-z0-9_]+|azurerm_[a-z0-9_]+)\.([A-Za-z0-9_]+)"
)


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
    parsed = parse(texts)  # every file, with python-hcl2
    data = data_sources(texts)
    # inline rules and rule resources on one NSG overwrite each other
    assert not any("security_rule" in attrs for _, attrs in parsed.of_type(NSG))
    assert set(parsed.other) <= {"terraform", "provider", "data"}
    assert {a.split(".")[0] for a in parsed.resources} <= {NSG, RULE, ASSOCIATION}
    everything = [*parsed.resources.values(), *parsed.outputs.values(), *data.values()]
    for kind, name in references(everything):
        if kind == "var":
            assert name in parsed.variables, f"var.{name} is not declared"
        elif kind == "local":
            assert name in parsed.locals, f"local.{name} is not declared"
        elif kind.startswith("data."):
            assert f"{kind}.{name}" in data, f"{kind}.{name} does not exist"
        else:
            assert f"{kind}.{name}" in parsed.resources, f"{kind}.{name} does not exist"
    for address in [*parsed.resources, *data]:
        name = address.rsplit(".", 1)[1]
        assert is_identifier(name) and name[0].isalpha(), address
    for address, attrs in parsed.of_type(RULE):
        for pair in PAIRS:
            assert len(set(pair) & set(attrs)) == 1, (address, pair)
        assert attrs["resource_group_name"] == "${var.resource_group_name}", address
    for address, attrs in parsed.of_type(ASSOCIATION):
        assert SUBNET_ID.match(unquote(attrs["subnet_id"])), address
    exported(texts)  # the cross-resource checks: references, priorities, names
    return parsed


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_generated_files_parse_are_formatted_and_consistent(case: Path) -> None:
    _, _, result = case_export(case)
    parsed = check_files(result.texts)
    assert "imports.tf" not in result.texts
    assert len(parsed.resources) == len(result.desired)
    assert sorted(parsed.resources) == sorted(result.addresses.values())


def test_versions_and_provider() -> None:
    _, _, result = example()
    versions = loads(result.texts["versions.tf"])["terraform"][0]
    providers = versions["required_providers"][0]["azurerm"]
    assert (providers["source"], providers["version"]) == ('"hashicorp/azurerm"', '"~> 4.0"')
    provider = loads(result.texts["provider.tf"])["provider"][0]['"azurerm"']
    # azurerm 4 needs a subscription and a features block
    assert provider["subscription_id"] == "${var.subscription_id}"
    assert provider["features"] == [{"__is_block__": True}]
    variables = {
        name.strip('"'): attrs
        for block in loads(result.texts["variables.tf"])["variable"]
        for name, attrs in block.items()
    }
    assert variables["resource_group_name"]["default"] == '"rg-nsgsync"'
    assert variables["location"]["default"] == '"westeurope"'
    assert variables["subscription_id"]["default"] == '"00000000-0000-0000-0000-000000000000"'
    without = export(*example()[:2], provider_block=False).texts
    assert "provider.tf" not in without
    assert 'variable "subscription_id"' not in without["variables.tf"]


def test_terraform_fmt_check_agrees_where_terraform_exists(tmp_path: Path) -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary on PATH (tests/terraform/fmtcheck.py checks the rules)")
    for name, text in example()[2].texts.items():
        (tmp_path / name).write_text(text)
    for folder in [*(c / GOLDEN for c in CASES), ROOT / "terraform/modules/azure-nsg", tmp_path]:
        done = subprocess.run(
            [terraform, "fmt", "-check", "-recursive", "-diff", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


# --- the files mean what the Intent means ---


def assert_hcl_matches_intent(
    texts: Mapping[str, str],
    topology: Topology,
    intent: Intent,
    *,
    subnets: Mapping[str, Sequence[str]] | None = None,
    vnet: Sequence[str] = FIXED_VNET,
) -> None:
    nsgs = nsgs_from_hcl(texts, subnets or segment_subnets(topology), vnet)
    addresses = probe_addresses(topology)
    wrong = [
        (src, dst, proto, port)
        for src in addresses
        for dst in addresses
        for proto, port in PORTS
        if src != dst and nsgs.allows(src, dst, proto, port) != intent.allows(src, dst, proto, port)
    ]
    assert wrong == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_parsed_rules_allow_exactly_what_the_intent_allows(case: Path) -> None:
    topology, intent, result = case_export(case)
    assert_hcl_matches_intent(result.texts, topology, intent)


def test_example_allows_exactly_what_the_intent_allows() -> None:
    topology, intent, result = example()
    check_files(result.texts)
    assert_hcl_matches_intent(result.texts, topology, intent)


def test_the_evaluation_notices_a_missing_deny_rule() -> None:
    topology, intent, result = example()
    texts = dict(result.texts)
    start = texts["nsg_shop_db.tf"].index(
        'resource "azurerm_network_security_rule" "shop_db_in_default"'
    )
    end = texts["nsg_shop_db.tf"].index("\n}\n", start) + 3
    texts["nsg_shop_db.tf"] = texts["nsg_shop_db.tf"][:start] + texts["nsg_shop_db.tf"][end:]
    with pytest.raises(AssertionError):
        assert_hcl_matches_intent(texts, topology, intent)


def shared_subnet(topology: Topology) -> tuple[Topology, dict[str, list[str]]]:
    """The shop segments on one subnet, 10.0.0.0/21, which also holds unsegmented pods."""
    first = next(iter(segment_subnets(topology)))
    shop = first.rsplit("/", 1)[0] + "/shop"
    segments = [
        s.model_copy(update={"azure": {"subnetId": shop}}) if s.name.startswith("shop-") else s
        for s in topology.segments
    ]
    subnets = {k: v for k, v in segment_subnets(topology).items() if "/subnets/shop-" not in k}
    return topology.model_copy(update={"segments": segments}), {**subnets, shop: ["10.0.0.0/21"]}


def test_segments_sharing_a_subnet_share_one_nsg_file() -> None:
    topology, subnets = shared_subnet(example()[0])
    intent = compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))
    result = export(topology, intent)
    parsed = check_files(result.texts)
    assert sorted(a for a, _ in parsed.of_type(NSG)) == [
        f"{NSG}.monitoring",
        f"{NSG}.rest",
        f"{NSG}.shop_frontend",
    ]
    shop = loads(result.texts["nsg_shop_frontend.tf"])
    names = {n.strip('"') for block in shop["resource"] for n in block.get(f'"{RULE}"', {})}
    assert {"shop_frontend_in_unsegmented", "shop_db_in_default", "shop_db_in_tcp_5432"} <= names
    assert_hcl_matches_intent(result.texts, topology, intent, subnets=subnets)


# --- addresses ---


def test_addresses_are_readable_unique_and_derived_from_the_key() -> None:
    topology, _, result = example()
    addresses = result.addresses
    nsg = "nsgsync-demo-eu-1-shop-db"
    assert addresses[f"nsg/{nsg}"] == f"{NSG}.shop_db"
    by_name = {r.body.get("name"): r.key for r in result.desired if r.key.startswith(f"sr/{nsg}/")}
    assert addresses[by_name["nsgsync-shop-db-in-default"]] == f"{RULE}.shop_db_in_default"
    assert addresses[by_name["nsgsync-in-unsegmented"]] == f"{RULE}.shop_db_in_unsegmented"
    tcp = [k for k in by_name.values() if addresses[k] == f"{RULE}.shop_db_in_tcp_5432"]
    assert len(tcp) == 1
    assert addresses["assoc/rg-nsgsync/vnet-seeds/shop-db"] == f"{ASSOCIATION}.vnet_seeds_shop_db"
    assert len(set(addresses.values())) == len(addresses)
    # each resource's address depends on its own key only
    some = [r for r in result.desired if r.segment == "shop-db"]
    assert renderer.addresses(some, topology) == {r.key: addresses[r.key] for r in some}


def test_port_lists_ranges_and_chunks_get_distinct_names() -> None:
    topology, _, result = example()
    rule = next(r for r in result.desired if r.key.endswith("nsgsync-shop-db-in-default"))

    def variant(name: str, ports: list[str]) -> Resource:
        props = {k: v for k, v in rule.body["properties"].items() if "PortRange" not in k}
        props["protocol"] = "Tcp"
        props["sourcePortRange"] = "*"
        if len(ports) == 1:
            props["destinationPortRange"] = ports[0]
        else:
            props["destinationPortRanges"] = ports
        body = {"name": name, "properties": props}
        return replace(rule, ident=Ident("sr", ("nsgsync-demo-eu-1-shop-db", name)), body=body)

    got = renderer.addresses(
        [
            variant("nsgsync-shop-db-in-0123456789", ["80-443"]),
            variant("nsgsync-shop-db-in-abcdef0123", ["80", "443"]),
            variant("nsgsync-shop-db-in-0000000000", ["1", "2", "3", "4"]),
            # the second part of a rule whose peers exceed 4,000 prefixes
            variant("nsgsync-shop-db-in-0123456789-1", ["80-443"]),
        ],
        topology,
    )
    assert sorted(got.values()) == [
        f"{RULE}.shop_db_in_tcp_80_443",
        f"{RULE}.shop_db_in_tcp_80_443_part1",
        f"{RULE}.shop_db_in_tcp_80_and_443",
        f"{RULE}.shop_db_in_tcp_ports_0000000000",
    ]


def test_addresses_that_sanitise_alike_are_numbered() -> None:
    topology, _, result = example()
    nsg = next(r for r in result.desired if r.key == "nsg/nsgsync-demo-eu-1-shop-db")
    twin = replace(nsg, ident=Ident("nsg", ("nsgsync-demo-eu-1-shop-db-",)), segment="shop-db-")
    assert renderer.addresses([nsg, twin], topology) == {
        "nsg/nsgsync-demo-eu-1-shop-db": f"{NSG}.shop_db",
        "nsg/nsgsync-demo-eu-1-shop-db-": f"{NSG}.shop_db_2",
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
    assert changed == ["nsg_shop_db.tf"]
    diff = list(
        difflib.unified_diff(
            before.texts["nsg_shop_db.tf"].splitlines(),
            after.texts["nsg_shop_db.tf"].splitlines(),
            lineterm="",
            n=0,
        )
    )
    body = [d for d in diff if not d.startswith(("---", "+++", "@@"))]
    assert body and all(d.startswith("+") for d in body), "only additions expected"
    assert any(f'"{RULE}" "shop_db_in_tcp_443"' in d for d in body)
    assert {k: v for k, v in after.addresses.items() if k in before.addresses} == before.addresses


# --- import blocks against the ARM stand-in ---


def apply(arm: Arm, topology: Topology, intent: Intent) -> None:
    provider = configure(topology)
    conn = provider.session(network_client=arm.client)
    planned = make_plan(provider, intent, session=conn).plan
    apply_plan(provider, planned, conn, progress=lambda _: None)


def connect(arm: Arm, topology: Topology) -> object:
    return configure(topology).session(network_client=arm.client)


def cloud_ids(arm: Arm, texts: Mapping[str, str]) -> dict[str, str]:
    """Each resource address's ARM id, found through the SDK from the .tf attributes alone."""
    found = exported(texts)
    client = arm.client
    nsgs = {str(n.name).lower(): n for n in client.network_security_groups.list(RG)}
    out: dict[str, str] = {}
    for nsg_address, name in found.nsg_names.items():
        nsg = nsgs[name.lower()]
        if nsg_address in found.created:
            out[nsg_address] = str(nsg.id)
        rules = {str(r.name).lower(): str(r.id) for r in client.security_rules.list(RG, name)}
        for rule_name in found.rules[nsg_address]:
            out[found.rule_addresses[(nsg_address, rule_name)]] = rules[rule_name.lower()]
    for subnet_id, nsg_address in found.associations.items():
        match = SUBNET_ID.match(subnet_id)
        assert match is not None
        subnet = client.subnets.get(match["rg"], match["vnet"], match["subnet"])
        # the subnet is on the NSG the association names; the association's id is the subnet's
        assert subnet.network_security_group is not None
        assert (
            str(subnet.network_security_group.id).lower()
            == str(nsgs[found.nsg_names[nsg_address].lower()].id).lower()
        )
        out[found.association_addresses[subnet_id]] = str(subnet.id)
    return out


def assert_import_ids(arm: Arm, result: TerraformExport) -> dict[str, str]:
    parsed = check_files(result.texts)
    imports = dict(parsed.imports)
    assert len(imports) == len(parsed.imports), "one import block per address"
    assert imports == cloud_ids(arm, result.texts)
    # and they are what the adapter's read() reported as each resource's cloud id
    assert imports == {result.addresses[k]: v for k, v in result.imports.items()}
    for address, import_id in imports.items():
        rtype, _ = address.split(".")
        if rtype == ASSOCIATION:
            assert SUBNET_ID.match(import_id), import_id
        elif rtype == RULE:
            assert re.search(r"/networkSecurityGroups/[^/]+/securityRules/[^/]+$", import_id)
        else:
            assert re.search(r"/networkSecurityGroups/[^/]+$", import_id)
        assert import_id.startswith(f"/subscriptions/{SUB}/resourceGroups/{RG}/"), import_id
    return imports


def test_import_blocks_carry_the_arm_ids_of_what_exists(arm: Arm) -> None:
    topology = arm.with_azure(load_topology(EXAMPLE / "topology.yaml"))
    inventory = load_manifests([EXAMPLE / "cluster"])
    intent = compile_intent(topology, inventory)
    assert "imports.tf" not in export(topology, intent, connect(arm, topology)).texts
    apply(arm, topology, intent)

    result = export(topology, intent, connect(arm, topology))
    imports = assert_import_ids(arm, result)
    assert sorted(imports) == sorted(parse(result.texts).resources), "all exist"
    assert list(result.changes) == []
    subnets = {arm.subnet_id(s.name): [s.cidrs[0]] for s in topology.segments}
    assert_hcl_matches_intent(result.texts, topology, intent, subnets=subnets, vnet=VNET_CIDRS)

    # After a policy change, what exists is imported and the new rule is created.
    again = export(
        topology, compile_intent(topology, extra_policy(inventory)), connect(arm, topology)
    )
    parsed = parse(again.texts)
    assert set(parsed.resources) - set(dict(parsed.imports)) == {f"{RULE}.shop_db_in_tcp_443"}
    assert dict(parsed.imports) == imports


def test_an_existing_nsg_is_a_data_source_and_only_its_rules_are_imported(arm: Arm) -> None:
    nsg = "team-db-nsg"
    arm.fake.add_nsg(SUB, RG, nsg, tags={"owner": "team-db"})
    topology = arm.with_azure(load_topology(EXAMPLE / "topology.yaml"))
    segments = [
        s.model_copy(update={"azure": {**s.provider_settings("azure"), "nsgName": nsg}})
        if s.name == "shop-db"
        else s
        for s in topology.segments
    ]
    topology = topology.model_copy(update={"segments": segments})
    intent = compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))
    offline = export(topology, intent)
    data = data_sources(offline.texts)
    assert data == {
        f"data.{NSG}.shop_db": {
            "name": f'"{nsg}"',
            "resource_group_name": "${var.resource_group_name}",
            "__is_block__": True,
        }
    }
    parsed = check_files(offline.texts)
    assert f"{NSG}.shop_db" not in parsed.resources
    db = [a for a, attrs in parsed.of_type(RULE) if "data." in attrs["network_security_group_name"]]
    assert db and all(a.startswith(f"{RULE}.shop_db_") for a in db)
    # an NSG nsgsync does not own gets no catch-all for addresses outside the segments
    assert f"{RULE}.shop_db_in_unsegmented" not in parsed.resources
    assoc = parsed.resources[f"{ASSOCIATION}.vnet_pods_shop_db"]
    assert assoc["network_security_group_id"] == f"${{data.{NSG}.shop_db.id}}"

    apply(arm, topology, intent)
    result = export(topology, intent, connect(arm, topology))
    imports = assert_import_ids(arm, result)
    assert sorted(imports) == sorted(parsed.resources)
    assert not any(i.endswith(f"/networkSecurityGroups/{nsg}") for i in imports.values())
    subnets = {arm.subnet_id(s.name): [s.cidrs[0]] for s in topology.segments}
    assert_hcl_matches_intent(result.texts, topology, intent, subnets=subnets, vnet=VNET_CIDRS)


# --- the command line and the entry point ---


def test_the_installed_entry_point_is_this_renderer() -> None:
    assert load_renderer("azure") is renderer
    assert isinstance(renderer, TerraformRenderer)


def test_cli_exports_an_azure_topology(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topology, _, result = example()
    doc = yaml.safe_load((EXAMPLE / "topology.yaml").read_text())
    doc["provider"] = "azure"
    doc["azure"] = topology.provider_block("azure")
    for seg in doc["segments"]:
        seg["azure"] = topology.segment(seg["name"]).provider_settings("azure")
    (tmp_path / "topology.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "tf"
    args = ["-f", str(EXAMPLE / "cluster"), "--topology", str(tmp_path / "topology.yaml")]
    assert main(["export", "terraform", *args, "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out / n) for n in sorted(result.texts)]
    for name, text in result.texts.items():
        assert (out / name).read_text() == text


# --- the reusable module (terraform/modules/azure-nsg) ---

MODULE = ROOT / "terraform/modules/azure-nsg"


def test_the_module_keys_everything_by_the_nsgsync_keys() -> None:
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
        text = (MODULE / name).read_text()
        assert problems(text) == [], name
    doc = loads((MODULE / "main.tf").read_text())
    resources = {
        rtype.strip('"'): attrs
        for block in doc["resource"]
        for rtype, named in block.items()
        for attrs in named.values()
    }
    assert resources[NSG]["for_each"] == "${local.nsgs}"
    assert resources[RULE]["for_each"] == "${local.rules}"
    assert resources[ASSOCIATION]["for_each"] == "${local.associations}"
    assert "security_rule" not in resources[NSG]
    providers = loads((MODULE / "versions.tf").read_text())["terraform"][0]["required_providers"]
    assert providers[0]["azurerm"]["version"] == '"~> 4.0"'


def module_probe(main_tf: str) -> str:
    """The module's locals, with each rule and association resource turned into an output
    of its arguments over the same for_each: what Terraform evaluates without the azurerm
    provider. An NSG the module creates stands for itself as `created:<name>`."""
    out = [main_tf[main_tf.index("locals {") : main_tf.index("\nresource ")]]
    out.append(
        "locals {\n  created = { for k, n in local.nsgs : k => "
        '{ name = "created:${n.body.name}", id = "created:${n.body.name}" } }\n}\n'
    )
    for rtype, source in ((RULE, "rules"), (ASSOCIATION, "associations")):
        start = main_tf.index(f'resource "{rtype}" "this" {{')
        body = main_tf[main_tf.index("\n", start) + 1 : main_tf.index("\n}\n", start)]
        body = "\n".join(line for line in body.splitlines() if "for_each" not in line)
        body = body.replace("each.value", "v").replace("each.key", "k")
        body = body.replace(f"{NSG}.this[", "local.created[")
        out.append(f'output "{source}" {{\n  value = {{ for k, v in local.{source} : k => {{\n')
        out.append(body + "\n  } }\n}\n")
    return "\n".join(out)


def test_the_module_gives_the_arguments_of_the_generated_code(tmp_path: Path) -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary on PATH")
    base = example()[0]
    # shop-db's rules in an existing NSG: the module finds it by name, as the code's data source
    segments = [
        s.model_copy(update={"azure": {**s.provider_settings("azure"), "nsgName": "Team-DB-NSG"}})
        if s.name == "shop-db"
        else s
        for s in base.segments
    ]
    topology = base.model_copy(update={"segments": segments})
    intent = compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))
    (tmp_path / "nsgsync.json").write_text(json.dumps(export_json(configure(topology), intent)))
    variables = 'variable "resources_file" {\n  default = "nsgsync.json"\n}\n'
    variables += 'variable "resource_group_name" {\n  default = "rg-nsgsync"\n}\n'
    (tmp_path / "main.tf").write_text(variables + module_probe((MODULE / "main.tf").read_text()))
    for argv in (["init", "-input=false"], ["apply", "-auto-approve", "-input=false"]):
        done = subprocess.run(
            [terraform, *argv, "-no-color"], cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run(
        [terraform, "output", "-json"], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    outputs = {k: v["value"] for k, v in json.loads(done.stdout).items()}

    result = export(topology, intent)
    parsed = parse(result.texts)
    names = exported(result.texts).nsg_names

    def resolve(value: Any) -> Any:
        if isinstance(value, int):
            return value
        if isinstance(value, list):
            return [unquote(v) for v in value]
        if not value.startswith("${"):
            return unquote(value)
        ref, attribute = reference(value).rsplit(".", 1)
        if ref == "var":
            assert attribute == "resource_group_name"
            return "rg-nsgsync"
        if not ref.startswith("data."):
            return f"created:{names[ref]}"
        # an existing NSG: the module takes its id from the export, its name from there too
        return names[ref] if attribute == "name" else f"{arm_nsg_id(topology)}/{names[ref]}"

    def generated(key: str) -> dict[str, Any]:
        attrs = parsed.resources[result.addresses[key]]
        return {k: resolve(v) for k, v in attrs.items() if not k.startswith("__")}

    for source in ("rules", "associations"):
        got = {
            k: {a: v for a, v in args.items() if v is not None}
            for k, args in outputs[source].items()
        }
        assert got == {k: generated(k) for k in got}
    wanted = {r.key for r in result.desired if r.type != "network-security-group"}
    assert set(outputs["rules"]) | set(outputs["associations"]) == wanted


def arm_nsg_id(topology: Topology) -> str:
    azure = topology.provider_block("azure")
    return (
        f"/subscriptions/{azure['subscriptionId']}/resourceGroups/{azure['resourceGroup']}"
        "/providers/Microsoft.Network/networkSecurityGroups"
    )
