"""The README and the pages under ``docs/`` cannot drift: every example in them runs here.

* each ``$ shapecli …`` example runs through the CLI's entry point, and its output must
  match what the page shows (a line ``…`` stands for any number of lines); a file it
  writes (``-o FILE``) is removed again;
* each ``python`` block runs (but a file quoted whole, ``# src/…``, which
  tests/test_docs.py compares with the file instead, and a ``torchrun`` script, which
  tests/test_distributed.py runs in two processes);
* each YAML block that is a spec (it has ``model:``) is loaded, and dry-run when it
  declares its input; a YAML block of entries (a list) must parse as a model; every
  other YAML block must be YAML (the CI recipes: tests/test_recipes.py runs them);
* each ``mermaid`` block is what the ``shapecli graph`` named just before it prints;
* the ``jsonc`` JSON example names exactly the fields the JSON output has, and the table
  of problem codes is every code with its exit code.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from typing import Any, NamedTuple

import pytest
import yaml

import shapecli
from conftest import ROOT
from shapecli.spec.parse import parse_spec

#: The README and every page it links under docs/, by their path from the root.
DOCUMENTS = {
    path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
}
README = DOCUMENTS["README.md"]


class Block(NamedTuple):
    """A fenced code block: the page it is in, its language, its text, what precedes it."""

    page: str
    language: str
    body: str
    before: str

    @property
    def id(self) -> str:
        return f"{self.page}: {self.body.splitlines()[0][:50] if self.body else ''}"


def blocks_of(page: str) -> list[Block]:
    """A page's code blocks; one indented in a list item loses its fence's indentation."""
    text = DOCUMENTS[page]
    return [
        Block(page, m[2], re.sub(f"(?m)^{m[1]}", "", m[3]), text[: m.start()])
        for m in re.finditer(r"^( *)```(\w*)\n(.*?)^\1```", text, re.S | re.M)
    ]


BLOCKS = [block for page in DOCUMENTS for block in blocks_of(page)]


def examples(language: str, page: str | None = None) -> list[Block]:
    return [b for b in BLOCKS if b.language == language and page in (None, b.page)]


COMMANDS = [b for b in examples("") if b.body.startswith("$ shapecli ")]
#: Python blocks, but a file quoted whole (``# src/…``: tests/test_docs.py) and a script
#: for ``torchrun`` (several processes: tests/test_distributed.py runs it as written).
PYTHON = [
    b for b in examples("python") if not b.body.startswith(("# src/", "# train.py: torchrun"))
]


def test_the_pages_have_examples_of_every_kind() -> None:
    readme = [b for b in BLOCKS if b.page == "README.md"]
    assert len([b for b in COMMANDS if b.page == "README.md"]) >= 3
    assert [b for b in readme if b.language == "python"]
    assert len([b for b in readme if b.language == "yaml"]) >= 3
    assert len(COMMANDS) >= 10 and len(PYTHON) >= 4 and len(examples("yaml")) >= 12
    assert len(SPECS) >= 8 and ENTRIES


def test_the_readme_is_short() -> None:
    assert len(README.splitlines()) <= 350


def test_every_page_under_docs_is_linked_from_the_readme() -> None:
    for page in DOCUMENTS:
        assert page == "README.md" or f"]({page})" in README, f"{page} is not linked"


def test_links_between_the_pages_lead_somewhere() -> None:
    """A link to another page, or to a heading of one, names one that exists."""
    for page, text in DOCUMENTS.items():
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            file, _, anchor = target.partition("#")
            path = (ROOT / page).parent / file if file else ROOT / page
            assert path.exists(), f"{page}: {target}"
            if anchor and path.suffix == ".md":
                assert anchor in anchors(path.read_text(encoding="utf-8")), f"{page}: {target}"


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", text, flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line for line, where a line ``…`` matches any number of lines."""
    if not expected:
        return not actual
    if expected[0] == "…":
        return any(matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and matches(expected[1:], actual[1:])


def run_shapecli(args: list[str]) -> list[str]:
    """What ``shapecli ARGS`` prints, stdout then stderr, run from the repository's root."""
    from shapecli.cli import run_cli

    written = ROOT / args[args.index("-o") + 1] if "-o" in args else None
    assert written is None or not written.exists(), f"{written} is in the way of the example"
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run_cli(args)
    finally:
        if written is not None:  # an example that writes a file (`build -o`) leaves none
            written.unlink(missing_ok=True)
    return (out.getvalue() + err.getvalue()).rstrip("\n").splitlines()


@pytest.fixture
def at_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Examples name files relative to the repository's root, outside GitHub Actions."""
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)


@pytest.mark.slow
@pytest.mark.usefixtures("at_the_root")
@pytest.mark.parametrize("example", COMMANDS, ids=[b.id for b in COMMANDS])
def test_command_examples_print_what_the_page_shows(example: Block) -> None:
    command, *shown = example.body.rstrip("\n").splitlines()
    printed = run_shapecli(command.split()[2:])  # after "$ shapecli"
    assert matches(shown, printed), "\n".join(printed)


@pytest.mark.usefixtures("at_the_root")
@pytest.mark.parametrize("code", PYTHON, ids=[b.id for b in PYTHON])
def test_python_examples_run(code: Block) -> None:
    exec(compile(code.body, code.page, "exec"), {"__name__": "example"})


SPECS = [b for b in examples("yaml") if re.search(r"^model:", b.body, re.M)]
# lists of entries: their first item is a layer type (capitalized), not a CI step
ENTRIES = [
    b for b in examples("yaml") if re.match(r"\s*- [A-Z]", b.body) and "model:" not in b.body
]
OTHER_YAML = [b for b in examples("yaml") if b not in SPECS and b not in ENTRIES]


@pytest.mark.parametrize("text", SPECS, ids=[b.id for b in SPECS])
def test_spec_examples_load_and_dry_run(text: Block) -> None:
    spec = parse_spec(text.body, "example.yaml")
    if spec.inputs:
        report = shapecli.inspect(spec)
        assert report.ok, report.errors


@pytest.mark.parametrize("text", ENTRIES, ids=[b.id for b in ENTRIES])
def test_entry_examples_parse(text: Block) -> None:
    body = "\n".join("  " + line for line in text.body.splitlines())
    parse_spec(f"params: {{d_model: 768, d_ff: 3072}}\nmodel:\n{body}\n", "example.yaml")


@pytest.mark.parametrize("text", OTHER_YAML, ids=[b.id for b in OTHER_YAML])
def test_other_yaml_examples_are_yaml(text: Block) -> None:
    yaml.safe_load(text.body)


@pytest.mark.usefixtures("at_the_root")
@pytest.mark.parametrize("picture", examples("mermaid"), ids=[b.id for b in examples("mermaid")])
def test_a_mermaid_example_is_what_the_graph_command_before_it_prints(picture: Block) -> None:
    """The picture GitHub renders is the output of the command the page names for it."""
    *_, command = re.findall(r"shapecli (graph [^`\n]+)", picture.before)
    assert run_shapecli(command.split()) == picture.body.splitlines()
    (shown,) = [
        b for b in COMMANDS if b.page == picture.page and b.body.startswith(f"$ {command}")
    ] or [None]
    assert shown is None or shown.body.splitlines()[1:] == picture.body.splitlines()


def test_the_json_example_names_the_fields_of_the_output(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the example's file names are as given, relative
    (example,) = examples("jsonc")
    shown = json.loads(re.sub(r"//[^\n]*", "", example.body))
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


def test_the_table_of_codes_is_every_code_with_its_exit_code() -> None:
    from shapecli.errors import EXIT_CODES

    rows = [
        row
        for text in DOCUMENTS.values()
        for row in re.findall(r"^\| `([a-z-]+)` \| (\d) \|", text, re.M)
    ]
    assert dict(rows) == {code: str(int(exit)) for code, exit in EXIT_CODES.items()}
    assert len(rows) == len(EXIT_CODES)  # each once


QUICK_START = next(b for b in examples("sh", "README.md") if "pip install" in b.body)


def test_the_quick_start_makes_a_venv_and_installs_a_cpu_torch_first() -> None:
    """Two commands a newcomer pastes: one installs and runs shapecli, one the tests."""
    first, second = QUICK_START.body.strip().splitlines()
    steps = first.split(" && ")
    assert steps[0].startswith("git clone ") and steps[1].startswith("cd ")
    assert steps[2:4] == ["python3 -m venv .venv", ". .venv/bin/activate"]
    (pinned,) = re.findall(r"^TORCH_PINNED=(\S+)$", (ROOT / ".ci" / "run").read_text(), re.M)
    assert (
        steps[4] == f"pip install torch=={pinned} --index-url https://download.pytorch.org/whl/cpu"
    )
    assert steps[5] == "pip install -e '.[dev]'"
    assert steps[6].startswith("shapecli inspect configs/") and second == "pytest"
    assert re.search(r"^pytest$", (ROOT / ".ci" / "run").read_text(), re.M)  # CI runs it too


@pytest.mark.usefixtures("at_the_root")
def test_the_quick_start_prints_the_table_at_the_top_of_the_readme() -> None:
    command = QUICK_START.body.splitlines()[0].split(" && ")[-1]
    (top,) = [b for b in COMMANDS if b.page == "README.md" and b.body.startswith(f"$ {command}\n")][
        :1
    ]
    assert run_shapecli(command.split()[1:]) == top.body.rstrip("\n").splitlines()[1:]


def test_the_readme_names_the_python_the_package_requires() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    version = project["requires-python"].removeprefix(">=")
    assert f"Python {version} or newer" in README
