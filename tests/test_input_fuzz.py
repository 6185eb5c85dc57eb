"""Fuzzing the reading path: whatever a manifest folder or topology file holds, `nsgsync
compile` ends with an Intent (exit 0) or one short `error:` (exit 1), never a traceback.

Valid inputs (the example cluster and topology) are mutated as a careless or hostile user
would: values of the wrong type, keys dropped, renamed or written twice, deep nesting,
aliases, control characters, huge values, random bytes.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsgsync.cli.main import main

ROOT = Path(__file__).parent.parent
CLUSTER = ROOT / "config/example/cluster"
TOPOLOGY = ROOT / "config/example/topology.yaml"
BASE_DOCS: list[Any] = [
    doc for path in sorted(CLUSTER.iterdir()) for doc in yaml.safe_load_all(path.read_text())
]
BASE_TOPOLOGY: Any = yaml.safe_load(TOPOLOGY.read_text())
# An error line quotes excerpts of input: it stays small whatever the input's size.
ERROR_LIMIT = 4000

# A few seconds in the suite; NSGSYNC_FUZZ_EXAMPLES=3000 for a long hunt by hand.
SETTINGS = settings(
    max_examples=int(os.environ.get("NSGSYNC_FUZZ_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["TCP", "80", "http", "10.0.0.0/8", "In", "Ingress", "", "yes", "on"]),
    st.just("x" * 100_000),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=2),
    st.integers(min_value=1, max_value=300).map(lambda n: _nested(n)),
)


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += _paths(child, (*prefix, i))
    return out


def _parent(tree: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        tree = tree[part]
    return tree


@st.composite
def mutated_tree(draw: st.DrawFn, base: Any) -> Any:
    tree = copy.deepcopy(base)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(_paths(tree)[1:]))
        parent = _parent(tree, path)
        op = draw(st.sampled_from(["replace", "delete", "rename", "wrap"]))
        if op == "replace":
            parent[path[-1]] = draw(ODD_VALUES)
        elif op == "delete":
            del parent[path[-1]]
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = parent.pop(path[-1])
        else:
            parent[path[-1]] = [parent[path[-1]]]
    return tree


BOMB = "bomb0: &b0 [x, x, x, x, x, x, x, x]\n" + "".join(
    f"bomb{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 8)}]\n" for i in range(1, 9)
)


@st.composite
def mutated_text(draw: st.DrawFn, text: str) -> bytes:
    op = draw(
        st.sampled_from(["none", "insert", "dup_line", "drop_line", "bomb", "alias", "bytes"])
    )
    lines = text.splitlines(keepends=True)
    if op == "insert":
        pos = draw(st.integers(min_value=0, max_value=len(text)))
        junk = draw(st.text(max_size=4) | st.sampled_from(["\x00", "\x1b", "*", "&a ", "<<: "]))
        text = text[:pos] + junk + text[pos:]
    elif op == "dup_line" and lines:
        i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        lines.insert(i, lines[i])
        text = "".join(lines)
    elif op == "drop_line" and lines:
        del lines[draw(st.integers(min_value=0, max_value=len(lines) - 1))]
        text = "".join(lines)
    elif op == "bomb":
        text = BOMB + text
    elif op == "alias" and lines:
        i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        lines[i] = lines[i].replace(": ", ": &self [*self, ", 1)
        text = "".join(lines)
    elif op == "bytes":
        return draw(st.binary(max_size=200))
    return text.encode("utf-8", "surrogatepass")


def _dump(docs: list[Any], *, as_json: bool) -> str:
    if as_json:
        return "\n".join(json.dumps(d) for d in docs)
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True)


def _compile(manifests: Path, topology: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["compile", "-f", str(manifests), "--topology", str(topology), "-o", "json"])
    if code == 0:
        assert json.loads(out.getvalue())["kind"] == "Intent"
        return
    assert code == 1, (code, err.getvalue()[:500])
    message = err.getvalue()
    assert len(message) < ERROR_LIMIT, message[:500]
    first, *rest = message.splitlines()
    assert first.startswith("error: "), message[:500]
    assert all(line.startswith("  hint: ") for line in rest), message[:500]


@SETTINGS
@given(
    docs=mutated_tree(BASE_DOCS),
    as_json=st.booleans(),
    data=st.data(),
)
def test_mutated_manifests_compile_or_fail_in_one_line(
    docs: list[Any], as_json: bool, data: st.DataObject
) -> None:
    raw = data.draw(mutated_text(_dump(docs, as_json=as_json)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "m"
        folder.mkdir()
        (folder / ("cluster.json" if as_json else "cluster.yaml")).write_bytes(raw)
        _compile(folder, TOPOLOGY)


@SETTINGS
@given(topology=mutated_tree(BASE_TOPOLOGY), as_json=st.booleans(), data=st.data())
def test_mutated_topology_compiles_or_fails_in_one_line(
    topology: Any, as_json: bool, data: st.DataObject
) -> None:
    raw = data.draw(mutated_text(_dump([topology], as_json=as_json)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("topology.json" if as_json else "topology.yaml")
        path.write_bytes(raw)
        _compile(CLUSTER, path)
