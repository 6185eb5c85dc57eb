"""The GCP renderer for `nsgsync export terraform` (entry point `nsgsync.terraform`: gcp).

Per segment, one file: a `google_compute_firewall` per desired rule, its arguments taken
from the rule's body (a compute v1 Firewall in REST JSON) field by field, so that
`terraform apply` creates exactly what `nsgsync apply` would, and `nsgsync plan` against the
result shows no changes:

- the name and the description are the body's own: nsgsync's read recognises its rules by
  the name prefix and the `nsgsync:<cluster>` marker that starts the description, so
  neither may be reworded here;
- `allowed`/`denied` become repeated `allow`/`deny` blocks, `ports` a list of strings
  (`"5432"`, `"8000-8080"`); a block without `ports` covers every port;
- `network` and `project` are variables defaulting to the topology's `gcp.network` and
  `gcp.project`; the firewall rules live in their network's project.

A firewall rule has no parent resource in GCP (it names the network and its targets, the
nodes), so there is nothing like AWS's security group to create first, and no references
between resources.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from nsgsync.intent import Direction
from nsgsync.model import Topology
from nsgsync.plan import Resource
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
    Bool,
    Comment,
    Expression,
    ListExpr,
    Number,
    ObjectExpr,
    Reference,
    String,
)
from nsgsync_gcp.config import GcpConfig, load_config
from nsgsync_gcp.render import FIREWALL, Identity, family, marker

FIREWALL_TYPE = "google_compute_firewall"

# Import blocks need Terraform 1.5. 6.x is the provider's current major version; the
# arguments written here are the same in 5.x, but a major version may change defaults.
GOOGLE_PROVIDER_VERSION = "~> 6.0"

_COMMENT_WIDTH = 96
# More port entries than this are summarised in the address (`tcp_7_ports_<hash>`): an
# address that lists twenty ports helps no reviewer.
_ADDRESS_PORTS = 4

# REST field -> argument, for the list fields, in the order they are written. render only
# writes ranges and one kind of target; the source tags and accounts are here so that a body
# holding them is never exported without them.
_LISTS = (
    ("sourceRanges", "source_ranges"),
    ("destinationRanges", "destination_ranges"),
    ("sourceTags", "source_tags"),
    ("sourceServiceAccounts", "source_service_accounts"),
    ("targetTags", "target_tags"),
    ("targetServiceAccounts", "target_service_accounts"),
)
_KNOWN = {
    "name",
    "network",
    "priority",
    "direction",
    "allowed",
    "denied",
    "description",
    "disabled",
    *(field for field, _ in _LISTS),
}


def _entries(body: Mapping[str, Any]) -> tuple[str, list[Mapping[str, Any]]]:
    """("allow" or "deny", the rule's protocol entries)."""
    if "allowed" in body and "denied" in body:
        raise ValueError(f"firewall rule {body.get('name')} has both allowed and denied")
    if "denied" in body:
        return "deny", list(body["denied"])
    return "allow", list(body.get("allowed") or [])


def _own_ranges(body: Mapping[str, Any]) -> list[str]:
    # render names the segment's own CIDRs in destinationRanges for ingress, in
    # sourceRanges for egress.
    field = "destinationRanges" if body["direction"] == "INGRESS" else "sourceRanges"
    return [str(c) for c in body.get(field) or []]


def _port_tuple(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def _identity(cluster: str, r: Resource) -> Identity | None:
    """The identity render named the rule after, without a chunk; None if there is none."""
    action, entries = _entries(r.body)
    own = _own_ranges(r.body)
    if len(entries) != 1 or not own or r.segment is None:
        return None
    entry = entries[0]
    ports = entry.get("ports")
    return Identity(
        cluster,
        r.segment,
        Direction.INGRESS if r.body["direction"] == "INGRESS" else Direction.EGRESS,
        action,
        str(entry["IPProtocol"]),
        None if ports is None else tuple(_port_tuple(str(p)) for p in ports),
        family(own[0]),
    )


def _rule_name(cluster: str, r: Resource) -> str:
    """`<segment>_<ingress|egress>_<allow|deny>_<protocol>[_<ports>][_v6]`.

    These are the fields the rule's name hashes (render.Identity): the address changes
    exactly when the name does, never with the rule's peers or description. Where they do
    not tell the rule apart (a rule split at 5,000 ranges, ports summarised, a body render
    would not write), the name's hash is added, so the address still follows from the key.
    """
    body = r.body
    action, entries = _entries(body)
    parts = [r.segment or "", str(body["direction"]).lower(), action]
    unique = _identity(cluster, r)
    if unique is not None and unique.name() != r.key:
        unique = None  # a chunk of a split rule, or named otherwise: the hash decides
    for entry in entries:
        parts.append(str(entry["IPProtocol"]))
        ports = [str(p) for p in entry.get("ports") or []]
        if len(ports) > _ADDRESS_PORTS:
            parts.append(f"{len(ports)}_ports")
            unique = None
        else:
            # `to` for a range, so that 80-81 and 80,81 do not both read 80_81.
            parts += [p.replace("-", "to") for p in ports]
    own = _own_ranges(body)
    if own and family(own[0]) == 6:
        parts.append("v6")
    if unique is None:
        parts.append(r.key.rsplit("-", 1)[-1])
    return identifier(*parts)


def _reading_order(r: Resource, address: str) -> tuple[bool, bool, str]:
    """Ingress before egress, a direction's allows before its deny, then by address.

    The rule's name is a hash; its address is not, and a new rule lands among its
    kind instead of anywhere in the file.
    """
    return r.body.get("direction") != "INGRESS", "denied" in r.body, address


class GcpTerraform:
    provider = "gcp"

    # --- addresses ---

    def addresses(self, desired: Sequence[Resource], topology: Topology) -> dict[str, str]:
        out: dict[str, str] = {}
        taken: set[str] = set()
        for r in sorted(desired, key=lambda r: r.key):
            if r.type != FIREWALL:
                raise ValueError(f"the GCP renderer does not know resources of type {r.type!r}")
            name = _rule_name(topology.cluster, r)
            out[r.key] = unique_address(taken, FIREWALL_TYPE, name)
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
        config, _ = load_config(topology)
        addresses = self.addresses(desired, topology)
        orphans = [r.key for r in desired if not r.segment]
        if orphans:
            raise ValueError(f"firewall rules without a segment: {orphans[:3]}")
        by_segment: dict[str, list[Resource]] = {}
        for r in sorted(desired, key=lambda r: _reading_order(r, addresses[r.key])):
            by_segment.setdefault(r.segment or "", []).append(r)
        files: dict[str, list[BodyItem]] = {}
        for segment in sorted(by_segment):
            files[f"segment_{identifier(segment)}.tf"] = self._segment_file(
                topology, config, segment, by_segment[segment], addresses
            )
        files["variables.tf"] = _variables(topology, config)
        files["versions.tf"] = _versions()
        files["outputs.tf"] = _outputs(by_segment, addresses)
        if options.provider_block:
            files["provider.tf"] = _provider()
        if existing is not None:
            imports = self._imports(config, desired, addresses, existing)
            if imports:
                files["imports.tf"] = imports
        return files

    def _segment_file(
        self,
        topology: Topology,
        config: GcpConfig,
        segment: str,
        rules: Sequence[Resource],
        addresses: Mapping[str, str],
    ) -> list[BodyItem]:
        items: list[BodyItem] = [
            header(
                f"Segment {segment} of cluster {topology.cluster}: its VPC firewall rules.",
                "They target the cluster's nodes and name the segment's pod ranges (GKE pods",
                "use alias ranges of their node). Change the NetworkPolicies or the topology,",
                "then export again.",
            ),
            BlankLine(),
        ]
        for rule in rules:
            items += [
                *_provenance(topology.cluster, rule),
                Block(
                    "resource",
                    addresses[rule.key].split("."),
                    _firewall_arguments(rule.body, config),
                ),
            ]
        return items

    def _imports(
        self,
        config: GcpConfig,
        desired: Sequence[Resource],
        addresses: Mapping[str, str],
        existing: Mapping[str, Resource],
    ) -> list[BodyItem]:
        blocks: list[BodyItem] = []
        for r in sorted(desired, key=lambda r: r.key):
            found = existing.get(r.key)
            if found is None:
                continue
            # The provider's import id; read sets it as the cloud id. A rule's name is its
            # identity within the project, so it can be built when a read did not set it.
            import_id = found.cloud_id or f"projects/{config.project}/global/firewalls/{r.key}"
            blocks.append(import_block(addresses[r.key], import_id))
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


def _provenance(cluster: str, rule: Resource) -> list[BodyItem]:
    """Where the rule comes from (its description: one line per source), and its key."""
    text = str(rule.body.get("description") or "(no description)")
    # The description starts `nsgsync:<cluster> <segment> <direction>: `; the resource
    # says all of that already.
    head = f"{marker(cluster)} {rule.segment} {str(rule.body.get('direction', '')).lower()}: "
    text = text.removeprefix(head)
    lines = [
        line
        for part in text.split("; ")
        for line in textwrap.wrap(
            part, _COMMENT_WIDTH, break_long_words=False, break_on_hyphens=False
        )
    ]
    return [Comment("\n".join([*lines, f"nsgsync key: {rule.key}"]))]


def _strings(values: Sequence[Any]) -> ListExpr:
    return ListExpr(String(str(v)) for v in values)


def _firewall_arguments(body: Mapping[str, Any], config: GcpConfig) -> list[BodyItem]:
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        # Never export a rule without a field that decides its traffic.
        raise ValueError(f"firewall rule {body.get('name')}: cannot export the fields {unknown}")
    network: Expression = (
        Reference("var.network")
        if body["network"] == config.network_path
        else String(str(body["network"]))
    )
    attrs: list[BodyItem] = [
        Attribute("name", String(str(body["name"]))),
        Attribute("project", Reference("var.project")),
        Attribute("network", network),
        Attribute("description", String(str(body.get("description", "")))),
        Attribute("direction", String(str(body["direction"]))),
        Attribute("priority", Number(int(body["priority"]))),
        # Written even when false: the provider's default is the same, but an explicit
        # value says that an enabled rule is what nsgsync wants.
        Attribute("disabled", Bool(bool(body.get("disabled", False)))),
    ]
    for field, argument in _LISTS:
        if body.get(field):
            attrs.append(Attribute(argument, _strings(body[field])))
    action, entries = _entries(body)
    for entry in entries:
        inner: list[BodyItem] = [Attribute("protocol", String(str(entry["IPProtocol"])))]
        if entry.get("ports"):
            # Without `ports` a block covers every port of its protocol.
            inner.append(Attribute("ports", _strings(entry["ports"])))
        attrs.append(Block(action, (), inner))
    return attrs


def _variables(topology: Topology, config: GcpConfig) -> list[BodyItem]:
    return [
        header(f"Variables of cluster {topology.cluster}'s VPC firewall rules."),
        BlankLine(),
        Block(
            "variable",
            ["project"],
            [
                Attribute(
                    "description",
                    "The project of the network and its firewall rules (topology: gcp.project; "
                    "for a Shared VPC, the host project).",
                ),
                Attribute("type", Reference("string")),
                Attribute("default", config.project),
            ],
        ),
        Block(
            "variable",
            ["network"],
            [
                Attribute(
                    "description",
                    "The VPC network of the cluster's nodes: a name, a path or a self link "
                    "(topology: gcp.network).",
                ),
                Attribute("type", Reference("string")),
                Attribute("default", config.network),
            ],
        ),
    ]


def _versions() -> list[BodyItem]:
    return versions_file("google", "hashicorp/google", GOOGLE_PROVIDER_VERSION)


def _provider() -> list[BodyItem]:
    return [
        header(
            "Leave it out (--no-provider-block) when the root module configures the google",
            "provider itself. Credentials come from the environment (ADC).",
        ),
        BlankLine(),
        Block("provider", ["google"], [Attribute("project", Reference("var.project"))]),
    ]


def _outputs(
    by_segment: Mapping[str, Sequence[Resource]], addresses: Mapping[str, str]
) -> list[BodyItem]:
    return [
        header(),
        BlankLine(),
        Block(
            "output",
            ["firewall_ids"],
            [
                Attribute(
                    "description",
                    "Each segment's firewall rules (projects/P/global/firewalls/NAME), by "
                    "segment name.",
                ),
                Attribute(
                    "value",
                    ObjectExpr(
                        (
                            seg,
                            ListExpr(Reference(f"{addresses[r.key]}.id") for r in by_segment[seg]),
                        )
                        for seg in sorted(by_segment)
                    ),
                ),
            ],
        ),
    ]


renderer = GcpTerraform()

__all__ = ["GcpTerraform", "identifier", "renderer"]
