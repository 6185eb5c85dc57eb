"""Tests of the GCP compute stand-in, driven only through the real compute_v1 clients."""

# ExtendedOperation.result() is untyped in google-api-core.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.api_core import exceptions
from google.api_core.retry import Retry, if_exception_type
from google.cloud import compute_v1

# Relative, so it works whether or not tests/ itself is a package.
from .gcp_compute import (
    API_ROOT,
    FakeCompute,
    make_client,
    make_operations_client,
)

PROJECT = "nsgsync-demo"
FIREWALLS = f"/compute/v1/projects/{PROJECT}/global/firewalls"
FAST_RETRY = Retry(
    predicate=if_exception_type(exceptions.TooManyRequests, exceptions.ServiceUnavailable),
    initial=0.01,
    maximum=0.05,
    timeout=5,
)


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    with FakeCompute() as running:
        yield running


@pytest.fixture
def client(fake: FakeCompute) -> compute_v1.FirewallsClient:
    return make_client(fake)


def rule(name: str, **fields: object) -> compute_v1.Firewall:
    body: dict[str, object] = {
        "name": name,
        "network": "global/networks/prod-vpc",
        "direction": "INGRESS",
        "priority": 900,
        "source_ranges": ["10.20.0.0/16"],
        "target_tags": ["gke-prod-pool-web"],
        "allowed": [compute_v1.Allowed(I_p_protocol="tcp", ports=["8080"])],
    }
    body.update(fields)
    return compute_v1.Firewall(**body)


def seed(fake: FakeCompute, *names: str) -> None:
    for name in names:
        fake.seed_firewall(
            PROJECT, {"name": name, "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}]}
        )


def test_serves_loopback_only(fake: FakeCompute) -> None:
    assert fake.endpoint.startswith("http://127.0.0.1:")


def test_insert_then_get(fake: FakeCompute, client: compute_v1.FirewallsClient) -> None:
    op = client.insert(project=PROJECT, firewall_resource=rule("nsgsync-web"))
    assert op.result(timeout=10) is None
    assert op.status == compute_v1.Operation.Status.DONE
    assert op.operation_type == "insert"

    got = client.get(project=PROJECT, firewall="nsgsync-web")
    assert got.kind == "compute#firewall"
    assert got.id > 0
    assert got.creation_timestamp
    assert got.network == f"{API_ROOT}/projects/{PROJECT}/global/networks/prod-vpc"
    assert got.self_link == f"{API_ROOT}/projects/{PROJECT}/global/firewalls/nsgsync-web"
    assert (got.priority, got.direction, got.disabled) == (900, "INGRESS", False)
    assert not got.log_config.enable
    assert [(a.I_p_protocol, list(a.ports)) for a in got.allowed] == [("tcp", ["8080"])]
    # An already-DONE operation is never polled.
    assert fake.calls == [("POST", FIREWALLS), ("GET", f"{FIREWALLS}/nsgsync-web")]


def test_running_operation_is_polled_through_the_fake(
    fake: FakeCompute, client: compute_v1.FirewallsClient
) -> None:
    fake.async_operations = True
    op = client.insert(project=PROJECT, firewall_resource=rule("nsgsync-web"))
    assert op.status == compute_v1.Operation.Status.RUNNING
    op.result(timeout=10)
    assert op.status == compute_v1.Operation.Status.DONE
    assert fake.reads() == [("GET", f"/compute/v1/projects/{PROJECT}/global/operations/{op.name}")]


def test_operation_wait_via_global_operations_client(fake: FakeCompute) -> None:
    fake.async_operations = True
    seed(fake, "nsgsync-web")
    op = make_client(fake).delete(project=PROJECT, firewall="nsgsync-web")
    waited = make_operations_client(fake).wait(project=PROJECT, operation=op.name)
    assert waited.status == compute_v1.Operation.Status.DONE
    assert waited.operation_type == "delete"
    assert fake.writes() == [("DELETE", f"{FIREWALLS}/nsgsync-web")]


def test_defaults_fill_network_and_open_source(client: compute_v1.FirewallsClient) -> None:
    bare = compute_v1.Firewall(
        name="bare", denied=[compute_v1.Denied(I_p_protocol="all")], direction="EGRESS"
    )
    client.insert(project=PROJECT, firewall_resource=bare).result(timeout=10)
    got = client.get(project=PROJECT, firewall="bare")
    assert got.network.endswith("/global/networks/default")
    assert got.priority == 1000
    assert list(got.destination_ranges) == ["0.0.0.0/0"]


def test_list_filters_and_pages(fake: FakeCompute, client: compute_v1.FirewallsClient) -> None:
    seed(fake, "nsgsync-a", "nsgsync-ab", "nsgsync-b", "nsgsync-c", "nsgsync-d", "default-ssh")
    fake.page_size = 2

    every = client.list(request={"project": PROJECT, "filter": 'name eq "nsgsync-.*"'})
    assert [fw.name for fw in every] == [
        "nsgsync-a",
        "nsgsync-ab",
        "nsgsync-b",
        "nsgsync-c",
        "nsgsync-d",
    ]
    list_calls = [c for c in fake.calls if c == ("GET", FIREWALLS)]
    assert len(list_calls) == 3  # 2 + 2 + 1
    assert fake.requests[0].query["filter"] == 'name eq "nsgsync-.*"'
    assert "pageToken" in fake.requests[1].query

    def names(filter_: str) -> list[str]:
        return [fw.name for fw in client.list(request={"project": PROJECT, "filter": filter_})]

    assert names("name eq nsgsync-a") == ["nsgsync-a"]  # anchored: no nsgsync-ab
    assert names('name = "nsgsync-b"') == ["nsgsync-b"]
    assert names("name ne nsgsync-.*") == ["default-ssh"]
    assert names('(name eq "nsgsync-(a|b)") (priority eq 1000)') == ["nsgsync-a", "nsgsync-b"]
    assert names('name = "nsgsync-c" OR name = "default-ssh"') == ["default-ssh", "nsgsync-c"]
    assert names("allowed.ports = 22 AND name != default-ssh")[0] == "nsgsync-a"

    assert names('description = "says eq inside quotes"') == []

    first = next(iter(client.list(request={"project": PROJECT, "max_results": 1}).pages))
    assert len(first.items) == 1
    assert first.next_page_token


def test_list_rejects_mixed_filter(client: compute_v1.FirewallsClient) -> None:
    with pytest.raises(exceptions.BadRequest):
        list(client.list(request={"project": PROJECT, "filter": "(name eq a) AND name = b"}))


def test_patch_merges_and_replaces_lists(
    fake: FakeCompute, client: compute_v1.FirewallsClient
) -> None:
    client.insert(project=PROJECT, firewall_resource=rule("nsgsync-web")).result(timeout=10)
    before = client.get(project=PROJECT, firewall="nsgsync-web")
    patch = compute_v1.Firewall(source_ranges=["10.30.0.0/16"], priority=0, disabled=True)
    op = client.patch(project=PROJECT, firewall="nsgsync-web", firewall_resource=patch)
    op.result(timeout=10)
    assert op.operation_type == "patch"

    after = client.get(project=PROJECT, firewall="nsgsync-web")
    assert list(after.source_ranges) == ["10.30.0.0/16"]  # replaced, not appended
    assert (after.priority, after.disabled) == (0, True)  # explicit zero/false values are sent
    assert list(after.target_tags) == ["gke-prod-pool-web"]  # untouched fields kept
    assert (after.id, after.creation_timestamp) == (before.id, before.creation_timestamp)


def test_patch_cannot_make_a_rule_both_allow_and_deny(client: compute_v1.FirewallsClient) -> None:
    client.insert(project=PROJECT, firewall_resource=rule("nsgsync-web")).result(timeout=10)
    # The SDK drops empty lists, so `allowed` cannot be cleared by PATCH: the merge is invalid.
    patch = compute_v1.Firewall(denied=[compute_v1.Denied(I_p_protocol="all")], allowed=[])
    with pytest.raises(exceptions.BadRequest):
        client.patch(project=PROJECT, firewall="nsgsync-web", firewall_resource=patch)


def test_update_replaces_the_rule(client: compute_v1.FirewallsClient) -> None:
    client.insert(project=PROJECT, firewall_resource=rule("nsgsync-web")).result(timeout=10)
    replacement = rule(
        "nsgsync-web", target_tags=[], allowed=[], denied=[compute_v1.Denied(I_p_protocol="all")]
    )
    op = client.update(project=PROJECT, firewall="nsgsync-web", firewall_resource=replacement)
    op.result(timeout=10)
    got = client.get(project=PROJECT, firewall="nsgsync-web")
    assert [d.I_p_protocol for d in got.denied] == ["all"]
    assert not got.allowed
    assert not got.target_tags

    # Read-modify-write with the fetched resource, output-only fields and all, also works.
    got.description = "edited"
    client.update(project=PROJECT, firewall="nsgsync-web", firewall_resource=got).result(timeout=10)
    again = client.get(project=PROJECT, firewall="nsgsync-web")
    assert (again.description, again.id) == ("edited", got.id)


def test_delete_then_get_is_404(fake: FakeCompute, client: compute_v1.FirewallsClient) -> None:
    seed(fake, "nsgsync-web")
    op = client.delete(project=PROJECT, firewall="nsgsync-web")
    op.result(timeout=10)
    assert op.operation_type == "delete"
    assert fake.firewalls(PROJECT) == []
    with pytest.raises(exceptions.NotFound) as caught:
        client.get(project=PROJECT, firewall="nsgsync-web")
    assert caught.value.errors[0]["reason"] == "notFound"
    with pytest.raises(exceptions.NotFound):
        client.delete(project=PROJECT, firewall="nsgsync-web")


def test_duplicate_insert_is_409(fake: FakeCompute, client: compute_v1.FirewallsClient) -> None:
    seed(fake, "nsgsync-web")
    with pytest.raises(exceptions.Conflict) as caught:
        client.insert(project=PROJECT, firewall_resource=rule("nsgsync-web"))
    assert caught.value.errors[0]["reason"] == "alreadyExists"
    assert "already exists" in caught.value.message


@pytest.mark.parametrize(
    "bad",
    [
        rule("Shop_Web"),
        rule("a" * 64),
        rule("ends-with-dash-"),
        rule("nsgsync-web", priority=65536),
        rule("nsgsync-web", direction="SIDEWAYS"),
        rule("nsgsync-web", allowed=[]),
        rule("nsgsync-web", denied=[compute_v1.Denied(I_p_protocol="all")]),
        rule("nsgsync-web", allowed=[compute_v1.Allowed(I_p_protocol="icmp", ports=["80"])]),
        rule("nsgsync-web", source_ranges=[f"10.0.{i // 256}.{i % 256}/32" for i in range(5001)]),
        rule("nsgsync-web", source_ranges=["10.0.0.0/8", "fd00::/8"]),
        rule("nsgsync-web", source_ranges=["not-a-cidr"]),
    ],
    ids=[
        "uppercase-name",
        "64-char-name",
        "trailing-dash",
        "priority",
        "direction",
        "no-action",
        "allow-and-deny",
        "icmp-ports",
        "5001-sources",
        "mixed-families",
        "bad-cidr",
    ],
)
def test_invalid_rule_is_400(client: compute_v1.FirewallsClient, bad: compute_v1.Firewall) -> None:
    with pytest.raises(exceptions.BadRequest) as caught:
        client.insert(project=PROJECT, firewall_resource=bad)
    assert caught.value.errors[0]["reason"] == "invalid"


def test_5000_source_ranges_are_accepted(client: compute_v1.FirewallsClient) -> None:
    ranges = [f"10.0.{i // 256}.{i % 256}/32" for i in range(5000)]
    client.insert(project=PROJECT, firewall_resource=rule("wide", source_ranges=ranges)).result(
        timeout=10
    )
    assert len(client.get(project=PROJECT, firewall="wide").source_ranges) == 5000


@pytest.mark.parametrize(
    ("status", "error", "reason"),
    [
        (429, exceptions.TooManyRequests, "rateLimitExceeded"),
        (503, exceptions.ServiceUnavailable, "backendError"),
    ],
)
def test_retry_rides_out_throttling(
    fake: FakeCompute,
    client: compute_v1.FirewallsClient,
    status: int,
    error: type[exceptions.GoogleAPICallError],
    reason: str,
) -> None:
    fake.throttle(1, status=status)
    with pytest.raises(error) as caught:
        client.insert(project=PROJECT, firewall_resource=rule("nsgsync-web"))  # no default retry
    assert caught.value.errors[0]["reason"] == reason

    fake.throttle(2, status=status)
    op = client.insert(project=PROJECT, firewall_resource=rule("nsgsync-web"), retry=FAST_RETRY)
    op.result(timeout=10)
    assert fake.writes() == [("POST", FIREWALLS)] * 4  # 1 refused, then 2 refused + 1 accepted


def test_get_retries_503_by_default_but_not_429(
    fake: FakeCompute, client: compute_v1.FirewallsClient
) -> None:
    seed(fake, "nsgsync-web")
    fake.throttle(1, status=503)
    assert client.get(project=PROJECT, firewall="nsgsync-web").name == "nsgsync-web"
    assert len(fake.reads()) == 2
    fake.throttle(1, status=429)
    with pytest.raises(exceptions.TooManyRequests):
        client.get(project=PROJECT, firewall="nsgsync-web")


def test_fail_writes_after(fake: FakeCompute, client: compute_v1.FirewallsClient) -> None:
    fake.fail_writes_after(1)
    client.insert(project=PROJECT, firewall_resource=rule("nsgsync-a")).result(timeout=10)
    with pytest.raises(exceptions.InternalServerError):
        client.insert(project=PROJECT, firewall_resource=rule("nsgsync-b"))
    with pytest.raises(exceptions.InternalServerError):
        client.delete(project=PROJECT, firewall="nsgsync-a")
    assert [fw.name for fw in client.list(project=PROJECT)] == ["nsgsync-a"]  # reads still work

    fake.clear_faults()
    client.insert(project=PROJECT, firewall_resource=rule("nsgsync-b")).result(timeout=10)
    assert [fw["name"] for fw in fake.firewalls(PROJECT)] == ["nsgsync-a", "nsgsync-b"]


def test_quota_fails_in_the_operation(
    fake: FakeCompute, client: compute_v1.FirewallsClient
) -> None:
    fake.firewall_quota = 1
    fake.async_operations = True
    client.insert(project=PROJECT, firewall_resource=rule("nsgsync-a")).result(timeout=10)
    op = client.insert(project=PROJECT, firewall_resource=rule("nsgsync-b"))  # accepted...
    with pytest.raises(exceptions.Forbidden):
        op.result(timeout=10)  # ...and refused when the operation ends
    assert op.error.errors[0].code == "QUOTA_EXCEEDED"
    assert [fw["name"] for fw in fake.firewalls(PROJECT)] == ["nsgsync-a"]


def test_seed_rejects_invalid_rules(fake: FakeCompute) -> None:
    with pytest.raises(ValueError, match=r"resource\.name"):
        fake.seed_firewall(PROJECT, {"name": "Bad", "allowed": [{"IPProtocol": "tcp"}]})
    assert fake.calls == []
