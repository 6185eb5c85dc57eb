"""Groups that go away while network interfaces use them, and second groups carrying
nsgsync's tags, on moto's EC2 server.

The pods here are network interfaces with addresses and groups: a connection is allowed when
one of the source's groups lets it out and one of the destination's groups lets it in, read
back from EC2 after every write call (through the recording proxy of the safety tests), so
a group emptied under its interfaces would show as lost traffic.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from nsgsync.engine import apply_plan, make_plan
from nsgsync.errors import ProviderError
from nsgsync.intent import DirectionIntent, Intent, IntentProtocol, Rule, SegmentIntent
from nsgsync.model import Topology
from nsgsync.plan.markdown import render_markdown
from nsgsync.plan.text import render_plan
from nsgsync.provider import Adapter, configure
from nsgsync.sources.files import topology_from_mapping
from tests.aws.conftest import REGION, Ec2
from tests.test_engine_safety import recording_proxy

WEB, DB = "10.0.1.0/24", "10.0.2.0/24"
OUTSIDE = "192.0.2.1"
PORTS = [("tcp", 5432), ("tcp", 80), ("udp", 53)]
Probe = tuple[str, str, str, int]


def topology(vpc: str, db_name: str, *, web_name: str = "web", **aws: str) -> Topology:
    return topology_from_mapping(
        {
            "apiVersion": "nsgsync.io/v1alpha1",
            "kind": "Topology",
            "cluster": "life",
            "provider": "aws",
            "podCIDRs": ["10.0.0.0/16"],
            "segments": [
                {"name": web_name, "namespace": "web", "cidrs": [WEB]},
                {"name": db_name, "namespace": "db", "cidrs": [DB]},
            ],
            "aws": {"region": REGION, "vpcId": vpc, **aws},
        }
    )


def intent(db_name: str, web_name: str = "web") -> Intent:
    """web may reach the database on 5432 and nothing else; the database takes only that."""
    to_db = Rule(peers=(DB,), protocol=IntentProtocol.TCP, ports=((5432, 5432),), policies=("p",))
    from_web = Rule(peers=(WEB,), protocol=IntentProtocol.TCP, ports=((5432, 5432),), policies=())
    return Intent(
        cluster="life",
        segments=(
            SegmentIntent(
                name=web_name,
                cidrs=(WEB,),
                ingress=DirectionIntent(isolated=False, rules=()),
                egress=DirectionIntent(isolated=True, rules=(to_db,)),
            ),
            SegmentIntent(
                name=db_name,
                cidrs=(DB,),
                ingress=DirectionIntent(isolated=True, rules=(from_web,)),
                egress=DirectionIntent(isolated=False, rules=()),
            ),
        ),
    )


def _matches(
    rule: dict[str, Any], ip: str, groups: list[str] | None, proto: str, port: int
) -> bool:
    """Whether the rule takes the peer at `ip` (whose interface has `groups`)."""
    if rule["IpProtocol"] not in ("-1", proto):
        return False
    if rule["IpProtocol"] != "-1" and not rule["FromPort"] <= port <= rule["ToPort"]:
        return False
    ref = (rule.get("ReferencedGroupInfo") or {}).get("GroupId")
    if ref is not None:
        return ref in (groups or [])
    cidr = rule.get("CidrIpv4")
    return cidr is not None and ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)


def allowed(client: Any, vpc: str) -> set[Probe]:
    """Every probe between the interfaces (and a host outside) that their groups allow."""
    enis = client.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "NetworkInterfaces"
    ]
    hosts: list[tuple[str, list[str] | None]] = [
        (e["PrivateIpAddress"], [g["GroupId"] for g in e["Groups"]]) for e in enis
    ]
    ids = sorted({g for _, gs in hosts for g in gs or []})
    rules: dict[str, list[dict[str, Any]]] = {g: [] for g in ids}
    if ids:
        for r in client.describe_security_group_rules(
            Filters=[{"Name": "group-id", "Values": ids}], MaxResults=1000
        )["SecurityGroupRules"]:
            rules[r["GroupId"]].append(r)
    hosts.append((OUTSIDE, None))  # a host outside the VPC: no group of its own

    def lets(
        groups: list[str] | None,
        egress: bool,
        peer: tuple[str, list[str] | None],
        proto: str,
        port: int,
    ) -> bool:
        if groups is None:
            return True
        return any(
            r["IsEgress"] == egress and _matches(r, *peer, proto, port)
            for g in groups
            for r in rules.get(g, [])
        )

    return {
        (src[0], dst[0], proto, port)
        for src in hosts
        for dst in hosts
        for proto, port in PORTS
        if src[0] != dst[0]
        and lets(src[1], True, dst, proto, port)
        and lets(dst[1], False, src, proto, port)
    }


@dataclass
class World:
    ec2: Ec2
    session: Any  # an EC2 client through the recording proxy
    state: Any
    subnets: dict[str, str]

    def allows(self) -> set[Probe]:
        return allowed(self.ec2.client, self.ec2.vpc_id)

    def group(self, segment: str) -> str:
        found = self.ec2.client.describe_security_groups(
            Filters=[
                {"Name": "vpc-id", "Values": [self.ec2.vpc_id]},
                {"Name": "tag:nsgsync.io/segment", "Values": [segment]},
            ]
        )["SecurityGroups"]
        assert len(found) == 1, found
        return str(found[0]["GroupId"])

    def rules(self, gid: str) -> list[tuple[Any, ...]]:
        got = self.ec2.client.describe_security_group_rules(
            Filters=[{"Name": "group-id", "Values": [gid]}]
        )["SecurityGroupRules"]
        return sorted(
            (r["SecurityGroupRuleId"], r["IsEgress"], r["IpProtocol"], r.get("CidrIpv4"))
            for r in got
        )

    def exists(self, gid: str) -> bool:
        groups = self.ec2.client.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [self.ec2.vpc_id]}]
        )["SecurityGroups"]
        return gid in {g["GroupId"] for g in groups}

    def eni(self, ip: str, gid: str) -> str:
        subnet = self.subnets[WEB if ip.startswith("10.0.1.") else DB]
        made = self.ec2.client.create_network_interface(
            SubnetId=subnet, PrivateIpAddress=ip, Groups=[gid]
        )
        return str(made["NetworkInterface"]["NetworkInterfaceId"])

    def apply(self, adapter: Adapter, want: Intent) -> list[str]:
        """Plan and apply; after every write call, nothing allowed both before and after
        is blocked. Returns the cloud ids the plan destroys."""
        start = self.allows()
        moments: list[set[Probe]] = []
        planned = make_plan(adapter, want, session=self.session)
        self.state.after = lambda: moments.append(self.allows())
        try:
            apply_plan(adapter, planned, self.session, progress=lambda _: None)
        finally:
            self.state.after = lambda: None
        both = start & self.allows()
        for i, now in enumerate(moments):
            lost = sorted(both - now)
            assert not lost, f"after write {i + 1} of {len(moments)}, blocked: {lost[:5]}"
        return [
            str(c.old.cloud_id) for c in planned.plan.changes if c.old is not None and c.new is None
        ]


@pytest.fixture
def world(ec2: Ec2) -> Iterator[World]:
    def write(method: str, body: bytes) -> bool:
        return method == "POST" and b"Action=Describe" not in body

    subnets = {
        cidr: ec2.client.create_subnet(VpcId=ec2.vpc_id, CidrBlock=cidr)["Subnet"]["SubnetId"]
        for cidr in (WEB, DB)
    }
    with recording_proxy(ec2.endpoint, write) as (state, url):
        session = boto3.client(
            "ec2",
            region_name=REGION,
            endpoint_url=url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        yield World(ec2, session, state, subnets)


def adapter_for(world: World, db_name: str, web_name: str = "web", **aws: str) -> Adapter:
    return configure(topology(world.ec2.vpc_id, db_name, web_name=web_name, **aws))


def test_renamed_segment_retires_its_group_until_no_interface_uses_it(world: World) -> None:
    before = adapter_for(world, "db")
    world.apply(before, intent("db"))
    old = world.group("db")
    world.eni("10.0.1.10", world.group("web"))
    db_eni = world.eni("10.0.2.10", old)
    kept = world.rules(old)
    assert ("10.0.1.10", "10.0.2.10", "tcp", 5432) in world.allows()

    # The segment is renamed while an interface uses its group.
    after = adapter_for(world, "database")
    planned = make_plan(after, intent("database"), session=world.session).plan
    assert [(r.key, r.cloud_id, r.users, r.rules) for r in planned.retiring] == [
        ("sg/db", old, 1, len(kept))
    ]
    assert not [c.key for c in planned.changes if c.resource.segment == "db"]
    doc = planned.to_dict()
    assert doc["retiring"] == [
        {
            "type": "security-group",
            "key": "sg/db",
            "segment": "db",
            "id": old,
            "users": 1,
            "usedBy": "network interfaces",
            "rules": len(kept),
        }
    ]
    assert list(doc).index("retiring") < list(doc).index("changes")
    text = render_plan(planned)
    assert f"sg/db (segment db) [{old}] is retiring: 1 network interfaces still use it" in text
    assert "sg/database" in text and "will be created" in text
    markdown = render_markdown(planned)
    assert f"> retiring: security-group `sg/db` ({old}): 1 network interfaces" in markdown

    assert world.apply(after, intent("database")) == []
    assert world.exists(old) and world.rules(old) == kept
    new = world.group("database")
    again = make_plan(after, intent("database"), session=world.session).plan
    assert again.empty and [r.users for r in again.retiring] == [1]
    assert "No changes." in render_plan(again) and "is retiring" in render_plan(again)

    # The interface moves to the replacement: the next apply deletes the old group.
    world.ec2.client.modify_network_interface_attribute(NetworkInterfaceId=db_eni, Groups=[new])
    assert ("10.0.1.10", "10.0.2.10", "tcp", 5432) in world.allows()
    destroyed = world.apply(after, intent("database"))
    assert old in destroyed and set(destroyed) <= {old, *(r[0] for r in kept)}
    assert not world.exists(old)
    last = make_plan(after, intent("database"), session=world.session).plan
    assert last.empty and last.retiring == ()
    assert "retiring" not in last.to_dict()


def test_rules_of_other_groups_that_reference_a_retiring_group_stay(world: World) -> None:
    mode = {"peerMode": "security-group"}
    before = adapter_for(world, "db", **mode)
    world.apply(before, intent("db"))
    old_web, db = world.group("web"), world.group("db")
    refs = [r for r in world.rules(db) if not r[1]]
    world.eni("10.0.1.10", old_web)
    world.eni("10.0.2.10", db)
    assert ("10.0.1.10", "10.0.2.10", "tcp", 5432) in world.allows()

    after = adapter_for(world, "db", "frontend", **mode)
    planned = make_plan(after, intent("db", "frontend"), session=world.session).plan
    assert [(r.key, r.users) for r in planned.retiring] == [("sg/web", 1)]
    assert not [c.key for c in planned.changes if c.op.value == "destroy"]
    world.apply(after, intent("db", "frontend"))
    # db still lets the old group's interface in, beside the new group's rule.
    assert set(refs) <= set(world.rules(db))
    assert ("10.0.1.10", "10.0.2.10", "tcp", 5432) in world.allows()


def test_removed_segment_retires_too_and_destroy_keeps_used_groups(world: World) -> None:
    adapter = adapter_for(world, "db")
    world.apply(adapter, intent("db"))
    web, db = world.group("web"), world.group("db")
    world.eni("10.0.2.10", db)
    nothing = Intent(cluster="life", segments=())
    planned = make_plan(adapter, nothing, session=world.session, destroy=True).plan
    assert [(r.key, r.users) for r in planned.retiring] == [("sg/db", 1)]
    assert {c.key for c in planned.changes if c.resource.type == "security-group"} == {"sg/web"}
    world.apply(adapter, nothing)  # (apply of the empty intent: the same plan)
    assert world.exists(db) and not world.exists(web)


def _copy(world: World, segment: str, *, name: str) -> str:
    """A second group carrying nsgsync's tags for `segment`, with a rule of its own."""
    gid = world.ec2.client.create_security_group(
        GroupName=name,
        Description="a copy",
        VpcId=world.ec2.vpc_id,
        TagSpecifications=[
            {
                "ResourceType": "security-group",
                "Tags": [
                    {"Key": "nsgsync.io/cluster", "Value": "life"},
                    {"Key": "nsgsync.io/segment", "Value": segment},
                ],
            }
        ],
    )["GroupId"]
    world.ec2.client.authorize_security_group_ingress(
        GroupId=gid,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": WEB}]}
        ],
    )
    return str(gid)


def _owned(world: World, segment: str) -> list[str]:
    return sorted(
        g["GroupId"]
        for g in world.ec2.client.describe_security_groups(
            Filters=[{"Name": "tag:nsgsync.io/segment", "Values": [segment]}]
        )["SecurityGroups"]
    )


def test_a_copy_of_a_group_is_destroyed_and_never_written_into(world: World) -> None:
    adapter = adapter_for(world, "db")
    world.apply(adapter, intent("db"))
    original = world.group("db")
    kept = world.rules(original)
    world.eni("10.0.2.10", original)
    world.eni("10.0.1.10", world.group("web"))
    copy = _copy(world, "db", name="restored-db")
    copy_rules = world.rules(copy)

    planned = make_plan(adapter, intent("db"), session=world.session).plan
    touched = {c.key for c in planned.changes}
    assert f"sg/db/{copy}" in touched
    assert all(c.op.value == "destroy" for c in planned.changes), touched
    # Every change is to the copy: the group interfaces use is left alone.
    assert {c.old.cloud_id for c in planned.changes if c.old is not None} == {
        copy,
        *(r[0] for r in copy_rules),
    }
    world.apply(adapter, intent("db"))
    assert _owned(world, "db") == [original]
    assert world.rules(original) == kept
    assert make_plan(adapter, intent("db"), session=world.session).plan.empty


def test_the_copy_that_interfaces_use_is_kept_and_the_unused_original_goes(world: World) -> None:
    adapter = adapter_for(world, "db")
    world.apply(adapter, intent("db"))
    original = world.group("db")
    copy = _copy(world, "db", name="restored-db")
    world.eni("10.0.2.10", copy)
    world.apply(adapter, intent("db"))
    assert _owned(world, "db") == [copy]
    # The copy now holds the segment's rules (its own rule revoked), under its own name.
    assert {r[3] for r in world.rules(copy) if not r[1]} == {WEB}
    assert {r[2] for r in world.rules(copy) if not r[1]} == {"tcp"}
    assert not world.exists(original)
    assert make_plan(adapter, intent("db"), session=world.session).plan.empty


def test_two_used_groups_for_one_segment_are_an_error_naming_both(world: World) -> None:
    adapter = adapter_for(world, "db")
    world.apply(adapter, intent("db"))
    original = world.group("db")
    copy = _copy(world, "db", name="restored-db")
    world.eni("10.0.2.10", original)
    world.eni("10.0.2.11", copy)
    with pytest.raises(ProviderError) as caught:
        make_plan(adapter, intent("db"), session=world.session)
    message = str(caught.value)
    assert original in message and copy in message and "segment db" in message
    assert "remove the nsgsync.io/ tags" in message


def test_without_interfaces_the_group_with_nsgsyncs_name_is_kept(world: World) -> None:
    adapter = adapter_for(world, "db")
    world.apply(adapter, intent("db"))
    original = world.group("db")
    copy = _copy(world, "db", name="a-restored-db")  # sorts before nsgsync-life-db
    world.apply(adapter, intent("db"))
    assert _owned(world, "db") == [original] and not world.exists(copy)
