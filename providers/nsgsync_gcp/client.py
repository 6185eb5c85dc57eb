"""The compute side: read the firewall rules nsgsync owns, apply a plan.

Ownership: a rule is nsgsync's when its name starts `nsgsync-<cluster>-`, its description
starts with the marker `nsgsync:<cluster>` and its priority lies in `gcp.priorityBand`.
Anything else (GKE's rules, a user's, one made to look like ours outside the band) is
never changed or deleted; a desired rule whose name such a rule already holds stops the
plan instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from google.api_core import exceptions
from google.api_core.extended_operation import ExtendedOperation
from google.api_core.retry import Retry, if_exception_type
from google.auth.exceptions import GoogleAuthError
from google.cloud import compute_v1

from nsgsync.errors import ProviderError
from nsgsync.model import Topology
from nsgsync.net import AddressSet
from nsgsync.plan import Change, Op, Plan, Resource
from nsgsync.provider import Progress
from nsgsync_gcp.config import GcpConfig, load_config
from nsgsync_gcp.render import FIREWALL, marker, name_prefix, owner_of, range_sort_key

# Writes of one phase in flight at once: compute runs them as operations in parallel, and
# a phase is waited for in full before the next begins (adds before removals).
IN_FLIGHT = 16
PAGE_SIZE = 500  # the most compute lists per page
OPERATION_TIMEOUT = 300.0

# Throttling (429) and a busy backend (503) are worth waiting for; anything else is not.
# The SDK retries neither on writes by default, nor 429 on reads.
DEFAULT_RETRY = Retry(
    predicate=if_exception_type(exceptions.TooManyRequests, exceptions.ServiceUnavailable),
    initial=1.0,
    maximum=32.0,
    multiplier=2.0,
    timeout=300.0,
)

_API_PREFIX = re.compile(r"^https?://[^/]+/compute/(?:v1|beta|alpha)/")
_SEGMENT = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
_CLOUD_ERRORS = (exceptions.GoogleAPIError, GoogleAuthError, TimeoutError)
_HINT = (
    "check the credentials and the IAM permissions in docs/gcp.md; a run that stopped "
    "midway is completed by the next apply"
)


def make_client() -> compute_v1.FirewallsClient:
    """A FirewallsClient with the environment's credentials (ADC, workload identity)."""
    try:
        return compute_v1.FirewallsClient()
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
    return sorted(values, key=range_sort_key)


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


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


Write = tuple[str, Callable[[], ExtendedOperation | None]]


def _denies(c: Change) -> bool:
    return c.new is not None and "denied" in c.new.body


def _widens(c: Change) -> bool:
    """Whether an update lets through at least what the rule let through before.

    A rule's identity fixes its direction, protocol and ports, so its ranges decide.
    """
    assert c.old is not None and c.new is not None

    def ranges(body: Mapping[str, Any], key: str) -> AddressSet:
        try:
            return AddressSet.from_cidrs(body.get(key) or ["0.0.0.0/0", "::/0"])
        except ValueError:
            return AddressSet()

    return all(
        ranges(c.old.body, key).issubset(ranges(c.new.body, key))
        for key in ("sourceRanges", "destinationRanges")
    )


class GcpConnection:
    def __init__(
        self,
        topology: Topology,
        client: compute_v1.FirewallsClient,
        *,
        retry: Retry | None = None,
        operation_timeout: float | None = None,
    ) -> None:
        self.topology = topology
        self.config: GcpConfig = load_config(topology)[0]
        self.client = client
        self.cluster = topology.cluster
        self.project = self.config.project
        self.retry = retry or DEFAULT_RETRY
        self.operation_timeout = operation_timeout or OPERATION_TIMEOUT
        self.foreign: dict[str, str] = {}  # name -> why nsgsync does not own it

    # --- read ---

    def read(self) -> list[Resource]:
        prefix = name_prefix(self.cluster)
        request = compute_v1.ListFirewallsRequest(
            project=self.project,
            # Compute's regex filter dialect, an RE2 full match on the name; cluster names
            # hold nothing a regex would read as special.
            filter=f'name eq "{prefix}.*"',
            max_results=PAGE_SIZE,
        )
        out: list[Resource] = []
        self.foreign = {}
        try:
            for fw in self.client.list(request=request, retry=self.retry):
                if not fw.name.startswith(prefix):
                    continue  # the filter is the server's; ownership is checked here
                resource = self._owned(fw)
                if resource is not None:
                    out.append(resource)
        except _CLOUD_ERRORS as exc:
            raise ProviderError(
                f"listing firewall rules of project {self.project} failed: {exc}",
                hint="check the project id, the credentials and compute.firewalls.list "
                "(docs/gcp.md)",
            ) from None
        return out

    def _owned(self, fw: compute_v1.Firewall) -> Resource | None:
        cluster, segment = owner_of(fw.description)
        if cluster != self.cluster:
            self.foreign[fw.name] = f"its description does not start with {marker(self.cluster)}"
            return None
        if not self.config.in_band(int(fw.priority)):
            low, high = self.config.priority_band
            self.foreign[fw.name] = (
                f"its priority {fw.priority} lies outside gcp.priorityBand [{low}, {high}]"
            )
            return None
        return Resource(
            FIREWALL,
            fw.name,
            firewall_body(fw),
            # A removed segment's rules still show under its name in the plan.
            segment if segment and _SEGMENT.match(segment) else None,
            f"projects/{self.project}/global/firewalls/{fw.name}",
        )

    def bind(self, desired: Sequence[Resource], actual: Sequence[Resource]) -> list[Resource]:
        """Nothing to bind (GCP names are ours to choose); refuse a name someone else holds."""
        taken = sorted(r.key for r in desired if r.key in self.foreign)
        if taken:
            name = taken[0]
            more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
            raise ProviderError(
                f"firewall rule {name} in project {self.project} has the name nsgsync wants, "
                f"but nsgsync does not own it: {self.foreign[name]}{more}; nothing was applied",
                hint="nsgsync never changes a rule it does not own: delete or rename that rule "
                "by hand (or restore its description and priority), then plan again",
            )
        return list(desired)

    # --- apply: allows in, then denies in, then removals ---

    def apply(self, plan: Plan, *, progress: Progress) -> None:
        changes = [c for c in plan.changes if c.resource.type == FIREWALL]
        adds = [c for c in changes if c.op is Op.ADD]
        updates = [c for c in changes if c.op is Op.CHANGE]
        # Each phase completes before the next starts, so that no moment blocks traffic
        # the policies allow: new allows first; then allows that only widen; then those
        # that narrow (an open direction narrowed to its new rules, once they exist); then
        # denies, new or changed, once the allows they make way for are in place; last the
        # removals.
        phases: list[list[Write]] = [
            [self._insert(c, progress) for c in adds if not _denies(c)],
            [self._update(c, progress) for c in updates if not _denies(c) and _widens(c)],
            [self._update(c, progress) for c in updates if not _denies(c) and not _widens(c)],
            [self._insert(c, progress) for c in adds if _denies(c)]
            + [self._update(c, progress) for c in updates if _denies(c)],
            [self._delete(c, progress) for c in changes if c.op is Op.DESTROY],
        ]
        for writes in phases:
            for chunk in _chunks(writes, IN_FLIGHT):
                self._run(chunk)

    def _insert(self, c: Change, progress: Progress) -> Write:
        assert c.new is not None
        message = firewall_message(dict(c.new.body))

        def call() -> ExtendedOperation:
            progress(f"+ creating firewall rule {c.key}")
            return self.client.insert(
                project=self.project, firewall_resource=message, retry=self.retry
            )

        return f"creating firewall rule {c.key}", call

    def _update(self, c: Change, progress: Progress) -> Write:
        assert c.new is not None
        message = firewall_message(dict(c.new.body))

        # PUT, not PATCH: PATCH cannot empty a list (the SDK drops empty lists) nor turn
        # an allow into a deny, and a hand-made addition must go.
        def call() -> ExtendedOperation:
            progress(f"~ updating firewall rule {c.key}")
            return self.client.update(
                project=self.project, firewall=c.key, firewall_resource=message, retry=self.retry
            )

        return f"updating firewall rule {c.key}", call

    def _delete(self, c: Change, progress: Progress) -> Write:
        def call() -> ExtendedOperation | None:
            progress(f"- deleting firewall rule {c.key}")
            try:
                return self.client.delete(project=self.project, firewall=c.key, retry=self.retry)
            except exceptions.NotFound:
                return None  # already gone: what was wanted

        return f"deleting firewall rule {c.key}", call

    def _run(self, writes: Sequence[Write]) -> None:
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
                self._wait(op)
            except exceptions.NotFound as exc:
                if not what.startswith("deleting"):  # a deletion that finds nothing is done
                    failure = failure or (what, exc)
            except _CLOUD_ERRORS as exc:
                failure = failure or (what, exc)
        if failure is not None:
            raise self._error(*failure)

    def _wait(self, op: ExtendedOperation) -> None:
        # The retry covers the polls too: a 429 on the operation is throttling as well.
        # ExtendedOperation.result is untyped in google-api-core.
        op.result(timeout=self.operation_timeout, retry=self.retry)  # type: ignore[no-untyped-call]

    def _error(self, what: str, exc: Exception) -> ProviderError:
        if isinstance(exc, exceptions.Forbidden) and "QUOTA" in str(exc).upper():
            return ProviderError(
                f"{what} failed: the project's firewall rule quota is used up: {exc}",
                hint=f"raise the FIREWALLS quota of project {self.project} (or free rules), "
                "and keep gcp.maxRules below it; the next apply completes the run",
            )
        if isinstance(exc, exceptions.Conflict):
            return ProviderError(
                f"{what} failed: a rule of that name already exists: {exc}",
                hint="the project changed since the plan was made; plan again",
            )
        return ProviderError(f"{what} in project {self.project} failed: {exc}", hint=_HINT)
