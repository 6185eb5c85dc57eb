"""Golden explain output: for cases with a connections.txt, what `nsgsync explain` says.

Each line of connections.txt is `FROM TO PORT`; explain.txt beside it holds the text the
CLI prints for each, one after the other. Regenerate with `--update-goldens`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nsgsync.cli.main import main
from tests.test_goldens import check_golden

CASES = sorted(p.parent for p in (Path(__file__).parent / "cases").glob("*/connections.txt"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_explain_golden(
    case: Path, update_goldens: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    out = []
    for line in (case / "connections.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        src, dst, port = line.split()
        code = main(
            [
                "explain",
                "-f",
                str(case / "manifests"),
                "--topology",
                str(case / "topology.yaml"),
                "--from",
                src,
                "--to",
                dst,
                "--port",
                port,
            ]
        )
        out.append(f"$ nsgsync explain --from {src} --to {dst} --port {port}  # exit {code}\n")
        out.append(capsys.readouterr().out + "\n")
    check_golden(case / "explain.txt", "".join(out), update_goldens)
