"""A saved plan is made again on apply from its own desired state and the cloud, and refused
unless its changes are those: an entry edited in the file never reaches the cloud."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nsgsync.cli.main import main
from tests.aws.conftest import Ec2
from tests.aws.test_aws_cli import args


def cloud(ec2: Ec2) -> tuple[Any, Any]:
    """Every group and rule of the VPC, owned or not."""
    groups = ec2.client.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [ec2.vpc_id]}]
    )["SecurityGroups"]
    ids = [g["GroupId"] for g in groups]
    rules = ec2.client.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": ids}], MaxResults=1000
    )["SecurityGroupRules"]
    return (
        sorted(json.dumps(g, sort_keys=True, default=str) for g in groups),
        sorted(json.dumps(r, sort_keys=True, default=str) for r in rules),
    )


def apply_saved(topology: Path, saved: Path) -> int:
    return main(["apply", "--topology", str(topology), "--auto-approve", str(saved)])


def test_an_edited_destroy_of_a_foreign_group_is_refused(
    ec2: Ec2, topology_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apply", *args(topology_file, "--auto-approve")]) == 0
    foreign = ec2.client.create_security_group(
        GroupName="team-db", Description="another team's", VpcId=ec2.vpc_id
    )["GroupId"]
    saved = tmp_path / "plan.json"
    assert main(["plan", *args(topology_file, "--save-plan", str(saved))]) == 0
    doc = json.loads(saved.read_text())
    assert doc["changes"] == []
    doc["changes"].append(
        {
            "op": "destroy",
            "type": "security-group",
            "key": "sg/team-db",
            "segment": "shop-db",
            "id": foreign,
            "before": {
                "GroupName": "team-db",
                "VpcId": ec2.vpc_id,
                "Description": "another team's",
                "Tags": [],
            },
            "after": None,
        }
    )
    doc["summary"]["destroy"] = 1
    saved.write_text(json.dumps(doc))
    before = cloud(ec2)
    capsys.readouterr()
    assert apply_saved(topology_file, saved) == 1
    err = capsys.readouterr().err
    assert "changes[0]" in err and "destroy security-group 'sg/team-db'" in err
    assert "nothing was applied" in err
    assert cloud(ec2) == before


def test_an_edited_rule_is_refused(
    ec2: Ec2, topology_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apply", *args(topology_file, "--auto-approve")]) == 0
    # One rule revoked by hand: the plan adds it back.
    rule = next(
        r
        for r in ec2.client.describe_security_group_rules(MaxResults=1000)["SecurityGroupRules"]
        if r.get("CidrIpv4") == "10.0.2.0/24" and not r["IsEgress"]
    )
    ec2.client.revoke_security_group_ingress(
        GroupId=rule["GroupId"], SecurityGroupRuleIds=[rule["SecurityGroupRuleId"]]
    )
    saved = tmp_path / "plan.json"
    assert main(["plan", *args(topology_file, "--save-plan", str(saved))]) == 0
    doc = json.loads(saved.read_text())
    adds = [i for i, c in enumerate(doc["changes"]) if c["op"] == "add"]
    assert len(adds) == 1
    doc["changes"][adds[0]]["after"]["CidrIpv4"] = "0.0.0.0/0"
    saved.write_text(json.dumps(doc))
    before = cloud(ec2)
    capsys.readouterr()
    assert apply_saved(topology_file, saved) == 1
    err = capsys.readouterr().err
    assert f"changes[{adds[0]}]" in err and "add security-group-rule" in err
    assert cloud(ec2) == before

    # The plan as saved applies, and converges.
    assert main(["plan", *args(topology_file, "--save-plan", str(saved))]) == 0
    assert apply_saved(topology_file, saved) == 0
    assert main(["plan", *args(topology_file, "--detailed-exitcode")]) == 0


def test_a_saved_plan_missing_a_change_is_refused(
    ec2: Ec2, topology_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "plan.json"
    assert main(["plan", *args(topology_file, "--save-plan", str(saved))]) == 0
    doc = json.loads(saved.read_text())
    doc["changes"] = doc["changes"][1:]  # an entry removed: the rest would leave a gap
    saved.write_text(json.dumps(doc))
    before = cloud(ec2)
    capsys.readouterr()
    assert apply_saved(topology_file, saved) == 1
    assert "lacks 1 change" in capsys.readouterr().err
    assert cloud(ec2) == before
