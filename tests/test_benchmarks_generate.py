"""The benchmark's generated cluster is valid input, the same every time, and measurable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import run
from benchmarks.generate import CLOUDS, generate
from nsgsync.cli.main import main

SIZE = 50  # ten namespaces: every policy flavour and workload kind appears


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "cluster"
    generate(out, SIZE)
    return out


def test_generated_files_are_the_same_bytes_every_run(cluster: Path, tmp_path: Path) -> None:
    generate(tmp_path / "again", SIZE)
    first, second = _files(cluster), _files(tmp_path / "again")
    assert len(first) > 10
    assert first == second


def test_generated_manifests_use_what_real_policies_use(cluster: Path) -> None:
    text = "".join(p.read_text() for p in sorted((cluster / "manifests").rglob("*.yaml")))
    for feature in (
        "kind: Namespace",
        "kind: Deployment",
        "kind: StatefulSet",
        "kind: Pod\n",
        "kind: List",
        "operator: In\n",
        "operator: NotIn",
        "operator: Exists",
        "namespaceSelector:",
        "except:",
        "endPort:",
        "port: http",
        "containerPort:",
    ):
        assert feature in text, feature


def test_compile_reads_the_generated_cluster(
    cluster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    counts = json.loads((cluster / "cluster.json").read_text())
    argv = ["-f", str(cluster / "manifests"), "--topology", str(cluster / "topology-aws.yaml")]
    assert main(["compile", *argv, "-o", "json"]) == 0
    intent = json.loads(capsys.readouterr().out)
    assert len(intent["segments"]) == counts["segments"] == 2 * SIZE // 5 + 1
    policies = {p for s in intent["segments"] for r in s["ingress"]["rules"] for p in r["policies"]}
    # Every namespace's api accepts its web pods through a policy read from the files.
    assert {f"app-{i:05d}/api-ingress" for i in range(SIZE // 5)} <= policies


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_cloud_plans_the_generated_cluster_offline(
    cluster: Path, cloud: str, capsys: pytest.CaptureFixture[str]
) -> None:
    topology = str(cluster / f"topology-{cloud}.yaml")
    args = ["plan", "--offline", "-f", str(cluster / "manifests"), "--topology", topology]
    assert main([*args, "-o", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["provider"] == cloud
    assert plan["summary"]["add"] == len(plan["desired"]) > 0


# The modules each cloud's SDK is imported as.
SDKS = {"aws": ("boto3", "botocore"), "azure": ("azure.",), "gcp": ("google.",)}


@pytest.mark.parametrize("cloud", CLOUDS)
def test_an_offline_plan_does_not_load_the_cloud_sdk(cluster: Path, cloud: str) -> None:
    """An offline plan talks to nobody, so it must not pay the import of an SDK (most of
    a second for azure-mgmt-network, seconds for google-cloud-compute): users run it in
    CI on every change. Run as a process, as they do."""
    prefixes = SDKS[cloud]
    script = (
        "import sys\n"
        "from nsgsync.cli.main import main\n"
        "code = main(sys.argv[1:])\n"
        f"loaded = sorted(m for m in sys.modules if m.startswith({prefixes!r}))\n"
        "print('LOADED', loaded, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    args = ["plan", "--offline", "-o", "json", "-f", str(cluster / "manifests")]
    topology = str(cluster / f"topology-{cloud}.yaml")
    done = subprocess.run(
        [sys.executable, "-c", script, *args, "--topology", topology],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["provider"] == cloud
    assert "LOADED []" in done.stderr


def test_the_runner_measures_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run.main(["--sizes", "10", "--cache", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    for command in (
        "floor: parse with CSafeLoader",
        "compile -o json",
        "plan --offline -o json (aws)",
        "plan --offline -o json (azure)",
        "plan --offline -o json (gcp)",
        "explain",
    ):
        assert f"| 10 | {command} | " in table, command
    assert "failed" not in table and "timed out" not in table


def test_write_replaces_only_the_marked_block() -> None:
    text = f"# Title\n\nbefore\n{run.START}\nold table\n{run.END}\nafter\n"
    new = run.replace_block(text, "| new |\n", where="doc")
    assert new == f"# Title\n\nbefore\n{run.START}\n| new |\n{run.END}\nafter\n"
    with pytest.raises(SystemExit, match="no <!-- bench:e2e:start -->"):
        run.replace_block("no markers", "x", where="doc")
