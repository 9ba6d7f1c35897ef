"""Symbolic sizes against a concrete inspection of the same spec, as paired ratios.

    python benchmarks/symbolic.py [--runs N] [--timeout SECONDS] [--write FILE]

Each row pairs ``shapecli inspect SPEC`` (its own concrete ``input:``) with the same
command given symbolic sizes (``--input Bx3xHxW``), run round-robin in fresh processes;
the ratio of their medians is what symbolic sizes cost. The last row is a generated
20-line spec of six shifted-window blocks (partition, a Linear, merge, roll) with
``input: BxHxWx4``, checked by ``shapecli lint``: torch's symbolic run of it alone
would take minutes, so it shows the budget at work (the lint must end in under 30 s,
with what the budget did not settle reported as not derived). Its pair is the lint of
the same spec with concrete sizes.

Every symbolic run is checked: exit 0, and whether the accepted sizes were derived
(the table says so), so a speed-up that came from checking less would show.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import harness

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"resnet18.yaml": 1.5, "gpt2.yaml": 1.5, "swin-t.yaml": 3.0}
PAIRS = (
    ("configs/resnet18.yaml", "Bx3xHxW"),
    ("configs/gpt2.yaml", "BxT:long"),
    ("configs/swin-t.yaml", "Bx3xHxW"),
)
WINDOW_BLOCK = """\
  window:
    - Roll: {shifts: [-4, -4], dims: [1, 2]}
      name: shifted
    - WindowPartition: 8
    - Linear: [4, 4]
    - WindowMerge: 8
      in: [_, shifted]
    - Roll: {shifts: [4, 4], dims: [1, 2]}
"""


def windows(folder: Path, shape: str) -> Path:
    """The six-block window spec with ``input: shape``."""
    path = folder / f"windows-{shape.replace('x', '-')}.yaml"
    body = "".join("  - window\n" for _ in range(6))
    path.write_text(
        f"# six shifted-window blocks\ninput: {shape}\nblocks:\n{WINDOW_BLOCK}model:\n{body}",
        encoding="utf-8",
    )
    return path


def main() -> None:
    parser = harness.parser(__doc__, runs=3, timeout=300)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "shapecli"]
    with tempfile.TemporaryDirectory() as tmp:
        symbolic_windows = windows(Path(tmp), "BxHxWx4")
        concrete_windows = windows(Path(tmp), "2x64x64x4")
        commands: dict[str, list[str]] = {}
        for spec, shape in PAIRS:
            commands[f"inspect {spec}"] = [*cli, "inspect", spec, "-f", "json"]
            commands[f"inspect {spec} -i {shape}"] = [
                *cli,
                "inspect",
                spec,
                "-i",
                shape,
                "-f",
                "json",
            ]
        commands["lint windows (2x64x64x4)"] = [*cli, "lint", str(concrete_windows)]
        commands["lint windows (BxHxWx4)"] = [*cli, "lint", str(symbolic_windows), "-f", "json"]
        results = harness.round_robin(commands, args.runs, timeout=args.timeout, progress=True)
    rows = []
    for spec, shape in PAIRS:
        concrete, symbolic = results[f"inspect {spec}"], results[f"inspect {spec} -i {shape}"]
        rows.append(
            _row(f"`{Path(spec).name}`, `{shape}`", concrete, symbolic, TARGETS[Path(spec).name])
        )
    rows.append(
        _row(
            "six window blocks, `BxHxWx4`, `lint`",
            results["lint windows (2x64x64x4)"],
            results["lint windows (BxHxWx4)"],
            None,
        )
    )
    table = harness.table(
        ["spec, symbolic input", "concrete", "symbolic", "ratio", "target", "accepted sizes"],
        rows,
        right=(1, 2, 3),
    )
    print(table)
    harness.write_section(
        args.write,
        "Symbolic sizes",
        f"{table}\n\nWall times, medians of {args.runs} fresh processes run round-robin; the "
        'ratio is symbolic over concrete for the same spec. "accepted sizes" says whether '
        "the symbolic run derived them (every claim is checked by concrete runs first) or "
        "reported them as not derived. The window spec's target is an absolute one: under "
        "30 s in `lint`, whatever torch's symbolic run would take."
        + "".join(f"\n\n{note}" for note in harness.failure_notes(results)),
    )
    sys.exit(harness.exit_status(results))


def _row(
    label: str, concrete: harness.Result, symbolic: harness.Result, target: float | None
) -> list[str]:
    if not (concrete.ok and symbolic.ok):
        return [label, concrete.problem or "", symbolic.problem or "", "", "", ""]
    ratio = symbolic.wall / concrete.wall
    goal = f"≤ {target:g}×" if target is not None else "≤ 30 s"
    return [
        label,
        harness.secs(concrete.wall),
        harness.secs(symbolic.wall),
        harness.times(ratio),
        goal,
        _accepted(symbolic.stdout),
    ]


def _accepted(stdout: str) -> str:
    """What the symbolic run's JSON says of the accepted sizes."""
    doc = json.loads(stdout)
    if "files" in doc:  # lint says only what it could not derive
        problems = doc["files"][0]["problems"]
        left = [p for p in problems if p["code"] == "not-derived"]
        accepts = any("sizes the model accepts" in p["message"] for p in left)
        return "not derived" if accepts else f"derived ({len(left)} not-derived warnings)"
    if doc["constraints"] is None:
        return "not derived"
    return ", ".join(f"`{c}`" for c in doc["constraints"]) or "any sizes"


if __name__ == "__main__":
    main()
