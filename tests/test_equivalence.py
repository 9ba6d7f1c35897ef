"""Specs compute their reference networks, number for number.

Each case builds a spec at small sizes with ``shapecli.build`` — a shipped config (with
``set``), or for a network no config is (Gemma, Phi-2, CLIP's text encoder) a spec of
``tests/equivalence/`` — and the reference network from ``transformers`` at the same
sizes with random weights (no download: ``HF_HUB_OFFLINE``), copies the reference's
``state_dict`` into the spec's model through a name map, and compares the outputs on the
same random input, in float32 on the CPU in eval mode.

The name map is a list of rules: a spec parameter whose name matches ``pattern`` takes
the reference tensor named by ``source`` (``\\1`` for the pattern's groups), through
``take`` when the layouts differ (GPT-2's transposed ``Conv1D``, Mixtral's stacked
experts). Every spec tensor must be given one and every reference parameter used, so a
layer the spec lacks, or has too many of, fails the test as surely as a wrong number.

Tolerance: ``atol = rtol = 1e-4``. The reference's weights are spread first (see
:func:`spread`) so that outputs are of order 1 to 10 and every step moves them. The two
models then run the same float32 operations, though not always in the same order or
kernels (fused attention against an explicit softmax, ConvNeXt's LayerNorm written out
against ``F.layer_norm``), each good to about 1e-7 relative: measured, they agree to 1.2e-6
at most (Whisper), exactly for seven of the eleven. A real difference is far larger: θ
halved in Llama's rotation moves the logits by 0.5, Mixtral routed to one expert instead
of two by 2, Phi-2 turning all of each head instead of its first half by 0.7, Gemma's norm without
its 1 + w by 6.6, CLIP's GELU for its QuickGELU by 0.014. 1e-4 lies two orders of
magnitude from either side.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import shapecli
from conftest import CONFIGS

os.environ["HF_HUB_OFFLINE"] = "1"  # built from configs only: never the network
import transformers  # after the line above, which it reads when imported

ATOL = RTOL = 1e-4

Take = Callable[[torch.Tensor, re.Match[str]], torch.Tensor]


def same(t: torch.Tensor, _: re.Match[str]) -> torch.Tensor:
    return t


def transposed(t: torch.Tensor, _: re.Match[str]) -> torch.Tensor:
    """GPT-2's ``Conv1D`` keeps its weight as (in, out), a Linear as (out, in)."""
    return t.t()


def qkv(i: int) -> Take:
    """Piece ``i`` of GPT-2's fused q/k/v projection (rows, once transposed)."""
    return lambda t, m: transposed(t, m).chunk(3, dim=0)[i]


def expert(piece: int | None = None) -> Take:
    """Expert ``\\2`` of Mixtral's stacked (experts, …) tensor; of its ``gate_up``
    rows, the first half (``w1``, piece 0) or the second (``w3``, piece 1)."""

    def take(t: torch.Tensor, m: re.Match[str]) -> torch.Tensor:
        one = t[int(m.group(2))]
        return one if piece is None else one.chunk(2, dim=0)[piece]

    return take


def flat(t: torch.Tensor, _: re.Match[str]) -> torch.Tensor:
    """A 1×N×D tensor (ViT's positions) as N×D."""
    return t.squeeze(0)


def channels(t: torch.Tensor, _: re.Match[str]) -> torch.Tensor:
    """A per-channel C tensor (ConvNeXt's layer scale) as the C×1×1 the spec keeps."""
    return t[:, None, None]


TAKES: dict[str, Take] = {
    "transposed": transposed,
    "q": qkv(0),
    "k": qkv(1),
    "v": qkv(2),
    "w1": expert(0),
    "w3": expert(1),
    "w2": expert(),
    "flat": flat,
    "channels": channels,
}


def rules(table: str) -> list[tuple[str, str, Take]]:
    """One rule a line: the spec's name (a regular expression), the reference's (with
    ``\\1`` … for the groups) and, when the layouts differ, a name from ``TAKES``."""
    parsed = []
    for line in table.strip().splitlines():
        pattern, source, *take = line.split()
        parsed.append((pattern, source, TAKES[take[0]] if take else same))
    return parsed


@dataclass
class Case:
    config: str
    sizes: dict[str, Any]
    inputs: dict[str, tuple[int, ...]]  # spec input name (or "#0") → shape
    reference: tuple[str, str, dict[str, Any]]  # model class, config class, config
    call: Callable[[nn.Module, dict[str, torch.Tensor]], Any]  # the reference's outputs
    rules: list[tuple[str, str, Take]]
    ints: dict[str, int] = field(default_factory=dict)  # integer inputs → their bound

    @property
    def spec(self) -> Path:
        """A shipped config, or a spec of tests/equivalence/ (networks the configs lack)."""
        shipped = CONFIGS / f"{self.config}.yaml"
        return shipped if shipped.exists() else Path(__file__).parent / "equivalence" / shipped.name

    def build_reference(self) -> nn.Module:
        model, config, sizes = self.reference
        made: nn.Module = getattr(transformers, model)(getattr(transformers, config)(**sizes))
        return made


VOCAB = 50
TOKENS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


def bert_outputs(m: nn.Module, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    out = m(input_ids=x["ids"], token_type_ids=x["types"], attention_mask=x["mask"].long())
    return out.last_hidden_state, out.pooler_output


CONVNEXT_STAGES = "\n".join(
    line
    for s in range(4)  # stage s: features 2s + 1, after its downsampling (features 2s)
    for line in (
        rf"features\.{2 * s + 1}\.(\d+)\.0\.body\.block\.0\.(.*) convnext.encoder.stages.{s}.layers.\1.dwconv.\2",
        rf"features\.{2 * s + 1}\.(\d+)\.0\.body\.block\.2\.(.*) convnext.encoder.stages.{s}.layers.\1.layernorm.\2",
        rf"features\.{2 * s + 1}\.(\d+)\.0\.body\.block\.3\.(.*) convnext.encoder.stages.{s}.layers.\1.pwconv1.\2",
        rf"features\.{2 * s + 1}\.(\d+)\.0\.body\.block\.5\.(.*) convnext.encoder.stages.{s}.layers.\1.pwconv2.\2",
        rf"features\.{2 * s + 1}\.(\d+)\.0\.body\.layer_scale\.weight convnext.encoder.stages.{s}.layers.\1.layer_scale_parameter channels",
        rf"features\.{2 * s}\.0\.1\.(.*) convnext.encoder.stages.{s}.downsampling_layer.0.\1",
        rf"features\.{2 * s}\.1\.(.*) convnext.encoder.stages.{s}.downsampling_layer.1.\1",
    )
)

LLAMA = rules(r"""
            tok_embeddings\.weight                          model.embed_tokens.weight
            norm\.weight                                    model.norm.weight
            output\.weight                                  lm_head.weight
            layers\.(\d+)\.0\.body\.attention_norm\.weight  model.layers.\1.input_layernorm.weight
            layers\.(\d+)\.0\.body\.attention\.(.)\.weight  model.layers.\1.self_attn.\2_proj.weight
            layers\.(\d+)\.1\.body\.ffn_norm\.weight        model.layers.\1.post_attention_layernorm.weight
""")  # the decoder of both Llama and Mixtral, but for the feed-forward

CASES = [
    Case(
        "gpt2",
        {"vocab": VOCAB, "context": 16, "d": 32, "layers": 2, "heads": 4},
        {"#0": (2, 9)},
        ("GPT2LMHeadModel", "GPT2Config",
         {"vocab_size": VOCAB, "n_positions": 16, "n_embd": 32, "n_layer": 2, "n_head": 4,
          "bos_token_id": 0, "eos_token_id": 0}),
        lambda m, x: m(input_ids=x["#0"]).logits,
        rules(r"""
            (wte|wpe|ln_f)\.(.*)                    transformer.\1.\2
            h\.(\d+)\.0\.body\.ln_1\.(.*)           transformer.h.\1.ln_1.\2
            h\.(\d+)\.0\.body\.attn\.q\.(.*)        transformer.h.\1.attn.c_attn.\2  q
            h\.(\d+)\.0\.body\.attn\.k\.(.*)        transformer.h.\1.attn.c_attn.\2  k
            h\.(\d+)\.0\.body\.attn\.v\.(.*)        transformer.h.\1.attn.c_attn.\2  v
            h\.(\d+)\.0\.body\.attn\.o\.(.*)        transformer.h.\1.attn.c_proj.\2  transposed
            h\.(\d+)\.1\.body\.ln_2\.(.*)           transformer.h.\1.ln_2.\2
            h\.(\d+)\.1\.body\.(c_fc|c_proj)\.(.*)  transformer.h.\1.mlp.\2.\3     transposed
            lm_head\.weight                         lm_head.weight
        """),
        ints={"#0": VOCAB},
    ),
    Case(
        "bert-base",
        {"vocab": VOCAB, "positions": 16, "d": 32, "layers": 2, "heads": 4, "ff": 64},
        {"ids": (2, 9), "types": (2, 9), "mask": (2, 9)},
        ("BertModel", "BertConfig",
         {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2,
          "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 16}),
        bert_outputs,
        rules(r"""
            (word|token_type|position)_embeddings\.(.*)  embeddings.\1_embeddings.\2
            embeddings_norm\.(.*)                   embeddings.LayerNorm.\1
            encoder\.(\d+)\.attention\.q\.(.*)      encoder.layer.\1.attention.self.query.\2
            encoder\.(\d+)\.attention\.k\.(.*)      encoder.layer.\1.attention.self.key.\2
            encoder\.(\d+)\.attention\.v\.(.*)      encoder.layer.\1.attention.self.value.\2
            encoder\.(\d+)\.attention\.o\.(.*)      encoder.layer.\1.attention.output.dense.\2
            encoder\.(\d+)\.attention_norm\.(.*)    encoder.layer.\1.attention.output.LayerNorm.\2
            encoder\.(\d+)\.intermediate\.(.*)      encoder.layer.\1.intermediate.dense.\2
            encoder\.(\d+)\.output\.(.*)            encoder.layer.\1.output.dense.\2
            encoder\.(\d+)\.output_norm\.(.*)       encoder.layer.\1.output.LayerNorm.\2
            pooler\.(.*)                           pooler.dense.\1
        """),
        ints={"ids": VOCAB, "types": 2},
    ),
    Case(
        "t5-small",
        {"vocab": VOCAB, "d": 32, "ff": 64, "heads": 4, "layers": 2, "buckets": 8, "max_distance": 16},
        {"ids": (2, 11), "decoder_ids": (2, 7)},
        ("T5Model", "T5Config",
         {"vocab_size": VOCAB, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2,
          "num_heads": 4, "relative_attention_num_buckets": 8,
          "relative_attention_max_distance": 16}),
        lambda m, x: m(input_ids=x["ids"], decoder_input_ids=x["decoder_ids"]).last_hidden_state,
        rules(r"""
            shared\.weight                                   shared.weight
            (encoder|decoder)_relative_attention_bias\.weight  \1.block.0.layer.0.SelfAttention.relative_attention_bias.weight
            (encoder|decoder)_final_layer_norm\.weight        \1.final_layer_norm.weight
            (encoder|decoder)\.(\d+)\.self_attention_norm\.weight  \1.block.\2.layer.0.layer_norm.weight
            (encoder|decoder)\.(\d+)\.SelfAttention\.(.)\.weight   \1.block.\2.layer.0.SelfAttention.\3.weight
            decoder\.(\d+)\.cross_attention_norm\.weight    decoder.block.\1.layer.1.layer_norm.weight
            decoder\.(\d+)\.EncDecAttention\.(.)\.weight    decoder.block.\1.layer.1.EncDecAttention.\2.weight
            encoder\.(\d+)\.ff\.0\.body\.layer_norm\.weight  encoder.block.\1.layer.1.layer_norm.weight
            encoder\.(\d+)\.ff\.0\.body\.(wi|wo)\.weight    encoder.block.\1.layer.1.DenseReluDense.\2.weight
            decoder\.(\d+)\.ff\.0\.body\.layer_norm\.weight  decoder.block.\1.layer.2.layer_norm.weight
            decoder\.(\d+)\.ff\.0\.body\.(wi|wo)\.weight    decoder.block.\1.layer.2.DenseReluDense.\2.weight
        """),
        ints={"ids": VOCAB, "decoder_ids": VOCAB},
    ),
    Case(
        "llama-tiny",
        {"vocab": VOCAB, "d": 64, "layers": 2, "heads": 4, "kv_heads": 2, "hidden": 96},
        {"#0": (2, 12)},
        ("LlamaForCausalLM", "LlamaConfig",
         {"vocab_size": VOCAB, "hidden_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 96,
          "rms_norm_eps": 1e-5, **TOKENS}),
        lambda m, x: m(input_ids=x["#0"]).logits,
        LLAMA
        + rules(r"""
            layers\.(\d+)\.1\.body\.1\.branches\.0\.w1\.weight  model.layers.\1.mlp.gate_proj.weight
            layers\.(\d+)\.1\.body\.1\.branches\.1\.w3\.weight  model.layers.\1.mlp.up_proj.weight
            layers\.(\d+)\.1\.body\.w2\.weight              model.layers.\1.mlp.down_proj.weight
        """),
        ints={"#0": VOCAB},
    ),
    Case(
        "mixtral-8x7b",
        {"vocab": VOCAB, "d": 32, "layers": 2, "heads": 4, "kv_heads": 2, "hidden": 48,
         "experts": 4, "top_k": 2},
        {"#0": (2, 12)},
        ("MixtralForCausalLM", "MixtralConfig",
         {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 48,
          "num_local_experts": 4, "num_experts_per_tok": 2, "rope_theta": 1e6,
          "rms_norm_eps": 1e-5, **TOKENS}),
        lambda m, x: m(input_ids=x["#0"]).logits,
        LLAMA
        + rules(r"""
            layers\.(\d+)\.1\.body\.moe\.router\.weight     model.layers.\1.mlp.gate.weight
            layers\.(\d+)\.1\.body\.moe\.experts\.expert\.(\d+)\.0\.branches\.0\.w1\.weight  model.layers.\1.mlp.experts.gate_up_proj  w1
            layers\.(\d+)\.1\.body\.moe\.experts\.expert\.(\d+)\.0\.branches\.1\.w3\.weight  model.layers.\1.mlp.experts.gate_up_proj  w3
            layers\.(\d+)\.1\.body\.moe\.experts\.expert\.(\d+)\.w2\.weight  model.layers.\1.mlp.experts.down_proj  w2
        """),
        ints={"#0": VOCAB},
    ),
    Case(
        "vit-b16",
        {"d": 32, "heads": 4, "layers": 2, "mlp": 64, "patch": 8, "classes": 10, "image": 32},
        {"#0": (2, 3, 32, 32)},
        ("ViTForImageClassification", "ViTConfig",
         {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
          "intermediate_size": 64, "image_size": 32, "patch_size": 8, "num_labels": 10,
          "layer_norm_eps": 1e-6}),
        lambda m, x: m(pixel_values=x["#0"]).logits,
        rules(r"""
            conv_proj\.(.*)                         vit.embeddings.patch_embeddings.projection.\1
            class_token\.token                      vit.embeddings.cls_token
            pos_embedding\.weight                   vit.embeddings.position_embeddings  flat
            layers\.(\d+)\.0\.body\.ln_1\.(.*)      vit.layers.\1.layernorm_before.\2
            layers\.(\d+)\.0\.body\.self_attention\.(.)\.(.*)  vit.layers.\1.attention.\2_proj.\3
            layers\.(\d+)\.1\.body\.ln_2\.(.*)      vit.layers.\1.layernorm_after.\2
            layers\.(\d+)\.1\.body\.1\.(.*)         vit.layers.\1.mlp.fc1.\2
            layers\.(\d+)\.1\.body\.4\.(.*)         vit.layers.\1.mlp.fc2.\2
            ln\.(.*)                               vit.layernorm.\1
            head\.(.*)                             classifier.\1
        """),
    ),
    Case(
        "whisper-tiny",
        {"d": 32, "heads": 4, "layers": 2, "ffn": 64, "mels": 8, "vocab": VOCAB,
         "source_positions": 20, "target_positions": 16},
        {"mel": (2, 8, 40), "decoder_ids": (2, 6)},
        ("WhisperModel", "WhisperConfig",
         {"vocab_size": VOCAB, "num_mel_bins": 8, "d_model": 32, "encoder_layers": 2,
          "decoder_layers": 2, "encoder_attention_heads": 4, "decoder_attention_heads": 4,
          "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "max_source_positions": 20,
          "max_target_positions": 16, "decoder_start_token_id": 1, **TOKENS}),
        lambda m, x: m(input_features=x["mel"], decoder_input_ids=x["decoder_ids"]).last_hidden_state,
        rules(r"""
            (encoder\.conv.|(?:en|de)coder\.embed_\w+|(?:en|de)coder\.layer_norm)\.(.*)  \1.\2
            (encoder|decoder)\.layers\.(\d+)\.0\.body\.(self_attn\w*)\.(.*)  \1.layers.\2.\3.\4
            decoder\.layers\.(\d+)\.1\.body\.(encoder_attn\w*)\.(.*)        decoder.layers.\1.\2.\3
            (encoder|decoder)\.layers\.(\d+)\.\d\.body\.0\.(\w+)\.(.*)       \1.layers.\2.\3.\4
        """),
        ints={"decoder_ids": VOCAB},
    ),
    Case(
        "convnext-tiny",
        {"width": 8, "depth1": 1, "depth2": 1, "depth3": 2, "depth4": 1, "classes": 10},
        {"#0": (2, 3, 32, 32)},
        ("ConvNextForImageClassification", "ConvNextConfig",
         {"hidden_sizes": [8, 16, 32, 64], "depths": [1, 1, 2, 1], "num_labels": 10,
          "layer_norm_eps": 1e-6}),
        lambda m, x: m(pixel_values=x["#0"]).logits,
        rules(r"""
            features\.0\.0\.(.*)                   convnext.embeddings.patch_embeddings.\1
            features\.0\.1\.1\.(.*)                convnext.embeddings.layernorm.\1
            classifier\.0\.1\.(.*)                 convnext.layernorm.\1
            classifier\.2\.(.*)                    classifier.\1
        """)
        + rules(CONVNEXT_STAGES),
    ),
    # -- networks no shipped config is: the ops they need, number for number
    Case(
        "gemma",
        {},
        {"#0": (2, 12)},
        ("GemmaForCausalLM", "GemmaConfig",
         {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16,
          "intermediate_size": 64, "rms_norm_eps": 1e-6, **TOKENS}),
        lambda m, x: m(input_ids=x["#0"]).logits,
        rules(r"""
            embed_tokens\.weight                    model.embed_tokens.weight
            lm_head\.weight                         lm_head.weight
            norm\.weight\.weight                    model.norm.weight
            layers\.(\d+)\.0\.body\.input_layernorm\.weight\.weight  model.layers.\1.input_layernorm.weight
            layers\.(\d+)\.0\.body\.self_attn\.(.)\.weight  model.layers.\1.self_attn.\2_proj.weight
            layers\.(\d+)\.1\.body\.post_attention_layernorm\.weight\.weight  model.layers.\1.post_attention_layernorm.weight
            layers\.(\d+)\.1\.body\.1\.branches\.\d\.(gate|up)_proj\.weight  model.layers.\1.mlp.\2_proj.weight
            layers\.(\d+)\.1\.body\.down_proj\.weight  model.layers.\1.mlp.down_proj.weight
        """),
        ints={"#0": VOCAB},
    ),
    Case(
        "phi",
        {},
        {"#0": (2, 12)},
        ("PhiForCausalLM", "PhiConfig",
         {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2,
          "num_attention_heads": 4, "intermediate_size": 64, "partial_rotary_factor": 0.5,
          **TOKENS}),
        lambda m, x: m(input_ids=x["#0"]).logits,
        rules(r"""
            embed_tokens\.(.*)                      model.embed_tokens.\1
            final_layernorm\.(.*)                   model.final_layernorm.\1
            lm_head\.(.*)                           lm_head.\1
            layers\.(\d+)\.0\.body\.input_layernorm\.(.*)  model.layers.\1.input_layernorm.\2
            layers\.(\d+)\.0\.body\.1\.branches\.0\.self_attn\.(q|k|v)\.(.*)  model.layers.\1.self_attn.\2_proj.\3
            layers\.(\d+)\.0\.body\.1\.branches\.0\.self_attn\.o\.(.*)  model.layers.\1.self_attn.dense.\2
            layers\.(\d+)\.0\.body\.1\.branches\.1\.(fc1|fc2)\.(.*)  model.layers.\1.mlp.\2.\3
        """),
        ints={"#0": VOCAB},
    ),
    Case(
        "clip-text",
        {},
        {"ids": (2, 9)},
        ("CLIPTextModel", "CLIPTextConfig",
         {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2,
          "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 16,
          **TOKENS}),  # end of text is id 2: CLIP's first models pool at the largest id
        lambda m, x: ((out := m(input_ids=x["ids"])).last_hidden_state, out.pooler_output),
        rules(r"""
            (token|position)_embedding\.(.*)        embeddings.\1_embedding.\2
            final_layer_norm\.(.*)                  final_layer_norm.\1
            layers\.(\d+)\.0\.body\.layer_norm1\.(.*)  encoder.layers.\1.layer_norm1.\2
            layers\.(\d+)\.0\.body\.self_attn\.(q|k|v)\.(.*)  encoder.layers.\1.self_attn.\2_proj.\3
            layers\.(\d+)\.0\.body\.self_attn\.o\.(.*)  encoder.layers.\1.self_attn.out_proj.\2
            layers\.(\d+)\.1\.body\.layer_norm2\.(.*)  encoder.layers.\1.layer_norm2.\2
            layers\.(\d+)\.1\.body\.(fc1|fc2)\.(.*)  encoder.layers.\1.mlp.\2.\3
        """),
        ints={"ids": VOCAB},
    ),
]  # fmt: skip


def inputs(case: Case) -> dict[str, torch.Tensor]:
    """Random inputs: token ids below their vocabulary, a padding mask whose second
    sample ends in three padded positions, floats elsewhere."""
    made = {}
    for name, shape in case.inputs.items():
        if name in case.ints:
            made[name] = torch.randint(0, case.ints[name], shape)
        elif name == "mask":
            mask = torch.ones(shape, dtype=torch.bool)
            mask[1, -3:] = False
            made[name] = mask
        else:
            made[name] = torch.randn(shape)
    return made


def spread(model: nn.Module) -> None:
    """Weights that make every step matter. transformers starts weights at std 0.02 (and
    ConvNeXt's layer scale at 1e-6): the attention over such small scores is nearly
    uniform and the blocks nearly vanish, so a wrong rotation or routing would change
    the outputs by little. Here each matrix has std 1/√fan-in (activations of order 1)
    and every vector, norms' weights and biases too, lies in [0.5, 1.5]."""
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 1:
                param.uniform_(0.5, 1.5)
            else:  # Linear (out, in), stacked experts (n, out, in), conv (out, in, k…)
                fan_in = param.shape[-1] if param.dim() <= 3 else param[0].numel()
                param.normal_(0.0, fan_in**-0.5)


def shape_text(t: torch.Tensor) -> str:
    """``2x9:long``: a tensor's shape and dtype in ``--input``'s words."""
    kind = {torch.int64: ":long", torch.bool: ":bool"}.get(t.dtype, "")
    return "x".join(map(str, t.shape)) + kind


def mapped(case: Case, model: nn.Module, reference: nn.Module) -> dict[str, torch.Tensor]:
    """The spec model's state dict, each tensor taken from the reference by the rules;
    fails when a spec tensor has no rule, or a reference parameter is never used."""
    source = reference.state_dict()
    used: set[str] = set()
    result = {}
    for key, tensor in model.state_dict().items():
        for pattern, template, take in case.rules:
            match = re.fullmatch(pattern, key)
            if match:
                name = match.expand(template)
                value = take(source[name], match)
                assert value.shape == tensor.shape, (key, name, value.shape, tensor.shape)
                result[key] = value
                used.add(name)
                break
        else:
            raise AssertionError(f"no rule gives the spec's {key}")
    parameters = {name for name, _ in reference.named_parameters()}  # each tied one once
    assert parameters <= used, f"reference parameters the spec lacks: {sorted(parameters - used)}"
    return result


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.config for c in CASES])
def test_the_shipped_config_computes_its_reference(case: Case) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():  # transformers' notes on configs it builds from scratch
        warnings.simplefilter("ignore")
        reference = case.build_reference().eval()
    spread(reference)
    given = inputs(case)
    spec_inputs = [("" if n == "#0" else f"{n}=") + shape_text(t) for n, t in given.items()]
    model = shapecli.build(case.spec, input=spec_inputs, set=case.sizes)
    model.load_state_dict(mapped(case, model, reference), strict=True)
    model.eval()
    with torch.no_grad():
        expected = case.call(reference, given)
        got = model(*given.values())
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.shape == theirs.shape
        error = (mine - theirs).abs().max().item()
        assert torch.allclose(mine, theirs, atol=ATOL, rtol=RTOL), f"max difference {error:.2e}"
