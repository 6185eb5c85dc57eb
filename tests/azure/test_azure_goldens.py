"""Golden Plan JSON (offline, against an empty cloud) for every seed policy set."""

from __future__ import annotations

from pathlib import Path

import pytest

from nsgsync.compile import compile_intent
from nsgsync.engine import make_plan
from nsgsync.model import Topology
from nsgsync.provider import configure
from nsgsync.sources import load_manifests, load_topology
from tests.test_goldens import CASES, check_golden

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
GROUP = "rg-nsgsync"


def with_fixed_azure(topology: Topology) -> Topology:
    """The seed topologies hold an aws block only: a fixed azure one keeps the goldens stable."""
    base = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.Network"
    segments = [
        s.model_copy(
            update={"azure": {"subnetId": f"{base}/virtualNetworks/vnet-seeds/subnets/{s.name}"}}
        )
        for s in topology.segments
    ]
    block = {
        "subscriptionId": SUBSCRIPTION,
        "resourceGroup": GROUP,
        "location": "westeurope",
        "vnetCIDRs": ["10.0.0.0/8"],
    }
    return topology.model_copy(update={"provider": "azure", "azure": block, "segments": segments})


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_offline_plan_golden(case: Path, update_goldens: bool) -> None:
    topology = with_fixed_azure(load_topology(case / "topology.yaml"))
    intent = compile_intent(topology, load_manifests([case / "manifests"]))
    planned = make_plan(configure(topology), intent)
    check_golden(case / "plan-azure.json", planned.plan.to_json(), update_goldens)
