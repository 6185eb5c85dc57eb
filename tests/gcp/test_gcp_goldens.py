"""Golden offline GCP plans: tests/cases/<case>/plan-gcp.json.

Run `pytest tests/gcp/test_gcp_goldens.py --update-goldens` to rewrite them from the
current code, then review the diff; never edit them by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nsgsync.compile import compile_intent
from nsgsync.engine import make_plan
from nsgsync.provider import configure
from nsgsync.sources import load_manifests, load_topology
from tests.test_goldens import check_golden

CASES = sorted(p for p in (Path(__file__).parent.parent / "cases").iterdir() if p.is_dir())
# Fixed, so that the goldens depend on the policies and the adapter only.
GCP = {
    "project": "nsgsync-seeds",
    "network": "vpc-seeds",
    "targetTags": ["gke-seeds-node"],
    "priorityBand": [100, 899],
}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_offline_plan_golden(case: Path, update_goldens: bool) -> None:
    topology = load_topology(case / "topology.yaml")
    topology = topology.model_copy(update={"provider": "gcp", "gcp": GCP})
    intent = compile_intent(topology, load_manifests([case / "manifests"]))
    planned = make_plan(configure(topology), intent)
    check_golden(case / "plan-gcp.json", planned.plan.to_json(), update_goldens)
