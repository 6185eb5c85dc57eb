"""`nsgsync completion`: scripts a shell accepts, listing every verb and flag."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from nsgsync.cli.main import main


def script(capsys: pytest.CaptureFixture[str], shell: str) -> str:
    assert main(["completion", shell]) == 0
    return capsys.readouterr().out


def bash(code: str) -> str:
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def complete(path: Path, *words: str) -> list[str]:
    """What bash offers after `nsgsync WORDS...` (the last word is being completed)."""
    quoted = " ".join(f"'{w}'" for w in ("nsgsync", *words))
    out = bash(
        f"source {path}; COMP_WORDS=({quoted}); COMP_CWORD={len(words)}; _nsgsync; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    return [line for line in out.splitlines() if line]


def test_bash_accepts_the_script_and_completes_verbs_flags_and_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nsgsync.bash"
    path.write_text(script(capsys, "bash"))
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert bash(f"source {path}; complete -p nsgsync").strip() == (
        "complete -o default -F _nsgsync nsgsync"
    )
    assert complete(path, "") == [
        "compile",
        "explain",
        "plan",
        "apply",
        "destroy",
        "export",
        "graph",
        "run",
        "completion",
        "-h",
        "--help",
        "--version",
        "--debug",
    ]
    assert complete(path, "gr") == ["graph"]
    assert complete(path, "graph", "--prov") == ["--provider-rules"]
    assert complete(path, "graph", "-o", "") == ["dot", "html", "json", "mermaid"]
    assert complete(path, "plan", "--fail-on", "") == ["warning", "info"]
    assert "--compact" in complete(path, "plan", "--")
    assert "--cloud" in complete(path, "explain", "--c")
    # a file is the shell's own completion (-o default): nothing offered here
    assert complete(path, "plan", "--topology", "") == []


def test_zsh_and_fish_scripts_list_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    zsh = script(capsys, "zsh")
    assert zsh.startswith("#compdef nsgsync\n")
    assert "bashcompinit" in zsh
    fish = script(capsys, "fish")
    for verb in ("compile", "explain", "plan", "apply", "export", "graph", "run", "completion"):
        assert f"-n __fish_use_subcommand -a {verb} " in fish
    assert (
        "complete -c nsgsync -n '__fish_seen_subcommand_from graph' -s o -l output "
        "-x -a 'dot html json mermaid'"
    ) in fish
    for shell, check in (("zsh", ["zsh", "-n"]), ("fish", ["fish", "--no-execute"])):
        if shutil.which(check[0]):
            done = subprocess.run([*check, "/dev/stdin"], input=script(capsys, shell), text=True)
            assert done.returncode == 0
