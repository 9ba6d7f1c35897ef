"""``shapecli layers``: the type names a spec may use, as text or JSON."""

from __future__ import annotations

import io
import json
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from shapecli.layers.registry import LayerDoc
from shapecli.render import Options, Rendered

DEFAULT_WIDTH = 100


def render_text(docs: list[LayerDoc], options: Options) -> Rendered:
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("usage")
    for doc in docs:
        table.add_row(
            f"{doc.name}\n[dim]{doc.origin}[/dim]", f"{doc.usage}\n[dim]{doc.summary}[/dim]"
        )
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=options.width or DEFAULT_WIDTH,
        force_terminal=options.color,
        no_color=not options.color,
        color_system="standard" if options.color else None,
        highlight=False,
        emoji=False,
    )
    console.print(table)
    text = "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())
    return Rendered(text + "\n" if docs else "")


def render_json(docs: list[LayerDoc], options: Options) -> Rendered:
    return Rendered(json.dumps([asdict(d) for d in docs], indent=2, ensure_ascii=False) + "\n")
