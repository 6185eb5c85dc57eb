"""The EC2 side: read what nsgsync owns, and the primitive writes the engine orders.

Ownership: a group is nsgsync's when it carries the cluster tag in the topology's VPC;
every rule inside such a group is nsgsync's (a hand-made one is drift, reverted). Groups
without the tag are never read, changed or deleted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from nsgsync.errors import ProviderError, excerpt
from nsgsync.plan import Change, Ident, Op, Resource
from nsgsync.provider import Applied, Created, Progress
from nsgsync_aws.config import AwsConfig
from nsgsync_aws.render import (
    CLUSTER_TAG,
    SEGMENT_TAG,
    copy_key,
    group_key,
    group_name,
    group_ref,
    group_resource,
    rule_resource,
)

BATCH = 50  # IpPermissions / rule ids per call: well under EC2's request limits
_FILTER_VALUES = 200  # EC2 takes at most 200 values per filter


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def check_endpoint_settings(environ: Mapping[str, str] = os.environ) -> None:
    """A malformed endpoint setting is named, before boto3 fails on it with a traceback."""
    if environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return  # boto3 ignores them then
    for name in ("AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL"):
        value = environ.get(name)
        if not value:
            continue  # unset or empty: boto3 uses the regional endpoint
        try:
            url = urlsplit(value)
            ok = url.scheme in ("http", "https") and bool(url.hostname) and url.port != 0
        except ValueError:  # e.g. an unclosed IPv6 bracket, a port out of range
            ok = False
        if not ok:
            raise ProviderError(
                f"{name} is not an http(s) URL: {excerpt(value)}",
                hint=f"set {name} to an endpoint such as https://ec2.eu-west-1.amazonaws.com, "
                "or unset it to use the region's; nothing was changed",
            )


def make_client(region: str) -> Any:
    """An EC2 client; boto3 finds credentials and honours AWS_ENDPOINT_URL itself."""
    check_endpoint_settings()
    try:
        return boto3.client(
            "ec2",
            region_name=region,
            config=Config(retries={"mode": "adaptive", "max_attempts": 10}),
        )
    except ValueError as exc:  # an endpoint_url in the AWS config file, the one left
        raise ProviderError(
            f"cannot make an EC2 client: {exc}",
            hint="check endpoint_url in the AWS profile (~/.aws/config); nothing was changed",
        ) from exc


def _own_tags(tag_list: Iterable[dict[str, str]] | None) -> list[dict[str, str]]:
    """Only nsgsync's own tags are compared; tags others add are left alone."""
    return sorted(
        (
            {"Key": t["Key"], "Value": t["Value"]}
            for t in tag_list or ()
            if t["Key"].startswith("nsgsync.io/")
        ),
        key=lambda t: t["Key"],
    )


def call(client: Any, what: str, **kwargs: Any) -> Any:
    try:
        return getattr(client, what)(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise ProviderError(
            f"EC2 {what} failed: {exc}",
            hint="check credentials, region and the IAM policy in docs/aws.md; "
            "a run that stopped midway is completed by the next apply",
        ) from exc


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    try:
        for page in client.get_paginator(operation).paginate(**kwargs):
            yield from page.get(key, [])
    except (ClientError, BotoCoreError) as exc:
        raise ProviderError(
            f"EC2 {operation} failed: {exc}",
            hint="check credentials, region and the IAM policy in docs/aws.md",
        ) from exc


def read(
    client: Any,
    config: AwsConfig,
    cluster: str,
    *,
    segments: Sequence[str] | None = None,
    known: Mapping[str, str] | None = None,
) -> tuple[list[Resource], dict[str, int]]:
    """The groups nsgsync owns in the VPC, every rule in them, and how many network
    interfaces use each group (by group id). With `segments`, only those segments' groups
    (`known`: the ids of nsgsync's other groups, by segment, so that a rule referencing
    one reads as a full read reads it)."""
    filters = [
        {"Name": "vpc-id", "Values": [config.vpc_id]},
        {"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster]},
    ]
    chunks: list[list[dict[str, Any]]] = [filters]
    if segments is not None:
        chunks = [
            [*filters, {"Name": f"tag:{SEGMENT_TAG}", "Values": list(chunk)}]
            for chunk in _chunks(sorted(set(segments)), _FILTER_VALUES)
        ]
    groups: dict[str, list[dict[str, Any]]] = {}
    for f in chunks:
        for g in _pages(
            client,
            "describe_security_groups",
            "SecurityGroups",
            Filters=f,
            PaginationConfig={"PageSize": 1000},
        ):
            tags = {t["Key"]: t["Value"] for t in g.get("Tags", [])}
            segment = tags.get(SEGMENT_TAG)
            if segment:
                groups.setdefault(segment, []).append(g)
    users = _users(client, sorted(g["GroupId"] for gs in groups.values() for g in gs))
    out: list[Resource] = []
    owner: dict[str, tuple[str, Ident]] = {}  # group id -> segment, the group's identity
    # group id -> segment, for the one group of each segment
    keepers: dict[str, str] = {gid: seg for seg, gid in (known or {}).items()}
    for segment, found in sorted(groups.items()):
        keeper = _keeper(segment, found, users, cluster)
        for g in found:
            gid = g["GroupId"]
            ident = group_key(segment) if g is keeper else copy_key(segment, gid)
            owner[gid] = (segment, ident)
            if g is keeper:
                keepers[gid] = segment
            body = {
                "GroupName": g["GroupName"],
                "VpcId": g["VpcId"],
                "Description": g.get("Description", ""),
                "Tags": _own_tags(g.get("Tags")),
            }
            res = group_resource(body, segment, gid, ident=ident)
            if g is keeper and g["GroupName"] != group_name(cluster, segment):
                # A copy kept because interfaces use it: EC2 renames no group, so its
                # name and description are left as they are, not planned as a change.
                res = replace(res, unreported=frozenset({"GroupName", "Description"}))
            out.append(res)
    for chunk in _chunks(sorted(owner), _FILTER_VALUES):
        for r in _pages(
            client,
            "describe_security_group_rules",
            "SecurityGroupRules",
            Filters=[{"Name": "group-id", "Values": list(chunk)}],
            PaginationConfig={"PageSize": 1000},
        ):
            segment, ident = owner[r["GroupId"]]
            out.append(_rule_resource(r, segment, keepers, cluster, group=ident))
    return out, users


def _users(client: Any, ids: Sequence[str]) -> dict[str, int]:
    """How many network interfaces use each of these groups: a group that interfaces use
    is never emptied nor deleted (EC2 refuses the delete: DependencyViolation)."""
    users: dict[str, int] = {}
    for chunk in _chunks(ids, _FILTER_VALUES):
        # An interface with groups in two chunks is listed twice: count only this chunk's.
        wanted = set(chunk)
        for eni in _pages(
            client,
            "describe_network_interfaces",
            "NetworkInterfaces",
            Filters=[{"Name": "group-id", "Values": list(chunk)}],
            PaginationConfig={"PageSize": 1000},
        ):
            for g in eni.get("Groups") or []:
                if g.get("GroupId") in wanted:
                    users[g["GroupId"]] = users.get(g["GroupId"], 0) + 1
    return users


def _keeper(
    segment: str, found: Sequence[dict[str, Any]], users: Mapping[str, int], cluster: str
) -> dict[str, Any]:
    """Of the groups carrying nsgsync's tags for one segment (a copy made by hand or by a
    restore), the one nsgsync keeps: the one network interfaces use; else the one with the
    name nsgsync gives it (unique in a VPC, so the original or its successor, never a copy
    made beside it); else the lowest id. EC2 shows no creation time for a group."""
    if len(found) == 1:
        return found[0]
    used = [g for g in found if users.get(g["GroupId"], 0) > 0]
    if len(used) > 1:
        ids = ", ".join(
            f"{g['GroupId']} ({users[g['GroupId']]} interfaces)"
            for g in sorted(used, key=lambda g: str(g["GroupId"]))
        )
        raise ProviderError(
            f"segment {segment} has {len(used)} security groups carrying nsgsync's tags, "
            f"each used by network interfaces: {ids}; nsgsync cannot tell which one is its "
            "own, and changes neither; nothing was changed",
            hint="move the interfaces onto one of them and remove the nsgsync.io/ tags from "
            "the others (or delete them), then apply again",
        )
    if used:
        return used[0]
    name = group_name(cluster, segment)
    return min(found, key=lambda g: (g["GroupName"] != name, str(g["GroupId"])))


def _rule_resource(
    r: Mapping[str, Any],
    segment: str,
    by_id: Mapping[str, str],
    cluster: str,
    *,
    group: Ident | None = None,
) -> Resource:
    """A rule as EC2 reports it; `by_id` names the segments of the groups a reference may
    point at by name (the groups nsgsync keeps), `group` the identity of its own group."""
    proto = str(r["IpProtocol"])
    with_ports = proto in ("tcp", "udp")
    body: dict[str, Any] = {
        "IsEgress": bool(r["IsEgress"]),
        "IpProtocol": proto,
        "FromPort": int(r.get("FromPort", -1)) if with_ports else -1,
        "ToPort": int(r.get("ToPort", -1)) if with_ports else -1,
    }
    peer_segment = None
    if r.get("CidrIpv4"):
        body["CidrIpv4"] = r["CidrIpv4"]
    elif r.get("CidrIpv6"):
        body["CidrIpv6"] = r["CidrIpv6"]
    elif r.get("PrefixListId"):
        body["PrefixListId"] = r["PrefixListId"]
    else:
        ref = (r.get("ReferencedGroupInfo") or {}).get("GroupId", "")
        peer_segment = by_id.get(ref)
        # A peer that is one of nsgsync's groups reads as render writes it, a reference
        # by name that the writes resolve: so the same desired resources serve the diff
        # and the Terraform export, rendered once.
        shown = group_ref(cluster, peer_segment) if peer_segment else ref
        body["ReferencedGroupInfo"] = {"GroupId": shown}
    body["Description"] = r.get("Description", "") or ""
    body["Tags"] = _own_tags(r.get("Tags"))
    # moto drops the descriptions of group-reference rules; a description the API does
    # not report is not drift (a hand-made rule still differs by its missing tags).
    unreported = frozenset() if body["Description"] else frozenset({"Description"})
    return rule_resource(
        body,
        segment,
        peer_segment=peer_segment,
        cloud_id=r["SecurityGroupRuleId"],
        unreported=unreported,
        group=group,
    )


# --- the primitive writes ---


def create_group(client: Any, c: Change, *, progress: Progress) -> Created:
    assert c.new is not None and c.new.segment is not None
    body = c.new.body
    progress(f"+ creating security group {body['GroupName']}")
    reply = call(
        client,
        "create_security_group",
        GroupName=body["GroupName"],
        Description=body["Description"],
        VpcId=body["VpcId"],
        TagSpecifications=[{"ResourceType": "security-group", "Tags": body["Tags"]}],
    )
    gid = reply["GroupId"]
    # EC2 gives a new group an allow-all egress rule: the engine keeps it where the
    # segment's egress is open and revokes it (after the adds) where it is isolated.
    rules = call(
        client, "describe_security_group_rules", Filters=[{"Name": "group-id", "Values": [gid]}]
    )["SecurityGroupRules"]
    cluster = next(t["Value"] for t in body["Tags"] if t["Key"] == CLUSTER_TAG)
    segment = c.new.segment
    implicit = tuple(_rule_resource(r, segment, {gid: segment}, cluster) for r in rules)
    return Created(c.new.ident, gid, implicit=implicit)


def retag_group(client: Any, c: Change, gid: str, *, progress: Progress) -> None:
    assert c.new is not None
    old = dict(c.old.body) if c.old is not None else {}
    fixed = {k: v for k, v in c.new.body.items() if k != "Tags"}
    if {k: v for k, v in old.items() if k != "Tags"} != fixed:
        raise ProviderError(
            f"security group {gid} differs from what nsgsync wants in more than its tags; "
            "EC2 cannot change a group's name or description in place",
            hint=f"delete {gid} by hand (it carries nsgsync's tags), then apply again",
        )
    progress(f"~ retagging security group {gid}")
    call(client, "create_tags", Resources=[gid], Tags=c.new.body["Tags"])


def group_id(applied: Applied, segment: str | None, group: Ident | None = None) -> str:
    """The id of the group a rule lives in: its own group's (`group`), else the segment's."""
    gid = applied.ids.get(group or group_key(segment or ""))
    if gid is None:
        raise ProviderError(
            f"security group of segment {segment} does not exist; run plan again",
            hint="the cloud changed during apply; a new plan converges",
        )
    return gid


def _resolve_ref(body: Mapping[str, Any], applied: Applied, cluster: str) -> str:
    ref = str(body["ReferencedGroupInfo"]["GroupId"])
    if ref.startswith("${"):
        for ident, gid in applied.ids.items():
            if ident.kind == "sg" and group_ref(cluster, ident.name) == ref:
                return gid
        raise ProviderError(f"referenced group {ref[2:-1]} does not exist")
    return ref


def _permission(body: Mapping[str, Any], applied: Applied, cluster: str) -> dict[str, Any]:
    perm: dict[str, Any] = {"IpProtocol": body["IpProtocol"]}
    if body["IpProtocol"] in ("tcp", "udp"):
        perm["FromPort"], perm["ToPort"] = body["FromPort"], body["ToPort"]
    text = body["Description"]
    if "CidrIpv4" in body:
        perm["IpRanges"] = [{"CidrIp": body["CidrIpv4"], "Description": text}]
    elif "CidrIpv6" in body:
        perm["Ipv6Ranges"] = [{"CidrIpv6": body["CidrIpv6"], "Description": text}]
    else:
        gid = _resolve_ref(body, applied, cluster)
        perm["UserIdGroupPairs"] = [{"GroupId": gid, "Description": text}]
    return perm


def authorize(
    client: Any, batch: Sequence[Change], applied: Applied, cluster: str, *, progress: Progress
) -> None:
    """One call: the batch is one group's rules of one side (the engine batches so)."""
    first = batch[0].new
    assert first is not None
    gid = group_id(applied, first.segment)
    egress = bool(first.body["IsEgress"])
    perms = [_permission(c.new.body, applied, cluster) for c in batch if c.new is not None]
    side = "egress" if egress else "ingress"
    progress(f"+ authorizing {len(perms)} {side} rule(s) in {gid}")
    call(
        client,
        "authorize_security_group_egress" if egress else "authorize_security_group_ingress",
        GroupId=gid,
        IpPermissions=perms,
        TagSpecifications=[{"ResourceType": "security-group-rule", "Tags": first.body["Tags"]}],
    )


def modify(
    client: Any, batch: Sequence[Change], applied: Applied, cluster: str, *, progress: Progress
) -> None:
    """Rules changed in place, each under its own id: a changed description or tags, or
    (a pair) one rule replaced by another, count-neutral and with no moment between."""
    rules = []
    gid = ""
    for c in batch:
        assert c.old is not None and c.new is not None and c.old.cloud_id is not None
        body = c.new.body
        spec: dict[str, Any] = {
            "IpProtocol": body["IpProtocol"],
            "Description": body["Description"],
        }
        if body["IpProtocol"] in ("tcp", "udp"):
            spec["FromPort"], spec["ToPort"] = body["FromPort"], body["ToPort"]
        else:
            spec["FromPort"], spec["ToPort"] = -1, -1
        if "CidrIpv4" in body:
            spec["CidrIpv4"] = body["CidrIpv4"]
        elif "CidrIpv6" in body:
            spec["CidrIpv6"] = body["CidrIpv6"]
        else:
            spec["ReferencedGroupId"] = _resolve_ref(body, applied, cluster)
        gid = group_id(applied, c.new.segment)
        rules.append({"SecurityGroupRuleId": c.old.cloud_id, "SecurityGroupRule": spec})
    progress(f"~ updating {len(rules)} rule(s) in {gid}")
    call(client, "modify_security_group_rules", GroupId=gid, SecurityGroupRules=rules)
    for c in batch:
        assert c.old is not None and c.new is not None
        if list(c.old.body.get("Tags", [])) != list(c.new.body["Tags"]):
            call(client, "create_tags", Resources=[c.old.cloud_id], Tags=c.new.body["Tags"])


def revoke(client: Any, batch: Sequence[Change], applied: Applied, *, progress: Progress) -> None:
    first = batch[0].old
    assert first is not None
    # A copy's rules are revoked from the copy (the engine batches per group).
    gid = group_id(applied, first.segment, first.container)
    egress = bool(first.body.get("IsEgress"))
    ids = sorted(c.old.cloud_id for c in batch if c.old is not None and c.old.cloud_id)
    progress(f"- revoking {len(ids)} {'egress' if egress else 'ingress'} rule(s) in {gid}")
    call(
        client,
        "revoke_security_group_egress" if egress else "revoke_security_group_ingress",
        GroupId=gid,
        SecurityGroupRuleIds=ids,
    )


def delete_group(client: Any, c: Change, *, progress: Progress) -> None:
    assert c.old is not None and c.old.cloud_id is not None
    progress(f"- deleting security group {c.old.body.get('GroupName')} ({c.old.cloud_id})")
    call(client, "delete_security_group", GroupId=c.old.cloud_id)


__all__ = [
    "BATCH",
    "Ident",
    "Op",
    "authorize",
    "create_group",
    "delete_group",
    "make_client",
    "modify",
    "read",
    "retag_group",
    "revoke",
]
