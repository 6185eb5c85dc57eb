"""Throttling: EC2's RequestLimitExceeded is retried by botocore's adaptive mode."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from nsgsync.compile import compile_intent
from nsgsync.engine import make_plan
from nsgsync.provider import configure
from nsgsync.sources import load_manifests, load_topology
from nsgsync_aws.client import make_client
from tests.aws.conftest import REGION, Ec2
from tests.aws.test_aws_cycle import with_vpc
from tests.cycle import EXAMPLE

THROTTLED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
    b"<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>"
    b"</Error></Errors><RequestID>x</RequestID></Response>"
)


class _Raw:
    def stream(self, **_: Any) -> Any:
        yield THROTTLED


def test_request_limit_exceeded_is_retried(ec2: Ec2, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", ec2.endpoint)
    client = make_client(REGION)
    sent: list[str] = []

    def throttle_twice(request: Any, **_: Any) -> AWSResponse | None:
        sent.append(request.url)
        if len(sent) <= 2:
            return AWSResponse(request.url, 503, {}, _Raw())
        return None

    client.meta.events.register("before-send.ec2.*", throttle_twice)
    topology = with_vpc(load_topology(EXAMPLE / "topology.yaml"), ec2.vpc_id)
    intent = compile_intent(topology, load_manifests([EXAMPLE / "cluster"]))
    provider = configure(topology)
    planned = make_plan(provider, intent, session=provider.session(ec2=client))
    assert not planned.plan.empty
    # two throttled attempts of DescribeSecurityGroups, then its success (no group yet,
    # so no DescribeSecurityGroupRules)
    assert len(sent) == 3
