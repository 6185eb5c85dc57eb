"""Generated Terraform, read back with python-hcl2, as tests.aws.evaluate.Groups.

Independent of the renderer: it reads the .tf text only, resolves the references between
resources itself, and builds the rule dicts DescribeSecurityGroupRules would return for
what `terraform apply` creates. Group ids are the groups' Terraform addresses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2

from nsgsync.model import Topology
from tests.aws.evaluate import Groups

GROUP = "aws_security_group"
RULES = {"aws_vpc_security_group_ingress_rule": False, "aws_vpc_security_group_egress_rule": True}
_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_.\-\[\]\"]*)\}$")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}


def unquote(text: Any) -> str:
    """The value of an HCL quoted string as python-hcl2 returns it (quotes kept)."""
    assert isinstance(text, str) and len(text) >= 2 and text[0] == text[-1] == '"', text
    body, out, i = text[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt == "u":
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES[nxt])
            i += 2
        elif body.startswith(("$${", "%%{"), i):
            out.append(ch + "{")
            i += 3
        else:
            assert not body.startswith(("${", "%{"), i), f"template sequence in {text}"
            out.append(ch)
            i += 1
    return "".join(out)


def reference(text: Any) -> str:
    """The traversal of a reference expression: `${aws_security_group.x.id}` -> its text."""
    match = _REF.match(str(text))
    assert match, f"not a plain reference: {text!r}"
    return match.group(1)


@dataclass(frozen=True)
class Parsed:
    """Every top-level block of a folder of .tf files, by kind."""

    resources: dict[str, dict[str, Any]]  # address -> attributes
    imports: list[tuple[str, str]]  # (to, id)
    variables: dict[str, dict[str, Any]]
    locals: dict[str, Any]
    outputs: dict[str, dict[str, Any]]
    other: list[str]  # other top-level block types (terraform, provider)

    @classmethod
    def folder(cls, folder: Path) -> Parsed:
        return cls.texts({p.name: p.read_text() for p in sorted(folder.glob("*.tf"))})

    @classmethod
    def texts(cls, texts: Mapping[str, str]) -> Parsed:
        parsed = cls({}, [], {}, {}, {}, [])
        for name, text in sorted(texts.items()):
            parsed._add(name, hcl2.loads(text))
        return parsed

    def _add(self, name: str, doc: dict[str, Any]) -> None:
        for kind, blocks in doc.items():
            if kind == "__comments__":
                continue
            for block in blocks:
                if kind == "resource":
                    for rtype, named in _labelled(block):
                        for rname, attrs in _labelled(named):
                            address = f"{rtype}.{rname}"
                            assert address not in self.resources, f"{address} twice ({name})"
                            self.resources[address] = attrs
                elif kind == "import":
                    self.imports.append((reference(block["to"]), unquote(block["id"])))
                elif kind == "variable":
                    for vname, attrs in _labelled(block):
                        self.variables[vname] = attrs
                elif kind == "locals":
                    self.locals.update({k: v for k, v in block.items() if not k.startswith("__")})
                elif kind == "output":
                    for oname, attrs in _labelled(block):
                        self.outputs[oname] = attrs
                else:
                    self.other.append(kind)

    def of_type(self, rtype: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for address, attrs in sorted(self.resources.items()):
            if address.split(".")[0] == rtype:
                yield address, attrs


def _labelled(block: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for label, inner in block.items():
        if not label.startswith("__"):
            yield unquote(label), inner


def group_address(attr: Any) -> str:
    ref = reference(attr)
    assert ref.startswith(f"{GROUP}.") and ref.endswith(".id"), ref
    return ref[: -len(".id")]


def rule_dict(rtype: str, attrs: Mapping[str, Any], groups: Mapping[str, str]) -> dict[str, Any]:
    """One rule resource as a SecurityGroupRule of DescribeSecurityGroupRules.

    `groups` maps a group's address to the id it stands for in the result.
    """
    proto = unquote(attrs["ip_protocol"])
    rule: dict[str, Any] = {
        "GroupId": groups[group_address(attrs["security_group_id"])],
        "IsEgress": RULES[rtype],
        "IpProtocol": proto,
        "FromPort": int(attrs.get("from_port", -1)),
        "ToPort": int(attrs.get("to_port", -1)),
    }
    peers = [
        k
        for k in ("cidr_ipv4", "cidr_ipv6", "prefix_list_id", "referenced_security_group_id")
        if k in attrs
    ]
    assert len(peers) == 1, f"a rule needs exactly one peer, has {peers}"
    if "cidr_ipv4" in attrs:
        rule["CidrIpv4"] = unquote(attrs["cidr_ipv4"])
    elif "cidr_ipv6" in attrs:
        rule["CidrIpv6"] = unquote(attrs["cidr_ipv6"])
    elif "prefix_list_id" in attrs:
        rule["PrefixListId"] = unquote(attrs["prefix_list_id"])
    else:
        ref = attrs["referenced_security_group_id"]
        gid = groups[group_address(ref)] if str(ref).startswith("${") else unquote(ref)
        rule["ReferencedGroupInfo"] = {"GroupId": gid}
    return rule


def groups_from_hcl(parsed: Parsed, topology: Topology) -> Groups:
    """What the parsed files would create, as the evaluator's Groups."""
    prefix = f"nsgsync-{topology.cluster}-"
    segment_of_group: dict[str, str] = {}
    for address, attrs in parsed.of_type(GROUP):
        name = unquote(attrs["name"])
        assert name.startswith(prefix), name
        segment_of_group[address] = name[len(prefix) :]
    by_segment: dict[str, list[dict[str, Any]]] = {s: [] for s in segment_of_group.values()}
    ids = {a: a for a in segment_of_group}
    for rtype in RULES:
        for _, attrs in parsed.of_type(rtype):
            rule = rule_dict(rtype, attrs, ids)
            by_segment[segment_of_group[rule["GroupId"]]].append(rule)
    return Groups(topology, by_segment, segment_of_group)
