"""``shapecli build``'s output: what was checked and what was written, one line each."""

from __future__ import annotations

from shapecli.build_result import BuildResult
from shapecli.render import Rendered
from shapecli.render.format import nbytes
from shapecli.untrusted import visible


def render_text(result: BuildResult) -> Rendered:
    lines = []
    if result.verified_rows is not None:
        lines.append(
            f"verified {result.verified_rows} rows: a real forward pass on the CPU gave "
            "every shape the dry run reported"
        )
    lines.append(
        f"wrote {visible(str(result.output))} ({result.format}, {nbytes(result.file_bytes)}): "
        f"{visible(result.name)}, {result.params:,} parameters, {result.dtype}, "
        f"init {result.init}, seed {result.seed}"
    )
    return Rendered("\n".join(lines) + "\n")
