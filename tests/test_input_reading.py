"""Reading manifests and topologies as a user meets it: `nsgsync compile -f DIR --topology T`.

Every bad input ends in exit code 1 and one `error:` line naming the file (and line), the
object and the field, as the API server would refuse it; never a traceback, never a silent
skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from nsgsync.cli.main import main
from nsgsync.sources.files import FAST_LOADER, PURE_LOADER, parse_text

ROOT = Path(__file__).parent.parent
EXAMPLE_TOPOLOGY = ROOT / "config/example/topology.yaml"
EXAMPLE_CLUSTER = ROOT / "config/example/cluster"

POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  podSelector: {}
  ingress:
    - from: [{podSelector: {matchLabels: {tier: frontend}}}]
      ports: [{port: 80}]
"""


def compile_folder(
    folder: Path, capsys: pytest.CaptureFixture[str], *, topology: Path = EXAMPLE_TOPOLOGY
) -> tuple[int, str, str]:
    code = main(["compile", "-f", str(folder), "--topology", str(topology), "-o", "json"])
    out, err = capsys.readouterr()
    return code, out, err


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, name: str = "bad.yaml"
) -> tuple[Path, str]:
    """Compile a folder holding `text` alone; return the file and its one error line."""
    path = write(tmp_path / "m", name, text)
    code, out, err = compile_folder(tmp_path / "m", capsys)
    assert code == 1, out
    first, *rest = err.splitlines()
    assert first.startswith(f"error: {path}"), err
    assert all(line.startswith("  hint:") for line in rest), err
    assert "Traceback" not in err
    return path, first


# --- 1. fast reading, the same YAML 1.1 values as PyYAML ---


def test_fast_loader_is_libyaml_when_pyyaml_has_it() -> None:
    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")
    assert issubclass(FAST_LOADER, yaml.CSafeLoader)


YAML_11 = """\
a: on
b: yes
c: off
d: 0755
e: '0755'
f: 0x1F
g: 1_000
h: 2001-12-14
i: ~
base: &base {x: 1, y: 2}
merged:
  <<: *base
  y: 3
alias: *base
"""


@pytest.mark.parametrize("loader", [FAST_LOADER, PURE_LOADER], ids=["fast", "pure"])
def test_both_loaders_keep_yaml_1_1_values(loader: type) -> None:
    (doc,) = parse_text(YAML_11, "t.yaml", json_text=False, loader=loader)
    assert doc.body == yaml.safe_load(YAML_11)
    assert doc.body["a"] is True and doc.body["b"] is True and doc.body["c"] is False
    assert doc.body["d"] == 0o755 and doc.body["e"] == "0755"
    assert doc.body["merged"] == {"x": 1, "y": 3}


# Plain scalars whose YAML 1.1 type a regular expression decides, and near misses.
TRICKY_SCALARS = (  # noqa: SIM905 - a list of 40 short words reads better as words
    "on On ON oN off yes Yes yEs no NO y n true True tRUE false null Null nULL ~ 0755 0o755 0x1F "
    "0b101 1_000 1e3 1.5 6.8523015e+5 .inf -.Inf 190:20:30 1:2 2001-12-14 "
    "2001-12-14t21:59:43.10-05:00 TCP UDP 8080 -1 +1 0 00 080 09 web-1 app"
).split()


@pytest.mark.parametrize("loader", [FAST_LOADER, PURE_LOADER], ids=["fast", "pure"])
def test_remembered_tags_are_those_pyyaml_resolves(loader: type) -> None:
    """The loaders remember each plain scalar's tag; a text read again must come out as
    the same type and value as PyYAML's own loader reads it, every time."""
    text = "".join(f"k{i}: {value}\n" for i, value in enumerate(TRICKY_SCALARS))
    expected = {k: (type(v), v) for k, v in yaml.safe_load(text).items()}
    assert isinstance(expected["k0"][1], bool) and expected["k20"] == (int, 0o755)
    for _ in range(2):  # the second read answers from what the first remembered
        (doc,) = parse_text(text, "t.yaml", json_text=False, loader=loader)
        got = {k: (type(v), v) for k, v in doc.body.items()}
        assert got == expected


def test_both_loaders_read_the_example_cluster_alike() -> None:
    for path in sorted(EXAMPLE_CLUSTER.iterdir()):
        text = path.read_text()
        fast = list(parse_text(text, str(path), json_text=False, loader=FAST_LOADER))
        pure = list(parse_text(text, str(path), json_text=False, loader=PURE_LOADER))
        assert [(d.line, d.body) for d in fast] == [(d.line, d.body) for d in pure]
        assert fast


def test_yes_is_a_boolean_so_a_label_value_yes_must_be_quoted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, line = refused(tmp_path, capsys, POLICY.replace("tier: frontend", "debug: yes"))
    assert "matchLabels" in line
    assert "True" in line


def test_json_errors_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, line = refused(
        tmp_path,
        capsys,
        '{"kind": "NetworkPolicy",\n "metadata": {"name": "p"},\n "spec": {"podSelector": }}\n',
        "bad.json",
    )
    assert line.startswith(f"error: {path}:3: malformed JSON")


def test_json_stream_of_objects_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = yaml.safe_load(POLICY)
    bad = {**good, "metadata": {"name": "q", "namespace": "shop"}, "spec": {"podSelector": 7}}
    text = json.dumps(good, indent=1) + "\n" + json.dumps(bad)
    path, line = refused(tmp_path, capsys, text, "p.json")
    assert line.startswith(f"error: {path}:{text.count(chr(10)) + 1}: NetworkPolicy shop/q: ")
    assert "field spec.podSelector: must be a mapping, not 7" in line


def test_json_duplicate_key_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, line = refused(
        tmp_path,
        capsys,
        '{"kind": "NetworkPolicy", "metadata": {"name": "p", "name": "q"}, "spec": {}}',
        "bad.json",
    )
    assert "duplicate key 'name'" in line


def test_a_file_that_is_not_utf8_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m" / "latin1.yaml"
    path.parent.mkdir()
    path.write_bytes(POLICY.replace("name: p", "name: caf\xe9").encode("latin-1"))
    code, _, err = compile_folder(tmp_path / "m", capsys)
    assert code == 1
    assert err.startswith(f"error: {path}:3: not UTF-8 text: byte 0xe9")


# --- 2. duplicate keys ---


def test_duplicate_ingress_key_is_refused_not_half_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = POLICY + "  ingress:\n    - from: [{namespaceSelector: {}}]\n"
    path, line = refused(tmp_path, capsys, text)
    assert line.startswith(f"error: {path}:9: duplicate key 'ingress' (first at line 6)")


def test_a_merge_key_may_be_overridden(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(
        tmp_path / "m",
        "p.yaml",
        """\
        kind: NetworkPolicy
        metadata:
          <<: &meta {name: p, namespace: shop}
          name: q
        spec:
          podSelector: {}
          ingress: [{from: [{podSelector: {}}], ports: [{port: 80}]}]
        """,
    )
    code, out, err = compile_folder(tmp_path / "m", capsys)
    assert code == 0, err
    assert "shop/q" in out and "shop/p" not in out


# --- 3. alias bombs, depth, control characters ---


def test_alias_bomb_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["kind: NetworkPolicy", "metadata: {name: p}", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    lines.append("spec: {podSelector: {matchLabels: *a9}}")
    _, line = refused(tmp_path, capsys, "\n".join(lines) + "\n")
    assert "excessive aliasing" in line
    assert len(line) < 300


def test_a_few_aliases_are_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(
        tmp_path / "m",
        "p.yaml",
        """\
        kind: NetworkPolicy
        metadata: {name: p, namespace: shop}
        spec:
          podSelector: &sel {matchLabels: {tier: db}}
          ingress: [{from: [{podSelector: *sel}]}]
        """,
    )
    code, _, err = compile_folder(tmp_path / "m", capsys)
    assert code == 0, err


def test_self_referencing_alias_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, line = refused(tmp_path, capsys, POLICY + "  egress: &loop [{to: *loop}]\n")
    assert "alias refers to a node that contains it" in line


@pytest.mark.parametrize("depth", [101, 900, 5000])
def test_deep_nesting_is_an_error_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], depth: int
) -> None:
    _, line = refused(tmp_path, capsys, POLICY + "x: " + "[" * depth + "]" * depth + "\n")
    assert "nesting" in line


@pytest.mark.parametrize("loader", [FAST_LOADER, PURE_LOADER], ids=["fast", "pure"])
def test_both_loaders_refuse_deep_block_nesting(loader: type) -> None:
    from nsgsync.errors import InputError

    text = "".join("  " * i + f"k{i}:\n" for i in range(400)) + "  " * 400 + "v\n"
    with pytest.raises(InputError, match="nesting"):
        list(parse_text(text, "deep.yaml", json_text=False, loader=loader))


def test_deep_json_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, line = refused(tmp_path, capsys, '{"kind": ' + "[" * 5000 + "]" * 5000 + "}", "d.json")
    assert "nesting" in line


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b"])
def test_control_character_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], char: str
) -> None:
    path, line = refused(tmp_path, capsys, "# é\n" + POLICY.replace("name: p", f"name: p{char}"))
    assert line.startswith(f"error: {path}:4: character U+{ord(char):04X} is not allowed")


# --- 4. types before conversion ---


@pytest.mark.parametrize(
    ("port", "field", "words"),
    [
        ("{port: true}", "ports[0].port", "got True"),
        ("{port: '5432'}", "ports[0].port", "quoted number"),
        ("{port: 80.0}", "ports[0].port", "got 80.0"),
        ("{protocol: [TCP], port: 80}", "ports[0].protocol", "unknown protocol ['TCP']"),
        ("{port: 80, endPort: '90'}", "ports[0].endPort", "must be an integer, not '90'"),
        ("{port: 80, endPort: true}", "ports[0].endPort", "must be an integer, not True"),
        ("{port: web--http}", "ports[0].port", "consecutive hyphens"),
        ('{port: "http\\n"}', "ports[0].port", "alpha-numeric"),
    ],
)
def test_port_types_are_not_coerced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], port: str, field: str, words: str
) -> None:
    path, line = refused(tmp_path, capsys, POLICY.replace("{port: 80}", port))
    assert line.startswith(f"error: {path}:8: NetworkPolicy shop/p: ")
    assert f"field spec.ingress[0].{field}:" in line
    assert words in line


WORKLOAD = """\
kind: Deployment
metadata: {name: db, namespace: shop}
spec:
  template:
    metadata: {labels: {tier: db}}
    spec:
      containers:
        - name: c
          ports: [PORT]
"""


@pytest.mark.parametrize(
    ("port", "words"),
    [
        ("{name: pg}", "Required value"),
        ("{containerPort: '5432'}", "containerPort '5432' is not a port number"),
        ("{containerPort: true}", "containerPort True is not a port number"),
        ("{containerPort: 5432, protocol: [TCP]}", "unknown protocol ['TCP']"),
        ("{containerPort: 5432, name: 7}", "port name must be a string"),
        ("{containerPort: 5432, name: Postgres}", "alpha-numeric"),
    ],
)
def test_container_port_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], port: str, words: str
) -> None:
    path, line = refused(tmp_path, capsys, WORKLOAD.replace("PORT", port))
    assert line.startswith(f"error: {path}:9: Deployment shop/db: field spec.template.spec.")
    assert words in line


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("    spec:\n", "    spec:\n      hostNetwork: 'true'\n", "spec.template.spec.hostNetwork",
         "hostNetwork must be true or false, not 'true'"),
        ("        - name: c\n          ports: [{containerPort: 1}]\n", "        - [c]\n",
         "spec.template.spec.containers[0]",
         "must be a mapping, not ['c']"),
        ("    metadata: {labels: {tier: db}}", "    metadata: [tier]", "spec.template.metadata",
         "must be a mapping"),
    ],
)  # fmt: skip
def test_pod_template_of_the_wrong_shape_is_an_error_not_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, field: str, words: str
) -> None:
    text = WORKLOAD.replace("PORT", "{containerPort: 1}")
    assert old in text
    _, line = refused(tmp_path, capsys, text.replace(old, new))
    assert f"Deployment shop/db: field {field}: {words}" in line


# --- 5. Kubernetes' name and label syntax ---


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("tier: frontend", "tier: front end", "matchLabels", "a valid label must be"),
        ("tier: frontend", "tier: " + "x" * 64, "matchLabels", "no more than 63 characters"),
        ("tier: frontend", "-tier: a", "matchLabels", "name part must consist"),
        ("tier: frontend", "Example.com/tier: a", "matchLabels", "prefix part a lowercase RFC"),
        ("tier: frontend", "a/b/c: a", "matchLabels", "a qualified name"),
        ("tier: frontend", "/tier: a", "matchLabels", "prefix part must be non-empty"),
        ("tier: frontend", 'tier: "db\\n"', "matchLabels", "a valid label must be"),
        ("tier: frontend", '"tier\\n": db', "matchLabels", "name part must consist"),
        (
            "{matchLabels: {tier: frontend}}",
            "{matchExpressions: [{key: 'a b', operator: Exists}]}",
            "matchExpressions[0].key",
            "name part must consist",
        ),
        (
            "{matchLabels: {tier: frontend}}",
            "{matchExpressions: [{key: a, operator: In, values: ['x y']}]}",
            "matchExpressions[0].values",
            "a valid label must be",
        ),
    ],
)
def test_selector_labels_are_checked_like_the_api_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, field: str, words: str
) -> None:
    _, line = refused(tmp_path, capsys, POLICY.replace(old, new))
    assert f"field spec.ingress[0].from[0].podSelector.{field}: Invalid value: " in line
    assert words in line


def test_empty_label_value_is_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "m", "p.yaml", POLICY.replace("tier: frontend", "tier: ''"))
    code, _, err = compile_folder(tmp_path / "m", capsys)
    assert code == 0, err


@pytest.mark.parametrize(
    ("text", "obj_field", "words"),
    [
        (
            POLICY.replace("name: p,", "name: My_Policy,"),
            "field metadata.name",
            "RFC 1123 subdomain",
        ),
        (POLICY.replace("name: p,", "name: 7,"), "field metadata.name", "must be a string"),
        (
            POLICY.replace("namespace: shop", "namespace: Shop"),
            "NetworkPolicy p: field metadata.namespace",
            "RFC 1123 label",
        ),
        (
            POLICY.replace("namespace: shop", "namespace: a.b"),
            "field metadata.namespace",
            "RFC 1123 label",
        ),
        ("kind: Namespace\nmetadata: {name: shop.eu}\n", "field metadata.name", "RFC 1123 label"),
        (
            "kind: Namespace\nmetadata: {name: shop, labels: {team: a b}}\n",
            "Namespace shop: field metadata.labels",
            "a valid label must be",
        ),
        (
            "kind: Namespace\nmetadata: {name: shop, labels: {team: 1}}\n",
            "Namespace shop: field metadata.labels",
            "strings to strings",
        ),
        (
            WORKLOAD.replace("tier: db", "tier: d b").replace("PORT", "{containerPort: 1}"),
            "Deployment shop/db: field spec.template.metadata.labels",
            "a valid label must be",
        ),
        ("kind: Pod\nmetadata: {name: Web, namespace: shop}\n", "field metadata.name", "subdomain"),
        ('kind: Namespace\nmetadata: {name: "shop\\n"}\n', "field metadata.name", "RFC 1123 label"),
        (
            "kind: Namespace\nmetadata: {name: shop, lables: {team: a}}\n",
            "field metadata.lables",
            'did you mean "labels"',
        ),
        (POLICY.replace("spec:", "specs:"), "field specs", 'did you mean "spec"'),
        ("metadata: {name: p}\nspec: {}\n", "field kind", "kind is missing"),
        ("kind: List\nitems: {a: b}\n", "field items", "must be a list"),
    ],
)
def test_names_and_labels_are_checked_like_the_api_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, obj_field: str, words: str
) -> None:
    _, line = refused(tmp_path, capsys, text)
    assert obj_field in line
    assert words in line


# --- 6. quoted values are cut short ---


def test_a_huge_value_is_quoted_as_an_excerpt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = "a" * 200_000
    for port in (f"{{port: {huge}}}", f"{{port: 80, protocol: {huge}}}"):
        _, line = refused(tmp_path, capsys, POLICY.replace("{port: 80}", port))
        assert len(line) < 600
        assert "..." in line


def test_a_huge_label_is_quoted_as_an_excerpt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, line = refused(tmp_path, capsys, POLICY.replace("tier: frontend", "tier: " + "b" * 100_000))
    assert len(line) < 800


# --- 7. unknown keys are named, with a suggestion ---


def test_misspelt_key_in_a_policy_suggests_the_right_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, line = refused(tmp_path, capsys, POLICY.replace("  podSelector: {}", "  podSelecter: {}"))
    assert line.startswith(f"error: {path}:5: NetworkPolicy shop/p: field spec.podSelecter: ")
    assert "unknown field 'podSelecter' (did you mean \"podSelector\"?)" in line


def test_misspelt_key_deep_in_a_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, line = refused(tmp_path, capsys, POLICY.replace("{port: 80}", "{prot: 80}"))
    assert "field spec.ingress[0].ports[0].prot: unknown field 'prot' (did you mean \"port\"?)" in (
        line
    )


TOPOLOGY = """\
apiVersion: nsgsync.io/v1alpha1
kind: Topology
cluster: c1
provider: aws
podCIDRs: [10.0.0.0/16]
segments:
  - {name: a, namespace: shop, cidrs: [10.0.1.0/24]}
"""


@pytest.mark.parametrize(
    ("old", "new", "field", "suggestion"),
    [
        ("segments:", "segmnets:", "segmnets", "segments"),
        ("cidrs: [10.0.1.0/24]", "cidr: [10.0.1.0/24]", "segments[0].cidr", "cidrs"),
        (
            "namespace: shop",
            "namespace: shop, podSelecter: {}",
            "segments[0].podSelecter",
            "podSelector",
        ),
    ],
)
def test_misspelt_topology_key_suggests_the_right_one(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    old: str,
    new: str,
    field: str,
    suggestion: str,
) -> None:
    write(tmp_path / "m", "p.yaml", POLICY)
    topology = write(tmp_path, "topology.yaml", TOPOLOGY.replace(old, new))
    code, _, err = compile_folder(tmp_path / "m", capsys, topology=topology)
    assert code == 1
    line = err.splitlines()[0]
    assert line.startswith(f"error: {topology}:")
    assert f"field {field}: unknown field" in line
    assert f'(did you mean "{suggestion}"?)' in line


def test_topology_label_selector_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "m", "p.yaml", POLICY)
    text = TOPOLOGY.replace(
        "namespace: shop", "namespace: shop, podSelector: {matchLabels: {a: true}}"
    )
    topology = write(tmp_path, "topology.yaml", text)
    code, _, err = compile_folder(tmp_path / "m", capsys, topology=topology)
    assert code == 1
    assert "segments[0].podSelector.matchLabels" in err and "string value" in err


# --- 8. symbolic links ---


def test_symlinked_folder_is_followed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "elsewhere", "p.yaml", POLICY)
    (tmp_path / "m").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "m" / "linked")
    code, out, err = compile_folder(tmp_path / "m", capsys)
    assert code == 0, err
    assert "shop/p" in out


def test_symlink_loop_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "m" / "sub", "p.yaml", POLICY)
    os.symlink(tmp_path / "m", tmp_path / "m" / "sub" / "up")
    code, _, err = compile_folder(tmp_path / "m", capsys)
    assert code == 1
    assert err.startswith(f"error: {tmp_path / 'm' / 'sub' / 'up'}: a symbolic link loop")


def test_a_file_reached_twice_through_links_is_read_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "m", "a/p.yaml", POLICY)
    os.symlink(path, tmp_path / "m" / "b.yaml")
    code, _, err = compile_folder(tmp_path / "m", capsys)
    assert code == 0, err


def test_broken_symlink_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m").mkdir()
    os.symlink(tmp_path / "gone.yaml", tmp_path / "m" / "p.yaml")
    code, _, err = compile_folder(tmp_path / "m", capsys)
    assert code == 1
    assert err.startswith(f"error: {tmp_path / 'm' / 'p.yaml'}: a broken symbolic link")


# --- 9. one namespace, two sets of labels ---


def test_namespace_twice_with_different_labels_names_both_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "m", "a.yaml", "kind: Namespace\nmetadata: {name: shop, labels: {team: a}}\n")
    second = write(
        tmp_path / "m", "b.yaml", "kind: Namespace\nmetadata: {name: shop, labels: {team: b}}\n"
    )
    code, _, err = compile_folder(tmp_path / "m", capsys)
    assert code == 1
    assert err.startswith(f"error: {second}:1: Namespace shop: field metadata.labels: ")
    assert f"also in {tmp_path / 'm' / 'a.yaml'}:1" in err


def test_namespace_twice_alike_is_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a.yaml", "b.yaml"):
        write(tmp_path / "m", name, "kind: Namespace\nmetadata: {name: shop, labels: {t: a}}\n")
    code, _, err = compile_folder(tmp_path / "m", capsys)
    assert code == 0, err


# --- 10. standard input ---


TOPOLOGY_ARGS = ["--topology", str(EXAMPLE_TOPOLOGY), "-o", "json"]


def _run_stdin(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nsgsync.cli.main", "compile", "-f", "-", *TOPOLOGY_ARGS],
        input=text,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "providers")])},
        timeout=60,
        check=False,
    )


def test_manifests_from_standard_input() -> None:
    result = _run_stdin(POLICY)
    assert result.returncode == 0, result.stderr
    assert "shop/p" in result.stdout
    bad = _run_stdin(POLICY.replace("{port: 80}", "{port: true}"))
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: <stdin>:8: NetworkPolicy shop/p: ")
