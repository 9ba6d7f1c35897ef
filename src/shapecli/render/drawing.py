"""What each box of a picture says — one wording for mermaid, dot, svg and html.

A layer reads ``name · type`` and its parameter count; the failing layer is marked
``✗`` and says what it could not take; a repeat group says ``×N``; an input its shape
and dtype. Lines are plain text, with what the user wrote made visible
(:func:`~shapecli.untrusted.visible`): each format escapes them its own way.
"""

from __future__ import annotations

from shapecli.graph import Graph, Group, Node
from shapecli.render import format as fmt
from shapecli.report import format_shapes
from shapecli.untrusted import visible


def title(graph: Graph) -> str:
    """The picture's title: ``gpt2 · input 1x1024:int64``, as the table's."""
    return fmt.title(graph.name, graph.inputs)


def node_lines(node: Node) -> list[str]:
    """The text of a node, line by line."""
    if node.kind == "merge":
        return [node.name]
    if node.kind in ("input", "output"):
        dtype = "" if node.kind == "output" or node.type == "float32" else f" {node.type}"
        return [visible(node.name), format_shapes(node.output_shapes) + dtype]
    head = visible(f"{node.name} · {node.type}")
    lines = [f"{fmt.FAIL_MARK} {head}" if node.failed else head]
    if node.param_count:
        lines.append(params(node.param_count))
    lines += [visible(shared) for shared in node.shared]
    if node.failed:
        taken = format_shapes(node.input_shapes)
        lines.append(f"cannot take {taken}" if taken else "failed")
    return lines


def group_title(group: Group) -> str:
    """A group's box title: ``h · block ×12 · 85,054,464 params``."""
    parts = [visible(group.name), visible(group.type)]
    if group.param_count:
        parts.append(params(group.param_count))
    return (f"{fmt.FAIL_MARK} " if group.failed else "") + " · ".join(parts)


def params(count: int) -> str:
    return f"{count:,} param" + ("" if count == 1 else "s")
