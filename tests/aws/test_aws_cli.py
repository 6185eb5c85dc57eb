"""`nsgsync plan` and `nsgsync apply` as a user runs them, against moto's EC2 server.

boto3 finds the local EC2 API through AWS_ENDPOINT_URL, as it would a real endpoint.
"""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pytest

from nsgsync.cli.main import main
from tests.aws.conftest import Ec2

ROOT = Path(__file__).parent.parent.parent
EXAMPLE = ROOT / "config/example"


def args(topology: Path, *extra: str, files: Path = EXAMPLE / "cluster") -> list[str]:
    return ["-f", str(files), "--topology", str(topology), *extra]


def test_plan_apply_replan(topology_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", *args(topology_file, "--detailed-exitcode")]) == 2
    out = capsys.readouterr().out
    assert '+ security-group "sg/shop-db"' in out
    assert "Plan: " in out and "to add, 0 to change, 0 to destroy." in out

    assert main(["apply", *args(topology_file, "--auto-approve")]) == 0
    assert "Apply complete!" in capsys.readouterr().out

    assert main(["plan", *args(topology_file, "--detailed-exitcode")]) == 0
    assert "No changes." in capsys.readouterr().out


def test_plan_json_is_the_plan_contract(
    topology_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", *args(topology_file, "-o", "json")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "Plan"
    assert doc["provider"] == "aws"
    assert doc["summary"]["add"] == len(doc["changes"]) == len(doc["desired"])
    rule = next(d for d in doc["desired"] if d["key"].startswith("sgr/shop-db/in/tcp/5432"))
    assert rule["body"]["CidrIpv4"] == "10.0.2.0/24"
    assert rule["body"]["Description"] == "shop/db-allow-backend rule 0 peer 0"


def test_apply_asks_for_confirmation(
    topology_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apply", *args(topology_file)]) == 1
    assert "--auto-approve" in capsys.readouterr().err


def test_saved_plan_is_refused_when_the_cloud_changed(
    topology_file: Path, tmp_path: Path, ec2: Ec2, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "plan.json"
    assert main(["plan", *args(topology_file, "--save-plan", str(saved))]) == 0
    ec2.client.create_security_group(
        GroupName="sneaky",
        Description="x",
        VpcId=ec2.vpc_id,
        TagSpecifications=[
            {
                "ResourceType": "security-group",
                "Tags": [
                    {"Key": "nsgsync.io/cluster", "Value": "demo-eu-1"},
                    {"Key": "nsgsync.io/segment", "Value": "sneaky"},
                ],
            }
        ],
    )
    capsys.readouterr()
    assert main(["apply", "--topology", str(topology_file), "--auto-approve", str(saved)]) == 1
    assert "changed since this plan was saved" in capsys.readouterr().err


def test_saved_plan_applies_exactly(
    topology_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "plan.json"
    assert main(["plan", *args(topology_file, "--save-plan", str(saved))]) == 0
    assert main(["apply", "--topology", str(topology_file), "--auto-approve", str(saved)]) == 0
    capsys.readouterr()
    assert main(["plan", *args(topology_file, "--detailed-exitcode")]) == 0


def test_guardrails(
    topology_file: Path, tmp_path: Path, ec2: Ec2, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apply", *args(topology_file, "--auto-approve")]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    capsys.readouterr()
    ec2.calls.clear()
    # an empty policy source (a wrong path?) would open every segment: refused
    assert main(["apply", *args(topology_file, "--auto-approve", files=empty)]) == 1
    assert "no NetworkPolicy was read" in capsys.readouterr().err
    assert ec2.writes() == 0
    # a policy removed: more deletions than allowed are refused
    fewer = tmp_path / "fewer"
    fewer.mkdir()
    for name in ("namespaces.yaml", "workloads.yaml"):
        (fewer / name).write_text((EXAMPLE / "cluster" / name).read_text())
    policies = (EXAMPLE / "cluster/policies.yaml").read_text().split("---")
    (fewer / "policies.yaml").write_text("---".join(p for p in policies if "allow-dns" not in p))
    assert (
        main(["apply", *args(topology_file, "--auto-approve", "--max-deletions", "1", files=fewer)])
        == 1
    )
    assert "more than --max-deletions 1" in capsys.readouterr().err
    assert ec2.writes() == 0
    assert main(["apply", *args(topology_file, "--auto-approve", files=fewer)]) == 0


def test_offline_plan_needs_no_aws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    topology = EXAMPLE / "topology.yaml"
    assert main(["plan", *args(topology, "--offline", "--detailed-exitcode")]) == 2
    assert "offline" in capsys.readouterr().out


def test_destroy_plans_asks_and_removes_everything_nsgsync_owns(
    topology_file: Path, ec2: Ec2, capsys: pytest.CaptureFixture[str]
) -> None:
    theirs = ec2.client.create_security_group(
        GroupName="not-nsgsync", Description="a team's", VpcId=ec2.vpc_id
    )["GroupId"]
    assert main(["apply", *args(topology_file, "--auto-approve")]) == 0
    capsys.readouterr()
    topology = ["--topology", str(topology_file)]

    assert main(["destroy", *topology, "--plan", "--detailed-exitcode"]) == 2
    out = capsys.readouterr().out
    assert '- security-group "sg/shop-db"' in out and "0 to add, 0 to change" in out

    assert main(["destroy", *topology, "--plan", "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["add"] == doc["summary"]["change"] == 0
    assert doc["summary"]["destroy"] == len(doc["changes"]) > 0 and doc["desired"] == []

    assert main(["destroy", *topology]) == 1  # no terminal to confirm on
    assert "--auto-approve" in capsys.readouterr().err
    assert main(["destroy", *topology, "--auto-approve", "--max-deletions", "3"]) == 1
    assert "more than --max-deletions 3" in capsys.readouterr().err

    assert main(["destroy", *topology, "--auto-approve", "--detailed-exitcode"]) == 2
    assert "Destroy complete!" in capsys.readouterr().out
    left = ec2.client.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [ec2.vpc_id]}]
    )["SecurityGroups"]
    assert {g["GroupId"] for g in left if g["GroupName"] != "default"} == {theirs}
    assert main(["destroy", *topology, "--plan", "--detailed-exitcode"]) == 0
    assert "No changes." in capsys.readouterr().out


def test_debug_shows_what_caused_an_error(
    topology_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Refuse(http.server.BaseHTTPRequestHandler):
        """EC2 as it answers credentials it does not know."""

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = (
                b"<Response><Errors><Error><Code>AuthFailure</Code><Message>AWS was not "
                b"able to validate the provided access credentials</Message></Error></Errors>"
                b"<RequestID>1</RequestID></Response>"
            )
            self.send_response(401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        assert main(["plan", *args(topology_file)]) == 1
        err = capsys.readouterr().err
        assert "error: EC2 DescribeSecurityGroups failed (permission): AuthFailure" in err
        assert "grant the IAM policy in docs/aws.md" in err and "--debug" in err
        assert "Traceback" not in err
        assert main(["--debug", "plan", *args(topology_file)]) == 1
        err = capsys.readouterr().err
        assert "ClientError: An error occurred (AuthFailure)" in err
        assert "which nsgsync reported as" in err
    finally:
        server.shutdown()
        server.server_close()
