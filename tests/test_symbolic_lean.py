"""The symbolic run's speed-ups (``shapecli.symbolic.lean``) change no shape: each shape
rule against the layer's own forward at many sizes, and torch left as it was found."""

from __future__ import annotations

import itertools

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
