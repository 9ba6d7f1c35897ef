"""The small ops that let a spec say what real networks compute: each against the torch
expression it stands for, with real numbers on the CPU, and the shapes a dry run shows."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import shapecli
from shapecli.spec.parse import parse_spec

Fn = Callable[..., torch.Tensor]


def spec(body: str, inputs: dict[str, str]) -> object:
    listed = ", ".join(f"{name}: {shape}" for name, shape in inputs.items())
    return parse_spec(f"input: {{{listed}}}\nmodel:\n{body}", "ops.yaml")


def real(body: str, **inputs: torch.Tensor) -> torch.Tensor:
    """The spec's model with real weights, run on ``inputs`` (named as the spec's)."""
    kinds = {torch.int64: ":long", torch.bool: ":bool"}
    shapes = {n: "x".join(map(str, t.shape)) + kinds.get(t.dtype, "") for n, t in inputs.items()}
    model = shapecli.build(spec(body, shapes)).eval()  # type: ignore[arg-type]
    with torch.no_grad():
        out: torch.Tensor = model(*inputs.values())
    return out


x = torch.randn(2, 5, 8)
ids = torch.tensor([[3, 9, 1, 0, 0], [4, 4, 2, 7, 0]])


@pytest.mark.parametrize(
    ("body", "inputs", "expected"),
    [
        ("  - Slice: {dim: 1, start: 1}\n", {"x": x}, lambda x: x[:, 1:]),
        ("  - Slice: {dim: -1, end: -1}\n", {"x": x}, lambda x: x[..., :-1]),
        ("  - Slice: {dim: 2, start: 1, step: 2}\n", {"x": x}, lambda x: x[:, :, 1::2]),
        ("  - Split: {size: [3, 5]}\n  - Take: 1\n", {"x": x}, lambda x: x[..., 3:]),
        ("  - Chunk: {chunks: 2, dim: 1}\n", {"x": x[:, :4]}, lambda x: x.chunk(2, 1)),
        ("  - ArgMax: -1\n", {"ids": ids}, lambda ids: ids.argmax(-1)),
        ("  - ArgSort: {dim: 1, descending: true}\n", {"x": x[..., 0]}, lambda x: x.argsort(1, descending=True)),
        ("  - TopK: {k: 2, largest: false}\n  - Take: 0\n", {"x": x}, lambda x: x.topk(2, largest=False).values),
        ("  - Gather: 1\n    in: [x, index]\n", {"x": x, "index": torch.tensor([[4, 0], [2, 2]])},
         lambda x, index: torch.stack([x[0, [4, 0]], x[1, [2, 2]]])),
        # CLIP's pooling: the hidden state at each sequence's largest token id
        ("  - ArgMax: -1\n    in: ids\n  - Gather: 1\n    in: [x, _]\n", {"x": x, "ids": ids},
         lambda x, ids: x[torch.arange(2), ids.argmax(-1)]),
        ("  - Expand:\n    in: [t, x]\n", {"t": torch.randn(3, 8), "x": x}, lambda t, x: t.expand(2, 3, 8)),
        ("  - Expand: [0, 1]\n    in: [t, x]\n", {"t": torch.randn(1, 1, 8), "x": x}, lambda t, x: t.expand(2, 5, 8)),
        ("  - ReshapeAs:\n    in: [x, like]\n", {"x": x.flatten(1), "like": x}, lambda x, like: x.view(2, 5, 8)),
        ("  - Scale: 0.125\n", {"x": x}, lambda x: x * 0.125),
        ("  - Scale: {by: 2048, power: 0.5}\n", {"x": x}, lambda x: x * math.sqrt(2048)),
        ("  - Scale: {shift: 1}\n", {"x": x}, lambda x: x + 1),
        ("  - Exp\n", {"x": x}, torch.exp),
        ("  - Sum: {dim: [1, 2], keepdim: true}\n", {"x": x}, lambda x: x.sum((1, 2), keepdim=True)),
        ("  - Normalize: {dim: -1}\n", {"x": x}, lambda x: x / x.norm(dim=-1, keepdim=True)),
        ("  - QuickGELU\n", {"x": x}, lambda x: x * torch.sigmoid(1.702 * x)),
        ("  - Softmax: {dim: 1}\n", {"x": x}, lambda x: x.softmax(1)),
        ("  - Positions: {offset: 2}\n", {"x": x}, lambda x: torch.arange(2, 7)),
        ("  - ZeroPad2d: {padding: [0, -1, 1, -2]}\n", {"x": x}, lambda x: torch.nn.functional.pad(x, (0, -1, 1, -2))),
    ],
)  # fmt: skip
def test_ops_compute_what_torch_does(
    body: str, inputs: dict[str, torch.Tensor], expected: Fn
) -> None:
    got = real(body, **inputs)
    want = expected(*inputs.values())
    got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
    for mine, theirs in zip(got, want, strict=True):
        assert mine.shape == theirs.shape and torch.allclose(mine, theirs.to(mine.dtype))


def diffusers_timesteps(t: torch.Tensor, dim: int, flip: bool, shift: float) -> torch.Tensor:
    """diffusers' ``get_timestep_embedding``, as it is written there."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - shift)
    emb = t[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    return torch.cat([emb[:, half:], emb[:, :half]], dim=-1) if flip else emb


def transformer_table(positions: int, dim: int) -> torch.Tensor:
    """The original Transformer's table: sin at even features, cos at odd ones."""
    table = torch.zeros(positions, dim)
    for pos in range(positions):
        for i in range(0, dim, 2):
            table[pos, i] = math.sin(pos / 10000 ** (i / dim))
            table[pos, i + 1] = math.cos(pos / 10000 ** (i / dim))
    return table


def test_sinusoidal_is_diffusers_timestep_embedding_and_the_transformer_table() -> None:
    t = torch.tensor([0, 10, 999])
    got = real("  - Sinusoidal: {dim: 16, flip: true, shift: 1}\n", t=t)
    assert torch.allclose(got, diffusers_timesteps(t, 16, flip=True, shift=1), atol=1e-5)
    table = real("  - Positions\n  - Sinusoidal: {dim: 8, interleave: true}\n", x=x)
    assert torch.allclose(table, transformer_table(5, 8), atol=1e-5)


def rotate_half(q: torch.Tensor, positions: torch.Tensor, rot: int, theta: float) -> torch.Tensor:
    """transformers' ``apply_rotary_pos_emb`` for (B, heads, T, head_dim) with partial
    rotary (Phi): the first ``rot`` features turn, as halves."""
    inv = 1.0 / theta ** (torch.arange(0, rot, 2).float() / rot)
    angles = positions[:, None].float() * inv
    emb = torch.cat([angles, angles], dim=-1)
    turned, kept = q[..., :rot], q[..., rot:]
    halves = torch.cat([-turned[..., rot // 2 :], turned[..., : rot // 2]], dim=-1)
    return torch.cat([turned * emb.cos() + halves * emb.sin(), kept], dim=-1)


@pytest.mark.parametrize("rot", [8, 4])
def test_rotary_turns_each_head_as_transformers_does(rot: int) -> None:
    q = torch.randn(2, 6, 3 * 8)  # 3 heads of 8
    got = real(f"  - Rotary: {{head_dim: 8, rotary_dim: {rot}, theta: 500}}\n", q=q)
    heads = q.view(2, 6, 3, 8).transpose(1, 2)
    want = rotate_half(heads, torch.arange(6), rot, 500).transpose(1, 2).reshape(2, 6, 24)
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, q, atol=1e-3)


def test_rotary_interleaved_turns_neighbouring_pairs() -> None:
    q = torch.randn(1, 4, 4)
    got = real("  - Rotary: {head_dim: 4, interleaved: true}\n", q=q)
    pairs = torch.view_as_complex(q.view(1, 4, 2, 2).contiguous())  # Meta's Llama code
    freqs = 1.0 / 10000 ** (torch.arange(0, 4, 2).float() / 4)
    turns = torch.polar(torch.ones(4, 2), torch.outer(torch.arange(4).float(), freqs))
    want = torch.view_as_real(pairs * turns).reshape(1, 4, 4)
    assert torch.allclose(got, want, atol=1e-6)


def test_attention_with_rope_theta_equals_rotary_around_scaled_dot_product() -> None:
    body = "  - Attention: {dim: 16, heads: 2, bias: false, causal: true, rope_theta: 100}\n"
    model = shapecli.build(spec(body, {"x": "1x5x16"})).eval()  # type: ignore[arg-type]
    attention = model.get_submodule("0")
    h = torch.randn(1, 5, 16)
    q = rotate_half(attention.q(h).view(1, 5, 2, 8).transpose(1, 2), torch.arange(5), 8, 100)
    k = rotate_half(attention.k(h).view(1, 5, 2, 8).transpose(1, 2), torch.arange(5), 8, 100)
    v = attention.v(h).view(1, 5, 2, 8).transpose(1, 2)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    with torch.no_grad():
        want = attention.o(out.transpose(1, 2).reshape(1, 5, 16))
        assert torch.allclose(model(h), want, atol=1e-6)


@pytest.mark.parametrize(
    ("body", "inputs", "output", "params"),
    [
        ("  - Param: {shape: [], init: 2.6592}\n", {"x": "1"}, (), 1),  # CLIP's logit scale
        ("  - ClassToken: {dim: auto, count: 2}\n", {"x": "2x5x8"}, (2, 7, 8), 16),
        ("  - PositionalEmbedding: {num_positions: 9, dim: 8, offset: 2}\n", {"x": "2x7x8"}, (2, 7, 8), 72),
        ("  - LazyConv2d: {out_channels: 4, kernel_size: 3, padding: same}\n", {"x": "1x3x9x9"}, (1, 4, 9, 9), 112),
        ("  - Noise: 2\n  - TopK: {k: 3, largest: false}\n  - Take: 1\n", {"x": "2x8x4"}, (2, 3), 0),
        ("  - Param: {shape: [4, 8]}\n  - Expand:\n    in: [_, x]\n", {"x": "Bx5x8"}, ("B", 4, 8), 32),
        ("  - WeightNorm:\n      dim: 2\n      body:\n        - Conv1d: {in_channels: 8, out_channels: 8, kernel_size: 4, padding: 2, groups: 2}\n"
         "  - Slice: {dim: -1, end: -1}\n", {"x": "2x8x10"}, (2, 8, 10), 4 + 8 * 4 * 4 + 8),
    ],
)  # fmt: skip
def test_shapes_and_counts(
    body: str, inputs: dict[str, str], output: tuple[int | str, ...], params: int
) -> None:
    report = shapecli.inspect(spec(body, inputs))  # type: ignore[arg-type]
    assert report.ok, report.errors
    assert report.rows[0].output_shapes[0] == output
    assert report.totals.params == params


def test_weight_norm_builds_as_torch_weight_norm() -> None:
    from torch.nn.utils.parametrizations import weight_norm

    body = "  - WeightNorm:\n      dim: 2\n      body:\n        - Conv1d: [4, 6, 3]\n"
    model = shapecli.build(spec(body, {"x": "1x4x7"})).eval()  # type: ignore[arg-type]
    conv = model.get_submodule("0.body.0")
    names = {n for n, _ in conv.named_parameters()}
    assert names == {
        "bias",
        "parametrizations.weight.original0",
        "parametrizations.weight.original1",
    }
    plain = torch.nn.Conv1d(4, 6, 3)
    weight_norm(plain, dim=2)
    plain.load_state_dict(conv.state_dict())
    h = torch.randn(1, 4, 7)
    with torch.no_grad():
        assert torch.allclose(model(h), plain(h))
        assert not torch.isnan(model(h)).any()


def moe(experts: int, top_k: int, renormalize: bool = True) -> str:
    return (
        f"  - MoE:\n      top_k: {top_k}\n      renormalize: {str(renormalize).lower()}\n"
        "      experts:\n"
        "        - Sequential:\n"
        "            - {LazyLinear: {out_features: 6, bias: false}, name: up}\n"
        "            - SiLU\n"
        "            - {LazyLinear: {out_features: 4, bias: false}, name: down}\n"
        f"          repeat: {experts}\n          name: expert\n"
    )


@pytest.mark.parametrize(("experts", "top_k", "tokens"), [(4, 2, 10), (3, 2, 7), (8, 1, 3)])
def test_moe_counts_the_flops_of_routed_experts_as_a_real_run_does(
    experts: int, top_k: int, tokens: int
) -> None:
    """On meta the tokens are dealt evenly (7 · 2 rows over 3 experts: 5, 5, 4; 3 rows
    over 8: some get none); a real run routes by score. The FLOPs are the same."""
    body = moe(experts, top_k)
    shapes = {"x": f"1x{tokens}x4"}
    report = shapecli.inspect(spec(body, shapes), flops=True)  # type: ignore[arg-type]
    assert report.ok, report.errors
    model = shapecli.build(spec(body, shapes)).eval()  # type: ignore[arg-type]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, tokens, 4))
    routed = tokens * top_k * 2 * (4 * 6 + 6 * 4)
    assert report.totals.flops == counter.get_total_flops() == routed + 2 * tokens * 4 * experts


@pytest.mark.parametrize("renormalize", [True, False])
def test_moe_is_the_weighted_sum_of_the_chosen_experts(renormalize: bool) -> None:
    model = shapecli.build(spec(moe(4, 2, renormalize), {"x": "2x3x4"})).eval()  # type: ignore[arg-type]
    layer = model.get_submodule("0")
    h = torch.randn(2, 3, 4)
    with torch.no_grad():
        got = model(h)
        tokens = h.reshape(6, 4)
        scores = layer.router(tokens).softmax(-1)
        weights, chosen = scores.topk(2, dim=-1)
        if renormalize:
            weights = weights / weights.sum(-1, keepdim=True)
        experts = list(layer.experts.get_submodule("expert").children())
        want = torch.stack([
            sum(w * experts[int(e)](t) for w, e in zip(weights[i], chosen[i], strict=True))
            for i, t in enumerate(tokens)
        ])  # fmt: skip
    assert torch.allclose(got.reshape(6, 4), want, atol=1e-6)


# The symbolic pass lets the layer's own warning through (the dry run beside it reports it).
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:the router chooses by value")
def test_moe_runs_with_a_symbolic_batch() -> None:
    report = shapecli.inspect(spec(moe(4, 2), {"x": "Bx3x4"}))  # type: ignore[arg-type]
    assert report.ok, report.errors
    assert report.rows[0].output_shapes[0] == ("B", 3, 4)


@pytest.mark.parametrize(
    ("body", "inputs", "fragment"),
    [
        ("  - Slice: {dim: 1, start: 9}\n", {"x": "2x5x8"}, "is empty"),
        ("  - Chunk: {chunks: 3, dim: 1}\n", {"x": "2x5x8"}, "a multiple of 3"),
        ("  - Split: {size: [3, 3]}\n", {"x": "2x5x8"}, "size 6"),
        ("  - TopK: 9\n", {"x": "2x5x8"}, "at least 9 values"),
        ("  - Gather: 1\n    in: [x, i]\n", {"x": "2x5x8", "i": "3x2:long"}, "2×K"),
        ("  - Gather: 1\n    in: [x, i]\n", {"x": "2x5x8", "i": "2x2"}, "whole-number"),
        ("  - Expand:\n    in: [t, x]\n", {"t": "2x3x8", "x": "4x3x8"}, "size 1 in dim 0"),
        ("  - Expand: 1\n    in: [t, x]\n", {"t": "1x3x8", "x": "2x4x8"}, "size 1 in dim 1"),
        ("  - ReshapeAs:\n    in: [x, t]\n", {"x": "2x5x8", "t": "2x8"}, "16 elements"),
        ("  - Rotary: 6\n", {"x": "2x5x8"}, "heads·6"),
        ("  - PositionalEmbedding: {num_positions: 6, dim: 8, offset: 2}\n", {"x": "2x5x8"}, "T ≤ 4"),
    ],
)  # fmt: skip
def test_ops_say_what_they_expected(body: str, inputs: dict[str, str], fragment: str) -> None:
    report = shapecli.inspect(spec(body, inputs))  # type: ignore[arg-type]
    (error,) = report.errors
    assert error.code == "shape-mismatch"
    assert fragment in (error.expected or "") + error.message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("  - Slice: {step: 0}\n", "step 0 must be at least 1"),
        ("  - Rotary: {head_dim: 8, rotary_dim: 3}\n", "rotary_dim 3 must be even"),
        ("  - Attention: {dim: 16, heads: 2, rope_theta: 10000, rotary_dim: 10}\n", "at most head_dim 8"),
        ("  - Sinusoidal: 7\n", "must be even"),
        ("  - Scale: {by: 0, power: -1}\n", "not a number"),
        ("  - ClassToken: {dim: 8, count: 0}\n", "count 0"),
        ("  - PositionalEmbedding: {num_positions: 4, dim: 8, offset: 4}\n", "offset 4"),
        ("  - Param: {shape: [0]}\n", "sizes of at least 1"),
        ("  - WeightNorm: [{LazyConv1d: [4, 3]}]\n", "needs its layers' sizes"),
        ("  - MoE: {top_k: 3, experts: [{LazyLinear: 4, repeat: 2}]}\n", "top_k 3"),
        ("  - Conv2d: {in_channels: 3, out_channels: 4, kernel_size: 3, padding: -1}\n", "cannot be negative"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_at_their_entry(body: str, fragment: str) -> None:
    report = shapecli.inspect(spec(body, {"x": "2x5x8"}))  # type: ignore[arg-type]
    (error,) = report.errors
    assert error.code == "bad-arguments"
    assert fragment in error.message
    assert error.source is not None and error.source.line == 3


def test_moe_says_its_experts_rows_are_not_derived_and_verify_checks_what_is(
    tmp_path: Path,
) -> None:
    """The experts' rows leave what the routing decides not derived; ``--verify``
    compares every size they still claim (see tests/test_moe.py)."""
    shapes = {"x": "1x5x4"}
    report = shapecli.inspect(spec(moe(4, 2), shapes))  # type: ignore[arg-type]
    (warning,) = report.warnings
    assert warning.path == "0" and "? (not derived)" in warning.message
    from shapecli.api import build_file

    built = build_file(spec(moe(4, 2), shapes), tmp_path / "m.safetensors", verify=True)  # type: ignore[arg-type]
    assert built.verified_rows == len([r for r in report.rows if r.status == "ok"])
