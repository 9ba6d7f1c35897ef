"""A spec's model with real weights: the dry run fixes the shapes, then memory is
checked, allocated on the CPU, initialized, and (optionally) filled from a file.

Order matters, and each step is what makes the next safe:

1. build the lazy modules on meta and dry-run them (every repeat copy runs: no replay,
   so the model handed over is made of modules constructed the ordinary way) — a broken
   spec fails here, before anything is allocated;
2. estimate the bytes from the shapes at the target dtype (each tied tensor once) and
   refuse what does not fit (:mod:`shapecli.budget`);
3. set the dtype while still on meta (free), then ``to_empty`` on the CPU, and tie
   again (``to_empty`` makes a tied parameter two);
4. initialize (:mod:`shapecli.weight_init`), load the weights file if one is given
   (:mod:`shapecli.weights`), and make sure no tensor was left unset.

On the ``meta`` device the model stops after step 1 and the dtype: nothing is allocated,
so there is no memory to check; whoever gives it memory (``to_empty``, after sharding it)
initializes it with :func:`shapecli.initialize`, which finds what it needs from the spec
through :func:`~shapecli.weight_init.remember`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from shapecli.budget import check_fits
from shapecli.construct import BuiltModel, build_modules
from shapecli.dryrun import dry_run
from shapecli.errors import ShapecliError
from shapecli.inputs import InputSpec
from shapecli.report import Report
from shapecli.spec.model import Spec
from shapecli.speedups import lean_meta
from shapecli.weight_init import check_all_set, initialize, remember
from shapecli.weights import load_weights


@dataclass
class Materialized:
    """The model with real weights, and what was learned making it."""

    model: nn.Module
    built: BuiltModel
    report: Report  # the meta dry run's
    inputs: tuple[InputSpec, ...]
    dtype: torch.dtype
    init: str  # the model-wide scheme (entries may name their own)
    seed: int


def materialize(
    spec: Spec,
    inputs: Sequence[InputSpec],
    *,
    init: str,
    seed: int = 0,
    dtype: str = "float32",
    weights: Path | None = None,
    max_memory: int | None = None,
    room_for_forward: bool = False,
    allow_import: Iterable[str] = (),
    device: str = "cpu",
) -> Materialized:
    """Real weights for ``spec`` (see the module docstring), or with ``device="meta"``
    the model sized but holding no memory. ``room_for_forward`` adds the activations of
    one forward pass to the memory check (for ``--verify``)."""
    target: torch.dtype = getattr(torch, dtype)
    with lean_meta():
        built = build_modules(spec, allow_import)
    report = dry_run(built, tuple(inputs), spec.name, spec.file, replay=False)
    if report.errors:
        raise ShapecliError(*report.errors)
    model = built.model
    remember(built, init)
    if device == "meta":
        model.to(dtype=target)  # keeps every Parameter object, so ties stay in place
        return Materialized(model, built, report, tuple(inputs), target, init, seed)
    needed = weight_bytes(model, target)
    what = f"the {dtype} weights"
    if room_for_forward:
        needed += report.totals.activation_bytes or 0  # symbolic inputs are refused earlier
        what += " and one forward pass"
    check_fits(needed, what, max_memory)
    model.to(dtype=target)  # on meta: nothing is allocated
    model.to_empty(device="cpu")
    built.apply_ties()
    initialize(model, built.entries, init, seed)
    if weights is not None:
        load_weights(model, weights)
    check_all_set(model, built.entries)
    return Materialized(model, built, report, tuple(inputs), target, init, seed)


def weight_bytes(model: nn.Module, dtype: torch.dtype) -> int:
    """Bytes of every parameter and buffer (each tied tensor once), floating-point ones
    at ``dtype``."""
    size = torch.empty((), dtype=dtype, device="meta").element_size()
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(
        t.numel() * (size if t.is_floating_point() else t.element_size()) for t in tensors.values()
    )


def unique_params(model: nn.Module) -> int:
    """Parameters, each tied one once."""
    return sum(p.numel() for p in model.parameters())
