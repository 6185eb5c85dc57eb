"""A graph as JSON for tools, and as Graphviz dot or Mermaid for docs and pull requests."""

from __future__ import annotations

from collections.abc import Iterator

from nsgsync.graph import Graph
from nsgsync.jsontext import pretty


def to_json(graph: Graph) -> str:
    return pretty(graph.to_dict())


def edges(graph: Graph) -> Iterator[tuple[int, int, str, str]]:
    """(source, destination, state, label) of every allowed pair, listed or implied open."""
    listed = {(c.src, c.dst): c for c in graph.cells}
    n = len(graph.endpoints)
    for a in range(n):
        for b in range(n):
            c = listed.get((a, b))
            if c is not None:
                yield a, b, c.state, c.ports.text()
            elif (
                graph.egress_open[a]
                and graph.ingress_open[b]
                and (graph.segment(a) or graph.segment(b))
            ):
                yield a, b, "open", "all"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_DOT_COLOUR = {"open": "#2e7d32", "restricted": "#ef6c00"}


def to_dot(graph: Graph) -> str:
    lines = [
        f"// nsgsync graph of cluster {graph.cluster} ({graph.rules} rules): "
        "edges are the connections allowed",
        f"digraph {_quote(graph.cluster)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(graph.endpoints):
        groups.setdefault(e.group, []).append(i)
    for n, (group, members) in enumerate(groups.items()):
        lines.append(f"  subgraph cluster_{n} {{")
        lines.append(f"    label={_quote(group)};")
        for i in members:
            e = graph.endpoints[i]
            shape = "" if e.kind == "segment" else ", shape=ellipse, fillcolor=white"
            lines.append(f"    {_quote(e.name)} [label={_quote(e.name)}{shape}];")
        lines.append("  }")
    for a, b, state, label in edges(graph):
        style = ", style=dashed" if state == "open" else ""
        lines.append(
            f"  {_quote(graph.endpoints[a].name)} -> {_quote(graph.endpoints[b].name)} "
            f"[label={_quote(label)}, color={_quote(_DOT_COLOUR[state])}{style}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mid(index: int) -> str:
    return f"e{index}"


def _mtext(text: str) -> str:
    return text.replace('"', "#quot;").replace("|", "#124;")


def to_mermaid(graph: Graph) -> str:
    lines = [
        "%% nsgsync graph of cluster " + graph.cluster + f" ({graph.rules} rules)",
        "flowchart LR",
    ]
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(graph.endpoints):
        groups.setdefault(e.group, []).append(i)
    for n, (group, members) in enumerate(groups.items()):
        lines.append(f'  subgraph g{n}["{_mtext(group)}"]')
        for i in members:
            e = graph.endpoints[i]
            shape = f'["{_mtext(e.name)}"]' if e.kind == "segment" else f'(("{_mtext(e.name)}"))'
            lines.append(f"    {_mid(i)}{shape}")
        lines.append("  end")
    styles = []
    for k, (a, b, state, label) in enumerate(edges(graph)):
        arrow = "-.->" if state == "open" else "-->"
        lines.append(f'  {_mid(a)} {arrow}|"{_mtext(label)}"| {_mid(b)}')
        styles.append(f"  linkStyle {k} stroke:{_DOT_COLOUR[state]}")
    return "\n".join(lines + styles) + "\n"
