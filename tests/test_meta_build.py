"""``shapecli.build(…, device="meta")`` and ``shapecli.initialize``, in one process.

The model to shard: every tensor on meta, sized, at its dtype, ties in place; once it
has memory, ``initialize`` gives it the weights ``build`` would have, bit for bit.
Sharded over several processes, the same is checked by ``tests/test_distributed.py``.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import shapecli
from conftest import CONFIGS, ROOT
from shapecli.errors import ShapecliError
from shapecli.spec.parse import parse_spec

SMALL_GPT2 = {"vocab": 99, "d": 32, "layers": 2, "heads": 2, "context": 16}

#: Entries with their own schemes, a tie, a buffer computed by its layer, batch norm's
#: integer step count: what initializing has to get right beside plain weights.
MIXED = """\
init: orthogonal
input: 2x6:long
model:
  - Embedding: [50, 16]
    name: emb
    init: normal
  - Linear: [16, 16]
  - Sequential:
      - Linear: [16, 16]
    init: default
  - Transpose: [1, 2]
  - LazyBatchNorm1d
  - Transpose: [1, 2]
  - LazyLinear: {out_features: 50, bias: false}
    name: head
    tie: {weight: emb.weight}
"""


def tensors(model: nn.Module) -> list[torch.Tensor]:
    return [*model.parameters(), *model.buffers()]


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_on_meta_nothing_is_allocated_and_ties_are_in_place() -> None:
    model = shapecli.build(CONFIGS / "gpt2.yaml", "1x16:long", set=SMALL_GPT2, device="meta")
    assert all(t.is_meta for t in tensors(model))
    assert model.lm_head.weight is model.wte.weight
    assert tuple(model.wte.weight.shape) == (99, 32)  # sized by the dry run
    assert (
        sum(p.numel() for p in model.parameters())
        == shapecli.inspect(CONFIGS / "gpt2.yaml", "1x16:long", set=SMALL_GPT2).totals.params
    )


@pytest.mark.slow
def test_on_meta_the_dtype_is_set_and_max_memory_does_not_apply() -> None:
    model = shapecli.build(
        CONFIGS / "llama2-70b.yaml", "1x8:long", dtype="bfloat16", max_memory="1MB", device="meta"
    )
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert sum(p.numel() for p in model.parameters()) == 68_976_648_192


@pytest.mark.parametrize("init", [None, "xavier_uniform", "kaiming_normal"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_materialized_and_initialized_equals_build(init: str | None, dtype: str) -> None:
    """``to_empty`` unties; ``initialize`` ties again and sets every tensor as ``build``
    does: the spec's schemes, the entries' own, the tie's, the buffers."""
    spec = parse_spec(MIXED, "mixed.yaml")
    model = shapecli.build(spec, device="meta", init=init, dtype=dtype)
    model.to_empty(device="cpu")
    shapecli.initialize(model, seed=5)
    assert model.head.weight is model.emb.weight
    assert same_state(model, shapecli.build(spec, init=init, seed=5, dtype=dtype))


def test_initialize_takes_its_own_scheme_and_seed() -> None:
    spec = parse_spec(MIXED, "mixed.yaml")
    model = shapecli.build(spec, seed=1)
    shapecli.initialize(model, init="xavier_normal", seed=2)
    assert same_state(model, shapecli.build(spec, init="xavier_normal", seed=2))


def test_initialize_leaves_the_global_random_state_alone() -> None:
    model = shapecli.build(CONFIGS / "mlp.yaml", device="meta")
    model.to_empty(device="cpu")
    torch.manual_seed(7)
    before = torch.rand(3)
    torch.manual_seed(7)
    shapecli.initialize(model, seed=0)
    assert torch.equal(torch.rand(3), before)


def test_a_buffer_computed_by_its_layer_is_computed_again() -> None:
    from shapecli.layers.own import RelativePositionBias

    text = "input: 1x1\nmodel:\n  - Param: {shape: [9, 2]}\n  - RelativePositionBias: 2\n"
    model = shapecli.build(parse_spec(text, "s.yaml"), device="meta")
    model.to_empty(device="cpu")
    shapecli.initialize(model)
    assert torch.equal(model[1].index, RelativePositionBias(2).index)


def test_a_model_shapecli_did_not_build_is_refused() -> None:
    with pytest.raises(ShapecliError, match=r"needs a model that shapecli\.build made") as info:
        shapecli.initialize(nn.Linear(2, 2))
    assert info.value.problem.code == "usage"
    copied = copy.deepcopy(shapecli.build(CONFIGS / "mlp.yaml"))
    with pytest.raises(ShapecliError, match="or is a copy of one"):
        shapecli.initialize(copied)


def test_a_model_still_on_meta_is_refused_with_the_way_out() -> None:
    model = shapecli.build(CONFIGS / "mlp.yaml", device="meta")
    with pytest.raises(ShapecliError, match=r"`0\.weight` is still on the meta device") as info:
        shapecli.initialize(model)
    assert info.value.problem.hint is not None and "to_empty" in info.value.problem.hint


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"device": "cuda"}, "device 'cuda': one of 'cpu', 'meta'"),
        ({"device": "meta", "weights": "w.safetensors"}, 'device="meta" allocates none'),
    ],
)
def test_what_build_on_meta_cannot_do_is_a_usage_error(
    options: dict[str, str], message: str
) -> None:
    with pytest.raises(ShapecliError, match=message) as info:
        shapecli.build(CONFIGS / "mlp.yaml", **options)  # type: ignore[arg-type]
    assert info.value.problem.code == "usage"


@pytest.mark.parametrize(("init", "seed"), [("uniform", 0), (None, -1)])
def test_initialize_checks_its_arguments(init: str | None, seed: int) -> None:
    model = shapecli.build(CONFIGS / "mlp.yaml")
    with pytest.raises(ShapecliError) as info:
        shapecli.initialize(model, init=init, seed=seed)
    assert info.value.problem.code == "usage"


@pytest.mark.process
def test_the_package_exports_initialize_without_importing_torch() -> None:
    """``shapecli.initialize`` is the function, also once the module that does the work
    is imported (a submodule of that name would replace it on the package)."""
    import shapecli.weight_init

    assert callable(shapecli.initialize) and shapecli.initialize.__module__ == "shapecli.api"
    code = "import sys, shapecli; shapecli.__getattr__; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "False"


def test_the_too_large_refusal_points_to_the_sharded_recipe() -> None:
    with pytest.raises(ShapecliError) as info:
        shapecli.build(CONFIGS / "mlp.yaml", max_memory="10KB")
    hint = info.value.problem.hint or ""
    assert 'device="meta"' in hint and "shapecli.initialize" in hint
    named = re.search(r"docs/[\w.]+\.md", hint)
    assert named is not None, hint
    recipe = (Path(ROOT) / named.group()).read_text(encoding="utf-8")  # the file the hint names
    assert 'shapecli.build(sys.argv[1], device="meta")' in recipe
    assert "shapecli.initialize(model" in recipe
