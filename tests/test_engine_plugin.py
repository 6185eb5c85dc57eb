"""A fourth provider, registered only in this test through the entry-point group, runs
plan, apply and destroy from the CLI with no change to nsgsync's core.

Its "cloud" is a JSON file named in its own topology block: one allow rule per segment,
side, peer and port; the engine orders and batches its writes like any cloud's.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from nsgsync.cli.main import main

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "config/example"

TOY = """
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nsgsync.plan import Ident, Resource, Role
from nsgsync.provider import Budget, Phase, Snapshot, settings


class ToyConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    state_file: str = Field(alias="stateFile")
    max_rules: int = Field(default=1000, alias="maxRules")


def rule(segment: str, side: str, peer: str, proto: str, ports: Any) -> Resource:
    body = {"segment": segment, "side": side, "peer": peer, "protocol": proto, "ports": ports}
    ident = Ident("toy", (segment, side, peer, proto, json.dumps(ports)))
    return Resource("toy-rule", ident, body, segment, role=Role.RULE, direction=side)


class ToyAdapter:
    name = "toy"
    pairs = False
    cascades = False

    def __init__(self, topology, config: ToyConfig) -> None:
        self.topology, self.config = topology, config

    @property
    def cluster(self) -> str:
        return self.topology.cluster

    def session(self, **clients: Any) -> Path:
        return Path(self.config.state_file)

    def read(self, session: Path) -> Snapshot:
        docs = json.loads(session.read_text()) if session.exists() else []
        return Snapshot(tuple(
            rule(d["segment"], d["side"], d["peer"], d["protocol"], d["ports"]) for d in docs
        ))

    def reread(self, session: Path, touched, *, applied):
        wanted = {r.ident for r in touched}  # no containers: each rule alone
        return tuple(r for r in self.read(session).resources if r.ident in wanted)

    def desired(self, intent, snapshot):
        out = []
        for seg in intent.segments:
            for side, d in (("ingress", seg.ingress), ("egress", seg.egress)):
                if not d.isolated:
                    out.append(rule(seg.name, side, "*", "ANY", None))
                for r in d.rules:
                    for peer in r.peers:
                        ports = [list(p) for p in r.ports] if r.ports else None
                        out.append(rule(seg.name, side, peer, r.protocol.value, ports))
        return list({r.ident: r for r in out}.values()), []

    def restore(self, type_, key, body, segment):
        return rule(body["segment"], body["side"], body["peer"], body["protocol"], body["ports"])

    def budget(self, resource, snapshot):
        return Budget(("toy",), "the toy's rules", self.config.max_rules)

    def denies(self, resource):
        return False

    def footprint(self, resource):
        return None  # the toy never pairs

    def widens(self, old, new):
        return True

    def batch_size(self, phase: Phase) -> int:
        return 10

    def create(self, session, change, rules, *, applied, progress):
        raise AssertionError("no containers")

    def write(self, session: Path, phase, batch, *, applied, progress):
        docs = json.loads(session.read_text()) if session.exists() else []
        for c in batch:
            if c.old is not None:
                docs.remove(dict(c.old.body))
            if c.new is not None:
                docs.append(dict(c.new.body))
        progress(f"{phase}: {len(batch)} rule(s)")
        session.write_text(json.dumps(docs))


class ToyProvider:
    name = "toy"

    def configure(self, topology, *, source=None):
        block = topology.provider_block("toy")
        return ToyAdapter(
            topology, settings(ToyConfig, block, topology=topology, field="toy", source=source)
        )


provider = ToyProvider()
"""


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install the toy provider: a package and its dist-info on sys.path."""
    site = tmp_path / "site"
    (site / "nsgsync_toy").mkdir(parents=True)
    (site / "nsgsync_toy" / "__init__.py").write_text(TOY)
    info = site / "nsgsync_toy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nsgsync-toy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [nsgsync.providers]
            toy = nsgsync_toy:provider
            """
        )
    )
    monkeypatch.syspath_prepend(str(site))
    doc = yaml.safe_load((EXAMPLE / "topology.yaml").read_text())
    doc["provider"] = "toy"
    doc["toy"] = {"stateFile": str(tmp_path / "cloud.json")}
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_provider_from_the_entry_point_group_plans_applies_and_destroys(
    toy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud = toy.parent / "cloud.json"
    files = ["-f", str(EXAMPLE / "cluster"), "--topology", str(toy)]
    assert main(["plan", *files, "--detailed-exitcode"]) == 2
    assert '+ toy-rule "toy/shop-db/ingress/' in capsys.readouterr().out
    assert main(["apply", *files, "--auto-approve"]) == 0
    assert "Apply complete!" in capsys.readouterr().out
    assert len(json.loads(cloud.read_text())) > 0
    assert main(["plan", *files, "--detailed-exitcode"]) == 0
    assert main(["destroy", "--topology", str(toy), "--auto-approve"]) == 0
    assert json.loads(cloud.read_text()) == []


def test_its_block_is_validated_by_it_naming_file_and_key(
    toy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = yaml.safe_load(toy.read_text())
    doc["toy"] = {"statefile": "x"}
    toy.write_text(yaml.safe_dump(doc))
    assert main(["plan", "-f", str(EXAMPLE / "cluster"), "--topology", str(toy)]) == 1
    err = capsys.readouterr().err
    assert str(toy) in err and "field toy.statefile" in err
    assert 'did you mean "stateFile"' in err
