"""The HCL printer: terraform fmt layout, escaping, and text python-hcl2 reads back."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest

from nsgsync.terraform.hcl import (
    Attribute,
    BlankLine,
    Block,
    BodyItem,
    Bool,
    Call,
    Comment,
    Expression,
    ListExpr,
    Null,
    Number,
    ObjectExpr,
    Reference,
    String,
    is_identifier,
    quote,
    render,
)
from tests.terraform.evaluate_hcl import unquote
from tests.terraform.fmtcheck import problems

EXPECTED = """\
# header
# second line

locals {
  short         = 1
  a_longer_name = "x"
  tags = merge(var.tags, {
    Name                 = "web"
    "nsgsync.io/cluster" = "c"
  })
  after = true
  # a comment breaks the run
  z        = null
  list     = ["a", "b"]
  empty    = []
  no_items = {}
}

resource "aws_thing" "web" {
  id = aws_other.x.id

  nested {
    k = "v"
  }

  long = [
    "aaaaaaaaaaaaaaaaaaaa",
    "bbbbbbbbbbbbbbbbbbbb",
    "cccccccccccccccccccc",
    "dddddddddddddddddddd",
  ]
  objects = [
    {
      a = 1
    },
  ]
}

# attached to the block below
terraform {}
"""


def sample() -> list[object]:
    return [
        Comment("header\nsecond line"),
        BlankLine(),
        Block(
            "locals",
            (),
            [
                Attribute("short", 1),
                Attribute("a_longer_name", "x"),
                Attribute(
                    "tags",
                    Call(
                        "merge",
                        [
                            Reference("var.tags"),
                            ObjectExpr({"Name": String("web"), "nsgsync.io/cluster": String("c")}),
                        ],
                    ),
                ),
                Attribute("after", True),
                Comment("a comment breaks the run"),
                Attribute("z", None),
                Attribute("list", ["a", "b"]),
                Attribute("empty", []),
                Attribute("no_items", {}),
            ],
        ),
        Block(
            "resource",
            ["aws_thing", "web"],
            [
                Attribute("id", Reference("aws_other.x.id")),
                Block("nested", (), [Attribute("k", "v")]),
                Attribute("long", [c * 20 for c in "abcd"]),
                Attribute("objects", ListExpr([ObjectExpr({"a": Number(1)})])),
            ],
        ),
        Comment("attached to the block below"),
        Block("terraform"),
    ]


def test_layout_is_terraform_fmt_style() -> None:
    text = render(sample())  # type: ignore[arg-type]
    assert text == EXPECTED
    assert problems(text) == []
    doc = hcl2.loads(text)
    assert doc["locals"][0]["a_longer_name"] == '"x"'
    assert doc["resource"][0]['"aws_thing"']['"web"']["id"] == "${aws_other.x.id}"


def test_fmt_checker_catches_misalignment_and_indentation() -> None:
    assert problems("a = 1\nbb = 2\n") == ["line 1: '=' at column 2, aligned it is 3"]
    assert problems("x {\n    a = 1\n}\n") == ["line 2: indented 4, terraform fmt indents 2"]
    assert problems("a  = 1\n") == ["line 1: '=' at column 3, aligned it is 2"]
    assert problems("a = [1,2]\n") == ["line 1: no space after ','"]


@pytest.mark.parametrize(
    "text",
    [
        "plain",
        'quote " and back\\slash',
        "newline\nand tab\tand cr\r",
        "${not.interpolated} and %{ if x }directive%{ endif }",
        "$${already doubled} $ alone, % alone, {braces}",
        "trailing $",
        "control \x01 and del \x7f",
        "unicode: café ✓",
    ],
)
def test_strings_are_escaped_so_their_value_is_literal(text: str) -> None:
    quoted = quote(text)
    assert "\n" not in quoted
    assert unquote(quoted) == text
    doc = hcl2.loads(f"x = {quoted}\n")
    assert unquote(doc["x"]) == text


def test_interpolation_markers_are_doubled() -> None:
    assert quote("${a}") == '"$${a}"'
    assert quote("%{a}") == '"%%{a}"'
    assert quote("$a {b}") == '"$a {b}"'


def test_calls_with_several_multiline_arguments_put_one_per_line() -> None:
    two = [ObjectExpr({"a": Number(1)}), ObjectExpr({"b": Bool(False)})]
    text = render([Attribute("x", Call("merge", two))])
    assert text == "x = merge(\n  {\n    a = 1\n  },\n  {\n    b = false\n  },\n)\n"
    assert problems(text) == []
    hcl2.loads(text)


def test_object_keys_are_quoted_unless_plain_identifiers() -> None:
    text = render([Attribute("m", ObjectExpr({"ok": Null(), "shop-db": Null(), "true": Null()}))])
    assert '  ok        = null\n  "shop-db" = null\n  "true"    = null\n' in text


def test_duplicates_are_refused() -> None:
    with pytest.raises(ValueError, match="set twice"):
        render([Attribute("a", 1), Comment("x"), Attribute("a", 2)])
    with pytest.raises(ValueError, match="duplicate object keys"):
        ObjectExpr([("k", Null()), ("k", Null())])


def test_invalid_names_are_refused() -> None:
    with pytest.raises(ValueError, match="identifier"):
        Attribute("1abc", 1)
    with pytest.raises(ValueError, match="identifier"):
        Block("bad type")
    for label in ("${x}", "a$b", "100%", "new\nline"):
        with pytest.raises(ValueError, match="label"):
            Block("resource", [label])
    with pytest.raises(ValueError, match="traversal"):
        Reference("a b")
    with pytest.raises(TypeError):
        Number(True)


# --- random trees: whatever the printer writes, terraform fmt would leave alone ---

_WORDS = ["a", "name", "a_much_longer_name", "x1", "shop-db", "true", "nsgsync.io/x", "k"]
_LABELS = ["aws_security_group", "web", "", 'q"uote', "back\\slash", "é ✓", "{braces}"]
_TEXTS = ["", "plain", "${x}", "%{y}", 'q"uote', "back\\slash", "new\nline", "é ✓", "$${z}"]


def _expr(rng: random.Random, depth: int) -> Expression:
    kind = rng.choice(["s", "n", "b", "null", "ref", "list", "obj", "call"][: 5 + 3 * (depth > 0)])
    if kind == "s":
        return String(rng.choice(_TEXTS))
    if kind == "n":
        return Number(rng.choice([0, 7, -3, 65535, 1.5]))
    if kind == "b":
        return Bool(rng.random() < 0.5)
    if kind == "null":
        return Null()
    if kind == "ref":
        return Reference(rng.choice(["var.x", "local.tags_a", "aws_security_group.a.id"]))
    if kind == "list":
        return ListExpr(_expr(rng, depth - 1) for _ in range(rng.randint(0, 4)))
    if kind == "obj":
        keys = rng.sample(_WORDS, rng.randint(0, 4))
        return ObjectExpr((k, _expr(rng, depth - 1)) for k in keys)
    return Call(
        rng.choice(["merge", "concat", "f"]),
        (_expr(rng, depth - 1) for _ in range(rng.randint(0, 3))),
    )


def _body(rng: random.Random, depth: int) -> list[BodyItem]:
    items: list[BodyItem] = []
    names = [w.replace("-", "_") for w in _WORDS if is_identifier(w)]
    rng.shuffle(names)
    for _ in range(rng.randint(1, 6)):
        roll = rng.random()
        if roll < 0.55 and names:
            items.append(Attribute(names.pop(), _expr(rng, 2)))
        elif roll < 0.7:
            items.append(Comment(rng.choice(["note", "two\nlines", ""])))
        elif roll < 0.75:
            items.append(BlankLine())
        elif depth > 0:
            labels = [rng.choice(_LABELS) for _ in range(rng.randint(0, 2))]
            items.append(
                Block(rng.choice(["resource", "locals", "nested"]), labels, _body(rng, depth - 1))
            )
    return items


def random_files(n: int) -> list[str]:
    rng = random.Random(20261124)
    return [render(_body(rng, 2)) for _ in range(n)]


def test_random_trees_print_formatted_and_parse() -> None:
    for text in random_files(150):
        assert problems(text) == [], text
        hcl2.loads(text)


def test_random_trees_are_left_alone_by_terraform_fmt(tmp_path: Path) -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary on PATH (test_random_trees_print_formatted checks)")
    (tmp_path / "expected.tf").write_text(EXPECTED)
    for i, text in enumerate(random_files(150)):
        (tmp_path / f"t{i:03}.tf").write_text(text)
    done = subprocess.run(
        [terraform, "fmt", "-check", "-diff", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
