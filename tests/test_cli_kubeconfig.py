"""`--from-cluster` with kubeconfigs as users have them: missing, mistyped, malformed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nsgsync.cli.main import main
from tests.fakes.kube_api import KubeApi

ROOT = Path(__file__).parent.parent
TOPOLOGY = ["--topology", str(ROOT / "config/example/topology.yaml")]
TOKEN = "s3cr3t-token"


@pytest.fixture
def api() -> Iterator[KubeApi]:
    with KubeApi(token=TOKEN) as server:
        yield server


def kubeconfig(server: str, *, current: str | None = "prod-eu-1") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "ci", "user": {"token": TOKEN}}],
        "contexts": [
            {"name": name, "context": {"cluster": "c", "user": "ci"}}
            for name in ("prod-eu-1", "staging-eu-1")
        ],
    }
    if current is not None:
        doc["current-context"] = current
    return doc


def compile_from(path: Path | str, *extra: str) -> list[str]:
    return ["compile", "--from-cluster", "--kubeconfig", str(path), *extra, *TOPOLOGY]


def error_of(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_a_working_kubeconfig_and_context(
    api: KubeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(kubeconfig(api.url)))
    assert main(compile_from(path, "--context", "staging-eu-1", "-o", "json")) == 0
    assert '"kind": "Intent"' in capsys.readouterr().out
    assert api.calls  # it did read the stand-in


def test_a_missing_kubeconfig_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "no-such-config"
    assert main(compile_from(path)) == 1
    assert error_of(capsys) == f"error: {path}: kubeconfig file not found (named by --kubeconfig)"


def test_a_missing_kubeconfig_from_the_environment_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "gone"
    monkeypatch.setenv("KUBECONFIG", str(missing))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["compile", "--from-cluster", *TOPOLOGY]) == 1
    assert error_of(capsys) == f"error: {missing}: kubeconfig file not found (named by KUBECONFIG)"


def test_kubeconfig_from_the_environment_is_read_when_used(
    api: KubeApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # $KUBECONFIG set after the client was imported still counts, as for kubectl; a listed
    # file that does not exist is skipped, as kubectl does.
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(kubeconfig(api.url)))
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'gone'}:{path}")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["compile", "--from-cluster", *TOPOLOGY, "-o", "json"]) == 0
    assert '"kind": "Intent"' in capsys.readouterr().out


def test_an_unknown_context_lists_the_contexts(
    api: KubeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(kubeconfig(api.url)))
    assert main(compile_from(path, "--context", "prod-eu1")) == 1
    assert error_of(capsys) == (
        f"error: {path}: no context 'prod-eu1' in the kubeconfig "
        '(did you mean "prod-eu-1"?); it has: prod-eu-1, staging-eu-1'
    )
    assert not api.calls


@pytest.mark.parametrize(
    ("current", "message"),
    [
        (None, "the kubeconfig has no current context; it has: prod-eu-1, staging-eu-1"),
        ("gone", "the kubeconfig's current-context 'gone' is not one of its contexts; it has:"),
    ],
)
def test_a_bad_current_context_lists_the_contexts(
    api: KubeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    current: str | None,
    message: str,
) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(kubeconfig(api.url, current=current)))
    assert main(compile_from(path)) == 1
    assert error_of(capsys).startswith(f"error: {path}: {message}")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the kubeconfig file is empty"),
        ("apiVersion: v1\nclusters: [\n", "malformed kubeconfig: expected the node content"),
        ("- a\n- b\n", "malformed kubeconfig: not a mapping of clusters, contexts and users"),
        ("just text\n", "malformed kubeconfig: not a mapping of clusters, contexts and users"),
        ("contexts: 5\n", "field contexts: malformed kubeconfig: must be a list"),
        ("contexts: [prod]\n", "field contexts[0].name: malformed kubeconfig: each entry"),
        (
            "clusters: [{name: c}]\ncontexts: [{name: a, context: {cluster: c}}]\n",
            "field clusters[0].cluster: malformed kubeconfig: 'c' has no cluster mapping",
        ),
        ("current-context: [a]\n", "field current-context: malformed kubeconfig"),
        (b"\xff\xfe\x00", "cannot read the kubeconfig"),
        ("contexts: " + "[" * 5000 + "]" * 5000 + "\n", "malformed kubeconfig: nested too deeply"),
    ],
    ids=[
        "empty",
        "bad-yaml",
        "list",
        "scalar",
        "contexts-not-list",
        "context-no-name",
        "cluster-no-body",
        "current-not-name",
        "not-utf8",
        "too-deep",
    ],
)
def test_a_malformed_kubeconfig_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes, message: str
) -> None:
    path = tmp_path / "config"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert main(compile_from(path)) == 1
    line = error_of(capsys)
    assert line.startswith(f"error: {path}")
    assert message in line


def test_a_kubeconfig_folder_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(compile_from(tmp_path)) == 1
    assert error_of(capsys) == f"error: {tmp_path}: is a folder, not a kubeconfig file"


def test_the_clients_own_complaint_does_not_quote_credentials(
    api: KubeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A mis-indented user: the token sits beside the name, not under `user:`. The client
    # rejects it quoting the entry; the message must not carry the token into CI logs.
    doc = kubeconfig(api.url)
    doc["users"] = [{"name": "ci", "token": TOKEN}]
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(doc))
    assert main(compile_from(path)) == 1
    line = error_of(capsys)
    assert line.startswith(f"error: {path}: cannot use context 'prod-eu-1' of the kubeconfig")
    assert TOKEN not in line


def test_debug_shows_the_cause_of_a_kubeconfig_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config"
    path.write_text("apiVersion: v1\nclusters: [\n")
    assert main(["--debug", *compile_from(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "yaml.parser.ParserError" in err  # the cause, kept with `raise ... from exc`
    assert "which nsgsync reported as:" in err
    assert err.rstrip().splitlines()[-2].startswith(f"error: {path}:3: malformed kubeconfig")
