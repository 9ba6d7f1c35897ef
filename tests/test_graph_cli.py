"""Acceptance: ``shapecli graph`` through the real CLI — golden pictures, Graphviz's
verdict on the DOT, well-formed SVG, and the html page in a real (headless) browser.

Graphviz and Chromium are system programs (``.ci/run`` installs both); where one cannot
be installed, the tests that need it are skipped and say which program is missing.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import shapecli
from conftest import CONFIGS, Result
from shapecli.render.tree import visible_rows

Cli = Callable[..., Result]
SVG = "{http://www.w3.org/2000/svg}"
DOT = shutil.which("dot")
BROWSER = next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
)
needs_graphviz = pytest.mark.skipif(
    DOT is None, reason="Graphviz's `dot` is not installed (apt-get install graphviz)"
)
needs_browser = pytest.mark.skipif(
    BROWSER is None, reason="no headless Chromium installed (apt-get install chromium)"
)


@pytest.mark.parametrize("config", ["mlp", "resnet18", "gpt2"])
@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_golden_pictures(
    cli: Cli, golden: Callable[[str, str], None], config: str, fmt: str
) -> None:
    result = cli("graph", str(CONFIGS / f"{config}.yaml"), "-f", fmt)
    assert (result.exit_code, result.stderr) == (0, "")
    golden(f"graph-{config}.{'mmd' if fmt == 'mermaid' else 'dot'}", result.stdout)


def test_residual_shortcuts_are_drawn(cli: Cli) -> None:
    gpt2 = cli("graph", str(CONFIGS / "gpt2.yaml")).stdout
    # each of the two Residuals of the drawn block: a merge, and its input's dashed skip
    assert gpt2.count('(("+"))') == 2
    assert re.findall(r"^  (\w+) -\.->\|\"1×1024×768\"\| (m\d)$", gpt2, re.M) == [
        ("n2", "m0"),
        ("m0", "m1"),
    ]
    resnet = cli("graph", str(CONFIGS / "resnet18.yaml"), "-f", "dot").stdout
    # 7 drawn Residuals: 4 identity shortcuts (dashed), 3 downsampling ones (drawn inside)
    assert resnet.count("shape=circle") == 7
    assert resnet.count('class="skip"') == 4
    assert resnet.count('label="shortcut · Sequential') == 3


def test_named_tensors_flow_along_their_own_edges(cli: Cli) -> None:
    bert = cli("graph", str(CONFIGS / "bert-base.yaml")).stdout
    mask = re.search(r'^  (i\d)\[/"mask<br/>1×128 bool"/\]$', bert, re.M)
    assert mask is not None
    assert f'  {mask[1]} -->|"mask: 1×128"| n6' in bert  # the attention reads it by keyword
    # the output node collects the sequence (from the encoder) and the pooled vector
    assert len(re.findall(r"\| y0$", bert, re.M)) == 2
    t5 = cli("graph", str(CONFIGS / "t5-small.yaml")).stdout
    encoder_output = re.search(r'^\s+(n\d+)\["encoder_output · Dropout"\]$', t5, re.M)
    assert encoder_output is not None
    # the encoder's output flows into the cross-attention and into the collapsed copies
    assert len(re.findall(rf'^  {encoder_output[1]} -->\|"context: 1×64×512"\|', t5, re.M)) == 1
    assert len(re.findall(rf"^  {encoder_output[1]} -->", t5, re.M)) == 2


def test_a_python_model_is_drawn_from_its_traced_dataflow(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Python model's sources are traced in the dry run: an in-place residual add
    makes the block's input a second source of the activation after it."""
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "pymodels"))
    allow = ("--allow-import", "shapecli_models")
    try:
        doc = cli("inspect", "shapecli_models:residual", "-i", "2x20", *allow, "-f", "json").json()
        picture = cli("graph", "shapecli_models:residual", "-i", "2x20", *allow).stdout
    finally:
        for name in [n for n in sys.modules if n.startswith("shapecli_models")]:
            del sys.modules[name]
    sources = {
        row["path"]: [s["path"] or s["input"] for s in row["sources"]] for row in doc["layers"]
    }
    assert sources == {
        "": ["input"],
        "0": ["input"],
        "1": ["0"],
        "1.fc": ["0"],
        "1.act": ["1.fc", "0"],  # out = fc(x); out += x
        "2": ["1"],  # after a block, the block: as the next entry after a block in a spec
    }
    nodes = dict(re.findall(r'^\s+(n\d+)\["(\S+) · ', picture, re.M))
    edges = set(re.findall(r"^\s+(\w+) -->\|\"[^\"]+\"\| (\w+)$", picture, re.M))
    by_name = {name: node for node, name in nodes.items()}
    assert (by_name["0"], by_name["act"]) in edges and (by_name["fc"], by_name["act"]) in edges
    assert (by_name["act"], by_name["2"]) in edges  # drawn from what the block returns
    assert {tail for tail, head in edges if head.startswith("y")} == {by_name["2"]}


def test_a_module_called_twice_is_two_rows_and_two_nodes(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One ReLU module after each Linear: each call is its own row and node, so the
    picture is a chain, not a ReLU that feeds the Linear that feeds it."""
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "pymodels"))
    args = ("shapecli_models:Reused", "-i", "2x20", "--allow-import", "shapecli_models")
    try:
        table = cli("inspect", *args).stdout
        picture = cli("graph", *args).stdout
    finally:
        for name in [n for n in sys.modules if n.startswith("shapecli_models")]:
            del sys.modules[name]
    assert "act (ReLU)" in table and "act (call 2) (ReLU)" in table
    nodes = dict(re.findall(r'^\s+(n\d+)\["([^"·]+) · ', picture, re.M))
    edges = re.findall(r"^\s+(\w+) -->\|\"[^\"]+\"\| (\w+)$", picture, re.M)
    chain = [nodes.get(tail, tail).strip() for tail, _ in edges] + ["y0"]
    assert chain == ["i0", "fc1", "act", "fc2", "act (call 2)", "fc3", "y0"]


def test_a_module_list_that_never_runs_is_drawn_by_its_layers(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "pymodels"))
    args = ("graph", "shapecli_models:Looped", "-i", "2x20", "--allow-import", "shapecli_models")
    try:
        whole, collapsed = cli(*args).stdout, cli(*args, "-d", "1").stdout
    finally:
        for name in [n for n in sys.modules if n.startswith("shapecli_models")]:
            del sys.modules[name]
    for picture in (whole, collapsed):
        edges = re.findall(r"^\s+(\w+) -->\|\"([^\"]*)\"\| (\w+)$", picture, re.M)
        assert all(label for _, label, _ in edges), picture  # every edge says what flows
        assert [tail for tail, _, head in edges if head == "y0"] == [edges[-1][0]]  # the head
    assert len(re.findall(r" -->", collapsed)) == 4  # input → stem → layers → head → output


def test_depth_collapses_blocks_into_nodes(cli: Cli) -> None:
    at_1 = cli("graph", str(CONFIGS / "gpt2.yaml"), "--depth", "1").stdout
    assert 'n3[["h · block ×12<br/>85,054,464 params"]]' in at_1
    assert "subgraph" not in at_1
    at_2 = cli("graph", str(CONFIGS / "gpt2.yaml"), "--depth", "2").stdout
    assert at_2.count(" · block<br/>7,087,872 params") == 12


def test_a_failing_spec_is_drawn_up_to_the_failure(cli: Cli) -> None:
    result = cli("graph", str(CONFIGS / "mismatch.yaml"))
    assert result.exit_code == 1
    assert '  n2["✗ 2 · Linear<br/>310 params<br/>cannot take 2×256"]' in result.stdout
    assert "  class n2 failed" in result.stdout and "y0" not in result.stdout
    assert "error[shape-mismatch]" in result.stderr


def test_a_spec_that_cannot_be_read_draws_nothing(cli: Cli, write: Callable[..., Path]) -> None:
    result = cli("graph", str(write("model: [ReLU\n")))
    assert (result.exit_code, result.stdout) == (1, "")
    assert "yaml-syntax" in result.stderr
    assert cli("graph", "missing.yaml").exit_code == 2
    assert cli("graph", str(CONFIGS / "mlp.yaml"), "--input", "2x-3").exit_code == 2


def test_output_file(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "mlp.mmd"
    result = cli("graph", str(CONFIGS / "mlp.yaml"), "-o", str(out))
    assert (result.exit_code, result.stdout) == (0, "")
    assert out.read_text(encoding="utf-8").startswith("---\ntitle: ")
    kept = cli("graph", str(CONFIGS / "gpt2.yaml"), "-o", str(out))  # as build does
    assert kept.exit_code == 2 and "already exists; nothing was written" in kept.stderr
    assert "pass --force to replace it" in kept.stderr and "gpt2" not in out.read_text()
    again = cli("graph", str(CONFIGS / "gpt2.yaml"), "-o", str(out), "--force")
    assert again.exit_code == 0 and "gpt2" in out.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.mmd"]  # no temporary left
    nowhere = cli("graph", str(CONFIGS / "mlp.yaml"), "-o", str(tmp_path / "no" / "such.mmd"))
    assert nowhere.exit_code == 2 and "file-error" in nowhere.stderr


@pytest.mark.parametrize(
    ("name", "start"),
    [("m.mmd", "---\ntitle: "), ("m.dot", "digraph"), ("m.HTML", "<!doctype html>")],
)
def test_the_format_comes_from_the_extension(
    cli: Cli, tmp_path: Path, name: str, start: str
) -> None:
    out = tmp_path / name
    assert cli("graph", str(CONFIGS / "mlp.yaml"), "-o", str(out)).exit_code == 0
    assert out.read_text(encoding="utf-8").lower().startswith(start.lower())


@needs_graphviz
def test_an_svg_file_gets_svg(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "model.svg"
    assert cli("graph", str(CONFIGS / "mlp.yaml"), "-o", str(out)).exit_code == 0
    assert ET.parse(out).getroot().tag == f"{SVG}svg"


@pytest.mark.parametrize("name", ["model.png", "model.txt", "model"])
def test_an_extension_that_names_no_format_is_refused(cli: Cli, tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    result = cli("graph", str(CONFIGS / "mlp.yaml"), "-o", str(out))
    assert result.exit_code == 2 and not out.exists() and result.stdout == ""
    assert "error[usage]" in result.stderr and "cannot tell the picture's format from" in (
        result.stderr
    )
    assert ".mmd, .mermaid, .dot, .gv, .svg, .html, .htm, or give the format with -f" in (
        result.stderr
    )
    explicit = cli("graph", str(CONFIGS / "mlp.yaml"), "-f", "mermaid", "-o", str(out))
    assert explicit.exit_code == 0 and out.read_text().startswith("---\ntitle: ")


def test_the_largest_spec_stays_a_readable_picture(cli: Cli) -> None:
    result = cli("graph", str(CONFIGS / "llama2-70b.yaml"))
    assert result.exit_code == 0
    nodes = re.findall(r"^\s+n\d+\[", result.stdout, re.M)
    assert len(nodes) < 30  # 80 decoder layers: one drawn, 79 as one node
    assert '["1…79 · decoder ×79, as 0<br/>' in result.stdout.replace('[["', '["')


# -- Graphviz ---------------------------------------------------------------------------


@pytest.mark.process
@needs_graphviz
@pytest.mark.parametrize("config", ["mlp", "resnet18", "gpt2", "bert-base", "mismatch"])
def test_graphviz_accepts_the_dot(cli: Cli, config: str) -> None:
    source = cli("graph", str(CONFIGS / f"{config}.yaml"), "-f", "dot").stdout
    done = subprocess.run(
        [str(DOT), "-Tsvg"], input=source, capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stderr) == (0, "")
    ET.fromstring(done.stdout.encode())


@needs_graphviz
def test_svg_is_well_formed_with_a_node_per_drawn_layer(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "gpt2.svg"
    result = cli("graph", str(CONFIGS / "gpt2.yaml"), "-f", "svg", "-o", str(out))
    assert result.exit_code == 0
    root = ET.parse(out).getroot()
    assert root.tag == f"{SVG}svg"
    layers = [g for g in root.iter(f"{SVG}g") if "layer" in (g.get("class") or "").split()]
    assert len(layers) == len(_drawn_leaves("gpt2"))


def test_svg_without_graphviz_says_how_to_install_it(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shapecli.render.graphviz.find_dot", lambda: None)
    out = tmp_path / "mlp.svg"
    result = cli("graph", str(CONFIGS / "mlp.yaml"), "-f", "svg", "-o", str(out))
    assert result.exit_code == 2
    assert "error[missing-program]" in result.stderr
    assert "apt-get install graphviz" in result.stderr
    assert not out.exists() and result.stdout == ""


# -- the html page in a browser -----------------------------------------------------------

# Injected first in <head>: collect every error and console message the page causes.
_WATCH = """<script>
window.__problems = [];
addEventListener('error', e => __problems.push('error: ' + e.message));
for (const level of ['error', 'warn', 'log']) {
  const original = console[level];
  console[level] = (...args) => { __problems.push(level + ': ' + args.join(' ')); original(...args); };
}
</script>
"""

# Injected last in <body>: use the page the way a person would, then write down the result.
_CHECK = """<script>
(() => {
  const r = {};
  const q = s => document.querySelectorAll(s);
  try {
    r.ready = document.body.dataset.ready;
    r.layers = q('#view g.node.layer').length;
    r.rows = q('#rows tbody tr').length;
    const node = document.querySelector('#view g.node.layer');
    node.dispatchEvent(new MouseEvent('click', {bubbles: true}));
    r.details = document.querySelector('#details h2').textContent;
    r.facts = [...q('#details dt')].map(dt => dt.textContent);
    const before = document.querySelector('#view svg').getAttribute('viewBox');
    document.getElementById('zoom-in').click();
    r.zoomed = document.querySelector('#view svg').getAttribute('viewBox') !== before;
    const title = document.querySelector('#view g.cluster text');
    if (title) {
      title.dispatchEvent(new MouseEvent('click', {bubbles: true}));
      r.foldedNodes = q('#view g.node.hidden').length;
      r.foldedRows = q('#rows tr.hidden').length;
      document.getElementById('unfold-all').click();
      r.unfolded = q('#view .hidden').length + q('#rows tr.hidden').length;
    }
    const row = q('#rows tbody tr')[1];
    row.click();
    r.selected = [...q('.selected')].map(el => el.tagName.toLowerCase()).sort();
  } catch (e) { __problems.push('check: ' + e); }
  r.problems = __problems;
  const out = document.createElement('pre');
  out.id = 'check-result';
  out.textContent = JSON.stringify(r);
  document.body.append(out);
})();
</script>
"""


def _drawn_leaves(config: str, depth: int | None = None) -> list[str]:
    """The entries a picture draws as nodes, from the report as ``inspect`` shows it: the
    shown rows without shown rows under them (the root is the picture itself)."""
    report = shapecli.inspect(CONFIGS / f"{config}.yaml")
    shown = [row for row, _ in visible_rows(report, depth)]
    return [
        row.path
        for i, row in enumerate(shown)
        if row.path and not (i + 1 < len(shown) and shown[i + 1].path.startswith(row.path + "."))
    ]


def _in_browser(page: Path, tmp_path: Path) -> tuple[dict[str, Any], str]:
    """Open ``page`` in headless Chromium with the checks injected; their result and
    the browser's log."""
    text = page.read_text(encoding="utf-8")
    checked = tmp_path / f"checked-{page.name}"
    checked.write_text(
        text.replace("<head>\n", "<head>\n" + _WATCH, 1).replace("</body>", _CHECK + "</body>"),
        encoding="utf-8",
    )
    done = subprocess.run(
        [
            str(BROWSER),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,900",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            checked.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r'<pre id="check-result">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the page did not finish its checks:\n{done.stderr[-3000:]}"
    return json.loads(html.unescape(found[1])), done.stderr


def _console(log: str) -> list[str]:
    return [line for line in log.splitlines() if ":CONSOLE" in line]


@pytest.mark.slow
@pytest.mark.browser
@needs_browser
@needs_graphviz
def test_the_html_page_works_in_a_browser(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "gpt2.html"
    assert cli("graph", str(CONFIGS / "gpt2.yaml"), "-f", "html", "-o", str(out)).exit_code == 0
    result, log = _in_browser(out, tmp_path)
    assert result["problems"] == [] and _console(log) == []
    report = shapecli.inspect(CONFIGS / "gpt2.yaml")
    assert result["ready"] == "true"
    assert result["layers"] == len(_drawn_leaves("gpt2")) == 14
    assert result["rows"] == len(visible_rows(report, None))
    assert result["details"] == "wte · Embedding"
    assert result["facts"][:4] == ["path", "input", "output", "parameters"]
    assert "spec" in result["facts"]
    assert result["zoomed"] is True
    assert result["foldedNodes"] == 11 and result["foldedRows"] > 0 and result["unfolded"] == 0
    assert result["selected"] == ["g", "tr"]  # a table row selects its node


@pytest.mark.slow
@pytest.mark.browser
@needs_browser
def test_the_html_page_works_without_graphviz(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shapecli.render.graphviz.find_dot", lambda: None)
    monkeypatch.setattr("shapecli.render.html.find_dot", lambda: None)
    out = tmp_path / "bert.html"
    result = cli("graph", str(CONFIGS / "bert-base.yaml"), "-f", "html", "-o", str(out))
    assert result.exit_code == 0 and "one-column layout" in result.stderr
    checked, log = _in_browser(out, tmp_path)
    assert checked["problems"] == [] and _console(log) == []
    assert checked["layers"] == len(_drawn_leaves("bert-base"))
    assert checked["foldedNodes"] > 0 and checked["unfolded"] == 0


def test_a_failing_spec_page_marks_the_failure(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "mismatch.html"
    assert cli("graph", str(CONFIGS / "mismatch.yaml"), "-f", "html", "-o", str(out)).exit_code == 1
    text = out.read_text(encoding="utf-8")
    assert 'class="node layer failed"' in text and "<pre class=problem>" in text
    assert "error[shape-mismatch]" in text
