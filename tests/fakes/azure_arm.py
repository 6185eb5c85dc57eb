"""A stateful, in-memory stand-in for the Azure Resource Manager network API.

The real `azure.mgmt.network.NetworkManagementClient` talks to it through `ArmTransport`, an
azure-core transport, so every SDK layer above the socket (serialisation, RetryPolicy, ARM
long-running-operation polling, paging) runs for real. `make_client` wires it all up.

What it serves: network security groups (with their rules, default rules and tags), security
rules, subnets of seeded virtual networks, and Azure-AsyncOperation status URLs. Replies follow
the shapes of the authored examples in tests/examples/azure_arm/*.json (written after ARM's
REST reference, not captured from the service); the six default rules come from nsg.json.

Behaviour copied from ARM on purpose, because code written against the fake must survive Azure:
- A PUT replaces the whole resource. An NSG PUT without `securityRules` deletes its rules; a
  subnet PUT without an address prefix is refused, so a subnet must be read before it is written.
- Child rules carry their NSG's etag, and that etag changes on every write inside the NSG.
- GET fills the plural prefix and port fields a rule does not use with empty lists.
- Deleting something that does not exist answers 204; deleting an NSG still associated with a
  subnet is refused.
- Every URL, including nextLink and the operation URLs, must carry api-version.

Error codes marked "(unconfirmed)" below were not found in public material: the status and the
rule they enforce are right, the exact code string may differ from Azure's.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.core.utils import case_insensitive_dict
from azure.mgmt.network import NetworkManagementClient

Json = dict[str, Any]

# Authored examples of ARM's responses (not recordings of real traffic).
RECORDINGS = Path(__file__).resolve().parent.parent / "examples" / "azure_arm"
# .invalid never resolves, so a client that somehow bypassed the fake transport cannot reach Azure.
FAKE_ARM_URL = "https://management.fake-arm.invalid"
WRITE_METHODS = frozenset({"PUT", "PATCH", "DELETE", "POST"})
MAX_RULES_PER_NSG = 1000
MAX_PREFIXES_PER_SIDE = 4000

_NSG_TYPE = "Microsoft.Network/networkSecurityGroups"
_NSG_WRITABLE = frozenset({"flushConnection"})
_RULE_WRITABLE = frozenset(
    {
        "description",
        "protocol",
        "access",
        "priority",
        "direction",
        "sourcePortRange",
        "sourcePortRanges",
        "destinationPortRange",
        "destinationPortRanges",
        "sourceAddressPrefix",
        "sourceAddressPrefixes",
        "sourceApplicationSecurityGroups",
        "destinationAddressPrefix",
        "destinationAddressPrefixes",
        "destinationApplicationSecurityGroups",
    }
)
_ENUMS: dict[str, dict[str, str]] = {
    "protocol": {p.lower(): p for p in ("Tcp", "Udp", "Icmp", "Esp", "Ah", "*")},
    "access": {"allow": "Allow", "deny": "Deny"},
    "direction": {"inbound": "Inbound", "outbound": "Outbound"},
}
_ADDRESS_PAIRS = (
    ("sourceAddressPrefix", "sourceAddressPrefixes"),
    ("destinationAddressPrefix", "destinationAddressPrefixes"),
)
_PORT_PAIRS = (
    ("sourcePortRange", "sourcePortRanges"),
    ("destinationPortRange", "destinationPortRanges"),
)
# ARM's own rule for resource names: 1-80 word characters, '.', '-'; no trailing '.' or '-'.
_NAME = re.compile(r"^\w(?:[\w.-]{0,78}\w)?$")
_SERVICE_TAG = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z0-9]+)*$")
_PORTS = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")


# --- recordings ------------------------------------------------------------------------------


@cache
def recording(name: str) -> Json:
    """An authored example exchange from tests/examples/azure_arm: {note, request, response}.

    `response` holds status, headers and body.
    """
    loaded: Json = json.loads((RECORDINGS / f"{name}.json").read_text())
    return loaded


def recorded_body(name: str) -> Any:
    return copy.deepcopy(recording(name)["response"]["body"])


@cache
def _default_rules() -> tuple[tuple[str, Json], ...]:
    rules = recording("nsg")["response"]["body"]["properties"]["defaultSecurityRules"]
    return tuple(
        (r["name"], {k: v for k, v in r["properties"].items() if k != "provisioningState"})
        for r in rules
    )


# --- errors and replies ------------------------------------------------------------------------


class ArmError(Exception):
    """An ARM error reply. `details=False` for errors ARM itself answers (no details array)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def reply(self) -> Reply:
        error: Json = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = []
        return Reply(self.status, {"error": error}, self.headers)


def _bad_request(code: str, message: str) -> ArmError:
    return ArmError(400, code, message)


def _cannot_parse(detail: str) -> ArmError:
    return _bad_request("InvalidRequestFormat", f"Cannot parse the request. {detail}")


@dataclass
class Reply:
    status: int
    body: Json | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Served:
    """One request the fake answered. `poll` marks Azure-AsyncOperation / Location polls."""

    method: str
    path: str
    status: int
    poll: bool


# --- state -------------------------------------------------------------------------------------


def _key(*parts: str) -> tuple[str, ...]:
    # ARM names and resource groups are case-insensitive.
    return tuple(p.lower() for p in parts)


def _provider_path(subscription: str, resource_group: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Network"
    )


@dataclass
class _Rule:
    name: str
    properties: Json


@dataclass
class _Nsg:
    subscription: str
    resource_group: str
    name: str
    location: str
    tags: dict[str, str] | None
    extra: Json
    rules: dict[str, _Rule]
    etag: str
    guid: str
    nics: list[str] = field(default_factory=list)  # ids of the interfaces associated

    @property
    def id(self) -> str:
        base = _provider_path(self.subscription, self.resource_group)
        return f"{base}/networkSecurityGroups/{self.name}"


@dataclass
class _Vnet:
    subscription: str
    resource_group: str
    name: str
    location: str

    @property
    def id(self) -> str:
        return (
            f"{_provider_path(self.subscription, self.resource_group)}/virtualNetworks/{self.name}"
        )


@dataclass
class _Subnet:
    vnet: _Vnet
    name: str
    properties: Json
    etag: str

    @property
    def id(self) -> str:
        return f"{self.vnet.id}/subnets/{self.name}"


@dataclass
class _Request:
    method: str
    host: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    content: bytes | None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def api_version(self) -> str:
        return self.query.get("api-version", "")

    def json(self) -> Json:
        try:
            body = json.loads(self.content or b"null")
        except ValueError as exc:
            raise _cannot_parse(str(exc)) from exc
        if not isinstance(body, dict):
            raise _cannot_parse("The request body must be a JSON object.")
        return body


Handler = Callable[[_Request], Reply]

_RG = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Network"
_NSG_PATH = _RG + r"/networkSecurityGroups/(?P<nsg>[^/]+)"
_SUBNETS_PATH = _RG + r"/virtualNetworks/(?P<vnet>[^/]+)/subnets"
_OPERATION_PATH = (
    r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Network/locations/"
    r"(?P<loc>[^/]+)/(?P<kind>operations|operationResults)/(?P<op>[^/]+)"
)


def _route(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern + r"/?$", re.IGNORECASE)


_OPERATION_ROUTE = _route(_OPERATION_PATH)


class FakeArm:
    """In-memory ARM network state, fault injection and a log of every request served."""

    def __init__(
        self,
        *,
        page_size: int = 100,
        lro_in_progress_polls: int = 0,
        lro_retry_after: int | None = 10,
    ) -> None:
        # page_size: items per list page, so tests can force nextLink paging.
        # lro_in_progress_polls: how many status polls answer InProgress before Succeeded.
        # lro_retry_after: Retry-After on LRO replies, as ARM sends; ArmTransport sleeps are
        #   virtual (recorded in `sleeps`), so a realistic value costs no time.
        self.page_size = page_size
        self.lro_in_progress_polls = lro_in_progress_polls
        self.lro_retry_after = lro_retry_after
        self.log: list[Served] = []
        self.sleeps: list[float] = []
        self._nsgs: dict[tuple[str, ...], _Nsg] = {}
        self._vnets: dict[tuple[str, ...], _Vnet] = {}
        self._subnets: dict[tuple[str, ...], _Subnet] = {}
        self._operations: dict[str, int] = {}
        self._counter = 0
        self._throttle_left = 0
        self._throttle_retry_after = 0
        self._throttle_writes_only = False
        self._writes_before_failure: int | None = None
        self._failure_status = 500
        self._lock = threading.RLock()
        self._routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
            (_route(_RG + r"/networkSecurityGroups"), {"GET": self._list_nsgs}),
            (
                _route(
                    r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Network/networkSecurityGroups"
                ),
                {"GET": self._list_all_nsgs},
            ),
            (
                _route(_NSG_PATH),
                {
                    "GET": self._get_nsg,
                    "PUT": self._put_nsg,
                    "PATCH": self._patch_nsg,
                    "DELETE": self._delete_nsg,
                },
            ),
            (_route(_NSG_PATH + r"/securityRules"), {"GET": self._list_rules}),
            (
                _route(_NSG_PATH + r"/securityRules/(?P<rule>[^/]+)"),
                {"GET": self._get_rule, "PUT": self._put_rule, "DELETE": self._delete_rule},
            ),
            (_route(_NSG_PATH + r"/defaultSecurityRules"), {"GET": self._list_default_rules}),
            (
                _route(_NSG_PATH + r"/defaultSecurityRules/(?P<rule>[^/]+)"),
                {"GET": self._get_default_rule},
            ),
            (_route(_SUBNETS_PATH), {"GET": self._list_subnets}),
            (
                _route(_SUBNETS_PATH + r"/(?P<subnet>[^/]+)"),
                {"GET": self._get_subnet, "PUT": self._put_subnet},
            ),
            (_OPERATION_ROUTE, {"GET": self._get_operation}),
        ]

    # --- seeding and inspection (no request is logged, no fault applies) ----------------------

    def add_nsg(
        self,
        subscription: str,
        resource_group: str,
        name: str,
        *,
        location: str = "westeurope",
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Create an NSG directly, as if made by hand in the portal. Returns its id."""
        with self._lock:
            nsg = _Nsg(
                subscription=subscription,
                resource_group=resource_group,
                name=name,
                location=location,
                tags=dict(tags) if tags is not None else None,
                extra={},
                rules={},
                etag=self._etag(),
                guid=self._guid(),
            )
            self._nsgs[_key(subscription, resource_group, name)] = nsg
            return nsg.id

    def add_rule(
        self,
        subscription: str,
        resource_group: str,
        nsg: str,
        name: str,
        properties: Mapping[str, Any],
    ) -> str:
        """Create a rule directly (camelCase properties, as ARM stores them). Returns its id.

        The rule is validated as ARM would; ValueError tells why it was refused.
        """
        with self._lock:
            group = self._nsgs.get(_key(subscription, resource_group, nsg))
            if group is None:
                raise ValueError(f"no NSG {nsg} in {resource_group}; add_nsg first")
            rule_id = f"{group.id}/securityRules/{name}"
            try:
                rules = dict(group.rules)
                rules[name.lower()] = _Rule(name, _checked_rule(rule_id, properties))
                _check_rule_set(rules, name)
            except ArmError as exc:
                raise ValueError(str(exc)) from exc
            group.rules = rules
            group.etag = self._etag()
            return rule_id

    def set_nics(self, subscription: str, resource_group: str, nsg: str, nics: list[str]) -> None:
        """Associate these network interfaces (ids) with the NSG, as a NIC's own NSG."""
        with self._lock:
            group = self._nsgs.get(_key(subscription, resource_group, nsg))
            if group is None:
                raise ValueError(f"no NSG {nsg} in {resource_group}; add_nsg first")
            group.nics = list(nics)

    def add_subnet(
        self,
        subscription: str,
        resource_group: str,
        vnet: str,
        subnet: str,
        address_prefix: str,
        *,
        location: str = "westeurope",
        nsg_id: str | None = None,
    ) -> str:
        """Create a subnet (and its virtual network if new), optionally associated with nsg_id.

        Returns the subnet id.
        """
        with self._lock:
            vkey = _key(subscription, resource_group, vnet)
            network = self._vnets.setdefault(
                vkey, _Vnet(subscription, resource_group, vnet, location)
            )
            properties = recorded_body("subnet")["properties"]
            del properties["provisioningState"]
            properties["addressPrefix"] = address_prefix
            if nsg_id is not None:
                properties["networkSecurityGroup"] = {"id": nsg_id}
            item = _Subnet(network, subnet, properties, self._etag())
            self._subnets[(*vkey, subnet.lower())] = item
            return item.id

    def get_nsg(self, subscription: str, resource_group: str, name: str) -> Json | None:
        """The NSG as a GET would return it, or None."""
        with self._lock:
            nsg = self._nsgs.get(_key(subscription, resource_group, name))
            return None if nsg is None else self._render_nsg(nsg)

    def get_rule(self, subscription: str, resource_group: str, nsg: str, name: str) -> Json | None:
        with self._lock:
            group = self._nsgs.get(_key(subscription, resource_group, nsg))
            rule = None if group is None else group.rules.get(name.lower())
            return None if group is None or rule is None else _render_rule(group, rule)

    def get_subnet(
        self, subscription: str, resource_group: str, vnet: str, subnet: str
    ) -> Json | None:
        with self._lock:
            item = self._subnets.get(_key(subscription, resource_group, vnet, subnet))
            return None if item is None else _render_subnet(item)

    # --- faults --------------------------------------------------------------------------------

    def throttle(self, n: int, retry_after: int = 0, *, writes_only: bool = False) -> None:
        """Answer the next n requests, of any kind (or only writes), 429 with Retry-After
        and ARM's body."""
        with self._lock:
            self._throttle_left = n
            self._throttle_retry_after = retry_after
            self._throttle_writes_only = writes_only

    def fail_writes_after(self, n: int, status: int = 500) -> None:
        """Let n more writes succeed, then answer every write `status` until clear_faults().

        azure-core retries 500/502/503/504 (retry_total times), then raises HttpResponseError.
        Writes refused for another reason (400, 404) do not count towards n.
        """
        with self._lock:
            self._writes_before_failure = n
            self._failure_status = status

    def clear_faults(self) -> None:
        with self._lock:
            self._throttle_left = 0
            self._writes_before_failure = None

    # --- the request log -------------------------------------------------------------------------

    @property
    def calls(self) -> list[tuple[str, str]]:
        """(method, path) of every request served, in order; path without the query string."""
        return [(s.method, s.path) for s in self.log]

    def writes(self) -> int:
        """PUT/PATCH/DELETE/POST requests served, whatever their answer."""
        return sum(1 for s in self.log if s.method in WRITE_METHODS and not s.poll)

    def reads(self) -> int:
        """GET requests served, operation-status polls excluded."""
        return sum(1 for s in self.log if s.method == "GET" and not s.poll)

    def polls(self) -> int:
        return sum(1 for s in self.log if s.poll)

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()
            self.sleeps.clear()

    # --- serving -------------------------------------------------------------------------------

    def handle(
        self, method: str, url: str, headers: Mapping[str, str], content: bytes | None
    ) -> Reply:
        """Serve one HTTP request. Exposed for callers that are not an azure-core pipeline."""
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        request = _Request(
            method.upper(),
            f"{parts.scheme}://{parts.netloc}",
            unquote(parts.path),
            query,
            case_insensitive_dict(headers),
            content,
        )
        with self._lock:
            found = self._match(request)
            try:
                reply = self._serve(request, found)
            except ArmError as exc:
                reply = exc.reply()
            is_poll = found is not None and found[0] is _OPERATION_ROUTE
            self.log.append(Served(request.method, request.path, reply.status, is_poll))
            return reply

    def _match(self, request: _Request) -> tuple[re.Pattern[str], dict[str, Handler]] | None:
        for pattern, handlers in self._routes:
            matched = pattern.match(request.path)
            if matched:
                request.params = {k: unquote(v) for k, v in matched.groupdict().items()}
                return pattern, handlers
        return None

    def _serve(
        self, request: _Request, found: tuple[re.Pattern[str], dict[str, Handler]] | None
    ) -> Reply:
        if self._throttle_left > 0 and (
            not self._throttle_writes_only or request.method in WRITE_METHODS
        ):
            self._throttle_left -= 1
            raise self._throttled(request)
        is_write = request.method in WRITE_METHODS
        if is_write and self._writes_before_failure == 0:
            raise self._injected_failure()
        if not request.api_version:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
                details=False,
            )
        if found is None:
            raise _bad_request(
                "FakeArmUnsupportedRequest", f"The ARM stand-in does not serve {request.path}."
            )
        handler = found[1].get(request.method)
        if handler is None:
            raise ArmError(
                405,
                "FakeArmUnsupportedRequest",
                f"The ARM stand-in does not serve {request.method} {request.path}.",
            )
        reply = handler(request)
        if is_write and reply.status < 400 and self._writes_before_failure is not None:
            self._writes_before_failure -= 1
        return reply

    def _throttled(self, request: _Request) -> ArmError:
        template = recording("error_429_throttled")["response"]
        kind = "write" if request.method in WRITE_METHODS else "read"
        subscription = (
            request.path.split("/")[2] if request.path.startswith("/subscriptions/") else ""
        )
        message = (
            f"Number of '{kind}' requests for subscription '{subscription}' actor "
            f"'00000000-0000-0000-0000-000000000000' exceeded the limit of '1200' for time "
            f"interval '01:00:00'. Please try again after '{self._throttle_retry_after}' "
            f"seconds."
        )
        return ArmError(
            template["status"],
            template["body"]["error"]["code"],
            message,
            details=False,
            headers={"Retry-After": str(self._throttle_retry_after)},
        )

    def _injected_failure(self) -> ArmError:
        if self._failure_status == 500:
            error = recorded_body("error_500_internal")["error"]
            return ArmError(500, error["code"], error["message"])
        phrase = HTTPStatus(self._failure_status).phrase
        return ArmError(self._failure_status, phrase.replace(" ", ""), f"Injected fault: {phrase}.")

    # --- helpers for handlers ------------------------------------------------------------------

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    def _guid(self) -> str:
        # Predictable ids make failures easy to read and compare.
        return f"00000000-0000-4000-8000-{self._next():012d}"

    def _etag(self) -> str:
        return f'W/"{self._guid()}"'

    def _accepted(self, request: _Request, status: int, body: Json | None, location: str) -> Reply:
        """A long-running-operation reply: ARM's Azure-AsyncOperation (and for 202, Location)."""
        op = self._guid()
        self._operations[op] = self.lro_in_progress_polls
        base = (
            f"{request.host}/subscriptions/{request.params['sub']}/providers/Microsoft.Network/"
            f"locations/{location}"
        )
        suffix = f"{op}?api-version={request.api_version}"
        headers = {"Azure-AsyncOperation": f"{base}/operations/{suffix}"}
        if status == 202:
            headers["Location"] = f"{base}/operationResults/{suffix}"
        if self.lro_retry_after is not None:
            headers["Retry-After"] = str(self.lro_retry_after)
        return Reply(status, body, headers)

    def _page(self, request: _Request, items: list[Json]) -> Reply:
        token = request.query.get("$skiptoken", "0")
        start = int(token) if token.isdigit() else 0
        end = start + self.page_size
        body: Json = {"value": items[start:end]}
        if end < len(items):
            # ARM's nextLink carries its own api-version: the SDK follows it untouched.
            body["nextLink"] = (
                f"{request.host}{request.path}?api-version={request.api_version}&$skiptoken={end}"
            )
        return Reply(200, body)

    def _nsg(self, request: _Request) -> _Nsg:
        p = request.params
        nsg = self._nsgs.get(_key(p["sub"], p["rg"], p["nsg"]))
        if nsg is None:
            raise _resource_not_found("networkSecurityGroups", p["nsg"], p["rg"])
        return nsg

    def _vnet(self, request: _Request) -> _Vnet:
        p = request.params
        vnet = self._vnets.get(_key(p["sub"], p["rg"], p["vnet"]))
        if vnet is None:
            raise _resource_not_found("virtualNetworks", p["vnet"], p["rg"])
        return vnet

    def _nsg_by_id(self, resource_id: str) -> _Nsg | None:
        matched = _route(_NSG_PATH).match(resource_id)
        if matched is None:
            return None
        return self._nsgs.get(_key(matched["sub"], matched["rg"], matched["nsg"]))

    def _subnets_of(self, nsg: _Nsg) -> list[_Subnet]:
        return [
            s
            for s in self._subnets.values()
            if (s.properties.get("networkSecurityGroup") or {}).get("id", "").lower()
            == nsg.id.lower()
        ]

    def _render_nsg(self, nsg: _Nsg, state: str = "Succeeded") -> Json:
        properties: Json = {
            "provisioningState": state,
            "resourceGuid": nsg.guid,
            **nsg.extra,
            "securityRules": [_render_rule(nsg, r, state) for r in _sorted(nsg.rules)],
            "defaultSecurityRules": _render_defaults(nsg, state),
        }
        subnets = self._subnets_of(nsg)
        if subnets:
            properties["subnets"] = [{"id": s.id} for s in subnets]
        if nsg.nics:
            properties["networkInterfaces"] = [{"id": n} for n in nsg.nics]
        body: Json = {
            "name": nsg.name,
            "id": nsg.id,
            "etag": nsg.etag,
            "type": _NSG_TYPE,
            "location": nsg.location,
        }
        if nsg.tags is not None:
            body["tags"] = dict(nsg.tags)
        body["properties"] = properties
        return body

    # --- network security groups ---------------------------------------------------------------

    def _list_nsgs(self, request: _Request) -> Reply:
        p = request.params
        found = [n for k, n in self._nsgs.items() if k[:2] == _key(p["sub"], p["rg"])]
        return self._page(request, [self._render_nsg(n) for n in _sorted_nsgs(found)])

    def _list_all_nsgs(self, request: _Request) -> Reply:
        sub = request.params["sub"].lower()
        found = [n for k, n in self._nsgs.items() if k[0] == sub]
        return self._page(request, [self._render_nsg(n) for n in _sorted_nsgs(found)])

    def _get_nsg(self, request: _Request) -> Reply:
        return Reply(200, self._render_nsg(self._nsg(request)))

    def _put_nsg(self, request: _Request) -> Reply:
        p = request.params
        body = request.json()
        _check_name(p["nsg"])
        location = body.get("location")
        if not location:
            raise _bad_request(
                "LocationRequired", "The location property is required for this definition."
            )
        key = _key(p["sub"], p["rg"], p["nsg"])
        existing = self._nsgs.get(key)
        _check_preconditions(request, existing.etag if existing else None)
        properties = body.get("properties") or {}
        name = existing.name if existing else p["nsg"]
        nsg_id = f"{_provider_path(p['sub'], p['rg'])}/networkSecurityGroups/{name}"
        # PUT replaces: rules left out of the body are deleted, as in Azure.
        rules: dict[str, _Rule] = {}
        for item in properties.get("securityRules") or []:
            rule_name = item.get("name")
            if not rule_name:
                raise _cannot_parse("Every rule in properties.securityRules needs a name.")
            _check_name(rule_name)
            if rule_name.lower() in rules:
                raise _bad_request(
                    "DuplicateResourceName",  # (unconfirmed)
                    f"Security rule name {rule_name} is used more than once.",
                )
            rules[rule_name.lower()] = _Rule(
                rule_name,
                _checked_rule(f"{nsg_id}/securityRules/{rule_name}", item.get("properties") or {}),
            )
        _check_rule_set(rules, None)
        nsg = _Nsg(
            subscription=existing.subscription if existing else p["sub"],
            resource_group=existing.resource_group if existing else p["rg"],
            name=name,
            location=location,
            tags=body.get("tags"),
            extra={k: v for k, v in properties.items() if k in _NSG_WRITABLE},
            rules=rules,
            etag=self._etag(),
            guid=existing.guid if existing else self._guid(),
        )
        self._nsgs[key] = nsg
        return self._accepted(
            request, 200 if existing else 201, self._render_nsg(nsg, "Updating"), nsg.location
        )

    def _patch_nsg(self, request: _Request) -> Reply:
        # PATCH on an NSG is update_tags: only tags change, and it completes at once.
        nsg = self._nsg(request)
        _check_preconditions(request, nsg.etag)
        body = request.json()
        nsg.tags = dict(body.get("tags") or {})
        nsg.etag = self._etag()
        return Reply(200, self._render_nsg(nsg))

    def _delete_nsg(self, request: _Request) -> Reply:
        p = request.params
        nsg = self._nsgs.get(_key(p["sub"], p["rg"], p["nsg"]))
        if nsg is None:
            return Reply(204)
        _check_preconditions(request, nsg.etag)
        in_use = [s.id for s in self._subnets_of(nsg)] + nsg.nics
        if in_use:
            raise _bad_request(
                "InUseNetworkSecurityGroupCannotBeDeleted",
                f"Network security group {nsg.id} cannot be deleted because it is in use by the "
                f"following resources: {', '.join(in_use)}. In order to delete the "
                f"Network security group, remove the association with the resource(s). To learn "
                f"how to do this, see aka.ms/deletensg.",
            )
        del self._nsgs[_key(p["sub"], p["rg"], p["nsg"])]
        return self._accepted(request, 202, None, nsg.location)

    # --- security rules ------------------------------------------------------------------------

    def _list_rules(self, request: _Request) -> Reply:
        nsg = self._nsg(request)
        return self._page(request, [_render_rule(nsg, r) for r in _sorted(nsg.rules)])

    def _get_rule(self, request: _Request) -> Reply:
        nsg = self._nsg(request)
        rule = nsg.rules.get(request.params["rule"].lower())
        if rule is None:
            raise _child_not_found(f"{nsg.id}/securityRules/{request.params['rule']}")
        return Reply(200, _render_rule(nsg, rule))

    def _put_rule(self, request: _Request) -> Reply:
        nsg = self._nsg(request)
        body = request.json()
        key = request.params["rule"].lower()
        existing = nsg.rules.get(key)
        name = existing.name if existing else request.params["rule"]
        _check_name(name)
        _check_preconditions(request, nsg.etag if existing else None)
        rules = dict(nsg.rules)
        rules[key] = _Rule(
            name, _checked_rule(f"{nsg.id}/securityRules/{name}", body.get("properties") or {})
        )
        _check_rule_set(rules, name)
        nsg.rules = rules
        nsg.etag = self._etag()
        return self._accepted(
            request,
            200 if existing else 201,
            _render_rule(nsg, rules[key], "Updating"),
            nsg.location,
        )

    def _delete_rule(self, request: _Request) -> Reply:
        nsg = self._nsg(request)
        key = request.params["rule"].lower()
        if key not in nsg.rules:
            return Reply(204)
        _check_preconditions(request, nsg.etag)
        nsg.rules = {k: r for k, r in nsg.rules.items() if k != key}
        nsg.etag = self._etag()
        return self._accepted(request, 202, None, nsg.location)

    def _list_default_rules(self, request: _Request) -> Reply:
        return self._page(request, _render_defaults(self._nsg(request), "Succeeded"))

    def _get_default_rule(self, request: _Request) -> Reply:
        nsg = self._nsg(request)
        wanted = request.params["rule"].lower()
        for rule in _render_defaults(nsg, "Succeeded"):
            if rule["name"].lower() == wanted:
                return Reply(200, rule)
        raise _child_not_found(f"{nsg.id}/defaultSecurityRules/{request.params['rule']}")

    # --- subnets -------------------------------------------------------------------------------

    def _list_subnets(self, request: _Request) -> Reply:
        vnet = self._vnet(request)
        found = [s for s in self._subnets.values() if s.vnet is vnet]
        return self._page(request, [_render_subnet(s) for s in sorted(found, key=_by_name)])

    def _get_subnet(self, request: _Request) -> Reply:
        vnet = self._vnet(request)
        item = self._subnets.get(
            (
                *_key(vnet.subscription, vnet.resource_group, vnet.name),
                request.params["subnet"].lower(),
            )
        )
        if item is None:
            raise _child_not_found(f"{vnet.id}/subnets/{request.params['subnet']}")
        return Reply(200, _render_subnet(item))

    def _put_subnet(self, request: _Request) -> Reply:
        vnet = self._vnet(request)
        _check_name(request.params["subnet"])
        key = (
            *_key(vnet.subscription, vnet.resource_group, vnet.name),
            request.params["subnet"].lower(),
        )
        existing = self._subnets.get(key)
        _check_preconditions(request, existing.etag if existing else None)
        name = existing.name if existing else request.params["subnet"]
        subnet_id = f"{vnet.id}/subnets/{name}"
        # The PUT replaces the subnet: whatever the body leaves out is gone.
        properties = {
            k: v
            for k, v in (request.json().get("properties") or {}).items()
            if k != "provisioningState"
        }
        if not properties.get("addressPrefix") and not properties.get("addressPrefixes"):
            raise _bad_request(
                "AddressPrefixStringCannotBeNullOrEmpty",
                f"Address prefix string for resource {subnet_id} cannot be null or empty.",
            )
        reference = properties.get("networkSecurityGroup")
        if reference is not None:
            reference_id = (reference or {}).get("id") or ""
            if self._nsg_by_id(reference_id) is None:
                raise _bad_request(
                    "InvalidResourceReference",
                    f"Resource {reference_id} referenced by resource {subnet_id} was not found. "
                    f"Please make sure that the referenced resource exists, and that both "
                    f"resources are in the same region.",
                )
            # ARM keeps only the reference, whatever else the client sent along with the id.
            properties["networkSecurityGroup"] = {"id": reference_id}
        item = _Subnet(vnet, name, properties, self._etag())
        self._subnets[key] = item
        return self._accepted(
            request, 200 if existing else 201, _render_subnet(item, "Updating"), vnet.location
        )

    # --- operation status ------------------------------------------------------------------------

    def _get_operation(self, request: _Request) -> Reply:
        op = request.params["op"]
        if op not in self._operations:
            raise _child_not_found(request.path)
        location_poll = request.params["kind"].lower() == "operationresults"
        if self._operations[op] > 0:
            self._operations[op] -= 1
            reply = Reply(202 if location_poll else 200, recorded_body("operation_in_progress"))
            if self.lro_retry_after is not None:
                reply.headers["Retry-After"] = str(self.lro_retry_after)
            return reply
        return Reply(204) if location_poll else Reply(200, recorded_body("operation_succeeded"))


# --- validation ---------------------------------------------------------------------------------


def _resource_not_found(kind: str, name: str, resource_group: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource 'Microsoft.Network/{kind}/{name}' under resource group "
        f"'{resource_group}' was not found. For more details please go to "
        f"https://aka.ms/ARMResourceNotFoundFix",
        details=False,
    )


def _child_not_found(resource_id: str) -> ArmError:
    return ArmError(404, "NotFound", f"Resource {resource_id} not found.")


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise _bad_request(
            "InvalidResourceName",
            f"Resource name {name} is invalid. The name can be up to 80 characters "
            f"long. It must begin with a word character, and it must end with a "
            f"word character or with '_'. The name may contain word characters or "
            f"'.', '-', '_'.",
        )


def _check_preconditions(request: _Request, current_etag: str | None) -> None:
    if_match = request.headers.get("If-Match")
    if_none_match = request.headers.get("If-None-Match")
    failed = (
        if_match is not None and (current_etag is None or if_match not in ("*", current_etag))
    ) or (if_none_match == "*" and current_etag is not None)
    if failed:
        raise ArmError(
            412,
            "PreconditionFailed",
            "Precondition failed: the resource's etag does not match the request.",
        )


def _is_address(value: str) -> bool:
    """An IP, a CIDR with no host bits set, or an IP range a-b (what ARM accepts as a prefix)."""
    bounds = value.split("-")
    try:
        if len(bounds) == 2:
            ipaddress.ip_address(bounds[0])
            ipaddress.ip_address(bounds[1])
        else:
            ipaddress.ip_network(value, strict=True)
    except ValueError:
        return False
    return True


def _check_ports(value: Any) -> None:
    matched = _PORTS.match(value) if isinstance(value, str) else None
    ok = value == "*" or (
        matched is not None and int(matched[1]) <= int(matched[2] or matched[1]) <= 65535
    )
    if not ok:
        raise _bad_request(
            "SecurityRuleInvalidPortRange",
            f"Security rule has invalid Port range. Value provided: {value}. Value "
            f"should be an integer OR integer range with '-' delimiter. Valid range "
            f"0-65535.",
        )


def _checked_rule(rule_id: str, given: Mapping[str, Any]) -> Json:
    """Validate a rule's properties as ARM does; return them as ARM stores and returns them."""
    # Unknown keys are dropped, as ARM does, so a snake_case dict loses its fields and fails below.
    props: Json = {
        k: copy.deepcopy(v)
        for k, v in given.items()
        if k in _RULE_WRITABLE and v is not None and v != ""
    }
    for name, canonical in _ENUMS.items():
        value = props.get(name)
        if value is None:
            raise _cannot_parse(f"Required property '{name}' not found. Path 'properties'.")
        if not isinstance(value, str) or value.lower() not in canonical:
            raise _cannot_parse(
                f'Error converting value "{value}" to type '
                f"'SecurityRule{name.title()}'. Path 'properties.{name}'."
            )
        props[name] = canonical[value.lower()]
    priority = props.get("priority")
    if isinstance(priority, bool) or not isinstance(priority, int) or not 100 <= priority <= 4096:
        raise _bad_request(
            "SecurityRuleInvalidPriority",
            f"Security rule has invalid Priority. Value provided: {priority} "
            f"Allowed values: 100-4096.",
        )
    if len(props.get("description", "")) > 140:
        raise _bad_request(
            "SecurityRuleDescriptionTooLong",  # (unconfirmed)
            f"Security rule {rule_id} has a description longer than 140 characters.",
        )
    for single, plural in (*_ADDRESS_PAIRS, *_PORT_PAIRS):
        if single in props and props.get(plural):
            raise _bad_request(
                "SecurityRuleParameterConflict",  # (unconfirmed)
                f"Security rule {rule_id} cannot specify both {single} and {plural}.",
            )
    for single, plural in _PORT_PAIRS:
        if single not in props and not props.get(plural):
            _check_ports(None)
        for value in [props[single]] if single in props else props[plural]:
            _check_ports(value)
    for single, plural in _ADDRESS_PAIRS:
        _check_addresses(rule_id, props, single, plural)
    for _single, plural in (*_ADDRESS_PAIRS, *_PORT_PAIRS):
        # ARM answers the plural of an unused pair as an empty list, never absent.
        props.setdefault(plural, [])
    return props


def _check_addresses(rule_id: str, props: Json, single: str, plural: str) -> None:
    groups = plural.replace("AddressPrefixes", "ApplicationSecurityGroups")
    invalid = f"Security rule {rule_id} has invalid Address prefix. Value provided: "
    if single in props:
        value = props[single]
        if not (
            isinstance(value, str)
            and (value == "*" or _SERVICE_TAG.match(value) or _is_address(value))
        ):
            raise _bad_request("SecurityRuleInvalidAddressPrefix", f"{invalid}{value}")
        return
    values = props.get(plural) or []
    if not values and not props.get(groups):
        raise _bad_request("SecurityRuleInvalidAddressPrefix", f"{invalid}null")
    if len(values) > MAX_PREFIXES_PER_SIDE:
        raise _bad_request(
            "SecurityRuleTooManyAddressPrefixes",  # (unconfirmed)
            f"Security rule {rule_id} has {len(values)} {plural}; at most "
            f"{MAX_PREFIXES_PER_SIDE} are allowed.",
        )
    for value in values:
        if isinstance(value, str) and _is_address(value):
            continue
        if isinstance(value, str) and (value == "*" or _SERVICE_TAG.match(value)):
            raise _bad_request(
                "SecurityRuleParameterContainsUnsupportedValue",
                f"Security rule parameter {plural[0].upper()}{plural[1:]} for rule with Id "
                f"{rule_id} cannot specify existing VIRTUALNETWORK, INTERNET, AZURELOADBALANCER, "
                f"'*' or system tags. Unsupported value used: {value}.",
            )
        raise _bad_request("SecurityRuleInvalidAddressPrefix", f"{invalid}{value}")


def _check_rule_set(rules: Mapping[str, _Rule], changed: str | None) -> None:
    """Refuse more than 1000 rules, or two rules sharing a priority in one direction.

    `changed` names the rule being written: only it is checked against the others (the rest
    were valid already), and the message names it as the newcomer, as ARM does.
    """
    if len(rules) > MAX_RULES_PER_NSG:
        raise _bad_request(
            "SecurityRuleCountLimitReached",
            f"A security group cannot have more than {MAX_RULES_PER_NSG} security rules.",
        )
    newcomer = rules.get((changed or "").lower())
    seen: dict[tuple[str, int], str] = {}
    for rule in rules.values():
        if rule is not newcomer:
            seen.setdefault(_slot(rule), rule.name)
            if newcomer is None and seen[_slot(rule)] != rule.name:
                raise _conflict(rule.name, seen[_slot(rule)])
    if newcomer is not None and _slot(newcomer) in seen:
        raise _conflict(newcomer.name, seen[_slot(newcomer)])


def _slot(rule: _Rule) -> tuple[str, int]:
    return rule.properties["direction"], rule.properties["priority"]


def _conflict(newcomer: str, existing: str) -> ArmError:
    return _bad_request(
        "SecurityRuleConflict",
        f"Security rule {newcomer} conflicts with rule {existing}. Rules cannot have the same "
        f"Priority and Direction. To learn more, see aka.ms/nsgrules.",
    )


# --- rendering ----------------------------------------------------------------------------------


def _by_name(item: _Rule | _Nsg | _Subnet) -> str:
    return item.name.lower()


def _sorted(rules: Mapping[str, _Rule]) -> list[_Rule]:
    return sorted(rules.values(), key=_by_name)


def _sorted_nsgs(nsgs: list[_Nsg]) -> list[_Nsg]:
    return sorted(nsgs, key=_by_name)


def _render_rule(nsg: _Nsg, rule: _Rule, state: str = "Succeeded") -> Json:
    return {
        "name": rule.name,
        "id": f"{nsg.id}/securityRules/{rule.name}",
        "etag": nsg.etag,
        "type": f"{_NSG_TYPE}/securityRules",
        "properties": {"provisioningState": state, **copy.deepcopy(rule.properties)},
    }


def _render_defaults(nsg: _Nsg, state: str) -> list[Json]:
    return [
        {
            "name": name,
            "id": f"{nsg.id}/defaultSecurityRules/{name}",
            "etag": nsg.etag,
            "type": f"{_NSG_TYPE}/defaultSecurityRules",
            "properties": {"provisioningState": state, **copy.deepcopy(properties)},
        }
        for name, properties in _default_rules()
    ]


def _render_subnet(subnet: _Subnet, state: str = "Succeeded") -> Json:
    return {
        "name": subnet.name,
        "id": subnet.id,
        "etag": subnet.etag,
        "type": "Microsoft.Network/virtualNetworks/subnets",
        "properties": {"provisioningState": state, **copy.deepcopy(subnet.properties)},
    }


# --- azure-core plumbing ------------------------------------------------------------------------


def _replay(response: HttpResponseImpl, **_: Any) -> Iterator[bytes]:
    yield response.content


class _ArmResponse(HttpResponseImpl):
    """An `azure.core.rest` response whose body is already in memory.

    HttpResponseImpl is the base azure-core's own transports build on; with `_content` set, read(),
    iter_bytes() and json() never touch the (absent) network response.
    """

    def __init__(self, request: HttpRequest, reply: Reply) -> None:
        content = b"" if reply.body is None else json.dumps(reply.body).encode()
        headers = {"x-ms-request-id": "00000000-0000-4000-8000-000000000000", **reply.headers}
        if reply.body is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        headers["Content-Length"] = str(len(content))
        super().__init__(
            request=request,
            internal_response=None,
            status_code=reply.status,
            reason=HTTPStatus(reply.status).phrase,
            content_type=headers.get("Content-Type"),
            headers=case_insensitive_dict(headers),
            stream_download_generator=_replay,
        )
        self._content = content

    def close(self) -> None:
        # Nothing to release: there is no socket behind this response.
        self._is_closed = True


class ArmTransport(HttpTransport[HttpRequest, HttpResponse]):
    """An azure-core transport that answers from a FakeArm instead of the network."""

    def __init__(self, fake: FakeArm) -> None:
        self.fake = fake

    def __enter__(self) -> ArmTransport:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def sleep(self, duration: float) -> None:
        # RetryPolicy and the LRO poller both sleep through the transport: record instead, so
        # Retry-After is honoured (and checkable) without slowing tests down.
        self.fake.sleeps.append(duration)

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        content: Any = request.content
        if hasattr(content, "read"):
            content = content.read()
        if isinstance(content, str):
            content = content.encode()
        reply = self.fake.handle(request.method, request.url, dict(request.headers), content)
        return _ArmResponse(request, reply)


class FakeCredential:
    """A TokenCredential that hands out a token nobody checks."""

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return AccessToken("fake-arm-token", int(time.time()) + 3600)


def make_client(
    fake: FakeArm, subscription_id: str, *, retry_total: int = 3, **kwargs: Any
) -> NetworkManagementClient:
    """The real NetworkManagementClient, served by `fake`.

    azure-core's RetryPolicy stays in the pipeline; retry_total is lowered so an injected 500
    fails after 4 attempts rather than 11. Sleeps are virtual (see ArmTransport.sleep).
    """
    settings: dict[str, Any] = {
        "retry_total": retry_total,
        "retry_backoff_factor": 0.01,
        "polling_interval": 0,
        **kwargs,
    }
    return NetworkManagementClient(
        FakeCredential(),
        subscription_id,
        base_url=FAKE_ARM_URL,
        transport=ArmTransport(fake),
        **settings,
    )
