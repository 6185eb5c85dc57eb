"""The AWS renderer for `nsgsync export terraform` (entry point `nsgsync.terraform`: aws).

Per segment, one file: its `aws_security_group` and one `aws_vpc_security_group_ingress_rule`
or `_egress_rule` per desired rule (never inline `ingress`/`egress` blocks, never
`aws_security_group_rule`: the provider forbids mixing them). Peers that are nsgsync's own
groups become references, `aws_security_group.<peer>.id`.

AWS gives every new group an allow-all egress rule. The provider's `aws_security_group`
revokes it when it creates a group in a VPC (documented under "NOTE on Egress rules"), so
a segment whose egress is isolated gets exactly its rules, and an open one gets the
allow-all rule back as an explicit egress rule resource, as nsgsync's own apply does.
`egress = []` would be wrong here: it puts the group's egress into inline mode, which then
fights the rule resources.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
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
    Number,
    ObjectExpr,
    Reference,
    String,
)
from nsgsync_aws.config import load_config
from nsgsync_aws.render import GROUP, RULE, group_ref

GROUP_TYPE = "aws_security_group"
INGRESS_TYPE = "aws_vpc_security_group_ingress_rule"
EGRESS_TYPE = "aws_vpc_security_group_egress_rule"

# Import blocks need Terraform 1.5; the per-rule resources with tags need provider 5.
AWS_PROVIDER_VERSION = "~> 5.0"

_PROTOCOL_NAMES = {"-1": "all", "tcp": "tcp", "udp": "udp", "132": "sctp"}
_WITH_PORTS = ("tcp", "udp")
_COMMENT_WIDTH = 96


def _peer_name(ident: Ident, body: Mapping[str, Any]) -> str:
    # The identity's last part names the peer (rule_key in render.py): a CIDR, sg:<segment>
    # for one of nsgsync's groups, sg:<id> or pl:<id> for others.
    peer = ident.name
    if peer.startswith("sg:"):
        return identifier("sg", peer[3:])
    if peer.startswith("pl:"):
        return identifier(peer[3:])
    if "CidrIpv6" in body:
        return identifier("ipv6", str(body["CidrIpv6"]))
    return identifier(str(body.get("CidrIpv4", peer)))


def _rule_name(segment: str, ident: Ident, body: Mapping[str, Any]) -> str:
    proto = str(body["IpProtocol"])
    parts = [segment, _PROTOCOL_NAMES.get(proto, f"proto_{proto}")]
    if proto in _WITH_PORTS:
        low, high = body["FromPort"], body["ToPort"]
        parts.append(str(low) if low == high else f"{low}_{high}")
    parts.append(_peer_name(ident, body))
    return identifier(*parts)


def _rule_type(body: Mapping[str, Any]) -> str:
    return EGRESS_TYPE if body["IsEgress"] else INGRESS_TYPE


class AwsTerraform:
    provider = "aws"

    # --- addresses ---

    def addresses(self, desired: Sequence[Resource], topology: Topology) -> dict[str, str]:
        out: dict[str, str] = {}
        taken: set[str] = set()
        for r in sorted(desired, key=lambda r: r.key):
            if r.type == GROUP:
                rtype, name = GROUP_TYPE, identifier(r.segment or r.key)
            elif r.type == RULE:
                rtype, name = _rule_type(r.body), _rule_name(r.segment or "", r.ident, r.body)
            else:
                raise ValueError(f"the AWS renderer does not know resources of type {r.type!r}")
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
        config, _ = load_config(topology)
        addresses = self.addresses(desired, topology)
        groups = {r.segment: r for r in desired if r.type == GROUP and r.segment}
        refs = {group_ref(topology.cluster, seg): addresses[g.key] for seg, g in groups.items()}
        files: dict[str, list[BodyItem]] = {}
        for segment in sorted(groups):
            group = groups[segment]
            rules = sorted(
                (r for r in desired if r.type == RULE and r.segment == segment),
                key=lambda r: r.key,
            )
            files[f"segment_{identifier(segment)}.tf"] = self._segment_file(
                topology, config.vpc_id, group, rules, addresses, refs
            )
        orphans = [r.key for r in desired if r.type == RULE and r.segment not in groups]
        if orphans:
            raise ValueError(f"rules without a desired security group: {orphans[:3]}")
        files["variables.tf"] = _variables(topology, config.vpc_id, config.region, options)
        files["versions.tf"] = _versions()
        files["outputs.tf"] = _outputs(groups, addresses)
        if options.provider_block:
            files["provider.tf"] = _provider()
        if existing is not None:
            imports = self._imports(desired, addresses, existing)
            if imports:
                files["imports.tf"] = imports
        return files

    def _segment_file(
        self,
        topology: Topology,
        vpc_id: str,
        group: Resource,
        rules: Sequence[Resource],
        addresses: Mapping[str, str],
        refs: Mapping[str, str],
    ) -> list[BodyItem]:
        segment = group.segment or ""
        tags_local = identifier("tags", segment)
        group_tags = _tag_map(group.body.get("Tags", []))
        group_address = addresses[group.key]
        body = group.body
        items: list[BodyItem] = [
            header(
                f"Segment {segment} of cluster {topology.cluster}: its security group and rules.",
                "Change the NetworkPolicies or the topology, then export again.",
            ),
            BlankLine(),
            Block("locals", (), [Attribute(tags_local, _tags(group_tags))]),
            Comment(f"nsgsync key: {group.key}"),
            Block(
                "resource",
                group_address.split("."),
                [
                    Attribute("name", String(str(body["GroupName"]))),
                    Attribute("description", String(str(body["Description"]))),
                    Attribute(
                        "vpc_id",
                        Reference("var.vpc_id")
                        if body.get("VpcId") == vpc_id
                        else String(str(body["VpcId"])),
                    ),
                    Attribute("tags", Reference(f"local.{tags_local}")),
                ],
            ),
        ]
        for rule in rules:
            rule_tags = _tag_map(rule.body.get("Tags", []))
            tags: Expression = (
                Reference(f"local.{tags_local}") if rule_tags == group_tags else _tags(rule_tags)
            )
            items += [
                *_provenance(rule),
                Block(
                    "resource",
                    addresses[rule.key].split("."),
                    _rule_attributes(rule.body, f"{group_address}.id", refs, tags),
                ),
            ]
        return items

    def _imports(
        self,
        desired: Sequence[Resource],
        addresses: Mapping[str, str],
        existing: Mapping[str, Resource],
    ) -> list[BodyItem]:
        blocks: list[BodyItem] = []
        for r in sorted(desired, key=lambda r: r.key):
            found = existing.get(r.key)
            if found is not None and found.cloud_id:
                # The provider's import ids: sg-... for a group, sgr-... for a rule.
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


def _tag_map(tags: Iterable[Mapping[str, str]]) -> dict[str, str]:
    return {str(t["Key"]): str(t["Value"]) for t in tags}


def _tags(tags: Mapping[str, str]) -> Expression:
    # Extra tags from the variable first: nsgsync's ownership tags win.
    return Call(
        "merge", [Reference("var.tags"), ObjectExpr((k, String(v)) for k, v in tags.items())]
    )


def _provenance(rule: Resource) -> list[BodyItem]:
    """Where the rule comes from (its description: one line per source), and its key."""
    text = str(rule.body.get("Description") or "(no description)")
    lines = [
        line
        for part in text.split("; ")
        for line in textwrap.wrap(
            part, _COMMENT_WIDTH, break_long_words=False, break_on_hyphens=False
        )
    ]
    return [Comment("\n".join([*lines, f"nsgsync key: {rule.key}"]))]


def _rule_attributes(
    body: Mapping[str, Any], group_id: str, refs: Mapping[str, str], tags: Expression
) -> list[BodyItem]:
    proto = str(body["IpProtocol"])
    attrs: list[BodyItem] = [
        Attribute("security_group_id", Reference(group_id)),
        Attribute("ip_protocol", String(proto)),
    ]
    if proto in _WITH_PORTS:
        # Only TCP and UDP take ports here; for "-1" and "132" EC2 reports -1 and the
        # provider wants them left out.
        attrs += [
            Attribute("from_port", Number(int(body["FromPort"]))),
            Attribute("to_port", Number(int(body["ToPort"]))),
        ]
    if "CidrIpv4" in body:
        attrs.append(Attribute("cidr_ipv4", String(str(body["CidrIpv4"]))))
    elif "CidrIpv6" in body:
        attrs.append(Attribute("cidr_ipv6", String(str(body["CidrIpv6"]))))
    elif "PrefixListId" in body:
        attrs.append(Attribute("prefix_list_id", String(str(body["PrefixListId"]))))
    else:
        ref = str((body.get("ReferencedGroupInfo") or {}).get("GroupId", ""))
        peer: Expression = Reference(f"{refs[ref]}.id") if ref in refs else String(ref)
        attrs.append(Attribute("referenced_security_group_id", peer))
    if body.get("Description"):
        attrs.append(Attribute("description", String(str(body["Description"]))))
    attrs.append(Attribute("tags", tags))
    return attrs


def _variables(
    topology: Topology, vpc_id: str, region: str, options: ExportOptions
) -> list[BodyItem]:
    items: list[BodyItem] = [
        header(f"Variables of cluster {topology.cluster}'s security groups."),
        BlankLine(),
        Block(
            "variable",
            ["vpc_id"],
            [
                Attribute("description", "The VPC of the cluster's pods (topology: aws.vpcId)."),
                Attribute("type", Reference("string")),
                Attribute("default", vpc_id),
            ],
        ),
        Block(
            "variable",
            ["tags"],
            [
                Attribute(
                    "description",
                    "Extra tags for every group and rule; nsgsync's own (nsgsync.io/*) win.",
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
                ["region"],
                [
                    Attribute("description", "The AWS Region of the VPC (topology: aws.region)."),
                    Attribute("type", Reference("string")),
                    Attribute("default", region),
                ],
            )
        )
    return items


def _versions() -> list[BodyItem]:
    return versions_file("aws", "hashicorp/aws", AWS_PROVIDER_VERSION)


def _provider() -> list[BodyItem]:
    return [
        header(
            "Leave it out (--no-provider-block) when the root module configures the aws",
            "provider itself.",
        ),
        BlankLine(),
        Block("provider", ["aws"], [Attribute("region", Reference("var.region"))]),
    ]


def _outputs(groups: Mapping[str, Resource], addresses: Mapping[str, str]) -> list[BodyItem]:
    return [
        header(),
        BlankLine(),
        Block(
            "output",
            ["security_group_ids"],
            [
                Attribute(
                    "description",
                    "Each segment's security group id, by segment name (for SecurityGroupPolicy).",
                ),
                Attribute(
                    "value",
                    ObjectExpr(
                        (seg, Reference(f"{addresses[groups[seg].key]}.id"))
                        for seg in sorted(groups)
                    ),
                ),
            ],
        ),
    ]


renderer = AwsTerraform()

__all__ = ["AwsTerraform", "identifier", "renderer"]
