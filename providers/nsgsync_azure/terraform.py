"""The Azure renderer for `nsgsync export terraform` (entry point `nsgsync.terraform`: azure).

Per NSG nsgsync writes into, one file: the NSG, one `azurerm_network_security_rule` per
desired rule and one `azurerm_subnet_network_security_group_association` per subnet the
NSG is put on.

- An NSG nsgsync creates is an `azurerm_network_security_group` resource *without*
  `security_rule` blocks. That argument is optional and computed (config mode "attr"): left
  out, the NSG resource leaves the rules alone, and the rule resources own them. Inline
  rules and rule resources on one NSG overwrite each other (the provider documents the
  conflict), and `security_rule = []` would delete every rule on each apply.
- An NSG the topology names with `azure.nsgName` exists already and is not nsgsync's: it is
  a `data "azurerm_network_security_group"`, so Terraform reads it and never creates,
  retags or destroys it; only nsgsync's rules in it are resources.
- A rule sets exactly one of each singular/plural pair (`source_address_prefix` or
  `source_address_prefixes`, the same for the destination and for the port ranges): the
  provider declares them ExactlyOneOf/ConflictsWith. Which one follows the ARM body
  render.py builds, one value singular and more plural, which is also what ARM reports back.
- Priorities are the ones nsgsync's offline assignment gives (stable per key, in the
  topology's priority band), so the export needs no cloud access to be complete.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nsgsync.model import Topology
from nsgsync.plan import Ident, Resource
from nsgsync.terraform import (
    DEFAULT_OPTIONS,
    ExportOptions,
    header,
    identifier,
    import_block,
    unique_address,
    versions_file,
)
from nsgsync.terraform.hcl import (
    Attribute,
    BlankLine,
    Block,
    BodyItem,
    Call,
    Comment,
    Expression,
    ListExpr,
    Number,
    ObjectExpr,
    Reference,
    String,
)
from nsgsync_azure.config import SUBNET_ID, Placement, Settings, load
from nsgsync_azure.render import ASSOCIATION, NSG, RULE

NSG_TYPE = "azurerm_network_security_group"
RULE_TYPE = "azurerm_network_security_rule"
ASSOCIATION_TYPE = "azurerm_subnet_network_security_group_association"

# Import blocks need Terraform 1.5. Provider 4.x: the resources and arguments used here are
# unchanged since 3.x, but 4.0 makes `subscription_id` a required provider setting.
AZURERM_PROVIDER_VERSION = "~> 4.0"

# ARM property -> azurerm argument, in the order they are written. Each pair is singular
# then plural; the body holds at most one of them.
_PAIRS = (
    ("sourcePortRange", "source_port_range", "sourcePortRanges", "source_port_ranges"),
    (
        "destinationPortRange",
        "destination_port_range",
        "destinationPortRanges",
        "destination_port_ranges",
    ),
    (
        "sourceAddressPrefix",
        "source_address_prefix",
        "sourceAddressPrefixes",
        "source_address_prefixes",
    ),
    (
        "destinationAddressPrefix",
        "destination_address_prefix",
        "destinationAddressPrefixes",
        "destination_address_prefixes",
    ),
)
# Never produced by render.py; refused rather than dropped, so that a rule is never
# exported wider than nsgsync would apply it.
_UNSUPPORTED = ("sourceApplicationSecurityGroups", "destinationApplicationSecurityGroups")

# The rule names render.py gives: nsgsync-<segment>-<in|out>-<default|hash>[-<part>], and
# nsgsync-<in|out>-unsegmented for an NSG's catch-all.
_RULE_NAME = re.compile(
    r"^nsgsync-(?:(?P<unsegmented>in|out)-unsegmented"
    r"|.+-(?:in|out)-(?:(?P<default>default)|(?P<ident>[0-9a-f]{10})(?:-(?P<part>\d+))?))$"
)
_SHORT = {"Inbound": "in", "Outbound": "out"}
_PROTOCOL_NAMES = {"*": "all"}
# A rule with more destination ports than this is named by its hash, not its ports.
_NAMED_PORTS = 3
_COMMENT_WIDTH = 96


def _ports(props: Mapping[str, Any]) -> list[str]:
    if "destinationPortRange" in props:
        return [str(props["destinationPortRange"])]
    return [str(p) for p in props.get("destinationPortRanges") or []]


def _rule_name(rule: Resource) -> str:
    """<segment>_<in|out>_<protocol>[_<ports>][_part<n>], <segment>_<in|out>_default, or
    <segment>_<in|out>_unsegmented for the catch-all of the NSG named after <segment>.

    The rule's name in the key holds a hash of its protocol and ports, so protocol and
    ports are as stable as the key: the address changes only when the rule does.
    """
    props = rule.body["properties"]
    segment = rule.segment or rule.ident.parts[0]
    direction = _SHORT.get(str(props["direction"]), str(props["direction"]))
    found = _RULE_NAME.match(str(rule.body["name"]).lower())
    if found is None:
        return identifier(segment, direction, str(rule.body["name"]))
    if found["unsegmented"]:
        return identifier(segment, direction, "unsegmented")
    if found["default"]:
        return identifier(segment, direction, "default")
    proto = str(props["protocol"])
    parts = [segment, direction, _PROTOCOL_NAMES.get(proto, proto)]
    ports = [p for p in _ports(props) if p != "*"]
    if len(ports) > _NAMED_PORTS:
        parts.append(f"ports_{found['ident']}")
    elif ports:
        # "and" between ports keeps [80, 443] apart from the range 80-443 (80_443).
        parts.append("_and_".join(ports))
    if found["part"]:
        parts.append(f"part{found['part']}")
    return identifier(*parts)


def _association_name(ident: Ident, body: Mapping[str, Any]) -> str:
    found = SUBNET_ID.match(str(body.get("id", "")))
    if found is not None:
        return identifier(found["vnet"], found["subnet"])
    return identifier(*ident.parts[1:])


def _file_order(r: Resource) -> tuple[int, int, str]:
    """Rules in the order Azure evaluates them: inbound, then outbound, by priority. The
    priorities are stable, so a new rule is inserted and the others do not move."""
    if r.type != RULE:
        return (2, 0, r.key)
    props = r.body["properties"]
    return (0 if props["direction"] == "Inbound" else 1, int(props["priority"]), r.key)


@dataclass(frozen=True)
class _Nsg:
    """One NSG of the export: a resource nsgsync creates, or the data source of an
    existing one, and what it holds."""

    placement: Placement
    resource: Resource | None  # None: an existing NSG (azure.nsgName)
    address: str  # azurerm_network_security_group.x or data.azurerm_network_security_group.x

    @property
    def file(self) -> str:
        return f"nsg_{self.address.rsplit('.', 1)[1]}.tf"


class AzureTerraform:
    provider = "azure"

    # --- addresses ---

    def addresses(self, desired: Sequence[Resource], topology: Topology) -> dict[str, str]:
        out: dict[str, str] = {}
        taken: set[str] = set()
        for r in sorted(desired, key=lambda r: r.key):
            if r.type == NSG:
                rtype, name = NSG_TYPE, identifier(r.segment or r.key)
            elif r.type == RULE:
                rtype, name = RULE_TYPE, _rule_name(r)
            elif r.type == ASSOCIATION:
                rtype, name = ASSOCIATION_TYPE, _association_name(r.ident, r.body)
            else:
                raise ValueError(f"the Azure renderer does not know resources of type {r.type!r}")
            out[r.key] = unique_address(taken, rtype, name)
        return out

    # --- files ---

    def files(
        self,
        desired: Sequence[Resource],
        topology: Topology,
        *,
        existing: Mapping[str, Resource] | None = None,
        options: ExportOptions = DEFAULT_OPTIONS,
    ) -> dict[str, list[BodyItem]]:
        settings = load(topology)
        addresses = self.addresses(desired, topology)
        nsgs = _nsgs(settings, desired, addresses)
        by_name = {n.placement.name.lower(): n for n in nsgs}
        rules: dict[str, list[Resource]] = {name: [] for name in by_name}
        associations: dict[str, list[Resource]] = {name: [] for name in by_name}
        for r in sorted(desired, key=_file_order):
            if r.type == RULE:
                owner = r.ident.parts[0]
                group = rules
            elif r.type == ASSOCIATION:
                owner = str(r.body["properties"]["networkSecurityGroup"]["id"])
                owner = owner.rsplit("/", 1)[-1].lower()
                group = associations
            else:
                continue
            if owner not in group:
                raise ValueError(f"{r.key} belongs to NSG {owner}, which the topology lacks")
            group[owner].append(r)
        files: dict[str, list[BodyItem]] = {}
        for nsg in nsgs:
            name = nsg.placement.name.lower()
            files[nsg.file] = _nsg_file(topology, nsg, rules[name], associations[name], addresses)
        files["variables.tf"] = _variables(topology, settings, options)
        files["versions.tf"] = _versions()
        files["outputs.tf"] = _outputs(nsgs)
        if options.provider_block:
            files["provider.tf"] = _provider()
        if existing is not None:
            imports = _imports(desired, addresses, existing)
            if imports:
                files["imports.tf"] = imports
        return files


def _nsgs(
    settings: Settings, desired: Sequence[Resource], addresses: Mapping[str, str]
) -> list[_Nsg]:
    created = {str(r.body["name"]).lower(): r for r in desired if r.type == NSG}
    out: list[_Nsg] = []
    taken: set[str] = set()
    for placement in settings.placements:
        if placement.owned:
            resource = created.pop(placement.name.lower(), None)
            if resource is None:
                raise ValueError(f"no desired NSG for {placement.name}")
            address = addresses[resource.key]
        else:
            # Named after its first segment, as a created NSG is: segments are unique.
            resource, name, n = None, identifier(placement.segment), 2
            address = f"data.{NSG_TYPE}.{name}"
            while address in taken:
                address, n = f"data.{NSG_TYPE}.{name}_{n}", n + 1
        taken.add(address)
        out.append(_Nsg(placement, resource, address))
    if created:
        raise ValueError(f"NSGs the topology does not place: {sorted(created)}")
    return sorted(out, key=lambda n: n.file)


def _nsg_file(
    topology: Topology,
    nsg: _Nsg,
    rules: Sequence[Resource],
    associations: Sequence[Resource],
    addresses: Mapping[str, str],
) -> list[BodyItem]:
    placement = nsg.placement
    segments = ", ".join(placement.segments)
    label = nsg.address.removeprefix("data.").split(".")
    if nsg.resource is not None:
        body = nsg.resource.body
        items: list[BodyItem] = [
            header(
                f"NSG {placement.name} of cluster {topology.cluster} (segments {segments}):",
                "its rules and the subnets it is put on. Change the NetworkPolicies or the",
                "topology, then export again.",
            ),
            BlankLine(),
            Comment(
                "No security_rule blocks: the rule resources below own the rules.\n"
                f"nsgsync key: {nsg.resource.key}"
            ),
            Block(
                "resource",
                label,
                [
                    Attribute("name", String(str(body["name"]))),
                    Attribute("location", Reference("var.location")),
                    Attribute("resource_group_name", Reference("var.resource_group_name")),
                    Attribute("tags", _tags(body.get("tags") or {})),
                ],
            ),
        ]
    else:
        items = [
            header(
                f"NSG {placement.name} of cluster {topology.cluster} (segments {segments}).",
                "It exists already (azure.nsgName): Terraform reads it and manages only",
                "nsgsync's rules in it. Change the NetworkPolicies or the topology, then",
                "export again.",
            ),
            BlankLine(),
            Block(
                "data",
                label,
                [
                    Attribute("name", String(placement.name)),
                    Attribute("resource_group_name", Reference("var.resource_group_name")),
                ],
            ),
        ]
    for rule in rules:
        items += [
            _provenance(rule),
            Block("resource", addresses[rule.key].split("."), _rule_attributes(rule, nsg)),
        ]
    for assoc in associations:
        items += [
            Comment(f"nsgsync key: {assoc.key}"),
            Block(
                "resource",
                addresses[assoc.key].split("."),
                [
                    Attribute("subnet_id", String(str(assoc.body["id"]))),
                    Attribute("network_security_group_id", Reference(f"{nsg.address}.id")),
                ],
            ),
        ]
    return items


def _tags(tags: Mapping[str, Any]) -> Expression:
    # Extra tags from the variable first: nsgsync's ownership tags win.
    return Call(
        "merge",
        [Reference("var.tags"), ObjectExpr((str(k), String(str(v))) for k, v in tags.items())],
    )


def _provenance(rule: Resource) -> Comment:
    """Where the rule comes from (its description: one line per source), and its key."""
    text = str(rule.body["properties"].get("description") or "(no description)")
    lines = [
        line
        for part in text.split("; ")
        for line in textwrap.wrap(
            part, _COMMENT_WIDTH, break_long_words=False, break_on_hyphens=False
        )
    ]
    return Comment("\n".join([*lines, f"nsgsync key: {rule.key}"]))


def _rule_attributes(rule: Resource, nsg: _Nsg) -> list[BodyItem]:
    props = rule.body["properties"]
    for field in _UNSUPPORTED:
        if props.get(field):
            raise ValueError(f"{rule.key}: {field} cannot be exported")
    attrs: list[BodyItem] = [
        Attribute("name", String(str(rule.body["name"]))),
        Attribute("resource_group_name", Reference("var.resource_group_name")),
        # A reference, not the name: Terraform creates the NSG before its rules.
        Attribute("network_security_group_name", Reference(f"{nsg.address}.name")),
        Attribute("priority", Number(int(props["priority"]))),
        Attribute("direction", String(str(props["direction"]))),
        Attribute("access", String(str(props["access"]))),
        Attribute("protocol", String(str(props["protocol"]))),
    ]
    for single, single_arg, plural, plural_arg in _PAIRS:
        values = props.get(plural)
        if single in props and values:
            raise ValueError(f"{rule.key}: both {single} and {plural} are set")
        if single in props:
            attrs.append(Attribute(single_arg, String(str(props[single]))))
        elif values:
            attrs.append(Attribute(plural_arg, ListExpr(String(str(v)) for v in values)))
        else:
            raise ValueError(f"{rule.key}: neither {single} nor {plural} is set")
    if props.get("description"):
        attrs.append(Attribute("description", String(str(props["description"]))))
    return attrs


def _imports(
    desired: Sequence[Resource], addresses: Mapping[str, str], existing: Mapping[str, Resource]
) -> list[BodyItem]:
    blocks: list[BodyItem] = []
    for r in sorted(desired, key=lambda r: r.key):
        found = existing.get(r.key)
        if found is not None and found.cloud_id:
            # The provider's import ids are the ARM ids: the NSG's, the rule's
            # (.../securityRules/NAME), and for an association the *subnet's*, which is
            # the cloud id the adapter reads for it.
            blocks.append(import_block(addresses[r.key], found.cloud_id))
    if not blocks:
        return []
    return [
        header(
            "What already exists in the cloud (read at export time): the first",
            "`terraform apply` adopts these instead of creating them again. Delete this",
            "file once that apply is done.",
        ),
        BlankLine(),
        *blocks,
    ]


def _variables(topology: Topology, settings: Settings, options: ExportOptions) -> list[BodyItem]:
    config = settings.config
    items: list[BodyItem] = [
        header(f"Variables of cluster {topology.cluster}'s network security groups."),
        BlankLine(),
        Block(
            "variable",
            ["resource_group_name"],
            [
                Attribute(
                    "description",
                    "The resource group of the NSGs (topology: azure.resourceGroup).",
                ),
                Attribute("type", Reference("string")),
                Attribute("default", config.resource_group),
            ],
        ),
        Block(
            "variable",
            ["location"],
            [
                Attribute(
                    "description", "The Azure region of the NSGs (topology: azure.location)."
                ),
                Attribute("type", Reference("string")),
                Attribute("default", config.location),
            ],
        ),
        Block(
            "variable",
            ["tags"],
            [
                Attribute(
                    "description",
                    "Extra tags for every NSG nsgsync creates; nsgsync's own (nsgsync.io/*) win.",
                ),
                Attribute("type", Call("map", [Reference("string")])),
                Attribute("default", ObjectExpr()),
            ],
        ),
    ]
    if options.provider_block:
        items.append(
            Block(
                "variable",
                ["subscription_id"],
                [
                    Attribute(
                        "description",
                        "The subscription of the NSGs (topology: azure.subscriptionId).",
                    ),
                    Attribute("type", Reference("string")),
                    Attribute("default", config.subscription_id),
                ],
            )
        )
    return items


def _versions() -> list[BodyItem]:
    return versions_file("azurerm", "hashicorp/azurerm", AZURERM_PROVIDER_VERSION)


def _provider() -> list[BodyItem]:
    return [
        header(
            "Leave it out (--no-provider-block) when the root module configures the azurerm",
            "provider itself.",
        ),
        BlankLine(),
        Block(
            "provider",
            ["azurerm"],
            [
                # Required since azurerm 4.0 (or ARM_SUBSCRIPTION_ID in the environment).
                Attribute("subscription_id", Reference("var.subscription_id")),
                # The provider refuses to start without a features block, even an empty one.
                Block("features", (), []),
            ],
        ),
    ]


def _outputs(nsgs: Sequence[_Nsg]) -> list[BodyItem]:
    by_segment = {seg: n.address for n in nsgs for seg in n.placement.segments}
    return [
        header(),
        BlankLine(),
        Block(
            "output",
            ["network_security_group_ids"],
            [
                Attribute(
                    "description",
                    "The id of the NSG holding each segment's rules, by segment name.",
                ),
                Attribute(
                    "value",
                    ObjectExpr(
                        (seg, Reference(f"{by_segment[seg]}.id")) for seg in sorted(by_segment)
                    ),
                ),
            ],
        ),
    ]


renderer = AzureTerraform()

__all__ = ["AzureTerraform", "identifier", "renderer"]
