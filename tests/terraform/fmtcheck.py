"""Whether HCL text is already as `terraform fmt` would write it, without the binary.

An independent re-statement of hclwrite's format rules, line by line on the text (not on
nsgsync's syntax tree): indentation of two spaces per level, one level per line with a net
opening of brackets (formatIndent); the `=` of consecutive single-line assignments aligned
one space after the longest left side, a run broken by any other line (formatCells); one
space after `=` and `,`; no tabs, no trailing spaces, one newline at the end. Returns
the problems found, empty when the text is formatted.
"""

from __future__ import annotations

from dataclasses import dataclass

_OPEN = "([{"
_CLOSE = ")]}"


@dataclass
class Line:
    number: int
    text: str
    code: str  # the text with string contents blanked and comments removed
    net: int  # net bracket change
    eq: int | None  # column of the assignment `=` when the line is an assignment


def _scan(text: str, number: int) -> Line:
    """Blank out strings (with their interpolations) and drop a trailing comment."""
    code: list[str] = []
    i, n = 0, len(text)
    net = 0
    while i < n:
        ch = text[i]
        if ch == '"':
            j = _skip_string(text, i)
            code.append('"' + "_" * (j - i - 2) + '"')
            i = j
            continue
        if ch == "#" or text.startswith("//", i):
            break
        if ch in _OPEN:
            net += 1
        elif ch in _CLOSE:
            net -= 1
        code.append(ch)
        i += 1
    flat = "".join(code)
    return Line(number, text, flat, net, _assign(flat))


def _skip_string(text: str, start: int) -> int:
    """The index after the string literal opening at `start` (interpolations included)."""
    i, depth = start + 1, 0
    while i < len(text):
        ch = text[i]
        if depth == 0:
            if ch == "\\":
                i += 2
                continue
            if text.startswith(("$${", "%%{"), i):
                i += 3
                continue
            if text.startswith(("${", "%{"), i):
                depth, i = 1, i + 2
                continue
            if ch == '"':
                return i + 1
        else:
            if ch == '"':
                i = _skip_string(text, i)
                continue
            depth += ch == "{"
            depth -= ch == "}"
        i += 1
    raise ValueError(f"unterminated string: {text}")


def _assign(code: str) -> int | None:
    """hclwrite's "assign" cell: the first lone `=` (not the first token), when the rest
    of the line from it has balanced brackets."""
    stripped = code.lstrip()
    offset = len(code) - len(stripped)
    for i, ch in enumerate(stripped):
        if ch != "=" or i == 0:
            continue
        before = stripped[i - 1]
        after = stripped[i + 1] if i + 1 < len(stripped) else ""
        if before in "=!<>" or after in "=>":
            continue
        rest = stripped[i:]
        balance = sum(rest.count(c) for c in _OPEN) - sum(rest.count(c) for c in _CLOSE)
        return offset + i if balance == 0 else None
    return None


def problems(text: str) -> list[str]:
    out: list[str] = []
    if not text:
        return out
    if not text.endswith("\n") or text.endswith("\n\n"):
        out.append("the file must end with exactly one newline")
    if "\r" in text or "\t" in text:
        out.append("no carriage returns or tabs")
    raw = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
    lines = [_scan(t, i + 1) for i, t in enumerate(raw)]
    indents: list[int] = []
    for line in lines:
        if line.text != line.text.rstrip():
            out.append(f"line {line.number}: trailing whitespace")
        if not line.text.strip():
            continue
        # formatIndent
        if line.net < 0:
            closed = -line.net
            while closed > 0 and indents:
                if closed >= indents[-1]:
                    closed -= indents.pop()
                else:
                    indents[-1] -= closed
                    closed = 0
        want = 2 * len(indents)
        if line.net > 0:
            indents.append(line.net)
        have = len(line.text) - len(line.text.lstrip(" "))
        if have != want:
            out.append(f"line {line.number}: indented {have}, terraform fmt indents {want}")
        body = line.code.strip()
        for k in range(len(body) - 1):
            if body[k] == "," and body[k + 1] not in " ":
                out.append(f"line {line.number}: no space after ','")
            if body[k] == " " and body[k + 1] == ",":
                out.append(f"line {line.number}: space before ','")
    # formatCells: runs of consecutive assignment lines
    run: list[Line] = []
    last: list[Line | None] = [*lines, None]
    for item in last:
        if item is not None and item.eq is not None:
            run.append(item)
            continue
        if run:
            width = max(len(r.code[: r.eq].rstrip()) for r in run)
            for r in run:
                if r.eq != width + 1:
                    out.append(f"line {r.number}: '=' at column {r.eq}, aligned it is {width + 1}")
            run = []
        if item is not None:
            _single_spaces(item, out)
    for line in lines:
        if line.eq is not None:
            rest = line.code[line.eq + 1 :]
            if rest and not (rest.startswith(" ") and not rest.startswith("  ")):
                out.append(f"line {line.number}: one space after '='")
            _single_spaces(Line(line.number, "", line.code[line.eq :], 0, None), out)
    return out


def _single_spaces(line: Line, out: list[str]) -> None:
    body = line.code.strip()
    if "  " in body:
        out.append(f"line {line.number}: two spaces in a row outside an aligned '='")
