"""Findings grow with policies plus segments, never with their product.

A generated 200-namespace cluster (1,000 policies, 401 segments) whose cross-namespace
peers select some pods of dozens of segments each: one finding per cause keeps the count
under three per policy plus one per segment, and every finding names what it concerns.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.generate import generate
from nsgsync.cli.main import main


def test_findings_stay_below_the_linear_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    counts = generate(tmp_path / "cluster", 1000)
    assert counts.namespaces >= 200
    argv = [
        "compile",
        "-f",
        str(tmp_path / "cluster" / "manifests"),
        "--topology",
        str(tmp_path / "cluster" / "topology-aws.yaml"),
        "-o",
        "json",
    ]
    assert main(argv) == 0
    intent = json.loads(capsys.readouterr().out)
    findings = intent["findings"]
    assert 0 < len(findings) <= 3 * counts.policies + counts.segments
    codes = Counter(f["code"] for f in findings)
    # The cluster's peers widen: the findings say so, once per policy, not per segment.
    assert codes["peer-widened"] > 0
    assert codes["peer-widened"] <= counts.policies
    assert codes["node-traffic"] == 1
    widened = [f for f in findings if f["code"] == "peer-widened" and f.get("segments")]
    assert widened, "a peer widened in several segments names them all"
    assert all(len(f["segments"]) > 1 for f in widened)
    # Stable order: the same input prints the same findings.
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["findings"] == findings
    # Text output groups them by code, a few examples each.
    assert main(argv[:-2]) == 0
    text = capsys.readouterr().out
    assert f"Findings: {len(findings)} (" in text
    assert text.count("    - ") <= 3 * len(codes)
