"""What ``shapecli build`` made, as plain data: the renderer prints it, tests read it.

No torch here, so the renderer and its tests run without it (as for the Report).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuildResult:
    """A model built from ``spec`` and written to ``output``.

    ``params`` counts each tied parameter once; ``verified_rows`` is the number of rows
    ``--verify`` compared (None: not asked for).
    """

    name: str
    spec: str
    output: str
    format: str  # "safetensors" or "torch"
    file_bytes: int
    params: int
    dtype: str
    init: str
    seed: int
    verified_rows: int | None = None
