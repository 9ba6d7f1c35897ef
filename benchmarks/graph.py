"""``shapecli graph`` as a ratio to ``shapecli inspect`` of the same spec.

    python benchmarks/graph.py [--runs N] [--write FILE] [SPEC ...]

Drawing adds the graph's construction (a walk over the report's rows) and, for svg and
html, one run of Graphviz's ``dot`` over the few dozen nodes of the default depth; the
claim is that a 70B-parameter spec draws in about the time it inspects.
"""

from __future__ import annotations

import shutil
import sys

import harness

SPECS = ["configs/gpt2.yaml", "configs/llama2-70b.yaml"]


def main() -> None:
    parser = harness.parser(__doc__, runs=7)
    parser.add_argument("specs", nargs="*", default=SPECS)
    args = parser.parse_args()
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
