"""The command line as a user runs it: output, exit codes and error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nsgsync.cli.main import main

ROOT = Path(__file__).parent.parent
EXAMPLE = [
    "-f",
    str(ROOT / "config/example/cluster"),
    "--topology",
    str(ROOT / "config/example/topology.yaml"),
]


def test_compile_json_is_the_intent_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", *EXAMPLE, "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "Intent"
    assert doc["cluster"] == "demo-eu-1"
    db = next(s for s in doc["segments"] if s["name"] == "shop-db")
    assert db["ingress"]["isolated"] is True
    # postgres is a named port, resolved through the StatefulSet's container port
    assert {
        "peers": ["10.0.2.0/24"],
        "protocol": "TCP",
        "ports": [[5432, 5432]],
        "policies": ["shop/db-allow-backend"],
        "sources": [{"policy": "shop/db-allow-backend", "rule": 0, "peer": 0}],
    } in db["ingress"]["rules"]


def test_compile_text_lists_segments_and_findings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", *EXAMPLE]) == 0
    out = capsys.readouterr().out
    assert "segment shop-db (10.0.3.0/24)" in out
    assert "Findings" in out


@pytest.mark.parametrize(
    ("src", "dst", "port", "verdicts", "code"),
    [
        (
            "shop/frontend",
            "shop/backend",
            "8081/TCP",
            ("Kubernetes: ALLOWED", "Cloud rules (Intent): ALLOWED"),
            0,
        ),
        (
            "shop/frontend",
            "shop/db",
            "5432",
            ("Kubernetes: DENIED", "Cloud rules (Intent): DENIED"),
            3,
        ),
        (
            "203.0.113.9",
            "shop/frontend",
            "8080",
            ("Kubernetes: ALLOWED", "Cloud rules (Intent): ALLOWED"),
            0,
        ),
    ],
)
def test_explain(
    capsys: pytest.CaptureFixture[str],
    src: str,
    dst: str,
    port: str,
    verdicts: tuple[str, str],
    code: int,
) -> None:
    assert main(["explain", *EXAMPLE, "--from", src, "--to", dst, "--port", port]) == code
    out = capsys.readouterr().out
    for line in verdicts:
        assert line in out


def test_bad_input_exits_1_naming_file_object_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\n"
        "spec:\n  podSelector: {}\n  ingress: [{ports: [{port: 99999}]}]\n"
    )
    code = main(
        ["compile", "-f", str(bad), "--topology", str(ROOT / "config/example/topology.yaml")]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert str(bad) in err
    assert "NetworkPolicy shop/p" in err
    assert "spec.ingress[0].ports[0].port" in err


def test_every_verb_has_help_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for verb in ("compile", "explain", "plan", "apply", "graph", "completion"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        assert "examples:" in capsys.readouterr().out
