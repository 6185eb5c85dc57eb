"""Golden files: tests/cases/<case>/ holds inputs and the expected outputs beside them.

Run `pytest tests/test_goldens.py --update-goldens` to rewrite the expected files from the
current code, then review the diff; never edit them by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nsgsync.compile import compile_intent
from nsgsync.sources import load_manifests, load_topology

CASES = sorted(p for p in (Path(__file__).parent / "cases").iterdir() if p.is_dir())


def check_golden(path: Path, actual: str, update: bool) -> None:
    if update or not path.exists():
        path.write_text(actual)
        if not update:
            pytest.fail(f"{path} did not exist; written now, review and commit it")
    assert actual == path.read_text(), f"{path} differs; if intended, run with --update-goldens"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_intent_golden(case: Path, update_goldens: bool) -> None:
    topology = load_topology(case / "topology.yaml")
    inventory = load_manifests([case / "manifests"])
    intent = compile_intent(topology, inventory)
    check_golden(case / "intent.json", intent.to_json(), update_goldens)
