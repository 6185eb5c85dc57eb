"""The GCP adapter against the compute stand-in behind the fault-injecting proxy: a lost
reply converges in the same apply, a reply that is not the API's is one line naming the
endpoint, a first-attempt 409 stops the apply, a silent endpoint stops at the deadline."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from nsgsync.engine import apply_plan, make_plan
from nsgsync.errors import CloudError, Failure
from nsgsync.intent import Intent
from nsgsync.model import Topology
from nsgsync.provider import Timeouts, configure
from nsgsync.sources import load_manifests
from nsgsync_gcp.client import DEFAULT_RETRY, firewall_message
from tests.cycle import EXAMPLE, PORTS, policy_change, probe_addresses
from tests.fakes.fault_proxy import Fault, FaultProxy, Request, fault_proxy
from tests.fakes.gcp_compute import FakeCompute, make_client, make_operations_client
from tests.gcp.conftest import NETWORK, NODE_TAG, PROJECT
from tests.gcp.evaluate import Firewalls
from tests.gcp.test_gcp_cycle import example

FIREWALLS = f"/compute/v1/projects/{PROJECT}/global/firewalls"
# The adapter's own retry (what it retries is under test), with waits short enough for tests.
RETRY = DEFAULT_RETRY.with_delay(initial=0.01, maximum=0.05)

Probe = tuple[str, str, str, int]


def compute_write(req: Request) -> bool:
    return req.method in ("POST", "PUT", "PATCH", "DELETE")


def inserting(req: Request) -> bool:
    return req.method == "POST" and req.path.split("?")[0] == FIREWALLS


def listing(req: Request) -> bool:
    return req.method == "GET" and req.path.split("?")[0] == FIREWALLS


@dataclass
class Cloud:
    fake: FakeCompute
    proxy: FaultProxy
    plain: compute_v1.FirewallsClient
    client: compute_v1.FirewallsClient
    topology: Topology
    intent: Intent
    moments: list[set[Probe]] = field(default_factory=list)

    def session(self, timeouts: Timeouts | None = None) -> Any:
        return configure(self.topology).session(
            firewalls_client=self.client, retry=RETRY, timeouts=timeouts
        )

    def allowed(self) -> set[Probe]:
        fw = Firewalls.read(self.plain, PROJECT, NETWORK, self.topology, {NODE_TAG})
        probes = probe_addresses(self.topology)
        return {
            (s, d, proto, port)
            for s in probes
            for d in probes
            for proto, port in PORTS
            if s != d and ":" not in s + d and fw.allows(s, d, proto, port)
        }

    def apply(self, intent: Intent, timeouts: Timeouts | None = None) -> None:
        adapter = configure(self.topology)
        session = self.session(timeouts)
        planned = make_plan(adapter, intent, session=session)
        apply_plan(adapter, planned, session, progress=lambda _: None, timeouts=timeouts)

    def empty_plan(self, intent: Intent) -> bool:
        return make_plan(configure(self.topology), intent, session=self.session()).plan.empty


@pytest.fixture
def cloud() -> Iterator[Cloud]:
    with (
        FakeCompute() as fake,
        fault_proxy(fake.endpoint, flavor="gcp", is_write=compute_write) as proxy,
    ):
        client = compute_v1.FirewallsClient(
            client_options=ClientOptions(api_endpoint=proxy.url),
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            transport="rest",
        )
        services: dict[str, Any] = client._transport._extended_operations_services
        services["global_operations"] = make_operations_client(fake)
        topology, intent = example()
        yield Cloud(fake, proxy, make_client(fake), client, topology, intent)


def changed(cloud: Cloud) -> Intent:
    inventory = load_manifests([EXAMPLE / "cluster"])
    return policy_change(cloud.topology, cloud.intent, inventory).intent


@pytest.mark.parametrize("fault", [Fault.LOSE, Fault.DROP, Fault.ERROR_500, Fault.THROTTLE])
def test_a_transient_fault_on_insert_converges_in_the_same_apply(
    cloud: Cloud, fault: Fault
) -> None:
    cloud.apply(cloud.intent)
    start = cloud.allowed()
    after = changed(cloud)
    cloud.proxy.after = lambda: cloud.moments.append(cloud.allowed())
    cloud.proxy.inject(fault, inserting)
    cloud.apply(after)
    assert [f for _, f in cloud.proxy.faults()] == [fault]
    end = cloud.allowed()
    assert cloud.moments
    for now in cloud.moments:
        assert not (start & end) - now
    assert cloud.empty_plan(after)


def test_a_first_attempt_409_stops_the_apply(cloud: Cloud) -> None:
    """A rule of the name the insert writes appeared since the plan read the project: it is
    another writer's, whatever it holds, and the apply stops before its removals."""
    cloud.apply(cloud.intent)
    after = changed(cloud)
    adapter = configure(cloud.topology)
    session = cloud.session()
    planned = make_plan(adapter, after, session=session)
    new = next(c.new for c in planned.plan.changes if c.old is None and c.new is not None)
    body = {**dict(new.body), "description": "someone else's"}
    cloud.plain.insert(project=PROJECT, firewall_resource=firewall_message(body)).result()  # type: ignore[no-untyped-call]
    with pytest.raises(CloudError) as info:
        apply_plan(adapter, planned, session, progress=lambda _: None)
    assert info.value.failure is Failure.CONFLICT
    text = str(info.value)
    assert text.startswith("apply stopped midway: creating firewall rule ")
    assert "the cloud changed during the run" in text


def test_an_html_reply_names_the_endpoint_in_one_line(cloud: Cloud) -> None:
    cloud.proxy.inject(Fault.HTML, listing)
    with pytest.raises(CloudError) as info:
        make_plan(configure(cloud.topology), cloud.intent, session=cloud.session())
    assert info.value.failure is Failure.TRANSPORT
    first = str(info.value).splitlines()[0]
    assert first == (
        f"listing firewall rules in project {PROJECT} failed (transport): the reply at "
        f"{cloud.proxy.url} is not the compute API's JSON"
    )


def test_a_silent_endpoint_stops_at_the_deadline(cloud: Cloud) -> None:
    cloud.proxy.inject(Fault.HANG, listing, times=99)
    with pytest.raises(CloudError) as info:
        make_plan(
            configure(cloud.topology),
            cloud.intent,
            session=cloud.session(Timeouts.run_for(2)),
        )
    assert info.value.failure in (Failure.TIMEOUT, Failure.TRANSPORT)
