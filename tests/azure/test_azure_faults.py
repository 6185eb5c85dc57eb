"""The Azure adapter with the ARM stand-in behind a fault-injecting transport: every write is
an idempotent PUT or DELETE, so a lost reply converges in the same apply with no check; a
reply that is not ARM's JSON is one line; a fault outlasting the retries stops the apply
with a summary, and the next apply completes it."""

from __future__ import annotations

from typing import Any

import pytest
from azure.mgmt.network import NetworkManagementClient

from nsgsync.compile import compile_intent
from nsgsync.engine import apply_plan, make_plan
from nsgsync.errors import CloudError, Failure
from nsgsync.intent import Intent
from nsgsync.model import Topology
from nsgsync.provider import configure
from nsgsync.sources import load_manifests, load_topology
from tests.azure.conftest import RG, SUB, VNET, VNET_CIDRS, Arm
from tests.azure.evaluate import Nsgs
from tests.cycle import EXAMPLE, PORTS, policy_change, probe_addresses
from tests.fakes.azure_arm import FAKE_ARM_URL, FakeArm, FakeCredential
from tests.fakes.azure_arm import make_client as make_arm_client
from tests.fakes.fault_proxy import Fault, FaultyArmTransport

Probe = tuple[str, str, str, int]


class Cloud:
    def __init__(self) -> None:
        self.fake = FakeArm()
        self.transport = FaultyArmTransport(self.fake)
        self.client = NetworkManagementClient(
            FakeCredential(),
            SUB,
            base_url=FAKE_ARM_URL,
            transport=self.transport,
            retry_total=3,
            retry_backoff_factor=0.01,
            polling_interval=0,
        )
        self.plain = make_arm_client(self.fake, SUB)
        self.topology: Topology = Arm(self.fake, self.plain).with_azure(
            load_topology(EXAMPLE / "topology.yaml")
        )
        self.inventory = load_manifests([EXAMPLE / "cluster"])
        self.intent = compile_intent(self.topology, self.inventory)

    def session(self) -> Any:
        return configure(self.topology).session(network_client=self.client)

    def apply(self, intent: Intent) -> None:
        adapter = configure(self.topology)
        planned = make_plan(adapter, intent, session=self.session())
        apply_plan(adapter, planned, self.session(), progress=lambda _: None)

    def allowed(self) -> set[Probe]:
        nsgs = Nsgs.read(self.plain, RG, VNET, VNET_CIDRS)
        probes = probe_addresses(self.topology)
        return {
            (s, d, proto, port)
            for s in probes
            for d in probes
            for proto, port in PORTS
            if s != d and ":" not in s + d and nsgs.allows(s, d, proto, port)
        }

    def empty_plan(self, intent: Intent) -> bool:
        return make_plan(configure(self.topology), intent, session=self.session()).plan.empty


def rule_write(method: str) -> Any:
    return lambda r: r.method == method and "/securityRules/" in r.path


@pytest.mark.parametrize(
    ("fault", "method"),
    [
        (Fault.LOSE, "PUT"),
        (Fault.LOSE, "DELETE"),
        (Fault.DROP, "PUT"),
        (Fault.THROTTLE, "PUT"),
        (Fault.ERROR_500, "DELETE"),
    ],
)
def test_a_transient_fault_on_a_rule_write_converges(fault: Fault, method: str) -> None:
    cloud = Cloud()
    # First the policy change's state, then back: the way back deletes what it added.
    change = policy_change(cloud.topology, cloud.intent, cloud.inventory).intent
    before, after = (cloud.intent, change) if method == "PUT" else (change, cloud.intent)
    cloud.apply(before)
    start = cloud.allowed()
    moments: list[set[Probe]] = []
    cloud.transport.after = lambda: moments.append(cloud.allowed())
    cloud.transport.script.inject(fault, rule_write(method))
    cloud.apply(after)
    assert [f for _, f in cloud.transport.script.faults()] == [fault]
    end = cloud.allowed()
    assert moments
    for now in moments:
        assert not (start & end) - now
    assert cloud.empty_plan(after)


@pytest.mark.parametrize("fault", [Fault.HTML, Fault.EMPTY])
def test_a_reply_that_is_not_arm_json_is_one_line(fault: Fault) -> None:
    cloud = Cloud()
    cloud.transport.script.inject(fault, lambda r: r.method == "GET")
    with pytest.raises(CloudError) as info:
        make_plan(configure(cloud.topology), cloud.intent, session=cloud.session())
    assert info.value.failure is Failure.TRANSPORT
    text = str(info.value)
    assert "<html" not in text.lower()
    assert text.splitlines()[0].startswith("Azure ")
    assert "(transport)" in text.splitlines()[0]


def test_a_lasting_fault_stops_the_apply_and_the_next_completes_it() -> None:
    cloud = Cloud()
    cloud.transport.script.inject(
        Fault.ERROR_500,
        lambda r: r.method == "PUT" and "/networkSecurityGroups/" in r.path,
        times=99,
    )

    adapter = configure(cloud.topology)
    planned = make_plan(adapter, cloud.intent, session=cloud.session())
    with pytest.raises(CloudError) as info:
        apply_plan(adapter, planned, cloud.session(), progress=lambda _: None)
    text = str(info.value)
    assert info.value.failure is Failure.TRANSPORT
    assert text.startswith("apply stopped midway: Azure ")
    assert "\n  not done: " in text
    assert "the next apply completes it" in text
    cloud.transport.script.rules.clear()
    cloud.apply(cloud.intent)
    assert cloud.empty_plan(cloud.intent)
