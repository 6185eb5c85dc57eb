"""The compute side: read the firewall rules nsgsync owns; the primitive writes.

Ownership: a rule is nsgsync's when its name starts `nsgsync-<cluster>-`, its description
starts with the marker `nsgsync:<cluster>` and its priority lies in `gcp.priorityBand`.
Anything else (GKE's rules, a user's, one made to look like ours outside the band) is
never changed or deleted; a desired rule whose name such a rule already holds stops the
plan instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.api_core.extended_operation import ExtendedOperation
from google.api_core.retry import Retry, if_exception_type
from google.auth.exceptions import GoogleAuthError
from google.cloud import compute_v1
from google.protobuf import json_format  # type: ignore[import-untyped]

from nsgsync.errors import CloudError, Failure, ProviderError, excerpt
from nsgsync.net import cidr_order
from nsgsync.plan import Change, Resource
from nsgsync.provider import Progress, Timeouts
from nsgsync_gcp.config import GcpConfig
from nsgsync_gcp.render import firewall_resource, marker, name_prefix, owner_of
from nsgsync_gcp.rules import Foreign

PAGE_SIZE = 500  # the most compute lists per page
OPERATION_TIMEOUT = 300.0

# A connection that failed or went silent, and a server error: the request may or may not
# have reached compute. Repeating it is safe: reads and PUTs are idempotent, a repeated
# delete that finds nothing is done, and a repeated insert answered 409 is checked against
# what it wrote (`_insert`).
_TRANSPORT = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    exceptions.InternalServerError,
    exceptions.BadGateway,
    exceptions.ServiceUnavailable,
    exceptions.GatewayTimeout,
)
# Throttling (429), a busy backend (503) and the transport failures above are worth waiting
# for; anything else is not. The SDK retries neither on writes by default, nor 429 on reads.
DEFAULT_RETRY = Retry(
    predicate=if_exception_type(exceptions.TooManyRequests, *_TRANSPORT),
    initial=1.0,
    maximum=32.0,
    multiplier=2.0,
    timeout=300.0,
)

_API_PREFIX = re.compile(r"^https?://[^/]+/compute/(?:v1|beta|alpha)/")
_SEGMENT = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
# ValueError: a reply that is not JSON (an empty body, an HTML page) fails to parse.
_CLOUD_ERRORS = (
    exceptions.GoogleAPIError,
    GoogleAuthError,
    TimeoutError,
    requests.exceptions.RequestException,
    ValueError,
    json_format.ParseError,
)
_HINT = (
    "check the credentials and the IAM permissions in docs/gcp.md; a run that stopped "
    "midway is completed by the next apply"
)


def make_client(api_endpoint: str | None = None) -> compute_v1.FirewallsClient:
    """A FirewallsClient with the environment's credentials (ADC, workload identity), at
    `gcp.apiEndpoint` when the topology names one (Private Service Connect)."""
    try:
        if api_endpoint is None:
            return compute_v1.FirewallsClient()
        return compute_v1.FirewallsClient(
            client_options=ClientOptions(api_endpoint=api_endpoint), transport="rest"
        )
    except GoogleAuthError as exc:
        raise ProviderError(
            f"no Google Cloud credentials: {exc}",
            hint="run `gcloud auth application-default login`, set "
            "GOOGLE_APPLICATION_CREDENTIALS, or use workload identity; `nsgsync plan "
            "--offline` needs none",
        ) from None


def normalise_network(url: str) -> str:
    """`projects/{p}/global/networks/{n}`, whatever host and API version the URL names."""
    return _API_PREFIX.sub("", url)


def _ranges(values: Sequence[str]) -> list[str]:
    return sorted(values, key=cidr_order)


def firewall_body(fw: compute_v1.Firewall) -> dict[str, Any]:
    """A rule as the API reports it, in render's shape: the fields that decide traffic.

    Sources or targets render never writes (sourceTags, a second kind of target) are kept
    when present, so that one added by hand is drift, and the update removes it.
    """
    body: dict[str, Any] = {
        "name": fw.name,
        "network": normalise_network(fw.network),
        "priority": int(fw.priority),
        "direction": fw.direction,
    }
    for key, entries in (("allowed", fw.allowed), ("denied", fw.denied)):
        if entries:
            body[key] = [
                {"IPProtocol": e.I_p_protocol, "ports": list(e.ports)}
                if e.ports
                else {"IPProtocol": e.I_p_protocol}
                for e in entries
            ]
    body["sourceRanges"] = _ranges(fw.source_ranges)
    body["destinationRanges"] = _ranges(fw.destination_ranges)
    for key, values in (
        ("sourceTags", fw.source_tags),
        ("sourceServiceAccounts", fw.source_service_accounts),
        ("targetTags", fw.target_tags),
        ("targetServiceAccounts", fw.target_service_accounts),
    ):
        if values:
            body[key] = sorted(values)
    body["description"] = fw.description
    body["disabled"] = bool(fw.disabled)
    return body


def firewall_message(body: dict[str, Any]) -> compute_v1.Firewall:
    """The REST JSON body as the SDK's message; its JSON names are the REST ones."""
    return compute_v1.Firewall(
        name=body["name"],
        network=body["network"],
        priority=body["priority"],
        direction=body["direction"],
        allowed=[_entry(compute_v1.Allowed, e) for e in body.get("allowed", [])],
        denied=[_entry(compute_v1.Denied, e) for e in body.get("denied", [])],
        source_ranges=body.get("sourceRanges", []),
        destination_ranges=body.get("destinationRanges", []),
        target_tags=body.get("targetTags", []),
        target_service_accounts=body.get("targetServiceAccounts", []),
        description=body.get("description", ""),
        disabled=bool(body.get("disabled", False)),
    )


def _entry(kind: Callable[..., Any], entry: dict[str, Any]) -> Any:
    return kind(I_p_protocol=entry["IPProtocol"], ports=list(entry.get("ports", [])))


Write = tuple[str, Callable[[], ExtendedOperation | None]]


# Names per list call of a narrow re-read: the filter stays well inside a URL's length.
_NAMES_PER_FILTER = 20


@dataclass(frozen=True)
class Session:
    client: compute_v1.FirewallsClient
    retry: Retry = DEFAULT_RETRY
    operation_timeout: float = OPERATION_TIMEOUT
    timeouts: Timeouts = field(default_factory=Timeouts)

    def calling(self, what: str) -> dict[str, Any]:
        """The retry and timeout of one call: neither waits past the run's deadline."""
        self.timeouts.check(what)
        left = self.timeouts.left()
        retry = self.retry if left is None else self.retry.with_timeout(max(left, 0.5))
        return {"retry": retry, "timeout": self.timeouts.read_timeout()}

    def wait(self) -> float:
        left = self.timeouts.left()
        return (
            self.operation_timeout if left is None else max(0.5, min(self.operation_timeout, left))
        )


def read(
    session: Session, config: GcpConfig, cluster: str, *, names: Sequence[str] | None = None
) -> tuple[list[Resource], Foreign]:
    """nsgsync's firewall rules of the cluster; with `names`, only those of these names."""
    prefix = name_prefix(cluster)
    # Compute's regex filter dialect, an RE2 full match on the name; cluster names (and
    # so the names nsgsync gives rules) hold nothing a regex would read as special.
    patterns = [f"{prefix}.*"]
    if names is not None:
        wanted = sorted(n for n in set(names) if n.startswith(prefix))
        patterns = [
            "(" + "|".join(wanted[i : i + _NAMES_PER_FILTER]) + ")"
            for i in range(0, len(wanted), _NAMES_PER_FILTER)
        ]
    requests = [
        compute_v1.ListFirewallsRequest(
            project=config.project, filter=f'name eq "{pattern}"', max_results=PAGE_SIZE
        )
        for pattern in patterns
    ]
    out: list[Resource] = []
    foreign: dict[str, str] = {}
    try:
        calling = session.calling(f"listing the firewall rules of project {config.project}")
        for fw in (
            fw for request in requests for fw in session.client.list(request=request, **calling)
        ):
            if not fw.name.startswith(prefix):
                continue  # the filter is the server's; ownership is checked here
            owner, segment = owner_of(fw.description)
            if owner != cluster:
                foreign[fw.name] = f"its description does not start with {marker(cluster)}"
            elif not config.in_band(int(fw.priority)):
                low, high = config.priority_band
                foreign[fw.name] = (
                    f"its priority {fw.priority} lies outside gcp.priorityBand [{low}, {high}]"
                )
            else:
                out.append(
                    firewall_resource(
                        firewall_body(fw),
                        # A removed segment's rules still show under its name in the plan.
                        segment if segment and _SEGMENT.match(segment) else None,
                        f"projects/{config.project}/global/firewalls/{fw.name}",
                    )
                )
    except _CLOUD_ERRORS as exc:
        error = _error(config.project, "listing firewall rules", exc, session)
        if error.failure is Failure.INVALID or isinstance(exc, exceptions.NotFound):
            error = CloudError(
                error.message,
                failure=Failure.INVALID,
                hint="check gcp.project and gcp.network in the topology; nothing was changed",
            )
        raise error from exc
    return out, Foreign(tuple(sorted(foreign.items())))


# --- the primitive writes: a batch is started in full, then waited for in full ---


def write(session: Session, project: str, batch: Sequence[Change], *, progress: Progress) -> None:
    writes: list[Write] = []
    for c in batch:
        if c.old is None:
            writes.append(_insert(session, project, c, progress))
        elif c.new is None:
            writes.append(_delete(session, project, c, progress))
        else:
            writes.append(_update(session, project, c, progress))
    _run(session, project, writes)


def _insert(session: Session, project: str, c: Change, progress: Progress) -> Write:
    assert c.new is not None
    message = firewall_message(dict(c.new.body))

    wanted = c.new

    def call() -> ExtendedOperation | None:
        progress(f"+ creating firewall rule {c.key}")
        calling = session.calling(f"creating firewall rule {c.key}")
        retried: list[Exception] = []

        def insert() -> ExtendedOperation:
            return session.client.insert(
                project=project,
                firewall_resource=message,
                retry=None,  # retried below, where the retries can be seen
                timeout=calling["timeout"],
            )

        try:
            op: ExtendedOperation = calling["retry"](insert, on_error=retried.append)()
            return op
        except exceptions.Conflict:
            # A retry answered 409: the lost first attempt made the rule, when what is
            # there now is exactly what this insert writes. A 409 on a first attempt is
            # someone else's rule of that name, made since the plan read the project.
            if retried and _holds(session, project, wanted):
                progress(f"  the lost reply's insert took effect: {c.key} exists")
                return None
            raise

    return f"creating firewall rule {c.key}", call


def _holds(session: Session, project: str, want: Resource) -> bool:
    fw = session.client.get(project=project, firewall=want.key, **session.calling("a read"))
    have = firewall_resource(firewall_body(fw), want.segment, "")
    return have.canonical() == want.canonical()


def _update(session: Session, project: str, c: Change, progress: Progress) -> Write:
    assert c.new is not None and c.old is not None
    name = c.old.ident.name
    # A pair (docs/providers.md) writes the new rule's content under the old rule's name.
    message = firewall_message({**c.new.body, "name": name})

    # PUT, not PATCH: PATCH cannot empty a list (the SDK drops empty lists) nor turn
    # an allow into a deny, and a hand-made addition must go.
    def call() -> ExtendedOperation:
        progress(f"~ updating firewall rule {name}")
        return session.client.update(
            project=project,
            firewall=name,
            firewall_resource=message,
            **session.calling(f"updating firewall rule {name}"),
        )

    return f"updating firewall rule {name}", call


def _delete(session: Session, project: str, c: Change, progress: Progress) -> Write:
    def call() -> ExtendedOperation | None:
        progress(f"- deleting firewall rule {c.key}")
        try:
            return session.client.delete(
                project=project,
                firewall=c.key,
                **session.calling(f"deleting firewall rule {c.key}"),
            )
        except exceptions.NotFound:
            return None  # already gone: what was wanted

    return f"deleting firewall rule {c.key}", call


def _run(session: Session, project: str, writes: Sequence[Write]) -> None:
    """Start the writes, then wait on every operation started, even after a failure."""
    started: list[tuple[str, ExtendedOperation]] = []
    failure: tuple[str, Exception] | None = None
    for what, call in writes:
        try:
            op = call()
        except _CLOUD_ERRORS as exc:
            failure = (what, exc)
            break
        if op is not None:
            started.append((what, op))
    for what, op in started:
        try:
            # The retry covers the polls too: a 429 on the operation is throttling as
            # well. ExtendedOperation.result is untyped in google-api-core.
            op.result(timeout=session.wait(), retry=session.retry)  # type: ignore[no-untyped-call]
        except exceptions.NotFound as exc:
            if not what.startswith("deleting"):  # a deletion that finds nothing is done
                failure = failure or (what, exc)
        except _CLOUD_ERRORS as exc:
            failure = failure or (what, exc)
    if failure is not None:
        raise _error(project, *failure, session) from failure[1]


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, exceptions.RetryError):
        # The retries ran out (their time, or the run's): what failed is the last cause.
        return classify(exc.cause) if exc.cause is not None else Failure.TRANSPORT
    text = str(exc).upper()
    if isinstance(exc, exceptions.TooManyRequests) or "RATELIMITEXCEEDED" in text:
        return Failure.THROTTLING
    if "QUOTA" in text and isinstance(exc, exceptions.ClientError):
        return Failure.QUOTA
    if isinstance(exc, (exceptions.Forbidden, exceptions.Unauthorized, GoogleAuthError)):
        return Failure.PERMISSION
    transport = (TimeoutError, ValueError, json_format.ParseError, exceptions.ServerError)
    if isinstance(exc, (*_TRANSPORT, *transport, requests.exceptions.RequestException)):
        return Failure.TRANSPORT
    if "RESOURCEINUSE" in text:
        return Failure.DEPENDENCY
    if isinstance(exc, (exceptions.Conflict, exceptions.NotFound)):
        return Failure.CONFLICT
    return Failure.INVALID


_HINTS = {
    Failure.QUOTA: "the project's firewall rule quota is used up, and running again fails the "
    "same way: raise the FIREWALLS quota (or free rules), and keep gcp.maxRules below it",
    Failure.PERMISSION: _HINT.split(";")[0],
}


def _error(project: str, what: str, exc: Exception, session: Session | None = None) -> CloudError:
    failure = classify(exc)
    endpoint = _endpoint(session)
    if isinstance(exc, (ValueError, json_format.ParseError)):
        text = f"the reply at {endpoint} is not the compute API's JSON"
    elif failure is Failure.TRANSPORT:
        text = f"{type(exc).__name__} at {endpoint}: {excerpt(str(exc), limit=160)}"
    else:
        text = excerpt(str(exc), limit=200).strip("'")
    return CloudError(
        f"{what} in project {project} failed ({failure}): {text}",
        failure=failure,
        hint=_HINTS.get(failure, ""),
    )


def _endpoint(session: Session | None) -> str:
    if session is None:
        return "the compute endpoint"
    host = getattr(getattr(session.client, "_transport", None), "_host", "")
    return str(host) or "the compute endpoint"
