"""The ``shapecli`` command: parses options, calls the API, picks a renderer, exits.

Nothing here computes anything about models. Exit codes follow from the problems the
API reports (:mod:`shapecli.errors`): 0 ok, 1 problems in a spec, 2 could not run,
3 a bug in shapecli — which prints a one-line apology unless ``--traceback`` asks for
the Python traceback.

torch is imported only by commands that need it, so ``shapecli --help`` and YAML
errors are instant.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import traceback
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand

try:  # typer 0.29 and later carry their own copy of click
    from typer import _click as click
except ImportError:  # pragma: no cover - older typer depends on click itself
    import click  # type: ignore[no-redef, import-not-found, unused-ignore]

from shapecli import __version__
from shapecli.errors import (
    ExitCode,
    Problem,
    ShapecliError,
    fail,
    internal_problem,
    worst_exit_code,
)
from shapecli.render import (
    DIFF_FORMATS,
    GRAPH_FORMATS,
    LAYERS_FORMATS,
    LINT_FORMATS,
    REPORT_FORMATS,
    Formats,
)
from shapecli.report import Report, failed_report

if TYPE_CHECKING:
    from shapecli.render import Options
    from shapecli.spec.model import Spec


class _Command(TyperCommand):
    """Help as ruff and git print it: ``Usage: shapecli inspect [OPTIONS] SPEC``, and
    arguments listed by name, without Python type names."""

    def collect_usage_pieces(self, ctx: click.core.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(
        self, ctx: click.core.Context, formatter: click.formatting.HelpFormatter
    ) -> None:
        arguments = [
            (_argument_name(p), getattr(p, "help", None) or "")
            for p in self.get_params(ctx)
            if p.param_type_name == "argument"
        ]
        options = [
            record
            for p in self.get_params(ctx)
            if p.param_type_name == "option" and (record := p.get_help_record(ctx))
        ]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _argument_name(param: click.core.Parameter) -> str:
    return param.metavar or (param.name or "").upper()


app = typer.Typer(
    name="shapecli",
    help="Inspect a PyTorch model described in YAML: every layer's shapes and parameters, "
    "from a free dry run on the meta device.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

T = TypeVar("T")


class Optimizer(StrEnum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"
    sgd_momentum = "sgd-momentum"
    none = "none"


def format_option(formats: Formats, more: str = "") -> Any:
    """``--format``/``-f``: one of the names in ``formats`` (a renderer registry, so a
    format added there is a choice here)."""
    names = list(formats)

    def one_of(value: str) -> str:
        if value not in names:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(names)}")
        return value

    return typer.Option(
        "--format",
        "-f",
        parser=one_of,
        metavar=f"[{'|'.join(names)}]",
        help=f"Output format{more or '.'}",
        show_default=not more,
    )


SpecArgument = Annotated[
    str,
    typer.Argument(
        help="The spec file (YAML), or a Python model pkg.module:factory "
        "(with --allow-import pkg).",
        metavar="SPEC",
    ),
]


InputOption = Annotated[
    list[str] | None,
    typer.Option(
        "--input",
        "-i",
        metavar="SHAPE",
        help="Input shape, e.g. 2x20, 1x3x224x224, 1x1024:long, instead of the spec's "
        "`input:`. Repeat for models that take several tensors.",
    ),
]
FlopsOption = Annotated[
    bool,
    typer.Option(
        "--flops", help="Count FLOPs per layer and in total (2 × multiply-adds, as torch does)."
    ),
]
AllowImportOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-import",
        metavar="PACKAGE",
        help="Allow specs to use layers from this Python package. Repeatable.",
    ),
]


SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="NAME=VALUE",
        help="Override a param: --set d_model=512. Repeatable.",
    ),
]


SampleOption = Annotated[
    list[str] | None,
    typer.Option(
        "--sample",
        metavar="NAME=SIZE",
        help="With symbolic sizes (--input Bx3xHxW): the size of NAME in the first run "
        "(default: the spec's own there, else 2 for a batch and 64). Repeatable.",
    ),
]
BudgetOption = Annotated[
    float | None,
    typer.Option(
        "--symbolic-budget",
        metavar="SECONDS",
        help="With symbolic sizes: the most time the checks after the first run may take; "
        "what they do not settle is reported as not derived [default: 20].",
    ),
]


class _State:
    traceback = False


STATE = _State()


def _version(value: bool) -> None:
    if value:
        print(f"shapecli {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    show_traceback: Annotated[
        bool,
        typer.Option("--traceback", help="Show the Python traceback of an internal error."),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print shapecli's version and exit.",
            is_eager=True,
            callback=_version,
        ),
    ] = False,
) -> None:
    STATE.traceback = show_traceback


@app.command(cls=_Command)
def inspect(
    spec: SpecArgument,
    input: InputOption = None,
    output_format: Annotated[str, format_option(REPORT_FORMATS)] = "table",
    depth: Annotated[
        int | None,
        typer.Option(
            "--depth",
            "-d",
            min=0,
            metavar="N",
            help="Show every module down to this depth, torch's own submodules included "
            "(default: the spec's entries; JSON: every module).",
        ),
    ] = None,
    paths: Annotated[
        bool,
        typer.Option(
            "--paths", help="Add a column with each row's module path (as in JSON and tie:)."
        ),
    ] = False,
    flops: FlopsOption = False,
    memory: Annotated[
        bool,
        typer.Option(
            "--memory",
            help="Estimate training memory: gradients, optimizer state, saved activations.",
        ),
    ] = False,
    optimizer: Annotated[
        Optimizer,
        typer.Option("--optimizer", help="The optimizer whose state --memory counts."),
    ] = Optimizer.adam,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="SCHEME=N",
            help="Also each device's training memory (implies --memory), the model states "
            "sharded over N devices: fsdp=N (torch's fully_shard), zero1=N, zero2=N or "
            "zero3=N (DeepSpeed's ZeRO stages); --input is each device's.",
        ),
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            "--dtype",
            metavar="DTYPE",
            help="Build the model in this dtype: float32, bfloat16, float16, float64.",
        ),
    ] = None,
    set_: SetOption = None,
    allow_import: AllowImportOption = None,
    sample: SampleOption = None,
    symbolic_budget: BudgetOption = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Check again each time the spec (or a Python file it uses) is saved, "
            "until Ctrl-C.",
        ),
    ] = False,
) -> None:
    """Dry-run a spec and report every layer's shapes and parameters."""

    def run() -> Report:
        from shapecli import api

        inputs = api.parse_inputs(input)  # the command line is checked first
        samples = _parse_samples(sample or [])
        return api.inspect(
            _load(spec, set_),
            inputs,
            allow_import=allow_import or (),
            flops=flops,
            memory=memory,
            optimizer=optimizer.value,
            dtype=dtype,
            samples=samples,
            symbolic_budget=symbolic_budget,
            shard=shard,
        )

    stem = Path(spec).stem

    def check() -> Report:
        report = _guarded(run, lambda problems: failed_report(stem, spec, (), *problems))
        _emit(report, output_format, depth, paths)
        return report

    if watch:
        from shapecli.pymodel import is_target
        from shapecli.watch import watch as watching

        # JSON on stdout stays a stream of documents (`jq` reads it): its separator goes to stderr
        documents = output_format == "json"
        raise typer.Exit(watching(check, None if is_target(spec) else Path(spec), documents))
    raise typer.Exit(_exit_code(check()))


@app.command(cls=_Command)
def build(
    spec: Annotated[Path, typer.Argument(help="The spec file (YAML).", metavar="SPEC")],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Where to write the weights: safetensors, or torch.save for .pt/.pth/.bin.",
        ),
    ],
    input: InputOption = None,
    set_: SetOption = None,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            metavar="NAME",
            help="Weight initialization: default (each layer's own), xavier_uniform, "
            "xavier_normal, kaiming_uniform, kaiming_normal, orthogonal or normal (std 0.02). "
            "[default: the spec's `init:`, else default]",
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option("--seed", min=0, metavar="N", help="Random seed: same seed, same weights."),
    ] = 0,
    dtype: Annotated[
        str,
        typer.Option(
            "--dtype",
            metavar="NAME",
            help="Weights dtype: float32, float16, bfloat16 or float64.",
        ),
    ] = "float32",
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists.")] = False,
    max_memory: Annotated[
        str | None,
        typer.Option(
            "--max-memory",
            metavar="SIZE",
            help="Refuse to allocate more than this, e.g. 8GiB or 500MB (free memory is "
            "always a limit).",
        ),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Run one real forward pass on the CPU and check every row's shapes "
            "against the dry run before writing.",
        ),
    ] = False,
    allow_import: AllowImportOption = None,
) -> None:
    """Build the model with real, initialized weights on the CPU and save them."""

    def run() -> int:
        from shapecli import api
        from shapecli.atomic import check_target
        from shapecli.budget import parse_size
        from shapecli.render.build import render_text

        # Everything the command line says is checked before torch is imported.
        inputs = api.parse_inputs(input)
        limit = parse_size(max_memory) if max_memory is not None else None
        api.dtype_name(dtype)
        if init is not None and init not in api.INITS:
            from shapecli.errors import did_you_mean

            near = did_you_mean(init, api.INITS)
            raise fail("usage", f"--init {init!r}: one of {', '.join(api.INITS)}{near}")
        check_target(output, force)
        loaded = api.load(spec, set=_parse_sets(set_ or []))
        result = api.build_file(
            loaded,
            output,
            inputs,
            init=init,
            seed=seed,
            dtype=dtype,
            force=force,
            max_memory=limit,
            verify=verify,
            allow_import=allow_import or (),
        )
        sys.stdout.write(render_text(result).stdout)
        sys.stdout.flush()
        return 0

    raise typer.Exit(_guarded(run, _print_problems))


@app.command(cls=_Command)
def graph(
    spec: Annotated[
        str,
        typer.Argument(
            help="The spec file (YAML), a saved JSON report (inspect -f json), or a Python "
            "model pkg.module:factory (with --allow-import pkg).",
            metavar="SPEC",
        ),
    ],
    output_format: Annotated[
        str | None,
        format_option(
            GRAPH_FORMATS,
            ": mermaid (renders on GitHub), dot (Graphviz source), svg (needs Graphviz), "
            "html (one self-contained page to explore) [default: from -o's extension "
            "(.mmd, .dot, .svg, .html), else mermaid]",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write the picture to FILE instead of stdout.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists.")] = False,
    depth: Annotated[
        int | None,
        typer.Option(
            "--depth",
            "-d",
            min=0,
            metavar="N",
            help="Draw every entry down to this depth; what lies deeper is drawn as part of "
            "its container (default: the spec's entries, repeat copies collapsed).",
        ),
    ] = None,
    input: InputOption = None,
    set_: SetOption = None,
    allow_import: AllowImportOption = None,
    sample: SampleOption = None,
    symbolic_budget: BudgetOption = None,
) -> None:
    """Draw the architecture: layers as nodes, the tensors between them as edges."""

    def run() -> int:
        from shapecli import api
        from shapecli.render import Options

        options = Options(depth=depth, color=_color(sys.stderr))
        fmt = output_format or picture_format(output)
        if output is not None:
            from shapecli.atomic import check_target

            check_target(output, force, example="model.svg")  # before any work
        if api.is_saved_report(spec):
            return _graph_saved(spec, options, fmt, output, input or set_, force)
        inputs = api.parse_inputs(input)
        samples = _parse_samples(sample or [])
        report = api.inspect(
            _load(spec, set_),
            inputs,
            allow_import=allow_import or (),
            samples=samples,
            symbolic_budget=symbolic_budget,
        )
        rendered = GRAPH_FORMATS[fmt](report, options)
        if rendered.stdout:
            _write_picture(rendered.stdout, output, force)
        sys.stderr.write(rendered.stderr)
        return _exit_code(report)

    raise typer.Exit(_guarded(run, _print_problems))


#: ``graph -o FILE``: the format each file extension stands for.
PICTURE_EXTENSIONS = {
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
    ".dot": "dot",
    ".gv": "dot",
    ".svg": "svg",
    ".html": "html",
    ".htm": "html",
}


def picture_format(output: Path | None) -> str:
    """The format ``graph`` writes when ``-f`` is not given: the one ``output``'s
    extension names (``usage`` for one it does not), mermaid on stdout. Mermaid text in
    a file named ``.svg`` or ``.png`` is never what was meant."""
    if output is None:
        return "mermaid"
    suffix = output.suffix.lower()
    if suffix in PICTURE_EXTENSIONS:
        return PICTURE_EXTENSIONS[suffix]
    known = ", ".join(dict.fromkeys(PICTURE_EXTENSIONS))
    said = f"`{suffix}`" if suffix else "a name without an extension"
    raise fail(
        "usage",
        f"-o {output.name}: cannot tell the picture's format from {said}; name the file "
        f"{known}, or give the format with -f (nothing was written)",
    )


def _graph_saved(
    path: str,
    options: Options,
    fmt: str,
    output: Path | None,
    reruns: list[str] | None,
    force: bool,
) -> int:
    """``graph report.json``: the picture of a saved report, as its own run drew it. The
    problems it records are that run's, so they are not reported as found now."""
    from shapecli import api

    if reruns:
        raise fail("usage", "--input and --set apply to a spec; a saved report holds its run")
    report = api.read_report(path)
    rendered = GRAPH_FORMATS[fmt](report, options)
    if rendered.stdout:
        _write_picture(rendered.stdout, output, force)
    if report.errors:
        count = len(report.errors)
        note = f"the run this report was saved from had {count} error{'s' * (count != 1)}"
        print(f"{path}: note: {note}; the picture marks where", file=sys.stderr)
    return 0


def _write_picture(text: str, output: Path | None, force: bool) -> None:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from shapecli.atomic import atomic_file

    with atomic_file(output, force=force) as temp:  # whole or not at all
        temp.write_text(text, encoding="utf-8")


@app.command(cls=_Command)
def lint(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Spec files, folders (searched for *.yaml and *.yml) and glob patterns.",
            metavar="PATH...",
        ),
    ],
    output_format: Annotated[
        str | None,
        format_option(LINT_FORMATS, " [default: github when GITHUB_ACTIONS=true, else text]"),
    ] = None,
    input: InputOption = None,
    allow_import: AllowImportOption = None,
    flops: FlopsOption = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            metavar="N",
            help="Check files in N processes at once [default: one per CPU it may use].",
        ),
    ] = None,
) -> None:
    """Check every spec under PATHs; exit 1 if any has an error (for CI and pre-commit)."""
    fmt = output_format or ("github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text")

    def run() -> int:
        from shapecli import api, lint
        from shapecli.render import Options

        inputs = api.parse_inputs(input)
        workers = jobs if jobs is not None else lint.default_jobs()
        result = lint.lint(
            paths,
            inputs,
            allow_import or (),
            flops=flops,
            jobs=workers,
            show_traceback=STATE.traceback,
        )
        rendered = LINT_FORMATS[fmt](result, Options(color=_color(sys.stdout)))
        sys.stdout.write(rendered.stdout)
        return int(result.exit_code)

    raise typer.Exit(_guarded(run, _failed(LINT_FORMATS, fmt)))


@app.command(cls=_Command)
def schema(
    report: Annotated[
        bool,
        typer.Option(
            "--report", help="Print the schema of the JSON report (inspect -f json) instead."
        ),
    ] = False,
) -> None:
    """Print the JSON Schema of the spec format (for editors: yaml-language-server)."""

    def run() -> int:
        from importlib import resources

        # shipped with the package (python -m shapecli.schema --write; a test checks them)
        name = "report.schema.json" if report else "spec.schema.json"
        sys.stdout.write(resources.files("shapecli").joinpath(name).read_text(encoding="utf-8"))
        return 0

    raise typer.Exit(_guarded(run, _print_problems))


@app.command(cls=_Command)
def diff(
    a: Annotated[
        str,
        typer.Argument(
            help="A spec, a saved JSON report (inspect -f json), or a Python model "
            "pkg.module:factory.",
            metavar="A",
        ),
    ],
    b: Annotated[str, typer.Argument(help="The same, for B.", metavar="B")],
    input: InputOption = None,
    output_format: Annotated[str, format_option(DIFF_FORMATS)] = "table",
    every: Annotated[
        bool, typer.Option("--all", help="Show every layer, not only those that differ.")
    ] = False,
    exit_code: Annotated[
        bool,
        typer.Option("--exit-code", help="Exit 1 when the models differ (as git diff)."),
    ] = False,
    allow_import: AllowImportOption = None,
) -> None:
    """Compare two models layer by layer: shapes, parameters, counts."""

    def run() -> int:
        from shapecli import api
        from shapecli.diff import check_inputs
        from shapecli.diff import diff as compare
        from shapecli.pymodel import is_target
        from shapecli.render import Options

        inputs = api.parse_inputs(input)
        allowed = allow_import or ()
        # A Python model has no input: of its own: without --input it takes the other's.
        if not inputs and is_target(a) and not is_target(b):
            right = api.load_report(b, inputs, allowed)
            left = api.load_report(a, right.inputs, allowed)
        else:
            left = api.load_report(a, inputs, allowed)
            right = api.load_report(b, inputs or (left.inputs if is_target(b) else ()), allowed)
        check_inputs(left, inputs, a)
        check_inputs(right, inputs, b)
        result = compare(left, right)
        options = Options(color=_color(sys.stdout), every=every, sides=(a, b))
        sys.stdout.write(DIFF_FORMATS[output_format](result, options).stdout)
        return int(ExitCode.PROBLEMS) if exit_code and result.differs else 0

    def on_problem(problems: tuple[Problem, ...]) -> int:
        # nothing to compare is never "the models differ": a problem in a side is exit 2
        worst = _failed(DIFF_FORMATS, output_format)(problems)
        return int(ExitCode.INTERNAL) if worst == ExitCode.INTERNAL else int(ExitCode.USAGE)

    raise typer.Exit(_guarded(run, on_problem))


@app.command(cls=_Command)
def layers(
    pattern: Annotated[
        str | None,
        typer.Argument(
            help="Only names matching this: a glob (*Norm*) or a substring; case-insensitive.",
        ),
    ] = None,
    output_format: Annotated[str, format_option(LAYERS_FORMATS)] = "text",
) -> None:
    """List every layer type a spec may use, with its arguments."""

    def run() -> int:
        from shapecli.errors import did_you_mean
        from shapecli.layers.registry import all_layers, list_layers
        from shapecli.render import Options

        docs = list_layers(pattern)
        render = LAYERS_FORMATS[output_format]
        options = Options(
            color=_color(sys.stdout),
            width=shutil.get_terminal_size().columns if sys.stdout.isatty() else None,
        )
        sys.stdout.write(render(docs, options).stdout)
        if not docs:  # like grep: nothing found is exit 1
            suggestion = did_you_mean(pattern or "", list(all_layers()))
            print(f"shapecli: no layer type matches {pattern!r}{suggestion}", file=sys.stderr)
            return int(ExitCode.PROBLEMS)
        return 0

    raise typer.Exit(_guarded(run, _print_problems))


def _print_problems(problems: tuple[Problem, ...]) -> int:
    from shapecli.render.format import problem_lines

    for problem in problems:
        print("\n".join(problem_lines(problem)), file=sys.stderr)
    return int(worst_exit_code(list(problems)))


def _failed(formats: Formats, fmt: str) -> Callable[[tuple[Problem, ...]], int]:
    """What to do with a run that made nothing but problems: write what the format
    writes for them (JSON: one document), and exit as they say."""

    def write(problems: tuple[Problem, ...]) -> int:
        from shapecli.render import Options

        rendered = formats.failure(fmt, problems, Options(color=_color(sys.stderr)))
        sys.stdout.write(rendered.stdout)
        sys.stderr.write(rendered.stderr)
        return int(worst_exit_code(list(problems)))

    return write


def _load(spec: str, set_: list[str] | None) -> Spec | str:
    """The spec, read with its ``--set`` values (its errors cost no torch import), or a
    Python model's name, which the API loads."""
    from shapecli import api
    from shapecli.pymodel import is_target

    sets = _parse_sets(set_ or [])
    return spec if is_target(spec) else api.load(spec, set=sets)


def _parse_sets(items: list[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise fail("usage", f"--set {item!r}: write --set name=value")
        overrides[key.strip()] = value.strip()
    return overrides


def _parse_samples(items: list[str]) -> dict[str, int]:
    """``--sample H=224`` values, by name (``usage`` when one is not NAME=SIZE)."""
    samples = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value.isdigit() or not value.isascii():
            raise fail("usage", f"--sample {item!r}: write --sample NAME=SIZE, e.g. --sample H=224")
        if name in samples:
            raise fail("usage", f"--sample {name} is given twice")
        samples[name] = int(value)
    return samples


def _exit_code(report: Report) -> int:
    return int(worst_exit_code([*report.errors, *report.warnings]))


def _guarded(body: Callable[[], T], on_problem: Callable[[tuple[Problem, ...]], T]) -> T:
    """Run a command body; expected failures become data, bugs become exit 3 — both
    handed to ``on_problem``, so every output format can carry them."""
    try:
        return body()
    except ShapecliError as e:
        return on_problem(e.problems)
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as e:
        if isinstance(e, OSError) and e.errno in OUTPUT_FAILURES:
            raise  # the output cannot be written: run_cli says so
        if STATE.traceback:
            traceback.print_exc()
        return on_problem((internal_problem(e),))


def _emit(report: Report, fmt: str, depth: int | None, paths: bool = False) -> None:
    from shapecli.render import Options

    options = Options(
        depth=depth,
        paths=paths,
        color=_color(sys.stdout),
        width=shutil.get_terminal_size().columns if sys.stdout.isatty() else None,
    )
    rendered = REPORT_FORMATS[fmt](report, options)
    sys.stdout.write(rendered.stdout)
    sys.stdout.flush()
    if rendered.stderr:
        if options.color != _color(sys.stderr):
            from dataclasses import replace

            rendered = REPORT_FORMATS[fmt](report, replace(options, color=_color(sys.stderr)))
        sys.stderr.write(rendered.stderr)


def _color(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty()) and not os.environ.get("NO_COLOR")


def main() -> None:
    """Console entry point: run the app, then leave without interpreter teardown."""
    from shapecli.speedups import own_the_process  # torch-free: --help stays fast

    own_the_process()
    code = run_cli(sys.argv[1:])
    if "torch" in sys.modules:
        from shapecli.speedups import exit_now

        exit_now(code)
    sys.exit(code)


def run_cli(argv: list[str]) -> int:
    """Run the command line ``argv``; return the exit code.

    A mistake on the command line (an unknown option, a bad choice) is exit 2 with
    click's message — and, where the format asked for writes a document of its own (JSON),
    that document saying so, as for every other problem.
    """
    try:
        result = app(args=argv, prog_name="shapecli", standalone_mode=False)
        return int(result) if isinstance(result, int) else 0
    except click.exceptions.UsageError as e:
        e.message = e.message.removeprefix("Value error, ")  # typer's validator's wording
        asked = _asked_format(argv)
        if asked is not None and asked[1] in asked[0].failures:
            _failed(*asked)((Problem("usage", e.format_message()),))
        else:
            e.show()
        return int(ExitCode.USAGE)
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        return 130
    except click.exceptions.ClickException as e:
        e.show()
        return int(e.exit_code)
    except BrokenPipeError:
        return 0
    except OSError as e:
        if e.errno not in OUTPUT_FAILURES:
            raise
        with contextlib.suppress(OSError):  # stderr may be on the same full disk
            print(
                f"shapecli: error[file-error] could not write the output: {e.strerror}",
                file=sys.stderr,
            )
        return int(ExitCode.USAGE)


#: Why writing the output can fail where shapecli is not to blame: a full disk or quota,
#: a file grown past its limit, a device error (a closed pipe ends quietly instead).
OUTPUT_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


#: Each command's formats, for a command line that failed before it ran.
COMMAND_FORMATS = {
    "inspect": REPORT_FORMATS,
    "graph": GRAPH_FORMATS,
    "lint": LINT_FORMATS,
    "diff": DIFF_FORMATS,
    "layers": LAYERS_FORMATS,
}


def _asked_format(argv: list[str]) -> tuple[Formats, str] | None:
    """The formats of the command ``argv`` names and the one it asks for, as click reads
    that command's own ``--format`` with what it could not parse left aside (the options
    before a command are flags: the first word that names a command is it)."""
    group = typer.main.get_command(app)
    name = next((word for word in argv if word in COMMAND_FORMATS), None)
    command = getattr(group, "commands", {}).get(name) if name else None
    if name is None or command is None:
        return None
    rest = argv[argv.index(name) + 1 :]
    context = command.make_context(name, rest, resilient_parsing=True, ignore_unknown_options=True)
    fmt = context.params.get("output_format")
    return (COMMAND_FORMATS[name], fmt) if isinstance(fmt, str) else None
