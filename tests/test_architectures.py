"""Shipped configs of well-known networks reproduce their published numbers exactly.

``data/torchvision.json`` holds torchvision's real tensors for ResNet-18 and AlexNet
(every parameter's shape, the output of every Conv2d and Linear), recorded from
torchvision itself; the ResNet-18 and AlexNet configs must match them tensor for tensor.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import shapecli
from conftest import CONFIGS
from shapecli.report import Report

REFERENCE = json.loads((Path(__file__).parent / "data" / "torchvision.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "params", "output"),
    [
        ("mlp", 7_946, (2, 10)),  # 20·256 + 256 + 256·10 + 10
        ("lenet5", 61_706, (1, 10)),
        ("alexnet", 61_100_840, (1, 1000)),
        ("vgg16", 138_357_544, (1, 1000)),
        ("resnet18", 11_689_512, (1, 1000)),
        ("resnet50", 25_557_032, (1, 1000)),
        ("mobilenetv2", 3_504_872, (1, 1000)),
        ("vit-b16", 86_567_656, (1, 1000)),
        ("gpt2", 124_439_808, (1, 1024, 50257)),
        ("llama-tiny", 3_332_352, (1, 128, 1000)),  # derived by hand in the config
        ("llama2-7b", 6_738_415_616, (1, 4096, 32000)),
        ("llama2-70b", 68_976_648_192, (1, 4096, 32000)),
        ("llama3-8b", 8_030_261_248, (1, 8192, 128256)),
        ("mixtral-8x7b", 46_702_792_704, (1, 4096, 32000)),
        ("lstm-classifier", 11_493_380, (4, 4)),  # derived by hand in the config
    ],
)
def test_published_parameter_counts(config: str, params: int, output: tuple[int, ...]) -> None:
    report = shapecli.inspect(CONFIGS / f"{config}.yaml")
    assert report.ok, report.errors
    assert report.totals.params == params
    assert report.rows[0].output_shapes == (output,)


def parameter_shapes(report: Report) -> list[list[int]]:
    return sorted(
        list(p.shape) for r in report.rows for p in r.params if p.shape and not p.shared_with
    )


def conv_linear_outputs(report: Report) -> list[list[int]]:
    kinds = ("Conv2d", "LazyConv2d", "Linear", "LazyLinear")
    return sorted(list(r.output_shapes[0]) for r in report.rows if r.type in kinds)


@pytest.mark.parametrize("config", ["resnet18", "alexnet"])
def test_tensor_for_tensor_against_torchvision(config: str) -> None:
    reference = REFERENCE[config]
    report = shapecli.inspect(
        CONFIGS / f"{config}.yaml", input="x".join(map(str, reference["input"]))
    )
    assert report.totals.params == reference["total"]
    assert parameter_shapes(report) == sorted(reference["param_shapes"])
    assert conv_linear_outputs(report) == sorted(reference["conv_linear_outputs"])
    assert list(report.rows[0].output_shapes[0]) == reference["output"]


def test_gpt2_counts_the_tied_head_once() -> None:
    """torchinfo 1.8.0 reports 163,037,184 for GPT-2 small: it counts the LM head's
    weight, which *is* the token embedding, twice. The published figure is 124,439,808."""
    report = shapecli.inspect(CONFIGS / "gpt2.yaml")
    head = next(r for r in report.rows if r.path == "lm_head")
    (weight,) = head.params
    assert (weight.shape, weight.shared_with, weight.count) == ((50257, 768), "wte.weight", 0)
    assert report.totals.params == 124_439_808
    assert report.totals.shared == 50257 * 768
    naive = sum(p.shape[0] * p.shape[1] if len(p.shape) == 2 else p.shape[0]
                for r in report.rows for p in r.params if p.shape)  # fmt: skip
    assert naive == 163_037_184  # what counting every registration would give


def test_llama_tiny_uses_grouped_query_attention() -> None:
    report = shapecli.inspect(CONFIGS / "llama-tiny.yaml")
    shapes = {
        r.path: r.params[0].shape
        for r in report.rows
        if r.path.startswith("layers.0.0.body.attention.")
    }
    assert shapes == {
        "layers.0.0.body.attention.q": (256, 256),
        "layers.0.0.body.attention.k": (64, 256),
        "layers.0.0.body.attention.v": (64, 256),
        "layers.0.0.body.attention.o": (256, 256),
    }
    assert all(p.name != "bias" for r in report.rows for p in r.params)


# -- networks that need several named tensors, broadcasting or free parameters ----------------

GRAPHS = json.loads((Path(__file__).parent / "data" / "graphs.json").read_text())["models"]


def owned_shapes(report: Report) -> Counter[tuple[int | str, ...]]:
    """The multiset of parameter shapes, each tensor once (tied ones at their owner)."""
    return Counter(p.shape for r in report.rows for p in r.params if p.shape and not p.shared_with)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "inputs", "output"),
    [
        ("bert-base", None, ((1, 128, 768), (1, 768))),
        ("bert-base", ["ids=2x64:long", "types=2x64:long", "mask=2x64:bool"], ((2, 64, 768), (2, 768))),
        ("t5-small", None, ((1, 16, 512),)),
        ("t5-small", ["ids=3x7:long", "decoder_ids=3x40:long"], ((3, 40, 512),)),
        ("whisper-tiny", None, ((1, 32, 384),)),
        ("whisper-tiny", ["decoder_ids=2x448:long", "mel=2x80x3000"], ((2, 448, 384),)),
        ("convnext-tiny", None, ((1, 1000),)),
        ("convnext-tiny", ["1x3x256x256"], ((1, 1000),)),
        ("efficientnet-b0", None, ((1, 1000),)),
        ("efficientnet-b0", ["1x3x256x256"], ((1, 1000),)),  # squeeze-excitation broadcasts
        ("swin-t", None, ((1, 1000),)),
        ("swin-t", ["2x3x448x448"], ((2, 1000),)),
    ],
)  # fmt: skip
def test_graph_networks_match_their_reference_tensor_for_tensor(
    config: str, inputs: list[str] | None, output: tuple[tuple[int, ...], ...]
) -> None:
    reference = GRAPHS[config]
    report = shapecli.inspect(CONFIGS / f"{config}.yaml", input=inputs)
    assert report.ok, report.errors
    assert report.totals.params == reference["total"]
    assert owned_shapes(report) == Counter(tuple(shape) for _, shape in reference["params"])
    assert report.rows[0].output_shapes == output


def test_bert_without_its_pooler() -> None:
    report = shapecli.inspect(CONFIGS / "bert-base.yaml", set={"pooler": False})
    assert report.ok and report.totals.params == 108_891_648
    assert report.rows[0].output_shapes == ((1, 128, 768),)  # just the sequence
    pooler = Counter({(768, 768): 1, (768,): 1})
    full = Counter(tuple(shape) for _, shape in GRAPHS["bert-base"]["params"])
    assert owned_shapes(report) == full - pooler


def test_mixtral_counts_the_flops_of_the_two_routed_experts_only() -> None:
    """Each token goes through 2 of the 8 experts: the experts' FLOPs are those of
    2 · tokens SwiGLU passes, not 8 ·, and the rest of the model is counted as usual."""
    small = {"layers": 1, "vocab": 100}
    report = shapecli.inspect(
        CONFIGS / "mixtral-8x7b.yaml", input="1x64:long", set=small, flops=True
    )
    assert report.ok, report.errors
    d, hidden, tokens = 4096, 14336, 64
    experts = 2 * tokens * 3 * (2 * d * hidden)  # 2 routed experts, 3 matrices each
    (moe,) = [r for r in report.rows if r.path == "layers.0.1.body.moe"]
    router = 2 * tokens * d * 8
    assert moe.flops == experts + router
