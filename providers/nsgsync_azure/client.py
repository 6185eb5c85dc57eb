"""The ARM side: read what nsgsync owns, settle priorities against the cloud; the writes.

Ownership: an NSG is nsgsync's when it carries the cluster and segment tags in the
topology's resource group; in it, and in an existing NSG named by `nsgName`, a rule is
nsgsync's when its priority lies in the band and its name starts with `nsgsync-`. Every
other rule and NSG is read only to stay clear of it (its priority, its name) and is never
changed. A hand-made rule that looks like nsgsync's is drift, reverted.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    DeserializationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.polling import LROPoller
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import NetworkSecurityGroup, SecurityRule, Subnet, TagsObject

from nsgsync.errors import CloudError, Failure, ProviderError, excerpt
from nsgsync.plan import Change, Resource
from nsgsync.provider import CLUSTER_TAG, SEGMENT_TAG, Created, Progress, Timeouts
from nsgsync_azure.binding import Held
from nsgsync_azure.config import SUBNET_ID, AzureConfig, Settings
from nsgsync_azure.priorities import Group
from nsgsync_azure.render import (
    PREFIX,
    RULE_FIELDS,
    association_body,
    association_resource,
    nsg_resource,
    rule_resource,
    sort_ports,
    sort_prefixes,
)

T = TypeVar("T")

_RULE_SEGMENT = re.compile(
    r"^nsgsync-(?P<segment>[a-z0-9-]+)-(?:in|out)-(?:default|[0-9a-f]{10}(?:-\d+)?)$"
)
_PLURALS = {"sourceAddressPrefixes", "destinationAddressPrefixes"}
_PORT_PLURALS = {"sourcePortRanges", "destinationPortRanges"}


# Each cloud's ARM endpoint and sign-in authority (azure-identity's AzureAuthorityHosts).
CLOUDS = {
    "AzurePublicCloud": ("https://management.azure.com", "login.microsoftonline.com"),
    "AzureUSGovernment": ("https://management.usgovcloudapi.net", "login.microsoftonline.us"),
    "AzureChinaCloud": ("https://management.chinacloudapi.cn", "login.chinacloudapi.cn"),
}


def endpoint(config: AzureConfig) -> tuple[str, str]:
    """(ARM endpoint, authority host) of the topology's cloud; armEndpoint wins."""
    arm, authority = CLOUDS[config.cloud]
    return (config.arm_endpoint or arm).rstrip("/"), authority


class _Deadline(SansIOHTTPPolicy[Any, Any]):
    """Before each attempt of a call: stop once the run's deadline has passed."""

    def __init__(self, timeouts: Timeouts) -> None:
        self.timeouts = timeouts

    def on_request(self, request: PipelineRequest[Any]) -> None:
        self.timeouts.check(f"an ARM call to {request.http_request.url.split('?')[0]}")


def make_client(
    config: AzureConfig, credential: Any = None, *, timeouts: Timeouts | None = None
) -> NetworkManagementClient:
    """A client that finds credentials itself (environment, workload identity, az login),
    at the topology's cloud (azure.cloud) or ARM endpoint (azure.armEndpoint). Every attempt
    of a call times out in seconds (azure-core waits 300 s to read by default)."""
    t = timeouts or Timeouts()
    arm, authority = endpoint(config)
    if credential is None:
        from azure.identity import DefaultAzureCredential  # only when talking to Azure

        credential = DefaultAzureCredential(authority=authority)
    parts = urlsplit(arm)
    # A token is sent over plain HTTP only to this machine (a local ARM emulator).
    local = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    extra: dict[str, Any] = {}
    if local:
        extra["authentication_policy"] = _LoopbackPolicy(credential, f"{arm}/.default")
    # azure-core's RetryPolicy retries 408/429/5xx and honours Retry-After (up to a minute
    # between attempts, room for ARM's per-subscription throttling to recover); the attempts
    # are bounded like every client's, and none waits past the run's deadline.
    return NetworkManagementClient(
        credential,
        config.subscription_id,
        base_url=arm,
        credential_scopes=[f"{arm}/.default"],
        retry_total=t.attempts - 1,
        retry_backoff_factor=1.0,
        retry_backoff_max=60,
        connection_timeout=t.connect_timeout(),
        read_timeout=t.read_timeout(),
        per_retry_policies=[_Deadline(t)],
        **extra,
    )


class _LoopbackPolicy(ARMChallengeAuthenticationPolicy):
    """ARM's bearer-token policy, letting the token go over plain HTTP: used only for an
    armEndpoint on this machine (a local emulator), where TLS protects nothing."""

    def on_request(self, request: PipelineRequest[Any]) -> None:
        request.context.options["enforce_https"] = False
        super().on_request(request)


# ARM's error codes by what they mean for the run (docs/operating-in-production.md).
_QUOTA = re.compile(r"(?i)(quota|limitreached|limitexceeded)")
_DEPENDENCY = re.compile(r"(?i)(inuse|cannotbedeleted)")
_HINTS = {
    Failure.QUOTA: "an Azure limit is reached (rules per NSG, NSGs per subscription), and "
    "running again fails the same way: raise the quota, or give the segments fewer, larger "
    "CIDRs",
    Failure.PERMISSION: "the credentials in use lack this call, or are missing or expired: "
    "give them the role in docs/azure.md",
    Failure.DEPENDENCY: "a subnet or network interface still uses the NSG; running again "
    "fails the same way until nothing uses it",
}


def classify(exc: AzureError) -> Failure:
    if isinstance(exc, ClientAuthenticationError):
        return Failure.PERMISSION
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, DecodeError)):
        return Failure.TRANSPORT
    if isinstance(exc, DeserializationError):
        return Failure.TRANSPORT
    if not isinstance(exc, HttpResponseError):
        return Failure.INVALID
    status = exc.status_code or 0
    code = str(exc.error.code if exc.error is not None else "") or str(exc.reason or "")
    if status == 429 or code in ("AnotherOperationInProgress", "RetryableError"):
        return Failure.THROTTLING
    if status in (401, 403):
        return Failure.PERMISSION
    if status >= 500:
        return Failure.TRANSPORT
    if _QUOTA.search(code):
        return Failure.QUOTA
    if _DEPENDENCY.search(code):
        return Failure.DEPENDENCY
    if status in (404, 409, 412):
        return Failure.CONFLICT
    return Failure.INVALID


def _message(exc: AzureError) -> str:
    if isinstance(exc, HttpResponseError):
        code = exc.error.code if exc.error is not None else None
        text = exc.error.message if exc.error is not None else exc.message
        return f"{exc.status_code} {code or exc.reason}: {text}"
    return str(exc.message)


def _rule_body(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A rule as ARM reports it, in render's canonical form (empty plurals dropped, sorted)."""
    props = doc.get("properties") or {}
    out: dict[str, Any] = {}
    for field in RULE_FIELDS:
        value = props.get(field)
        if value is None or value == []:
            continue
        if field in _PLURALS:
            value = sort_prefixes(value)
        elif field in _PORT_PLURALS:
            value = sort_ports(value)
        out[field] = value
    # nsgsync's rule names are lower case and ARM's ignore case: a name that differs only in
    # case is the same rule, not a change that a PUT (which keeps the old spelling) never fixes.
    return {"name": str(doc["name"]).lower(), "properties": out}


def _subnet_parts(subnet_id: str) -> tuple[str, str, str]:
    found = SUBNET_ID.match(subnet_id)
    if found is None:
        raise ProviderError(f"{subnet_id} is not a subnet resource id")
    return found["rg"], found["vnet"], found["subnet"]


class Arm:
    """One call's view of ARM: a client and the settings. Built per call, never kept."""

    def __init__(self, client: NetworkManagementClient, settings: Settings, cluster: str) -> None:
        self.settings = settings
        self.config = settings.config
        self.client = client
        self.cluster = cluster
        self.group = self.config.resource_group
        self.foreign: dict[Group, set[int]] = defaultdict(set)  # in-band priorities
        self.foreign_names: dict[str, set[str]] = defaultdict(set)  # NSG -> rule names
        self.foreign_count: Counter[str] = Counter()
        self.unowned_nsgs: set[str] = set()  # lower names of others' NSGs in the group
        # NSG id -> the network interfaces associated with it (not managed by nsgsync): an
        # NSG they use cannot be deleted, and is kept whole until they are gone.
        self.users: dict[str, int] = {}

    def held(self) -> Held:
        return Held(
            tuple(sorted((g, frozenset(p)) for g, p in self.foreign.items())),
            tuple(sorted((n, frozenset(v)) for n, v in self.foreign_names.items())),
            tuple(sorted(self.foreign_count.items())),
            frozenset(self.unowned_nsgs),
        )

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except json.JSONDecodeError as exc:  # the SDK parses some replies outside its errors
            raise CloudError(
                f"Azure {what} failed ({Failure.TRANSPORT}): the reply is not ARM's JSON",
                failure=Failure.TRANSPORT,
            ) from exc
        except AzureError as exc:
            failure = classify(exc)
            text = _message(exc)
            if isinstance(exc, (DecodeError, DeserializationError)):
                text = "the reply is not ARM's JSON"
            return_hint = _HINTS.get(failure, "")
            raise CloudError(
                f"Azure {what} failed ({failure}): {excerpt(text, limit=200).strip(chr(39))}",
                failure=failure,
                hint=return_hint,
            ) from exc

    def _wait(self, what: str, start: Callable[[], LROPoller[Any]]) -> None:
        self._call(what, lambda: start().result())

    # --- read ---

    def read(
        self, *, nsgs: Iterable[str] | None = None, subnets: Iterable[str] | None = None
    ) -> list[Resource]:
        """What nsgsync owns in the resource group; with `nsgs`, only those NSGs (and their
        rules) and the associations of `subnets`: a narrow re-read, one call per NSG and
        per subnet."""
        self.foreign.clear()
        self.foreign_names.clear()
        self.foreign_count.clear()
        self.unowned_nsgs.clear()
        self.users.clear()
        settings = self.settings
        out: list[Resource] = []
        narrow = nsgs is not None
        if nsgs is None:
            listed = self._call(
                f"listing NSGs in {self.group}",
                lambda: [n.as_dict() for n in self.client.network_security_groups.list(self.group)],
            )
        else:
            listed = [doc for n in sorted({n.lower() for n in nsgs}) if (doc := self._nsg(n))]
        ours: dict[str, str] = {}  # lower id -> canonical id, of NSGs nsgsync writes into
        found: set[str] = set()
        for doc in listed:
            name = str(doc["name"])
            placement = settings.placement_named(name)
            external = placement is not None and not placement.owned
            tags = doc.get("tags") or {}
            segment = placement.segment if placement and external else tags.get(SEGMENT_TAG)
            owned = not external and tags.get(CLUSTER_TAG) == self.cluster and bool(segment)
            if not owned and not external:
                self.unowned_nsgs.add(name.lower())
                continue
            found.add(name.lower())
            canonical = settings.nsg_id(placement.name if placement is not None else name)
            ours[str(doc.get("id", canonical)).lower()] = canonical
            props = doc.get("properties") or {}
            if owned:
                body = {
                    # ARM names ignore case: report the name as nsgsync spells it.
                    "name": placement.name if placement is not None else name,
                    "location": doc.get("location", ""),
                    "tags": {k: v for k, v in sorted(tags.items()) if k.startswith("nsgsync.io/")},
                }
                out.append(nsg_resource(body, segment, doc.get("id")))
                if nics := props.get("networkInterfaces"):
                    self.users[str(doc.get("id"))] = len(nics)
                # Subnets outside the topology that still use this NSG: associations to undo
                # (an NSG in use cannot be deleted).
                for ref in props.get("subnets") or []:
                    sid = str(ref.get("id", ""))
                    if sid and not self._in_topology(sid):
                        assoc = association_body(sid, canonical)
                        out.append(association_resource(sid, assoc, segment, sid))
            out += self._rules(name, props.get("securityRules") or [], segment)
        for placement in settings.placements:
            if narrow:
                break  # a missing NSG is the engine's to report, as a difference
            if not placement.owned and placement.name.lower() not in found:
                raise ProviderError(
                    f"NSG {placement.name} (azure.nsgName of segment {placement.segment}) does "
                    f"not exist in resource group {self.group}",
                    hint="create it first (nsgsync never creates an NSG named by nsgName), or "
                    "drop nsgName to let nsgsync create and own one",
                )
        only = None if subnets is None else {sid.lower() for sid in subnets}
        out += self._associations(ours, only=only)
        return out

    def _nsg(self, name: str) -> dict[str, Any] | None:
        """One NSG by name (any case), or None where there is none."""
        placement = self.settings.placement_named(name)
        spelt = placement.name if placement is not None else name

        def get() -> dict[str, Any] | None:
            try:
                return dict(self.client.network_security_groups.get(self.group, spelt).as_dict())
            except HttpResponseError as exc:
                if exc.status_code == 404:
                    return None
                raise

        return self._call(f"reading NSG {spelt}", get)

    def _in_topology(self, subnet_id: str) -> bool:
        return any(
            s.lower() == subnet_id.lower() for p in self.settings.placements for s in p.subnets
        )

    def _rules(
        self, nsg: str, rules: Iterable[Mapping[str, Any]], segment: str | None
    ) -> list[Resource]:
        lo, hi = self.config.priority_band
        out = []
        for doc in rules:
            props = doc.get("properties") or {}
            name = str(doc.get("name", ""))
            priority = props.get("priority")
            direction = str(props.get("direction", ""))
            in_band = isinstance(priority, int) and lo <= priority <= hi
            if in_band and name.lower().startswith(PREFIX):
                matched = _RULE_SEGMENT.match(name.lower())
                out.append(
                    rule_resource(
                        nsg,
                        _rule_body(doc),
                        matched["segment"] if matched else segment,
                        doc.get("id"),
                    )
                )
                continue
            self.foreign_names[nsg.lower()].add(name.lower())
            self.foreign_count[nsg.lower()] += 1
            if in_band:
                assert isinstance(priority, int)
                self.foreign[(nsg.lower(), direction)].add(priority)
        return out

    def _read_subnet(self, subnet_id: str) -> Subnet:
        rg, vnet, name = _subnet_parts(subnet_id)
        return self._call(
            f"reading subnet {subnet_id}", lambda: self.client.subnets.get(rg, vnet, name)
        )

    def _associations(
        self, ours: Mapping[str, str], *, only: set[str] | None = None
    ) -> list[Resource]:
        out = []
        for placement in self.settings.placements:
            want = self.settings.nsg_id(placement.name)
            for subnet_id in placement.subnets:
                if only is not None and subnet_id.lower() not in only:
                    continue
                doc = self._read_subnet(subnet_id).as_dict()
                ref = ((doc.get("properties") or {}).get("networkSecurityGroup") or {}).get("id")
                if not ref:
                    continue
                current = ours.get(str(ref).lower())
                if current is None and str(ref).lower() == want.lower():
                    current = want
                segment = next(
                    s
                    for s in placement.segments
                    if (self.settings.segments[s].subnet_id or "").lower() == subnet_id.lower()
                )
                if current is None and only is not None:
                    # A narrow re-read knows only the NSGs asked for: another one here is
                    # a difference for the engine to report, not a verdict on ownership.
                    current = str(ref)
                if current is None:
                    raise ProviderError(
                        f"subnet {subnet_id} of segment {segment} is associated with NSG {ref}, "
                        "which nsgsync does not manage; nsgsync does not replace it",
                        hint=f"set azure.nsgName of segment {segment} to that NSG's name (if it "
                        f"is in {self.group}) to keep nsgsync's rules in it, or remove the "
                        "association by hand",
                    )
                out.append(
                    association_resource(
                        subnet_id,
                        association_body(subnet_id, current),
                        segment,
                        str(doc.get("id", subnet_id)),
                    )
                )
        return out

    def delete_nsg(self, name: str) -> None:
        self._wait(
            f"deleting NSG {name}",
            lambda: self.client.network_security_groups.begin_delete(self.group, name),
        )

    def create_nsg(self, c: Change, new_rules: Sequence[Change], progress: Progress) -> Created:
        """Create an NSG with its new rules in one PUT (ARM takes them inline)."""
        assert c.new is not None
        name = str(c.new.body["name"])
        inline = [dict(r.new.body) for r in new_rules if r.new is not None]
        progress(f"+ creating NSG {name} with {len(inline)} rule(s)")
        body = NetworkSecurityGroup(
            {
                "location": c.new.body["location"],
                "tags": dict(c.new.body["tags"]),
                "properties": {"securityRules": inline},
            }
        )
        # If-None-Match: a PUT replaces an NSG with all its rules, so never onto one that
        # appeared since the plan was made.
        self._wait(
            f"creating NSG {name}",
            lambda: self.client.network_security_groups.begin_create_or_update(
                self.group, name, body, headers={"If-None-Match": "*"}
            ),
        )
        return Created(
            c.new.ident,
            self.settings.nsg_id(name),
            absorbed=frozenset(r.resource.ident for r in new_rules),
        )

    def retag(self, c: Change, progress: Progress) -> None:
        assert c.new is not None and c.old is not None
        name = str(c.new.body["name"])
        if c.old.body.get("location") != c.new.body.get("location"):
            raise ProviderError(
                f"NSG {name} is in {c.old.body.get('location')}, not in "
                f"azure.location {c.new.body.get('location')}; ARM cannot move an NSG",
                hint=f"dissociate and delete NSG {name} by hand (it carries nsgsync's tags), "
                "then apply again",
            )
        progress(f"~ retagging NSG {name}")
        # The tags PATCH replaces all tags: keep those that are not nsgsync's.
        doc = self._call(
            f"reading NSG {name}",
            lambda: self.client.network_security_groups.get(self.group, name).as_dict(),
        )
        merged = {
            k: v for k, v in (doc.get("tags") or {}).items() if not k.startswith("nsgsync.io/")
        }
        merged.update(c.new.body["tags"])
        self._call(
            f"tagging NSG {name}",
            lambda: self.client.network_security_groups.update_tags(
                self.group, name, TagsObject(tags=merged)
            ),
        )

    def put_rule(self, c: Change, verb: str, progress: Progress) -> None:
        assert c.new is not None
        nsg = c.new.ident.parts[0]
        body = dict(c.new.body)
        if c.old is not None and c.old.ident != c.new.ident:
            # A pair (docs/providers.md): the new content under the old rule's name and
            # priority slot, one PUT, so the NSG's count never moves.
            old = c.old.body
            props = {**body["properties"], "priority": old["properties"]["priority"]}
            body = {**body, "name": old["name"], "properties": props}
        name = str(body["name"])
        props = body["properties"]
        progress(f"{verb} rule {name} ({props['direction']} {props['priority']}) in NSG {nsg}")
        rule = SecurityRule(body)
        self._wait(
            f"writing rule {name} in NSG {nsg}",
            lambda: self.client.security_rules.begin_create_or_update(self.group, nsg, name, rule),
        )

    def delete_rule(self, c: Change, progress: Progress) -> None:
        assert c.old is not None
        nsg = c.old.ident.parts[0]
        name = str(c.old.body["name"])
        progress(f"- deleting rule {name} in NSG {nsg}")
        self._wait(
            f"deleting rule {name} in NSG {nsg}",
            lambda: self.client.security_rules.begin_delete(self.group, nsg, name),
        )

    def _write_subnet(
        self, subnet_id: str, what: str, change: Callable[[dict[str, Any]], bool]
    ) -> None:
        """Read the subnet, change its document, write it back: a subnet PUT replaces it."""
        rg, vnet, name = _subnet_parts(subnet_id)
        doc = self._read_subnet(subnet_id).as_dict()
        if not change(doc):
            return
        etag = doc.get("etag")
        headers = {"If-Match": str(etag)} if etag else {}
        self._wait(
            f"{what} subnet {subnet_id}",
            lambda: self.client.subnets.begin_create_or_update(
                rg, vnet, name, Subnet(doc), headers=headers
            ),
        )

    def associate(self, c: Change, progress: Progress) -> None:
        assert c.new is not None
        subnet_id = str(c.new.body["id"])
        nsg_id = str(c.new.body["properties"]["networkSecurityGroup"]["id"])
        _, vnet, name = _subnet_parts(subnet_id)
        progress(f"~ associating subnet {vnet}/{name} with NSG {nsg_id.rsplit('/', 1)[-1]}")

        def point(doc: dict[str, Any]) -> bool:
            props = doc.setdefault("properties", {})
            props["networkSecurityGroup"] = {"id": nsg_id}
            return True

        self._write_subnet(subnet_id, "associating", point)

    def dissociate(self, c: Change, progress: Progress) -> None:
        assert c.old is not None
        subnet_id = str(c.old.body["id"])
        nsg_id = str(c.old.body["properties"]["networkSecurityGroup"]["id"])
        _, vnet, name = _subnet_parts(subnet_id)
        progress(f"- dissociating subnet {vnet}/{name} from NSG {nsg_id.rsplit('/', 1)[-1]}")

        def drop(doc: dict[str, Any]) -> bool:
            props = doc.get("properties") or {}
            ref = (props.get("networkSecurityGroup") or {}).get("id", "")
            # Someone pointed it elsewhere since the plan: that association is not ours.
            if str(ref).lower() != nsg_id.lower():
                return False
            del props["networkSecurityGroup"]
            return True

        self._write_subnet(subnet_id, "dissociating", drop)
