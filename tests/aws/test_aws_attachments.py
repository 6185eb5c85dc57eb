"""How groups reach pods: SecurityGroupPolicy objects, applied with --apply-attachments."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nsgsync.cli.main import main
from nsgsync.sources import load_manifests, load_topology
from nsgsync_aws.attach import security_group_policies
from tests.aws.conftest import Ec2
from tests.aws.test_aws_cli import args
from tests.fakes.kube_api import KubeApi
from tests.test_cluster_source import TOKEN, write_kubeconfig

EXAMPLE = Path(__file__).parent.parent.parent / "config/example"


def test_later_segments_exclude_earlier_ones() -> None:
    topology = load_topology(EXAMPLE / "topology.yaml")
    inventory = load_manifests([EXAMPLE / "cluster"])
    docs, findings = security_group_policies(topology, inventory.namespaces, {})
    other = next(d for d in docs if d["metadata"]["name"] == "nsgsync-shop-other")
    # shop-other is "the rest of shop": pods of the three tier segments are not its pods
    assert other["spec"]["podSelector"] == {
        "matchExpressions": [
            {"key": "tier", "operator": "NotIn", "values": ["frontend"]},
            {"key": "tier", "operator": "NotIn", "values": ["backend"]},
            {"key": "tier", "operator": "NotIn", "values": ["db"]},
        ]
    }
    # the catch-all segment has one object per namespace it covers
    rest = sorted(
        d["metadata"]["namespace"] for d in docs if d["metadata"]["name"] == "nsgsync-rest"
    )
    # (monitoring and shop are taken whole by earlier segments: no object there)
    assert rest == ["kube-system"]
    assert findings == []


def test_apply_attachments_gives_each_segment_its_group(
    ec2: Ec2,
    topology_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with KubeApi(token=TOKEN) as api:
        kubeconfig = write_kubeconfig(tmp_path, api)
        argv = ["apply", *args(topology_file, "--auto-approve", "--apply-attachments")]
        assert main([*argv, "--kubeconfig", str(kubeconfig)]) == 0
        out = capsys.readouterr().out
        assert "securitygrouppolicy.vpcresources.k8s.aws/nsgsync-shop-db created" in out
        sgp = api.get("SecurityGroupPolicy", "shop", "nsgsync-shop-db")
    assert sgp is not None
    groups = ec2.client.describe_security_groups(
        Filters=[{"Name": "tag:nsgsync.io/segment", "Values": ["shop-db"]}]
    )["SecurityGroups"]
    assert sgp["spec"]["securityGroups"]["groupIds"] == [groups[0]["GroupId"]]
    assert sgp["spec"]["podSelector"] == {"matchLabels": {"tier": "db"}}


def test_export_attachments_prints_the_groups_ids(
    ec2: Ec2, topology_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apply", *args(topology_file, "--auto-approve")]) == 0
    capsys.readouterr()
    assert main(["export", "attachments", *args(topology_file)]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    ids = {
        g["GroupId"]
        for g in ec2.client.describe_security_groups(
            Filters=[{"Name": "tag:nsgsync.io/cluster", "Values": ["demo-eu-1"]}]
        )["SecurityGroups"]
    }
    assert {d["kind"] for d in docs} == {"SecurityGroupPolicy"}
    assert {d["spec"]["securityGroups"]["groupIds"][0] for d in docs} <= ids
    assert len(docs) == 6  # five namespaced segments and the catch-all in kube-system


def test_a_renamed_segments_old_attachment_goes_once_its_replacement_exists(
    ec2: Ec2,
    topology_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with KubeApi(token=TOKEN) as api:
        kubeconfig = write_kubeconfig(tmp_path, api)
        argv = [
            "apply",
            *args(topology_file, "--auto-approve", "--apply-attachments"),
            "--kubeconfig",
            str(kubeconfig),
        ]
        assert main(argv) == 0
        old = ec2.client.describe_security_groups(
            Filters=[{"Name": "tag:nsgsync.io/segment", "Values": ["shop-db"]}]
        )["SecurityGroups"][0]["GroupId"]
        subnet = ec2.client.create_subnet(VpcId=ec2.vpc_id, CidrBlock="10.0.3.0/24")["Subnet"]
        eni = ec2.client.create_network_interface(
            SubnetId=subnet["SubnetId"], PrivateIpAddress="10.0.3.10", Groups=[old]
        )["NetworkInterface"]["NetworkInterfaceId"]
        topology_file.write_text(topology_file.read_text().replace("shop-db", "shop-database"))
        capsys.readouterr()

        assert main(argv) == 0
        out = capsys.readouterr().out
        assert f"sg/shop-db (segment shop-db) [{old}] is retiring: 1 network interfaces" in out
        # The old object goes only after the one pointing at the new group is applied:
        # pods that start from now on get the new group alone, so the old one drains,
        # while the running pod's interface keeps the old group and its rules.
        created = out.index("nsgsync-shop-database created")
        assert (
            out.index("securitygrouppolicy.vpcresources.k8s.aws/nsgsync-shop-db deleted") > created
        )
        new = api.must("SecurityGroupPolicy", "shop", "nsgsync-shop-database")
        assert new["spec"]["securityGroups"]["groupIds"] != [old]
        assert api.get("SecurityGroupPolicy", "shop", "nsgsync-shop-db") is None
        kept = ec2.client.describe_security_groups(GroupIds=[old])["SecurityGroups"][0]
        assert kept["IpPermissions"], "the retiring group keeps its rules"

        ec2.client.modify_network_interface_attribute(
            NetworkInterfaceId=eni, Groups=new["spec"]["securityGroups"]["groupIds"]
        )
        assert main(argv) == 0
        assert api.get("SecurityGroupPolicy", "shop", "nsgsync-shop-database") is not None
    groups = ec2.client.describe_security_groups(Filters=[{"Name": "group-id", "Values": [old]}])
    assert groups["SecurityGroups"] == []
