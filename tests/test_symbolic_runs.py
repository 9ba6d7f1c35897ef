"""The checking runs' shortcuts for BatchNorm, LayerNorm and Linear
(``shapecli.symbolic.runs``) take and refuse what the layer's own forward takes and
refuses, with the same shape."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch
from torch import nn

from shapecli.symbolic import runs


def outcome(call: object, x: torch.Tensor | None) -> tuple[int, ...] | None:
    """The shape ``call(x)`` gives (``call()`` for None), or None if it raises."""
    try:
        return tuple((call() if x is None else call(x)).shape)  # type: ignore[operator]
    except Exception:
        return None


@pytest.mark.parametrize(
    ("kind", "training", "track", "affine"),
    list(
        itertools.product(
            (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
            (False, True),
            (True, False),
            (True, False),
        )
    ),
)
def test_a_batch_norm_by_shape_is_the_layer_s_own_outcome(
    kind: type[nn.Module], training: bool, track: bool, affine: bool
) -> None:
    layer = kind(4, affine=affine, track_running_stats=track, device="meta").train(training)
    shortcut = runs._batch_norm_by_shape(layer, layer.forward)
    for rank, channels, dtype in itertools.product(
        range(1, 7), (1, 3, 4), (torch.float32, torch.float16, torch.int64)
    ):
        for sizes in ((1,) * rank, (2,) * rank, tuple(range(1, rank + 1))):
            shape = (sizes[0], channels, *sizes[2:]) if rank >= 2 else sizes
            x = torch.empty(shape, dtype=dtype, device="meta")
            assert outcome(shortcut, x) == outcome(layer, x), (shape, dtype)


def test_a_checking_run_leaves_the_layers_as_they_were() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).to("meta").eval()
    hooks = runs._ByShape(model)
    hooks.install()
    assert "forward" in vars(model[1])
    assert tuple(model(torch.empty(2, 3, 9, 9, device="meta")).shape) == (2, 4, 7, 7)
    hooks.remove()
    assert not any("forward" in vars(m) for m in model.modules())


DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.int64)


@pytest.mark.parametrize(
    ("normalized", "affine", "bias", "dtype"),
    list(itertools.product(((4,), (3, 4), (1,)), (True, False), (True, False), DTYPES[:2])),
)
def test_a_layer_norm_by_shape_is_the_layer_s_own_outcome(
    normalized: tuple[int, ...], affine: bool, bias: bool, dtype: torch.dtype
) -> None:
    layer = nn.LayerNorm(
        normalized, elementwise_affine=affine, bias=bias, device="meta", dtype=dtype
    )
    shortcut = runs._layer_norm_by_shape(layer, layer.forward)
    for rank, last, given in itertools.product(range(0, 5), (1, 3, 4), DTYPES):
        shape = (*(2,) * max(0, rank - 2), 3, last)[-rank:] if rank else ()
        x = torch.empty(shape, dtype=given, device="meta")
        assert outcome(shortcut, x) == outcome(layer, x), (shape, given)


@pytest.mark.parametrize(("bias", "dtype"), list(itertools.product((True, False), DTYPES[:3])))
def test_a_linear_by_shape_is_the_layer_s_own_outcome(bias: bool, dtype: torch.dtype) -> None:
    layer = nn.Linear(4, 5, bias=bias, device="meta", dtype=dtype)
    shortcut = runs._linear_by_shape(layer, layer.forward)
    for rank, last, given in itertools.product(range(0, 5), (1, 4, 5), DTYPES):
        shape = (*(3,) * max(0, rank - 1), last)[-rank:] if rank else ()
        x = torch.empty(shape, dtype=given, device="meta")
        assert outcome(shortcut, x) == outcome(layer, x), (shape, given)


def test_a_checking_run_takes_layers_by_shape() -> None:
    """LayerNorm, Linear and GELU are replaced during a checking run, and only then; a
    layer of no type with a shortcut is left alone."""
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.GELU(), nn.Softmax(-1))
    model = model.to("meta").eval()
    hooks = runs._ByShape(model)
    hooks.install()
    assert all("forward" in vars(model[i]) for i in range(3))
    assert "forward" not in vars(model[3])
    assert tuple(model(torch.empty(2, 7, 3, device="meta")).shape) == (2, 7, 4)
    hooks.remove()
    assert not any("forward" in vars(m) for m in model.modules())


@pytest.mark.parametrize(
    ("kind", "training"), list(itertools.product(runs._ACTIVATIONS, (False, True)))
)
def test_an_activation_by_shape_is_the_layer_s_own_outcome(
    kind: type[nn.Module], training: bool
) -> None:
    layer = kind().train(training)
    shortcut = runs._activation_by_shape(layer, layer.forward)
    for rank, given in itertools.product(range(0, 5), DTYPES):
        x = torch.empty((3,) * rank, dtype=given, device="meta")
        assert outcome(shortcut, x) == outcome(layer, x), (rank, given)


@pytest.mark.parametrize(
    ("options", "extra", "dtype"),
    [
        ({}, {}, torch.float32),
        ({"fused_qkv": True, "causal": True}, {}, torch.float32),
        ({"kv_heads": 1, "head_dim": 3}, {}, torch.bfloat16),
        ({"fused_qkv": True}, {"bias": (2, 5, 5)}, torch.float32),
        ({}, {"bias": (1, 2, 1, 5)}, torch.float16),
        ({}, {"bias": (3, 5, 5)}, torch.float32),
        ({}, {"mask": (5, 5)}, torch.float32),
        ({"rope_theta": 10000.0}, {}, torch.float32),
    ],
)
def test_an_attention_by_shape_is_the_layer_s_own_outcome(
    options: dict[str, object], extra: dict[str, tuple[int, ...]], dtype: torch.dtype
) -> None:
    from shapecli.layers import own

    layer = own.Attention(**{"dim": 8, "heads": 2, **options}).to("meta", dtype)  # type: ignore[arg-type]
    shortcut = runs._attention_by_shape(layer, layer.forward)
    for b, t, dim, given in itertools.product((1, 2), (1, 5), (8, 6), DTYPES):
        kwargs = {"x": torch.empty(b, t, dim, dtype=given, device="meta")}
        kwargs |= {k: torch.empty(v, device="meta") for k, v in extra.items()}
        mine = outcome(functools.partial(shortcut, **kwargs), None)
        theirs = outcome(functools.partial(layer, **kwargs), None)
        assert mine == theirs, (b, t, dim, given)
