"""Calico's selector expressions: a parser that names the position of an error, and an
evaluator over an endpoint's labels (docs/calico.md#selectors).

The grammar is Calico's (libcalico-go's selector parser): `k == "v"`, `k != "v"`,
`k in {"a", "b"}`, `k not in {...}`, `k contains "s"`, `k starts with "s"`, `k ends with "s"`,
`has(k)`, `all()`, `global()`, `!`, `&&`, `||` and parentheses; `||` binds loosest, values are
quoted with `"` or `'`, and the empty selector is `all()`.

Evaluation is three-valued: a label nsgsync cannot know (a service account's own labels)
makes the result None rather than a guess, so that callers widen soundly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nsgsync.errors import excerpt

# Calico's label-key characters (its tokenizer's identifier).
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-")
_SPACE = " \t"
MAX_DEPTH = 100
MAX_SELECTOR = 16_384  # longer selectors are refused: no policy needs one, and it bounds work


class SelectorError(ValueError):
    """A selector Calico would refuse; `position` is the 1-based character it stopped at."""

    def __init__(self, message: str, text: str, position: int) -> None:
        self.position = position
        super().__init__(f"invalid selector {excerpt(text)}: {message} at character {position}")


@dataclass(frozen=True)
class Endpoint:
    """What a selector sees: the endpoint's labels, and which keys are unknown."""

    labels: Mapping[str, str]
    is_global: bool = False  # not in a namespace (a host endpoint, a GlobalNetworkSet)
    unknown: Callable[[str], bool] = lambda key: False


Truth = bool | None  # None: cannot be known


def _not(value: Truth) -> Truth:
    return None if value is None else not value


def _lookup(ep: Endpoint, key: str) -> tuple[bool, str | None]:
    """(known, value): value None when the label is absent."""
    if key in ep.labels:
        return True, ep.labels[key]
    return (False, None) if ep.unknown(key) else (True, None)


@dataclass(frozen=True)
class All:
    def evaluate(self, ep: Endpoint) -> Truth:
        return True

    def label_keys(self) -> frozenset[str]:
        return frozenset()

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True)
class Global:
    def evaluate(self, ep: Endpoint) -> Truth:
        return ep.is_global

    def label_keys(self) -> frozenset[str]:
        return frozenset()

    def __str__(self) -> str:
        return "global()"


def _quote(value: str) -> str:
    return f"'{value}'" if '"' in value else f'"{value}"'


@dataclass(frozen=True)
class Has:
    key: str

    def evaluate(self, ep: Endpoint) -> Truth:
        known, value = _lookup(ep, self.key)
        return value is not None if known else None

    def label_keys(self) -> frozenset[str]:
        return frozenset({self.key})

    def __str__(self) -> str:
        return f"has({self.key})"


@dataclass(frozen=True)
class Compare:
    """`key op value`; an absent label satisfies only `!=` and `not in`."""

    key: str
    op: str  # "==", "!=", "in", "not in", "contains", "starts with", "ends with"
    values: tuple[str, ...]

    def evaluate(self, ep: Endpoint) -> Truth:
        known, value = _lookup(ep, self.key)
        if not known:
            return None
        if value is None:
            return self.op in ("!=", "not in")
        want = self.values
        if self.op in ("==", "in"):
            return value in want
        if self.op in ("!=", "not in"):
            return value not in want
        if self.op == "contains":
            return want[0] in value
        if self.op == "starts with":
            return value.startswith(want[0])
        return value.endswith(want[0])

    def label_keys(self) -> frozenset[str]:
        return frozenset({self.key})

    def __str__(self) -> str:
        if self.op in ("in", "not in"):
            return f"{self.key} {self.op} {{{', '.join(_quote(v) for v in self.values)}}}"
        return f"{self.key} {self.op} {_quote(self.values[0])}"


@dataclass(frozen=True)
class Not:
    inner: Expr

    def evaluate(self, ep: Endpoint) -> Truth:
        return _not(self.inner.evaluate(ep))

    def label_keys(self) -> frozenset[str]:
        return self.inner.label_keys()

    def __str__(self) -> str:
        return f"!{_wrapped(self.inner)}"


@dataclass(frozen=True)
class And:
    parts: tuple[Expr, ...]

    def evaluate(self, ep: Endpoint) -> Truth:
        results = [p.evaluate(ep) for p in self.parts]
        if any(r is False for r in results):
            return False
        return None if any(r is None for r in results) else True

    def label_keys(self) -> frozenset[str]:
        return frozenset().union(*(p.label_keys() for p in self.parts))

    def __str__(self) -> str:
        return " && ".join(_wrapped(p) for p in self.parts)


@dataclass(frozen=True)
class Or:
    parts: tuple[Expr, ...]

    def evaluate(self, ep: Endpoint) -> Truth:
        results = [p.evaluate(ep) for p in self.parts]
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False

    def label_keys(self) -> frozenset[str]:
        return frozenset().union(*(p.label_keys() for p in self.parts))

    def __str__(self) -> str:
        return " || ".join(_wrapped(p) for p in self.parts)


Expr = All | Global | Has | Compare | Not | And | Or


def _wrapped(expr: Expr) -> str:
    return f"({expr})" if isinstance(expr, (And, Or)) else str(expr)


def conjunction(*parts: Expr | None) -> Expr:
    """The parts joined by `&&` (None parts left out); all() when none is left."""
    kept = tuple(p for p in parts if p is not None and not isinstance(p, All))
    if not kept:
        return All()
    return kept[0] if len(kept) == 1 else And(kept)


def prefixed(expr: Expr, prefix: str, *, all_means: Expr | None = None) -> Expr:
    """Every label key prefixed, as Calico rewrites a namespaceSelector (`pcns.`) or a
    service account selector (`pcsa.`) into a selector over the endpoint's labels;
    `all_means` replaces all() (Calico: a namespaceSelector's all() is "in a namespace")."""
    if isinstance(expr, All):
        return all_means if all_means is not None else expr
    if isinstance(expr, Global):
        return expr
    if isinstance(expr, Has):
        return Has(prefix + expr.key)
    if isinstance(expr, Compare):
        return Compare(prefix + expr.key, expr.op, expr.values)
    if isinstance(expr, Not):
        return Not(prefixed(expr.inner, prefix, all_means=all_means))
    parts = tuple(prefixed(p, prefix, all_means=all_means) for p in expr.parts)
    return And(parts) if isinstance(expr, And) else Or(parts)


# --- the tokenizer and parser ---------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # "label", "string", "op", "(", ")", "{", "}", ",", "!", "&&", "||", "eof"
    value: str
    position: int  # 1-based


_FUNCTIONS = ("has(", "all(", "global(")


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i = 0
    n = len(text)

    def fail(message: str, at: int) -> SelectorError:
        return SelectorError(message, text, at + 1)

    def skip(j: int) -> int:
        while j < n and text[j] in _SPACE:
            j += 1
        return j

    def ident(j: int) -> int:
        while j < n and text[j] in _KEY_CHARS:
            j += 1
        return j

    while True:
        i = skip(i)
        if i >= n:
            out.append(_Token("eof", "", i + 1))
            return out
        c = text[i]
        after_label = bool(out) and out[-1].kind == "label"
        if c in "(){},":
            out.append(_Token(c, c, i + 1))
            i += 1
        elif c in "\"'":
            end = text.find(c, i + 1)
            if end < 0:
                raise fail("unterminated string", i)
            out.append(_Token("string", text[i + 1 : end], i + 1))
            i = end + 1
        elif text.startswith("==", i):
            out.append(_Token("op", "==", i + 1))
            i += 2
        elif c == "=":
            raise fail('expected "==" (Calico compares with ==)', i)
        elif text.startswith("!=", i):
            out.append(_Token("op", "!=", i + 1))
            i += 2
        elif c == "!":
            out.append(_Token("!", "!", i + 1))
            i += 1
        elif text.startswith("&&", i):
            out.append(_Token("&&", "&&", i + 1))
            i += 2
        elif text.startswith("||", i):
            out.append(_Token("||", "||", i + 1))
            i += 2
        elif c in "&|":
            raise fail(f'expected "{c}{c}"', i)
        elif after_label:
            start = i
            for word, op in (
                ("contains", "contains"),
                ("starts", "starts with"),
                ("ends", "ends with"),
                ("not", "not in"),
                ("in", "in"),
            ):
                if text.startswith(word, i):
                    i += len(word)
                    if " " in op:
                        i = skip(i)
                        second = op.split(" ")[1]
                        if not text.startswith(second, i):
                            raise fail(f'expected "{op}"', start)
                        i += len(second)
                    out.append(_Token("op", op, start + 1))
                    break
            else:
                raise fail(
                    f"expected an operator after label {excerpt(out[-1].value)} "
                    "(==, !=, in, not in, contains, starts with, ends with)",
                    i,
                )
        elif (fn := next((f for f in _FUNCTIONS if text.startswith(f, i)), None)) is not None:
            start = i
            i = skip(i + len(fn))
            key = ""
            if fn == "has(":
                end = ident(i)
                key = text[i:end]
                if not key:
                    raise fail("expected a label name in has(...)", i)
                i = skip(end)
            if i >= n or text[i] != ")":
                raise fail(f'expected ")" to close {fn}', i)
            i += 1
            out.append(_Token(fn[:-1], key, start + 1))
        elif c in _KEY_CHARS:
            end = ident(i)
            out.append(_Token("label", text[i:end], i + 1))
            i = end
        else:
            raise fail(f"unexpected character {excerpt(c)}", i)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        if token.kind != "eof":
            self.at += 1
        return token

    def fail(self, message: str, token: _Token) -> SelectorError:
        return SelectorError(message, self.text, token.position)

    def parse(self) -> Expr:
        if self.peek().kind == "eof":
            return All()
        expr = self.or_expr()
        token = self.peek()
        if token.kind != "eof":
            raise self.fail(f"unexpected {_shown(token)} (expected && or || or the end)", token)
        return expr

    def or_expr(self) -> Expr:
        parts = [self.and_expr()]
        while self.peek().kind == "||":
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_expr(self) -> Expr:
        parts = [self.operation()]
        while self.peek().kind == "&&":
            self.take()
            parts.append(self.operation())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def operation(self) -> Expr:
        negated = False
        while self.peek().kind == "!":
            self.take()
            negated = not negated
        token = self.take()
        expr: Expr
        if token.kind == "has":
            expr = Has(token.value)
        elif token.kind == "all":
            expr = All()
        elif token.kind == "global":
            expr = Global()
        elif token.kind == "label":
            expr = self.comparison(token)
        elif token.kind == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.fail(f"nested deeper than {MAX_DEPTH} parentheses", token)
            expr = self.or_expr()
            self.depth -= 1
            close = self.take()
            if close.kind != ")":
                raise self.fail(
                    f'expected ")" to close the "(" at character '
                    f"{token.position}, found {_shown(close)}",
                    close,
                )
        else:
            raise self.fail(
                f"unexpected {_shown(token)} (expected a label, has(), all(), global(), "
                '"!" or "(")',
                token,
            )
        return Not(expr) if negated else expr

    def comparison(self, label: _Token) -> Expr:
        op = self.take()
        if op.kind != "op":
            raise self.fail(
                f"expected an operator after label {excerpt(label.value)}, found {_shown(op)}",
                op,
            )
        if op.value in ("in", "not in"):
            brace = self.take()
            if brace.kind != "{":
                raise self.fail(f'expected "{{" after {op.value}, found {_shown(brace)}', brace)
            values: list[str] = []
            while self.peek().kind == "string":
                values.append(self.take().value)
                if self.peek().kind != ",":
                    break
                self.take()
            close = self.take()
            if close.kind != "}":
                raise self.fail(f'expected a quoted value or "}}", found {_shown(close)}', close)
            return Compare(label.value, op.value, tuple(sorted(set(values))))
        value = self.take()
        if value.kind != "string":
            raise self.fail(
                f"expected a quoted value after {op.value}, found {_shown(value)}", value
            )
        return Compare(label.value, op.value, (value.value,))


def _shown(token: _Token) -> str:
    if token.kind == "eof":
        return "the end of the selector"
    if token.kind == "string":
        return f"string {excerpt(token.value)}"
    if token.kind in ("has", "all", "global"):
        return f"{token.kind}()"
    return excerpt(token.value)


def parse_selector(text: str) -> Expr:
    """The selector's expression; SelectorError (with the position) when Calico refuses it."""
    if len(text) > MAX_SELECTOR:
        raise SelectorError(f"longer than {MAX_SELECTOR} characters", text, MAX_SELECTOR + 1)
    return _Parser(text).parse()
