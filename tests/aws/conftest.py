"""A local EC2 API: moto's server on loopback, reached by boto3 over HTTP."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
import yaml
from botocore.config import Config
from moto.server import ThreadedMotoServer

REGION = "eu-west-1"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class Ec2:
    endpoint: str
    client: Any
    vpc_id: str
    calls: Counter[str] = field(default_factory=Counter)

    def writes(self) -> int:
        return sum(n for op, n in self.calls.items() if not op.startswith("Describe"))

    def reads(self) -> int:
        return sum(n for op, n in self.calls.items() if op.startswith("Describe"))


@pytest.fixture
def ec2(moto_endpoint: str) -> Ec2:
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10)
    client = boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "adaptive", "max_attempts": 3}),
    )
    vpc_id = client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2 = Ec2(moto_endpoint, client, vpc_id)

    def count(event_name: str, **_: Any) -> None:
        ec2.calls[event_name.rsplit(".", 1)[-1]] += 1

    client.meta.events.register("before-call.ec2.*", count)
    return ec2


EXAMPLE = Path(__file__).parent.parent.parent / "config/example"


@pytest.fixture
def topology_file(ec2: Ec2, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AWS_ENDPOINT_URL", ec2.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    doc = yaml.safe_load((EXAMPLE / "topology.yaml").read_text())
    doc["aws"]["vpcId"] = ec2.vpc_id
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path
