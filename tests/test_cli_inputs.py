"""Inputs as they really arrive: typos, wrong files, unwritable paths, through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nsgsync.cli.main import build_parser, main

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "config/example"
CLUSTER = ["-f", str(EXAMPLE / "cluster")]


def topology(tmp_path: Path, **changes: object) -> Path:
    """The example topology with some top-level keys changed, as a file."""
    doc = yaml.safe_load((EXAMPLE / "topology.yaml").read_text())
    doc.update(changes)
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    """The CLI as its own process, as a CI job runs it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "providers")])}
    return subprocess.run(
        [sys.executable, "-m", "nsgsync.cli.main", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


# --- topology: node addresses apart from pod addresses ---


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        # the whole of 10.0.0.0/20 is pod space, shop's segments among it
        (
            ["10.0.0.0/20"],
            "nodeCIDRs 10.0.0.0/20 overlaps podCIDRs 10.0.0.0/16 (10.0.0.0/20, within "
            "segments shop-frontend, shop-backend, shop-db and 2 more): every isolated segment "
            "allows the nodes",
        ),
        # pod space outside every segment: unsegmented pods would pass as nodes
        (
            ["10.1.0.0/20", "10.0.64.0/20"],
            "nodeCIDRs 10.0.64.0/20 overlaps podCIDRs 10.0.0.0/16 (10.0.64.0/20): every",
        ),
        # podCIDRs inside the node range
        (
            ["10.0.0.0/8"],
            "nodeCIDRs 10.0.0.0/8 overlaps podCIDRs 10.0.0.0/16 (10.0.0.0/16, within segments",
        ),
    ],
)
def test_node_cidrs_overlapping_pods_are_a_topology_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], nodes: list[str], message: str
) -> None:
    path = topology(tmp_path, nodeCIDRs=nodes)
    assert main(["compile", *CLUSTER, "--topology", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:1: Topology demo-eu-1: {message}" in err
    assert "Traceback" not in err


def test_ipv6_node_cidrs_overlapping_pods_are_a_topology_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = topology(
        tmp_path, podCIDRs=["10.0.0.0/16", "fd00::/48"], nodeCIDRs=["10.1.0.0/20", "fd00::/64"]
    )
    assert main(["compile", *CLUSTER, "--topology", str(path)]) == 1
    assert "nodeCIDRs fd00::/64 overlaps podCIDRs fd00::/48 (fd00::/64)" in capsys.readouterr().err


def test_node_cidrs_apart_from_pods_compile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = topology(tmp_path, nodeCIDRs=["10.1.0.0/20", "fd00:1::/64"], podCIDRs=["10.0.0.0/16"])
    assert main(["compile", *CLUSTER, "--topology", str(path), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "Intent"


@pytest.mark.parametrize(
    "path",
    [
        EXAMPLE / "topology.yaml",
        *sorted((ROOT / "tests/cases").glob("*/topology.yaml")),
    ],
    ids=lambda p: p.parent.name,
)
def test_shipped_topologies_still_load(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", *CLUSTER, "--topology", str(path), "-o", "json"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "expected one Topology document, found 0"),
        ("- a\n- b\n", "a document must be a mapping"),
        ("just text\n", "a document must be a mapping"),
        ("cluster: [\n", "malformed YAML"),
        (b"\xff\xfe\x00bad", "not UTF-8 text"),
    ],
    ids=["empty", "list", "scalar", "bad-yaml", "not-utf8"],
)
def test_a_bad_topology_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes, message: str
) -> None:
    path = tmp_path / "topology.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert main(["compile", *CLUSTER, "--topology", str(path)]) == 1
    err = capsys.readouterr().err
    assert message in err and str(path) in err
    assert "Traceback" not in err


def test_a_topology_folder_or_missing_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for path in (tmp_path, tmp_path / "nope.yaml"):
        assert main(["compile", *CLUSTER, "--topology", str(path)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}: cannot read file")


# --- usage errors exit 1: 2 means "changes present" under --detailed-exitcode ---


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plan", "--topology", "t.yaml", "--no-such-flag"], "unrecognized arguments"),
        (["plan", "--detailed-exitcode", *CLUSTER], "the following arguments are required"),
        (["plan", "--detailed-exitcode", "-o", "yaml"], "invalid choice: 'yaml'"),
        (["plan", "--detailed-exitcode", "--topology"], "expected one argument"),
        (["apply", "--max-deletions", "some"], "invalid"),
        (["apply", "--max-deletions", "-1"], "--max-deletions"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: VERB"),
    ],
)
def test_usage_errors_exit_1_with_the_usage(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("usage: nsgsync")
    assert message in err


def test_a_usage_error_exits_1_as_a_process() -> None:
    done = run("plan", "--detailed-exitcode", "--topology", "t.yaml", "--ofline")
    assert done.returncode == 1
    assert done.stderr.startswith("usage: nsgsync")
    assert "unrecognized arguments: --ofline" in done.stderr
    assert "Traceback" not in done.stderr
    done = run("--version")
    assert done.returncode == 0 and done.stdout.startswith("nsgsync ")


# --- --save-plan and --offline ---


def test_an_offline_plan_is_refused_at_save_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "plan.json"
    topology_file = str(EXAMPLE / "topology.yaml")
    argv = ["plan", *CLUSTER, "--topology", topology_file, "--offline", "--save-plan", str(saved)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "--save-plan cannot save an --offline plan" in err
    assert not saved.exists()


def test_an_offline_plan_kept_as_json_is_refused_by_apply_before_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens there: a refusal after connecting would be a connection error.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    topology_file = str(EXAMPLE / "topology.yaml")
    assert main(["plan", *CLUSTER, "--topology", topology_file, "--offline", "-o", "json"]) == 0
    saved = tmp_path / "plan.json"
    saved.write_text(capsys.readouterr().out)
    assert main(["apply", "--topology", topology_file, "--auto-approve", str(saved)]) == 1
    err = capsys.readouterr().err
    assert f"{saved}: an --offline plan cannot be applied" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "not a saved nsgsync plan"),
        ("{", "not a saved nsgsync plan"),
        ("[" * 100_000 + "]" * 100_000, "not a saved nsgsync plan"),
    ],
    ids=["list", "truncated", "too-deep"],
)
def test_a_file_that_is_no_plan_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    saved = tmp_path / "plan.json"
    saved.write_text(content)
    topology_file = str(EXAMPLE / "topology.yaml")
    assert main(["apply", "--topology", topology_file, str(saved)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {saved}: {message}")
    assert "Traceback" not in err


# --- the last-resort net, and --debug ---

BROKEN_LIBRARY = {
    "__init__.py": "from kubernetes import client, config\n",
    "client.py": "",
    "config.py": (
        "class ConfigException(Exception):\n    pass\n\n\n"
        "def new_client_from_config(**kwargs):\n"
        "    raise RuntimeError('the client library broke')\n"
    ),
}


def test_an_unexpected_failure_is_one_line_asking_for_a_report(tmp_path: Path) -> None:
    # A third-party library failing in a way nsgsync does not expect: here a stand-in
    # `kubernetes` package, first on the path of the nsgsync process.
    library = tmp_path / "site" / "kubernetes"
    library.mkdir(parents=True)
    for name, text in BROKEN_LIBRARY.items():
        (library / name).write_text(text)
    config = tmp_path / "kubeconfig"
    config.write_text(
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
    )
    argv = ["compile", "--from-cluster", "--kubeconfig", str(config)]
    argv += ["--topology", str(EXAMPLE / "topology.yaml")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)])}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    cli = [sys.executable, "-m", "nsgsync.cli.main"]
    done = subprocess.run([*cli, *argv], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        "error: internal error: RuntimeError: 'the client library broke' "
        "(run with --debug for the traceback; please report it)"
    )
    debug = [*cli, *argv, "--debug"]  # --debug is accepted after the verb as well
    done = subprocess.run(debug, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "RuntimeError: the client library broke" in done.stderr


def test_debug_before_the_verb_survives_the_verbs_own_default(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "topology.yaml"
    bad.write_text("cluster: [\n")
    argv = ["compile", *CLUSTER, "--topology", str(bad)]
    assert main(["--debug", *argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "yaml.parser.ParserError" in err  # the cause, underneath nsgsync's InputError
    assert err.rstrip().splitlines()[-2].startswith(f"error: {bad}:2: malformed YAML")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 2  # the error and its hint


@pytest.mark.parametrize(
    "argv",
    [
        ["compile", "--topology", "t.yaml"],
        ["plan", "--topology", "t.yaml"],
        ["export", "terraform", "--topology", "t.yaml", "--out", "d"],
    ],
    ids=lambda argv: argv[0] if argv[0] != "export" else "export-terraform",
)
def test_debug_is_accepted_before_and_after_the_verb(argv: list[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["--debug", *argv]).debug is True
    assert parser.parse_args([*argv, "--debug"]).debug is True
    assert parser.parse_args(argv).debug is False
