"""Tests of the ARM stand-in, driven only through the real azure-mgmt-network client."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import (
    NetworkSecurityGroup,
    NetworkSecurityGroupPropertiesFormat,
    SecurityRule,
    SecurityRulePropertiesFormat,
    Subnet,
    SubnetPropertiesFormat,
    TagsObject,
)

from .azure_arm import FakeArm, make_client, recorded_body

SUB = "11111111-2222-4333-8444-555555555555"
RG = "nsgsync-test"
NSG = "aks-nodes-nsg"
PROVIDER = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network"
NSG_ID = f"{PROVIDER}/networkSecurityGroups/{NSG}"
NSG_PATH = NSG_ID
RULES_PATH = f"{NSG_PATH}/securityRules"


@pytest.fixture
def fake() -> FakeArm:
    return FakeArm()


@pytest.fixture
def client(fake: FakeArm) -> NetworkManagementClient:
    return make_client(fake, SUB)


def _rule(priority: int = 900, direction: str = "Inbound", **overrides: Any) -> SecurityRule:
    fields: dict[str, Any] = {
        "description": "managed-by=nsgsync policy=shop/web",
        "protocol": "Tcp",
        "access": "Allow",
        "priority": priority,
        "direction": direction,
        "source_address_prefixes": ["10.20.0.0/16", "10.21.4.0/24"],
        "source_port_range": "*",
        "destination_address_prefix": "10.20.8.0/22",
        "destination_port_ranges": ["8080", "9000-9100"],
    }
    fields.update(overrides)
    # The typed constructor takes properties=...PropertiesFormat; flattened kwargs also work at
    # runtime but mypy --strict rejects them.
    return SecurityRule(properties=SecurityRulePropertiesFormat(**fields))


def _create_nsg(
    client: NetworkManagementClient, name: str = NSG, **fields: Any
) -> NetworkSecurityGroup:
    body = NetworkSecurityGroup(location="westeurope", **fields)
    return client.network_security_groups.begin_create_or_update(
        RG, name, body, polling_interval=0
    ).result()


def _put_rule(client: NetworkManagementClient, name: str, rule: SecurityRule) -> SecurityRule:
    return client.security_rules.begin_create_or_update(
        RG, NSG, name, rule, polling_interval=0
    ).result()


def _error_code(info: pytest.ExceptionInfo[HttpResponseError]) -> str:
    assert info.value.error is not None
    return str(info.value.error.code)


# --- NSGs ------------------------------------------------------------------------------------


def test_create_nsg_with_tags_then_list_it(client: NetworkManagementClient, fake: FakeArm) -> None:
    created = _create_nsg(client, tags={"managed-by": "nsgsync"})

    assert created.id == NSG_ID
    assert created.tags == {"managed-by": "nsgsync"}
    assert created.provisioning_state == "Succeeded"
    assert created.etag is not None
    assert created.etag.startswith('W/"')
    listed = list(client.network_security_groups.list(RG))
    assert [(n.name, n.tags) for n in listed] == [(NSG, {"managed-by": "nsgsync"})]
    # One PUT, one Azure-AsyncOperation poll, the final GET of the resource, then the list.
    assert [m for m, _ in fake.calls] == ["PUT", "GET", "GET", "GET"]
    assert (fake.writes(), fake.polls(), fake.reads()) == (1, 1, 2)


def test_new_nsg_has_azure_default_rules(client: NetworkManagementClient) -> None:
    nsg = _create_nsg(client)

    assert nsg.security_rules == []
    assert nsg.default_security_rules is not None
    assert [(r.name, r.priority, r.direction, r.access) for r in nsg.default_security_rules] == [
        ("AllowVnetInBound", 65000, "Inbound", "Allow"),
        ("AllowAzureLoadBalancerInBound", 65001, "Inbound", "Allow"),
        ("DenyAllInBound", 65500, "Inbound", "Deny"),
        ("AllowVnetOutBound", 65000, "Outbound", "Allow"),
        ("AllowInternetOutBound", 65001, "Outbound", "Allow"),
        ("DenyAllOutBound", 65500, "Outbound", "Deny"),
    ]
    assert nsg.default_security_rules[0].id == f"{NSG_ID}/defaultSecurityRules/AllowVnetInBound"


def test_update_tags_is_a_synchronous_patch(client: NetworkManagementClient, fake: FakeArm) -> None:
    _create_nsg(client, tags={"a": "1"})
    fake.clear_log()

    updated = client.network_security_groups.update_tags(RG, NSG, TagsObject(tags={"b": "2"}))

    assert updated.tags == {"b": "2"}
    assert fake.calls == [("PATCH", NSG_PATH)]


def test_nsg_put_replaces_its_rules(client: NetworkManagementClient) -> None:
    _create_nsg(client)
    _put_rule(client, "web", _rule())

    again = _create_nsg(client, tags={"touched": "yes"})

    assert again.security_rules == []


def test_nsg_put_with_inline_rules(client: NetworkManagementClient) -> None:
    web = SecurityRule(name="web", properties=_rule().properties)
    clash = SecurityRule(name="clash", properties=_rule().properties)

    created = _create_nsg(
        client, properties=NetworkSecurityGroupPropertiesFormat(security_rules=[web])
    )
    with pytest.raises(HttpResponseError) as info:
        _create_nsg(
            client, properties=NetworkSecurityGroupPropertiesFormat(security_rules=[web, clash])
        )

    assert [r.id for r in created.security_rules or []] == [f"{RULES_PATH}/web"]
    assert _error_code(info) == "SecurityRuleConflict"


def test_missing_nsg_is_404_resource_not_found(client: NetworkManagementClient) -> None:
    with pytest.raises(ResourceNotFoundError) as info:
        client.network_security_groups.get(RG, "nope")
    assert _error_code(info) == "ResourceNotFound"


def test_delete_nsg_then_delete_again(client: NetworkManagementClient, fake: FakeArm) -> None:
    _create_nsg(client)

    client.network_security_groups.begin_delete(RG, NSG, polling_interval=0).result()
    client.network_security_groups.begin_delete(RG, NSG, polling_interval=0).result()

    assert fake.get_nsg(SUB, RG, NSG) is None
    assert [s.status for s in fake.log if s.method == "DELETE"] == [202, 204]


def test_stale_if_match_is_refused(client: NetworkManagementClient) -> None:
    _create_nsg(client)

    with pytest.raises(HttpResponseError) as info:
        client.network_security_groups.update_tags(
            RG, NSG, TagsObject(tags={}), headers={"If-Match": 'W/"stale"'}
        )
    assert info.value.status_code == 412


# --- security rules --------------------------------------------------------------------------


def test_rules_create_get_list_delete(client: NetworkManagementClient, fake: FakeArm) -> None:
    _create_nsg(client)

    created = _put_rule(client, "web", _rule())
    _put_rule(
        client,
        "egress",
        _rule(
            priority=900,
            direction="Outbound",
            source_address_prefixes=None,
            source_address_prefix="*",
        ),
    )

    assert created.id == f"{RULES_PATH}/web"
    assert created.provisioning_state == "Succeeded"
    got = client.security_rules.get(RG, NSG, "web")
    assert (
        got.priority,
        got.protocol,
        got.source_address_prefixes,
        got.destination_port_ranges,
    ) == (900, "Tcp", ["10.20.0.0/16", "10.21.4.0/24"], ["8080", "9000-9100"])
    # As in Azure: the plural field of an unused pair comes back empty, not absent.
    assert got.destination_address_prefixes == []
    assert got.etag == client.network_security_groups.get(RG, NSG).etag
    assert sorted(str(r.name) for r in client.security_rules.list(RG, NSG)) == ["egress", "web"]
    nsg_rules = client.network_security_groups.get(RG, NSG).security_rules or []
    assert sorted(str(r.name) for r in nsg_rules) == ["egress", "web"]

    client.security_rules.begin_delete(RG, NSG, "web", polling_interval=0).result()

    with pytest.raises(ResourceNotFoundError) as info:
        client.security_rules.get(RG, NSG, "web")
    assert _error_code(info) == "NotFound"
    assert [r.name for r in client.security_rules.list(RG, NSG)] == ["egress"]
    assert ("DELETE", f"{RULES_PATH}/web") in fake.calls


def test_update_answers_200_and_changes_etag(
    client: NetworkManagementClient, fake: FakeArm
) -> None:
    _create_nsg(client)
    first = _put_rule(client, "web", _rule())

    second = _put_rule(client, "web", _rule(priority=910))

    assert second.priority == 910
    assert second.etag != first.etag
    assert [s.status for s in fake.log if s.method == "PUT"] == [201, 201, 200]


def test_duplicate_priority_in_same_direction_is_rejected(client: NetworkManagementClient) -> None:
    _create_nsg(client)
    _put_rule(client, "web", _rule(priority=900))

    with pytest.raises(HttpResponseError) as info:
        _put_rule(client, "web2", _rule(priority=900))

    assert info.value.status_code == 400
    assert _error_code(info) == "SecurityRuleConflict"
    assert "web2 conflicts with rule web" in str(info.value)
    # The other direction has its own priorities.
    _put_rule(client, "out", _rule(priority=900, direction="Outbound"))


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"priority": 99}, "SecurityRuleInvalidPriority"),
        ({"priority": 4097}, "SecurityRuleInvalidPriority"),
        ({"protocol": "Sctp"}, "InvalidRequestFormat"),
        ({"direction": "Sideways"}, "InvalidRequestFormat"),
        ({"access": "Maybe"}, "InvalidRequestFormat"),
        ({"source_address_prefix": "10.0.0.0/8"}, "SecurityRuleParameterConflict"),
        (
            {"source_address_prefixes": ["10.0.0.0/8", "VirtualNetwork"]},
            "SecurityRuleParameterContainsUnsupportedValue",
        ),
        ({"source_address_prefixes": ["10.20.0.1/16"]}, "SecurityRuleInvalidAddressPrefix"),
        ({"destination_port_ranges": ["70000"]}, "SecurityRuleInvalidPortRange"),
    ],
)
def test_invalid_rules_are_rejected_like_arm(
    client: NetworkManagementClient, overrides: dict[str, Any], code: str
) -> None:
    _create_nsg(client)

    with pytest.raises(HttpResponseError) as info:
        _put_rule(client, "bad", _rule(**overrides))

    assert info.value.status_code == 400
    assert _error_code(info) == code


def test_snake_case_dict_is_rejected(client: NetworkManagementClient) -> None:
    _create_nsg(client)
    body: Any = {
        "properties": {
            "priority": 900,
            "direction": "Inbound",
            "access": "Allow",
            "protocol": "Tcp",
            "source_port_range": "*",
        }
    }

    with pytest.raises(HttpResponseError) as info:
        client.security_rules.begin_create_or_update(RG, NSG, "x", body, polling_interval=0)

    assert _error_code(info) == "SecurityRuleInvalidPortRange"


def test_more_than_1000_rules_is_rejected(client: NetworkManagementClient, fake: FakeArm) -> None:
    fake.add_nsg(SUB, RG, NSG)
    for i in range(1000):
        fake.add_rule(
            SUB,
            RG,
            NSG,
            f"r{i}",
            {
                "priority": 100 + i % 2000,
                "direction": "Inbound" if i < 500 else "Outbound",
                "access": "Allow",
                "protocol": "Tcp",
                "sourceAddressPrefix": "*",
                "sourcePortRange": "*",
                "destinationAddressPrefix": "*",
                "destinationPortRange": "443",
            },
        )

    with pytest.raises(HttpResponseError) as info:
        _put_rule(client, "one-too-many", _rule(priority=4000))

    assert _error_code(info) == "SecurityRuleCountLimitReached"


def test_seeded_resources_are_visible_without_requests(
    client: NetworkManagementClient, fake: FakeArm
) -> None:
    fake.add_nsg(SUB, RG, "hand-made", tags={"owner": "alice"})
    fake.add_rule(
        SUB,
        RG,
        "hand-made",
        "ssh",
        {
            "priority": 100,
            "direction": "Inbound",
            "access": "Allow",
            "protocol": "Tcp",
            "sourceAddressPrefix": "Internet",
            "sourcePortRange": "*",
            "destinationAddressPrefix": "*",
            "destinationPortRange": "22",
        },
    )
    assert fake.calls == []

    nsg = client.network_security_groups.get(RG, "hand-made")

    assert nsg.tags == {"owner": "alice"}
    assert [(r.name, r.source_address_prefix) for r in nsg.security_rules or []] == [
        ("ssh", "Internet")
    ]
    with pytest.raises(ValueError, match="SecurityRuleConflict"):
        fake.add_rule(
            SUB,
            RG,
            "hand-made",
            "ssh2",
            {
                "priority": 100,
                "direction": "Inbound",
                "access": "Deny",
                "protocol": "*",
                "sourceAddressPrefix": "*",
                "sourcePortRange": "*",
                "destinationAddressPrefix": "*",
                "destinationPortRange": "*",
            },
        )


# --- faults ----------------------------------------------------------------------------------


def test_429_is_retried_after_retry_after(client: NetworkManagementClient, fake: FakeArm) -> None:
    _create_nsg(client)
    fake.clear_log()
    fake.throttle(1, retry_after=5)

    rule = _put_rule(client, "web", _rule())

    assert rule.priority == 900
    assert [(s.method, s.status) for s in fake.log][:2] == [("PUT", 429), ("PUT", 201)]
    assert fake.writes() == 2
    assert fake.sleeps[0] == 5


def test_throttle_body_matches_recording(fake: FakeArm) -> None:
    fake.throttle(1, retry_after=3)

    reply = fake.handle("GET", f"https://h{NSG_PATH}?api-version=2026-03-01", {}, None)

    recorded = recorded_body("error_429_throttled")
    assert reply.status == 429
    assert reply.headers["Retry-After"] == "3"
    assert reply.body is not None
    assert reply.body.keys() == recorded.keys()
    assert reply.body["error"].keys() == recorded["error"].keys()
    assert reply.body["error"]["code"] == "SubscriptionRequestsThrottled"


def test_not_found_bodies_match_recordings(fake: FakeArm) -> None:
    fake.add_nsg(SUB, RG, NSG)
    url = "https://h{}?api-version=2026-03-01"

    top = fake.handle("GET", url.format(f"{NSG_PATH}x"), {}, None)
    child = fake.handle("GET", url.format(f"{RULES_PATH}/nope"), {}, None)

    for reply, name in ((top, "error_404_resource_not_found"), (child, "error_404_not_found")):
        recorded = recorded_body(name)
        assert reply.status == 404
        assert reply.body is not None
        assert reply.body["error"].keys() == recorded["error"].keys()
        assert reply.body["error"]["code"] == recorded["error"]["code"]


def test_fail_writes_after_breaks_the_next_write(
    client: NetworkManagementClient, fake: FakeArm
) -> None:
    _create_nsg(client)
    fake.fail_writes_after(1)
    _put_rule(client, "first", _rule(priority=100))

    with pytest.raises(HttpResponseError) as info:
        _put_rule(client, "second", _rule(priority=200))

    assert info.value.status_code == 500
    # azure-core retried the PUT (retry_total=3 in make_client) before giving up.
    assert [s.status for s in fake.log if s.path.endswith("/second")] == [500] * 4
    assert fake.get_rule(SUB, RG, NSG, "second") is None
    fake.clear_faults()
    assert _put_rule(client, "second", _rule(priority=200)).priority == 200


def test_missing_api_version_is_refused(fake: FakeArm) -> None:
    reply = fake.handle("GET", f"https://h{NSG_PATH}", {}, None)

    assert reply.status == 400
    assert reply.body is not None
    assert reply.body["error"]["code"] == "MissingApiVersionParameter"


def test_in_progress_polls_honour_retry_after() -> None:
    fake = FakeArm(lro_in_progress_polls=2, lro_retry_after=10)
    client = make_client(fake, SUB)

    _create_nsg(client)

    assert fake.polls() == 3
    assert fake.sleeps == [10, 10]


# --- subnets ---------------------------------------------------------------------------------


def test_subnet_read_modify_write_associates_the_nsg(
    client: NetworkManagementClient, fake: FakeArm
) -> None:
    nsg = _create_nsg(client)
    fake.add_subnet(SUB, RG, "prod-vnet", "aks-nodes", "10.20.0.0/22")

    subnet = client.subnets.get(RG, "prod-vnet", "aks-nodes")
    subnet.network_security_group = NetworkSecurityGroup(id=nsg.id)
    written = client.subnets.begin_create_or_update(
        RG, "prod-vnet", "aks-nodes", subnet, polling_interval=0
    ).result()

    assert written.network_security_group is not None
    assert written.network_security_group.id == NSG_ID
    assert written.address_prefix == "10.20.0.0/22"
    associated = client.network_security_groups.get(RG, NSG).subnets or []
    assert [s.id for s in associated] == [written.id]
    with pytest.raises(HttpResponseError) as info:
        client.network_security_groups.begin_delete(RG, NSG, polling_interval=0)
    assert _error_code(info) == "InUseNetworkSecurityGroupCannotBeDeleted"


def test_subnet_write_without_read_is_refused(
    client: NetworkManagementClient, fake: FakeArm
) -> None:
    _create_nsg(client)
    fake.add_subnet(SUB, RG, "prod-vnet", "aks-nodes", "10.20.0.0/22")
    blind = Subnet(
        properties=SubnetPropertiesFormat(network_security_group=NetworkSecurityGroup(id=NSG_ID))
    )
    with pytest.raises(HttpResponseError) as info:
        client.subnets.begin_create_or_update(
            RG, "prod-vnet", "aks-nodes", blind, polling_interval=0
        )

    assert _error_code(info) == "AddressPrefixStringCannotBeNullOrEmpty"


def test_subnet_reference_to_missing_nsg_is_refused(
    client: NetworkManagementClient, fake: FakeArm
) -> None:
    fake.add_subnet(SUB, RG, "prod-vnet", "aks-nodes", "10.20.0.0/22")
    subnet = client.subnets.get(RG, "prod-vnet", "aks-nodes")
    subnet.network_security_group = NetworkSecurityGroup(id=f"{NSG_ID}-gone")

    with pytest.raises(HttpResponseError) as info:
        client.subnets.begin_create_or_update(
            RG, "prod-vnet", "aks-nodes", subnet, polling_interval=0
        )

    assert _error_code(info) == "InvalidResourceReference"


# --- paging ----------------------------------------------------------------------------------


def test_lists_are_paged_with_next_link() -> None:
    fake = FakeArm(page_size=2)
    client = make_client(fake, SUB)
    for i in range(5):
        fake.add_nsg(SUB, RG, f"nsg-{i}")
    fake.add_nsg(SUB, "other-rg", "elsewhere")
    for i in range(3):
        fake.add_rule(
            SUB,
            RG,
            "nsg-0",
            f"rule-{i}",
            {
                "priority": 100 + i,
                "direction": "Inbound",
                "access": "Allow",
                "protocol": "*",
                "sourceAddressPrefix": "*",
                "sourcePortRange": "*",
                "destinationAddressPrefix": "*",
                "destinationPortRange": "*",
            },
        )

    names = [n.name for n in client.network_security_groups.list(RG)]
    rules = [r.name for r in client.security_rules.list(RG, "nsg-0")]
    everything = [n.name for n in client.network_security_groups.list_all()]

    assert names == [f"nsg-{i}" for i in range(5)]
    assert rules == ["rule-0", "rule-1", "rule-2"]
    assert len(everything) == 6
    assert fake.calls.count(("GET", f"{PROVIDER}/networkSecurityGroups")) == 3
    all_path = f"/subscriptions/{SUB}/providers/Microsoft.Network/networkSecurityGroups"
    assert fake.calls.count(("GET", all_path)) == 3


def test_seeded_association_shows_on_both_sides(
    client: NetworkManagementClient, fake: FakeArm
) -> None:
    nsg_id = fake.add_nsg(SUB, RG, "hand-made")
    subnet_id = fake.add_subnet(SUB, RG, "prod-vnet", "legacy", "10.30.0.0/24", nsg_id=nsg_id)

    subnet = client.subnets.get(RG, "prod-vnet", "legacy")
    nsg = client.network_security_groups.get(RG, "hand-made")

    assert subnet.network_security_group is not None
    assert subnet.network_security_group.id == nsg_id
    assert [s.id for s in nsg.subnets or []] == [subnet_id]
