"""Plans for pull requests and terminals: Markdown, compact lines, colour, --fail-on."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nsgsync.cli.main import main
from nsgsync.intent import Finding, Severity
from nsgsync.plan import Ident, Plan, Resource
from nsgsync.plan.markdown import render_markdown
from tests.generated import write_cluster

ROOT = Path(__file__).parent.parent
# The example's namespaces.yaml lists all of its namespaces: said so, no namespace of
# unknown labels widens the rules (see docs/semantics.md).
EXAMPLE = [
    "-f",
    str(ROOT / "config/example/cluster"),
    "--namespaces-complete",
    "--topology",
    str(ROOT / "config/example/topology.yaml"),
]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["plan", *EXAMPLE, "--offline", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_markdown_summarises_per_segment_and_folds_the_details(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = plan(capsys, "-o", "markdown")
    assert code == 0
    assert out.startswith("### nsgsync plan: aws, cluster `demo-eu-1`")
    assert "**Plan: 40 to add, 0 to change, 0 to destroy.**" in out
    assert "| segment | to add | to change | to destroy |" in out
    assert "| `shop-db` | 6 | 0 | 0 |" in out
    assert "<details><summary><code>shop-db</code>: 6 to add</summary>" in out
    assert out.count("<details>") == out.count("</details>") == 6
    assert '+ security-group-rule "sgr/shop-db/in/tcp/5432-5432/10.0.2.0/24"' in out
    nodes = "| info | `node-traffic` | shop-backend, shop-db, shop-frontend, shop-other |"
    assert nodes in out  # findings, no baseline: all of them


def test_markdown_with_a_baseline_lists_only_new_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compile", *EXAMPLE, "-o", "json"]) == 0
    base = json.loads(capsys.readouterr().out)
    nodes = next(f for f in base["findings"] if f["code"] == "node-traffic")
    base["findings"].remove(nodes)  # as if the change made the node-traffic finding appear
    (tmp_path / "base.json").write_text(json.dumps(base))
    code, out, _ = plan(capsys, "-o", "markdown", "--baseline", str(tmp_path / "base.json"))
    assert code == 0
    assert "**Findings this change introduces:** 0 warning(s), 1 info." in out
    assert "| info | `node-traffic` | shop-backend, shop-db, shop-frontend, shop-other |" in out
    (tmp_path / "bad.json").write_text("{")
    assert plan(capsys, "-o", "markdown", "--baseline", str(tmp_path / "bad.json"))[0] == 1


def test_markdown_of_a_1000_policy_cluster_fits_a_github_comment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = write_cluster(tmp_path, policies=1000)
    assert main(["plan", *args, "--offline", "-o", "markdown"]) == 0
    out = capsys.readouterr().out
    assert len(out) <= 65_536
    assert "| `ns-0-web` |" in out
    assert re.search(r"_Details of \d+ more segment\(s\) left out to fit a 65,536-character", out)
    assert out.count("<details>") == out.count("</details>") > 0


def test_markdown_shows_changes_and_destroys() -> None:
    old = Resource(
        "rule", Ident("r", ("1",)), {"Port": 80, "Note": "a"}, segment="web", cloud_id="id-1"
    )
    new = Resource("rule", Ident("r", ("1",)), {"Port": 8080, "Note": "a"}, segment="web")
    gone = Resource("rule", Ident("r", ("2",)), {"Port": 22}, segment="web", cloud_id="id-2")
    p = Plan.build(provider="aws", cluster="c", desired=[new], actual=[old, gone])
    warn = Finding(severity=Severity.WARNING, code="peer-widened", message="m|x", segment="web")
    out = render_markdown(p, [warn])
    assert "| `web` | 0 | 1 | 1 |" in out
    assert "<code>web</code>: 1 to change, 1 to destroy" in out
    assert '~ rule "r/1" [id-1]\n-     Port = 80\n+     Port = 8080\n' in out
    assert '- rule "r/2" [id-2]\n-     Port = 22' in out
    assert "| warning | `peer-widened` | web |  | m\\|x |" in out  # a pipe cannot break the table
    fenced = Resource("rule", Ident("r", ("3",)), {"Note": "``` and ````"}, segment="db")
    out = render_markdown(Plan.build(provider="aws", cluster="c", desired=[fenced], actual=[]))
    assert "`````diff\n" in out  # a fence longer than any run of backticks inside


def test_compact_is_one_line_per_resource(capsys: pytest.CaptureFixture[str]) -> None:
    _, full, _ = plan(capsys)
    code, out, _ = plan(capsys, "--compact")
    assert code == 0
    lines = out.splitlines()
    resources = [line for line in lines if line[:2] in ("+ ", "~ ", "- ")]
    assert len(resources) == 40
    assert "+ security-group sg/shop-db (segment shop-db)" in lines
    assert lines[-1] == "Plan: 40 to add, 0 to change, 0 to destroy."
    assert len(lines) < len(full.splitlines()) / 4
    assert not ANSI.search(out)  # not a terminal: no colour


def _on_a_terminal(*args: str, env: dict[str, str] | None = None) -> str:
    """Run nsgsync with stdout on a pseudo-terminal, as a user at a shell does."""
    leader, follower = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | (env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "nsgsync.cli.main", *args],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env=environ,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(leader)
    return b"".join(chunks).decode()


def test_colour_only_on_a_terminal_and_never_against_no_color() -> None:
    args = ["plan", *EXAMPLE, "--offline", "--compact"]
    coloured = _on_a_terminal(*args)
    assert "\x1b[32m+ security-group sg/shop-db (segment shop-db)\x1b[0m" in coloured
    assert not ANSI.search(_on_a_terminal(*args, "--no-color"))
    assert not ANSI.search(_on_a_terminal(*args, env={"NO_COLOR": "1"}))


def test_fail_on_exits_1_when_findings_of_that_severity_exist(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The example has info findings (node-traffic) and no warnings.
    assert plan(capsys, "--fail-on", "warning")[0] == 0
    code, out, err = plan(capsys, "--fail-on", "info", "-o", "markdown")
    assert code == 1
    assert "### nsgsync plan" in out  # the plan is still printed
    assert "--fail-on info: 1 finding(s)" in err
    assert plan(capsys, "--fail-on", "info", "--detailed-exitcode")[0] == 1
    assert plan(capsys, "--detailed-exitcode")[0] == 2


def test_fail_on_warning_exits_1_on_a_widening(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A named port with no pod to resolve it widens to every port: a warning.
    (tmp_path / "p.yaml").write_text(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
        "metadata: {name: web, namespace: shop}\n"
        "spec: {podSelector: {}, ingress: [{ports: [{port: http}]}]}\n"
    )
    args = [
        "-f",
        str(tmp_path / "p.yaml"),
        "--topology",
        str(ROOT / "config/example/topology.yaml"),
    ]
    assert main(["plan", *args, "--offline", "--fail-on", "warning", "-o", "json"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["kind"] == "Plan"
    assert "--fail-on warning:" in err


def test_the_ci_examples_are_valid_yaml_running_the_markdown_plan() -> None:
    text = (ROOT / "docs/ci.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    github, gitlab = (yaml.safe_load(b) for b in blocks)
    steps = github["jobs"]["plan"]["steps"]
    assert any("-o markdown" in s.get("run", "") for s in steps)
    assert any("gh pr comment" in s.get("run", "") for s in steps)
    script = " ".join(gitlab["nsgsync-plan"]["script"])
    assert "--offline -o markdown" in script
    assert "/merge_requests/$CI_MERGE_REQUEST_IID/notes" in script
