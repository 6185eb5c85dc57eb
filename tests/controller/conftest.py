"""The controller against the Kubernetes API stand-in and moto's EC2 server, in process."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nsgsync.controller import Controller, LeaseConfig, Options
from tests.aws.conftest import Ec2, ec2, moto_endpoint, topology_file
from tests.fakes.kube_api import KubeApi
from tests.test_cluster_source import example_objects

__all__ = ["ec2", "moto_endpoint", "topology_file"]  # the AWS suite's fixtures, reused

# Short enough for a quick suite, long enough for a loaded 2-core machine.
DEBOUNCE = 0.5
LEASE: dict[str, Any] = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.2}


@pytest.fixture
def api() -> Iterator[KubeApi]:
    with KubeApi(bookmark_interval=0.2) as server:
        for obj in example_objects():
            server.add(obj)
        yield server


Make = Callable[..., Controller]


@pytest.fixture
def make_controller(api: KubeApi, topology_file: Path) -> Iterator[Make]:
    made: list[Controller] = []

    def make(identity: str = "a", *, api_client: Any = None, **options: Any) -> Controller:
        settings: dict[str, Any] = {
            "debounce": DEBOUNCE,
            "retry_initial": 0.2,
            "retry_max": 1.0,
            "watch_timeout": 5,
            "address": "127.0.0.1",
            "port": 0,
            "event_interval": 0.0,
            "shutdown_grace": 15.0,
        }
        settings.update(options)
        controller = Controller(
            api_client or api.api_client(),
            Options(
                topology=topology_file,
                lease=LeaseConfig("nsgsync", identity=identity, **LEASE),
                **settings,
            ),
        )
        made.append(controller.start())
        return controller

    yield make
    for controller in made:
        controller.stop()


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll until `condition()` is truthy; generous timeouts, never a speed assertion."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def http_get(controller: Controller, path: str) -> tuple[int, str]:
    assert controller.server is not None
    url = f"http://127.0.0.1:{controller.server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metrics(controller: Controller) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by name and sorted labels."""
    status, text = http_get(controller, "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def ingress_ports(ec2: Ec2, segment: str) -> set[int]:
    groups = ec2.client.describe_security_groups(
        Filters=[{"Name": "tag:nsgsync.io/segment", "Values": [segment]}]
    )["SecurityGroups"]
    if not groups:
        return set()
    rules = ec2.client.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [groups[0]["GroupId"]]}]
    )["SecurityGroupRules"]
    return {r["FromPort"] for r in rules if not r["IsEgress"]}


def owned_groups(ec2: Ec2) -> dict[str, str]:
    """segment -> group id, for every group nsgsync owns for the example cluster."""
    groups = ec2.client.describe_security_groups(
        Filters=[{"Name": "tag:nsgsync.io/cluster", "Values": ["demo-eu-1"]}]
    )["SecurityGroups"]
    return {
        next(t["Value"] for t in g["Tags"] if t["Key"] == "nsgsync.io/segment"): g["GroupId"]
        for g in groups
    }


def db_policy(port: int, name: str = "db-from-monitoring") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "podSelector": {"matchLabels": {"tier": "db"}},
            "ingress": [
                {
                    "from": [{"namespaceSelector": {"matchLabels": {"purpose": "monitoring"}}}],
                    "ports": [{"protocol": "TCP", "port": port}],
                }
            ],
        },
    }


def widened_objects() -> list[dict[str, Any]]:
    """A pod and a policy selecting only it of segment shop-other: a `selector-widened`."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "cache-0", "namespace": "shop", "labels": {"app": "cache"}},
            "spec": {
                "containers": [
                    {
                        "name": "c",
                        "image": "redis",
                        "ports": [{"name": "metrics", "containerPort": 9121}],
                    }
                ]
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "cache-metrics", "namespace": "shop"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "cache"}},
                "ingress": [{"ports": [{"port": "metrics"}]}],
            },
        },
    ]


def ready(controller: Controller) -> bool:
    """Synced and, as the leader, one reconcile succeeded (what /readyz says)."""
    return controller.ready()[0] and controller.elector.is_leader()
