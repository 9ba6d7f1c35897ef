"""Text from a spec, a file name or a Python model never reaches a terminal, a CI log or a
pull-request comment as anything but visible text — in every output format of every
command.

The text arrives by every road there is: a spec's file name (which is also the model's
name when the spec gives none), the names and class names inside a Python model, a key
or a model ``name:`` that the loader refuses (its message quotes it). Each road carries
each hostile payload through each format; the output may hold no character a terminal
or a log acts on (a line break only where shapecli puts one), no line a GitHub runner
would read as a workflow command, and — in Markdown — no HTML, link, heading or
@mention once GitHub-flavoured Markdown is rendered.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from conftest import Result

Cli = Callable[..., Result]

PAYLOADS = {
    "workflow-command": "x\n::error file=a::INJECTED",
    "stop-commands": "x\n::stop-commands::token\r\n::add-mask::y",
    "escape-sequences": "\x1b]0;title\x07\x1b[2J\x1b[31mred",
    "c1-csi": "a\x9b2Jb\x85c",
    "nul": "a\x00b",
    "carriage-return": "ok\rFAKE",
    "bidi-override": "a\u202eb\u2066c",
    "zero-width": "a\u200bb\ufeffc",
    "line-separator": "a\u2028b\u2029c",
}
FORMATS = [
    ("inspect", "table"), ("inspect", "json"), ("inspect", "markdown"),
    ("lint", "text"), ("lint", "json"), ("lint", "github"),
    ("graph", "mermaid"), ("graph", "dot"), ("graph", "svg"), ("graph", "html"),
    ("diff", "table"), ("diff", "json"), ("diff", "markdown"),
    ("build", "text"),
]  # fmt: skip
GOOD = "input: 2x3\nmodel:\n  - LazyLinear: 4\n  - ReLU\n"
BROKEN = "input: 2x3\nmodel:\n  - Linear: [5, 4]\n"
ANNOTATION = re.compile(
    r"::(error|warning) file=[^:\n]*(,line=\d+,col=\d+)?,title=shapecli [a-z-]+::[^\n]*"
)


def python_model(root: Path, payload: str) -> str:
    """A package whose model has the payload in a layer's name, a parameter's name and
    a class's name; returns its ``pkg.module:factory``."""
    package = root / "hostile_models"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text(
        "import torch\n"
        f"NAME = {payload!r}\n"
        "Odd = type(NAME, (torch.nn.Module,), {'forward': lambda self, x: x * 2})\n"
        "def model():\n"
        "    net = torch.nn.Sequential()\n"
        "    net.add_module(NAME, torch.nn.Linear(3, 4))\n"
        "    net.add_module('odd', Odd())\n"
        "    net.register_parameter(NAME + 'p', torch.nn.Parameter(torch.ones(2)))\n"
        "    return net\n"
    )
    return "hostile_models:model"


@pytest.fixture
def importable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("hostile_models", None)


def runs(command: str, fmt: str, folder: Path, payload: str) -> Iterator[list[str]]:
    """Every command line of ``command -f fmt`` that carries ``payload`` by some road."""
    stem = payload.replace("\0", "") or "x"  # a file name holds no NUL
    good, broken = folder / f"{stem}.yaml", folder / f"{stem}-broken.yaml"
    good.write_text(GOOD)
    broken.write_text(BROKEN)
    refused = folder / "refused-key.yaml"
    refused.write_text(f"input: 2x3\nmodel:\n  - LazyLinear: {{{json.dumps(payload)}: 4}}\n")
    named = folder / "refused-name.yaml"
    named.write_text(f"name: {json.dumps(payload)}\n{GOOD}")
    target = python_model(folder, payload)
    allow = ["--allow-import", "hostile_models"]
    specs = [str(good), str(broken), str(refused), str(named)]
    if command == "inspect":
        for spec in specs:
            yield ["inspect", spec, "-f", fmt]
        yield ["inspect", target, "-i", "2x3", *allow, "-f", fmt]
    elif command == "lint":
        yield ["lint", *specs, str(folder / f"{stem}-missing.yaml"), "-f", fmt]
    elif command == "graph":
        fmt_args = ["-f", fmt]
        for spec in specs:
            yield ["graph", spec, *fmt_args]
        yield ["graph", target, "-i", "2x3", *allow, *fmt_args]
    elif command == "diff":
        yield ["diff", str(good), target, *allow, "-f", fmt, "--all"]
        yield ["diff", str(good), str(broken), "-f", fmt]
        yield ["diff", str(refused), str(good), "-f", fmt]
    else:
        yield ["build", str(good), "-o", str(folder / f"{stem}.safetensors")]
        yield ["build", str(named), "-o", str(folder / "other.safetensors")]


def check_clean(output: str, fmt: str) -> None:
    hidden = sorted({f"U+{ord(c):04X}" for c in output if not c.isprintable() and c != "\n"})
    assert not hidden, f"raw characters {hidden} in:\n{output}"
    for line in output.splitlines():
        if line.startswith("::"):
            assert fmt == "github" and ANNOTATION.fullmatch(line), line


@pytest.mark.slow
@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
@pytest.mark.parametrize(("command", "fmt"), FORMATS, ids=[f"{c}-{f}" for c, f in FORMATS])
def test_no_raw_character_reaches_any_output(
    cli: Cli, importable: Path, command: str, fmt: str, payload: str
) -> None:
    if fmt in ("svg", "html") and shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")
    for args in runs(command, fmt, importable, payload):
        result = cli(*args)
        assert result.exit_code in (0, 1, 2), (args, result.stdout, result.stderr)
        check_clean(result.stdout + result.stderr, fmt)
        if fmt == "json":
            json.loads(result.stdout)  # escaped, and still one document


def test_json_keeps_the_text_as_it_is(cli: Cli, tmp_path: Path) -> None:
    """JSON escapes, it does not rewrite: a reader gets the file's real name back."""
    payload = PAYLOADS["escape-sequences"] + PAYLOADS["bidi-override"]
    spec = tmp_path / f"{payload}.yaml"
    spec.write_text(GOOD)
    inspect = cli("inspect", str(spec), "-f", "json")
    assert inspect.json()["name"] == payload and inspect.json()["spec"] == str(spec)
    lint = cli("lint", str(tmp_path / "*.yaml"), "-f", "json")
    assert lint.json()["files"][0]["file"] == str(spec)
    assert "\\u001b]0;title\\u0007" in inspect.stdout and "\\u202e" in inspect.stdout


def test_names_and_keys_with_hidden_characters_are_refused_where_written(
    cli: Cli, write: Callable[..., Path]
) -> None:
    """Names are identifiers: once YAML's escapes are read, a control or format
    character in a key or in the model's name is a located error (a control character
    anywhere else is one too, as it is when written raw)."""
    cases = [
        ('name: "mlp\\u202E"\n' + GOOD, "1:7", "U+202E", "spec-invalid"),
        ('name: "a\\nb"\n' + GOOD, "1:7", "U+000A", "spec-invalid"),
        ('name: "a\\tb"\n' + GOOD, "1:7", "U+0009", "spec-invalid"),
        ('input: 2x3\nmodel:\n  - LazyLinear: {"out\\u200Bfeatures": 4}\n', "3:18", "U+200B", "spec-invalid"),
        ('input: 2x3\nmodel:\n  - LazyLinear: {"a\\nb": 4}\n', "3:18", "U+000A", "spec-invalid"),
        ('params: {"d\\u2028": 4}\n' + GOOD, "1:10", "U+2028", "spec-invalid"),
        ('input: 2x3\nmodel:\n  - LazyLinear: "\\e[2J"\n', "3:17", "U+001B", "yaml-syntax"),
        ('description: "\\x9b2J"\n' + GOOD, "1:14", "U+009B", "yaml-syntax"),
        ('description: "a\\0"\n' + GOOD, "1:14", "U+0000", "yaml-syntax"),
        ('description: "ok\\rFAKE"\n' + GOOD, "1:14", "U+000D", "yaml-syntax"),
    ]  # fmt: skip
    for text, where, character, code in cases:
        result = cli("inspect", str(write(text)))
        assert result.exit_code == 1, (text, result.stderr)
        assert f"spec.yaml:{where}: error[{code}]" in result.stderr, (text, result.stderr)
        assert character in result.stderr
        check_clean(result.stderr, "text")
    description = cli("inspect", str(write('description: "line\\nbreak\\ttab"\n' + GOOD)))
    assert description.exit_code == 0  # a line break or tab in free text is text


MARKDOWN_PAYLOAD = "<img src=x onerror=alert(1)> [link](evil) ![i](x) @admin #1 **b** _i_ | `t` <b>"


@pytest.mark.parametrize("road", ["name", "file", "python"])
@pytest.mark.parametrize("command", ["inspect", "diff"])
def test_markdown_renders_what_was_written_as_text(
    cli: Cli, importable: Path, road: str, command: str
) -> None:
    """The PR-comment format, rendered as GitHub-flavoured Markdown: the payload is
    text in code, never an image, a link, a heading, emphasis, a mention or a column."""
    folder = importable
    spec = folder / ("model.yaml" if road != "file" else f"{MARKDOWN_PAYLOAD}.yaml")
    spec.write_text((f"name: {json.dumps(MARKDOWN_PAYLOAD)}\n" if road == "name" else "") + GOOD)
    other = folder / "other.yaml"
    other.write_text(BROKEN.replace("Linear: [5, 4]", "LazyLinear: 5"))
    target = python_model(folder, MARKDOWN_PAYLOAD)
    allow = ["--allow-import", "hostile_models"]
    side = [target, "-i", "2x3", *allow] if road == "python" else [str(spec)]
    if command == "inspect":
        result = cli("inspect", *side, "-f", "markdown", "--paths")
    else:
        result = cli("diff", str(other), *side, "-f", "markdown", "--all")
    assert result.exit_code == 0, result.stderr
    html = MarkdownIt("commonmark").enable("table").render(result.stdout)
    outside_code = re.sub(r"<code>.*?</code>", "", html, flags=re.S)
    for made in ("<img", "<a ", "<h1", "<h2", "<em>", "<strong>", "<b>"):
        assert made not in outside_code, html
    assert "@admin" not in outside_code and "#1" not in outside_code
    assert html.count("<h3>") == 1
    widths = {row.count("<td") for row in re.findall(r"<tr>.*?</tr>", html, flags=re.S)[1:]}
    assert len(widths) == 1, html  # no `|` in the payload opened a column
    if (command, road) != ("diff", "name"):  # diff titles a spec by its file, not its name
        assert MARKDOWN_PAYLOAD.replace("<", "&lt;").replace(">", "&gt;") in html
