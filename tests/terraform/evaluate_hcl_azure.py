"""Generated Azure Terraform, read back with python-hcl2, as tests.azure.evaluate.Nsgs.

Independent of the renderer: it reads the .tf text only, resolves the references between
NSGs, rules and associations itself, turns each `azurerm_network_security_rule` into the
ARM properties `terraform apply` would write, adds Azure's six default rules (from the
recorded ARM reply, as the ARM stand-in does), and puts each NSG on the subnets its
associations name. The subnets' address ranges come from the test, as the stand-in's
seeded subnets do in tests/azure. Checks along the way what the provider or ARM would
refuse: a singular and a plural argument of one pair together, neither of them, a
priority outside 100-4096 or used twice in one direction of an NSG.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import hcl2

from tests.azure.evaluate import Nsgs, Subnet
from tests.fakes.azure_arm import recording
from tests.oracle import Addrs
from tests.terraform.evaluate_hcl import Parsed, reference, unquote

NSG = "azurerm_network_security_group"
RULE = "azurerm_network_security_rule"
ASSOCIATION = "azurerm_subnet_network_security_group_association"
# azurerm argument -> ARM property, per side: exactly one of each pair.
PAIRS = {
    ("source_port_range", "source_port_ranges"): ("sourcePortRange", "sourcePortRanges"),
    ("destination_port_range", "destination_port_ranges"): (
        "destinationPortRange",
        "destinationPortRanges",
    ),
    ("source_address_prefix", "source_address_prefixes"): (
        "sourceAddressPrefix",
        "sourceAddressPrefixes",
    ),
    ("destination_address_prefix", "destination_address_prefixes"): (
        "destinationAddressPrefix",
        "destinationAddressPrefixes",
    ),
}
SCALARS = {"priority", "direction", "access", "protocol"}


@cache
def loads(text: str) -> dict[str, Any]:
    """python-hcl2's reading of one file, once: it is by far the slowest part of the tests."""
    doc: dict[str, Any] = hcl2.loads(text)
    return doc


def parse(texts: Mapping[str, str]) -> Parsed:
    """Parsed.texts, from the cached readings."""
    parsed = Parsed({}, [], {}, {}, {}, [])
    for name, text in sorted(texts.items()):
        parsed._add(name, loads(text))
    return parsed


def data_sources(texts: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Every `data` block, by address (`data.TYPE.NAME`); Parsed keeps only their kind."""
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(texts):
        for block in loads(texts[name]).get("data", []):
            for dtype, named in _labelled(block):
                for dname, attrs in _labelled(named):
                    address = f"data.{dtype}.{dname}"
                    assert address not in out, f"{address} twice ({name})"
                    out[address] = attrs
    return out


def _labelled(block: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for label, inner in block.items():
        if not label.startswith("__"):
            yield unquote(label), inner


def _attribute_of(text: Any, attribute: str) -> str:
    """`${TYPE.NAME.attribute}` -> TYPE.NAME (data.TYPE.NAME for a data source)."""
    ref = reference(text)
    assert ref.endswith(f".{attribute}"), ref
    return ref[: -len(attribute) - 1]


def rule_properties(address: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """One rule resource as the properties of an ARM SecurityRule."""
    props: dict[str, Any] = {
        "priority": int(attrs["priority"]),
        "direction": unquote(attrs["direction"]),
        "access": unquote(attrs["access"]),
        "protocol": unquote(attrs["protocol"]),
    }
    for (single, plural), (arm_single, arm_plural) in PAIRS.items():
        given = [a for a in (single, plural) if a in attrs]
        assert len(given) == 1, f"{address}: exactly one of {single}, {plural}; has {given}"
        if single in attrs:
            props[arm_single] = unquote(attrs[single])
        else:
            values = [unquote(v) for v in attrs[plural]]
            assert len(values) >= 1 and len(set(values)) == len(values), (address, values)
            props[arm_plural] = values
    if "description" in attrs:
        text = unquote(attrs["description"])
        assert len(text) <= 140, f"{address}: Azure takes 140 characters of description"
        props["description"] = text
    assert 100 <= props["priority"] <= 4096, (address, props["priority"])
    assert props["direction"] in ("Inbound", "Outbound"), address
    assert props["access"] in ("Allow", "Deny"), address
    assert props["protocol"] in ("Tcp", "Udp", "Icmp", "Esp", "Ah", "*"), address
    return props


def default_rules() -> list[dict[str, Any]]:
    """Azure's six default rules, as the recorded NSG reply lists them."""
    body = recording("nsg")["response"]["body"]
    return [
        {
            "name": r["name"],
            **{k: v for k, v in r["properties"].items() if k != "provisioningState"},
        }
        for r in body["properties"]["defaultSecurityRules"]
    ]


@dataclass(frozen=True)
class Exported:
    """What the files declare: NSG address -> name, its rules, and subnet -> NSG address."""

    nsg_names: dict[str, str]
    created: frozenset[str]  # addresses of NSGs the files create (not data sources)
    rules: dict[str, dict[str, dict[str, Any]]]  # NSG address -> rule name -> properties
    rule_addresses: dict[tuple[str, str], str]  # (NSG address, rule name) -> rule address
    associations: dict[str, str]  # subnet id -> NSG address
    association_addresses: dict[str, str]  # subnet id -> association address


def exported(texts: Mapping[str, str]) -> Exported:
    parsed = parse(texts)
    nsg_names = {a: unquote(attrs["name"]) for a, attrs in parsed.of_type(NSG)}
    created = frozenset(nsg_names)
    for address, attrs in data_sources(texts).items():
        assert address.startswith(f"data.{NSG}."), f"unexpected data source {address}"
        nsg_names[address] = unquote(attrs["name"])
    assert len({n.lower() for n in nsg_names.values()}) == len(nsg_names), "NSG names repeat"
    rules: dict[str, dict[str, dict[str, Any]]] = {a: {} for a in nsg_names}
    rule_addresses: dict[tuple[str, str], str] = {}
    for address, attrs in parsed.of_type(RULE):
        nsg = _attribute_of(attrs["network_security_group_name"], "name")
        assert nsg in nsg_names, f"{address}: no NSG {nsg}"
        name = unquote(attrs["name"])
        assert name.lower() not in {n.lower() for n in rules[nsg]}, f"{address}: {name} twice"
        rules[nsg][name] = rule_properties(address, attrs)
        rule_addresses[(nsg, name)] = address
    for nsg, named in rules.items():
        slots = [(p["direction"], p["priority"]) for p in named.values()]
        assert len(set(slots)) == len(slots), f"{nsg}: a priority is used twice in a direction"
    associations: dict[str, str] = {}
    association_addresses: dict[str, str] = {}
    for address, attrs in parsed.of_type(ASSOCIATION):
        subnet = unquote(attrs["subnet_id"])
        nsg = _attribute_of(attrs["network_security_group_id"], "id")
        assert nsg in nsg_names, f"{address}: no NSG {nsg}"
        assert subnet.lower() not in {s.lower() for s in associations}, "a subnet takes one NSG"
        associations[subnet] = nsg
        association_addresses[subnet] = address
    return Exported(nsg_names, created, rules, rule_addresses, associations, association_addresses)


def nsgs_from_hcl(
    texts: Mapping[str, str], subnets: Mapping[str, Sequence[str]], vnet_cidrs: Sequence[str]
) -> Nsgs:
    """What the files would make of the subnets (subnet id -> address prefixes), as the
    evaluator's Nsgs. Rules of an existing NSG that nsgsync does not own are unknown here:
    the NSG is evaluated with nsgsync's rules and Azure's defaults."""
    found = exported(texts)
    unknown = set(found.associations) - set(subnets)
    assert not unknown, f"associations of subnets the test does not know: {sorted(unknown)}"
    defaults = default_rules()
    out = []
    for subnet_id, prefixes in subnets.items():
        nsg = found.associations.get(subnet_id)
        rules: list[dict[str, Any]] = []
        if nsg is not None:
            rules = [{"name": n, **p} for n, p in found.rules[nsg].items()] + defaults
        name = subnet_id.rsplit("/", 1)[-1]
        out.append(Subnet(name, Addrs.of(prefixes), tuple(rules), nsg is not None))
    return Nsgs(tuple(out), Addrs.of(vnet_cidrs))
