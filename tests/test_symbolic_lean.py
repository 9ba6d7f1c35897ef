"""The symbolic run's speed-ups (``shapecli.symbolic.lean``) change no shape: each shape
rule against the layer's own forward at many sizes, and torch left as it was found."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import shapecli
from conftest import CONFIGS
from shapecli.layers import own
from shapecli.symbolic import lean


def meta(*shape: int) -> torch.Tensor:
    return torch.empty(shape, device="meta")


def outcome(call: object, *args: torch.Tensor) -> tuple[int, ...] | None:
    """The output shape of ``call(*args)``, or None if it raises."""
    try:
        result = call(*args)  # type: ignore[operator]
    except Exception:
        return None
    return None if result is None else tuple(result.shape)


SIZES = [1, 2, 3, 6, 7, 8, 12, 14, 15, 16]


@pytest.mark.parametrize(
    ("layer", "make"),
    [
        (own.WindowPartition(4), lambda h, w: (meta(2, h, w, 3),)),
        (own.WindowMerge(4), lambda h, w: (meta(2 * (h // 4) * (w // 4), 16, 3), meta(2, h, w, 3))),
        (own.WindowMerge(4), lambda h, w: (meta(h, 16, 3), meta(2, w, w, 3))),
        (nn.PixelUnshuffle(2), lambda h, w: (meta(2, 3, h, w),)),
        (nn.PixelShuffle(2), lambda h, w: (meta(2, h, 5, w),)),
        (nn.Linear(7, 5, device="meta"), lambda h, w: (meta(2, h, w),)),
        (own.PositionalEmbedding(12, 3, offset=2).to("meta"), lambda h, w: (meta(2, h, w),)),
        (nn.Flatten(), lambda h, w: (meta(2, 3, h, w),)),
        (nn.Flatten(0, -1), lambda h, w: (meta(h, w),)),
        (nn.Flatten(-2, 1), lambda h, w: (meta(2, h, w),)),
        (nn.Flatten(2, 1), lambda h, w: (meta(2, h, w),)),
        (nn.Flatten(1, 3), lambda h, w: (meta(h, w),)),
        (nn.Flatten(), lambda h, w: (meta(h),)),
        (own.PositionalEmbedding(12, 3).to("meta"), lambda h, w: (meta(h, w),)),
    ],
)
def test_a_shape_rule_is_the_layer_s_own_shape(layer: nn.Module, make: object) -> None:
    rule = lean._shape_rules()[type(layer)]
    for h, w in itertools.product(SIZES, SIZES):
        args = make(h, w)  # type: ignore[operator]
        theirs = outcome(layer, *args)
        mine = outcome(lambda *a: rule(layer, *a), *args)
        # where the rule answers, it answers what the layer does; where the layer
        # fails, the rule leaves it to the layer (None), which fails as it would
        assert mine is None or mine == theirs, (type(layer).__name__, h, w)
        assert theirs is not None or mine is None


def attention(**options: object) -> own.Attention:
    return own.Attention(**{"dim": 8, "heads": 2, **options}).to("meta")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("layer", "extra"),
    [
        (attention(), {}),
        (attention(fused_qkv=True, causal=True), {}),
        (attention(kv_heads=1, head_dim=3), {}),
        (attention(rope_theta=10000.0), {}),
        (attention(fused_qkv=True), {"bias": (2, 5, 5)}),
        (attention(), {"bias": (1, 2, 5, 5)}),
        (attention(), {"bias": (2, 1, 5)}),
        (attention(), {"bias": (3, 5, 5)}),
        (attention(), {"bias": (2, 2, 5, 5)}),
        (attention(), {"mask": (5, 5)}),
        (attention(), {"context": (2, 5, 8)}),
    ],
)
def test_the_attention_rule_is_the_layer_s_own_shape(
    layer: own.Attention, extra: dict[str, tuple[int, ...]]
) -> None:
    """Given by name, as a spec's ``in: {x: …, bias: …}`` passes them; the rule answers
    only where the layer works, and leaves a mask, a context and rotary to the layer."""
    rule = lean._shape_rules()[own.Attention]
    for b, t, dim in itertools.product((1, 2, 3), (1, 4, 5), (8, 6)):
        kwargs = {"x": meta(b, t, dim), **{k: meta(*v) for k, v in extra.items()}}
        theirs = outcome(functools.partial(layer, **kwargs))
        mine = outcome(functools.partial(rule, layer, **kwargs))
        assert mine is None or mine == theirs, (extra, b, t, dim)
        assert theirs is not None or mine is None
        bias = extra.get("bias")
        answers = dim == 8 and (bias is None or (t == 5 and bias[:-3] in ((), (1,))))
        if not ({"mask", "context"} & set(extra) or layer.rope_theta) and theirs is not None:
            assert (mine is not None) == answers, (extra, b, t, dim)


def test_the_attention_rule_calls_the_projections() -> None:
    """Their rows need their shapes: each projection sees what it would in the layer."""
    for layer in (attention(), attention(fused_qkv=True)):
        seen: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
        for name, child in layer.named_children():
            child.register_forward_hook(
                lambda m, a, out, name=name, seen=seen: seen.append((name, a[0].shape, out.shape))
            )
        layer(meta(2, 5, 8))
        theirs = sorted(seen)
        seen.clear()
        lean._shape_rules()[own.Attention](layer, meta(2, 5, 8))
        assert sorted(seen) == theirs and len(theirs) in (2, 4)


@pytest.mark.slow
def test_torch_and_the_layers_are_left_as_they_were() -> None:
    from torch.fx.experimental import symbolic_shapes

    from shapecli.construct import build_modules

    model = build_modules(shapecli.load(CONFIGS / "resnet18.yaml"), ()).model
    before = symbolic_shapes.uninteresting_files
    with lean.lean_symbolic(model):
        assert sum("forward" in vars(m) for m in model.modules()) >= 10  # BatchNorms, ReLUs
    assert not any("forward" in vars(m) for m in model.modules())
    assert symbolic_shapes.uninteresting_files is before
    report = shapecli.inspect(CONFIGS / "resnet18.yaml", input="Bx3xHxW")
    assert report.ok and symbolic_shapes.uninteresting_files is before


@pytest.mark.process
@pytest.mark.slow
def test_symbolic_sizes_import_no_torch_export() -> None:
    """torch's list of uninteresting files imports ``torch.export._trace`` (~0.3 s) for
    its file name: neither the ShapeEnv's self-check nor the symbolic run makes it."""
    import subprocess
    import sys

    code = (
        "import sys, shapecli\n"
        f"report = shapecli.inspect({str(CONFIGS / 'resnet18.yaml')!r}, input='Bx3xHxW')\n"
        "assert report.ok and report.constraints is not None\n"
        "print('torch.export._trace' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert done.stdout.strip() == "False"


def test_the_symbolic_run_makes_no_fake_tensor_cache_entries() -> None:
    """With symbolic sizes torch's fake-tensor cache costs more than it saves (each new
    entry rebuilds its output in sympy to check it): the run leaves it off."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    spec = (
        "input: Bx3x16x16\nmodel:\n  - Conv2d: [3, 4, 3]\n  - Slice: {dim: 2, start: 0, step: 2}\n"
    )
    before = (FakeTensorMode.cache_hits, FakeTensorMode.cache_misses)
    report = shapecli.inspect(spec, input="Bx3xHxW")
    assert report.ok and report.constraints is not None
    assert (FakeTensorMode.cache_hits, FakeTensorMode.cache_misses) == before


@pytest.mark.process
@pytest.mark.slow
def test_a_positional_table_and_attention_import_no_distributed_tensors(
    write: Callable[..., Path],
) -> None:
    """In the CLI's process (where torch's compiler is not imported), slicing a
    positional table by a symbolic T in torch's fake mode imports
    ``torch.distributed.tensor`` (0.3 s): the shape rules leave it out."""
    import subprocess
    import sys

    spec = write(
        "input: 1x16:long\nmodel:\n  - Embedding: [50, 8]\n  - PositionalEmbedding: [16, 8]\n"
        "  - Attention: {dim: 8, heads: 2, causal: true}\n"
    )
    code = (
        "import sys\n"
        "from shapecli import speedups\n"
        "from shapecli.cli import run_cli\n"
        "speedups.own_the_process()\n"
        f"assert run_cli(['inspect', {str(spec)!r}, '-i', 'BxT:long', '-f', 'json']) == 0\n"
        "print('torch.distributed.tensor' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert '"T <= 16"' in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "False"
