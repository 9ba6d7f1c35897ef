"""How the cost of ``shapecli inspect`` grows with depth and with sequence length.

    python benchmarks/scaling.py [--runs N] [--timeout SECONDS] [--write FILE]

A dry run on the meta device allocates nothing, so its cost should not follow the
model's size. Two curves test that, on specs generated into a temporary folder:

- depth: a GPT-2-small-like decoder with 12, 48, 96 and 192 blocks, once as one
  ``repeat:`` entry (whose copies shapecli replays instead of running) and once with
  every block written out as its own entry (each one runs);
- sequence length: an LSTM classifier (embedding, 2-layer bidirectional LSTM of 512,
  mean over time, linear) and a small transformer, with ``--input 4x<T>:long`` for T
  from 128 to 4,096.

Medians of N runs, round-robin, as ratios to ``python -c "import torch"`` and to the
first point of each curve. A run that exceeds the per-run timeout is killed and
reported as "timeout" (and not run again).
"""

from __future__ import annotations

import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import harness

DEPTHS = (12, 48, 96, 192)
LENGTHS = (128, 512, 1024, 2048, 4096)
TOTAL = re.compile(r"^Total params: ([\d,]+)", re.MULTILINE)

# GPT-2 small's block (as configs/gpt2.yaml, without dropout): ln, attention, ln, MLP.
DECODER_BLOCKS = """\
blocks:
  block:
    - Residual:
        - LayerNorm: auto
          name: ln_1
        - Attention: {dim: auto, heads: "${heads}", causal: true}
          name: attn
    - Residual:
        - LayerNorm: auto
          name: ln_2
        - LazyLinear: "${4 * d}"
          name: c_fc
        - GELU: {approximate: tanh}
        - LazyLinear: "${d}"
          name: c_proj
model:
  - Embedding: ["${vocab}", "${d}"]
    name: wte
  - PositionalEmbedding: ["${context}", "${d}"]
    name: wpe
"""
DECODER_HEAD = """\
  - LayerNorm: auto
    name: ln_f
  - LazyLinear: {out_features: "${vocab}", bias: false}
    name: lm_head
    tie: {weight: wte.weight}
"""
D, VOCAB, CONTEXT = 768, 50257, 1024
BLOCK_PARAMS = 2 * 2 * D + (D * 3 * D + 3 * D) + (D * D + D) + (D * 4 * D + 4 * D) + (4 * D * D + D)

LSTM = """\
name: lstm-classifier
model:
  - Embedding: [10000, 256]
  - LSTM:
      {input_size: auto, hidden_size: 512, num_layers: 2, bidirectional: true, batch_first: true}
  - Take: 0
  - Mean: {dim: 1}
  - LazyLinear: 10
"""

# Embedding; per direction, layer 1 (input 256) and layer 2 (input 2 × 512); head.
LSTM_PARAMS = (
    10000 * 256 + 2 * sum(4 * 512 * (n + 512) + 2 * 4 * 512 for n in (256, 1024)) + 1024 * 10 + 10
)

TRANSFORMER = """\
name: small-transformer
params: {vocab: 10000, context: 4096, d: 256, heads: 8, hidden: 704}
blocks:
  layer:
    - Residual:
        - LayerNorm: auto
        - Attention: {dim: auto, heads: "${heads}", causal: true}
    - Residual:
        - LayerNorm: auto
        - Parallel:
            branches:
              - [{LazyLinear: {out_features: "${hidden}", bias: false}}, SiLU]
              - [{LazyLinear: {out_features: "${hidden}", bias: false}}]
            merge: mul
        - LazyLinear: {out_features: "${d}", bias: false}
model:
  - Embedding: ["${vocab}", "${d}"]
  - PositionalEmbedding: ["${context}", "${d}"]
  - layer:
    repeat: 4
  - LayerNorm: auto
  - Mean: {dim: 1}
  - LazyLinear: 10
"""


# Embeddings; per layer two LayerNorms, q/k/v/o with biases and SwiGLU without; head.
LAYER_PARAMS = 2 * 2 * 256 + 4 * (256 * 256 + 256) + 3 * 256 * 704
TRANSFORMER_PARAMS = 10000 * 256 + 4096 * 256 + 4 * LAYER_PARAMS + 2 * 256 + 256 * 10 + 10


def decoder_spec(blocks: int, *, written_out: bool) -> str:
    """GPT-2 small with ``blocks`` blocks: 124,439,808 parameters at 12, as gpt2.yaml."""
    kind = "written-out" if written_out else "repeat"
    header = (
        f"name: decoder-{blocks}-{kind}\n"
        "input: 1x1024:long\n"
        f"params: {{vocab: {VOCAB}, context: {CONTEXT}, d: {D}, heads: 12}}\n"
    )
    if written_out:
        body = "".join(f"  - block:\n    name: h{i}\n" for i in range(blocks))
    else:
        body = f"  - block:\n    name: h\n    repeat: {blocks}\n"
    return header + DECODER_BLOCKS + body + DECODER_HEAD


def decoder_params(blocks: int) -> int:
    """Embeddings, blocks and the final norm; the head is the embedding again."""
    return VOCAB * D + CONTEXT * D + blocks * BLOCK_PARAMS + 2 * D


@dataclass(frozen=True)
class Point:
    """One spec at one size: a row of a curve."""

    curve: str
    size: int
    command: list[str]
    params: int | None = None
    """The parameter count shapecli must print, where it is known."""

    @property
    def name(self) -> str:
        return f"{self.curve} @ {self.size}"


def points(folder: Path) -> list[Point]:
    """Write the specs into ``folder``; return every point of every curve, in order."""
    inspect = [*harness.SHAPECLI, "inspect"]
    result = []
    for written_out, curve in (
        (False, "decoder, one `repeat:` entry"),
        (True, "decoder, blocks written out"),
    ):
        for blocks in DEPTHS:
            spec = folder / f"decoder-{blocks}-{'written-out' if written_out else 'repeat'}.yaml"
            spec.write_text(decoder_spec(blocks, written_out=written_out), encoding="utf-8")
            result.append(Point(curve, blocks, [*inspect, str(spec)], decoder_params(blocks)))
    for curve, text, params in (
        ("LSTM classifier", LSTM, LSTM_PARAMS),
        ("small transformer", TRANSFORMER, TRANSFORMER_PARAMS),
    ):
        spec = folder / f"{curve.replace(' ', '-').lower()}.yaml"
        spec.write_text(text, encoding="utf-8")
        for length in LENGTHS:
            command = [*inspect, str(spec), "--input", f"4x{length}:long"]
            result.append(Point(curve, length, command, params))
    return result


def curve_table(curve: list[Point], results: dict[str, harness.Result], base: float) -> str:
    """One row per point: its cost, as a ratio to ``import torch`` and to the first point."""
    first = results[curve[0].name]
    rows = []
    for point in curve:
        result = results[point.name]
        if not result.ok:
            rows.append([f"{point.size:,}", "", result.problem or "not run", "", "", "", ""])
            continue
        match = TOTAL.search(result.stdout)
        found = int(match.group(1).replace(",", "")) if match else None
        check = "" if point.params is None else " ✓" if found == point.params else " ≠ expected"
        rows.append(
            [
                f"{point.size:,}",
                harness.count(found) + check,
                harness.secs(result.wall),
                harness.times(result.wall / base),
                harness.times(result.wall / first.wall) if first.ok else "",
                harness.secs(result.cpu),
                harness.mib(result.peak_rss),
            ]
        )
    size = "blocks" if curve[0].curve.startswith("decoder") else "T (input 4×T)"
    header = [size, "params", "wall", "× import torch", "× first", "CPU", "peak RSS"]
    return harness.table(header, rows, right=range(7))


def report(
    all_points: list[Point], results: dict[str, harness.Result], runs: int, timeout: float
) -> str:
    """The Markdown body: one table per curve, then what the specs are."""
    base = results[harness.BASELINE_NAME]
    parts = []
    curves: dict[str, list[Point]] = {}
    for point in all_points:
        curves.setdefault(point.curve, []).append(point)
    for title, curve in curves.items():
        parts += [f"**{title}**", curve_table(curve, results, base.wall)]
    parts += [
        harness.baseline_line(base, runs),
        *harness.failure_notes(results),
        "Depth: GPT-2 small's block (d 768, 12 heads, vocabulary 50,257, input 1×1024 "
        "token ids) repeated; at 12 blocks it is GPT-2 small. With `repeat:` the copies "
        "that receive what the first received are replayed, not run; written out, every "
        "block runs. Sequence length: `--input 4x<T>:long`; the LSTM classifier is "
        "Embedding 10,000×256 → LSTM (hidden 512, 2 layers, bidirectional) → `Take: 0` → "
        "`Mean` → LazyLinear 10; the small transformer has 4 pre-norm blocks of d 256 "
        "(8 heads, causal, SwiGLU feed-forward of 704 as a `Parallel`). "
        f"Each run is killed after {timeout:g} s and reported as a timeout. "
        "✓: the parameter count printed is the one computed by hand.",
    ]
    return "\n\n".join(parts)


def main() -> None:
    args = harness.parser(__doc__, runs=5, timeout=120).parse_args()
    with tempfile.TemporaryDirectory(prefix="shapecli-scaling-") as tmp:
        all_points = points(Path(tmp))
        commands = {harness.BASELINE_NAME: list(harness.BASELINE)}
        commands |= {point.name: point.command for point in all_points}
        results = harness.round_robin(commands, args.runs, timeout=args.timeout, progress=True)
    body = report(all_points, results, args.runs, args.timeout)
    print(body)
    harness.write_section(args.write, "Scaling of `shapecli inspect`", body)
    sys.exit(harness.exit_status(results))


if __name__ == "__main__":
    main()
