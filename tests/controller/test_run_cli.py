"""`nsgsync run` as a user starts it: a process, stopped with SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nsgsync.cli.main import build_parser, main
from tests.aws.conftest import Ec2
from tests.controller.conftest import owned_groups, wait_for
from tests.fakes.kube_api import KubeApi
from tests.test_cluster_source import write_kubeconfig

ROOT = Path(__file__).parent.parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_run_reconciles_then_stops_cleanly_on_sigterm(
    api: KubeApi, ec2: Ec2, topology_file: Path, tmp_path: Path
) -> None:
    kubeconfig = write_kubeconfig(tmp_path, api)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'providers'}"}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    argv = [
        *("run", "--topology", str(topology_file), "--kubeconfig", str(kubeconfig)),
        *("--lease-namespace", "nsgsync", "--identity", "proc-1", "--debounce", "0.5"),
        *("--lease-duration", "3", "--renew-deadline", "2", "--retry-period", "0.2"),
        *("--listen", f"127.0.0.1:{port}", "--log-format", "json", "--max-deletions", "50"),
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "nsgsync.cli.main", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: "shop-db" in owned_groups(ec2) or process.poll() is not None,
            "the process reconciled",
            timeout=60,
        )
        assert process.poll() is None
        wait_for(lambda: _status(f"http://127.0.0.1:{port}/readyz") == 200, "ready")
        assert _status(f"http://127.0.0.1:{port}/healthz") == 200
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    logs = [json.loads(line) for line in err.splitlines() if line.strip()]  # all JSON
    messages = [entry["message"] for entry in logs]
    assert {"time", "level", "logger", "message"} <= set(logs[0])
    assert "SIGTERM received: stopping" in messages
    assert "released the Lease nsgsync/nsgsync" in messages
    assert "holderIdentity" not in api.must("Lease", "nsgsync", "nsgsync")["spec"]


def test_run_help_documents_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "nsgsync run --topology" in text
    run = next(
        action.choices["run"]
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    for action in run._actions:
        if action.dest == "help":
            continue
        assert action.help, action.option_strings
        takes_value = action.nargs != 0 and action.choices is None
        if takes_value:  # options taking a value say their default or show one
            assert "e.g." in action.help or "default" in action.help, action.option_strings


def test_run_refuses_bad_settings(topology_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["run", "--topology", str(topology_file)]
    assert main([*base, "--renew-deadline", "20"]) == 1
    assert "retry period < renew deadline < lease duration" in capsys.readouterr().err
    assert main([*base, "--debounce", "0"]) == 1
    assert "--debounce must be more than 0" in capsys.readouterr().err
    assert main([*base, "--listen", "nowhere"]) == 1
    assert "is not ADDRESS:PORT" in capsys.readouterr().err
