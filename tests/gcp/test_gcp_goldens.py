"""Golden offline GCP plans: tests/cases/<case>/plan-gcp.json.

Run `pytest tests/gcp/test_gcp_goldens.py --update-goldens` to rewrite them from the
current code, then review the diff; never edit them by hand.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


def test_offline_plan_does_not_load_the_compute_sdk(tmp_path: Path) -> None:
    """An offline plan talks to nobody, so it must not pay the seconds that importing
    google-cloud-compute takes: a user runs it in CI on every change."""
    case = CASES[0]
    topology = tmp_path / "topology.yaml"
    data = yaml.safe_load((case / "topology.yaml").read_text())
    data.pop("aws", None)
    topology.write_text(yaml.safe_dump({**data, "provider": "gcp", "gcp": GCP}))
    script = (
        "import sys\n"
        "from nsgsync.cli.main import main\n"
        "code = main(sys.argv[1:])\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('google.cloud'))\n"
        "print('LOADED', loaded, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    args = ["plan", "--offline", "-o", "json", "-f", str(case / "manifests")]
    done = subprocess.run(
        [sys.executable, "-c", script, *args, "--topology", str(topology)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"firewall"' in done.stdout
    assert "LOADED []" in done.stderr
