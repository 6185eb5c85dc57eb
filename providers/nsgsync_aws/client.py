"""The EC2 side: read what nsgsync owns, bind group ids, apply a plan.

Ownership: a group is nsgsync's when it carries the cluster tag in the topology's VPC;
every rule inside such a group is nsgsync's (a hand-made one is drift, reverted). Groups
without the tag are never read, changed or deleted.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from nsgsync.errors import ProviderError, excerpt
from nsgsync.model import Topology
from nsgsync.plan import Change, Op, Plan, Resource
from nsgsync.provider import Progress
from nsgsync_aws.config import AwsConfig, load_config
from nsgsync_aws.render import (
    CLUSTER_TAG,
    GROUP,
    RULE,
    SEGMENT_TAG,
    group_key,
    group_name,
    group_ref,
    rule_key,
)

_BATCH = 50  # IpPermissions / rule ids per call: well under EC2's request limits
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


class AwsConnection:
    def __init__(self, topology: Topology, client: Any) -> None:
        self.topology = topology
        self.config: AwsConfig = load_config(topology)[0]
        self.client = client
        self.cluster = topology.cluster
        self.group_ids: dict[str, str] = {}  # segment -> sg-...

    # --- read ---

    def _call(self, what: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, what)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise ProviderError(
                f"EC2 {what} failed: {exc}",
                hint="check credentials, region and the IAM policy in docs/aws.md; "
                "a run that stopped midway is completed by the next apply",
            ) from None

    def _pages(self, operation: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        try:
            for page in self.client.get_paginator(operation).paginate(**kwargs):
                yield from page.get(key, [])
        except (ClientError, BotoCoreError) as exc:
            raise ProviderError(
                f"EC2 {operation} failed: {exc}",
                hint="check credentials, region and the IAM policy in docs/aws.md",
            ) from None

    def read(self) -> list[Resource]:
        out: list[Resource] = []
        groups: dict[str, str] = {}
        by_id: dict[str, str] = {}
        for g in self._pages(
            "describe_security_groups",
            "SecurityGroups",
            Filters=[
                {"Name": "vpc-id", "Values": [self.config.vpc_id]},
                {"Name": f"tag:{CLUSTER_TAG}", "Values": [self.cluster]},
            ],
            PaginationConfig={"PageSize": 1000},
        ):
            tags = {t["Key"]: t["Value"] for t in g.get("Tags", [])}
            segment = tags.get(SEGMENT_TAG)
            if not segment:
                continue
            groups[segment] = g["GroupId"]
            by_id[g["GroupId"]] = segment
            body = {
                "GroupName": g["GroupName"],
                "VpcId": g["VpcId"],
                "Description": g.get("Description", ""),
                "Tags": _own_tags(g.get("Tags")),
            }
            out.append(Resource(GROUP, group_key(segment), body, segment, g["GroupId"]))
        self.group_ids = groups
        ids = sorted(by_id)
        for chunk in _chunks(ids, _FILTER_VALUES):
            for r in self._pages(
                "describe_security_group_rules",
                "SecurityGroupRules",
                Filters=[{"Name": "group-id", "Values": list(chunk)}],
                PaginationConfig={"PageSize": 1000},
            ):
                out.append(self._rule_resource(r, by_id))
        return out

    def _rule_resource(self, r: dict[str, Any], by_id: dict[str, str]) -> Resource:
        segment = by_id[r["GroupId"]]
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
            body["ReferencedGroupInfo"] = {"GroupId": ref}
            peer_segment = by_id.get(ref)
        body["Description"] = r.get("Description", "") or ""
        body["Tags"] = _own_tags(r.get("Tags"))
        # moto drops the descriptions of group-reference rules; a description the API does
        # not report is not drift (a hand-made rule still differs by its missing tags).
        unreported = frozenset() if body["Description"] else frozenset({"Description"})
        return Resource(
            RULE,
            rule_key(segment, body, peer_segment),
            body,
            segment,
            r["SecurityGroupRuleId"],
            unreported,
        )

    def bind(self, desired: Sequence[Resource], actual: Sequence[Resource]) -> list[Resource]:
        ids = {
            r.segment: r.cloud_id for r in actual if r.type == GROUP and r.segment and r.cloud_id
        }
        refs = {group_ref(self.cluster, seg): gid for seg, gid in ids.items()}
        out = []
        for r in desired:
            ref = r.body.get("ReferencedGroupInfo", {}).get("GroupId") if r.type == RULE else None
            if ref in refs:
                body = {**r.body, "ReferencedGroupInfo": {"GroupId": refs[ref]}}
                r = Resource(r.type, r.key, body, r.segment, r.cloud_id)
            out.append(r)
        return out

    # --- apply: groups, then new rules, then changed ones, then removals ---

    def apply(self, plan: Plan, *, progress: Progress) -> None:
        by_op: dict[tuple[Op, str], list[Change]] = defaultdict(list)
        for c in plan.changes:
            by_op[(c.op, c.resource.type)].append(c)
        defaults: dict[str, str] = {}  # segment -> id of a new group's default egress rule
        for c in by_op[(Op.ADD, GROUP)]:
            self._create_group(c, defaults, progress)
        # A new group comes with AWS's allow-all egress rule: adopt it where the segment's
        # egress is open, revoke it (after the adds) where egress is isolated.
        adopt = {f"sgr/{seg}/out/-1/all/0.0.0.0/0": rid for seg, rid in defaults.items()}
        adopted = self._add_rules(by_op[(Op.ADD, RULE)], adopt, progress)
        for c in by_op[(Op.CHANGE, GROUP)]:
            self._retag(c.old.cloud_id if c.old is not None else None, c, progress)
        self._change_rules(by_op[(Op.CHANGE, RULE)], progress)
        stale = [c.old for c in by_op[(Op.DESTROY, RULE)] if c.old is not None]
        stale += [
            Resource(RULE, "default-egress", {"IsEgress": True}, seg, rid)
            for seg, rid in defaults.items()
            if rid not in adopted
        ]
        self._revoke(stale, progress)
        for c in by_op[(Op.DESTROY, GROUP)]:
            assert c.old is not None and c.old.cloud_id is not None
            progress(f"- deleting security group {c.old.body.get('GroupName')} ({c.old.cloud_id})")
            self._call("delete_security_group", GroupId=c.old.cloud_id)
            self.group_ids.pop(c.resource.segment or "", None)

    def _create_group(self, c: Change, defaults: dict[str, str], progress: Progress) -> None:
        assert c.new is not None and c.new.segment is not None
        body = c.new.body
        progress(f"+ creating security group {body['GroupName']}")
        reply = self._call(
            "create_security_group",
            GroupName=body["GroupName"],
            Description=body["Description"],
            VpcId=body["VpcId"],
            TagSpecifications=[{"ResourceType": "security-group", "Tags": body["Tags"]}],
        )
        gid = reply["GroupId"]
        self.group_ids[c.new.segment] = gid
        rules = self._call(
            "describe_security_group_rules", Filters=[{"Name": "group-id", "Values": [gid]}]
        )["SecurityGroupRules"]
        for r in rules:
            if (
                r.get("IsEgress")
                and r.get("IpProtocol") == "-1"
                and r.get("CidrIpv4") == "0.0.0.0/0"
            ):
                defaults[c.new.segment] = r["SecurityGroupRuleId"]

    def _group_id(self, segment: str | None) -> str:
        gid = self.group_ids.get(segment or "")
        if gid is None:
            raise ProviderError(
                f"security group of segment {segment} does not exist; run plan again",
                hint="the cloud changed during apply; a new plan converges",
            )
        return gid

    def _resolve_ref(self, body: dict[str, Any]) -> str:
        ref = str(body["ReferencedGroupInfo"]["GroupId"])
        if ref.startswith("${"):
            name = ref[2:-1]
            for seg, gid in self.group_ids.items():
                if group_name(self.cluster, seg) == name:
                    return gid
            raise ProviderError(f"referenced group {name} does not exist")
        return ref

    def _permission(self, body: dict[str, Any]) -> dict[str, Any]:
        perm: dict[str, Any] = {"IpProtocol": body["IpProtocol"]}
        if body["IpProtocol"] in ("tcp", "udp"):
            perm["FromPort"], perm["ToPort"] = body["FromPort"], body["ToPort"]
        text = body["Description"]
        if "CidrIpv4" in body:
            perm["IpRanges"] = [{"CidrIp": body["CidrIpv4"], "Description": text}]
        elif "CidrIpv6" in body:
            perm["Ipv6Ranges"] = [{"CidrIpv6": body["CidrIpv6"], "Description": text}]
        else:
            perm["UserIdGroupPairs"] = [{"GroupId": self._resolve_ref(body), "Description": text}]
        return perm

    def _add_rules(
        self, changes: list[Change], adopt: dict[str, str], progress: Progress
    ) -> set[str]:
        """Authorize new rules in batches; returns the ids of default rules adopted."""
        adopted: set[str] = set()
        batches: dict[tuple[str, bool], list[dict[str, Any]]] = defaultdict(list)
        tags: dict[tuple[str, bool], list[dict[str, str]]] = {}
        for c in changes:
            assert c.new is not None
            body = dict(c.new.body)
            if c.key in adopt:
                # AWS made this rule with the group; give it nsgsync's description and tags.
                old = Resource(RULE, c.key, {}, c.new.segment, adopt[c.key])
                self._change_rules([Change(Op.CHANGE, c.key, old, c.new)], progress)
                adopted.add(adopt[c.key])
                continue
            gid = self._group_id(c.new.segment)
            batches[(gid, body["IsEgress"])].append(self._permission(body))
            tags[(gid, body["IsEgress"])] = body["Tags"]
        for (gid, egress), perms in sorted(batches.items()):
            verb = (
                "authorize_security_group_egress" if egress else "authorize_security_group_ingress"
            )
            for chunk in _chunks(perms, _BATCH):
                side = "egress" if egress else "ingress"
                progress(f"+ authorizing {len(chunk)} {side} rule(s) in {gid}")
                self._call(
                    verb,
                    GroupId=gid,
                    IpPermissions=list(chunk),
                    TagSpecifications=[
                        {"ResourceType": "security-group-rule", "Tags": tags[(gid, egress)]}
                    ],
                )
        return adopted

    def _change_rules(self, changes: list[Change], progress: Progress) -> None:
        by_group: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for c in changes:
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
                spec["ReferencedGroupId"] = self._resolve_ref(dict(body))
            by_group[self._group_id(c.new.segment)].append(
                {"SecurityGroupRuleId": c.old.cloud_id, "SecurityGroupRule": spec}
            )
            if c.old.body.get("Tags") != body["Tags"]:
                self._call("create_tags", Resources=[c.old.cloud_id], Tags=body["Tags"])
        for gid, rules in sorted(by_group.items()):
            for chunk in _chunks(rules, _BATCH):
                progress(f"~ updating {len(chunk)} rule(s) in {gid}")
                self._call(
                    "modify_security_group_rules", GroupId=gid, SecurityGroupRules=list(chunk)
                )

    def _retag(self, gid: str | None, c: Change, progress: Progress) -> None:
        assert c.new is not None and gid is not None
        old = dict(c.old.body) if c.old is not None else {}
        fixed = {k: v for k, v in c.new.body.items() if k != "Tags"}
        if {k: v for k, v in old.items() if k != "Tags"} != fixed:
            raise ProviderError(
                f"security group {gid} differs from what nsgsync wants in more than its tags; "
                "EC2 cannot change a group's name or description in place",
                hint=f"delete {gid} by hand (it carries nsgsync's tags), then apply again",
            )
        progress(f"~ retagging security group {gid}")
        self._call("create_tags", Resources=[gid], Tags=c.new.body["Tags"])

    def _revoke(self, stale: list[Resource], progress: Progress) -> None:
        by_group: dict[tuple[str, bool], list[str]] = defaultdict(list)
        for r in stale:
            assert r.cloud_id is not None
            by_group[(self._group_id(r.segment), bool(r.body.get("IsEgress")))].append(r.cloud_id)
        for (gid, egress), ids in sorted(by_group.items()):
            verb = "revoke_security_group_egress" if egress else "revoke_security_group_ingress"
            for chunk in _chunks(sorted(ids), _BATCH):
                progress(
                    f"- revoking {len(chunk)} {'egress' if egress else 'ingress'} rule(s) in {gid}"
                )
                self._call(verb, GroupId=gid, SecurityGroupRuleIds=list(chunk))
