"""A small HCL syntax tree and a printer in `terraform fmt` style.

Knows HCL, not firewalls: blocks, attributes, comments and a handful of expressions
(strings, numbers, bools, null, lists, objects, references, function calls). The printer
writes what `terraform fmt` would leave unchanged:

- two spaces per indentation level, one level per line that opens brackets (as hclwrite
  counts them: a line opening two brackets indents its continuation by one level);
- the `=` of consecutive single-line attributes (and object items) aligned, a run being
  broken by anything else: a comment, a blank line, a block, or an attribute whose value
  spans lines (whose own `=` takes a single space);
- a blank line around blocks, comments kept with the block or attribute they precede;
- strings escaped as HCL quoted templates require, `${` and `%{` doubled to stay literal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

INDENT = "  "
# A list of scalars is written on one line when it fits in this many characters.
_ONE_LINE_LIST = 80

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_TRAVERSAL = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_-]*"
    r"(?:\.[A-Za-z_][A-Za-z0-9_-]*|\.\*|\[[0-9]+\]|\[\*\]|\[\"(?:[^\"\\]|\\.)*\"\])*$"
)
_BARE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEYWORDS = frozenset({"true", "false", "null"})


def is_identifier(name: str) -> bool:
    """Whether `name` can be written bare: a block type, an attribute or a resource name."""
    return bool(_IDENTIFIER.match(name))


def _check_identifier(name: str, what: str) -> str:
    if not is_identifier(name):
        raise ValueError(f"{what} {name!r} is not a valid HCL identifier")
    return name


# --- expressions ---


class Expression:
    """Base of every expression node."""

    __slots__ = ()


@dataclass(frozen=True)
class String(Expression):
    """A quoted string; its value is literal (no interpolation is ever produced)."""

    value: str


@dataclass(frozen=True)
class Number(Expression):
    value: int | float

    def __post_init__(self) -> None:
        if isinstance(self.value, bool):
            raise TypeError("use Bool for booleans")


@dataclass(frozen=True)
class Bool(Expression):
    value: bool


@dataclass(frozen=True)
class Null(Expression):
    pass


@dataclass(frozen=True)
class Reference(Expression):
    """A traversal written as it is: `var.vpc_id`, `aws_security_group.web.id`, `local.x`."""

    traversal: str

    def __post_init__(self) -> None:
        if not _TRAVERSAL.match(self.traversal):
            raise ValueError(f"{self.traversal!r} is not a traversal (like var.name or a.b.id)")


@dataclass(frozen=True)
class ListExpr(Expression):
    items: tuple[Expression, ...] = ()

    def __init__(self, items: Iterable[Expression] = ()) -> None:
        object.__setattr__(self, "items", tuple(items))


@dataclass(frozen=True)
class ObjectExpr(Expression):
    """An object (or map) constructor; keys that are not identifiers are quoted."""

    items: tuple[tuple[str, Expression], ...] = ()

    def __init__(self, items: Iterable[tuple[str, Expression]] | Mapping[str, Expression] = ()):
        pairs = tuple(items.items() if isinstance(items, Mapping) else items)
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError(
                f"duplicate object keys: {sorted(k for k in set(keys) if keys.count(k) > 1)}"
            )
        object.__setattr__(self, "items", pairs)


@dataclass(frozen=True)
class Call(Expression):
    """A function call, `merge(var.tags, {...})`."""

    name: str
    args: tuple[Expression, ...] = ()

    def __init__(self, name: str, args: Iterable[Expression] = ()) -> None:
        object.__setattr__(self, "name", _check_identifier(name, "function name"))
        object.__setattr__(self, "args", tuple(args))


Value: TypeAlias = (
    "Expression | str | int | float | bool | Sequence[Value] | Mapping[str, Value] | None"
)


def value(v: Value) -> Expression:
    """A Python value as an expression: str, int, float, bool, None, lists and dicts."""
    if isinstance(v, Expression):
        return v
    if v is None:
        return Null()
    if isinstance(v, bool):
        return Bool(v)
    if isinstance(v, int | float):
        return Number(v)
    if isinstance(v, str):
        return String(v)
    if isinstance(v, Mapping):
        return ObjectExpr((str(k), value(x)) for k, x in v.items())
    return ListExpr(value(x) for x in v)


# --- body items ---


@dataclass(frozen=True)
class Attribute:
    name: str
    expr: Expression

    def __init__(self, name: str, expr: Value) -> None:
        object.__setattr__(self, "name", _check_identifier(name, "attribute name"))
        object.__setattr__(self, "expr", value(expr))


@dataclass(frozen=True)
class Comment:
    """A `#` comment: one line per line of text, kept with the item that follows it."""

    text: str


@dataclass(frozen=True)
class BlankLine:
    """An explicit blank line (blocks get theirs without asking)."""


@dataclass(frozen=True)
class Block:
    type: str
    labels: tuple[str, ...] = ()
    body: tuple[BodyItem, ...] = field(default=())

    def __init__(
        self, type: str, labels: Iterable[str] = (), body: Iterable[BodyItem] = ()
    ) -> None:
        object.__setattr__(self, "type", _check_identifier(type, "block type"))
        labels = tuple(labels)
        for label in labels:
            # Labels are plain string literals, without template sequences; terraform fmt
            # (hclwrite) even drops a label with a `$` or `%` inside. Terraform's labels are
            # names anyway.
            if set(label) & {"$", "%"} or any(ord(c) < 0x20 for c in label):
                raise ValueError(f"block label {label!r} may not hold $, % or control characters")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "body", tuple(body))


BodyItem: TypeAlias = Attribute | Block | Comment | BlankLine


# --- printing ---


def quote(text: str) -> str:
    """`text` as an HCL quoted string whose value is exactly `text`."""
    out = ['"']
    i = 0
    while i < len(text):
        ch = text[i]
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch in "$%" and nxt == "{":
            # `${` and `%{` open a template sequence; doubled they stand for themselves.
            out.append(ch + ch + "{")
            i += 1
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
        i += 1
    out.append('"')
    return "".join(out)


def _key(name: str) -> str:
    # Object keys are written bare only when no reader could take them for an expression.
    return name if _BARE_KEY.match(name) and name not in _KEYWORDS else quote(name)


def _number(n: int | float) -> str:
    if isinstance(n, int):
        return str(n)
    if n != n or n in (float("inf"), float("-inf")):
        raise ValueError(f"HCL has no literal for {n}")
    return repr(n)


def _scalar(expr: Expression) -> bool:
    return isinstance(expr, String | Number | Bool | Null | Reference)


def render_expression(expr: Expression, level: int = 0) -> str:
    """The expression's text; lines after the first are indented for nesting `level`."""
    if isinstance(expr, String):
        return quote(expr.value)
    if isinstance(expr, Bool):
        return "true" if expr.value else "false"
    if isinstance(expr, Number):
        return _number(expr.value)
    if isinstance(expr, Null):
        return "null"
    if isinstance(expr, Reference):
        return expr.traversal
    if isinstance(expr, ListExpr):
        return _render_list(expr, level)
    if isinstance(expr, ObjectExpr):
        if not expr.items:
            return "{}"
        inner = _render_pairs([(_key(k), v) for k, v in expr.items], level + 1)
        return "{\n" + "\n".join(inner) + "\n" + INDENT * level + "}"
    if isinstance(expr, Call):
        return _render_call(expr, level)
    raise TypeError(f"not an HCL expression: {expr!r}")


def _render_list(expr: ListExpr, level: int) -> str:
    if not expr.items:
        return "[]"
    if all(_scalar(i) for i in expr.items):
        flat = "[" + ", ".join(render_expression(i, level) for i in expr.items) + "]"
        if len(flat) <= _ONE_LINE_LIST:
            return flat
    pad = INDENT * (level + 1)
    lines = [pad + render_expression(i, level + 1) + "," for i in expr.items]
    return "[\n" + "\n".join(lines) + "\n" + INDENT * level + "]"


def _render_call(expr: Call, level: int) -> str:
    args = [render_expression(a, level) for a in expr.args]
    if all("\n" not in a for a in args[:-1]):
        # At most the last argument spans lines: `merge(var.tags, {` ... `})`.
        return f"{expr.name}(" + ", ".join(args) + ")"
    pad = INDENT * (level + 1)
    lines = [pad + render_expression(a, level + 1) + "," for a in expr.args]
    return f"{expr.name}(\n" + "\n".join(lines) + "\n" + INDENT * level + ")"


def _render_pairs(pairs: Sequence[tuple[str, Expression]], level: int) -> list[str]:
    """`key = value` lines at `level`, `=` aligned within runs of single-line values."""
    pad = INDENT * level
    rendered = [(k, render_expression(v, level)) for k, v in pairs]
    lines: list[str] = []
    run: list[tuple[str, str]] = []

    def close_run() -> None:
        width = max((len(k) for k, _ in run), default=0)
        lines.extend(f"{pad}{k.ljust(width)} = {v}" for k, v in run)
        run.clear()

    for k, v in rendered:
        if "\n" in v:
            close_run()
            lines.append(f"{pad}{k} = {v}")
        else:
            run.append((k, v))
    close_run()
    return lines


def _block_header(block: Block) -> str:
    return " ".join([block.type, *(quote(label) for label in block.labels)])


def render_body(items: Sequence[BodyItem], level: int = 0) -> list[str]:
    """The lines of a body (a file, or a block's inside) at nesting `level`."""
    names = [a.name for a in items if isinstance(a, Attribute)]
    if len(set(names)) != len(names):
        twice = sorted(n for n in set(names) if names.count(n) > 1)
        raise ValueError(f"attributes set twice in one body: {twice}")
    pad = INDENT * level
    lines: list[str] = []
    prev: str | None = None  # kind of the previous item: attribute, block, comment, blank

    def blank() -> None:
        if lines and lines[-1] != "":
            lines.append("")

    i = 0
    while i < len(items):
        item = items[i]
        if isinstance(item, BlankLine):
            blank()
            prev = "blank"
            i += 1
        elif isinstance(item, Comment):
            j = i
            while j < len(items) and isinstance(items[j], Comment):
                j += 1
            target = items[j] if j < len(items) else None
            if prev == "block" or isinstance(target, Block):
                blank()
            for c in items[i:j]:
                assert isinstance(c, Comment)
                lines.extend((pad + "# " + t).rstrip() for t in c.text.splitlines() or [""])
            prev = "comment"
            i = j
        elif isinstance(item, Attribute):
            j = i
            while j < len(items) and isinstance(items[j], Attribute):
                j += 1
            if prev == "block":
                blank()
            attrs = [a for a in items[i:j] if isinstance(a, Attribute)]
            lines.extend(_render_pairs([(a.name, a.expr) for a in attrs], level))
            prev = "attribute"
            i = j
        else:
            if prev not in (None, "comment", "blank"):
                blank()
            header = pad + _block_header(item)
            if not item.body:
                lines.append(header + " {}")
            else:
                lines.append(header + " {")
                lines.extend(render_body(item.body, level + 1))
                lines.append(pad + "}")
            prev = "block"
            i += 1
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def render(items: Sequence[BodyItem]) -> str:
    """A whole file: the top-level items, ending with one newline."""
    lines = render_body(items)
    return "\n".join(lines) + "\n" if lines else ""
