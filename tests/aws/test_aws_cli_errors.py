"""`nsgsync plan` and `apply` against moto when the surroundings are wrong: a bad endpoint,
no answer at the prompt, a plan file that cannot be written. Nothing may be applied."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsgsync.cli.main import main
from tests.aws.conftest import Ec2

ROOT = Path(__file__).parent.parent.parent
EXAMPLE = ROOT / "config/example"


def args(topology: Path, *extra: str) -> list[str]:
    return ["-f", str(EXAMPLE / "cluster"), "--topology", str(topology), *extra]


def owned_groups(ec2: Ec2) -> list[str]:
    found = ec2.client.describe_security_groups(
        Filters=[{"Name": "tag:nsgsync.io/cluster", "Values": ["demo-eu-1"]}]
    )["SecurityGroups"]
    return [g["GroupName"] for g in found]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AWS_ENDPOINT_URL", "not a url"),
        ("AWS_ENDPOINT_URL", "http://"),
        ("AWS_ENDPOINT_URL", "localhost:4566"),  # no scheme: boto3 would refuse it
        ("AWS_ENDPOINT_URL_EC2", "http://[::1"),
    ],
)
def test_a_malformed_endpoint_setting_is_named(
    topology_file: Path,
    ec2: Ec2,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["apply", *args(topology_file, "--auto-approve")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith(f"error: {name} is not an http(s) URL: {value!r}\n")
    assert owned_groups(ec2) == []


def test_the_endpoint_in_use_passes_the_check(
    topology_file: Path, ec2: Ec2, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "")  # empty is unset for boto3
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", ec2.endpoint)
    assert main(["apply", *args(topology_file, "--auto-approve")]) == 0
    assert len(owned_groups(ec2)) == 6


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A real pseudo-terminal as standard input; yields the keyboard's end of it."""
    keyboard, screen = os.openpty()
    with open(screen, encoding="utf-8") as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        yield keyboard
    os.close(keyboard)


def test_end_of_input_at_the_prompt_applies_nothing(
    topology_file: Path, ec2: Ec2, terminal: int, capsys: pytest.CaptureFixture[str]
) -> None:
    os.write(terminal, b"\x04")  # Ctrl-D: the terminal's end of input
    assert main(["apply", *args(topology_file)]) == 1
    out, err = capsys.readouterr()
    assert "Do you want to perform these actions?" in out
    assert "error: no answer; nothing was applied" in err
    assert "Traceback" not in err
    assert owned_groups(ec2) == []


def test_an_answer_other_than_yes_applies_nothing(
    topology_file: Path, ec2: Ec2, terminal: int, capsys: pytest.CaptureFixture[str]
) -> None:
    os.write(terminal, b"y\n")
    assert main(["apply", *args(topology_file)]) == 1
    assert "Apply cancelled; nothing was changed." in capsys.readouterr().out
    assert owned_groups(ec2) == []
    os.write(terminal, b"yes\n")
    assert main(["apply", *args(topology_file)]) == 0
    assert len(owned_groups(ec2)) == 6


def test_a_closed_standard_input_applies_nothing(topology_file: Path, ec2: Ec2) -> None:
    # `<&-`: the process starts with no standard input at all (sys.stdin is None).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "providers")])}
    cli = [sys.executable, "-m", "nsgsync.cli.main", "apply", *args(topology_file)]
    done = subprocess.run(
        ["sh", "-c", 'exec "$@" <&-', "sh", *cli],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "refusing to apply without confirmation: no terminal to ask" in done.stderr
    assert "Traceback" not in done.stderr
    assert owned_groups(ec2) == []


@pytest.mark.parametrize("where", ["missing-folder", "a-folder"])
def test_a_plan_that_cannot_be_saved_names_the_path(
    topology_file: Path,
    ec2: Ec2,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    target = tmp_path / "no/such/plan.json" if where == "missing-folder" else tmp_path
    assert main(["plan", *args(topology_file, "--save-plan", str(target))]) == 1
    err = capsys.readouterr().err
    assert f"\nerror: {target}: cannot write the plan: " in err
    assert "Traceback" not in err
    assert not (tmp_path / "no").exists()
    assert owned_groups(ec2) == []
