"""Running Graphviz's ``dot`` program: the one place shapecli starts another program.

Graphviz lays graphs out better than anything written by hand, so the svg format and
the html page use it when it is installed. When it is not, :func:`run_dot` raises a
``missing-program`` problem (exit 2) that says how to install it.
"""

from __future__ import annotations

import shutil
import subprocess

from shapecli.errors import fail

INSTALL_HINT = (
    "install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install "
    "graphviz; conda: conda install graphviz), or draw with -f mermaid, -f dot or -f html"
)
TIMEOUT = 300  # seconds: far more than any picture it is given takes (see MAX_NODES)

#: The largest drawing handed to Graphviz. ``dot``'s time grows about as the square of
#: what it draws inside boxes (Graphviz 2.43, one CPU: 300 residual blocks take 2.3 s,
#: 500 take 10 s, 2,000 over two minutes; 10 boxes of 500 layers 9 s; a chain of 20,000
#: layers crashes it). shapecli lays out a larger drawing itself, in one column, in
#: time proportional to its size.
MAX_NODES = 1_000
MAX_GROUPS = 200


def too_large(nodes: int, groups: int) -> str | None:
    """Why a drawing of ``nodes`` nodes in ``groups`` boxes is not handed to Graphviz
    (None: it is), as a note for the user."""
    if nodes <= MAX_NODES and groups <= MAX_GROUPS:
        return None
    return (
        f"the drawing has {nodes:,} nodes in {groups:,} boxes, more than Graphviz lays out "
        f"in reasonable time (at most {MAX_NODES:,} nodes and {MAX_GROUPS:,} boxes), so it "
        "uses shapecli's one-column layout; --depth draws fewer"
    )


def find_dot() -> str | None:
    """The path of Graphviz's ``dot`` program, if it is on ``PATH``."""
    return shutil.which("dot")


def run_dot(source: str, output_format: str = "svg") -> str:
    """Lay out and render DOT ``source`` with Graphviz (``dot -Tsvg``)."""
    program = find_dot()
    if program is None:
        raise fail(
            "missing-program",
            "Graphviz's `dot` program is needed for this format and was not found",
            hint=INSTALL_HINT,
        )
    try:
        done = subprocess.run(
            [program, f"-T{output_format}"],
            input=source.encode("utf-8"),
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise fail("missing-program", f"could not run Graphviz's `dot`: {e}") from e
    if done.returncode != 0:  # shapecli wrote DOT that Graphviz refused: a bug
        message = done.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"Graphviz's dot refused the graph: {message}")
    return done.stdout.decode("utf-8")
