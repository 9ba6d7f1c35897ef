"""``shapecli layers``: the type names a spec may use, as text or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

from rich.table import Table
from rich.text import Text

from shapecli.layers.registry import LayerDoc
from shapecli.render import Options, Rendered
from shapecli.render.console import to_text

DEFAULT_WIDTH = 100


def render_text(docs: list[LayerDoc], options: Options) -> Rendered:
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column("name", no_wrap=True)
    table.add_column("usage")
    for doc in docs:  # Text, not markup: a docstring may contain [brackets]
        name = Text(doc.name, style="bold").append(f"\n{doc.origin}", style="dim")
        table.add_row(name, Text(doc.usage).append(f"\n{doc.summary}", style="dim"))
    text = to_text(table, replace(options, width=options.width or DEFAULT_WIDTH))
    return Rendered(text if docs else "")


def render_json(docs: list[LayerDoc], options: Options) -> Rendered:
    return Rendered(json.dumps([asdict(d) for d in docs], indent=2, ensure_ascii=False) + "\n")
