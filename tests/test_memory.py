"""The training estimate against real CPU training steps, measured by torch itself.

shapecli's training pass runs on fake CPU tensors, so torch picks the CPU's kernels:
flash attention for the CPU, oneDNN's LSTM (whose workspace shapecli sizes as oneDNN
does). Each figure is held to what a real step on real tensors holds
(``tests/realtorch.py``), and the table of docs/analysis.md is this measurement.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from torch import nn

import realtorch
import shapecli
from conftest import CONFIGS, ROOT
from realtorch import CASES, Case, estimate, measure, measured
from shapecli import memory
from shapecli.spec.parse import parse_spec


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.title for c in CASES])
def test_every_figure_equals_a_real_cpu_training_step(case: Case) -> None:
    """MLP, CNNs, LSTM (oneDNN), GRU, attention with the flash and the math kernel,
    llama-tiny at its own input, in float32 and bfloat16: byte for byte."""
    ours, real = measured(case)
    assert ours.saved == real.saved
    assert ours.gradients == real.gradients
    assert ours.optimizer_state == real.optimizer_state
    assert ours.flops == real.flops


@pytest.mark.slow
def test_the_docs_quote_the_measured_table() -> None:
    """docs/analysis.md's table is what ``python tests/realtorch.py`` prints, not typed."""
    readme = (ROOT / "docs" / "analysis.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(readme) if "| model | input | saved for" in line)
    end = next(i for i in range(start, len(readme)) if not readme[i].strip())
    quoted = "".join(line.strip() + "\n" for line in readme[start:end])
    assert quoted == realtorch.table()


SHIPPED: list[tuple[str, Any, dict[str, Any]]] = [
    ("bert-base", ["ids=1x32:long", "types=1x32:long", "mask=1x32:bool"], {"layers": 1}),
    ("t5-small", ["ids=1x16:long", "decoder_ids=1x8:long"], {"layers": 1, "vocab": 1000}),
    ("whisper-tiny", None, {"layers": 1, "vocab": 1000}),
    ("vit-b16", None, {"layers": 1}),
    ("mobilenetv2", "2x3x32x32", {}),
    ("alexnet", "2x3x64x64", {}),
]


@pytest.mark.slow
@pytest.mark.parametrize(("config", "shape", "params"), SHIPPED, ids=[s[0] for s in SHIPPED])
def test_shipped_configs_at_small_inputs(config: str, shape: Any, params: dict[str, Any]) -> None:
    spec = CONFIGS / f"{config}.yaml"
    ours = estimate(spec, shape, set=params, optimizers=("adam",))
    real = measure(spec, shape, set=params, optimizers=("adam",))
    assert (ours.saved, ours.optimizer_state, ours.flops) == (
        real.saved,
        real.optimizer_state,
        real.flops,
    )
    # A parameter whose gradient torch hands over as a slice of a larger one (ViT's class
    # token: a slice of the gradient of the concatenation) keeps all of it alive; the
    # estimate counts each gradient at its parameter's size.
    assert ours.gradients is not None and real.gradients is not None
    assert real.gradients * 0.98 <= ours.gradients <= real.gradients


# -- the optimizer's state -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["bfloat16", "float64"])
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd-momentum", "sgd"])
def test_the_optimizer_state_is_in_the_parameters_dtype(dtype: str, optimizer: str) -> None:
    """torch's Adam keeps exp_avg and exp_avg_sq with ``zeros_like(param)``, SGD's
    momentum buffer is a clone of the gradient: the parameters' dtype, not float32."""
    spec = CONFIGS / "mlp.yaml"
    ours = estimate(spec, dtype=dtype, optimizers=(optimizer,)).optimizer_state[optimizer]
    real = measure(spec, dtype=dtype, optimizers=(optimizer,)).optimizer_state[optimizer]
    size = torch.empty((), dtype=getattr(torch, dtype)).element_size()
    states, steps = {"adam": (2, 4), "adamw": (2, 4), "sgd-momentum": (1, 0), "sgd": (0, 0)}[
        optimizer
    ]
    assert ours == real == states * size * 7_946 + steps * 4


UNUSED = """\
input: 2x8
model:
  - Parallel:
      branches:
        - [{LazyLinear: 4}]
        - [{LazyLinear: 4}, {LazyLinear: 2, trainable: false}]
      merge: tuple
  - Take: 0
  - LazyLinear: 3
"""


def test_only_parameters_the_loss_reaches_get_gradients_and_state() -> None:
    """The second branch is computed and dropped (``Take: 0``), the third layer is
    frozen: no gradient and no optimizer state for them, in torch or in the estimate."""
    ours = estimate(UNUSED, optimizers=("adam", "sgd-momentum"))
    real = measure(UNUSED, optimizers=("adam", "sgd-momentum"))
    assert ours == real
    reached = (8 * 4 + 4) + (4 * 3 + 3)  # the first branch and the head
    assert ours.gradients == reached * 4
    assert ours.optimizer_state["adam"] == 2 * reached * 4 + 4 * 4


@pytest.mark.slow
def test_tied_weights_get_one_gradient_and_one_state() -> None:
    case = Case("tied", CONFIGS / "gpt2.yaml", "1x16:long", set=(("layers", 1), ("vocab", 50)))
    ours, real = measured(case)
    assert ours == real
    params = shapecli.inspect(CONFIGS / "gpt2.yaml", "1x16:long", set=dict(case.set)).totals
    assert ours.gradients == params.param_bytes  # the head is wte: counted once


# -- what the CPU's kernels keep ---------------------------------------------------------------


def attention(t: int, extra: str = "") -> str:
    return f"input: 2x{t}x64\nmodel:\n  - Attention: {{dim: 64, heads: 4{extra}}}\n"


def saved(spec: str) -> int:
    report = shapecli.inspect(parse_spec(spec, "a.yaml"), memory=True)
    assert report.totals.memory is not None and report.totals.memory.saved_for_backward
    return report.totals.memory.saved_for_backward


def test_flash_attention_keeps_no_attention_weights() -> None:
    """The CPU's flash attention keeps q, k, v, the output and a log-sum-exp per row:
    what it saves grows with T, not T². The meta device's reference kernel kept the
    T×T weights (4.1× the real bytes at T = 256)."""
    assert saved(attention(512)) == 2 * saved(attention(256))
    # with dropout, torch runs the math kernel, which does keep the weights
    assert saved(attention(512, ", dropout: 0.1")) > 3 * saved(attention(256, ", dropout: 0.1"))


@pytest.mark.parametrize(
    ("steps", "batch", "features", "hidden"),
    [(1, 1, 1, 1), (7, 3, 10, 20), (5, 2, 64, 64), (3, 4, 300, 128), (2, 3, 33, 520)],
)
def test_onednn_lstm_workspace_is_sized_as_onednn_sizes_it(
    steps: int, batch: int, features: int, hidden: int
) -> None:
    """Leading dimensions padded to 64 bytes and off multiples of 1 KiB, each part on
    its own 4 KiB page: the formula against the workspace a real LSTM keeps."""
    assert memory._real_workspace(steps, batch, features, hidden) == (
        memory.onednn_lstm_workspace(steps, batch, features, hidden)
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "lstm",
    [
        "LSTM: {input_size: 6, hidden_size: 32, num_layers: 3, bidirectional: true}",
        "LSTM: {input_size: 6, hidden_size: 32, batch_first: true, dropout: 0.5, num_layers: 2}",
        "LSTM: {input_size: 6, hidden_size: 32, proj_size: 8}",  # not oneDNN's: torch's own
    ],
)
def test_lstm_variants_equal_a_real_step(lstm: str) -> None:
    spec = f"input: 9x4x6\nmodel:\n  - {lstm}\n  - Take: 0\n"
    assert estimate(spec, optimizers=("adam",)) == measure(spec, optimizers=("adam",))


@pytest.mark.parametrize(
    "bag",
    [
        "mode: mean",
        "mode: sum",
        "mode: max",
        "mode: sum, padding_idx: 0",
        "mode: mean, max_norm: 1.0",
    ],
)
def test_embedding_bag_keeps_what_the_cpu_kernel_keeps(bag: str) -> None:
    """The CPU kernel counts each index's bag into one slot more than there are
    indices and keeps that storage: 8 bytes the fake kernel does not make."""
    spec = f"input: 4x6:long\nmodel:\n  - EmbeddingBag: {{num_embeddings: 20, embedding_dim: 8, {bag}}}\n"
    assert estimate(spec, optimizers=("adam",)) == measure(spec, optimizers=("adam",))


def test_an_unmodelled_workspace_is_not_derived_and_says_where(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where oneDNN's workspace is not modelled (the formula disagrees with this CPU's
    oneDNN, or a dtype other than float32), the estimate says so at the layer, and
    prints no training figures rather than a wrong one."""
    monkeypatch.setattr(memory, "_workspace_formula_holds", lambda: False)
    report = shapecli.inspect(CONFIGS / "lstm-classifier.yaml", "2x8:long", memory=True)
    assert report.ok and report.totals.memory is not None
    assert report.totals.memory.saved_for_backward is None
    assert report.totals.memory.training_peak is None
    (warning,) = report.warnings
    assert warning.code == "training-estimate" and warning.path == "1"
    assert warning.message == (
        "the training estimate is not derived for layer 1 (LSTM): oneDNN on this CPU sizes "
        "its LSTM workspace unlike the model of it"
    )
    assert warning.source is not None and warning.source.line == 11


def test_a_bfloat16_onednn_lstm_is_not_derived() -> None:
    """On a CPU where torch runs oneDNN's LSTM in bfloat16 the workspace is not
    modelled: the dispatch is simulated by calling the layer's kernel directly."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(), pytest.raises(memory.NotDerived, match="in bfloat16 is not modelled"):
        x = torch.empty(5, 2, 8, dtype=torch.bfloat16)
        w = [torch.empty(s, dtype=torch.bfloat16) for s in ((64, 8), (64, 16), (64,), (64,))]
        h = torch.empty(2, 16, dtype=torch.bfloat16)
        with memory._CpuStorages():
            torch.ops.aten.mkldnn_rnn_layer(
                x, *w, h, h, False, [], 2, 16, 1, True, False, False, True
            )


def test_the_training_pass_leaves_the_model_as_it_was() -> None:
    """Its tensors are swapped for fake ones by assignment (so an LSTM's flat weights
    follow) and swapped back; its mode is restored."""
    model = nn.LSTM(4, 8)
    model.eval()
    weights = list(model.parameters())
    step = memory.training_step(model, [torch.empty(3, 2, 4, device="meta")])
    assert step.saved > 0 and not model.training
    assert all(a is b for a, b in zip(model.parameters(), weights, strict=True))
    assert all(a is b for a, b in zip(model._flat_weights, weights, strict=True))


def test_batch_norm_output_is_laid_out_as_the_cpu_lays_it_out() -> None:
    """The CPU's batch norm writes a transposed input's output contiguous; the fake
    kernel kept the input's strides, so the Linears after the transpose back took views
    in the estimate where on the CPU each copies its input (and saves the copy): 1,696
    bytes saved against the real step's 2,208."""
    spec = (
        "input: 2x4x8\nmodel:\n  - Transpose: [1, 2]\n  - LazyBatchNorm1d\n"
        "  - Transpose: [1, 2]\n  - Attention: {dim: auto, heads: 1}\n"
    )
    assert estimate(spec, optimizers=("adam",)) == measure(spec, optimizers=("adam",))


LAYOUTS = [
    (shape, perm)
    for shape in [(3, 5), (2, 5, 4), (2, 5, 3, 4), (1, 5, 3, 4), (2, 5, 3, 4, 2)]
    for perm in itertools.permutations(range(len(shape)))
]


@pytest.mark.parametrize("train", [True, False])
def test_the_batch_norm_layout_is_the_cpu_kernels(train: bool) -> None:
    """For an input in every order of its dimensions: the layout the estimate gives
    batch norm's output is the real CPU kernel's, or not derived (an unusual layout
    with a dimension of size 1, where the CPU's choice is not modelled)."""
    derived = 0
    for shape, perm in LAYOUTS:
        x = torch.randn([shape[p] for p in perm]).permute(
            [perm.index(i) for i in range(len(shape))]
        )
        norm = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}
        real = norm[x.dim()](5).train(train)(x)
        try:
            layout = memory._batch_norm_layout(x)
        except memory.NotDerived:
            assert 1 in shape
            continue
        derived += 1
        assert real.is_contiguous(memory_format=layout), (shape, perm)
    assert derived >= len(LAYOUTS) - 20
