"""``shapecli graph`` costs time in proportion to the rows it draws, in every format.

No clocks here (a shared CI machine's speed varies): the work is counted as Python
function calls, builtins included, for the same structure at two sizes. Linear work
grows 4× from n to 4n; the quadratic graph this replaces grew 16× (a 20,000-layer spec
called one helper 2×10⁸ times). Graphviz itself is not counted: drawings too large for
it are laid out by shapecli, which is (see ``render.graphviz.MAX_NODES``).
"""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Callable

import pytest

from shapecli.graph import build_graph
from shapecli.render import graphviz
from shapecli.render.dot import to_dot
from shapecli.render.html import drawing, page
from shapecli.render.mermaid import to_mermaid
from shapecli.report import Report, Row
from test_graph import report, row

SMALL = 150


def chain(n: int) -> list[Row]:
    return [row(str(i), "ReLU", str(i - 1) if i else "@input") for i in range(n)]


def residuals(n: int) -> list[Row]:
    """Residual blocks, half with a shortcut of their own, half with the identity."""
    rows: list[Row] = []
    for i in range(n):
        before = str(i - 1) if i else "@input"
        rows += [
            row(f"{i}", "Residual", before),
            row(f"{i}.body", "Sequential", before),
            row(f"{i}.body.0", "Linear", before),
            row(f"{i}.body.1", "ReLU", f"{i}.body.0"),
        ]
        if i % 2:
            rows += [
                row(f"{i}.shortcut", "Sequential", before),
                row(f"{i}.shortcut.0", "Conv", before),
            ]
    return rows


def parallels(n: int) -> list[Row]:
    rows: list[Row] = []
    for i in range(n):
        before = str(i - 1) if i else "@input"
        rows += [
            row(f"{i}", "Parallel", before),
            row(f"{i}.branches", "ModuleList", entry=False, sources=()),
            row(f"{i}.branches.0", "Sequential", before),
            row(f"{i}.branches.0.0", "Linear", before),
            row(f"{i}.branches.1", "Sequential", before),
            row(f"{i}.branches.1.0", "Linear", before),
        ]
    return rows


def repeats(n: int) -> list[Row]:
    """One repeat group of n copies of a two-layer block (copies after the first did
    what it did), every layer reading a named tensor from the start."""
    rows = [row("h", "block", "@input", repeat=n)]
    for i in range(n):
        before = f"h.{i - 1}" if i else "@input"
        same = {"same_as": "h.0"} if i else {}
        rows += [
            row(f"h.{i}", "block", before, **same),  # type: ignore[arg-type]
            row(f"h.{i}.a", "Linear", before, "@input"),
            row(f"h.{i}.b", "ReLU", f"h.{i}.a"),
        ]
    return rows


def nested(n: int) -> list[Row]:
    """n lists, each holding a list: boxes in boxes."""
    rows: list[Row] = []
    for i in range(n):
        before = f"{i - 1}" if i else "@input"
        rows += [
            row(f"{i}", "Sequential", before),
            row(f"{i}.0", "ReLU", before),
            row(f"{i}.1", "Sequential", f"{i}.0"),
            row(f"{i}.1.0", "ReLU", f"{i}.0"),
            row(f"{i}.1.1", "ReLU", f"{i}.1.0"),
        ]
    return rows


SHAPES: dict[str, Callable[[int], list[Row]]] = {
    "chain": chain,
    "residuals": residuals,
    "parallels": parallels,
    "repeats": repeats,
    "nested": nested,
}


def draw_everything(made: Report, depth: int | None) -> None:
    """The graph and every picture format's text; the html page with shapecli's own
    layout, as a drawing too large for Graphviz gets."""
    graph = build_graph(made, depth)
    to_mermaid(graph)
    to_dot(graph)
    svg, _ = drawing(graph)
    page(made, graph, svg, depth)


def calls(made: Report, depth: int | None) -> int:
    profile = cProfile.Profile()
    profile.runcall(draw_everything, made, depth)
    return pstats.Stats(profile).total_calls  # type: ignore[attr-defined, no-any-return]


@pytest.mark.slow
@pytest.mark.parametrize("depth", [None, 9])
@pytest.mark.parametrize("shape", SHAPES)
def test_drawing_costs_in_proportion_to_the_rows(
    shape: str, depth: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shapecli.render.html.find_dot", lambda: None)  # its time is its own
    small = calls(report(*SHAPES[shape](SMALL)), depth)
    large = calls(report(*SHAPES[shape](4 * SMALL)), depth)
    assert large < 4.6 * small, f"{large / small:.1f}× the calls for 4× the rows"


def test_graphviz_gets_no_drawing_larger_than_it_lays_out_in_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the size Graphviz handles (its time grows as the square; a chain of 20,000
    layers crashes it), shapecli lays the drawing out itself and says so."""
    monkeypatch.setattr("shapecli.render.html.find_dot", lambda: "/usr/bin/dot")
    ran: list[str] = []
    monkeypatch.setattr(
        "shapecli.render.html.run_dot", lambda source: ran.append(source) or "<svg/>"
    )
    big = build_graph(report(*chain(graphviz.MAX_NODES)))
    svg, why = drawing(big)
    assert ran == [] and why is not None and "one-column layout" in why
    assert svg.startswith("<svg") and f"{len(big.nodes):,} nodes" in why
    boxes = build_graph(report(*nested(graphviz.MAX_GROUPS + 1)))
    assert drawing(boxes)[1] is not None and ran == []
    drawing(build_graph(report(*chain(10))))
    assert len(ran) == 1  # a small drawing is Graphviz's
