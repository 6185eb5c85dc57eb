"""Two applies at once, against moto's EC2 server: one waits or stops with a clear message,
and the end state is one of the two intended states, never a group that allows neither.

Without a cluster (files mode) nothing locks: the engine's optimistic check (each phase
re-reads what it will touch) stops the apply whose plan the other one invalidated. With a
cluster, the Lease per cluster and provider (against the Kubernetes API stand-in) makes the
second apply stop at once, naming the holder, or wait for it and plan afterwards.

The overlap is arranged, not timed: a recording proxy in front of moto runs the other apply
right after one write of the first (tests/test_engine_safety.py's proxy).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from nsgsync.cli.main import main
from nsgsync.controller.lock import ApplyLock, lock_name
from nsgsync.engine import apply_plan, make_plan
from nsgsync.errors import ConcurrentChangeError, LockError
from nsgsync.intent import DirectionIntent, Intent, IntentProtocol, Rule, SegmentIntent
from nsgsync.model import Topology
from nsgsync.provider import Adapter, configure
from tests.aws.conftest import EXAMPLE, Ec2
from tests.aws.evaluate import Groups
from tests.fakes.kube_api import KubeApi
from tests.test_cluster_source import write_kubeconfig
from tests.test_engine_safety import SEGMENTS, recording_proxy, topology

FRONT, BACK = "10.0.1.10", "10.0.2.10"
PORTS = (80, 8080, 9090)


def wanted(port: int) -> Intent:
    """Segment b takes TCP `port` from segment a only; the rest is open."""
    web = Rule(
        peers=(SEGMENTS["a"],),
        protocol=IntentProtocol.TCP,
        ports=((port, port),),
        policies=("b/web",),
    )
    return Intent(
        cluster="safe",
        segments=tuple(
            SegmentIntent(
                name=name,
                cidrs=(cidr,),
                ingress=DirectionIntent(isolated=True, rules=(web,))
                if name == "b"
                else DirectionIntent(isolated=False),
                egress=DirectionIntent(isolated=False),
            )
            for name, cidr in SEGMENTS.items()
        ),
    )


def client(endpoint: str) -> Any:
    return boto3.client(
        "ec2",
        region_name="eu-west-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def ec2_write(method: str, body: bytes) -> bool:
    return method == "POST" and b"Action=Describe" not in body


class Cloud:
    def __init__(self, ec2: Ec2) -> None:
        self.ec2 = ec2
        self.topology: Topology = topology().model_copy(
            update={"aws": {"region": "eu-west-1", "vpcId": ec2.vpc_id}}
        )
        self.adapter: Adapter = configure(self.topology)
        self.session = self.adapter.session(ec2=ec2.client)

    def ports(self) -> set[int]:
        """The oracle's view: the ports segment a reaches segment b on."""
        groups = Groups.read(self.ec2.client, self.ec2.vpc_id, self.topology)
        return {p for p in PORTS if groups.allows(FRONT, BACK, "TCP", p)}

    def apply(self, port: int, session: Any = None) -> None:
        session = session or self.session
        planned = make_plan(self.adapter, wanted(port), session=session)
        apply_plan(self.adapter, planned, session, progress=lambda _: None)

    def is_state_of(self, port: int) -> bool:
        return make_plan(self.adapter, wanted(port), session=self.session).plan.empty


@pytest.fixture
def cloud(ec2: Ec2) -> Cloud:
    made = Cloud(ec2)
    made.apply(80)
    assert made.ports() == {80}
    return made


@pytest.fixture
def proxied(cloud: Cloud) -> Iterator[tuple[Any, Any]]:
    """A session through the recording proxy, and the proxy's state (its `after` hook)."""
    with recording_proxy(cloud.ec2.endpoint, ec2_write) as (state, url):
        try:
            yield state, cloud.adapter.session(ec2=client(url))
        finally:
            state.after = lambda: None


def test_without_a_lock_the_apply_whose_plan_went_stale_stops_before_writing(
    cloud: Cloud, proxied: tuple[Any, Any]
) -> None:
    # Two runs start together from the same cloud (two CI jobs, or CI and the CronJob):
    # one moves the port 80 -> 8080, the other 80 -> 9090, each with its own plan.
    state, session = proxied
    first = make_plan(cloud.adapter, wanted(8080), session=session)
    second = make_plan(cloud.adapter, wanted(9090), session=cloud.session)
    outcome: dict[str, object] = {}
    moments: list[set[int]] = []
    go, done = threading.Event(), threading.Event()

    def other() -> None:
        go.wait(60)
        try:
            apply_plan(cloud.adapter, second, cloud.session, progress=lambda _: None)
            outcome["second"] = "applied"
        except ConcurrentChangeError as exc:
            outcome["second"] = exc
        finally:
            done.set()

    def after_each_write() -> None:
        moments.append(cloud.ports())
        if not go.is_set():  # the second apply runs whole after the first one's first write
            writes_before = cloud.ec2.writes()
            go.set()
            done.wait(60)
            outcome["second writes"] = cloud.ec2.writes() - writes_before

    thread = threading.Thread(target=other)
    thread.start()
    state.after = after_each_write
    apply_plan(cloud.adapter, first, session, progress=lambda _: None)
    thread.join(60)

    stopped = outcome["second"]
    assert isinstance(stopped, ConcurrentChangeError), stopped
    message = str(stopped)
    assert "security-group-rule sgr/b/in/tcp/8080-8080" in message
    assert "exists, but did not when the plan was made" in message
    assert "before its add phase wrote there, after 0 of its changes" in message
    assert "plan again" in stopped.hint
    assert outcome["second writes"] == 0  # it changed nothing
    # The end state is the first apply's, and no moment allowed neither port.
    assert cloud.ports() == {8080}
    assert cloud.is_state_of(8080)
    assert moments and all(now & {80, 8080} for now in moments), moments


def test_a_change_made_between_plan_and_a_phase_stops_the_apply_before_that_resource(
    cloud: Cloud, proxied: tuple[Any, Any]
) -> None:
    state, session = proxied
    planned = make_plan(cloud.adapter, wanted(8080), session=session)
    group = next(r.cloud_id for r in planned.snapshot.resources if r.key == "sg/b" and r.cloud_id)

    def by_hand() -> None:
        # Right after the apply's add: a person opens SSH on the group it is changing.
        state.after = lambda: None
        cloud.ec2.client.authorize_security_group_ingress(
            GroupId=group,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": 22,
                    "ToPort": 22,
                    "IpRanges": [{"CidrIp": "10.9.0.0/16"}],
                }
            ],
        )

    state.after = by_hand
    with pytest.raises(ConcurrentChangeError) as stopped:
        apply_plan(cloud.adapter, planned, session, progress=lambda _: None)
    message = str(stopped.value)
    assert "sgr/b/in/tcp/22-22/10.9.0.0/16 (segment b) exists" in message
    assert "before its remove phase wrote there, after 1 of its changes" in message
    # It stopped before revoking port 80: the group allows the old port and the new one.
    assert cloud.ports() == {80, 8080}
    # Planned again, from the cloud as it is now, the apply completes.
    cloud.apply(8080)
    assert cloud.ports() == {8080}
    assert cloud.is_state_of(8080)


# --- with a cluster: the Lease ---


@pytest.fixture
def kube() -> Iterator[KubeApi]:
    with KubeApi() as server:
        yield server


def lock(kube: KubeApi, holder: str, **options: Any) -> ApplyLock:
    settings: dict[str, Any] = {"duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.2}
    settings.update(options)
    return ApplyLock(
        kube.api_client(),
        namespace="nsgsync",
        cluster="safe",
        provider="aws",
        holder=holder,
        **settings,
    )


def test_the_lease_stops_a_second_apply_naming_the_holder_or_makes_it_wait(
    cloud: Cloud, kube: KubeApi
) -> None:
    events: list[str] = []
    waiting = threading.Event()

    def second_run() -> None:
        def sleep(seconds: float) -> None:
            waiting.set()  # it tried, found the Lease held, and waits
            threading.Event().wait(seconds)

        with lock(kube, "cron/2/nsgsync", timeout=60, sleep=sleep):
            events.append("second holds the lock")
            cloud.apply(9090)  # planned only now: from the first apply's end state
        events.append("second released")

    with lock(kube, "laptop/1/alice"):
        lease = kube.must("Lease", "nsgsync", lock_name("safe", "aws"))
        assert lease["spec"]["holderIdentity"] == "laptop/1/alice"
        # A second apply that does not wait stops at once, naming the holder and since when.
        with pytest.raises(LockError) as held:
            lock(kube, "ci/3/bob").acquire()
        assert "another apply holds the lock for aws cluster safe" in str(held.value)
        assert f"Lease nsgsync/{lock_name('safe', 'aws')} held by laptop/1/alice since" in str(
            held.value
        )
        assert "--lock-timeout" in held.value.hint
        # One that waits: it starts now, and gets the lock once this apply is done.
        waiter = threading.Thread(target=second_run)
        waiter.start()
        assert waiting.wait(60)
        cloud.apply(8080)
        assert cloud.ports() == {8080}
        events.append("first released")
    waiter.join(60)
    assert events == ["first released", "second holds the lock", "second released"]
    assert cloud.ports() == {9090}
    assert cloud.is_state_of(9090)
    # Released, not left to expire: the next apply takes it at once.
    assert not kube.must("Lease", "nsgsync", lock_name("safe", "aws"))["spec"].get("holderIdentity")


def lease(name: str, holder: str, renewed: datetime, duration: int = 30) -> dict[str, Any]:
    stamp = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "nsgsync"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "acquireTime": stamp,
            "renewTime": stamp,
        },
    }


def test_a_lease_its_holder_stopped_renewing_long_ago_is_taken_without_waiting(
    kube: KubeApi,
) -> None:
    name = lock_name("safe", "aws")
    kube.add(lease(name, "killed/9/cron", datetime.now(UTC) - timedelta(minutes=10)))
    with lock(kube, "next/1/cron") as taken:
        assert taken.holding()
        assert kube.must("Lease", "nsgsync", name)["spec"]["holderIdentity"] == "next/1/cron"


def test_the_cli_apply_stops_while_another_holds_the_lock_then_holds_it_itself(
    topology_file: Path, ec2: Ec2, kube: KubeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = yaml.safe_load(topology_file.read_text())["cluster"]
    name = lock_name(cluster, "aws")
    kube.add(lease(name, "laptop/1/alice", datetime.now(UTC)))
    kubeconfig = write_kubeconfig(tmp_path, kube)
    argv = [
        "apply",
        "-f",
        str(EXAMPLE / "cluster"),
        "--topology",
        str(topology_file),
        "--auto-approve",
        "--kubeconfig",
        str(kubeconfig),
        "--lock-namespace",
        "nsgsync",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"held by laptop/1/alice since {datetime.now(UTC):%Y-%m-%d}" in err
    assert ec2.writes() == 0 and ec2.reads() == 0  # locked before the plan's read
    # The holder is done (it released the Lease): this apply takes it, says so, releases it.
    spec = kube.must("Lease", "nsgsync", name)
    spec["spec"]["holderIdentity"] = None
    kube.add(spec)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"note: lock: Lease nsgsync/{name}, held by " in out
    assert "Apply complete!" in out
    assert not kube.must("Lease", "nsgsync", name)["spec"].get("holderIdentity")


def test_the_cli_apply_in_files_mode_says_no_lock_is_held(
    topology_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["apply", "-f", str(EXAMPLE / "cluster"), "--topology", str(topology_file)]
    assert main([*argv, "--auto-approve"]) == 0
    assert "note: no lock is held: the policies come from files" in capsys.readouterr().out


def test_a_lease_the_service_account_may_not_take_is_an_error_naming_the_permission(
    kube: KubeApi,
) -> None:
    kube.fail_next(1, status=403, match="leases")
    with pytest.raises(LockError) as refused:
        lock(kube, "cron/1/nsgsync").acquire()
    assert f"cannot take the lock (Lease nsgsync/{lock_name('safe', 'aws')}): 403" in str(
        refused.value
    )
    assert "create, get and update on leases in namespace nsgsync" in refused.value.hint


def test_an_apply_that_cannot_renew_its_lease_stops_before_its_next_write(
    cloud: Cloud, kube: KubeApi
) -> None:
    with lock(kube, "laptop/1/alice") as held:
        kube.fail_next(10_000, status=500, match="leases")  # the API server fails it
        pause = threading.Event()
        for _ in range(600):  # polled, generously: the renew deadline is 2 s
            if not held.holding():
                break
            pause.wait(0.1)
        planned = make_plan(cloud.adapter, wanted(8080), session=cloud.session)
        writes_before = cloud.ec2.writes()

        def progress(message: str) -> None:
            held.check()

        with pytest.raises(LockError) as lost:
            apply_plan(cloud.adapter, planned, cloud.session, progress=progress)
    assert "lost the lock" in str(lost.value)
    assert "the apply stopped before its next write" in str(lost.value)
    assert cloud.ec2.writes() == writes_before
    assert cloud.ports() == {80}


def test_the_cli_destroy_holds_the_lock_too(
    topology_file: Path, ec2: Ec2, kube: KubeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "apply",
                "-f",
                str(EXAMPLE / "cluster"),
                "--topology",
                str(topology_file),
                "--auto-approve",
            ]
        )
        == 0
    )
    cluster = yaml.safe_load(topology_file.read_text())["cluster"]
    kube.add(lease(lock_name(cluster, "aws"), "ci/7/bob", datetime.now(UTC)))
    capsys.readouterr()
    kubeconfig = write_kubeconfig(tmp_path, kube)
    argv = ["destroy", "--topology", str(topology_file), "--auto-approve"]
    assert main([*argv, "--kubeconfig", str(kubeconfig)]) == 1
    assert "held by ci/7/bob since" in capsys.readouterr().err
    assert (
        main(
            [
                "plan",
                "-f",
                str(EXAMPLE / "cluster"),
                "--topology",
                str(topology_file),
                "--detailed-exitcode",
            ]
        )
        == 0
    )  # nothing was destroyed
