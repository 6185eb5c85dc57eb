"""A graph as one self-contained HTML page: no network, every script and style inline.

A segment x segment matrix (rows sources, columns destinations), clustered by namespace:
a collapsed namespace is one row and one column summing up its segments, and large
clusters start collapsed. Selecting a cell shows the ports, the policies and rules behind
it and the findings of both segments. Small clusters also get a node-link picture.
"""

from __future__ import annotations

import html
import json
from importlib.resources import files

from nsgsync.graph import Graph

# Above this many endpoints namespaces start collapsed, and the node-link view is off.
EXPAND_UP_TO = 60
NODE_LINK_UP_TO = 40
# The page may fetch nothing: no script, style or image from anywhere but itself.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def _asset(name: str) -> str:
    return (files("nsgsync.graph") / name).read_text(encoding="utf-8")


def to_html(graph: Graph) -> str:
    doc = graph.to_dict()
    # Policy and rule names repeat from cell to cell: each is written once, cells point
    # at it by number (a 4,000-segment page is a fraction of the size).
    strings: dict[str, int] = {}

    def intern(text: str) -> int:
        return strings.setdefault(text, len(strings))

    # Short keys: the page of a 4,000-segment cluster carries every listed cell.
    data = {
        "cluster": graph.cluster,
        "rules": graph.rules,
        "endpoints": [
            {
                "name": e["name"],
                "group": e["group"],
                "kind": e["kind"],
                "eo": e["egressOpen"],
                "io": e["ingressOpen"],
            }
            for e in doc["endpoints"]
        ],
        "cells": [
            {
                "a": c.src,
                "b": c.dst,
                "s": c.state,
                "t": c.ports.text(),
                "p": [intern(x) for x in c.policies],
                "eg": [intern(x) for x in c.egress],
                "ig": [intern(x) for x in c.ingress],
            }
            for c in graph.cells
        ],
        "findings": doc["findings"],
    }
    data["strings"] = list(strings)
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    script = (
        _asset("page.js")
        .replace("EXPAND_UP_TO", str(EXPAND_UP_TO))
        .replace("NODE_LINK_UP_TO", str(NODE_LINK_UP_TO))
    )
    rules = "the Intent" if graph.rules == "intent" else f"the rendered {graph.rules} rules"
    title = f"nsgsync graph: {graph.cluster}"
    verb = "allows" if graph.rules == "intent" else "allow"
    segments = sum(1 for e in graph.endpoints if e.kind == "segment")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<title>{html.escape(title)}</title>
<style>{_asset("page.css")}</style>
</head>
<body>
<header><h1>{html.escape(title)}</h1>
<p>What {html.escape(rules)} {verb} between {segments} segments: rows are sources,
columns destinations. Select a cell for its ports, policies, rules and findings; select a namespace
heading to expand or collapse it.</p></header>
<div id="bar">
<label>namespaces <input id="filter" type="search"
 placeholder="filter, e.g. shop monitoring"></label>
<button id="expand" type="button">expand all</button>
<button id="collapse" type="button">collapse all</button>
<span class="legend"><span class="open-k">open</span><span class="restricted-k">restricted</span>
<span class="denied-k">denied</span><span class="mixed-k">mixed</span></span>
</div>
<div id="main"><div id="matrix-wrap"></div>
<aside id="side"><p>Hover over or select a cell.</p></aside></div>
<div id="nodelink"></div>
<script type="application/json" id="graph-data">{payload}</script>
<script>{script}</script>
</body>
</html>
"""
