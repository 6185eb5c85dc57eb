"""The Kubernetes API stand-in, through the real client: what the controller relies on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes.client
import kubernetes.watch
import pytest

from tests.fakes.kube_api import KubeApi

POLICY = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "p", "namespace": "shop"},
    "spec": {"podSelector": {}},
}


@pytest.fixture
def api() -> Iterator[KubeApi]:
    with KubeApi(bookmark_interval=0.1) as server:
        yield server


def _events(api: KubeApi, **kwargs: Any) -> list[dict[str, Any]]:
    networking = kubernetes.client.NetworkingV1Api(api.api_client())
    stream = kubernetes.watch.Watch().stream(  # type: ignore[no-untyped-call]
        networking.list_network_policy_for_all_namespaces, timeout_seconds=1, **kwargs
    )
    return [{"type": e["type"], **e["raw_object"]} for e in stream]


def test_a_watch_replays_changes_since_a_version_with_bookmarks(api: KubeApi) -> None:
    version = api.add(POLICY)["metadata"]["resourceVersion"]
    api.add({**POLICY, "spec": {"podSelector": {"matchLabels": {"a": "b"}}}})
    api.delete("NetworkPolicy", "shop", "p")
    events = _events(api, resource_version=version, allow_watch_bookmarks=True)
    assert [e["type"] for e in events[:2]] == ["MODIFIED", "DELETED"]
    assert {e["type"] for e in events[2:]} == {"BOOKMARK"}
    last = int(events[-1]["metadata"]["resourceVersion"])
    assert last >= int(events[1]["metadata"]["resourceVersion"]) > int(version)


def test_a_watch_from_a_compacted_version_is_410_gone(api: KubeApi) -> None:
    version = api.add(POLICY)["metadata"]["resourceVersion"]
    api.compact()
    with pytest.raises(kubernetes.client.ApiException) as failed:
        _events(api, resource_version=version)
    assert failed.value.status == 410


def test_a_lease_update_with_a_stale_version_is_409(api: KubeApi) -> None:
    leases = kubernetes.client.CoordinationV1Api(api.api_client())
    body = kubernetes.client.V1Lease(
        metadata=kubernetes.client.V1ObjectMeta(name="l", namespace="ns"),
        spec=kubernetes.client.V1LeaseSpec(holder_identity="a"),
    )
    created = leases.create_namespaced_lease("ns", body)
    with pytest.raises(kubernetes.client.ApiException) as exists:
        leases.create_namespaced_lease("ns", body)
    assert exists.value.status == 409
    assert created.spec is not None
    created.spec.holder_identity = "b"
    leases.replace_namespaced_lease("l", "ns", created)  # the version read: accepted
    created.spec.holder_identity = "c"
    with pytest.raises(kubernetes.client.ApiException) as conflict:
        leases.replace_namespaced_lease("l", "ns", created)  # stale now
    assert conflict.value.status == 409
    spec = leases.read_namespaced_lease("l", "ns").spec
    assert spec is not None and spec.holder_identity == "b"
