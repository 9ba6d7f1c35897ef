"""Weights files: written whole (safetensors or torch's ``.pt``), read back strictly.

**Formats.** safetensors unless the name ends in ``.pt``, ``.pth`` or ``.bin``, which
get ``torch.save`` of the ``state_dict`` (what ``model.load_state_dict(torch.load(…))``
expects). safetensors is the default because loading it runs no code; a ``.pt`` file
is read back here with ``weights_only=True`` for the same reason.

**Tied parameters** are one tensor registered under several names. safetensors refuses
to store two names for one memory, so each tensor is stored once, under the first name
``state_dict`` gives it, and the header's metadata maps every other name to it (as
``safetensors.torch.save_model`` does, so ``safetensors.torch.load_model`` reads the
file too). A fresh build is tied already; loading fills the one tensor once. ``torch.save``
keeps the sharing by itself.

**The same bytes every time.** The same model gives the same file, byte for byte: the
safetensors header lists its metadata in name order, and ``torch.save`` writes through
an open file, so the folder inside its zip is always ``archive``.

**Strict loading.** Every tensor of the model must be in the file (a tied tensor under
any of its names), every name in the file must be the model's, and the shapes must
agree; the first difference is the error, in the model's order. Values are converted to
the model's dtype, so a float32 file loads into a ``--dtype bfloat16`` build.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from shapecli.atomic import atomic_file
from shapecli.errors import Problem, ShapecliError, Source, fail, foreign_message
from shapecli.report import format_shape

TORCH_SUFFIXES = (".pt", ".pth", ".bin")


def weights_format(path: Path) -> str:
    """``torch`` for ``.pt``/``.pth``/``.bin``, ``safetensors`` for everything else."""
    return "torch" if path.suffix.lower() in TORCH_SUFFIXES else "safetensors"


def tied_names(model: nn.Module) -> dict[str, list[str]]:
    """Each tensor of the ``state_dict`` by its first name → all of its names, in order."""
    first: dict[int, str] = {}
    names: dict[str, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = first.setdefault(id(tensor), name)
        names.setdefault(key, []).append(name)
    return names


def save_weights(model: nn.Module, path: Path, force: bool = False) -> str:
    """Write the model's ``state_dict`` to ``path`` atomically; return the format.

    Refuses (``file-error``) an existing file unless ``force``; on any failure the
    target is untouched and no temporary file is left.
    """
    kind = weights_format(path)
    with atomic_file(path, force) as temp:
        if kind == "torch":
            _save_torch(model, temp)
        else:
            _save_safetensors(model, temp)
    return kind


def _save_torch(model: nn.Module, temp: Path) -> None:
    """``torch.save`` of the ``state_dict``, through an open file: given a path, torch
    names the folder inside its zip after the file, and the temporary file's name is
    random, so no two files would be the same. Given a file, the folder is ``archive``."""
    try:
        with temp.open("wb") as stream:
            torch.save(model.state_dict(), stream)
    except RuntimeError as e:  # torch's zip writer reports a failed write so
        raise OSError(foreign_message(e)) from e


def _save_safetensors(model: nn.Module, temp: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from shapecli import __version__

    state = model.state_dict(keep_vars=True)
    metadata = {"format": "pt", "producer": f"shapecli {__version__}"}
    tensors: dict[str, torch.Tensor] = {}
    for first, names in tied_names(model).items():
        tensors[first] = state[first].detach().contiguous()
        metadata.update(dict.fromkeys(names[1:], first))
    try:
        save_file(tensors, str(temp), metadata=metadata)
    except SafetensorError as e:  # how safetensors reports a failed write
        raise OSError(str(e)) from e
    _sort_metadata(temp)


def _sort_metadata(path: Path) -> None:
    """Put the header's metadata in name order, in place.

    safetensors writes its metadata from a hash map, in an order that changes from
    process to process, so the same weights would make different files. The header is
    rewritten with the same JSON, the metadata sorted: the same length (padded with
    spaces, as safetensors pads it), so the tensors after it stay where they are."""
    with path.open("r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:  # the same content, more bytes: a header we do not know
            raise RuntimeError(f"safetensors header of {size} bytes would not fit again")
        f.seek(8)
        f.write(text.ljust(size, b" "))


def load_weights(model: nn.Module, path: Path) -> None:
    """Copy the tensors of the file at ``path`` into ``model`` (see the module docstring)."""
    state = _read(path)
    problems = _differences(model, state, path)
    if problems:
        first, *rest = problems
        notes = (f"and {len(rest)} more difference{'s' if len(rest) > 1 else ''}",) if rest else ()
        raise ShapecliError(
            Problem(
                "weights-mismatch",
                f"the weights in {path} do not fit this model: {first}",
                Source(str(path), 0, 0),
                hint="build with the spec, --set values and inputs the file was saved from",
                notes=notes,
            )
        )
    current = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for first, names in tied_names(model).items():
            name = next(n for n in names if n in state)
            current[first].copy_(state[name])


def _differences(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> list[str]:
    current = model.state_dict(keep_vars=True)
    found = []
    for first, names in tied_names(model).items():
        present = [n for n in names if n in state]
        if not present:
            also = f" (nor under its tied names {', '.join(names[1:])})" if names[1:] else ""
            found.append(f"`{first}` is not in the file{also}")
            continue
        want = tuple(current[first].shape)
        for name in present:
            got = tuple(state[name].shape)
            if got != want:
                found.append(
                    f"`{name}` is {format_shape(got)} in the file but {format_shape(want)} here"
                )
        values = [state[n] for n in present]
        if any(v.shape == values[0].shape and not torch.equal(v, values[0]) for v in values[1:]):
            found.append(f"the tied tensors {', '.join(present)} differ in the file")
    found.extend(
        f"the file has `{name}`, which this model does not" for name in state if name not in current
    )
    return found


def _read(path: Path) -> Mapping[str, torch.Tensor]:
    where = Source(str(path), 0, 0)
    if not path.is_file():
        raise fail("file-error", "no such file" if not path.exists() else "is not a file", where)
    try:
        if weights_format(path) == "torch":
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
    except OSError as e:
        raise fail("file-error", f"cannot read: {e.strerror or e}", where) from None
    except Exception as e:  # a file that is not what its name says: each reader has its own error
        kind = "a safetensors file" if weights_format(path) == "safetensors" else "a state_dict"
        raise fail(
            "file-error",
            f"is not {kind} that can be loaded safely",
            where,
            detail=foreign_message(e),
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise fail(
            "file-error",
            f"holds a {type(state).__name__}, not a state_dict (names → tensors)",
            where,
            hint="save with torch.save(model.state_dict(), path), or shapecli.save(model, path)",
        )
    return state
