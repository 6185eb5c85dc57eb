"""One error tree. Every error says what went wrong and what to do about it.

Hard problems are raised as one of these; soft ones (where precision was lost) are
returned as findings beside the result instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# Quoted input is cut to this many characters: a hostile or runaway value (a YAML alias
# bomb expands to gigabytes) must never turn into an error message of that size.
EXCERPT_LIMIT = 80


def excerpt(value: object, *, limit: int = EXCERPT_LIMIT) -> str:
    """`repr(value)`, cut to `limit` characters, for quoting input in a message."""
    if isinstance(value, (dict, list, tuple, set)) and len(value) > limit:
        # repr of a huge container costs as much as the container; its size says enough.
        return f"<{type(value).__name__} of {len(value)} items>"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the closest of `options`, or '' when none is close."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if not close:
        lowered = {o.lower(): o for o in options}
        hit = lowered.get(word.lower())
        close = [hit] if hit else []
    return f' (did you mean "{close[0]}"?)' if close else ""


class NsgsyncError(Exception):
    """Root of every error nsgsync raises on purpose; the CLI exits 1 on it."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        if hint:
            self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class InputError(NsgsyncError):
    """Bad input: a manifest or topology that cannot be used. Nothing is applied."""

    hint = "fix the named field in the named file and run again; nothing was changed"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        obj: str | None = None,
        field: str | None = None,
        line: int | None = None,
        hint: str = "",
    ) -> None:
        self.file = file
        self.obj = obj
        self.field = field
        self.line = line
        where = []
        if file:
            where.append(f"{file}:{line}" if line else file)
        if obj:
            where.append(obj)
        if field:
            where.append(f"field {field}")
        prefix = ": ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message, hint=hint)


class UnsupportedKindError(InputError):
    """Policy kinds nsgsync does not compile, which may allow what NetworkPolicy denies."""

    hint = (
        "nsgsync compiles networking.k8s.io/v1 NetworkPolicy only; these kinds can allow "
        "traffic that NetworkPolicies deny, so leaving them out could block live traffic. "
        "If they allow nothing more, pass --ignore-kind KIND for each (see docs/semantics.md)"
    )


class TopologyError(InputError):
    """The topology file is wrong: the address map every rule is built on."""

    hint = "fix the topology file (see config/topology.schema.json); nothing was changed"


class ProviderError(NsgsyncError):
    """A provider could not be found, configured or reached."""

    hint = "check the topology's provider block and the credentials of the cloud account"


class LimitError(NsgsyncError):
    """What nsgsync would write does not fit a cloud quota; nothing is applied."""


class GuardrailError(NsgsyncError):
    """A plan was refused by a safety guardrail; nothing is applied."""


class StalePlanError(NsgsyncError):
    """A saved plan no longer matches the cloud's state."""

    hint = "run `nsgsync plan --save-plan FILE` again, review it, then apply the new file"


class ConcurrentChangeError(NsgsyncError):
    """What an apply was about to write changed in the cloud after the plan was made
    (another apply, or a person): the apply stopped before writing there."""

    hint = (
        "another apply or a person changed it after this plan was made; plan again "
        "(`nsgsync plan`, or run `nsgsync apply` again): the new plan starts from the cloud "
        "as it is now, and the next apply completes what this one did not"
    )


class LockError(NsgsyncError):
    """Another apply holds the lock for this cluster and provider, or it cannot be had."""

    hint = (
        "wait for the other apply to finish, or pass --lock-timeout SECONDS to wait for it; "
        "a lock whose holder died expires by itself (docs/operating-in-production.md, Locking)"
    )
