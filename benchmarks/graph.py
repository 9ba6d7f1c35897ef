"""``shapecli graph`` as a ratio to ``shapecli inspect`` of the same spec.

    python benchmarks/graph.py [--runs N] [--layers N] [--write FILE] [SPEC ...]

Drawing adds the graph's construction (a walk over the report's rows) and, for svg and
html, one run of Graphviz's ``dot`` over the few dozen nodes of the default depth; the
claim is that a 70B-parameter spec draws in about the time it inspects. ``--layers N``
adds a generated spec of N layers (N/4 residual blocks, every block its own entry, so
every one is drawn): the graph's cost must grow with the layers as the inspection's
does, and a drawing that large is laid out by shapecli, not Graphviz.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import harness

SPECS = ["configs/gpt2.yaml", "configs/llama2-70b.yaml"]


def blocks_spec(layers: int, folder: Path) -> str:
    """A spec of ``layers`` modules: residual blocks of a Linear and a ReLU (a block is
    four modules: the Residual, its body, the two layers)."""
    block = "  - Residual: [{LazyLinear: 16}, ReLU]\n"
    path = folder / f"layers-{layers}.yaml"
    path.write_text("input: 2x16\nmodel:\n" + block * (layers // 4))
    return str(path)


def main() -> None:
    parser = harness.parser(__doc__, runs=7)
    parser.add_argument("specs", nargs="*", default=SPECS)
    parser.add_argument("--layers", type=int, default=0, help="add a generated spec this big")
    args = parser.parse_args()
    if args.layers:
        args.specs.append(blocks_spec(args.layers, Path(tempfile.mkdtemp())))
    cli = [sys.executable, "-m", "shapecli"]
    formats = ["mermaid", "dot"] + (["svg", "html"] if shutil.which("dot") else ["html"])
    commands: dict[str, list[str]] = {}
    for spec in args.specs:
        commands[f"shapecli inspect {spec}"] = [*cli, "inspect", spec]
        for fmt in formats:
            commands[f"shapecli graph {spec} -f {fmt}"] = [*cli, "graph", spec, "-f", fmt]
    results = harness.round_robin(commands, args.runs)
    rows = []
    for spec in args.specs:
        base = results[f"shapecli inspect {spec}"]
        for name, result in results.items():
            if spec not in name.split():
                continue
            if not (result.ok and base.ok):
                print(f"{name:56s} {result.problem}: {result.reason}")
                rows.append([f"`{name}`", result.problem or "not run", "", ""])
                continue
            ratio = result.wall / base.wall
            print(f"{name:56s} {result.wall:6.2f}s {ratio:5.2f}× inspect")
            rows.append([f"`{name}`", harness.secs(result.wall), harness.times(ratio), ""])
            rows[-1][3] = harness.mib(result.peak_rss)
    table = harness.table(
        [f"run (median of {args.runs}, round-robin)", "wall", "ratio to inspect", "peak RSS"],
        rows,
        right=(1, 2, 3),
    )
    harness.write_section(args.write, "Drawing a spec", table)
    sys.exit(harness.exit_status(results))


if __name__ == "__main__":
    main()
