"""``shapecli build`` and ``shapecli.build``: real weights, initialized, saved, verified.

The promises tested here: the same seed gives the same tensors (from the API, the
command line and a real process), the global random state is untouched, every scheme
has the statistics it should, a saved file loads back exactly (tied parameters tied and
stored once), nothing is ever left behind by a refusal or a failure, and ``--verify``
passes on real models and fails when the dry run's shapes are wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

import shapecli
from conftest import CONFIGS, Result, run_process
from shapecli.budget import parse_size
from shapecli.errors import ShapecliError
from shapecli.materialize import Materialized
from shapecli.spec.model import Spec
from shapecli.spec.parse import parse_spec

Cli = Callable[..., Result]

TIED = """\
input: 2x5:long
model:
  - Embedding: [11, 8]
    name: emb
  - LazyLinear: 8
  - LazyLinear: {out_features: 11, bias: false}
    name: head
    tie: {weight: emb.weight}
"""


def same_tensors(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def spec(text: str, file: str = "s.yaml") -> Spec:
    return parse_spec(text, file)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


#: GPT-2 (configs/gpt2.yaml), small enough to build in a test.
SMALL_GPT2 = {"layers": 1, "d": 64, "heads": 2, "vocab": 100, "context": 32}


def small_gpt2(edit: Callable[[str], str] = lambda text: text) -> Spec:
    text = edit((CONFIGS / "gpt2.yaml").read_text(encoding="utf-8"))
    return parse_spec(text, "gpt2.yaml", SMALL_GPT2)


# -- initialization ------------------------------------------------------------------------

BIG = (
    "input: 2x1024\nmodel:\n  - Linear: [1024, 512]\n"  # weight 512×1024: fan_in 1024, fan_out 512
)
FAN_IN, FAN_OUT = 1024, 512
EXPECTED_STD = {
    "default": 1 / math.sqrt(3 * FAN_IN),  # Linear's kaiming_uniform(a=√5): U(±1/√fan_in)
    "xavier_uniform": math.sqrt(2 / (FAN_IN + FAN_OUT)),
    "xavier_normal": math.sqrt(2 / (FAN_IN + FAN_OUT)),
    "kaiming_uniform": math.sqrt(2 / FAN_IN),
    "kaiming_normal": math.sqrt(2 / FAN_IN),
    "orthogonal": 1 / math.sqrt(FAN_IN),  # orthonormal rows of length 512
    "normal": 0.02,
}


@pytest.mark.parametrize("scheme", list(EXPECTED_STD))
def test_each_scheme_has_its_statistics(scheme: str) -> None:
    weight = shapecli.build(spec(BIG), init=scheme, seed=1)[0].weight.detach()
    std = EXPECTED_STD[scheme]
    assert abs(weight.mean().item()) < 0.01 * std
    assert weight.std().item() == pytest.approx(std, rel=0.02)
    if scheme == "orthogonal":
        assert torch.allclose(weight @ weight.T, torch.eye(FAN_OUT), atol=1e-4)
    if scheme.endswith("uniform") or scheme == "default":
        bound = std * math.sqrt(3)
        assert weight.abs().max().item() <= bound + 1e-6


@pytest.mark.slow
def test_builds_are_bit_identical_and_the_global_rng_is_untouched() -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    for scheme in EXPECTED_STD:
        a = shapecli.build(CONFIGS / "lenet5.yaml", init=scheme, seed=3)
        b = shapecli.build(CONFIGS / "lenet5.yaml", init=scheme, seed=3)
        assert same_tensors(a, b), scheme
    assert torch.equal(torch.rand(3), expected)
    assert not same_tensors(a, shapecli.build(CONFIGS / "lenet5.yaml", init="normal", seed=4))


def test_default_init_equals_the_same_layers_written_in_pytorch() -> None:
    """Initializers run children first, in construction order, from the seeded CPU
    generator: exactly what constructing the layers in PyTorch does."""
    text = "input: 2x20\nmodel:\n  - Linear: [20, 30]\n  - ReLU\n  - Linear: [30, 10]\n"
    built = shapecli.build(spec(text), seed=11)
    state = torch.random.get_rng_state()
    torch.manual_seed(11)
    reference = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 10))
    torch.random.set_rng_state(state)
    assert same_tensors(built, reference)


@pytest.mark.slow
def test_init_in_the_spec_top_level_per_entry_and_from_the_caller() -> None:
    text = (
        "init: orthogonal\ninput: 2x6:long\nmodel:\n"
        "  - Embedding: [50, 64]\n    init: normal\n"
        "  - Linear: [64, 64]\n"
        "  - Sequential:\n      - Linear: [64, 32]\n    init: default\n"
    )
    model = shapecli.build(spec(text), seed=0)
    embedding, middle, inner = model[0].weight, model[1].weight, model[2][0].weight
    assert embedding.std().item() == pytest.approx(0.02, rel=0.1)  # the entry's own
    assert torch.allclose(middle @ middle.T, torch.eye(64), atol=1e-4)  # the spec's
    assert inner.abs().max().item() <= 1 / math.sqrt(64)  # Linear's own, inherited
    # The caller's init replaces the spec's top-level one; entries keep theirs.
    model = shapecli.build(spec(text), init="kaiming_normal", seed=0)
    assert model[0].weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert model[1].weight.std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.1)


def test_an_unknown_init_is_a_located_spec_error(
    cli: Cli, write: Callable[[str], Path], tmp_path: Path
) -> None:
    with pytest.raises(ShapecliError) as info:
        spec("model:\n  - LazyLinear: 3\n    init: xavier\n")
    problem = info.value.problem
    assert problem.code == "spec-invalid" and problem.source is not None
    assert (problem.source.line, problem.source.column) == (3, 11)
    assert "not xavier (did you mean `xavier_normal` or `xavier_uniform`?)" in problem.message
    out = str(tmp_path / "x.pt")
    result = cli("build", str(write("init: Orthogonal\ninput: 2x3\nmodel: [ReLU]\n")), "-o", out)
    assert result.exit_code == 1 and "spec.yaml:1:7: error[spec-invalid]" in result.stderr
    assert "(did you mean `orthogonal`?)" in result.stderr
    result = cli("build", str(CONFIGS / "mlp.yaml"), "-o", out, "--init", "ortho")
    assert result.exit_code == 2 and "(did you mean `orthogonal`?)" in result.stderr
    assert leftovers(tmp_path) == ["spec.yaml"]


def test_a_param_keeps_its_own_init_unless_its_entry_names_one() -> None:
    text = (
        "input: 2x3x4\nmodel:\n  - Param: {shape: [3, 4], init: zeros}\n    name: scale\n"
        "  - Param: {shape: [3, 4], init: zeros}\n    name: mine\n    init: xavier_uniform\n"
    )
    model = shapecli.build(spec(text), init="xavier_uniform")
    assert torch.count_nonzero(model.scale.weight) == 0
    assert torch.count_nonzero(model.mine.weight) == 12


def test_multihead_attention_gets_its_weights_initialized() -> None:
    """torch's MultiheadAttention has no reset_parameters, only a private
    _reset_parameters: before, its in_proj_weight kept whatever memory held."""
    text = (
        "input: 2x5x16\nmodel:\n  - MultiheadAttention: {embed_dim: 16, num_heads: 2, "
        "batch_first: true}\n    in: [_, _, _]\n  - Take: 0\n"
    )
    attention = shapecli.build(spec(text))[0]
    bound = math.sqrt(6 / (16 + 48))  # xavier_uniform over the 48×16 in_proj_weight
    assert 0 < attention.in_proj_weight.abs().max().item() <= bound
    assert torch.count_nonzero(attention.in_proj_bias) == 0


def test_a_buffer_made_in_a_constructor_is_made_again() -> None:
    """Swin's relative position index is computed in the constructor; on meta it has no
    values, so a build must compute it again, not hand over empty memory."""
    from shapecli.layers.own import RelativePositionBias

    text = "input: 1x1\nmodel:\n  - Param: {shape: [9, 2]}\n  - RelativePositionBias: 2\n"
    model = shapecli.build(spec(text))
    assert torch.equal(model[1].index, RelativePositionBias(2).index)


def test_a_tensor_no_initializer_sets_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nn.Linear, "reset_parameters", lambda self: None)
    with pytest.raises(ShapecliError) as info:
        shapecli.build(CONFIGS / "mlp.yaml")
    problem = info.value.problem
    assert problem.code == "no-initializer" and problem.exit_code == 1
    assert "`0.weight` (and 3 more) of layer 0 (Linear) is set by no initializer" in problem.message
    assert problem.source is not None and problem.source.line == 6


def test_dtype_sets_the_weights_type_and_keeps_integer_buffers() -> None:
    text = "input: 1x3x8x8\nmodel:\n  - LazyConv2d: [4, 3]\n  - LazyBatchNorm2d\n"
    model = shapecli.build(spec(text), dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model[1].running_var.dtype == torch.bfloat16
    assert model[1].num_batches_tracked.dtype == torch.int64
    half = shapecli.build(spec(BIG), init="orthogonal", dtype="half")[0].weight
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    with pytest.raises(ShapecliError, match="weights are one of float32"):
        shapecli.build(spec(BIG), dtype="int64")


# -- saving and loading --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["m.safetensors", "m.pt"])
def test_save_and_load_back_tensor_for_tensor(tmp_path: Path, name: str) -> None:
    model = shapecli.build(CONFIGS / "lenet5.yaml", init="xavier_normal", seed=9)
    assert shapecli.save(model, tmp_path / name) == (
        "torch" if name.endswith(".pt") else "safetensors"
    )
    again = shapecli.build(CONFIGS / "lenet5.yaml", seed=1, weights=tmp_path / name)
    assert same_tensors(model, again)


@pytest.mark.parametrize("name", ["t.safetensors", "t.pt"])
def test_tied_weights_are_saved_once_and_tied_after_loading(tmp_path: Path, name: str) -> None:
    model = shapecli.build(spec(TIED), init="normal", seed=2)
    assert model.head.weight is model.emb.weight
    shapecli.save(model, tmp_path / name)
    again = shapecli.build(spec(TIED), weights=tmp_path / name)
    assert again.head.weight is again.emb.weight
    assert same_tensors(model, again)
    again.emb.weight.data.add_(1)  # still one tensor, not two equal ones
    assert torch.equal(again.head.weight, again.emb.weight)


def test_a_safetensors_file_stores_a_tied_tensor_once_and_names_the_rest(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_model

    model = shapecli.build(spec(TIED), seed=2)
    shapecli.save(model, tmp_path / "t.safetensors")
    with safe_open(tmp_path / "t.safetensors", framework="pt") as f:
        assert sorted(f.keys()) == ["1.bias", "1.weight", "emb.weight"]
        assert f.metadata()["head.weight"] == "emb.weight"
        assert f.metadata()["format"] == "pt"
    # safetensors' own loader reads it into a model that is tied the same way
    fresh = shapecli.build(spec(TIED), seed=99)
    load_model(fresh, tmp_path / "t.safetensors")
    assert same_tensors(model, fresh)


def test_weights_that_do_not_fit_name_the_first_difference(tmp_path: Path) -> None:
    text = "params: {width: 8}\ninput: 2x4\nmodel:\n  - LazyLinear: ${width}\n  - LazyLinear: 3\n"
    shapecli.save(shapecli.build(spec(text)), tmp_path / "w.safetensors")
    with pytest.raises(ShapecliError) as info:
        shapecli.build(
            parse_spec(text, "s.yaml", {"width": 16}), weights=tmp_path / "w.safetensors"
        )
    problem = info.value.problem
    assert problem.code == "weights-mismatch" and problem.exit_code == 1
    assert "`0.weight` is 8×4 in the file but 16×4 here" in problem.message
    assert problem.notes == ("and 2 more differences",)  # 0.bias, 1.weight
    other = "input: 2x4\nmodel:\n  - LazyLinear: 8\n  - ReLU\n  - LazyLinear: 3\n"
    with pytest.raises(ShapecliError, match=r"`2\.weight` is not in the file"):
        shapecli.build(spec(other), weights=tmp_path / "w.safetensors")


def test_a_weights_file_that_is_missing_or_not_weights_is_a_file_error(tmp_path: Path) -> None:
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    torch.save({"a": 1}, tmp_path / "dict.pt")
    for name, message in [
        ("nope.safetensors", "no such file"),
        ("junk.safetensors", "is not a safetensors file"),
        ("junk.pt", "is not a state_dict"),
        ("dict.pt", "holds a dict, not a state_dict"),
    ]:
        with pytest.raises(ShapecliError, match=message) as info:
            shapecli.build(CONFIGS / "mlp.yaml", weights=tmp_path / name)
        assert info.value.problem.code == "file-error", name


def test_saving_never_overwrites_without_force_and_leaves_nothing_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = shapecli.build(CONFIGS / "mlp.yaml")
    target = tmp_path / "m.safetensors"
    target.write_text("precious")
    with pytest.raises(ShapecliError, match="already exists") as info:
        shapecli.save(model, target)
    assert info.value.problem.exit_code == 2 and target.read_text() == "precious"
    shapecli.save(model, target, force=True)
    assert same_tensors(model, shapecli.build(CONFIGS / "mlp.yaml", weights=target))

    import safetensors.torch

    def half_then_fail(tensors: object, filename: str, metadata: object = None) -> None:
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        shapecli.save(model, tmp_path / "new.safetensors")
    with pytest.raises(KeyboardInterrupt):
        shapecli.save(model, target, force=True)
    assert leftovers(tmp_path) == ["m.safetensors"]
    assert same_tensors(model, shapecli.build(CONFIGS / "mlp.yaml", weights=target))


def test_a_target_that_is_not_a_file_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    import os

    model = shapecli.build(CONFIGS / "mlp.yaml")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for target, force, message in [
        (tmp_path, False, "is a folder"),
        (tmp_path / "no" / "m.pt", False, "there is no folder"),
        (tmp_path / "fifo", True, "is not a regular file"),  # as /dev/null would be, for root
        (tmp_path / "dangling", False, "already exists"),
    ]:
        with pytest.raises(ShapecliError, match=message) as info:
            shapecli.save(model, target, force=force)
        assert info.value.problem.code == "file-error"
    assert leftovers(tmp_path) == ["dangling", "fifo"]


def test_saved_files_get_the_permissions_of_a_new_file(tmp_path: Path) -> None:
    """safetensors makes its file private to the owner; a weights file is an ordinary
    file, readable as the umask says."""
    import os

    model = shapecli.build(CONFIGS / "mlp.yaml")
    (tmp_path / "plain").write_text("")
    expected = (tmp_path / "plain").stat().st_mode & 0o777
    for name in ("m.safetensors", "m.pt"):
        shapecli.save(model, tmp_path / name)
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name
    assert os.access(tmp_path / "m.safetensors", os.R_OK)


# -- memory --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("8GiB", 8 * 2**30),
        ("500MB", 500 * 10**6),
        ("1.5 kib", 1536),
        ("123", 123),
        ("2tb", 2 * 10**12),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8G", "8GiB or 8GB?"),
        ("lots", "is not a size"),
        ("0MB", "more than 0"),
        ("-1GB", "is not a size"),
    ],
)
def test_bad_sizes(text: str, message: str) -> None:
    with pytest.raises(ShapecliError, match=message.replace("?", r"\?")) as info:
        parse_size(text)
    assert info.value.problem.exit_code == 2


def test_max_memory_refuses_with_the_estimate_before_allocating(tmp_path: Path) -> None:
    """The estimate is at the weights' dtype, and with room for a forward pass when one
    will run (``--verify``); docs/training.md shows a 7B refusal through the command line."""
    from shapecli import api

    with pytest.raises(ShapecliError) as info:
        shapecli.build(CONFIGS / "mlp.yaml", max_memory="10KB")
    problem = info.value.problem
    assert problem.code == "too-large" and problem.exit_code == 1
    assert "the float32 weights need 31.0 KiB, more than --max-memory 9.8 KiB" in problem.message
    with pytest.raises(ShapecliError, match=r"the bfloat16 weights need 15\.5 KiB"):
        shapecli.build(CONFIGS / "mlp.yaml", max_memory=10_000, dtype="bfloat16")
    with pytest.raises(ShapecliError, match=r"weights and one forward pass need 35\.1 KiB"):
        api.build_file(CONFIGS / "mlp.yaml", tmp_path / "m.pt", max_memory="10KB", verify=True)
    assert leftovers(tmp_path) == []


def test_free_memory_is_what_the_kernel_calls_available(tmp_path: Path) -> None:
    from shapecli import budget

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 1000 kB\nMemFree: 10 kB\nMemAvailable: 600 kB\n")
    assert budget._meminfo_available(meminfo) == 600 * 1024
    (tmp_path / "memory.max").write_text("1000000\n")
    (tmp_path / "memory.current").write_text("400000\n")
    assert budget._cgroup_room(tmp_path) == 600000
    (tmp_path / "memory.max").write_text("max\n")
    assert budget._cgroup_room(tmp_path) is None


# -- verify --------------------------------------------------------------------------------


def materialized(path: Path, input: str) -> Materialized:
    from shapecli import api

    return api._materialize(path, input, room_for_forward=True)


@pytest.mark.parametrize(
    ("config", "input"), [("lenet5.yaml", "2x1x32x32"), ("resnet18.yaml", "1x3x32x32")]
)
def test_verify_passes_on_real_models(config: str, input: str) -> None:
    from shapecli.verify import verify

    made = materialized(CONFIGS / config, input)
    rows = verify(made.model, made.report, made.inputs)
    assert rows == sum(r.status == "ok" for r in made.report.rows) > 10


def test_verify_fails_on_a_wrong_meta_report() -> None:
    from shapecli.verify import verify

    made = materialized(CONFIGS / "lenet5.yaml", "2x1x32x32")
    report = made.report
    i = next(i for i, r in enumerate(report.rows) if r.path == "3")
    wrong = replace(report.rows[i], output_shapes=((2, 16, 11, 11),))
    bad = replace(report, rows=(*report.rows[:i], wrong, *report.rows[i + 1 :]))
    with pytest.raises(ShapecliError) as info:
        verify(made.model, bad, made.inputs)
    problem = info.value.problem
    assert problem.code == "verify-mismatch" and problem.exit_code == 1
    assert problem.message == (
        "layer 3 (LazyConv2d): the dry run says it returned 2×16×11×11, "
        "the real forward pass returned 2×16×10×10"
    )
    assert problem.source is not None and problem.source.line == 9


def test_verify_reports_a_real_forward_that_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    from shapecli.verify import verify

    made = materialized(CONFIGS / "lenet5.yaml", "1x1x32x32")

    def broken(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("no kernel for this")

    monkeypatch.setattr(nn.MaxPool2d, "forward", broken)
    with pytest.raises(ShapecliError) as info:
        verify(made.model, made.report, made.inputs)
    problem = info.value.problem
    assert (
        problem.message
        == "layer 2 (MaxPool2d) raised in the real forward pass, though the dry run passed it"
    )
    assert problem.detail == "RuntimeError: no kernel for this"


def test_verify_inputs_are_valid_ids_and_masks_and_leave_the_rng_alone() -> None:
    from shapecli.verify import real_inputs

    model = nn.Sequential(nn.Embedding(30, 4), nn.Embedding(7, 4))
    declared = shapecli.api.parse_inputs(["64x64:long", "2x3:bool", "2x3", "4x4:int8"])
    torch.manual_seed(0)
    expected = torch.rand(2)
    torch.manual_seed(0)
    ids, mask, floats, small = real_inputs(model, declared, seed=0)
    assert torch.equal(torch.rand(2), expected)
    assert ids.dtype == torch.int64 and ids.min() >= 0 and ids.max() == 6  # below 7
    assert mask.all() and floats.dtype == torch.float32 and small.max() < 7
    assert real_inputs(nn.Linear(2, 2), declared[:1])[0].count_nonzero() == 0  # no table: zeros


# -- the command ---------------------------------------------------------------------------


def test_cli_build_equals_api_build(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "lenet.safetensors"
    result = cli(
        "build",
        str(CONFIGS / "lenet5.yaml"),
        "-o",
        str(out),
        "--init",
        "kaiming_uniform",
        "--seed",
        "4",
        "--verify",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("verified 13 rows")
    assert "61,706 parameters, float32, init kaiming_uniform, seed 4" in result.stdout
    api = shapecli.build(CONFIGS / "lenet5.yaml", init="kaiming_uniform", seed=4)
    assert same_tensors(api, shapecli.build(CONFIGS / "lenet5.yaml", weights=out))


def test_cli_refusals_leave_no_file(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "m.safetensors")
    big = cli("build", str(CONFIGS / "mlp.yaml"), "-o", out, "--max-memory", "10KB")
    assert (
        big.exit_code == 1
        and "error[too-large] the float32 weights need 31.0 KiB, more than --max-memory 9.8 KiB"
        in big.stderr
    )
    broken = cli("build", str(CONFIGS / "mismatch.yaml"), "-o", out)
    assert broken.exit_code == 1 and "shape-mismatch" in broken.stderr
    for args in (["--dtype", "int8"], ["--init", "magic"], ["--max-memory", "8G"], ["-i", "2x"]):
        usage = cli("build", str(CONFIGS / "mlp.yaml"), "-o", out, *args)
        assert usage.exit_code == 2, args

    import shapecli.materialize

    real_dry_run = shapecli.materialize.dry_run

    def lying_dry_run(*args: object, **kwargs: object) -> shapecli.Report:
        report = real_dry_run(*args, **kwargs)  # type: ignore[arg-type]
        rows = tuple(
            replace(r, output_shapes=((2, 99),)) if r.path == "2" else r for r in report.rows
        )
        return replace(report, rows=rows)

    monkeypatch.setattr(shapecli.materialize, "dry_run", lying_dry_run)
    lie = cli("build", str(CONFIGS / "mlp.yaml"), "-o", out, "--verify")
    assert lie.exit_code == 1
    assert (
        "error[verify-mismatch] layer 2 (LazyLinear): the dry run says it returned 2×99"
        in lie.stderr
    )
    assert leftovers(tmp_path) == []


def test_cli_force(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    out.write_text("old")
    refused = cli("build", str(CONFIGS / "mlp.yaml"), "-o", str(out))
    assert (
        refused.exit_code == 2 and "already exists" in refused.stderr and out.read_text() == "old"
    )
    assert cli("build", str(CONFIGS / "mlp.yaml"), "-o", str(out), "--force").exit_code == 0
    assert set(torch.load(out, weights_only=True)) == {"0.weight", "0.bias", "2.weight", "2.bias"}


@pytest.mark.slow
@pytest.mark.process
def test_a_build_by_a_real_process_leaves_a_complete_file(tmp_path: Path) -> None:
    """The CLI ends with os._exit (no interpreter teardown): the file must be complete,
    closed and in place before that."""
    out = tmp_path / "gpt.safetensors"
    done = run_process(
        "build", "configs/gpt2.yaml", "--set", "layers=1", "--set", "d=64", "--set", "heads=2", "--set", "vocab=100",
        "-i", "1x16:long", "-o", str(out), "--init", "normal", "--seed", "7",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert leftovers(tmp_path) == ["gpt.safetensors"]
    # another process, the same options: the same bytes
    again = shapecli.build(
        CONFIGS / "gpt2.yaml",
        "1x16:long",
        set={"layers": 1, "d": 64, "heads": 2, "vocab": 100},
        init="normal",
        seed=7,
    )
    shapecli.save(again, tmp_path / "again.safetensors")
    assert digest(tmp_path / "again.safetensors") == digest(out)
    (tmp_path / "again.safetensors").unlink()
    loaded = shapecli.build(
        CONFIGS / "gpt2.yaml",
        "1x16:long",
        set={"layers": 1, "d": 64, "heads": 2, "vocab": 100},
        weights=out,
    )
    made = shapecli.build(
        CONFIGS / "gpt2.yaml",
        "1x16:long",
        set={"layers": 1, "d": 64, "heads": 2, "vocab": 100},
        init="normal",
        seed=7,
    )
    assert same_tensors(made, loaded)


def test_a_refused_target_costs_no_torch_import(tmp_path: Path) -> None:
    """The command line, the output file and the spec are checked before torch loads."""
    from test_process import imported_modules

    (tmp_path / "taken.pt").write_text("")
    args = ["configs/mlp.yaml", "-o", str(tmp_path / "taken.pt"), "--max-memory", "1GiB"]
    assert "torch" not in imported_modules("build", *args)
    assert leftovers(tmp_path) == ["taken.pt"]


def test_the_schema_knows_init() -> None:
    import jsonschema
    import yaml

    from shapecli.schema import spec_schema

    validator = jsonschema.Draft202012Validator(spec_schema())
    good = "init: orthogonal\nmodel:\n  - LazyLinear: 3\n    init: normal\n"
    assert validator.is_valid(yaml.safe_load(good))
    for bad in ("init: xavier\nmodel: [ReLU]\n", "model:\n  - LazyLinear: 3\n    init: 3\n"):
        assert not validator.is_valid(yaml.safe_load(bad)), bad


# -- a Ref is the layer it names -----------------------------------------------------------

REUSED = """\
input: 2x8
model:
  - LazyLinear: 8
    name: shared
  - ReLU
  - Ref: shared
"""


@pytest.mark.parametrize(
    ("option", "column", "words", "hint"),
    [
        (
            "trainable: false",
            16,
            "`trainable: false` cannot freeze a `Ref`",
            "put `trainable: false` on `shared` itself: that freezes every use of it",
        ),
        (
            "init: normal",
            11,
            "`init` cannot apply to a `Ref`",
            "put `init: normal` on `shared` itself",
        ),
    ],
)
def test_what_a_ref_cannot_do_is_refused_where_it_is_written(
    cli: Cli, write: Callable[[str], Path], option: str, column: int, words: str, hint: str
) -> None:
    """A Ref shares its target's weights, so freezing or initializing them at one use
    is impossible; before, the option was dropped without a word."""
    path = write(REUSED + f"    {option}\n")
    result = cli("inspect", str(path))
    assert result.exit_code == 1
    assert f"{path}:7:{column}: error[spec-invalid] {words}" in result.stderr
    assert f"hint: {hint}" in result.stderr
    lint = cli("lint", str(path))
    assert lint.exit_code == 1 and f"{path}:7:{column}: error[spec-invalid] {words}" in lint.stdout


def test_trainable_false_on_the_target_freezes_every_use_of_it() -> None:
    text = REUSED.replace("name: shared\n", "name: shared\n    trainable: false\n")
    model = shapecli.build(spec(text))
    assert not model.shared.weight.requires_grad
    assert model[2].target is model.shared  # the Ref calls the same, frozen, layer
    assert spec(REUSED + "    trainable: true\n").model  # a Ref may say what it is anyway


# -- tied weights and their init -----------------------------------------------------------


def test_init_on_a_tying_entry_sets_the_tied_weight() -> None:
    """GPT-2's head *is* the token embedding; `init: normal` on the head sets that one
    tensor. Before, it was dropped: the weight kept the Linear default."""
    tied = small_gpt2(
        lambda t: t.replace(
            "tie: {weight: wte.weight}", "tie: {weight: wte.weight}\n    init: normal"
        )
    )
    model = shapecli.build(tied, "1x8:long", seed=0)
    assert model.lm_head.weight is model.wte.weight
    assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.1)
    untouched = shapecli.build(small_gpt2(), "1x8:long", seed=0)
    # without it, the head's Linear initializes the tensor last: U(±1/√64)
    assert untouched.wte.weight.std().item() == pytest.approx(1 / math.sqrt(3 * 64), rel=0.1)
    # the same scheme at both ends of the tie is one wish, not a conflict
    both = small_gpt2(
        lambda t: t.replace("name: wte", "name: wte\n    init: normal").replace(
            "tie: {weight: wte.weight}", "tie: {weight: wte.weight}\n    init: normal"
        )
    )
    assert shapecli.build(both, "1x8:long", seed=0).wte.weight.std().item() == pytest.approx(
        0.02, rel=0.1
    )


def test_two_schemes_for_one_tied_weight_are_refused_where_written(
    cli: Cli, write: Callable[[str], Path], tmp_path: Path
) -> None:
    text = (
        TIED.replace("name: emb\n", "name: emb\n    init: xavier_normal\n") + "    init: normal\n"
    )
    path = write(text)
    result = cli("build", str(path), "-o", str(tmp_path / "t.safetensors"))
    assert result.exit_code == 1
    assert (
        f"{path}:7:5: error[spec-invalid] `init: normal` here and `init: xavier_normal` at "
        "line 3 name different schemes for one tied tensor, `emb.weight` = `head.weight`, "
        "which is initialized once" in result.stderr
    )
    assert "hint: name the scheme on one of them only" in result.stderr
    assert leftovers(tmp_path) == ["spec.yaml"]


# -- the same build, the same bytes --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_the_same_spec_seed_and_options_give_the_same_file(
    cli: Cli, write: Callable[[str], Path], tmp_path: Path, suffix: str
) -> None:
    """safetensors wrote its metadata (here: the tied head) in a random order, and
    torch.save named the folder in its zip after the random temporary file."""
    path = write((CONFIGS / "gpt2.yaml").read_text(encoding="utf-8"), "gpt2.yaml")
    options = [f"--set={k}={v}" for k, v in SMALL_GPT2.items()]
    hashes = set()
    for name in ("a", "b", "c"):
        out = tmp_path / f"{name}{suffix}"
        done = cli("build", str(path), "-i", "1x8:long", *options, "--seed", "3", "-o", str(out))
        assert done.exit_code == 0, done.stderr
        hashes.add(digest(out))
    assert len(hashes) == 1


def test_safetensors_metadata_is_in_name_order_and_loads(tmp_path: Path) -> None:
    from safetensors import safe_open

    text = TIED + "  - LazyLinear: 8\n    tie: {bias: 1.bias}\n"
    model = shapecli.build(spec(text))
    shapecli.save(model, tmp_path / "t.safetensors")
    data = (tmp_path / "t.safetensors").read_bytes()
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    assert list(header["__metadata__"]) == ["3.bias", "format", "head.weight", "producer"]
    with safe_open(tmp_path / "t.safetensors", framework="pt") as f:  # safetensors reads it
        assert f.metadata() == header["__metadata__"]
    assert same_tensors(model, shapecli.build(spec(text), weights=tmp_path / "t.safetensors"))
