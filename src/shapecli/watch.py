"""``shapecli inspect SPEC --watch``: check again whenever the spec, or a Python file
it made shapecli import, is saved — in the same process, so torch is imported once and
an edit shows its shapes in a fraction of a second.

Saves are found by polling modification times with the standard library (no watcher
dependency, the same on every system). The Python files watched are the modules
imported while checking that are not shapecli's and not installed under the
interpreter's own folders (the standard library, site-packages): the user's layers and
factories. When one of them changes, all of them are forgotten (``sys.modules``) so the
next check imports them afresh, and a module never sees an older version of another.

A save that breaks the spec is reported like any other problem, and watching goes on.
Ctrl-C ends the watch; that is how a watch is meant to end, so the exit code is 0.
"""

from __future__ import annotations

import importlib
import os
import sys
import sysconfig
import time
from collections.abc import Callable, Iterable
from pathlib import Path

#: How often the files are looked at, in seconds.
POLL_SECONDS = 0.1
#: Clears a terminal and puts the cursor at its top left (ANSI, as ``clear`` prints).
CLEAR = "\x1b[2J\x1b[H"

Stamp = tuple[int, int] | None  # (mtime in ns, size); None: the file is not there


def watch(check: Callable[[], object], spec: Path | None, documents: bool = False) -> int:
    """Run ``check`` (which prints a report), then again on every save of ``spec`` or
    of a user module it imported, until Ctrl-C; return the exit code, 0. With
    ``documents`` (JSON reports), stdout holds nothing but the reports."""
    try:
        changed: list[Path] = []
        while True:
            if changed:
                _between_runs(changed, documents)
            stamps = _stamps([spec] if spec else [])  # before the check: a save during it counts
            check()
            modules = user_modules()
            stamps.update(_stamps(modules.values()))
            _say_watching(spec, len(modules))
            changed = _wait_for_change(stamps)
            if any(path.suffix == ".py" for path in changed):
                forget(modules)
    except KeyboardInterrupt:
        print(file=sys.stderr)  # the ^C the terminal echoed stays on a line of its own
        return 0


def _stamps(paths: Iterable[Path]) -> dict[Path, Stamp]:
    return {path: _stamp(path) for path in paths}


def _stamp(path: Path) -> Stamp:
    try:
        status = path.stat()
    except OSError:
        return None  # an editor's save may remove the file for a moment
    return status.st_mtime_ns, status.st_size


def _wait_for_change(stamps: dict[Path, Stamp]) -> list[Path]:
    """Poll until a file's stamp differs from ``stamps`` (and the file is there again,
    after a save that replaces it); return the files that changed."""
    while True:
        time.sleep(POLL_SECONDS)
        now = _stamps(stamps)
        changed = [path for path, stamp in now.items() if stamp != stamps[path]]
        if changed and all(now[path] is not None for path in changed):
            return changed


def _between_runs(changed: list[Path], documents: bool = False) -> None:
    """Clear a terminal; elsewhere (a pipe, a log) keep the earlier reports and mark
    where the next one starts — on stderr when stdout is a stream of documents."""
    sys.stderr.flush()
    if sys.stdout.isatty():
        sys.stdout.write(CLEAR)
    else:
        names = ", ".join(path.name for path in changed)
        mark = sys.stderr if documents else sys.stdout
        mark.write(f"\n──── {names} changed: checked again ────\n\n")
        mark.flush()
    sys.stdout.flush()


def _say_watching(spec: Path | None, modules: int) -> None:
    what = [spec.name] if spec else []
    if modules:
        what.append(f"{modules} Python file{'s' * (modules != 1)}")
    print(
        f"watching {' and '.join(what) or 'nothing'} for changes; Ctrl-C to stop", file=sys.stderr
    )
    sys.stderr.flush()


def user_modules() -> dict[str, Path]:
    """The imported modules that are the user's own: Python files outside shapecli and
    outside the interpreter's standard library and site-packages, by module name.

    Most of the two thousand modules torch brings are told apart by their path's
    beginning as written; only the rest are resolved (a symlinked folder), which keeps
    this well under the time of a check."""
    installed = {
        str(Path(sysconfig.get_paths()[key]).resolve())
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
    }
    roots = tuple(f"{root}{os.sep}" for root in installed)
    own = f"{Path(__file__).resolve().parent}{os.sep}"
    found = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or not file.endswith(".py") or not Path(file).is_absolute():
            continue  # (torch.ops and torch.classes name files that are not there)
        if file.startswith(roots) or file.startswith(own):
            continue
        path = Path(file).resolve()
        if str(path).startswith(roots) or str(path).startswith(own):
            continue
        found[name] = path
    return found


def forget(modules: dict[str, Path]) -> None:
    """Drop ``modules`` from ``sys.modules``, so that the next check imports them from
    their files as they are now."""
    for name in modules:
        sys.modules.pop(name, None)
    importlib.invalidate_caches()
