"""The EC2 side: read what nsgsync owns, and the primitive writes the engine orders.

Ownership: a group is nsgsync's when it carries the cluster tag in the topology's VPC;
every rule inside such a group is nsgsync's (a hand-made one is drift, reverted). Groups
without the tag are never read, changed or deleted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from nsgsync.errors import CloudError, Failure, ProviderError, excerpt
from nsgsync.plan import Change, Ident, Op, Resource
from nsgsync.provider import CLUSTER_TAG, SEGMENT_TAG, Applied, Created, Progress, Timeouts
from nsgsync_aws.config import AwsConfig
from nsgsync_aws.render import (
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


def make_client(region: str, *, timeouts: Timeouts | None = None) -> Any:
    """An EC2 client; boto3 finds credentials and honours AWS_ENDPOINT_URL itself. Every
    attempt of a call times out in seconds (botocore's default waits 60 s to read, then
    retries), and the client never waits past the run's deadline."""
    check_endpoint_settings()
    t = timeouts or Timeouts()
    try:
        client = boto3.client(
            "ec2",
            region_name=region,
            config=Config(
                connect_timeout=t.connect_timeout(),
                read_timeout=t.read_timeout(),
                retries={"mode": "adaptive", "max_attempts": t.attempts},
            ),
        )
    except ValueError as exc:  # an endpoint_url in the AWS config file, the one left
        raise ProviderError(
            f"cannot make an EC2 client: {exc}",
            hint="check endpoint_url in the AWS profile (~/.aws/config); nothing was changed",
        ) from exc
    return client


def guard(client: Any, timeouts: Timeouts, *, progress: Progress | None = None) -> Any:
    """Hooks on `client`: stop at the run's deadline before each attempt, refuse a reply that
    is not the EC2 API's (an empty body, an HTML page) with one line naming the endpoint,
    and (with `progress`) say every few dozen calls how many were made."""
    endpoint = client.meta.endpoint_url
    made = [0]

    def before_send(request: Any, **_: Any) -> None:
        timeouts.check(f"an EC2 call to {endpoint}")

    def before_parse(operation_model: Any, response_dict: Mapping[str, Any], **_: Any) -> None:
        if int(response_dict.get("status_code") or 0) >= 300:
            return  # an error status: botocore retries it (5xx) or reports its code
        body = response_dict.get("body") or b""
        headers = {k.lower(): v for k, v in (response_dict.get("headers") or {}).items()}
        kind = str(headers.get("content-type", ""))
        if not body.strip():
            what = "an empty reply"
        elif "html" in kind or body.lstrip()[:15].lower() in (b"<!doctype html>", b"<html>"):
            what = "an HTML page"
        elif body.lstrip()[:1] != b"<":
            what = f"a reply of type {excerpt(kind or 'unknown', limit=40)}"
        else:
            return
        raise CloudError(
            f"EC2 {operation_model.name} at {endpoint} answered HTTP "
            f"{response_dict.get('status_code')} with {what}, not the EC2 API's XML",
            failure=Failure.TRANSPORT,
        )

    def counted(**_: Any) -> None:
        made[0] += 1
        if progress is not None and made[0] % 25 == 0:
            progress(f"... {made[0]} EC2 calls made")

    events = client.meta.events
    events.register("before-send.ec2.*", before_send, unique_id="nsgsync-deadline")
    events.register_first("before-parse.ec2.*", before_parse, unique_id="nsgsync-not-the-api")
    events.register("before-call.ec2.*", counted, unique_id="nsgsync-count")
    return client


# EC2's error codes by what they mean for the run (docs/operating-in-production.md).
_THROTTLING = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
    }
)
_PERMISSION = frozenset(
    {
        "UnauthorizedOperation",
        "AccessDenied",
        "AccessDeniedException",
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "ExpiredToken",
        "RequestExpired",
        "OptInRequired",
        "Blocked",
        "UnrecognizedClientException",
        "MissingAuthenticationToken",
    }
)
_SERVER = frozenset({"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable"})
_DEPENDENCY = frozenset({"DependencyViolation", "InvalidGroup.InUse"})
# What exists or is gone although the snapshot said otherwise: the cloud changed under the
# run. (After a retry these are handled before they get here: see `_done_already`.)
_CONFLICT = frozenset(
    {
        "InvalidPermission.Duplicate",
        "InvalidPermission.NotFound",
        "InvalidGroup.NotFound",
        "InvalidSecurityGroupRuleId.NotFound",
    }
)
_HINTS = {
    Failure.QUOTA: "an EC2 quota is reached (rules per security group, groups per network "
    "interface, VPC or Region), and running again fails the same way: raise it in Service "
    "Quotas (and aws.maxRulesPerGroup with it), or give the segments fewer, larger CIDRs",
    Failure.PERMISSION: "the AWS credentials in use (`aws sts get-caller-identity` says whose) "
    "lack this call, or are missing or expired: grant the IAM policy in docs/aws.md",
    Failure.COLLISION: "a security group of that name exists in the VPC without nsgsync's "
    "tags, so nsgsync will not touch it: rename or delete it by hand, then apply again",
    Failure.DEPENDENCY: "a network interface, or a rule of another group, still uses the "
    "security group; running again fails the same way until nothing uses it "
    "(docs/operating-in-production.md)",
}


def classify(code: str, status: int) -> Failure:
    if code in _THROTTLING or status == 429:
        return Failure.THROTTLING
    if code in _PERMISSION or status in (401, 403):
        return Failure.PERMISSION
    if code in _SERVER or status >= 500 or (code.isdigit() and int(code) >= 500):
        return Failure.TRANSPORT
    if code.endswith("LimitExceeded"):
        return Failure.QUOTA
    if code in _DEPENDENCY:
        return Failure.DEPENDENCY
    if code == "InvalidGroup.Duplicate":
        return Failure.COLLISION
    if code in _CONFLICT:
        return Failure.CONFLICT
    return Failure.INVALID


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def retried(exc: ClientError) -> bool:
    """Whether botocore sent the call more than once: then an earlier attempt may have taken
    effect although its reply was lost."""
    return int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0) > 0


def cloud_error(client: Any, what: str, exc: Exception) -> CloudError:
    """One line and a true hint for a failed EC2 call, by what kind of failure it is."""
    meta = getattr(client, "meta", None)
    endpoint = getattr(meta, "endpoint_url", "the EC2 endpoint")
    # The API's own name (CreateSecurityGroup), as EC2's documentation and CloudTrail say it.
    what = dict(getattr(meta, "method_to_api_mapping", {})).get(what, what)
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        failure = classify(code, status)
        text = excerpt(str(exc.response.get("Error", {}).get("Message", "")), limit=200)
        where = f" at {endpoint}" if failure is Failure.TRANSPORT else ""
        hint = _HINTS.get(failure, "")
        if code == "InvalidVpcID.NotFound":
            hint = "check aws.vpcId and aws.region in the topology; nothing was changed"
        return CloudError(
            f"EC2 {what}{where} failed ({failure}): {code}: {text.strip(chr(39))}",
            failure=failure,
            hint=hint,
            code=code,
        )
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return CloudError(
            f"EC2 {what}: no AWS credentials found",
            failure=Failure.PERMISSION,
            hint="give nsgsync credentials (IRSA or EKS Pod Identity in a cluster, a profile "
            "or AWS_ACCESS_KEY_ID elsewhere; see docs/aws.md); `nsgsync plan --offline` needs "
            "none",
        )
    if isinstance(exc, ResponseParserError):
        return CloudError(
            f"EC2 {what} at {endpoint} answered with a reply that is not the EC2 API's",
            failure=Failure.TRANSPORT,
        )
    if isinstance(exc, HTTPClientError):
        why = type(exc).__name__
        if isinstance(exc, (ReadTimeoutError, ConnectTimeoutError)):
            why = "no answer in time"
        elif isinstance(exc, EndpointConnectionError):
            why = "cannot connect"
        elif isinstance(exc, ConnectionClosedError):
            why = "the connection was closed before an answer"
        return CloudError(f"EC2 {what} at {endpoint} failed: {why}", failure=Failure.TRANSPORT)
    return CloudError(
        f"EC2 {what} failed: {excerpt(str(exc), limit=200)}",
        failure=Failure.INVALID,
        hint="check the region and the AWS configuration in use; run with --debug for more",
    )


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


def call(
    client: Any, what: str, *, done: Callable[[ClientError], bool] | None = None, **kwargs: Any
) -> Any:
    """One EC2 call. `done` is asked about an error that may mean an earlier attempt of this
    call took effect (a lost reply): when it says the cloud is as the call wants, the call
    counts as made and returns None."""
    try:
        return getattr(client, what)(**kwargs)
    except ClientError as exc:
        if done is not None and done(exc):
            return None
        raise cloud_error(client, what, exc) from exc
    except (BotoCoreError, ResponseParserError) as exc:
        raise cloud_error(client, what, exc) from exc


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    try:
        for page in client.get_paginator(operation).paginate(**kwargs):
            yield from page.get(key, [])
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        raise cloud_error(client, operation, exc) from exc


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
    found: list[str] = []

    def made_before(exc: ClientError) -> bool:
        # A retry answered Duplicate: the lost first attempt made the group, with its tags
        # (the create takes them in the same call); a group of that name without them is
        # someone else's, which the first attempt of a call never reaches as done.
        if error_code(exc) != "InvalidGroup.Duplicate" or not retried(exc):
            return False
        found.extend(_own_group_named(client, body))
        return bool(found)

    reply = call(
        client,
        "create_security_group",
        done=made_before,
        GroupName=body["GroupName"],
        Description=body["Description"],
        VpcId=body["VpcId"],
        TagSpecifications=[{"ResourceType": "security-group", "Tags": body["Tags"]}],
    )
    if reply is None:
        progress(f"  the lost reply's create took effect: {found[0]}")
    gid = found[0] if reply is None else reply["GroupId"]
    # EC2 gives a new group an allow-all egress rule: the engine keeps it where the
    # segment's egress is open and revokes it (after the adds) where it is isolated.
    rules = call(
        client, "describe_security_group_rules", Filters=[{"Name": "group-id", "Values": [gid]}]
    )["SecurityGroupRules"]
    cluster = next(t["Value"] for t in body["Tags"] if t["Key"] == CLUSTER_TAG)
    segment = c.new.segment
    implicit = tuple(_rule_resource(r, segment, {gid: segment}, cluster) for r in rules)
    return Created(c.new.ident, gid, implicit=implicit)


def _own_group_named(client: Any, body: Mapping[str, Any]) -> list[str]:
    """The id of the group named as `body` in its VPC, if it carries all of body's tags."""
    groups = call(
        client,
        "describe_security_groups",
        Filters=[
            {"Name": "vpc-id", "Values": [body["VpcId"]]},
            {"Name": "group-name", "Values": [body["GroupName"]]},
        ],
    )["SecurityGroups"]
    want = _own_tags(body["Tags"])
    return [g["GroupId"] for g in groups if _own_tags(g.get("Tags")) == want]


def _rules_of(client: Any, gid: str) -> list[dict[str, Any]]:
    return list(
        _pages(
            client,
            "describe_security_group_rules",
            "SecurityGroupRules",
            Filters=[{"Name": "group-id", "Values": [gid]}],
        )
    )


def _match_key(rule: Mapping[str, Any]) -> tuple[object, ...]:
    """What makes a rule the same rule to EC2: side, protocol, ports and peer."""
    proto = str(rule["IpProtocol"])
    ports = (rule.get("FromPort"), rule.get("ToPort")) if proto in ("tcp", "udp") else None
    peer = (
        rule.get("CidrIpv4")
        or rule.get("CidrIpv6")
        or rule.get("PrefixListId")
        or (rule.get("ReferencedGroupInfo") or {}).get("GroupId")
    )
    return (bool(rule["IsEgress"]), proto, ports, peer)


def _permission_keys(perm: Mapping[str, Any], egress: bool) -> tuple[object, ...]:
    flat: dict[str, Any] = {"IsEgress": egress, **perm}
    for key, field in (("IpRanges", "CidrIp"), ("Ipv6Ranges", "CidrIpv6")):
        for r in perm.get(key, []):
            flat["CidrIpv6" if field == "CidrIpv6" else "CidrIpv4"] = r[field]
    for pair in perm.get("UserIdGroupPairs", []):
        flat["ReferencedGroupInfo"] = {"GroupId": pair["GroupId"]}
    return _match_key(flat)


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
    elif body["IpProtocol"] != "-1":
        # A protocol without ports (SCTP, "132") opens all of them; EC2 reports such a rule
        # with ports -1 and takes it so (moto answers 500 when they are absent).
        perm["FromPort"], perm["ToPort"] = -1, -1
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

    def all_there(exc: ClientError) -> bool:
        # EC2 adds a call's rules all or none. A retry answered Duplicate is the lost
        # first attempt's work when every rule of the call is now in the group. On a first
        # attempt, Duplicate means the group holds a rule the plan did not see: the cloud
        # changed since it was read, nothing of this call was added, and the run stops.
        if error_code(exc) != "InvalidPermission.Duplicate" or not retried(exc):
            return False
        have = {_match_key(r) for r in _rules_of(client, gid)}
        return all(_permission_keys(p, egress) in have for p in perms)

    if (
        call(
            client,
            "authorize_security_group_egress" if egress else "authorize_security_group_ingress",
            done=all_there,
            GroupId=gid,
            IpPermissions=perms,
            TagSpecifications=[{"ResourceType": "security-group-rule", "Tags": first.body["Tags"]}],
        )
        is None
    ):
        progress(f"  the lost reply's authorize took effect: all {len(perms)} rule(s) are in {gid}")


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

    def all_gone(exc: ClientError) -> bool:
        # As for adds: after a retry, NotFound is the lost attempt's work when none of the
        # rules is left; on a first attempt it means the plan's snapshot is stale.
        if not error_code(exc).endswith("NotFound") or not retried(exc):
            return False
        return not {r["SecurityGroupRuleId"] for r in _rules_of(client, gid)} & set(ids)

    if (
        call(
            client,
            "revoke_security_group_egress" if egress else "revoke_security_group_ingress",
            done=all_gone,
            GroupId=gid,
            SecurityGroupRuleIds=ids,
        )
        is None
    ):
        progress(f"  the lost reply's revoke took effect: the {len(ids)} rule(s) are gone")


def delete_group(client: Any, c: Change, *, progress: Progress) -> None:
    assert c.old is not None and c.old.cloud_id is not None
    progress(f"- deleting security group {c.old.body.get('GroupName')} ({c.old.cloud_id})")

    def gone(exc: ClientError) -> bool:
        return error_code(exc) == "InvalidGroup.NotFound" and retried(exc)

    if call(client, "delete_security_group", done=gone, GroupId=c.old.cloud_id) is None:
        progress(f"  the lost reply's delete took effect: {c.old.cloud_id} is gone")


__all__ = [
    "BATCH",
    "Ident",
    "Op",
    "authorize",
    "classify",
    "create_group",
    "delete_group",
    "guard",
    "make_client",
    "modify",
    "read",
    "retag_group",
    "revoke",
]
