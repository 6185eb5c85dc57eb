"""`nsgsync apply` through the CLI against moto's EC2 server behind a fault-injecting proxy.

Each fault either converges (the SDK retries, and a retry that finds its lost first attempt's
work done counts as done) or fails in one line with the right class and a true hint; after
every write call that reaches the server, every connection allowed both before and after
the apply is allowed; at the end the cloud is the intended state and a second plan is empty.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import yaml

from nsgsync.cli.main import main
from nsgsync.model import Topology
from nsgsync.sources.files import topology_from_mapping
from tests.aws.conftest import Ec2
from tests.aws.evaluate import Groups
from tests.cycle import EXAMPLE, probe_addresses
from tests.fakes.fault_proxy import (
    Fault,
    FaultProxy,
    Request,
    ec2_error,
    ec2_write,
    fault_proxy,
)

PORTS = [("TCP", 80), ("TCP", 8080), ("TCP", 5432), ("TCP", 443), ("UDP", 53), ("SCTP", 7)]
Probe = tuple[str, str, str, int]

# Before: a segment `legacy` (its group goes), no `batch` (its group comes), an extra
# policy (its rules go), and no internet ingress for the frontend (its rules come).
LEGACY = {"name": "legacy", "namespace": "legacy", "cidrs": ["10.0.9.0/24"]}
BATCH = {"name": "batch", "namespace": "batch", "cidrs": ["10.0.10.0/24"]}
EXTRA = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "db-from-partner", "namespace": "shop"},
    "spec": {
        "podSelector": {"matchLabels": {"tier": "db"}},
        "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [{"port": 443}]}],
    },
}
# After: SCTP without a port range on AWS (a rule with ports -1), into a new segment.
SCTP = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "batch-sctp", "namespace": "batch"},
    "spec": {
        "podSelector": {},
        "ingress": [
            {
                "from": [{"ipBlock": {"cidr": "198.51.100.0/24"}}],
                "ports": [{"protocol": "SCTP", "port": 7}],
            }
        ],
    },
}


def _topology_doc(vpc_id: str, extra: list[dict[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLE / "topology.yaml").read_text())
    doc["aws"]["vpcId"] = vpc_id
    # before the catch-all segment `rest`, which would take their pods
    doc["segments"] = [*doc["segments"][:-1], *extra, doc["segments"][-1]]
    return doc


@dataclass
class Setup:
    ec2: Ec2
    proxy: FaultProxy
    before: list[str]
    after: list[str]
    union: Topology
    probes: list[str]
    moments: list[set[Probe]] = field(default_factory=list)

    def allowed(self) -> set[Probe]:
        groups = Groups.read(self.ec2.client, self.ec2.vpc_id, self.union)
        return {
            (src, dst, proto, port)
            for src in self.probes
            for dst in self.probes
            for proto, port in PORTS
            if src != dst and groups.allows(src, dst, proto, port)
        }

    def record(self) -> None:
        self.moments.append(self.allowed())

    def check_every_moment(self, start: set[Probe], end: set[Probe]) -> None:
        both = start & end
        assert self.moments, "the proxy saw no write: the check proves nothing"
        for i, now in enumerate(self.moments):
            lost = sorted(both - now)
            assert not lost, f"after write {i + 1} of {len(self.moments)}, blocked: {lost[:5]}"


@pytest.fixture
def setup(ec2: Ec2, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL_EC2", raising=False)
    files: dict[str, list[str]] = {}
    for name, segments, extra_policy in (
        ("before", [LEGACY], EXTRA),
        ("after", [BATCH], SCTP),
    ):
        folder = tmp_path / name
        shutil.copytree(EXAMPLE / "cluster", folder)
        policies = folder / "policies.yaml"
        docs = [d for d in yaml.safe_load_all(policies.read_text()) if d]
        if name == "before":
            docs = [d for d in docs if d["metadata"]["name"] != "frontend-from-internet"]
        policies.write_text(yaml.safe_dump_all([*docs, extra_policy]))
        topology = tmp_path / f"{name}.yaml"
        topology.write_text(yaml.safe_dump(_topology_doc(ec2.vpc_id, segments)))
        files[name] = ["-f", str(folder), "--topology", str(topology)]
    union = topology_from_mapping(_topology_doc(ec2.vpc_id, [LEGACY, BATCH]))
    probes = [*probe_addresses(union), "192.0.2.1", "198.51.100.1"]
    with fault_proxy(ec2.endpoint, flavor="aws", is_write=ec2_write) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        yield Setup(ec2, proxy, files["before"], files["after"], union, probes)


def apply(args: list[str], *extra: str) -> int:
    return main(["apply", *args, "--auto-approve", *extra])


def converged(s: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["plan", *s.after, "--detailed-exitcode"]) == 0
    assert "No changes." in capsys.readouterr().out
    groups = Groups.read(s.ec2.client, s.ec2.vpc_id, s.union)
    assert sorted(groups.by_segment) == [
        "batch",
        "monitoring",
        "rest",
        "shop-backend",
        "shop-db",
        "shop-frontend",
        "shop-other",
    ]
    sctp = [r for r in groups.by_segment["batch"] if r["IpProtocol"] == "132"]
    assert [(r["FromPort"], r["ToPort"], r["CidrIpv4"]) for r in sctp] == [
        (-1, -1, "198.51.100.0/24")
    ]


def test_without_faults_the_transition_is_safe_and_converges(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    assert apply(setup.before) == 0
    start = setup.allowed()
    setup.proxy.after = setup.record
    assert apply(setup.after) == 0
    err = capsys.readouterr().err
    # progress: segments done of those the apply touches, and write calls made
    assert "segments done, " in err and " write calls]" in err
    setup.check_every_moment(start, setup.allowed())
    converged(setup, capsys)
    # the transition really adds, removes, creates and deletes
    actions = {a for a, _ in setup.proxy.seen}
    assert {
        "CreateSecurityGroup",
        "AuthorizeSecurityGroupIngress",
        "RevokeSecurityGroupIngress",
        "RevokeSecurityGroupEgress",
        "DeleteSecurityGroup",
    } <= actions


# Faults the SDK retries and the apply gets past: each converges in the same run.
CONVERGING = [
    (Fault.ERROR_500, "AuthorizeSecurityGroupIngress", 1, ""),
    (Fault.THROTTLE, "AuthorizeSecurityGroupIngress", 2, ""),
    (Fault.THROTTLE, "DescribeSecurityGroups", 2, ""),
    (Fault.DROP, "RevokeSecurityGroupIngress", 1, ""),
    (Fault.DROP, "CreateSecurityGroup", 1, ""),
    # The write takes effect and its reply is lost: the retry is answered Duplicate or
    # NotFound, which (the cloud checked) means the lost attempt did the work.
    (Fault.LOSE, "AuthorizeSecurityGroupIngress", 1, "the lost reply's authorize took effect"),
    (Fault.LOSE, "RevokeSecurityGroupEgress", 1, "the lost reply's revoke took effect"),
    (Fault.LOSE, "RevokeSecurityGroupIngress", 1, "the lost reply's revoke took effect"),
    (Fault.LOSE, "CreateSecurityGroup", 1, "the lost reply's create took effect"),
    (Fault.LOSE, "DeleteSecurityGroup", 1, "the lost reply's delete took effect"),
]


@pytest.mark.parametrize(
    ("fault", "action", "times", "said"),
    CONVERGING,
    ids=[f"{f}-{a}" for f, a, _, _ in CONVERGING],
)
def test_a_transient_fault_converges_in_the_same_run(
    setup: Setup,
    capsys: pytest.CaptureFixture[str],
    fault: Fault,
    action: str,
    times: int,
    said: str,
) -> None:
    assert apply(setup.before) == 0
    start = setup.allowed()
    setup.proxy.after = setup.record
    setup.proxy.inject(fault, action, times=times)
    assert apply(setup.after) == 0
    err = capsys.readouterr().err
    assert setup.proxy.faults() == [(action, fault)] * times
    assert said in err
    setup.check_every_moment(start, setup.allowed())
    converged(setup, capsys)


# Faults that outlast the retries, or that no retry fixes: the apply stops in one line
# naming the class, says what it did and what is left, and the next apply completes it.
FAILING = [
    (Fault.ERROR_500, "AuthorizeSecurityGroupIngress", 99, "(transport)", "network path"),
    (Fault.THROTTLE, "RevokeSecurityGroupIngress", 99, "(throttling)", "rate limit"),
    (Fault.DROP, "RevokeSecurityGroupEgress", 99, "the connection was closed", "network"),
    (Fault.HTML, "AuthorizeSecurityGroupIngress", 1, "with an HTML page", "not the cloud API"),
    (Fault.EMPTY, "RevokeSecurityGroupIngress", 1, "with an empty reply", "not the cloud API"),
]


@pytest.mark.parametrize(
    ("fault", "action", "times", "message", "hint"),
    FAILING,
    ids=[f"{f}-{a}" for f, a, _, _, _ in FAILING],
)
def test_a_lasting_fault_stops_the_apply_with_a_summary(
    setup: Setup,
    capsys: pytest.CaptureFixture[str],
    fault: Fault,
    action: str,
    times: int,
    message: str,
    hint: str,
) -> None:
    assert apply(setup.before) == 0
    start = setup.allowed()
    setup.proxy.after = setup.record
    setup.proxy.inject(fault, action, times=times)
    capsys.readouterr()
    assert apply(setup.after) == 1
    err = capsys.readouterr().err
    error = err[err.index("error: ") :]
    assert "Traceback" not in err and "<html" not in err.lower()
    first = error.splitlines()[0]
    assert first.startswith("error: apply stopped midway: EC2 ")
    assert message in first
    if fault in (Fault.HTML, Fault.EMPTY, Fault.ERROR_500, Fault.DROP):
        assert setup.proxy.url in first  # the endpoint is named
    assert "\n  done before it stopped (" in error
    assert "\n  not done: " in error
    assert hint in error
    assert "the next apply completes it (it reads the cloud as it is now)" in error
    assert setup.proxy.faults()[0] == (action, fault)
    # the next apply, without the fault, completes it
    setup.proxy.rules.clear()
    assert apply(setup.after) == 0
    setup.check_every_moment(start, setup.allowed())
    converged(setup, capsys)


def test_an_empty_reply_to_a_read_names_the_endpoint_in_one_line(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.proxy.inject(Fault.EMPTY, "DescribeSecurityGroups")
    assert main(["plan", *setup.after]) == 1
    err = capsys.readouterr().err
    assert (
        f"error: EC2 DescribeSecurityGroups at {setup.proxy.url} answered HTTP 200 with an "
        "empty reply, not the EC2 API's XML\n  hint: the endpoint did not answer" in err
    )
    assert "Traceback" not in err


def test_an_html_reply_to_a_read_is_never_read_as_an_empty_cloud(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    # botocore parses an HTML page of status 200 as an empty reply: no groups. A plan from
    # that would create every group anew, and a destroy would find nothing to do.
    assert apply(setup.before) == 0
    setup.proxy.inject(Fault.HTML, "DescribeSecurityGroups")
    capsys.readouterr()
    assert main(["destroy", "--topology", setup.before[-1], "--plan"]) == 1
    err = capsys.readouterr().err
    assert "answered HTTP 200 with an HTML page, not the EC2 API's XML" in err
    assert "Welcome" not in err and "Traceback" not in err


def test_an_endpoint_that_never_answers_fails_within_the_timeout(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.proxy.inject(Fault.HANG, "DescribeSecurityGroups", times=99)
    assert main(["plan", *setup.after, "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert "error: the run reached its --timeout of 2 s before an EC2 call to " in err
    assert "hint: the run reached its --timeout" in err
    assert "Traceback" not in err


def test_a_hang_midway_stops_the_apply_at_the_timeout_with_a_summary(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    assert apply(setup.before) == 0
    start = setup.allowed()
    setup.proxy.after = setup.record
    setup.proxy.inject(Fault.HANG, "RevokeSecurityGroupIngress", times=99)
    capsys.readouterr()
    assert apply(setup.after, "--timeout", "4") == 1
    err = capsys.readouterr().err
    assert "error: apply stopped midway: " in err
    assert "--timeout of 4 s" in err or "no answer in time" in err
    assert "security-group-rule destroyed" in err.split("not done: ")[1]
    assert "the next apply completes it" in err
    setup.proxy.rules.clear()
    assert apply(setup.after) == 0
    setup.check_every_moment(start, setup.allowed())
    converged(setup, capsys)


def test_a_duplicate_on_the_first_attempt_stops_the_apply(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Duplicate that no retry explains means the group holds a rule the plan did not see:
    another writer. The call added nothing (EC2 adds a call's rules all or none), so going
    on to the removals could cut traffic: the apply stops before them."""
    assert apply(setup.before) == 0
    start = setup.allowed()
    sneaked: list[str] = []

    def sneak_in(req: Request) -> bool:
        # Just before the apply's first authorize reaches EC2, another writer adds the first
        # rule of it; the request then goes on, unfaulted.
        if sneaked or req.action != "AuthorizeSecurityGroupIngress":
            return False
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        perm: dict[str, Any] = {
            "IpProtocol": form["IpPermissions.1.IpProtocol"],
            "IpRanges": [{"CidrIp": form["IpPermissions.1.IpRanges.1.CidrIp"]}],
        }
        for key in ("FromPort", "ToPort"):
            if f"IpPermissions.1.{key}" in form:
                perm[key] = int(form[f"IpPermissions.1.{key}"])
        setup.ec2.client.authorize_security_group_ingress(
            GroupId=form["GroupId"], IpPermissions=[perm]
        )
        sneaked.append(form["GroupId"])
        return False

    setup.proxy.inject(Fault.DROP, sneak_in)
    setup.proxy.after = setup.record
    capsys.readouterr()
    assert apply(setup.after) == 1
    err = capsys.readouterr().err
    assert sneaked
    assert "(conflict): InvalidPermission.Duplicate" in err
    assert "the cloud changed during the run" in err
    assert "security-group-rule destroyed" in err.split("not done: ")[1]
    setup.proxy.rules.clear()
    assert apply(setup.after) == 0
    setup.check_every_moment(start, setup.allowed())
    converged(setup, capsys)


# The cloud's own refusals: each names its class and a hint that is true of it, and only
# the transient ones promise that the next apply completes the work.
REFUSALS = [
    (
        "CreateSecurityGroup",
        400,
        "SecurityGroupLimitExceeded",
        "(quota)",
        "running again fails the same way: raise it in Service Quotas",
    ),
    (
        "AuthorizeSecurityGroupIngress",
        400,
        "RulesPerSecurityGroupLimitExceeded",
        "(quota)",
        "running again fails the same way",
    ),
    (
        "RevokeSecurityGroupIngress",
        403,
        "UnauthorizedOperation",
        "(permission)",
        "grant the IAM policy in docs/aws.md",
    ),
    (
        "DeleteSecurityGroup",
        400,
        "DependencyViolation",
        "(dependency)",
        "a network interface, or a rule of another group, still uses the security group",
    ),
    (
        "AuthorizeSecurityGroupIngress",
        400,
        "InvalidParameterValue",
        "(invalid)",
        "run with --debug and report it",
    ),
]


@pytest.mark.parametrize(
    ("action", "status", "code", "klass", "hint"),
    REFUSALS,
    ids=[code for _, _, code, _, _ in REFUSALS],
)
def test_a_refusal_names_its_class_and_a_true_hint(
    setup: Setup,
    capsys: pytest.CaptureFixture[str],
    action: str,
    status: int,
    code: str,
    klass: str,
    hint: str,
) -> None:
    assert apply(setup.before) == 0
    setup.proxy.answer(action, status, ec2_error(code), times=99)
    capsys.readouterr()
    assert apply(setup.after) == 1
    err = capsys.readouterr().err
    first = err[err.index("error: ") :].splitlines()[0]
    assert first.startswith(f"error: apply stopped midway: EC2 {action} failed {klass}: {code}")
    assert hint in err
    assert "check credentials" not in err
    assert "once that is fixed, the next apply completes it" in err
    assert "the next apply completes it (it reads" not in err


def test_a_group_name_held_by_another_is_a_name_collision(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    assert apply(setup.before) == 0
    # A group of the name nsgsync will create, without its tags: not nsgsync's.
    setup.ec2.client.create_security_group(
        GroupName="nsgsync-demo-eu-1-batch", Description="a team's", VpcId=setup.ec2.vpc_id
    )
    capsys.readouterr()
    assert apply(setup.after) == 1
    err = capsys.readouterr().err
    assert "EC2 CreateSecurityGroup failed (name-collision): InvalidGroup.Duplicate" in err
    assert "exists in the VPC without nsgsync's tags" in err
