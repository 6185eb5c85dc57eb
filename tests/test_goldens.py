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


def check_golden_folder(folder: Path, texts: dict[str, str], update: bool) -> None:
    """Like check_golden, for a folder of generated files (name -> text)."""
    if update or not folder.exists():
        folder.mkdir(exist_ok=True)
        for stale in {p.name for p in folder.iterdir()} - set(texts):
            (folder / stale).unlink()
        for name, text in texts.items():
            (folder / name).write_text(text)
        if not update:
            pytest.fail(f"{folder} did not exist; written now, review and commit it")
    assert sorted(p.name for p in folder.iterdir()) == sorted(texts), (
        f"{folder} holds other files; if intended, run with --update-goldens"
    )
    for name, text in texts.items():
        assert (folder / name).read_text() == text, (
            f"{folder / name} differs; if intended, run with --update-goldens"
        )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_intent_golden(case: Path, update_goldens: bool) -> None:
    topology = load_topology(case / "topology.yaml")
    inventory = load_manifests([case / "manifests"])
    intent = compile_intent(topology, inventory)
    check_golden(case / "intent.json", intent.to_json(), update_goldens)
