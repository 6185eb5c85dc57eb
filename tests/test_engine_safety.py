"""The engine's one promise, for every cloud: no moment of an apply blocks a connection that
is allowed both before and after it.

Random before/after intents are applied through the real SDK clients against each cloud's
stand-in (moto's EC2 server, the ARM stand-in, the compute stand-in). A recording layer in
front of the cloud (a loopback HTTP proxy for EC2 and compute, a wrapping transport for
ARM) evaluates the cloud's rules after every write call, before the next call is sent, with
the tests' own evaluators (they read the cloud, not nsgsync's model).
"""

from __future__ import annotations

import http.server
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
import requests
from azure.core.rest import HttpRequest, HttpResponse
from azure.mgmt.network import NetworkManagementClient
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from nsgsync.engine import Planned, apply_plan, make_plan
from nsgsync.errors import GuardrailError, LimitError
from nsgsync.intent import DirectionIntent, Intent, IntentProtocol, Rule, SegmentIntent
from nsgsync.model import Topology
from nsgsync.plan import Resource, Role
from nsgsync.provider import Adapter, Snapshot, configure
from nsgsync.sources.files import topology_from_mapping
from tests.aws.conftest import moto_endpoint  # noqa: F401  (the fixture)
from tests.aws.evaluate import Groups
from tests.azure.conftest import RG, SUB, VNET, VNET_CIDRS, Arm
from tests.azure.evaluate import Nsgs
from tests.fakes.azure_arm import FAKE_ARM_URL, ArmTransport, FakeArm, FakeCredential
from tests.fakes.azure_arm import make_client as make_arm_client
from tests.fakes.gcp_compute import FakeCompute, make_operations_client
from tests.gcp.conftest import FAST_RETRY, NETWORK, NODE_TAG, PROJECT, with_gcp
from tests.gcp.evaluate import Firewalls

SEGMENTS = {"a": "10.0.1.0/24", "b": "10.0.2.0/24", "c": "10.0.3.0/24"}
OUTSIDE = "192.0.2.0/24"
PROBES = ["10.0.1.10", "10.0.2.10", "10.0.3.10", "192.0.2.1"]
PORTS = [("TCP", 80), ("TCP", 443), ("UDP", 53), ("TCP", 8080)]
SPANS: list[tuple[tuple[int, int], ...] | None] = [((80, 80),), ((443, 443),), ((53, 53),), None]

Probe = tuple[str, str, str, int]
Allows = Callable[[], set[Probe]]


def topology() -> Topology:
    return topology_from_mapping(
        {
            "apiVersion": "nsgsync.io/v1alpha1",
            "kind": "Topology",
            "cluster": "safe",
            "provider": "aws",
            "podCIDRs": ["10.0.0.0/16"],
            "segments": [
                {"name": name, "namespace": name, "cidrs": [cidr]}
                for name, cidr in SEGMENTS.items()
            ],
            "aws": {"region": "eu-west-1", "vpcId": "vpc-0placeholder"},
        }
    )


rules = st.builds(
    lambda peers, proto, span: Rule(
        peers=tuple(sorted(peers)),
        protocol=IntentProtocol.UDP if span == ((53, 53),) else proto,
        ports=span,
        policies=("ns/p",),
    ),
    st.sets(st.sampled_from([*SEGMENTS.values(), OUTSIDE]), min_size=1, max_size=2),
    st.sampled_from([IntentProtocol.TCP, IntentProtocol.ANY]),
    st.sampled_from(SPANS),
)
sides = st.builds(
    lambda isolated, rs: DirectionIntent(isolated=isolated, rules=tuple(rs) if isolated else ()),
    st.booleans(),
    st.lists(rules, max_size=3),
)
intents = st.builds(
    lambda sides_: Intent(
        cluster="safe",
        segments=tuple(
            SegmentIntent(name=name, cidrs=(cidr,), ingress=ingress, egress=egress)
            for (name, cidr), (ingress, egress) in zip(SEGMENTS.items(), sides_, strict=True)
        ),
    ),
    st.lists(st.tuples(sides, sides), min_size=3, max_size=3),
)


def egress_of_a(*rules_: tuple[set[str], IntentProtocol, tuple[tuple[int, int], ...]]) -> Intent:
    """Segment a isolated on egress with these rules; every other side open."""
    open_ = DirectionIntent(isolated=False, rules=())
    isolated = DirectionIntent(
        isolated=True,
        rules=tuple(
            Rule(peers=tuple(sorted(p)), protocol=proto, ports=span, policies=("ns/p",))
            for p, proto, span in rules_
        ),
    )
    return Intent(
        cluster="safe",
        segments=tuple(
            SegmentIntent(
                name=name, cidrs=(cidr,), ingress=open_, egress=isolated if name == "a" else open_
            )
            for name, cidr in SEGMENTS.items()
        ),
    )


# A rule for all protocols gives up OUTSIDE while the DNS rule takes it on, in place: the
# DNS rule must be written first (found by the property below, 2026-12-02).
ALL_TO_DNS = {
    "before": egress_of_a(
        ({SEGMENTS["a"]}, IntentProtocol.UDP, ((53, 53),)),
        ({SEGMENTS["a"], OUTSIDE}, IntentProtocol.ANY, ((80, 80),)),
    ),
    "after": egress_of_a(
        ({SEGMENTS["a"]}, IntentProtocol.ANY, ((80, 80),)),
        ({OUTSIDE}, IntentProtocol.UDP, ((53, 53),)),
    ),
}


def allowed(allows: Callable[[str, str, str, int], bool]) -> set[Probe]:
    return {
        (src, dst, proto, port)
        for src in PROBES
        for dst in PROBES
        for proto, port in PORTS
        if src != dst and allows(src, dst, proto, port)
    }


@contextmanager
def recording_proxy(upstream: str, is_write: Callable[[str, bytes], bool]) -> Iterator[Any]:
    """A loopback HTTP proxy to `upstream` that calls `after` once each write is answered,
    before the answer goes back (so before the client's next call)."""

    class State:
        after: Callable[[], None] = staticmethod(lambda: None)
        writes = 0

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
            }
            reply = requests.request(
                self.command, upstream + self.path, data=body, headers=headers, timeout=30
            )
            if is_write(self.command, body):
                State.writes += 1
                State.after()
            self.send_response(reply.status_code)
            for k, v in reply.headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(reply.content)))
            self.end_headers()
            self.wfile.write(reply.content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield State, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Cloud:
    """One stand-in: a plain client (to evaluate), a recorded one (for the engine)."""

    topology: Topology
    session: Any
    allows: Allows
    state: Any


def _plan_or_refuse(adapter: Adapter, intent: Intent, cloud: Cloud) -> Planned | None:
    """The plan, or None where the engine found no order of in-place changes that is safe
    at every moment (two rules swapping peers) and refused before any write."""
    start = cloud.allows()
    try:
        return make_plan(adapter, intent, session=cloud.session)
    except GuardrailError as exc:
        refused = str(exc)
    assert "no order of the" in refused, refused
    assert cloud.allows() == start  # refused: nothing was written
    return None


def check_transition(cloud: Cloud, before: Intent, after: Intent) -> None:
    adapter = configure(cloud.topology)
    # The stand-in keeps what earlier examples left: reaching `before` from there is a
    # transition of its own, which may be refused; this example then tests nothing more.
    plan = _plan_or_refuse(adapter, before, cloud)
    assume(plan is not None)
    assert plan is not None
    apply_plan(adapter, plan, cloud.session, progress=lambda _: None)
    start = cloud.allows()
    moments: list[set[Probe]] = []
    planned = _plan_or_refuse(adapter, after, cloud)
    if planned is None:
        return  # refused before any write: every moment is the start
    cloud.state.after = lambda: moments.append(cloud.allows())
    try:
        apply_plan(adapter, planned, cloud.session, progress=lambda _: None)
    finally:
        cloud.state.after = lambda: None
    end = cloud.allows()
    both = start & end
    for i, now in enumerate(moments):
        lost = sorted(both - now)
        assert not lost, f"after write {i + 1} of {len(moments)}, blocked: {lost[:5]}"
    assert make_plan(adapter, after, session=cloud.session).plan.empty


def check_tight_transition(cloud: Cloud, before: Intent, after: Intent, *, key: str) -> None:
    """The same, with the quota (`key` in the provider's block) as tight as the end states
    allow: every change that adds more than it can hold at once is made in pairs."""
    provider = cloud.topology.provider
    block = cloud.topology.provider_block(provider)
    wide = configure(cloud.topology)
    need = max(_most(wide.desired(i, Snapshot(offline=True))[0], provider) for i in (before, after))
    top = cloud.topology.model_copy(update={provider: {**block, key: max(need, 1)}})
    tight = Cloud()
    tight.topology, tight.session, tight.allows, tight.state = (
        top,
        cloud.session,
        cloud.allows,
        cloud.state,
    )
    try:
        check_transition(tight, before, after)
    except LimitError:
        # No pair order is safe: the plan says so before any write (a plan that wrote
        # instead would have been caught above as a blocked moment).
        assume(False)


def _most(resources: list[Resource], provider: str) -> int:
    """The largest count that one quota of `provider` holds."""
    counts: Counter[tuple[object, ...]] = Counter()
    for r in resources:
        if r.role is Role.RULE:
            cidr6 = "CidrIpv6" in r.body
            counts[(r.segment, r.direction, cidr6) if provider == "aws" else ()] += 1
    return max(counts.values(), default=0)


# --- AWS: moto's server behind the proxy ---


@pytest.fixture(scope="module")
def aws_cloud(moto_endpoint: str) -> Iterator[Cloud]:  # noqa: F811
    def ec2_write(method: str, body: bytes) -> bool:
        return method == "POST" and b"Action=Describe" not in body

    with recording_proxy(moto_endpoint, ec2_write) as (state, url):

        def client(endpoint: str) -> Any:
            return boto3.client(
                "ec2",
                region_name="eu-west-1",
                endpoint_url=endpoint,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )

        plain = client(moto_endpoint)
        vpc = plain.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        top = topology()
        top = top.model_copy(update={"aws": {"region": "eu-west-1", "vpcId": vpc}})
        cloud = Cloud()
        cloud.topology = top
        cloud.session = configure(top).session(ec2=client(url))
        cloud.allows = lambda: allowed(Groups.read(plain, vpc, top).allows)
        cloud.state = state
        yield cloud


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(before=intents, after=intents)
def test_no_moment_blocks_what_both_allow_aws(
    aws_cloud: Cloud, before: Intent, after: Intent
) -> None:
    check_transition(aws_cloud, before, after)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(before=intents, after=intents)
def test_no_moment_blocks_what_both_allow_aws_at_a_tight_quota(
    aws_cloud: Cloud, before: Intent, after: Intent
) -> None:
    check_tight_transition(aws_cloud, before, after, key="maxRulesPerGroup")


# --- GCP: the compute stand-in behind the proxy ---


@pytest.fixture(scope="module")
def gcp_cloud() -> Iterator[Cloud]:
    def compute_write(method: str, body: bytes) -> bool:
        return method in ("POST", "PUT", "PATCH", "DELETE")

    with FakeCompute() as fake, recording_proxy(fake.endpoint, compute_write) as (state, url):
        recorded = compute_v1.FirewallsClient(
            client_options=ClientOptions(api_endpoint=url),
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            transport="rest",
        )
        services: dict[str, Any] = recorded._transport._extended_operations_services
        services["global_operations"] = make_operations_client(fake)
        plain = compute_v1.FirewallsClient(
            client_options=ClientOptions(api_endpoint=fake.endpoint),
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            transport="rest",
        )
        top = with_gcp(topology())
        cloud = Cloud()
        cloud.topology = top
        cloud.session = configure(top).session(firewalls_client=recorded, retry=FAST_RETRY)
        cloud.allows = lambda: allowed(
            Firewalls.read(plain, PROJECT, NETWORK, top, {NODE_TAG}).allows
        )
        cloud.state = state
        yield cloud


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(before=intents, after=intents)
@example(**ALL_TO_DNS)
def test_no_moment_blocks_what_both_allow_gcp(
    gcp_cloud: Cloud, before: Intent, after: Intent
) -> None:
    check_transition(gcp_cloud, before, after)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(before=intents, after=intents)
def test_no_moment_blocks_what_both_allow_gcp_at_a_tight_quota(
    gcp_cloud: Cloud, before: Intent, after: Intent
) -> None:
    check_tight_transition(gcp_cloud, before, after, key="maxRules")


# --- Azure: the ARM stand-in behind a wrapping transport ---


@pytest.fixture(scope="module")
def azure_cloud() -> Cloud:
    fake = FakeArm()

    class State:
        after: Callable[[], None] = staticmethod(lambda: None)

    class Recording(ArmTransport):
        def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
            reply = super().send(request, **kwargs)
            if request.method in ("PUT", "PATCH", "DELETE", "POST"):
                State.after()
            return reply

    recorded = NetworkManagementClient(
        FakeCredential(),
        SUB,
        base_url=FAKE_ARM_URL,
        transport=Recording(fake),
        retry_total=0,
        polling_interval=0,
    )
    plain = make_arm_client(fake, SUB)
    top = Arm(fake, plain).with_azure(topology())
    cloud = Cloud()
    cloud.topology = top
    cloud.session = configure(top).session(network_client=recorded)
    cloud.allows = lambda: allowed(Nsgs.read(plain, RG, VNET, VNET_CIDRS).allows)
    cloud.state = State
    return cloud


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(before=intents, after=intents)
@example(**ALL_TO_DNS)
def test_no_moment_blocks_what_both_allow_azure(
    azure_cloud: Cloud, before: Intent, after: Intent
) -> None:
    check_transition(azure_cloud, before, after)


def test_the_recording_layer_sees_every_write(aws_cloud: Cloud) -> None:
    """The layer sees the engine's writes, else the property above proves nothing."""
    adapter = configure(aws_cloud.topology)
    seen: list[int] = []

    def every(isolated: bool) -> Intent:
        side = DirectionIntent(isolated=isolated)
        return Intent(
            cluster="safe",
            segments=tuple(
                SegmentIntent(name=n, cidrs=(c,), ingress=side, egress=side)
                for n, c in SEGMENTS.items()
            ),
        )

    aws_cloud.state.after = lambda: seen.append(1)
    try:
        for intent in (every(True), every(False)):
            planned = make_plan(adapter, intent, session=aws_cloud.session)
            apply_plan(adapter, planned, aws_cloud.session, progress=lambda _: None)
    finally:
        aws_cloud.state.after = lambda: None
    assert len(seen) >= 3


def test_a_swap_that_no_order_makes_safe_is_refused_before_any_write(gcp_cloud: Cloud) -> None:
    """A rule for all protocols moves from OUTSIDE to a while the DNS rule moves from a to
    OUTSIDE, both in place: whichever is written first blocks DNS that both ends allow.
    The plan says so, and nothing is written."""
    before = egress_of_a(
        ({OUTSIDE}, IntentProtocol.ANY, ((80, 80),)),
        ({SEGMENTS["a"]}, IntentProtocol.UDP, ((53, 53),)),
    )
    after = egress_of_a(
        ({SEGMENTS["a"]}, IntentProtocol.ANY, ((80, 80),)),
        ({OUTSIDE}, IntentProtocol.UDP, ((53, 53),)),
    )
    adapter = configure(gcp_cloud.topology)
    planned = make_plan(adapter, before, session=gcp_cloud.session)
    apply_plan(adapter, planned, gcp_cloud.session, progress=lambda _: None)
    start = gcp_cloud.allows()
    assert ("10.0.1.10", "192.0.2.1", "UDP", 53) in start
    with pytest.raises(GuardrailError, match="no order of the 2 in-place changes") as info:
        make_plan(adapter, after, session=gcp_cloud.session)
    assert "two steps" in (info.value.hint or "")
    assert gcp_cloud.allows() == start
