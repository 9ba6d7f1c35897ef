"""Acceptance: the real CLI — exit codes, streams, and the JSON document."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CONFIGS, Result

Cli = Callable[..., Result]


def test_mlp_table(cli: Cli, golden: Callable[[str, str], None]) -> None:
    result = cli("inspect", str(CONFIGS / "mlp.yaml"), "--input", "2x20")
    assert result.exit_code == 0 and result.stderr == ""
    assert "weight 256×20 · bias 256" in result.stdout
    assert "Total params: 7,946" in result.stdout
    assert "meta device: no memory was allocated" in result.stdout
    golden("mlp.txt", result.stdout)


def test_partial_marks_inferred_layers(cli: Cli, golden: Callable[[str, str], None]) -> None:
    result = cli("inspect", str(CONFIGS / "partial.yaml"))
    assert result.exit_code == 0
    lines = {
        line.split()[1]: line for line in result.stdout.splitlines() if line.startswith(("├", "└"))
    }
    assert "(Linear)" in lines["0"] and "*" not in lines["0"]
    assert "(LazyLinear*)" in lines["2"]
    assert "* input size inferred by the dry run" in result.stdout
    golden("partial.txt", result.stdout)


def test_mismatch(cli: Cli, golden: Callable[[str, str], None]) -> None:
    result = cli("inspect", str(CONFIGS / "mismatch.yaml"))
    assert result.exit_code == 1
    assert "✗ 2 (Linear)" in result.stdout
    assert "Linear: [30, 10]" in (CONFIGS / "mismatch.yaml").read_text().splitlines()[7]
    first = result.stderr.splitlines()[0]
    assert first.startswith(
        f"{CONFIGS / 'mismatch.yaml'}:8:5: error[shape-mismatch] layer 2 (Linear)"
    )
    assert "2×256" in first and "last dim 30 (in_features)" in first
    assert "0 (LazyLinear)" in result.stderr
    assert "hint: use `LazyLinear` or `in_features: auto`" in result.stderr
    assert "torch: RuntimeError:" in result.stderr
    golden(
        "mismatch.txt",
        result.stdout + "--- stderr ---\n" + result.stderr.replace(str(CONFIGS), "configs"),
    )


def test_json_is_one_document_with_the_schema(cli: Cli) -> None:
    result = cli("inspect", str(CONFIGS / "mlp.yaml"), "--format", "json")
    assert result.exit_code == 0 and result.stderr == ""
    doc = result.json()
    assert doc["schema_version"] == 1 and doc["ok"] is True and doc["errors"] == []
    assert doc["inputs"] == [
        {"name": "input", "shape": [2, 20], "dtype": "float32", "named": False}
    ]
    assert set(doc) >= {"name", "spec", "inputs", "ok", "layers", "totals", "errors"}
    layer = doc["layers"][1]
    assert set(layer) >= {
        "path", "name", "type", "depth", "source", "input_shapes", "output_shapes", "params",
        "param_count", "flops",
    }  # fmt: skip
    assert layer["path"] == "0" and layer["type"] == "LazyLinear" and layer["depth"] == 1
    assert layer["source"] == {"file": str(CONFIGS / "mlp.yaml"), "line": 6, "column": 5}
    assert layer["params"][0] == {
        "name": "weight", "shape": [256, 20], "count": 5120, "trainable": True, "shared_with": None,
    }  # fmt: skip
    assert doc["totals"]["params"] == 7946 and doc["totals"]["param_bytes"] == 7946 * 4


def test_json_for_errors_is_still_one_document(cli: Cli, write: Callable[..., Path]) -> None:
    result = cli("inspect", str(CONFIGS / "mismatch.yaml"), "-f", "json")
    assert result.exit_code == 1 and result.stderr == ""
    (error,) = result.json()["errors"]
    assert error["code"] == "shape-mismatch" and error["path"] == "2"
    assert error["source"]["line"] == 8 and error["input_shapes"] == [[2, 256]]
    assert error["expected"] == "last dim 30 (in_features)" and error["hint"]
    bad = write("model:\n  - LazyLinear: 4\n   - ReLU\n")
    result = cli("inspect", str(bad), "-i", "2x3", "-f", "json")
    assert result.exit_code == 1 and result.stderr == ""
    doc = result.json()
    assert doc["ok"] is False and doc["layers"] == []
    assert doc["errors"][0]["code"] == "yaml-syntax" and doc["errors"][0]["source"]["line"] == 3
    result = cli("inspect", str(bad), "-i", "2×3", "-f", "json")
    assert result.exit_code == 2 and result.json()["errors"][0]["code"] == "input-invalid"


def test_markdown(cli: Cli, golden: Callable[[str, str], None]) -> None:
    result = cli("inspect", str(CONFIGS / "mlp.yaml"), "-f", "markdown")
    assert result.exit_code == 0
    assert "| Layer | Type | Input | Output | Parameters | Count |" in result.stdout
    golden("mlp.md", result.stdout)


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (
            ["inspect", "missing.yaml", "-i", "2x3"],
            2,
            "missing.yaml: error[file-error] no such file",
        ),
        (["inspect", "{dir}", "-i", "2x3"], 2, "is a directory"),
        (["inspect", "{spec}", "-i", "2x-3"], 2, "error[input-invalid]"),
        (["inspect", "{spec}"], 2, "no input shape"),
        (["inspect", "{spec}", "-i", "2x3", "--set", "x"], 2, "write --set name=value"),
        (["inspect", "{spec}", "-i", "2x3", "--set", "x=1"], 2, "no param `x`"),
        (["inspect", "{spec}", "-i", "2x3", "--format", "xml"], 2, "xml"),
        (["inspect"], 2, "Missing argument"),
        (
            ["inspect", "{unknown}", "-i", "2x3"],
            1,
            "unknown layer type `Relu` (did you mean `ReLU`?)",
        ),
        (["inspect", "{badarg}", "-i", "2x3"], 1, ":2:17: error[bad-arguments]"),
    ],
)
def test_exit_codes_and_messages(
    cli: Cli, write: Callable[..., Path], args: list[str], code: int, fragment: str
) -> None:
    files = {
        "{spec}": write("model: [ReLU]\n"),
        "{unknown}": write("model:\n  - Relu\n", "unknown.yaml"),
        "{badarg}": write('model:\n  - LazyLinear: "4"\n', "badarg.yaml"),
    }
    files["{dir}"] = files["{spec}"].parent
    result = cli(*[str(files.get(a, a)) for a in args])
    assert result.exit_code == code, result.stdout + result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_depth_expands_torch_submodules(cli: Cli, write: Callable[..., Path]) -> None:
    spec = write(
        "input: 2x5x8\nmodel:\n"
        "  - TransformerEncoderLayer: {d_model: 8, nhead: 2, batch_first: true}\n"
    )
    default = cli("inspect", str(spec)).stdout
    assert "self_attn" not in default
    deep = cli("inspect", str(spec), "--depth", "2").stdout
    assert "self_attn (MultiheadAttention)" in deep and "out_proj" not in deep
    assert "out_proj" in cli("inspect", str(spec), "--depth", "3").stdout
    shallow = cli("inspect", str(spec), "--depth", "0").stdout
    assert "(TransformerEncoderLayer)" not in shallow


def test_internal_errors_exit_3_without_traceback(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shapecli import api

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(api, "inspect", broken)
    result = cli("inspect", str(CONFIGS / "mlp.yaml"))
    assert result.exit_code == 3
    assert "internal error: ZeroDivisionError: oops" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli("--traceback", "inspect", str(CONFIGS / "mlp.yaml"))
    assert result.exit_code == 3 and "Traceback" in result.stderr


def test_same_input_gives_byte_identical_output(cli: Cli) -> None:
    runs = {cli("inspect", str(CONFIGS / "partial.yaml"), "-f", f).stdout for f in ("json", "json")}
    assert len(runs) == 1


def test_torch_warnings_become_located_warnings(cli: Cli, write: Callable[..., Path]) -> None:
    spec = write("input: 5x2x4\nmodel:\n  - LSTM: {input_size: 4, hidden_size: 8, dropout: 0.5}\n")
    result = cli("inspect", str(spec))
    assert result.exit_code == 0
    assert f"{spec}:3:5: warning[layer-warning] layer 0 (LSTM): dropout option" in result.stderr
    doc = cli("inspect", str(spec), "-f", "json").json()
    assert doc["ok"] is True and doc["warnings"][0]["code"] == "layer-warning"


def test_several_inputs(cli: Cli, write: Callable[..., Path]) -> None:
    spec = write("model:\n  Bilinear: [20, 30, 5]\n")
    doc = cli("inspect", str(spec), "-i", "2x20", "-i", "2x30", "-f", "json").json()
    assert doc["ok"] and doc["layers"][0]["input_shapes"] == [[2, 20], [2, 30]]
    assert doc["totals"]["params"] == 5 * 20 * 30 + 5
    error = cli("inspect", str(spec), "-i", "2x20", "-f", "json").json()["errors"][0]
    assert error["expected"] == "2 inputs (input1, input2)" and "--input" in error["hint"]
