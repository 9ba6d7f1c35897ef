"""Which sizes the symbols take for the runs: the samples, and sizes in general.

A symbol's sample is, in order: the size ``--sample NAME=VALUE`` gives it, the spec's
own size at that position (``input: 1x3x224x224`` with ``--input Bx3xHxW``: H = 224),
else 2 for a leading batch dimension and 64 for any other. Default samples shrink when
an input would have too many elements (sixteen symbols at 64 overflow int64): a meta
tensor of 2⁶⁴ elements cannot exist, and no size the model is asked about should be
one a concrete ``--input`` would refuse.

No torch here.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterator, Mapping, Sequence

from shapecli.errors import fail
from shapecli.inputs import InputSpec

BATCH_SAMPLE = 2
SIZE_SAMPLE = 64
#: Sizes tried for every non-batch symbol, in turn, when the model fails at the first
#: samples (a window of 7 needs a multiple of 7; a patch of 16, at least 16).
FALLBACK_SIZES = (64, 224, 56, 32, 128, 96, 112, 16, 8)
#: The most elements an input may have at any size shapecli runs: far below int64, so
#: that what a model computes from it (a product with another input) fits too.
MAX_ELEMENTS = 2**40

Sizes = Mapping[str, int]


def symbols_of(inputs: Sequence[InputSpec]) -> list[str]:
    """The symbolic sizes, in order of first appearance."""
    found: dict[str, None] = {}
    for spec in inputs:
        for d in spec.dims:
            if isinstance(d, str):
                found.setdefault(d)
    return list(found)


def concrete(inputs: Sequence[InputSpec], values: Sizes) -> tuple[InputSpec, ...]:
    """The inputs with every symbol replaced by its value."""
    return tuple(
        dataclasses.replace(
            spec, dims=tuple(values[d] if isinstance(d, str) else d for d in spec.dims)
        )
        for spec in inputs
    )


def fits(inputs: Sequence[InputSpec], values: Sizes) -> bool:
    """Whether every input has at most :data:`MAX_ELEMENTS` elements at ``values``."""
    return all(
        math.prod(values[d] if isinstance(d, str) else d for d in spec.dims) <= MAX_ELEMENTS
        for spec in inputs
    )


def check_given(given: Sizes, symbols: Sequence[str]) -> None:
    """``--sample`` values must name symbols of the inputs and be sizes (``usage``)."""
    for name, value in given.items():
        if name not in symbols:
            close = difflib.get_close_matches(name, symbols, n=1)
            near = f" (did you mean {close[0]}?)" if close else ""
            known = ", ".join(symbols) or "none: the inputs have no symbolic sizes"
            raise fail(
                "usage", f"--sample {name}={value}: no symbol {name}{near}; symbols: {known}"
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fail(
                "usage", f"--sample {name}={value}: a sample is a whole number of at least 1"
            )


def samples_for(
    inputs: Sequence[InputSpec], declared: Sequence[InputSpec], given: Sizes | None = None
) -> dict[str, int]:
    """A size for each symbol (see the module docstring)."""
    given = dict(given or {})
    by_name = {d.name: d for d in declared if d.name}
    samples: dict[str, int] = {}
    defaults: list[str] = []
    for i, spec in enumerate(inputs):
        example = (
            by_name.get(spec.name) if spec.name else (declared[i] if i < len(declared) else None)
        )
        for j, d in enumerate(spec.dims):
            if not isinstance(d, str) or d in samples:
                continue
            own = example.dims[j] if example and j < len(example.dims) else None
            if d in given:
                samples[d] = given[d]
            elif isinstance(own, int) and own >= 2:
                samples[d] = own
            else:
                samples[d] = BATCH_SAMPLE if j == 0 else SIZE_SAMPLE
                defaults.append(d)
    return _shrunk(inputs, samples, defaults)


def _shrunk(
    inputs: Sequence[InputSpec], samples: dict[str, int], defaults: list[str]
) -> dict[str, int]:
    """``samples`` with the default ones halved, largest first, until every input fits."""
    while not fits(inputs, samples):
        largest = max(defaults, key=lambda n: samples[n], default=None)
        if largest is None or samples[largest] <= 2:
            break  # what the user or the spec gave: the first run says what happens
        samples[largest] = max(2, samples[largest] // 2)
    return samples


def fallbacks(
    inputs: Sequence[InputSpec], samples: Sizes, given: Sizes
) -> Iterator[dict[str, int]]:
    """Other samples to try, in turn, when the model fails at ``samples``: every
    non-batch symbol the user did not choose at one of :data:`FALLBACK_SIZES`."""
    batch = {spec.dims[0] for spec in inputs if spec.dims and isinstance(spec.dims[0], str)}
    free = [name for name in samples if name not in given and name not in batch]
    seen = {tuple(samples.items())}
    for size in FALLBACK_SIZES:
        values = {**samples, **dict.fromkeys(free, size)}
        if free and tuple(values.items()) not in seen and fits(inputs, values):
            seen.add(tuple(values.items()))
            yield values


def described(values: Sizes) -> str:
    """``B = 2, H = 64``."""
    return ", ".join(f"{name} = {value}" for name, value in values.items())
