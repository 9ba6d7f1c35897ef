"""``shapecli lint`` output: ``text`` for people, ``json`` for scripts, ``github`` for
GitHub Actions annotations. Each is a pure function of a :class:`LintResult`."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from shapecli.codec import encode
from shapecli.errors import Problem
from shapecli.lint import FileResult, LintResult
from shapecli.render import Options, Rendered
from shapecli.render.console import to_text
from shapecli.untrusted import json_text, visible

LINT_SCHEMA_VERSION = 1


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary(result: LintResult) -> str:
    return (
        f"{_plural(result.checked, 'file')} checked, {_plural(result.errors, 'error')}, "
        f"{_plural(result.warnings, 'warning')}"
    )


def render_text(result: LintResult, options: Options) -> Rendered:
    """Per problem ``file:line:col: error[code] message`` (or ``warning[code]``), its
    hint on the line below as ``-f github`` gives it; then a summary line."""
    text = Text()
    for file in result.files:
        for p in file.problems:
            text.append(f"{visible(str(p.source or file.file))}:", style="dim")
            style = "bold red" if p.severity == "error" else "bold yellow"
            text.append(f" {p.severity}[{p.code}]", style=style)
            text.append(f" {visible(' '.join(p.message.split()))}\n")
            if p.hint:
                text.append(f"  hint: {visible(' '.join(p.hint.split()))}\n", style="dim")
    text.append(summary(result), style="bold")
    return Rendered(to_text(text, options, wrap=False))


def render_json(result: LintResult, options: Options) -> Rendered:
    summary = {"files": result.checked, "errors": result.errors, "warnings": result.warnings}
    files = [_file_json(f) for f in result.files]
    return _document(ok=result.errors == 0, summary=summary, files=files, errors=[])


def failure(problems: tuple[Problem, ...], options: Options) -> Rendered:
    """The lint JSON document when no file could be checked at all (a bad command line):
    the problems are the command's own, in the top-level ``errors``. (The text and
    GitHub formats print them on stderr, as every format does.)"""
    summary = {"files": 0, "errors": len(problems), "warnings": 0}
    return _document(ok=False, summary=summary, files=[], errors=[encode(p) for p in problems])


def _document(**keys: Any) -> Rendered:
    return Rendered(json_text({"schema_version": LINT_SCHEMA_VERSION, **keys}) + "\n")


def _file_json(file: FileResult) -> dict[str, object]:
    """A file's result; its totals and problems as ``inspect -f json`` writes them."""
    return {
        "file": file.file,
        "ok": file.errors == 0,
        "dry_run": file.ran,
        "totals": encode(file.totals) if file.totals is not None else None,
        "problems": [encode(p) for p in file.problems],
    }


def escape_data(text: str) -> str:
    """A workflow command's message, escaped as GitHub's runner requires (the line
    breaks are shapecli's own: what a user wrote has none left, see :func:`visible`)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: the message escapes, plus ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(result: LintResult, options: Options) -> Rendered:
    """``::error file=…,line=…,col=…,title=…::message`` lines, then the summary."""
    lines = []
    for file in result.files:
        for p in file.problems:
            source = p.source
            props = [f"file={escape_property(visible(source.file if source else file.file))}"]
            if source and source.line:
                props += [f"line={source.line}", f"col={source.column}"]
            props.append(f"title={escape_property(f'shapecli {p.code}')}")
            said = (p.message, p.hint and f"hint: {p.hint}")
            detail = "\n".join(visible(x) for x in said if x)
            lines.append(f"::{p.severity} {','.join(props)}::{escape_data(detail)}")
    lines.append(summary(result))
    return Rendered("\n".join(lines) + "\n")
