"""One error tree. Every error says what went wrong and what to do about it.

Hard problems are raised as one of these; soft ones (where precision was lost) are
returned as findings beside the result instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from enum import StrEnum

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

    def stopped_apply(self, summary: str, *, then: str) -> None:
        """Make this the error an apply stopped at: what it did and did not, and what next.
        The error keeps its class: callers tell failures apart by it."""
        self.message = f"apply stopped midway: {self.message}\n{summary}"
        self.hint = f"{self.hint}; {then}" if self.hint else then
        self.args = (self.message,)


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


class Failure(StrEnum):
    """What kind of thing went wrong in a cloud call: it decides whether running again helps."""

    QUOTA = "quota"  # a limit of the account or resource: no rerun fixes it
    COLLISION = "name-collision"  # a name nsgsync needs is held by something it does not own
    DEPENDENCY = "dependency"  # something else still uses what nsgsync would delete
    PERMISSION = "permission"  # credentials missing, expired or not allowed the call
    THROTTLING = "throttling"  # the API's rate limit, beyond the SDK's retries
    TRANSPORT = "transport"  # no answer, a dropped connection, a server error, not the API
    INVALID = "invalid"  # the cloud refused the request itself
    CONFLICT = "conflict"  # the cloud changed under the run (another writer)
    TIMEOUT = "timeout"  # the run's --timeout was reached


# Failures that a later run, unchanged, can get past: the next apply completes the work.
TRANSIENT = frozenset({Failure.THROTTLING, Failure.TRANSPORT, Failure.CONFLICT, Failure.TIMEOUT})

HINTS = {
    Failure.QUOTA: "a cloud quota is reached and running again fails the same way: raise the "
    "quota, or make the policies need fewer rules (see docs/operating-in-production.md)",
    Failure.COLLISION: "a resource with the name nsgsync needs exists and nsgsync does not own "
    "it (no ownership marks): rename or delete it by hand, or change the cluster name",
    Failure.DEPENDENCY: "something outside nsgsync still uses the resource; running again "
    "fails the same way until that user is moved off it",
    Failure.PERMISSION: "the credentials are missing, expired or not allowed this call: grant "
    "the permissions listed in the provider's page under docs/",
    Failure.THROTTLING: "the cloud API's rate limit was exceeded beyond the retries; wait a "
    "few minutes, or run less often",
    Failure.TRANSPORT: "the endpoint did not answer, dropped the connection or answered with "
    "something that is not the cloud API: check the network path, proxies and endpoint "
    "settings",
    Failure.INVALID: "the cloud refused the request as invalid; running again fails the same "
    "way: run with --debug and report it, with the provider settings in use",
    Failure.CONFLICT: "the cloud changed during the run (another apply, or a change by hand); "
    "run plan again to see the cloud as it is now",
    Failure.TIMEOUT: "the run reached its --timeout; raise it, or look for a slow endpoint",
}


class CloudError(ProviderError):
    """A cloud call failed; `failure` says what kind of failure, and whether a rerun helps."""

    def __init__(self, message: str, *, failure: Failure, hint: str = "", code: str = "") -> None:
        super().__init__(message, hint=hint or HINTS[failure])
        self.failure = failure
        self.code = code

    @property
    def transient(self) -> bool:
        return self.failure in TRANSIENT
