"""Every error leads somewhere, every output is scriptable: the messages a new user
meets, checked word for word where the words are the point."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CONFIGS, Result

Cli = Callable[..., Result]


def first_error(cli: Cli, spec: Path, *args: str) -> str:
    """The whole stderr of ``inspect`` (the first problem and its detail lines)."""
    return cli("inspect", str(spec), *args).stderr


# -- rank before sizes --------------------------------------------------------------------


def test_a_missing_batch_dimension_is_a_rank_error(cli: Cli, write: Callable[..., Path]) -> None:
    spec = write(
        "input: 1x28x28\nmodel:\n  - LazyConv2d: {out_channels: 8, kernel_size: 3}\n"
        "  - LazyBatchNorm2d\n"
    )
    text = first_error(cli, spec)
    assert "expects a 4-D input (N×C×…), not 3-D" in text
    assert "probably the batch (N)" in text and "--input 1x1x28x28 instead of 1x28x28" in text
    assert "num_features: auto" not in text  # the layer is lazy already


def test_a_flat_input_to_a_convolution(cli: Cli, write: Callable[..., Path]) -> None:
    spec = write("input: 8x784\nmodel:\n  - LazyConv2d: {out_channels: 8, kernel_size: 3}\n")
    text = first_error(cli, spec)
    assert "expects a 4-D or 3-D input (N×C×H×W), not 2-D" in text and "flat" in text
    assert "C = 0" not in text  # no lazy placeholder leaks out


# -- --set mistakes are usage errors that name the option -------------------------------------


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("d=abc", "--set d=abc: `d` is a whole number in the spec (64), not text"),
        ("d=", "--set d=: give a value after `=`, e.g. --set d=64"),
        ("d=99999999999999999999999", "the number does not fit in 64 bits"),
        ("layers=true", "`layers` is a whole number in the spec (2), not true or false"),
        ("dd=3", "no param `dd` (did you mean `d`?)"),
    ],
)
def test_set_mistakes_are_usage_errors(
    cli: Cli, write: Callable[..., Path], setting: str, says: str
) -> None:
    spec = write('params: {d: 64, layers: 2}\ninput: 2x8\nmodel:\n  - LazyLinear: "${d}"\n')
    result = cli("inspect", str(spec), "--set", setting)
    assert result.exit_code == 2 and "error[usage] --set " in result.stderr
    assert says in result.stderr


# -- hints that lead somewhere --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "input: 2x5x8\nmodel:\n  - LazyLinear: 8\n  - MultiheadAttention: [8, 2]\n",
            "`in: [_, _, _]` (query, key, value)",
        ),
        (
            "input: 2x8x4x4\nmodel:\n  - Attention: {dim: auto, heads: 2}\n",
            "flatten the positions into one sequence first",
        ),
        (
            "input: 2x5x8\nmodel:\n  - LSTM: [8, 4]\n  - Take: 5\n",
            "cannot take its input (2×5×4, (1×5×4, 1×5×4)): Take(5) got a tuple of 2",
        ),
        (
            "input: 2x8\nmodel:\n  - Parallel: {branches: [[ReLU], [{LSTM: [8, 4]}]], merge: add}\n",
            "Parallel branch 1 returned a tuple, not a tensor",
        ),
        ("input: 2x8\nmodel:\n  - Parallel: {branches: []}\n", "at least one"),
    ],
)  # fmt: skip
def test_hints_lead_somewhere(cli: Cli, write: Callable[..., Path], text: str, says: str) -> None:
    result = cli("inspect", str(write(text)))
    assert result.exit_code == 1 and says in result.stderr, result.stderr
    assert "torch: LayerInputError" not in result.stderr  # our own words are the message


@pytest.mark.parametrize(
    ("layer", "says"),
    [
        ("Attention: {dim: auto, heads: 5}", "layer 0 (Attention) cannot be built for its input 2×10×32 (dim: auto = 32): dim 32 is not divisible by heads 5; set head_dim"),
        ("Attention: {dim: 32, heads: 5}", "error[bad-arguments] Attention: dim 32 is not divisible by heads 5; set head_dim"),
        ("Attention: {dim: 32, heads: 4, kv_heads: 3}", "Attention: heads 4 is not a multiple of kv_heads 3"),
    ],
)  # fmt: skip
def test_lint_says_why_our_own_layer_refused(
    cli: Cli, write: Callable[..., Path], layer: str, says: str
) -> None:
    """The one line lint prints carries our layer's reason, not only inspect's detail."""
    spec = write(f"input: 2x10x32\nmodel:\n  - {layer}\n")
    result = cli("lint", str(spec))
    assert result.exit_code == 1 and f"{spec}:3:5: " in result.stdout
    assert says in result.stdout, result.stdout
    inspected = cli("inspect", str(spec)).stderr
    assert "torch:" not in inspected and "ValueError" not in inspected  # said once, above


def test_a_torch_layer_that_refuses_an_auto_size_names_the_size(
    cli: Cli, write: Callable[..., Path]
) -> None:
    spec = write(
        "input: 2x10x32\nmodel:\n  - MultiheadAttention: {embed_dim: auto, num_heads: 5}\n"
    )
    stderr = cli("inspect", str(spec)).stderr
    assert "cannot be built for its input 2×10×32 (embed_dim: auto = 32)" in stderr
    assert "torch: AssertionError: embed_dim must be divisible by num_heads" in stderr


@pytest.mark.parametrize(
    ("layer", "says"),
    [
        ("Cat: 3", "2×8×32 and 2×8×32: dim 3 is out of range for 3-D tensors (valid: -3…2); it expects at least 4 dims for dim 3"),
        ("Cat: -4", "dim -4 is out of range for 3-D tensors (valid: -3…2)"),
        ("Stack: 4", "dim 4 is out of range for stacking 3-D tensors (valid: -4…3)"),
        ("Transpose: [1, 3]", "2×8×32: dim 3 is out of range for a 3-D input (valid: -3…2)"),
        ("Mean: 3", "dim 3 is out of range for a 3-D input"),
        ("Select: {dim: -4, index: 0}", "dim -4 is out of range for a 3-D input"),
        ("Roll: {shifts: 1, dims: 3}", "dim 3 is out of range for a 3-D input"),
        ("Permute: [0, 3, 1]", "dim 3 is out of range for a 3-D input"),
        ("Permute: [0, 2, -1]", "Permute([0, 2, -1]) names a dim twice; it expects each of the 3 dims once"),
    ],
)  # fmt: skip
def test_a_dim_out_of_range_says_so(
    cli: Cli, write: Callable[..., Path], layer: str, says: str
) -> None:
    """Not `equal shapes except in dim 3` for two equal shapes: the dim is the mistake."""
    wiring = "\n    in: [_, x]" if layer.startswith(("Cat", "Stack")) else ""
    spec = write(f"input: {{x: 2x8x32}}\nmodel:\n  - ReLU\n  - {layer}{wiring}\n")
    stderr = cli("inspect", str(spec)).stderr
    assert f"{spec}:4:5: error[shape-mismatch] layer 1 " in stderr and says in stderr, stderr
    assert "torch:" not in stderr


def test_branches_that_pass_through_and_tuples_that_stay_tuples(
    cli: Cli, write: Callable[..., Path]
) -> None:
    spec = write(
        "input: 2x8\nmodel:\n"
        "  - Parallel: {branches: [[], [{LazyLinear: 8}]], merge: add}\n"  # [] passes x on
        "  - Parallel: {branches: [[{LSTM: [8, 4]}], [ReLU]], merge: tuple}\n"
    )
    result = cli("inspect", str(spec), "-f", "json")
    assert result.exit_code == 0, result.stdout
    assert result.json()["layers"][0]["output_shapes"] == [[2, 4], [1, 4], [1, 4], [2, 8]]


def test_a_layer_given_as_an_argument(cli: Cli, write: Callable[..., Path]) -> None:
    spec = write(
        "input: 2x5x8\nmodel:\n  - TransformerEncoder:\n"
        "      encoder_layer: {TransformerEncoderLayer: {d_model: 8, nhead: 2, batch_first: true}}\n"
        "      num_layers: 2\n"
    )
    doc = cli("inspect", str(spec), "-f", "json").json()
    assert doc["ok"] and doc["totals"]["params"] == 2 * 35_144


# -- did you mean, everywhere names are looked up -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("blocks:\n  encoder: [ReLU]\ninput: 2x4\nmodel:\n  - encodr\n", "(did you mean `encoder`?)"),
        ("input: {shape: 2x3, dtyp: long}\nmodel: [ReLU]\n", "`dtyp` (did you mean `dtype`?)"),
        ("input: {x: 2x3}\nmodel:\n  - ReLU:\n    in: xx\n", "(did you mean `x`?)"),
        ("input: 2x3\nmodel:\n  - Param: {shape: 4, init: zeross}\n", "'trunc_normal' or a number, not the text 'zeross' (did you mean `zeros`?)"),
        ("input: 2x3x8\nmodel:\n  - RNN: {input_size: 8, hidden_size: 4, nonlinearity: rleu}\n", "not the text 'rleu' (did you mean `relu`?)"),
    ],
)  # fmt: skip
def test_did_you_mean(cli: Cli, write: Callable[..., Path], text: str, says: str) -> None:
    stderr = cli("inspect", str(write(text))).stderr
    assert says in stderr, stderr
    assert "without quotes" not in stderr  # no number was meant


def test_quoted_text_that_is_no_number_is_not_told_to_drop_its_quotes(
    cli: Cli, write: Callable[..., Path]
) -> None:
    stderr = cli("inspect", str(write('input: 2x3\nmodel:\n  - LazyLinear: "sixteen"\n'))).stderr
    assert stderr.endswith("must be a whole number, not the text 'sixteen'\n"), stderr


# -- YAML 1.2 booleans: `yes` is text, and every place that wants a bool says so -----------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('params: {p: yes}\ninput: 2x4\nmodel:\n  - ReLU:\n    if: "${p}"\n', ":5:9: error[spec-invalid] `if` is true or false"),
        ('params: {p: yes}\ninput: 2x4\nmodel:\n  - ReLU:\n    if: "${p}"\n', "— not 'yes'; YAML 1.2 reads `yes` as text: write true\n"),
        ("input: 2x4\nmodel:\n  - ReLU:\n    if: off\n", "not 'off'; YAML 1.2 reads `off` as text: write false\n"),
        ('params: {p: On}\ninput: 2x4\nmodel:\n  - ReLU:\n    if: "${not p}"\n', "`p` is 'On', not true or false (YAML 1.2 reads `On` as text: write true)"),
        ("input: 2x4\nmodel:\n  - ReLU:\n    trainable: no\n", "not 'no'; YAML 1.2 reads `no` as text: write false"),
        ("input: 2x4x3\nmodel:\n  - LSTM: {input_size: 3, hidden_size: 4, batch_first: yes}\n", "not the text 'yes' (YAML 1.2 reads `yes` as text: write true)"),
    ],
)  # fmt: skip
def test_yaml11_booleans_say_so(cli: Cli, write: Callable[..., Path], text: str, says: str) -> None:
    result = cli("inspect", str(write(text)))
    assert result.exit_code == 1 and says in result.stderr, result.stderr
    assert "YAML 1.2 reads" in cli("lint", str(write(text))).stdout  # on lint's one line too


def test_set_of_a_yaml11_boolean_says_so(cli: Cli, write: Callable[..., Path]) -> None:
    spec = write('params: {p: true}\ninput: 2x4\nmodel:\n  - ReLU:\n    if: "${p}"\n')
    result = cli("inspect", str(spec), "--set", "p=no")
    assert result.exit_code == 2, result.stderr
    assert "not text (YAML 1.2 reads `no` as text: write false)" in result.stderr


# -- indentation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ("input: 2x4\nmodel:\n  - LazyLinear: 4\n      name: fc\n", ":4:11:", "check the indentation of `name:`"),
        ("input: 2x4\nmodel:\n  - LazyLinear:\n      out_features: 4\n     name: fc\n", ":5:6:", "check the indentation of `name:`"),
        ("input: 2x4\nmodel:\n  - ReLU\n    - Tanh\n", ":3:5:", "`- Tanh` is indented deeper than `- ReLU`"),
        ("input: 2x4\nmodel:\n  - Mul:\n      in: [_, _]\n", ":4:11:", "`in:` is an entry option, not an argument of Mul"),
        ("input: 2x4\nmodel:\n  - LazyLinear:\n      out_features: 4\n      init: normal\n", ":5:13:", "`init:` is an entry option, not an argument of LazyLinear"),
        ("input: 2x4\nmodel:\n  - ReLU\n    name: act\n", ":4:9:", "needs a colon after its type"),
    ],
)  # fmt: skip
def test_indentation_mistakes_say_so(
    cli: Cli, write: Callable[..., Path], text: str, where: str, says: str
) -> None:
    stderr = cli("inspect", str(write(text))).stderr
    assert where in stderr.splitlines()[0] and says in stderr, stderr


# -- expressions and input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('params: {h: 128}\ninput: 2x4\nmodel:\n  - LazyLinear: "${h / 2}"\n', "not 64.0 (write 64; in an expression `//` divides"),
        ('params: {h: 128}\ninput: 2x4\nmodel:\n  - LazyLinear: "${h}/2"\n', "only a string that is exactly one `${…}` is evaluated"),
        ("input: 2x4\nmodel:\n", "`model:` is empty; it needs at least one layer"),
        ('input: [2, "20"]\nmodel: [ReLU]\n', 'dimension "20" is quoted text; write it without quotes'),
        ("input: 2x4\nmodel:\n  - ReLU:\n    name: слой\n", "must be ASCII letters"),
    ],
)  # fmt: skip
def test_expression_and_spec_messages(
    cli: Cli, write: Callable[..., Path], text: str, says: str
) -> None:
    assert says in cli("inspect", str(write(text))).stderr


@pytest.mark.parametrize(
    ("given", "says"),
    [("[2, 20", "the list is not closed"), ("2X20", "use a lowercase x"), ("2×20", "use the letter x")],
)  # fmt: skip
def test_input_grammar_messages(cli: Cli, given: str, says: str) -> None:
    result = cli("inspect", str(CONFIGS / "mlp.yaml"), "--input", given)
    assert result.exit_code == 2 and says in result.stderr


def test_the_inferred_footnote_only_when_a_shown_row_is_marked(cli: Cli) -> None:
    assert "* input size inferred" in cli("inspect", str(CONFIGS / "mlp.yaml")).stdout
    shallow = cli("inspect", str(CONFIGS / "mlp.yaml"), "--depth", "0").stdout
    assert "*" not in shallow.replace("Dry run", "")  # only the root row: nothing marked


def test_a_one_module_model_has_activation_memory(cli: Cli, write: Callable[..., Path]) -> None:
    doc = cli("inspect", str(write("input: 2x4\nmodel:\n  LazyLinear: 3\n")), "-f", "json").json()
    assert doc["totals"]["activation_bytes"] == 2 * 3 * 4


# -- output and help ------------------------------------------------------------------------


def test_markdown_diagnostics_go_to_stderr(cli: Cli) -> None:
    result = cli("inspect", str(CONFIGS / "mismatch.yaml"), "-f", "markdown")
    assert result.stdout.startswith("### `mismatch` · input 2x20\n")
    assert "error[shape-mismatch]" in result.stderr and "torch: RuntimeError" in result.stderr
    assert "> **error** `shape-mismatch`" in result.stdout  # the document says it failed


def test_help_and_version(cli: Cli) -> None:
    main = cli("--help").stdout
    assert "--traceback " in main and "<bool>" not in main and "--version" in main
    assert cli("--version").stdout.startswith("shapecli ")
    inspect = cli("inspect", "--help").stdout
    assert "Usage: shapecli inspect [OPTIONS] SPEC" in inspect and "{SPEC}" not in inspect
    lint = cli("lint", "--help").stdout
    assert "[OPTIONS] PATH..." in lint and "list[str]" not in lint
    assert "[default: github when" in lint
    assert cli("--traceback", "inspect", str(CONFIGS / "mlp.yaml")).exit_code == 0  # a flag


def test_layers_lists_each_type_once(cli: Cli) -> None:
    text = cli("layers", "MaxPool2d").stdout
    assert "int | list | list" not in text and "kernel_size: int | list" in text
    assert cli("layers", "zzz").exit_code == 1


# -- scripting --------------------------------------------------------------------------------


def test_repeat_groups_keep_their_type(cli: Cli) -> None:
    layers = cli("inspect", str(CONFIGS / "gpt2.yaml"), "-f", "json").json()["layers"]
    group = next(row for row in layers if row["path"] == "h")
    assert group["type"] == "block" and group["repeat"] == 12
    assert "block ×12" in cli("inspect", str(CONFIGS / "gpt2.yaml")).stdout


@pytest.mark.slow
def test_paths_column_and_json_depth(cli: Cli) -> None:
    table = cli("inspect", str(CONFIGS / "resnet18.yaml"), "--paths", "-d", "3").stdout
    assert "Path" in table.splitlines()[1] and "layer1.0.0 " in table
    doc = cli("inspect", str(CONFIGS / "gpt2.yaml"), "-f", "json", "-d", "1").json()
    assert {row["depth"] for row in doc["layers"]} == {0, 1}
    every = cli("inspect", str(CONFIGS / "gpt2.yaml"), "-f", "json").json()
    assert max(row["depth"] for row in every["layers"]) > 3  # by default: every module


def test_a_file_error_report_is_not_complete(cli: Cli) -> None:
    doc = cli("inspect", "nowhere.yaml", "-f", "json").json()
    assert doc["errors"][0]["code"] == "file-error" and doc["totals"]["complete"] is False


# -- messages that used to mislead ------------------------------------------------------------


def test_build_without_an_input_names_the_option(
    cli: Cli, write: Callable[..., Path], tmp_path: Path
) -> None:
    """The command line's words on the command line: ``--input``, not ``input=``."""
    spec = write("model:\n  - LazyLinear: 3\n")
    result = cli("build", str(spec), "-o", str(tmp_path / "w.safetensors"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{spec}: error[input-invalid] no input shape; ")
    assert "--input 2x20" in result.stderr and "`input:`" in result.stderr
    assert not (tmp_path / "w.safetensors").exists()


@pytest.mark.parametrize(
    ("target", "spec"),
    [
        ("shapecli_here_pkg:net", None),
        (None, "input: 2x4\nmodel:\n  - shapecli_here_pkg.Net\n"),
    ],
)
def test_a_package_in_the_current_folder_is_told_to_use_pythonpath(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str | None, spec: str | None
) -> None:
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    package = here / "shapecli_here_pkg"
    package.mkdir(parents=True)
    elsewhere.mkdir()
    (package / "__init__.py").write_text(
        "from torch import nn\n\nclass Net(nn.Linear):\n    def __init__(self):\n"
        "        super().__init__(4, 3)\n\ndef net():\n    return Net()\n"
    )
    for folder in (here, elsewhere):
        (folder / "s.yaml").write_text(spec or "")
    args = ["inspect", target or "s.yaml", "--input", "2x4", "--allow-import", "shapecli_here_pkg"]
    monkeypatch.chdir(here)
    result = cli(*args)
    assert result.exit_code == 1 and "No module named 'shapecli_here_pkg'" in result.stderr
    assert "hint: `shapecli_here_pkg` is in the current folder" in result.stderr
    assert "PYTHONPATH=. shapecli" in result.stderr
    monkeypatch.chdir(elsewhere)  # elsewhere, the folder is no reason
    result = cli(*args)
    assert result.exit_code == 1 and "PYTHONPATH" not in result.stderr


@pytest.mark.parametrize(
    "linear",
    ["Linear: [16, 4]", "LazyLinear: 4", "Linear: {in_features: auto, out_features: 4}"],
)
def test_a_tuple_fed_to_a_layer_that_needs_a_tensor_is_told_to_take_one(
    cli: Cli, write: Callable[..., Path], linear: str
) -> None:
    spec = write(
        "input: 2x10x8\nmodel:\n"
        "  - LSTM: {input_size: 8, hidden_size: 16, batch_first: true}\n"
        f"  - {linear}\n"
    )
    result = cli("inspect", str(spec))
    assert result.exit_code == 1
    assert "it expects a tensor, not a tuple of 2" in result.stderr
    assert "hint: 0 (LSTM) returns a tuple: add `Take: 0` after it" in result.stderr
    assert "last dim 16" not in result.stderr  # the tuple's first tensor does end in 16
    assert "torch:" not in result.stderr  # 'tuple' object has no attribute … explains nothing


def test_weights_made_on_the_cpu_are_blamed_on_the_device(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shapecli_cpu_model.py").write_text(
        "from torch import nn\n\ndef net():\n"
        "    return nn.Sequential(nn.Linear(4, 8, device='cpu'), nn.Linear(8, 2, device='cpu'))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    result = cli(
        "inspect",
        "shapecli_cpu_model:net",
        "--input",
        "2x4",
        "--allow-import",
        "shapecli_cpu_model",
    )
    assert result.exit_code == 1
    assert "it expects its tensors on the meta device, where the dry run runs, not on cpu" in (
        result.stderr
    )
    assert "leave the device out" in result.stderr
    assert "expects last dim 4" not in result.stderr and "in_features: auto" not in result.stderr
