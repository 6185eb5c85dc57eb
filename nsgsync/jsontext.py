"""JSON text as nsgsync writes it: two-space indent, keys in the order given.

The standard library indents through its pure-Python encoder, which at 10,000 policies
spent seconds on an Intent of 40 MB; orjson's C encoder writes the same text.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import orjson


def pretty(value: Any) -> str:
    """`json.dumps(value, indent=2) + "\\n"`, by a C encoder (UTF-8, not \\u escapes)."""
    return pretty_bytes(value).decode()


def pretty_bytes(value: Any, *, default: Callable[[Any], Any] | None = None) -> bytes:
    """`pretty(value)` encoded as UTF-8, without the text in between: a plan at 10,000
    policies is 170 MB of JSON, and each copy of it is that much more memory."""
    return orjson.dumps(
        value, default=default, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
    )


def write_stdout(data: bytes) -> None:
    """Bytes to standard output as they are (UTF-8), through its buffer where it has one."""
    out = sys.stdout
    buffer = getattr(out, "buffer", None)
    if buffer is None:  # a text-only stream an embedding program put there
        out.write(data.decode())
        return
    out.flush()  # what was printed before comes first
    buffer.write(data)
