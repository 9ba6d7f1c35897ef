"""shapecli and torchinfo side by side, on the same three networks.

    python benchmarks/compare.py [--runs N] [--timeout SECONDS] [--write FILE]

Each tool runs the way its users run it, in a fresh process: ``shapecli inspect`` on a
shipped config (a dry run on the meta device), and a script that builds the same
network in plain PyTorch on the CPU and calls ``torchinfo.summary`` (a real forward
pass on real weights; ``torchinfo_summary.py``). Wall time, CPU time and peak RSS are
medians of N runs, round-robin, and times are ratios to ``python -c "import torch"``.

Both tools' parameter counts are checked against the published ones. torchinfo counts
a tied parameter at every place it appears, so for GPT-2 small (LM head tied to the
token embedding) it reports 163,037,184 rather than 124,439,808.

Needs torchinfo, which needs NumPy (it imports it but does not declare it).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import harness

HERE = Path(__file__).resolve().parent
TOTAL = re.compile(r"^Total params: ([\d,]+)", re.MULTILINE)


@dataclass(frozen=True)
class Network:
    name: str
    title: str
    config: str
    input: str
    params: int
    """Each parameter counted once: what shapecli should report."""
    torchinfo_params: int
    """What torchinfo should report (a tied parameter counted at each place)."""


NETWORKS = (
    Network("mlp", "MLP 20 → 256 → 10", "configs/mlp.yaml", "2x20", 7_946, 7_946),
    Network(
        "resnet18", "ResNet-18", "configs/resnet18.yaml", "1x3x224x224", 11_689_512, 11_689_512
    ),
    Network(
        "gpt2",
        "GPT-2 small (tied head)",
        "configs/gpt2.yaml",
        "1x1024:long",
        124_439_808,
        124_439_808 + 50257 * 768,  # the head's weight, 50257×768, counted again
    ),
)
TOOLS = ("shapecli", "torchinfo")


def commands() -> dict[str, list[str]]:
    """The baseline, then each network with each tool (same input for both)."""
    result = {harness.BASELINE_NAME: list(harness.BASELINE)}
    for net in NETWORKS:
        result[f"shapecli {net.name}"] = [
            *harness.SHAPECLI, "inspect", net.config, "--input", net.input
        ]  # fmt: skip
        result[f"torchinfo {net.name}"] = [
            harness.PYTHON, str(HERE / "torchinfo_summary.py"), net.name, net.input
        ]  # fmt: skip
    return result


def reported_params(result: harness.Result) -> int | None:
    """The "Total params: N" both tools print, or ``None`` if there is none."""
    match = TOTAL.search(result.stdout)
    return int(match.group(1).replace(",", "")) if match else None


def report(results: dict[str, harness.Result], runs: int) -> str:
    """The Markdown body: one row per tool and network, then the torchinfo/shapecli ratios."""
    base = results[harness.BASELINE_NAME]
    rows, ratios, notes = [], [], []
    for net in NETWORKS:
        for tool in TOOLS:
            result = results[f"{tool} {net.name}"]
            expected = net.params if tool == "shapecli" else net.torchinfo_params
            found = reported_params(result) if result.ok else None
            if result.ok:
                check = "✓" if found == expected else f"≠ {expected:,} expected"
                figures = [
                    harness.secs(result.wall),
                    harness.times(result.wall / base.wall),
                    harness.secs(result.cpu),
                    harness.mib(result.peak_rss),
                ]
            else:
                check, figures = "", [result.problem or "not run", "", "", ""]
            rows.append([net.title, tool, f"{harness.count(found)} {check}".strip(), *figures])
        shapecli, torchinfo = results[f"shapecli {net.name}"], results[f"torchinfo {net.name}"]
        if shapecli.ok and torchinfo.ok:
            ratios.append(
                [
                    net.title,
                    harness.times(torchinfo.wall / shapecli.wall),
                    harness.times(torchinfo.cpu / shapecli.cpu),
                    harness.times(torchinfo.peak_rss / shapecli.peak_rss),
                ]
            )
        if net.torchinfo_params != net.params:
            notes.append(
                f"torchinfo reports {net.torchinfo_params:,} parameters for {net.title}: it "
                f"counts the LM head's weight, which *is* the token embedding, twice; the "
                f"network has {net.params:,} (shapecli counts the tied weight once)."
            )
    body = [
        harness.table(
            ["network", "tool", "params reported", "wall", "× import torch", "CPU", "peak RSS"],
            rows,
            right=(2, 3, 4, 5, 6),
        ),
        harness.table(
            ["network", "torchinfo / shapecli: wall", "CPU", "peak RSS"], ratios, right=(1, 2, 3)
        ),
        harness.baseline_line(base, runs),
        *notes,
        *harness.failure_notes(results),
        "shapecli: `shapecli inspect CONFIG --input SHAPE` (a dry run on the meta device). "
        "torchinfo: `benchmarks/torchinfo_summary.py`, which builds the network in plain "
        "PyTorch on the CPU and calls `torchinfo.summary(model, input_size=..., dtypes=...)`"
        " — real weights, real forward pass. ✓: the count printed is the one expected.",
    ]
    return "\n\n".join(body)


def main() -> None:
    args = harness.parser(__doc__, runs=5, timeout=300).parse_args()
    missing = [name for name in ("torchinfo", "numpy") if importlib.util.find_spec(name) is None]
    if missing:
        sys.exit(f"compare.py needs {' and '.join(missing)}: pip install -e '.[bench]'")
    results = harness.round_robin(commands(), args.runs, timeout=args.timeout, progress=True)
    body = report(results, args.runs)
    print(body)
    harness.write_section(args.write, "shapecli and torchinfo", body)
    sys.exit(harness.exit_status(results))


if __name__ == "__main__":
    main()
