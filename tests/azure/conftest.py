"""The ARM stand-in, reached by the real NetworkManagementClient through an injected transport."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from azure.mgmt.network import NetworkManagementClient

from nsgsync.model import Topology
from tests.fakes.azure_arm import FakeArm, make_client

SUB = "11111111-2222-4333-8444-555555555555"
RG = "rg-nsgsync"
VNET = "vnet-pods"
LOCATION = "westeurope"
VNET_CIDRS = ["10.0.0.0/8"]


@dataclass
class Arm:
    fake: FakeArm
    client: NetworkManagementClient

    def subnet_id(self, name: str) -> str:
        return (
            f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network"
            f"/virtualNetworks/{VNET}/subnets/{name}"
        )

    def nsg_id(self, name: str) -> str:
        return (
            f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network"
            f"/networkSecurityGroups/{name}"
        )

    def with_azure(
        self,
        topology: Topology,
        *,
        subnets: Mapping[str, tuple[str, str]] | None = None,
        **azure: Any,
    ) -> Topology:
        """The topology with an azure block, and each segment on a seeded subnet: its own,
        or the (name, prefix) that `subnets` gives for it."""
        segments = []
        for seg in topology.segments:
            name, prefix = (subnets or {}).get(seg.name, (seg.name, seg.cidrs[0]))
            if self.fake.get_subnet(SUB, RG, VNET, name) is None:
                self.fake.add_subnet(SUB, RG, VNET, name, prefix, location=LOCATION)
            segments.append(seg.model_copy(update={"azure": {"subnetId": self.subnet_id(name)}}))
        block = {
            "subscriptionId": SUB,
            "resourceGroup": RG,
            "location": LOCATION,
            "vnetCIDRs": VNET_CIDRS,
            **azure,
        }
        return topology.model_copy(
            update={"azure": block, "provider": "azure", "segments": segments}
        )


@pytest.fixture
def arm() -> Arm:
    fake = FakeArm()
    return Arm(fake, make_client(fake, SUB))
