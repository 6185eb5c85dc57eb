"""Golden Plan JSON (offline, against an empty cloud) for every seed policy set."""

from __future__ import annotations

from pathlib import Path

import pytest

from nsgsync.compile import compile_intent
from nsgsync.engine import make_plan
from nsgsync.provider import configure
from nsgsync.sources import load_manifests, load_topology
from tests.test_goldens import CASES, check_golden


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_offline_plan_golden(case: Path, update_goldens: bool) -> None:
    topology = load_topology(case / "topology.yaml")
    intent = compile_intent(topology, load_manifests([case / "manifests"]))
    planned = make_plan(configure(topology), intent)
    check_golden(case / "plan-aws.json", planned.plan.to_json(), update_goldens)
