"""The README cannot drift: every example in it runs here.

* each ``$ shapecli …`` example runs through the CLI's entry point, and its output must
  match what the README shows (a line ``…`` stands for any number of lines); a file it
  writes (``-o FILE``) is removed again;
* each ``python`` block runs;
* each YAML block that is a spec (it has ``model:``) is loaded, and dry-run when it
  declares its input; a YAML block of entries (a list) must parse as a model;
* the ``jsonc`` JSON example names exactly the fields the JSON output has.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

import shapecli
from conftest import ROOT
from shapecli.spec.parse import parse_spec

README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, re.S)


def examples(language: str) -> list[str]:
    return [body for lang, body in BLOCKS if lang == language]


COMMANDS = [body for body in examples("") if body.startswith("$ shapecli ")]


def test_the_readme_has_examples_of_every_kind() -> None:
    assert len(COMMANDS) >= 3 and examples("python") and len(examples("yaml")) >= 8


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line for line, where a line ``…`` matches any number of lines."""
    if not expected:
        return not actual
    if expected[0] == "…":
        return any(matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and matches(expected[1:], actual[1:])


@pytest.mark.slow
@pytest.mark.parametrize("example", COMMANDS, ids=[c.splitlines()[0] for c in COMMANDS])
def test_command_examples_print_what_the_readme_shows(
    example: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shapecli.cli import run_cli

    command, *shown = example.rstrip("\n").splitlines()
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    args = command.split()[2:]  # after "$ shapecli"
    written = ROOT / args[args.index("-o") + 1] if "-o" in args else None
    assert written is None or not written.exists(), f"{written} is in the way of the example"
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run_cli(args)
    finally:
        if written is not None:  # an example that writes a file (`build -o`) leaves none
            written.unlink(missing_ok=True)
    printed = (out.getvalue() + err.getvalue()).rstrip("\n").splitlines()
    assert matches(shown, printed), "\n".join(printed)


@pytest.mark.parametrize("code", examples("python"))
def test_python_examples_run(code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})


SPECS = [body for body in examples("yaml") if re.search(r"^model:", body, re.M)]
# lists of entries: their first item is a layer type (capitalized), not a CI step
ENTRIES = [b for b in examples("yaml") if re.match(r"\s*- [A-Z]", b) and "model:" not in b]


@pytest.mark.parametrize("text", SPECS, ids=[t.splitlines()[0][:40] for t in SPECS])
def test_spec_examples_load_and_dry_run(text: str) -> None:
    spec = parse_spec(text, "readme.yaml")
    if spec.inputs:
        report = shapecli.inspect(spec)
        assert report.ok, report.errors


@pytest.mark.parametrize("text", ENTRIES, ids=[t.splitlines()[0][:40] for t in ENTRIES])
def test_entry_examples_parse(text: str) -> None:
    body = "\n".join("  " + line for line in text.splitlines())
    parse_spec(f"params: {{d_model: 768, d_ff: 3072}}\nmodel:\n{body}\n", "readme.yaml")


def test_the_json_example_names_the_fields_of_the_output(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the example's file names are as given, relative
    (example,) = examples("jsonc")
    shown = json.loads(re.sub(r"//[^\n]*", "", example))
    actual = cli("inspect", "configs/mlp.yaml", "-f", "json").json()

    def keys(doc: Any) -> Any:
        if isinstance(doc, dict):
            return {k: keys(v) for k, v in doc.items()}
        if isinstance(doc, list):
            return [keys(doc[0])] if doc else []
        return None

    assert keys(shown) == {**keys(actual), "layers": [keys(actual["layers"][1])]}
    assert shown["layers"][0] == actual["layers"][1]
    assert shown["totals"] == actual["totals"]


def test_the_quick_start_installs_a_cpu_torch_first() -> None:
    (quick,) = [b for lang, b in BLOCKS if lang == "sh" and "pip install" in b][:1]
    first, second = quick.strip().splitlines()
    assert first.startswith("pip install torch --index-url https://download.pytorch.org/whl/cpu")
    assert "shapecli inspect configs/" in first and second == "pytest"
    assert Path(ROOT / ".ci" / "run").read_text().count("pytest") >= 1


def test_the_mermaid_example_is_what_shapecli_graph_prints(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    (shown,) = examples("mermaid")
    (command,) = [c for c in COMMANDS if c.startswith("$ shapecli graph ")]
    first, *printed = command.splitlines()
    assert shown.splitlines() == printed  # the picture GitHub renders is the one shown above
    assert cli(*first.split()[2:]).stdout == shown


def test_the_table_of_codes_is_every_code_with_its_exit_code() -> None:
    from shapecli.errors import EXIT_CODES

    rows = re.findall(r"^\| `([a-z-]+)` \| (\d) \|", README, re.M)
    assert dict(rows) == {code: str(int(exit)) for code, exit in EXIT_CODES.items()}
    assert len(rows) == len(EXIT_CODES)  # each once
