"""`nsgsync run`'s controller: watch, debounce, reconcile, lead, report.

Each test runs real controllers (threads in this process) through the real kubernetes
client against the API stand-in, and the real boto3 client against moto's EC2 server.
Intervals are short (debounce 0.5 s, Lease 3 s); every wait is a generous "within N s".
"""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml

from nsgsync.cli.main import main
from nsgsync.controller.lock import lock_name
from tests.aws.conftest import Ec2
from tests.controller.conftest import (
    DEBOUNCE,
    LEASE,
    Make,
    db_policy,
    http_get,
    ingress_ports,
    metrics,
    owned_groups,
    ready,
    wait_for,
    widened_objects,
)
from tests.fakes.kube_api import KubeApi

ROOT = Path(__file__).parent.parent.parent
EXAMPLE = ROOT / "config/example/cluster"


def test_a_policy_created_changed_and_deleted_reaches_the_cloud(
    api: KubeApi, ec2: Ec2, make_controller: Make
) -> None:
    controller = make_controller()
    wait_for(lambda: ready(controller), "the leader's first reconcile")
    assert set(owned_groups(ec2)) == {
        "shop-frontend",
        "shop-backend",
        "shop-db",
        "shop-other",
        "monitoring",
        "rest",
    }
    assert 9187 not in ingress_ports(ec2, "shop-db")

    api.add(db_policy(9187))
    wait_for(lambda: 9187 in ingress_ports(ec2, "shop-db"), "the new policy's rule")

    api.add(db_policy(9188))  # changed
    wait_for(
        lambda: {9187, 9188} & ingress_ports(ec2, "shop-db") == {9188},
        "the changed policy's rule, and the old one gone",
    )

    api.delete("NetworkPolicy", "shop", "db-from-monitoring")
    wait_for(lambda: 9188 not in ingress_ports(ec2, "shop-db"), "the deleted policy's rule gone")
    assert controller.last_error is None


def test_a_burst_of_changes_gives_a_few_reconciles(
    api: KubeApi, ec2: Ec2, make_controller: Make
) -> None:
    controller = make_controller()
    wait_for(lambda: ready(controller), "the leader's first reconcile")
    before = controller.reconciles
    for i in range(100):
        api.add(db_policy(10000 + i))
    wait_for(
        lambda: 10099 in ingress_ports(ec2, "shop-db") and controller.last_outcome is not None,
        "the burst's last version in the cloud",
    )
    # a few more debounce windows, for trailing reconciles (whose count is checked)
    time.sleep(3 * DEBOUNCE)
    reconciles = controller.reconciles - before
    assert 1 <= reconciles <= 3, reconciles
    ports = ingress_ports(ec2, "shop-db")
    assert {p for p in ports if p >= 10000} == {10099}


def test_a_dropped_watch_and_a_410_miss_no_change(
    api: KubeApi, ec2: Ec2, make_controller: Make
) -> None:
    controller = make_controller()
    wait_for(lambda: ready(controller), "the leader's first reconcile")
    policies = next(i for i in controller.cache.informers if i.listed.kind == "NetworkPolicy")
    relists = policies.relists

    # The connection breaks; the change happens while the informer waits to reconnect,
    # and is replayed by the new watch from the last resourceVersion seen.
    api.drop_watches()
    api.add(db_policy(9187))
    wait_for(lambda: 9187 in ingress_ports(ec2, "shop-db"), "the change made while cut off")
    assert policies.relists == relists  # resumed, not listed again

    # The server forgets the versions (410 Gone): the informer lists again.
    api.compact()
    api.add(db_policy(9188))
    wait_for(lambda: {9187, 9188} & ingress_ports(ec2, "shop-db") == {9188}, "after the 410")
    api.drop_watches()
    api.compact()
    api.delete("NetworkPolicy", "shop", "db-from-monitoring")
    wait_for(lambda: 9188 not in ingress_ports(ec2, "shop-db"), "the deletion after a relist")
    assert policies.relists > relists


def test_one_leader_writes_and_the_other_takes_over(
    api: KubeApi, ec2: Ec2, make_controller: Make
) -> None:
    first = make_controller("first")
    wait_for(lambda: ready(first), "the first replica leads and reconciles")
    second = make_controller("second")
    wait_for(lambda: second.ready()[0], "the follower's caches synced")
    assert http_get(second, "/readyz") == (200, "ok (follower)\n")
    assert api.must("Lease", "nsgsync", "nsgsync")["spec"]["holderIdentity"] == "first"

    api.add(db_policy(9187))
    wait_for(lambda: 9187 in ingress_ports(ec2, "shop-db"), "the leader applied the change")
    assert second.reconciles == 0
    assert metrics(second)[("nsgsync_leader", ())] == 0
    assert metrics(second)[("nsgsync_reconciles_total", (("outcome", "applied"),))] == 0

    first.stop()
    lease = api.must("Lease", "nsgsync", "nsgsync")["spec"]
    # released on stop (and maybe already taken by the follower)
    assert lease.get("holderIdentity") in (None, "second")
    wait_for(second.elector.is_leader, "the follower leads", timeout=LEASE["lease_duration"] * 3)
    api.add(db_policy(9188))
    wait_for(lambda: 9188 in ingress_ports(ec2, "shop-db"), "the new leader applied a change")
    assert api.must("Lease", "nsgsync", "nsgsync")["spec"]["holderIdentity"] == "second"
    assert api.must("Lease", "nsgsync", "nsgsync")["spec"]["leaseTransitions"] == 1


def test_an_unreachable_api_server_writes_nothing_and_is_not_ready(
    ec2: Ec2, make_controller: Make
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    client = kubernetes.client.ApiClient(
        kubernetes.client.Configuration(host=f"http://127.0.0.1:{port}")
    )
    controller = make_controller(api_client=client)
    # Long enough for several list attempts and Lease tries.
    wait_for(lambda: all(i._backoff.failures >= 2 for i in controller.cache.informers), "retries")
    status, body = http_get(controller, "/readyz")
    assert status == 503 and "not synced" in body
    assert http_get(controller, "/healthz")[0] == 200
    assert controller.reconciles == 0
    assert owned_groups(ec2) == {}


def test_a_watch_that_never_synced_is_not_no_policies(
    api: KubeApi, ec2: Ec2, make_controller: Make
) -> None:
    api.fail_next(10_000, status=403, match="networkpolicies")
    controller = make_controller()
    wait_for(controller.elector.is_leader, "leads (the Lease is reachable)")
    wait_for(lambda: "networkpolicies" in http_get(controller, "/readyz")[1], "unsynced policies")
    assert controller.reconciles == 0
    assert owned_groups(ec2) == {}


def test_stop_mid_reconcile_releases_the_lease_and_a_rerun_converges(
    api: KubeApi,
    ec2: Ec2,
    make_controller: Make,
    topology_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    controller = make_controller("first")

    class StopOnFirstWrite(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("+ authorizing"):
                controller.request_stop()  # what the SIGTERM handler calls

    handler = StopOnFirstWrite()
    logging.getLogger("nsgsync.controller").addHandler(handler)
    logging.getLogger("nsgsync.controller").setLevel(logging.INFO)
    try:
        wait_for(controller.wait, "the stop request")
        controller.stop()
    finally:
        logging.getLogger("nsgsync.controller").removeHandler(handler)
    samples = controller.metrics.registry
    assert samples.get_sample_value("nsgsync_reconciles_total", {"outcome": "abandoned"}) == 1
    assert "holderIdentity" not in api.must("Lease", "nsgsync", "nsgsync")["spec"]
    # the abandoned apply wrote some of its changes, not all
    args = ["-f", str(EXAMPLE), "--topology", str(topology_file), "--detailed-exitcode"]
    args.append("--namespaces-complete")  # as the watched cluster is
    assert main(["plan", *args]) == 2
    capsys.readouterr()

    rerun = make_controller("second")
    wait_for(lambda: ready(rerun), "the rerun's reconcile")
    assert main(["plan", *args]) == 0
    assert "No changes." in capsys.readouterr().out


def test_metrics_and_events_after_a_scenario(api: KubeApi, ec2: Ec2, make_controller: Make) -> None:
    controller = make_controller("first", resync=1.0)
    wait_for(lambda: ready(controller), "the leader's first reconcile")
    # A policy selecting some of segment shop-other's pods: the cloud widens it.
    for obj in widened_objects():
        api.add(obj)
    wait_for(lambda: 9121 in ingress_ports(ec2, "shop-other"), "the widened rule")

    def event() -> dict[str, Any] | None:
        found = [
            e for e in api.objects("Event", "shop") if e["regarding"]["name"] == "cache-metrics"
        ]
        assert len(found) <= 1, found  # aggregated: never a second Event
        return found[0] if found else None

    first = wait_for(event, "the Event on the policy")
    assert first["reason"] == "SelectorWidened"
    assert first["type"] == "Warning"
    assert first["reportingController"] == "nsgsync.io/controller"
    assert first["reportingInstance"] == "first"
    policy = api.must("NetworkPolicy", "shop", "cache-metrics")
    assert first["regarding"]["uid"] == policy["metadata"]["uid"]
    assert "selects only some pods of segment shop-other" in first["note"]
    # Resyncs (every second here) observe the finding again: the same Event counts up.
    wait_for(lambda: (event() or {}).get("series", {}).get("count", 0) >= 2, "the series")

    # Drift: a rule removed by hand is put back by the next resync.
    gid = owned_groups(ec2)["shop-other"]
    rules = ec2.client.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [gid]}]
    )["SecurityGroupRules"]
    by_hand = next(r for r in rules if not r["IsEgress"] and r["FromPort"] == 9121)
    ec2.client.revoke_security_group_ingress(
        GroupId=gid, SecurityGroupRuleIds=[by_hand["SecurityGroupRuleId"]]
    )
    wait_for(lambda: 9121 in ingress_ports(ec2, "shop-other"), "the drift reverted")

    drift = ("nsgsync_drift_reverted_total", (("type", "security-group-rule"),))
    wait_for(lambda: metrics(controller).get(drift), "the drift metric")
    m = metrics(controller)
    assert m[("nsgsync_leader", ())] == 1
    assert m[("nsgsync_reconciles_total", (("outcome", "applied"),))] >= 3
    assert m[("nsgsync_reconciles_total", (("outcome", "unchanged"),))] >= 1
    assert m[("nsgsync_reconciles_total", (("outcome", "failed"),))] == 0
    assert m[("nsgsync_cloud_changes_total", (("op", "add"), ("type", "security-group")))] == 6
    assert m[("nsgsync_findings", (("code", "selector-widened"), ("severity", "warning")))] == 1
    assert m[("nsgsync_last_successful_reconcile_timestamp_seconds", ())] > 0
    assert m[("nsgsync_reconcile_duration_seconds_count", ())] >= 4
    groups = ec2.client.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [owned_groups(ec2)["shop-db"]]}]
    )["SecurityGroupRules"]
    owned = (("segment", "shop-db"), ("type", "security-group-rule"))
    assert m[("nsgsync_owned_resources", owned)] == len(groups)


def test_attachments_follow_the_segments(
    api: KubeApi,
    ec2: Ec2,
    make_controller: Make,
    topology_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="nsgsync.controller")
    controller = make_controller(apply_attachments=True)
    wait_for(lambda: ready(controller), "the leader's first reconcile")
    groups = owned_groups(ec2)
    sgp = api.must("SecurityGroupPolicy", "monitoring", "nsgsync-monitoring")
    assert sgp is not None
    assert sgp["spec"]["securityGroups"]["groupIds"] == [groups["monitoring"]]
    assert api.get("SecurityGroupPolicy", "shop", "nsgsync-shop-db") is not None

    # The monitoring segment goes away: its namespace falls to the catch-all segment.
    doc = yaml.safe_load(topology_file.read_text())
    doc["segments"] = [s for s in doc["segments"] if s["name"] != "monitoring"]
    topology_file.write_text(yaml.safe_dump(doc))
    api.add(db_policy(9187))  # any change triggers a reconcile (the topology is re-read)
    rest = wait_for(
        lambda: api.get("SecurityGroupPolicy", "monitoring", "nsgsync-rest"),
        "the catch-all segment's object in monitoring",
    )
    assert rest["spec"]["securityGroups"]["groupIds"] == [groups["rest"]]
    assert "monitoring" not in owned_groups(ec2)
    assert api.get("SecurityGroupPolicy", "monitoring", "nsgsync-monitoring") is None
    # The stale object went before its group did.
    messages = [r.getMessage() for r in caplog.records]
    deleted_sgp = next(
        i for i, m in enumerate(messages) if m.startswith("securitygrouppolicy") and "deleted" in m
    )
    deleted_group = next(
        i for i, m in enumerate(messages) if m.startswith("- deleting security group")
    )
    assert deleted_sgp < deleted_group
    deletes = [c.path.rsplit("/", 1)[-1] for c in api.calls if c.method == "DELETE"]
    assert deletes == ["nsgsync-monitoring"]


def test_a_lease_left_by_a_crashed_leader_is_taken_once_it_expires(
    api: KubeApi, ec2: Ec2, make_controller: Make
) -> None:
    # A leader that died without releasing: its Lease stays until not renewed for a
    # lease duration, measured on the taker's clock from when it first saw the record.
    api.add(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "nsgsync", "namespace": "nsgsync"},
            "spec": {
                "holderIdentity": "crashed",
                "leaseDurationSeconds": 3,
                "renewTime": "2026-01-01T00:00:00.000000Z",
                "leaseTransitions": 4,
            },
        }
    )
    controller = make_controller("next")
    wait_for(lambda: controller.ready()[0], "synced, as a follower")
    assert not controller.elector.is_leader()
    assert owned_groups(ec2) == {}  # no write while the Lease may still be the other's
    wait_for(controller.elector.is_leader, "took the Lease over", timeout=3 * 3)
    lease = api.must("Lease", "nsgsync", "nsgsync")["spec"]
    assert lease["holderIdentity"] == "next" and lease["leaseTransitions"] == 5
    wait_for(lambda: "shop-db" in owned_groups(ec2), "the new leader reconciled")


def test_a_failed_or_refused_reconcile_keeps_the_last_good_state(
    api: KubeApi, ec2: Ec2, make_controller: Make
) -> None:
    controller = make_controller(max_deletions=0)
    wait_for(lambda: ready(controller), "the leader's first reconcile")
    good = ingress_ports(ec2, "shop-db")
    assert 5432 in good

    # A policy the API server took but nsgsync cannot read: the reconcile fails, retries.
    broken = db_policy(9187)
    broken["spec"]["ingress"][0]["ports"][0]["protocol"] = "ICMP"
    api.add(broken)
    wait_for(
        lambda: (
            controller.metrics.registry.get_sample_value(
                "nsgsync_reconciles_total", {"outcome": "failed"}
            )
            >= 2
        ),
        "failed, then failed again on retry",
    )
    assert "db-from-monitoring" in (controller.last_error or "")
    assert ingress_ports(ec2, "shop-db") == good
    assert http_get(controller, "/readyz")[0] == 200  # still ready: the last good state holds

    # Fixed: the next retry applies it.
    api.add(db_policy(9187))
    wait_for(lambda: 9187 in ingress_ports(ec2, "shop-db"), "applied once fixed")

    # A deletion beyond --max-deletions 0 is refused, and the rules stay.
    api.delete("NetworkPolicy", "shop", "db-from-monitoring")
    wait_for(
        lambda: controller.metrics.registry.get_sample_value(
            "nsgsync_reconciles_total", {"outcome": "refused"}
        ),
        "refused by the guardrail",
    )
    assert "--max-deletions" in (controller.last_error or "")
    assert 9187 in ingress_ports(ec2, "shop-db")


def test_events_are_not_rewritten_within_the_event_interval(
    api: KubeApi, ec2: Ec2, make_controller: Make
) -> None:
    for obj in widened_objects():
        api.add(obj)
    controller = make_controller(resync=0.3, event_interval=600.0)
    wait_for(lambda: ready(controller), "the leader's first reconcile")
    wait_for(lambda: controller.reconciles >= 4, "several resyncs")
    events = api.objects("Event", "shop")
    (event,) = [e for e in events if e["regarding"]["name"] == "cache-metrics"]
    assert "series" not in event  # observed again each resync, written once
    writes = [c for c in api.calls if "/events" in c.path and c.method != "GET"]
    assert [c.method for c in writes] == ["POST"]


def test_a_policy_kind_nsgsync_does_not_compile_stops_reconciles_until_gone(
    api: KubeApi, ec2: Ec2, make_controller: Make
) -> None:
    controller = make_controller()
    wait_for(lambda: ready(controller), "the leader's first reconcile")
    antrea = {
        "apiVersion": "crd.antrea.io/v1beta1",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "allow-more"},
        "spec": {"priority": 5, "appliedTo": [{"namespaceSelector": {}}], "ingress": []},
    }
    api.add(antrea)  # it may allow what the NetworkPolicies deny: nsgsync must not guess
    api.add(db_policy(9187))
    wait_for(lambda: "allow-more" in (controller.last_error or ""), "refused to compile")
    assert 9187 not in ingress_ports(ec2, "shop-db")  # the last good state holds
    api.delete("ClusterNetworkPolicy.crd.antrea.io", "", "allow-more")
    wait_for(lambda: 9187 in ingress_ports(ec2, "shop-db"), "reconciled once it is gone")


def test_a_cilium_policy_is_watched_and_compiled(
    api: KubeApi, ec2: Ec2, make_controller: Make
) -> None:
    controller = make_controller()
    wait_for(lambda: ready(controller), "the leader's first reconcile")
    api.add(db_policy(9187))
    wait_for(lambda: 9187 in ingress_ports(ec2, "shop-db"), "the NetworkPolicy applied")
    cilium = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "allow-more", "namespace": "shop"},
        "spec": {
            "endpointSelector": {},
            "ingress": [{"toPorts": [{"ports": [{"port": "7777", "protocol": "TCP"}]}]}],
        },
    }
    api.add(cilium)  # Cilium adds its allow beside the NetworkPolicy's
    wait_for(lambda: 7777 in ingress_ports(ec2, "shop-db"), "the Cilium allow applied")
    assert 9187 in ingress_ports(ec2, "shop-db")
    api.delete("CiliumNetworkPolicy", "shop", "allow-more")
    wait_for(lambda: 7777 not in ingress_ports(ec2, "shop-db"), "gone once deleted")


def test_a_leader_that_cannot_renew_stops_writing_until_it_leads_again(
    api: KubeApi, ec2: Ec2, make_controller: Make
) -> None:
    controller = make_controller()
    wait_for(lambda: ready(controller), "the leader's first reconcile")
    # The Lease cannot be renewed for a while (about 30 tries at 0.2 s): past the renew
    # deadline (2 s), the replica must stop leading, and writing.
    api.fail_next(30, status=500, match="/leases/")
    wait_for(lambda: not controller.elector.is_leader(), "leadership lost")
    wait_for(lambda: metrics(controller)[("nsgsync_leader", ())] == 0, "the leader metric")
    api.add(db_policy(9187))
    time.sleep(4 * DEBOUNCE)  # several debounce windows with a change pending
    assert 9187 not in ingress_ports(ec2, "shop-db")
    wait_for(controller.elector.is_leader, "leading again once the Lease answers")
    wait_for(lambda: 9187 in ingress_ports(ec2, "shop-db"), "the pending change applied")


def test_a_removed_segments_group_retires_and_its_attachment_goes_after_the_replacement(
    api: KubeApi, ec2: Ec2, make_controller: Make, topology_file: Path
) -> None:
    controller = make_controller(apply_attachments=True)
    wait_for(lambda: ready(controller), "the leader's first reconcile")
    groups = owned_groups(ec2)
    subnet = ec2.client.create_subnet(VpcId=ec2.vpc_id, CidrBlock="10.0.8.0/24")["Subnet"]
    eni = ec2.client.create_network_interface(
        SubnetId=subnet["SubnetId"], Groups=[groups["monitoring"]]
    )["NetworkInterface"]["NetworkInterfaceId"]

    # The monitoring segment goes away while an interface still uses its group.
    doc = yaml.safe_load(topology_file.read_text())
    doc["segments"] = [s for s in doc["segments"] if s["name"] != "monitoring"]
    topology_file.write_text(yaml.safe_dump(doc))
    api.add(db_policy(9187))
    wait_for(
        lambda: api.get("SecurityGroupPolicy", "monitoring", "nsgsync-rest"),
        "the catch-all segment's object in monitoring",
    )
    # Pods starting from now on get the catch-all's group alone, so the old one can drain;
    # the group itself stays, rules and all, while the interface uses it.
    wait_for(
        lambda: api.get("SecurityGroupPolicy", "monitoring", "nsgsync-monitoring") is None,
        "the stale object deleted once its replacement exists",
    )
    assert owned_groups(ec2)["monitoring"] == groups["monitoring"]

    # The interface moves: the next reconcile deletes the group.
    ec2.client.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=[groups["rest"]])
    api.add(db_policy(9188))
    wait_for(lambda: "monitoring" not in owned_groups(ec2), "the retired group deleted")


def test_a_reconcile_waits_for_an_apply_holding_the_lock_then_completes(
    api: KubeApi, ec2: Ec2, make_controller: Make, topology_file: Path
) -> None:
    # A `nsgsync apply` run by hand holds the lock of this cluster and provider.
    cluster = yaml.safe_load(topology_file.read_text())["cluster"]
    name = lock_name(cluster, "aws")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    held: dict[str, Any] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "nsgsync"},
        "spec": {
            "holderIdentity": "laptop/1/alice",
            "leaseDurationSeconds": 3600,
            "acquireTime": now,
            "renewTime": now,
        },
    }
    api.add(held)
    controller = make_controller()
    wait_for(
        lambda: "held by laptop/1/alice" in (controller.last_error or ""), "refused by the lock"
    )
    assert not ingress_ports(ec2, "shop-db")  # nothing written while the apply held the lock
    # The apply is done and releases the Lease: the next retry reconciles.
    held["spec"]["holderIdentity"] = None
    api.add(held)
    wait_for(lambda: ingress_ports(ec2, "shop-db"), "reconciled once released")
    wait_for(
        lambda: not api.must("Lease", "nsgsync", name)["spec"].get("holderIdentity"),
        "the lock released after the reconcile",
    )


def test_admin_network_policies_are_watched_and_compiled(
    api: KubeApi, ec2: Ec2, make_controller: Make
) -> None:
    controller = make_controller()
    wait_for(lambda: ready(controller), "the leader's first reconcile")
    assert 9300 not in ingress_ports(ec2, "shop-db")
    api.add(
        {
            "apiVersion": "policy.networking.k8s.io/v1alpha1",
            "kind": "AdminNetworkPolicy",
            "metadata": {"name": "scrape-db"},
            "spec": {
                "priority": 5,
                "subject": {
                    "pods": {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "shop"}
                        },
                        "podSelector": {"matchLabels": {"tier": "db"}},
                    }
                },
                "ingress": [
                    {
                        "action": "Allow",
                        "from": [{"namespaces": {"matchLabels": {"purpose": "monitoring"}}}],
                        "ports": [{"portNumber": {"protocol": "TCP", "port": 9300}}],
                    }
                ],
            },
        }
    )
    wait_for(lambda: 9300 in ingress_ports(ec2, "shop-db"), "the admin policy in the cloud")
    api.delete("AdminNetworkPolicy", "", "scrape-db")
    wait_for(lambda: 9300 not in ingress_ports(ec2, "shop-db"), "and gone with it")


def test_calico_policies_are_watched_and_compiled(
    api: KubeApi, ec2: Ec2, make_controller: Make
) -> None:
    controller = make_controller()
    wait_for(lambda: ready(controller), "the leader's first reconcile")
    assert 9400 not in ingress_ports(ec2, "shop-db")
    api.add(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "scrape-db"},
            "spec": {
                "order": 10,
                "selector": "tier == 'db'",
                "ingress": [
                    {"action": "Allow", "protocol": "TCP", "destination": {"ports": [9400]}}
                ],
            },
        }
    )
    wait_for(lambda: 9400 in ingress_ports(ec2, "shop-db"), "the Calico policy in the cloud")
    api.delete("GlobalNetworkPolicy", "", "scrape-db")
    wait_for(lambda: 9400 not in ingress_ports(ec2, "shop-db"), "and gone with it")
