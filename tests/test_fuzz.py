"""Property-based fuzzing: no input — random YAML, spec-shaped nonsense, mutated
shipped configs, random ``--input`` — makes shapecli fail with anything but a clear
error (exit 0, 1 or 2: an internal error is exit 3, and any exception escapes
``CliRunner`` here), and every run finishes quickly."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from conftest import CONFIGS, Result

Cli = Callable[..., Result]
SECONDS = 20  # per run: bounded time, far above what a run takes

LAYERS = ["LazyLinear", "Linear", "ReLU", "LayerNorm", "Conv2d", "LazyConv2d", "Flatten",
          "Embedding", "Residual", "Parallel", "Attention", "Reshape", "Take", "Ref",
          "BatchNorm2d", "MaxPool2d", "LSTM", "Sequential", "Dropout", "Nope", "torch.nn.ReLU"]  # fmt: skip
WORDS = ["auto", "${d}", "${d * 2}", "${", "no", "on", "2x3", "1x3x8x8:long", "0.weight", "x",
         "", "-1", "1e9", "cat", "mul", "tuple", "body", "shortcut", "name", "repeat", "tie"]  # fmt: skip
ARGUMENTS = ["out_features", "in_features", "kernel_size", "stride", "dim", "heads", "body",
             "branches", "merge", "normalized_shape", "bias", "padding"]  # fmt: skip
PLAIN_TEXT = st.sampled_from(WORDS) | st.text(max_size=12)
SCALARS = (
    st.none() | st.booleans() | st.integers(-3, 2**40) | st.floats(allow_nan=True) | PLAIN_TEXT
)

ARGUMENT_VALUES = SCALARS | st.lists(SCALARS | st.lists(SCALARS, max_size=3), max_size=4)


def entry() -> st.SearchStrategy[Any]:
    layer = st.sampled_from(LAYERS)
    arguments = ARGUMENT_VALUES | st.dictionaries(
        st.sampled_from(ARGUMENTS), ARGUMENT_VALUES, max_size=3
    )
    simple = layer | st.dictionaries(layer, arguments, min_size=1, max_size=1)
    with_options = st.builds(
        lambda e, o: {**e, **o} if isinstance(e, dict) else e,
        simple,
        st.dictionaries(
            st.sampled_from(["name", "repeat", "trainable", "tie"]), SCALARS, max_size=2
        ),
    )
    return with_options | st.lists(with_options | st.lists(with_options, max_size=3), max_size=4)


SPECS = st.fixed_dictionaries(
    {"model": st.lists(entry(), max_size=6)},
    optional={
        "input": st.sampled_from(["2x8", "1x3x8x8", "2x4x8", "1x6:long", "2x0", [2, 8], "B"]),
        "params": st.dictionaries(st.sampled_from(["d", "n"]), SCALARS, max_size=2),
        "name": PLAIN_TEXT,
        "blocks": st.dictionaries(
            st.sampled_from(["blk", "ReLU"]), st.lists(entry(), max_size=3), max_size=1
        ),
    },
)


def check(cli: Cli, tmp_path: Path, data: bytes, *extra: str) -> None:
    spec = tmp_path / "fuzz.yaml"
    spec.write_bytes(data)
    start = time.perf_counter()
    for args in (["inspect", str(spec), *extra], ["lint", str(spec), "-f", "json", *extra]):
        result = cli(*args)
        assert result.exit_code in (0, 1, 2), (
            data[:300],
            result.stdout[-500:],
            result.stderr[-1000:],
        )
        assert "Traceback" not in result.stdout + result.stderr
    assert time.perf_counter() - start < SECONDS


@pytest.mark.slow
@given(
    text=st.text(
        alphabet=st.sampled_from(list("- :[]{}&*!|>'\"#%@`,?\n\t abcx0129\\.$")), max_size=80
    )
)
def test_random_yaml_text(cli: Cli, tmp_path_factory: Any, text: str) -> None:
    check(cli, tmp_path_factory.mktemp("t"), text.encode())


@pytest.mark.slow
@given(document=SPECS)
def test_spec_shaped_documents(cli: Cli, tmp_path_factory: Any, document: dict[str, Any]) -> None:
    check(
        cli,
        tmp_path_factory.mktemp("s"),
        yaml.safe_dump(document, allow_unicode=True).encode(),
        "-i",
        "2x8",
    )


SHIPPED = [p for p in sorted(CONFIGS.glob("*.yaml")) if "llama2" not in p.name]


@pytest.mark.slow
@given(
    config=st.sampled_from(SHIPPED),
    edits=st.lists(
        st.tuples(
            st.floats(0, 1),
            st.integers(0, 6),
            st.sampled_from(
                ["", " ", "-", ":", "[", "]", "0", "\n", "auto", "${", "x", "\t", "é", "\x00"]
            ),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_shipped_configs(
    cli: Cli, tmp_path_factory: Any, config: Path, edits: list[tuple[float, int, str]]
) -> None:
    text = config.read_text()
    for where, cut, insert in edits:  # delete `cut` characters at a point and insert something
        i = int(where * len(text))
        text = text[:i] + insert + text[i + cut :]
    check(cli, tmp_path_factory.mktemp("m"), text.encode("utf-8", "surrogatepass"))


@pytest.mark.slow
@given(
    shape=st.text(alphabet=st.sampled_from(list("0123456789xX:[], -_.abBlongfat×２")), max_size=24)
    | st.text(max_size=10)
)
def test_random_input_strings(cli: Cli, shape: str) -> None:
    result = cli("inspect", str(CONFIGS / "mlp.yaml"), "--input", shape)
    assert result.exit_code in (0, 1, 2) and "Traceback" not in result.stderr


# -- hidden characters in every place a spec names something ---------------------------------

HIDDEN = st.characters(categories=("Cc", "Cf", "Zl", "Zp"))  # controls, format, separators
NAMES = st.text(alphabet=HIDDEN | st.sampled_from(list("ab_:@<#|` ")), min_size=1, max_size=8)
SLOTS = ["model name", "layer name", "key", "param", "block", "in", "type", "output",
         "description", "argument", "file name"]  # fmt: skip
REFUSED_IF_HIDDEN = {"model name", "key", "param", "block"}  # a key, or the model's name


def spec_with(slot: str, text: str) -> dict[str, Any]:
    """A working spec with ``text`` in ``slot``."""
    layer: dict[str, Any] = {"LazyLinear": 4}
    document: dict[str, Any] = {"input": "2x3", "model": [layer, "ReLU"]}
    if slot == "model name":
        document["name"] = text
    elif slot == "layer name":
        layer["name"] = text
    elif slot == "key":
        layer["LazyLinear"] = {text: 4}
    elif slot == "param":
        document["params"] = {text: 4}
    elif slot == "block":
        document["blocks"] = {text: ["ReLU"]}
    elif slot == "in":
        document["model"][1] = {"ReLU": None, "in": text}
    elif slot == "type":
        document["model"][1] = text
    elif slot == "output":
        document["output"] = text
    elif slot == "description":
        document["description"] = text
    elif slot == "argument":
        layer["LazyLinear"] = text
    return document


@pytest.mark.slow
@given(slot=st.sampled_from(SLOTS), text=NAMES)
def test_hidden_characters_in_names_never_reach_an_output(
    cli: Cli, tmp_path_factory: Any, slot: str, text: str
) -> None:
    """Wherever a spec names something, a control or format character (written raw or
    as a YAML escape) is refused or shown as its escape: no output of any command
    carries it as it is."""
    folder = tmp_path_factory.mktemp("h")
    stem = text.replace("/", "").replace("\0", "") if slot == "file name" else "spec"
    spec = folder / f"{stem or 'x'}.yaml"
    spec.write_text(yaml.safe_dump(spec_with(slot, text), allow_unicode=True), encoding="utf-8")
    for args in (
        ["inspect", str(spec)],
        ["inspect", str(spec), "-f", "markdown"],
        ["lint", str(spec)],
        ["lint", str(folder), "-f", "github"],
    ):
        result = cli(*args)
        output = result.stdout + result.stderr
        assert result.exit_code in (0, 1, 2), (slot, text, output)
        raw = {c for c in output if not c.isprintable() and c != "\n"}
        assert not raw, (slot, text, args, output)
        assert not any(line.startswith("::") and "title=shapecli" not in line
                       for line in output.splitlines())  # fmt: skip
    if slot in REFUSED_IF_HIDDEN and not text.isprintable():
        assert cli("inspect", str(spec)).exit_code == 1
