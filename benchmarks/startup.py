"""Cost of shapecli runs, as ratios to ``python -c "import torch"``.

    python benchmarks/startup.py [--runs N] [--write FILE] [SPEC ...]

Every command runs N times in a fresh process, round-robin (so drift in the machine's
speed hits all of them alike), and the medians are compared. Ratios, not seconds, are
the claim: they hold across machines far better than absolute times. Wall time is
what a user waits; CPU time (user + system, of the child) is steadier on a shared
machine. ``--write`` also records each command's peak RSS, as a Markdown section.

Besides the CLI itself, two variants isolate what ``shapecli.speedups`` buys: the same
dry run through the API without it ("plain"), and with it but leaving through normal
interpreter teardown ("no fast exit"). A third row is the floor under every meta dry
run: torch and the modules (sympy among them) its Python meta kernels import on first
use. The API applies the speedups itself, inside ``speedups.lean_meta``; "plain" swaps
that block for a no-op before the API is imported, and checks that the dry run then did
import ``torch._dynamo`` — so a change in how the speedups are wired fails the row
instead of quietly measuring the fast path.
"""

from __future__ import annotations

import sys

import harness

PLAIN = (
    "import contextlib, sys; from shapecli import speedups; "
    "speedups.lean_meta = contextlib.nullcontext; "
    "from shapecli import api; r = api.inspect(sys.argv[1]); assert r.ok; "
    "assert 'torch._dynamo' in sys.modules, 'the speedups were still on'"
)
PATCHED = "import sys; from shapecli import api; r = api.inspect(sys.argv[1]); assert r.ok"
#: torch with what its Python meta kernels import on their first call (torch._check needs
#: symbolic_shapes, and with it sympy): no dry run on meta can cost less than this.
FLOOR = "python -c 'import torch, torch.fx.experimental.symbolic_shapes'"


def main() -> None:
    parser = harness.parser(__doc__, runs=7)
    parser.add_argument("specs", nargs="*", default=["configs/mlp.yaml"])
    args = parser.parse_args()
    python = sys.executable
    cli = [python, "-m", "shapecli"]
    commands: dict[str, list[str]] = {
        "python -c pass": [python, "-c", "pass"],
        "python -c 'import torch'": [python, "-c", "import torch"],
        FLOOR: [python, "-c", "import torch, torch.fx.experimental.symbolic_shapes"],
        "shapecli --help": [*cli, "--help"],
    }
    for spec in args.specs:
        commands[f"shapecli inspect {spec}"] = [*cli, "inspect", spec]
        commands["  plain API dry run " + spec] = [python, "-c", PLAIN, spec]
        commands["  speedups, no fast exit " + spec] = [python, "-c", PATCHED, spec]

    results = harness.round_robin(commands, args.runs)
    base = "python -c 'import torch'"
    harness.require_ok({base: results[base]})

    header = f"median of {args.runs} runs"
    width = max(len(name) for name in results)
    print(f"{header:{width}s} {'wall':>8s} {'ratio':>7s} {'cpu':>8s} {'ratio':>7s}")
    for name, result in results.items():
        if not result.ok:  # e.g. a variant whose speedups API has changed: say so, go on
            print(f"{name:{width}s} {result.problem}: {result.reason}")
            continue
        wall, cpu = result.wall, result.cpu
        print(
            f"{name:{width}s} {wall:7.2f}s {wall / results[base].wall:6.2f}× "
            f"{cpu:7.2f}s {cpu / results[base].cpu:6.2f}×"
        )
    harness.write_section(args.write, "Startup and dry-run cost", markdown(results, base))
    sys.exit(harness.exit_status(results))


def markdown(results: dict[str, harness.Result], base: str) -> str:
    """The printed table as Markdown, with peak RSS, and the command that made it."""
    rows = []
    for name, result in results.items():
        variant = name.startswith("  ")  # a variant of the inspect row above it
        label = f"↳ {name.strip()}" if variant else f"`{name}`"
        if not result.ok:
            rows.append([label, result.problem or "not run", "", "", "", ""])
            continue
        rows.append(
            [
                label,
                harness.secs(result.wall),
                harness.times(result.wall / results[base].wall),
                harness.secs(result.cpu),
                harness.times(result.cpu / results[base].cpu),
                harness.mib(result.peak_rss),
            ]
        )
    runs = len(results[base].samples)
    table = harness.table(
        [f"run (median of {runs}, round-robin)", "wall", "ratio", "CPU", "ratio", "peak RSS"],
        rows,
        right=(1, 2, 3, 4, 5),
    )
    return (
        f"{table}\n\n"
        "Ratios are to `python -c 'import torch'`. ↳ plain API dry run: the same dry run "
        "through `shapecli.api` without `shapecli.speedups`; ↳ speedups, no fast exit: with "
        "them, but leaving through normal interpreter teardown. The `symbolic_shapes` row is "
        "the floor of any dry run on meta: torch's Python meta kernels import that module, "
        "and sympy with it, on their first call."
        + "".join(f"\n\n{note}" for note in harness.failure_notes(results))
    )


if __name__ == "__main__":
    main()
