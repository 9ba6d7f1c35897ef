"""The graph of a report (``shapecli.graph``) and its pictures, on hand-built reports.

No torch here: each report is written out row by row, the way a dry run would fill it,
so every rule — residual skips, collapsed repeat copies, depth cuts, named tensors, a
failure — is checked on the smallest report that shows it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from shapecli.errors import Problem
from shapecli.graph import Graph, build_graph
from shapecli.inputs import InputSpec
from shapecli.render.dot import to_dot
from shapecli.render.html import page
from shapecli.render.layout import draw
from shapecli.render.mermaid import to_mermaid
from shapecli.report import Origin, ParamInfo, Report, Row

X = (2, 4)  # every tensor in these reports, unless a test says otherwise


def origins(*names: str) -> tuple[Origin, ...]:
    """Row paths, or ``@name`` for a model input, as origins."""
    return tuple(Origin(input=s[1:]) if s.startswith("@") else Origin(path=s) for s in names)


def row(
    path: str,
    type_: str,
    *sources: str,
    out: tuple[int, ...] = X,
    returns: tuple[str, ...] = (),
    **kw: object,
) -> Row:
    """A row reading ``sources`` (and, for a container, returning ``returns``): row
    paths, or ``@name`` for a model input."""
    fields: dict[str, object] = {
        "name": path.rpartition(".")[2] or "model",
        "depth": 0 if path == "" else path.count(".") + 1,
        "input_shapes": (X,),
        "output_shapes": (out,),
        "sources": origins(*sources),
        "returns": origins(*returns),
    }
    fields.update(kw)
    return Row(path, type=type_, **fields)  # type: ignore[arg-type]


def report(
    *rows: Row,
    inputs: tuple[InputSpec, ...] = (InputSpec(X),),
    returns: tuple[str, ...] | None = None,
    **kw: object,
) -> Report:
    """A report of ``rows`` under a root that reads every input and returns the rows at
    ``returns`` (by default the last top-level row; nothing when a row failed)."""
    failed = any(r.status == "failed" for r in rows)
    if returns is None:
        returns = () if failed else ([r.path for r in rows if r.depth == 1][-1],)
    by_path = {r.path: r for r in rows}
    root = row(
        "",
        "Sequential",
        *(f"@{i.name or 'input'}" for i in inputs),
        output_shapes=tuple(s for p in returns for s in by_path[p].output_shapes),
        returns=returns,
        status="failed" if failed else "ok",
    )
    return Report("net", "net.yaml", inputs, (root, *rows), **kw)  # type: ignore[arg-type]


def edges(graph: Graph) -> set[tuple[str, str, str]]:
    """Edges as (tail, head, label) by the names of the nodes at either end."""
    names = {n.id: n.path or n.name for n in graph.nodes}
    return {(names[e.tail], names[e.head], e.label) for e in graph.edges}


def skips(graph: Graph) -> set[tuple[str, str]]:
    names = {n.id: n.path or n.name for n in graph.nodes}
    return {(names[e.tail], names[e.head]) for e in graph.edges if e.skip}


def test_a_sequence_is_a_chain_from_the_input_to_the_output() -> None:
    graph = build_graph(
        report(row("0", "Linear", "@input", out=(2, 8)), row("1", "ReLU", "0", out=(2, 8)))
    )
    assert [n.kind for n in graph.nodes] == ["input", "layer", "layer", "output"]
    assert edges(graph) == {
        ("input", "0", "2×4"),
        ("0", "1", "2×8"),
        ("1", "output", "2×8"),
    }
    assert graph.groups == ()


def test_a_residual_is_a_group_with_a_merge_and_a_dashed_skip() -> None:
    graph = build_graph(
        report(
            row("0", "Residual", "@input", returns=("0.body", "@input"), merge="add"),
            row("0.body", "Sequential", "@input", entry=False, returns=("0.body.1",)),
            row("0.body.0", "Linear", "@input"),
            row("0.body.1", "ReLU", "0.body.0"),
            row("1", "Linear", "0"),
        )
    )
    (group,) = graph.groups
    merge = next(n for n in graph.nodes if n.kind == "merge")
    assert (group.path, merge.name, merge.group) == ("0", "+", group.id)
    assert edges(graph) == {
        ("input", "0.body.0", "2×4"),
        ("0.body.0", "0.body.1", "2×4"),
        ("0.body.1", "0", "2×4"),  # the body into the merge (named by its Residual's path)
        ("input", "0", "2×4"),  # the identity shortcut
        ("0", "1", "2×4"),  # reading the Residual reads its merge
        ("1", "output", "2×4"),
    }
    assert skips(graph) == {("input", "0")}


def test_a_residual_with_a_shortcut_merges_both_branches_and_draws_no_skip() -> None:
    graph = build_graph(
        report(
            row("0", "Residual", "@input", returns=("0.body", "0.shortcut"), merge="add"),
            row("0.body", "Sequential", "@input", returns=("0.body.0",)),
            row("0.body.0", "Linear", "@input"),
            row("0.shortcut", "Sequential", "@input", returns=("0.shortcut.0",)),
            row("0.shortcut.0", "Conv", "@input"),
        )
    )
    assert skips(graph) == set()
    assert {(t, h) for t, h, _ in edges(graph)} >= {("0.body.0", "0"), ("0.shortcut.0", "0")}
    assert [g.path for g in graph.groups] == ["0", "0.body", "0.shortcut"]


def test_a_parallel_merges_its_branches() -> None:
    graph = build_graph(
        report(
            row(
                "0",
                "Parallel",
                "@input",
                out=(2, 8),
                returns=("0.branches.0", "0.branches.1"),
                merge="cat",
            ),
            row("0.branches", "ModuleList", entry=False, sources=()),
            row("0.branches.0", "Sequential", "@input", returns=("0.branches.0.0",)),
            row("0.branches.0.0", "Linear", "@input"),
            row("0.branches.1", "Sequential", "@input", returns=("0.branches.1.0",)),
            row("0.branches.1.0", "Linear", "@input"),
        )
    )
    merge = next(n for n in graph.nodes if n.kind == "merge")
    assert merge.name == "cat"
    assert {(t, h) for t, h, _ in edges(graph) if h == "0"} == {
        ("0.branches.0.0", "0"),
        ("0.branches.1.0", "0"),
    }
    assert ("0", "output", "2×8") in edges(graph)


def repeated() -> Report:
    """``h``: three copies of a one-layer block; copies 1 and 2 did what copy 0 did."""
    return report(
        row("h", "block", "@input", repeat=3, param_count=30, returns=("h.2",)),
        row("h.0", "block", "@input", param_count=10, returns=("h.0.fc",)),
        row("h.0.fc", "Linear", "@input", param_count=10),
        row("h.1", "block", "h.0", same_as="h.0", param_count=10, returns=("h.1.fc",)),
        row("h.1.fc", "Linear", "h.0", param_count=10),
        row("h.2", "block", "h.1", same_as="h.0", param_count=10, returns=("h.2.fc",)),
        row("h.2.fc", "Linear", "h.1", param_count=10),
        row("x", "ReLU", "h"),
    )


def test_repeat_copies_that_did_what_the_first_did_are_one_node() -> None:
    graph = build_graph(repeated())
    run = next(n for n in graph.layers if n.path == "h.1")
    assert (run.name, run.type, run.param_count, run.rows) == ("1…2", "block ×2, as 0", 20, 4)
    assert run.collapsed
    assert [g.type for g in graph.groups] == ["block ×3", "block"]
    # copy 2 reads copy 1, inside the same node: no edge; x reads the group: from the run
    assert edges(graph) == {
        ("input", "h.0.fc", "2×4"),
        ("h.0.fc", "h.1", "2×4"),
        ("h.1", "x", "2×4"),
        ("x", "output", "2×4"),
    }


def test_depth_collapses_a_group_into_one_node_and_expands_copies() -> None:
    at_1 = build_graph(repeated(), depth=1)
    (group,) = [n for n in at_1.layers if n.path == "h"]
    assert (group.type, group.collapsed, group.rows, group.param_count) == (
        "block ×3",
        True,
        7,
        30,
    )
    assert edges(at_1) == {("input", "h", "2×4"), ("h", "x", "2×4"), ("x", "output", "2×4")}
    at_2 = build_graph(repeated(), depth=2)
    assert [n.path for n in at_2.layers] == ["h.0", "h.1", "h.2", "x"]
    assert ("h.1", "h.2", "2×4") in edges(at_2) and ("h.2", "x", "2×4") in edges(at_2)
    at_0 = build_graph(repeated(), depth=0)
    assert [n.path for n in at_0.layers] == [""]
    assert edges(at_0) == {("input", "model", "2×4"), ("model", "output", "2×4")}


def test_named_tensors_are_edges_with_their_keyword() -> None:
    seq = (1, 4, 8)
    inputs = (InputSpec((1, 4), "int64", "ids"), InputSpec((1, 4), "bool", "mask"))
    attention = (Origin(path="emb", arg="x"), Origin(input="mask", arg="mask"))
    graph = build_graph(
        report(
            row("emb", "Embedding", "@ids", out=seq),
            row("enc", "layer", "emb", "@mask", out=seq, returns=("enc.norm",)),
            row("enc.att", "Attention", out=seq, sources=attention),
            row("enc.norm", "LayerNorm", "enc.att", out=seq),
            row("first", "Select", "enc", out=(1, 8)),
            inputs=inputs,
            returns=("enc", "first"),
        )
    )
    assert ("mask", "enc.att", "mask: 1×4") in edges(graph)
    assert ("emb", "enc.att", "x: 1×4×8") in edges(graph)
    # the model returns (enc, first), and enc returns its norm
    assert {(t, h) for t, h, _ in edges(graph) if h == "output"} == {
        ("enc.norm", "output"),
        ("first", "output"),
    }
    assert [n.type for n in graph.nodes if n.kind == "input"] == ["int64", "bool"]


def failing() -> Report:
    mismatch = Problem("shape-mismatch", "cannot take it", path="1")
    return report(
        row("0", "Linear", "@input", out=(2, 8)),
        row("1", "Linear", "0", input_shapes=((2, 8),), output_shapes=(), status="failed"),
        row("2", "ReLU", "1", status="not-run"),
        errors=(mismatch,),
    )


def test_a_failing_report_is_drawn_up_to_the_failure_with_it_marked() -> None:
    graph = build_graph(failing())
    assert [n.path for n in graph.layers] == ["0", "1"]  # nothing after the failure
    assert [n.failed for n in graph.layers] == [False, True]
    assert not any(n.kind == "output" for n in graph.nodes)  # it produced nothing
    mermaid = to_mermaid(graph)
    assert '["✗ 1 · Linear<br/>cannot take 2×8"]' in mermaid
    assert "  class n1 failed" in mermaid
    assert 'class="layer failed"' in to_dot(graph)


def test_a_shared_parameter_is_named_on_its_node() -> None:
    tied = ParamInfo("weight", (4, 4), 0, shared_with="wte.weight")
    graph = build_graph(report(row("head", "Linear", "@input", params=(tied,))))
    assert "weight = wte.weight" in to_mermaid(graph)


HOSTILE = 'a"b<i>c</i>#d;`e`&f\\n end'


def hostile() -> Graph:
    return build_graph(
        report(
            row("0", HOSTILE, "@input", name=HOSTILE),
            row("1", "Seq", "0"),
            row("1.0", "ReLU", "0", name="end"),
        )
    )


def test_mermaid_ids_are_generated_and_labels_cannot_break_out() -> None:
    text = to_mermaid(hostile())
    body = text.split("flowchart TD\n")[1]
    for line in body.splitlines():
        stripped = line.strip()
        # every line starts with a generated id or a keyword, never with spec text
        assert re.match(r"^(([a-z]\d+|y0)\b|end$|subgraph [a-z]\d+\[|classDef |class )", stripped)
        # quotes only delimit labels: an even number, none escaped by the spec's text
        assert stripped.count('"') % 2 == 0
    assert "a#quot;b#lt;i#gt;c#lt;/i#gt;#35;d;#96;e#96;#amp;f\\n end" in body
    assert "<i>" not in body


def test_dot_labels_escape_quotes_and_backslashes() -> None:
    text = to_dot(hostile())
    assert 'a\\"b<i>c</i>#d;`e`&f\\\\n end' in text
    assert re.search(r"^\s*n0 \[id=\"n0\"", text, re.M)


def test_the_fallback_layout_is_well_formed_svg_with_the_graphs_ids() -> None:
    graph = build_graph(repeated())
    svg = ET.fromstring(draw(graph))
    ns = {"svg": "http://www.w3.org/2000/svg"}
    ids = {g.get("id") for g in svg.iterfind(".//svg:g[@class]", ns)}
    assert {n.id for n in graph.nodes} | {e.id for e in graph.edges} <= ids
    assert {g.id for g in graph.groups} <= ids
    layers = [g for g in svg.iterfind(".//svg:g", ns) if "layer" in (g.get("class") or "")]
    assert len(layers) == len(graph.layers)


def test_the_page_cannot_reach_the_network_and_its_data_cannot_close_the_script() -> None:
    graph = hostile()
    html = page(report(row("0", "</script><script>alert(1)", "@input")), graph, draw(graph), None)
    assert "default-src 'none'" in html
    assert html.count("</script>") == 2  # the data block and the script, nothing more
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)


@pytest.mark.parametrize("depth", [None, 0, 1, 2, 3])
def test_every_edge_joins_drawn_nodes_and_every_node_is_in_a_drawn_group(
    depth: int | None,
) -> None:
    graph = build_graph(repeated(), depth)
    ids = {n.id for n in graph.nodes}
    groups = {g.id for g in graph.groups}
    assert all(e.tail in ids and e.head in ids and e.tail != e.head for e in graph.edges)
    assert all(n.group is None or n.group in groups for n in graph.nodes)
    assert len({(e.tail, e.head, e.skip) for e in graph.edges}) == len(graph.edges)
