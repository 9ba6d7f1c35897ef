"""The public Python API — ``load``, ``inspect``, ``build``, ``save`` — which the CLI
also uses.

* :func:`load` reads a spec and raises :class:`~shapecli.errors.ShapecliError` if it
  cannot.
* :func:`inspect` never raises for a problem with its inputs: every problem is in the
  returned report's ``errors`` (with ``report.ok`` false), so a caller handles one
  outcome, and ``lint`` checks many files the same way.
* :func:`build` returns real, initialized weights on the CPU (or loaded from a file),
  or raises; :func:`save` writes them; :func:`build_file` is ``shapecli build``.
* ``build(…, device="meta")`` and :func:`initialize` are the two ends of training a
  model larger than one device: built on meta, sharded, materialized, initialized.

torch is imported only inside the functions that need it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from shapecli.budget import parse_size
from shapecli.build_result import BuildResult
from shapecli.codec import quoted
from shapecli.errors import Problem, ShapecliError, Source, fail
from shapecli.inputs import DTYPES, InputError, InputSpec, merge_inputs, parse_input, symbols_in
from shapecli.pymodel import is_target
from shapecli.report import Report, failed_report
from shapecli.spec.expressions import Value
from shapecli.spec.model import INIT_SCHEMES, Spec
from shapecli.spec.parse import parse_spec, read_spec
from shapecli.torch_compat import require_supported

if TYPE_CHECKING:
    from torch import nn

    from shapecli.analyses import Analysis
    from shapecli.materialize import Materialized

SpecLike = str | os.PathLike[str] | Spec
#: A spec as :func:`build` takes it too: a path, YAML text, a dict or a :class:`Spec`.
SpecSource = SpecLike | Mapping[str, object]
#: What :func:`inspect` takes besides: a spec as a dict (what YAML would parse to), or a
#: model object (an ``nn.Module``; typed ``object`` so this module need not import torch).
ModelLike = SpecLike | Mapping[str, object] | object
InputLike = str | InputSpec | Sequence[str | InputSpec] | Sequence[int] | None

#: Weight initializations :func:`build` knows (see :data:`INIT_SCHEMES`).
INITS = INIT_SCHEMES
#: The floating-point types weights and parameters may have (``dtype=``, ``--dtype``).
WEIGHT_DTYPES = ("float32", "float16", "bfloat16", "float64")
#: Where :func:`build` puts the model: real weights on the CPU, or none on meta.
DEVICES = ("cpu", "meta")


def load(spec: str | os.PathLike[str], *, set: Mapping[str, Value] | None = None) -> Spec:
    """Read and resolve a spec file. ``set`` overrides its ``params``."""
    return read_spec(Path(spec), set)


def parse_inputs(given: InputLike) -> tuple[InputSpec, ...]:
    """Input declarations from strings or :class:`InputSpec`\\ s (``input-invalid`` if bad)."""
    if given is None:
        return ()
    items: list[str | InputSpec | int]
    if isinstance(given, str | InputSpec):
        items = [given]
    elif given and all(isinstance(d, int) and not isinstance(d, bool) for d in given):
        items = ["x".join(str(d) for d in given)]  # (2, 20), as torchinfo's input_size
    else:
        items = list(given)
    parsed = []
    for item in items:
        if not isinstance(item, str | InputSpec):
            raise fail("input-invalid", f"input {item!r}: give a shape like 2x20, or (2, 20)")
        try:
            parsed.append(item if isinstance(item, InputSpec) else parse_input(item))
        except InputError as e:
            raise fail("input-invalid", str(e)) from None
    return tuple(parsed)


def inspect(
    spec: ModelLike,
    input: InputLike = None,
    *,
    set: Mapping[str, Value] | None = None,
    allow_import: Iterable[str] = (),
    static_ok: bool = False,
    flops: bool = False,
    memory: bool = False,
    optimizer: str = "adam",
    dtype: str | None = None,
    samples: Mapping[str, int] | None = None,
    symbolic_budget: float | None = None,
    shard: str | None = None,
) -> Report:
    """Build the spec's modules and dry-run them; every problem ends up in the report.

    ``spec`` is a spec file's path, a spec's YAML text (any text with a line break in
    it), a dict of what that YAML would be, a loaded :class:`Spec`, a Python model
    ``pkg.module:factory`` — or a model object, an ``nn.Module``, which is dry-run as a
    meta copy (:func:`~shapecli.pymodel.meta_copy`): its weights are neither read nor
    moved nor changed, wherever they are. ``input`` overrides the spec's ``input:``
    (``"2x20"``, an :class:`InputSpec`, a list of them, or one shape as ``(2, 20)``).
    Without either, the report holds an ``input-invalid`` error — or, with
    ``static_ok`` (what ``lint`` uses), the model is built and checked statically and
    a ``dry-run-skipped`` warning says so.

    ``flops`` counts FLOPs per row and in total; ``memory`` adds the training-memory
    estimate (gradients, ``optimizer`` state, what autograd saves); ``dtype`` builds and
    runs the model in that floating-point dtype (parameters and float inputs). A Python
    model's package must be one ``allow_import`` allows (see :mod:`shapecli.pymodel`).
    ``shard`` (``"fsdp=8"``, ``"zero2=8"``; implies ``memory``) adds each device's part
    of the training estimate when the model states are sharded that way (see
    :mod:`shapecli.analyses.sharding`).

    With symbolic sizes in the inputs (``Bx3xHxW``), ``samples`` chooses the sizes of
    the first run (``{"H": 224}``), and ``symbolic_budget`` the seconds the checks
    after it may take (default :data:`shapecli.symbolic.DEFAULT_BUDGET`); see
    :mod:`shapecli.symbolic`.
    """
    name, file = _names(spec)
    inputs: tuple[InputSpec, ...] = ()
    try:
        inputs = parse_inputs(input)
        measure = _analyses(flops, memory, optimizer, shard)
        if _is_module(spec) or (isinstance(spec, str) and is_target(spec)):
            return _inspect_python(spec, inputs, allow_import, measure, optimizer, dtype)
        loaded = _spec(spec, set)
        name = loaded.name
        inputs = _merged(loaded.inputs, inputs)
        if not inputs and not static_ok:
            raise _no_input(loaded.file)
        _check_analysis(optimizer, dtype)
        require_supported()
        symbols = symbols_in(inputs)
        _check_symbolic(bool(symbols), samples, symbolic_budget)
        if symbols:
            if measure or dtype:
                raise fail(
                    "usage",
                    "--flops, --memory, --shard and --dtype need concrete sizes; give numbers for "
                    f"{', '.join(symbols)}",
                )
            from shapecli.analyses import Symbolic

            report = Symbolic(samples or {}, symbolic_budget).run(loaded, inputs, allow_import)
            return replace(report, warnings=(*loaded.warnings, *report.warnings))
        from shapecli.construct import build_modules
        from shapecli.dryrun import default_dtype, dry_run
        from shapecli.speedups import lean_meta

        with lean_meta(), default_dtype(dtype):  # building runs meta ops too (weight init)
            built = build_modules(loaded, allow_import)
        if not inputs:
            return Report(
                name=name,
                spec=file,
                inputs=(),
                ran=False,
                warnings=(
                    *loaded.warnings,
                    *built.warnings,
                    Problem(
                        code="dry-run-skipped",
                        message="no `input:` in the spec, so the layers were built and checked "
                        "but not dry-run; add `input:` to check shapes",
                        source=loaded.input_source or loaded.model.source,
                        severity="warning",
                    ),
                ),
            )
        with default_dtype(dtype):
            report = dry_run(built, inputs, name, file, measure=measure)
        return replace(report, warnings=(*loaded.warnings, *report.warnings))
    except ShapecliError as e:
        failed = failed_report(name, file, inputs, *e.problems)
        symbols = symbols_in(inputs)
        return replace(failed, symbols=symbols, constraints=None) if symbols else failed


def build(
    spec: SpecSource,
    input: InputLike = None,
    *,
    init: str | None = None,
    seed: int = 0,
    dtype: str = "float32",
    weights: str | os.PathLike[str] | None = None,
    max_memory: int | str | None = None,
    set: Mapping[str, Value] | None = None,
    allow_import: Iterable[str] = (),
    device: str = "cpu",
) -> nn.Module:
    """The spec's model with real weights on the CPU, initialized reproducibly.

    ``spec`` is a path, YAML text or a dict, as :func:`inspect` takes it. The sizes
    come from a meta dry run (so a bad spec fails before anything is allocated);
    weights that would not fit in free memory or ``max_memory`` (bytes, or a size like
    ``"8GiB"``) are refused with the estimate (``too-large``). Then every layer is
    initialized: its own ``reset_parameters``, then ``init`` — or the spec's
    ``init:``, else ``"default"`` — for every weight of two or more dimensions (an
    entry's own ``init:`` wins for its layers). The same ``seed`` gives the same
    weights, bit for bit; the global random state is left as it was. ``dtype`` is the
    floating-point type of the weights. ``weights`` loads a file written by
    :func:`save` (or ``torch.save(model.state_dict())`` to a ``.pt``) into the fresh
    model: names and shapes must match exactly (``weights-mismatch``).

    ``device="meta"`` stops before anything is allocated: every parameter and buffer
    on the meta device, sized by the dry run, at ``dtype``, ties in place — the model
    to shard (``fully_shard``), give memory (``to_empty``) and then :func:`initialize`
    with the scheme given here as ``init`` (or the spec's). ``max_memory`` does not
    apply: nothing is allocated.
    """
    if device not in DEVICES:
        raise fail("usage", f"device {device!r}: one of {', '.join(map(repr, DEVICES))}")
    if device == "meta" and weights is not None:
        raise fail(
            "usage",
            'weights= needs memory to load into; device="meta" allocates none',
            hint="load them after to_empty, e.g. with torch.distributed.checkpoint",
        )
    made = _materialize(
        spec,
        input,
        init=init,
        seed=seed,
        dtype=dtype,
        weights=weights,
        max_memory=max_memory,
        set=set,
        allow_import=allow_import,
        device=device,
    )
    return made.model


def initialize(model: nn.Module, *, init: str | None = None, seed: int = 0) -> None:
    """Initialize, in place, a model :func:`build` made, as ``build`` would have: each
    layer's own initializer, then the scheme (``init``, default: the one ``build`` was
    given, else the spec's ``init:``, else ``"default"``; entries' own ``init:`` win),
    from ``seed``, leaving the global random state as it was.

    Meant for the model ``build(…, device="meta")`` returns once it has memory,
    sharded or not: layer by layer, each setting only its own tensors, so it is right
    after ``fully_shard`` and ``to_empty``, where each process holds a shard of every
    parameter. The weights equal those of the same spec built by :func:`build` with
    the same ``init`` and ``seed``, bit for bit, however the model is sharded.
    """
    _check_init_and_seed(init, seed)
    require_supported()
    from shapecli.weight_init import initialize_again

    initialize_again(model, init, seed)


def save(model: nn.Module, path: str | os.PathLike[str], *, force: bool = False) -> str:
    """Write ``model``'s ``state_dict`` to ``path``: safetensors, or ``torch.save`` for a
    ``.pt``/``.pth``/``.bin`` name; return which. Atomic (a complete file or none);
    an existing file is replaced only with ``force``; tied parameters are stored once.
    """
    from shapecli.weights import save_weights

    return save_weights(model, Path(path), force)


def build_file(
    spec: SpecLike,
    output: str | os.PathLike[str],
    input: InputLike = None,
    *,
    init: str | None = None,
    seed: int = 0,
    dtype: str = "float32",
    force: bool = False,
    max_memory: int | str | None = None,
    verify: bool = False,
    set: Mapping[str, Value] | None = None,
    allow_import: Iterable[str] = (),
) -> BuildResult:
    """``shapecli build``: :func:`build`, then — with ``verify`` — one real forward pass
    checked against the dry run row by row (``verify-mismatch``), then :func:`save`.
    Nothing is written unless every step succeeded."""
    from shapecli.atomic import check_target

    target = Path(output)
    check_target(target, force)  # before any work: refusing at the end wastes minutes
    made = _materialize(
        spec,
        input,
        init=init,
        seed=seed,
        dtype=dtype,
        max_memory=max_memory,
        set=set,
        allow_import=allow_import,
        room_for_forward=verify,
    )
    rows = None
    if verify:
        from shapecli.verify import verify as check

        rows = check(made.model, made.report, made.inputs, seed, made.dtype)
    kind = save(made.model, target, force=force)
    from shapecli.materialize import unique_params

    return BuildResult(
        name=made.report.name,
        spec=made.report.spec,
        output=str(output),
        format=kind,
        file_bytes=target.stat().st_size,
        params=unique_params(made.model),
        dtype=dtype_name(dtype),
        init=made.init,
        seed=seed,
        verified_rows=rows,
    )


def dtype_name(dtype: str) -> str:
    """A weights dtype by any of its names (``half``) → its name (``float16``); only
    floating-point types hold weights (``usage`` otherwise)."""
    name = DTYPES.get(dtype)
    if name not in WEIGHT_DTYPES:
        raise fail(
            "usage",
            f"--dtype {dtype!r}: weights are one of {', '.join(WEIGHT_DTYPES)} "
            "(or half, double, float)",
        )
    return name


def _materialize(
    spec: SpecSource,
    input: InputLike,
    *,
    init: str | None = None,
    seed: int = 0,
    dtype: str = "float32",
    weights: str | os.PathLike[str] | None = None,
    max_memory: int | str | None = None,
    set: Mapping[str, Value] | None = None,
    allow_import: Iterable[str] = (),
    room_for_forward: bool = False,
    device: str = "cpu",
) -> Materialized:
    """What :func:`build` and :func:`build_file` share: the arguments checked (before
    torch is imported), then :func:`shapecli.materialize.materialize`."""
    _check_init_and_seed(init, seed)
    name = dtype_name(dtype)
    limit = parse_size(max_memory) if isinstance(max_memory, str) else max_memory
    loaded = _spec(spec, set)
    inputs = _merged(loaded.inputs, parse_inputs(input))
    if not inputs:
        raise _no_input(loaded.file)
    _refuse_symbolic(inputs)
    require_supported()
    from shapecli.materialize import materialize

    return materialize(
        loaded,
        inputs,
        init=init or loaded.init or "default",
        seed=seed,
        dtype=name,
        weights=Path(weights) if weights is not None else None,
        max_memory=limit,
        room_for_forward=room_for_forward,
        allow_import=allow_import,
        device=device,
    )


def _check_init_and_seed(init: str | None, seed: int) -> None:
    if init is not None and init not in INITS:
        raise fail("usage", f"unknown init {init!r}; one of {', '.join(INITS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise fail("usage", f"seed {seed!r}: a whole number from 0 to 2**63 - 1")


def _names(spec: ModelLike) -> tuple[str, str]:
    """The name and the file a report of ``spec`` has before the spec is read (or if it
    cannot be): a file's stem, a Python model's target or class name, ``<text>``."""
    if isinstance(spec, Spec):
        return Path(spec.file).stem, spec.file
    if isinstance(spec, Mapping):
        return DICT_FILE, DICT_FILE
    if isinstance(spec, str) and _is_text(spec):
        return TEXT_FILE, TEXT_FILE
    if isinstance(spec, str) and is_target(spec):
        return spec, spec
    if isinstance(spec, str | os.PathLike):
        return Path(spec).stem, str(spec)
    return type(spec).__name__, type(spec).__name__


#: Where the problems of a spec given as a dict, or as YAML text, are located.
DICT_FILE, TEXT_FILE = "<dict>", "<text>"


def _is_text(spec: str) -> bool:
    """Is ``spec`` YAML text rather than a path? A path has no line break in it."""
    return "\n" in spec


def _is_module(spec: object) -> bool:
    """Is ``spec`` an ``nn.Module``? Without torch imported, nothing can be one."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(spec, torch.nn.Module)


def _spec(spec: ModelLike, overrides: Mapping[str, Value] | None) -> Spec:
    """``spec`` read: a :class:`Spec` as it is, YAML text or a dict parsed, a path loaded."""
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, Mapping):
        return parse_spec(_yaml_of(spec), DICT_FILE, overrides)
    if isinstance(spec, str) and _is_text(spec):
        return parse_spec(spec, TEXT_FILE, overrides)
    if isinstance(spec, str | os.PathLike):
        return load(spec, set=overrides)
    raise fail(
        "usage",
        f"cannot inspect an object of type {type(spec).__name__}: give a spec (a path, YAML "
        "text or a dict), `pkg.module:factory`, or an nn.Module",
    )


def _yaml_of(spec: Mapping[str, object]) -> str:
    """A dict spec as the YAML text it stands for, so that it is checked exactly as a
    file is (and its problems are located in that text)."""
    import yaml

    def plain(value: object) -> object:
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    try:
        return yaml.safe_dump(plain(spec), sort_keys=False, allow_unicode=True)
    except yaml.YAMLError as e:
        raise fail(
            "spec-invalid", f"the dict is not a spec: {e}", Source(DICT_FILE, 0, 0)
        ) from None


def _inspect_python(
    target: object,
    inputs: tuple[InputSpec, ...],
    allow_import: Iterable[str],
    measure: list[Analysis],
    optimizer: str,
    dtype: str | None,
) -> Report:
    """:func:`inspect` for a Python model: a factory's target, or a model object."""
    name, _ = _names(target)
    if not inputs:
        raise _no_input(name, spec=False)
    _refuse_symbolic(inputs, "symbolic sizes work for specs only: Python models")
    _check_analysis(optimizer, dtype)
    require_supported()
    from shapecli.dryrun import default_dtype, dry_run
    from shapecli.pymodel import built_from, load_model, meta_copy
    from shapecli.speedups import lean_meta

    with lean_meta(), default_dtype(dtype):
        if isinstance(target, str):
            built = load_model(target, allow_import)
        else:
            where = Source(name, 0, 0)
            built = built_from(meta_copy(target, where), where)
        return dry_run(built, inputs, name, name, measure=measure)


def load_report(source: str, input: InputLike = None, allow_import: Iterable[str] = ()) -> Report:
    """A report to compare: a saved JSON report, a Python model, or a spec (dry-run
    with ``input`` or its own ``input:``). Raises ShapecliError if it has problems: a
    comparison needs both models whole."""
    if is_saved_report(source):
        report = read_report(source)
        if report.errors or not report.ran:
            raise fail("usage", _not_comparable(report), Source(source, 0, 0))
        return report
    report = inspect(source, input, allow_import=allow_import)
    if report.errors:
        raise ShapecliError(*report.errors)
    return report


def is_saved_report(source: str) -> bool:
    """Whether ``source`` names a saved JSON report (``inspect -f json``) rather than a
    spec or a Python model."""
    return source.endswith(".json") and not is_target(source)


def read_report(path: str) -> Report:
    """The report saved in the file ``path`` (``inspect -f json``), exactly as it was
    made; ``file-error`` naming the JSON path of the first thing that is not a report."""
    from shapecli.report import OtherDocument
    from shapecli.report import read_report as decode
    from shapecli.untrusted import read_text

    where = Source(path, 0, 0)
    try:
        return decode(read_text(path))
    except OtherDocument as e:
        hint = "save a model's report with `shapecli inspect SPEC -f json > FILE`, or give the spec"
        raise fail("file-error", str(e), where, hint=hint) from None
    except ValueError as e:  # not UTF-8, not JSON, not a report (the JSON path says where)
        raise fail("file-error", f"not a shapecli JSON report: {e}", where) from None


def _not_comparable(report: Report) -> str:
    """Why a saved report cannot be compared — in words of its own: the problems it
    records were found when it was made, not now."""
    why = "diff compares models that ran"
    if not report.errors:
        return f"the report records no dry run (it was made without an input); {why}"
    count = len(report.errors)
    first = f"{report.errors[0].code} {quoted(report.errors[0].message, 120)}"
    return f"the report records {count} error{'s' * (count != 1)} (first: {first}); {why}"


def _analyses(flops: bool, memory: bool, optimizer: str, shard: str | None) -> list[Analysis]:
    """The analyses ``inspect``'s options ask for (see :mod:`shapecli.analyses`); the
    command line is checked here, before torch is imported."""
    from shapecli.analyses import Flops, Sharding, Training
    from shapecli.analyses.sharding import parse_shard

    measure: list[Analysis] = [Flops()] if flops else []
    if shard is not None:
        measure.append(Sharding(optimizer, parse_shard(shard)))
    elif memory:
        measure.append(Training(optimizer))
    return measure


def _check_analysis(optimizer: str, dtype: str | None) -> None:
    from shapecli.memory import OPTIMIZER_STATES

    if optimizer not in OPTIMIZER_STATES:
        raise fail(
            "usage", f"unknown optimizer {optimizer!r}; one of {', '.join(OPTIMIZER_STATES)}"
        )
    if dtype is not None and DTYPES.get(dtype) not in WEIGHT_DTYPES:
        raise fail(
            "usage",
            f"--dtype {dtype}: parameters are one of {', '.join(WEIGHT_DTYPES)} "
            "(or half, float, double, bf16 … as in --input)",
        )


def _check_symbolic(
    symbolic: bool, samples: Mapping[str, int] | None, budget: float | None
) -> None:
    """``samples`` only for symbolic sizes; a budget is a positive number of seconds."""
    if samples and not symbolic:
        name = next(iter(samples))
        raise fail(
            "usage",
            f"--sample {name}={samples[name]}: the inputs have no symbolic sizes to sample "
            "(give names in --input, e.g. Bx3xHxW)",
        )
    if budget is not None and (isinstance(budget, bool) or not budget > 0):
        raise fail("usage", f"--symbolic-budget {budget}: a number of seconds above 0")


def _no_input(subject: str, spec: bool = True) -> ShapecliError:
    """``input-invalid``: nothing says what input to run ``subject`` (a spec file, a
    Python model) on — in the words of both callers: the command line and Python."""
    return fail(
        "input-invalid",
        "no input shape; give one with --input on the command line (e.g. --input 2x20) or "
        'input= in Python (input="2x20")' + (", or add `input:` to the spec" if spec else ""),
        Source(subject, 0, 0),
    )


def _merged(declared: tuple[InputSpec, ...], given: tuple[InputSpec, ...]) -> tuple[InputSpec, ...]:
    try:
        return merge_inputs(declared, given)
    except InputError as e:
        raise fail("input-invalid", str(e)) from None


def _refuse_symbolic(inputs: tuple[InputSpec, ...], why: str = "real weights") -> None:
    """Real weights need real sizes (and so, for now, do Python models)."""
    for spec in inputs:
        names = [d for d in spec.dims if isinstance(d, str)]
        if names:
            raise fail(
                "input-invalid",
                f"input {spec}: {why} need real sizes; give {', '.join(names)} as "
                "numbers, e.g. 2x3x224x224",
            )
