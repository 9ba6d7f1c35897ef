"""Rich renderables → text, the one way every human-facing format prints."""

from __future__ import annotations

import io

from rich.console import Console, RenderableType

from shapecli.render import Options


def to_text(renderable: RenderableType, options: Options, wrap: bool = True) -> str:
    """Render to a string: coloured only when asked; as wide as needed unless a width
    is given ("as wide as needed" is a very wide console, trailing spaces stripped: a
    table that does not expand comes out at its natural width, rendered once).
    ``wrap=False`` keeps every line whole, whatever the width."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=options.width or 100_000,
        force_terminal=options.color,
        no_color=not options.color,
        color_system="standard" if options.color else None,
        highlight=False,
        emoji=False,
        soft_wrap=not wrap,
    )
    console.print(renderable)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"
