"""`nsgsync graph` as a user runs it: the example cluster, a widening cloud, 1,000 policies,
and the HTML page in a real browser (headless Chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from nsgsync.cli.main import main
from nsgsync.firewall import endpoints_for, intent_tables
from nsgsync.graph import build_graph
from nsgsync.graph.html import to_html
from nsgsync.intent import DirectionIntent, Intent, IntentProtocol, Rule, SegmentIntent
from nsgsync.model import Topology
from tests.generated import write_cluster

ROOT = Path(__file__).parent.parent
# The example's namespaces.yaml lists all of its namespaces: said so, no namespace of
# unknown labels widens the rules (see docs/semantics.md).
EXAMPLE = [
    "-f",
    str(ROOT / "config/example/cluster"),
    "--namespaces-complete",
    "--topology",
    str(ROOT / "config/example/topology.yaml"),
]


def graph_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["graph", *args, "-o", "json"]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def state(doc: dict[str, Any], src: str, dst: str) -> tuple[str, str]:
    """What a reader of the JSON concludes for a pair, following its documented rule."""
    for c in doc["cells"]:
        if c["from"] == src and c["to"] == dst:
            return c["state"], c["text"]
    ends = {e["name"]: e for e in doc["endpoints"]}
    if ends[src]["egressOpen"] and ends[dst]["ingressOpen"]:
        return "open", "all"
    return "denied", "none"


def test_example_cells_name_ports_and_policies(capsys: pytest.CaptureFixture[str]) -> None:
    doc = graph_json(capsys, *EXAMPLE)
    assert doc["kind"] == "Graph"
    assert doc["rules"] == "intent"
    assert [e["name"] for e in doc["endpoints"]] == [
        "shop-frontend",
        "shop-backend",
        "shop-db",
        "shop-other",
        "monitoring",
        "rest",
        "nodes",
        "unsegmented",
        "outside",
    ]
    assert state(doc, "shop-frontend", "shop-backend") == ("restricted", "TCP 8081")
    assert state(doc, "shop-backend", "shop-db") == ("restricted", "TCP 5432")
    assert state(doc, "shop-frontend", "shop-db") == ("denied", "none")
    assert state(doc, "shop-other", "rest") == ("restricted", "TCP 53; UDP 53")
    assert state(doc, "monitoring", "shop-frontend") == ("restricted", "TCP 9090")
    assert state(doc, "monitoring", "rest") == ("open", "all")
    assert state(doc, "outside", "shop-frontend") == ("restricted", "TCP 8080")
    assert state(doc, "outside", "shop-db") == ("denied", "none")
    assert state(doc, "nodes", "shop-db") == ("open", "all")
    cell = next(
        c for c in doc["cells"] if (c["from"], c["to"]) == ("shop-frontend", "shop-backend")
    )
    assert cell["policies"] == ["shop/backend-allow-frontend", "shop/frontend-to-backend"]
    assert cell["ports"] == {"TCP": [[8081, 8081]]}
    db = next(e for e in doc["endpoints"] if e["name"] == "shop-db")
    assert [doc["findings"][i]["code"] for i in db["findings"]] == ["node-traffic"]


def test_dot_and_mermaid_draw_the_allowed_edges(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", *EXAMPLE, "-o", "dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("// nsgsync graph")
    assert '"shop-frontend" -> "shop-backend" [label="TCP 8081"' in dot
    assert '"shop-frontend" -> "shop-db"' not in dot
    assert 'label="shop";' in dot  # namespaces are clusters
    assert dot.count("{") == dot.count("}")
    assert main(["graph", *EXAMPLE, "-o", "mermaid"]) == 0
    mermaid = capsys.readouterr().out
    assert "flowchart LR" in mermaid
    assert 'e0 -->|"TCP 8081"| e1' in mermaid  # shop-frontend to shop-backend
    assert 'e4 -.->|"all"| e5' in mermaid  # monitoring to rest: open


def test_namespace_filter_keeps_that_namespace_and_its_peers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = graph_json(capsys, *EXAMPLE, "--namespace", "monitoring")
    names = {e["name"] for e in doc["endpoints"]}
    assert "monitoring" in names
    assert "shop-db" not in names  # monitoring reaches it through nothing listed
    assert all("monitoring" in (c["from"], c["to"]) for c in doc["cells"])
    assert main(["graph", *EXAMPLE, "--namespace", "shopp"]) == 1
    assert 'did you mean "shop"' in capsys.readouterr().err


def _sctp_cluster(tmp_path: Path, provider: str) -> list[str]:
    (tmp_path / "p.yaml").write_text(
        """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: diameter, namespace: core}
spec:
  podSelector: {matchLabels: {app: hss}}
  ingress: [{from: [{podSelector: {matchLabels: {app: mme}}}],
             ports: [{protocol: SCTP, port: 3868}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: hss, namespace: core, labels: {app: hss}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: mme, namespace: core, labels: {app: mme}}
spec: {containers: [{name: c, image: x}]}
"""
    )
    subnets = (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
        "Microsoft.Network/virtualNetworks/v/subnets"
    )
    topology = {
        "apiVersion": "nsgsync.io/v1alpha1",
        "kind": "Topology",
        "cluster": "telco",
        "provider": provider,
        "podCIDRs": ["10.0.0.0/16"],
        "segments": [
            {
                "name": "hss",
                "namespace": "core",
                "podSelector": {"matchLabels": {"app": "hss"}},
                "cidrs": ["10.0.1.0/24"],
                "azure": {"subnetId": f"{subnets}/hss"},
            },
            {
                "name": "mme",
                "namespace": "core",
                "cidrs": ["10.0.2.0/24"],
                "azure": {"subnetId": f"{subnets}/mme"},
            },
        ],
        "aws": {"region": "eu-west-1", "vpcId": "vpc-1"},
        "azure": {
            "subscriptionId": "00000000-0000-0000-0000-000000000000",
            "resourceGroup": "rg",
            "location": "westeurope",
            "vnetCIDRs": ["10.0.0.0/8"],
        },
        "gcp": {"project": "telco-project", "network": "vpc-telco", "targetTags": ["nodes"]},
    }
    (tmp_path / "t.yaml").write_text(json.dumps(topology))
    return ["-f", str(tmp_path / "p.yaml"), "--topology", str(tmp_path / "t.yaml")]


@pytest.mark.parametrize(
    ("provider", "rendered"),
    [
        ("aws", "SCTP all"),
        ("azure", "all"),  # SCTP only under "*": every protocol
        ("gcp", "SCTP 3868"),
    ],
)
def test_provider_rules_show_where_a_cloud_widens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: str, rendered: str
) -> None:
    args = _sctp_cluster(tmp_path, provider)
    assert state(graph_json(capsys, *args), "mme", "hss") == ("restricted", "SCTP 3868")
    doc = graph_json(capsys, *args, "--provider-rules")
    assert doc["rules"] == provider
    assert state(doc, "mme", "hss")[1] == rendered
    cell = next(c for c in doc["cells"] if (c["from"], c["to"]) == ("mme", "hss"))
    assert "core/diameter" in cell["policies"]


def test_provider_rules_agree_with_the_intent_on_the_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    intent = graph_json(capsys, *EXAMPLE)
    for provider in ("aws", "azure", "gcp"):
        topology = (ROOT / "config/example/topology.yaml").read_text()
        path = tmp_path / f"{provider}.yaml"
        path.write_text(topology.replace("provider: aws", f"provider: {provider}"))
        args = [*EXAMPLE[:-1], str(path)]
        cloud = graph_json(capsys, *args, "--provider-rules")
        for a in intent["endpoints"]:
            for b in intent["endpoints"]:
                want = state(intent, a["name"], b["name"])
                got = state(cloud, a["name"], b["name"])
                if "segment" in (a["kind"], b["kind"]):
                    assert got[1] == want[1], (provider, a["name"], b["name"])


# --- in a browser ----------------------------------------------------------------------


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium installed (scripts/bootstrap installs Debian's chromium as root)")


def browse(page: Path, tmp_path: Path, *extra: str, fragment: str = "") -> tuple[str, str]:
    """Load `page` in headless Chromium: the DOM after its scripts ran, and the log."""
    profile = tmp_path / "chromium-profile"
    done = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *extra,
            page.as_uri() + fragment,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout, done.stderr


def page_errors(log: str) -> list[str]:
    """Script errors and refused loads that Chromium logs for the page."""
    return [
        line
        for line in log.splitlines()
        if "CONSOLE" in line or "Uncaught" in line or "Refused to" in line
    ]


def td(dom: str, src: str, dst: str) -> tuple[str, str]:
    found = re.search(
        rf'<td class="([a-z ]+)" data-from="{re.escape(src)}" '
        rf'data-to="{re.escape(dst)}">([^<]*)</td>',
        dom,
    )
    assert found, f"no cell {src} -> {dst} on the page"
    return found.group(1), found.group(2)


def test_html_page_renders_the_example_in_chromium(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["graph", *EXAMPLE, "-o", "html"]) == 0
    page = tmp_path / "graph.html"
    page.write_text(capsys.readouterr().out)
    text = page.read_text()
    assert not re.search(r"(src|href)=\"?https?:", text)  # self-contained: nothing fetched
    dom, log = browse(page, tmp_path, "--dump-dom")
    assert 'data-ready="1"' in dom, log
    assert page_errors(log) == []
    assert td(dom, "shop-frontend", "shop-backend") == ("restricted", "TCP 8081")
    assert td(dom, "shop-backend", "shop-db") == ("restricted", "TCP 5432")
    assert td(dom, "shop-frontend", "shop-db") == ("denied", "")
    assert td(dom, "monitoring", "rest") == ("open", "all")
    assert td(dom, "outside", "shop-frontend") == ("restricted", "TCP 8080")
    assert td(dom, "nodes", "outside") == ("na", "")
    assert dom.count('class="edge restricted"') == 9  # the node-link view's arrows
    # A link to one cell opens its details: ports, policies, rules, findings.
    dom, log = browse(page, tmp_path, "--dump-dom", fragment="#cell=shop-frontend,shop-backend")
    side = dom[dom.index('<aside id="side">') :]
    assert "shop/frontend-to-backend rule 0 peer 0" in side
    assert "shop/backend-allow-frontend" in side
    assert "node-traffic" in side
    shot = tmp_path / "graph.png"
    browse(page, tmp_path, "--window-size=1300,900", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def thousand(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return write_cluster(tmp_path_factory.mktemp("generated"), policies=1000)


def test_a_1000_policy_cluster_renders_collapsed_by_namespace(
    thousand: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["graph", *thousand, "-o", "html"]) == 0
    page = tmp_path / "graph.html"
    page.write_text(capsys.readouterr().out)
    dom, log = browse(page, tmp_path, "--dump-dom")
    assert 'data-ready="1"' in dom, log
    assert page_errors(log) == []
    # 200 namespaces, the catch-all's heading and the non-segments', each a row and a column
    assert dom.count('<th class="grp col"') == 202
    assert td(dom, "ns:ns-0", "ns:ns-0")[0] == "mixed"  # egress within, some ingress denied
    assert td(dom, "ns:ns-0", "ns:ns-1")[0] == "denied"
    assert td(dom, "ns:ns-0", "ns:(by selector)")[0] == "restricted"  # DNS
    assert "node-link view is drawn for clusters of up to" in dom
    # Filtered to two namespaces, one of them expanded into its segments:
    dom, log = browse(page, tmp_path, "--dump-dom", fragment="#ns=ns-5,ns-6&open=ns-5")
    assert page_errors(log) == []
    assert dom.count('<th class="grp col"') == 1  # ns-6 collapsed; ns-5 spans its columns
    assert td(dom, "ns-5-web", "ns-5-rest") == ("restricted", "TCP 8081")
    assert td(dom, "ns-5-rest", "ns:ns-6") == ("denied", "0/2")  # allowed / pairs
    assert td(dom, "ns:ns-6", "ns-5-web") == ("denied", "0/2")


def test_a_1000_policy_cluster_as_json(
    thousand: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    doc = graph_json(capsys, *thousand)
    assert sum(1 for e in doc["endpoints"] if e["kind"] == "segment") == 401
    assert state(doc, "ns-0-web", "catch-all") == ("restricted", "UDP 53")
    assert state(doc, "ns-0-web", "ns-0-rest") == ("restricted", "TCP 8081")
    # ns-0's db admits ns-1's api, but ns-1's egress leaves the namespace only for DNS
    assert state(doc, "ns-1-rest", "ns-0-rest") == ("denied", "none")
    assert state(doc, "ns-0-web", "ns-1-rest") == ("denied", "none")
    assert state(doc, "outside", "ns-7-web") == ("restricted", "TCP 8080")


def test_a_4000_segment_page_loads_collapsed(tmp_path: Path) -> None:
    namespaces, per = 400, 10
    segments: list[dict[str, Any]] = []
    for n in range(namespaces):
        for s in range(per):
            k = n * per + s
            segments.append(
                {
                    "name": f"n{n}-s{s}",
                    "namespace": f"n{n}",
                    "podSelector": {"matchLabels": {"s": str(s)}},
                    "cidrs": [f"10.{k // 256}.{k % 256}.0/24"],
                }
            )
    topology = Topology.model_validate(
        {
            "apiVersion": "nsgsync.io/v1alpha1",
            "kind": "Topology",
            "cluster": "big",
            "provider": "aws",
            "podCIDRs": ["10.0.0.0/8"],
            "segments": segments,
        }
    )
    # Each segment admits its own namespace on TCP 8080 and nothing else.
    intent_segments = []
    for n in range(namespaces):
        own = tuple(seg["cidrs"][0] for seg in segments[n * per : (n + 1) * per])
        rule = Rule(
            peers=own, protocol=IntentProtocol.TCP, ports=((8080, 8080),), policies=("x/y",)
        )
        for seg in segments[n * per : (n + 1) * per]:
            intent_segments.append(
                SegmentIntent(
                    name=seg["name"],
                    cidrs=tuple(seg["cidrs"]),
                    ingress=DirectionIntent(isolated=True, rules=(rule,)),
                    egress=DirectionIntent(isolated=False),
                )
            )
    intent = Intent(cluster="big", segments=tuple(intent_segments))
    graph = build_graph(
        cluster="big",
        rules="intent",
        endpoints=endpoints_for(topology),
        tables=intent_tables(intent),
    )
    assert len(graph.cells) == namespaces * per * per  # within each namespace, 10 x 10
    page = tmp_path / "big.html"
    page.write_text(to_html(graph))
    dom, log = browse(page, tmp_path, "--dump-dom")
    assert 'data-ready="1"' in dom, log
    assert page_errors(log) == []
    assert dom.count('<th class="grp col"') == namespaces + 1
    assert td(dom, "ns:n3", "ns:n3") == ("restricted", "")
    assert td(dom, "ns:n3", "ns:n4") == ("denied", "")
