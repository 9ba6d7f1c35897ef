"""Write a file whole or not at all, and never over one the user did not give up.

A weights file is written to a hidden temporary file in the target's own folder (the
same filesystem, so the last step is a rename, which is atomic), flushed to disk, and
only then moved into place. Whatever happens before that — a spec error, a refusal, a
failed check, a full disk, Ctrl-C, a ``kill`` (SIGTERM) or a closed terminal (SIGHUP) —
the temporary file is removed and the target is as it was. A reader never sees half a
file, and the CLI's fast exit (``os._exit``, see :mod:`shapecli.speedups`) can only come
after the rename.

Without ``force`` the move is a hard link, which fails if the target appeared in the
meantime, rather than a rename, which would replace it. No torch here: the command line
checks the target before torch is imported.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from shapecli.errors import Source, fail


def check_target(target: Path, force: bool, example: str = "model.safetensors") -> None:
    """Refuse at once what the final move would refuse after all the work: an existing
    file (or symlink) without ``force``, a folder, a folder that does not exist, and
    what is not a regular file (a device, a FIFO) even with ``force``."""
    where = Source(str(target), 0, 0)
    if target.is_dir():
        raise fail("file-error", f"is a folder; name the file to write, e.g. -o {example}", where)
    if not target.parent.is_dir():
        raise fail("file-error", f"cannot write here: there is no folder {target.parent}", where)
    if target.exists() and not target.is_file():
        # Renaming a file over /dev/null or a FIFO is never what was meant.
        raise fail("file-error", "is not a regular file; shapecli writes to a regular file", where)
    if (target.exists() or target.is_symlink()) and not force:
        raise fail(
            "file-error",
            "already exists; nothing was written",
            where,
            hint="pass --force to replace it",
        )


@contextlib.contextmanager
def atomic_file(target: Path, force: bool = False) -> Iterator[Path]:
    """The path of a fresh temporary file beside ``target``, for a writer that takes a
    path. When the block ends normally the file is synced and moved to ``target``;
    when it raises, the file is removed and the exception goes on."""
    check_target(target, force)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    with _signals_unwind():
        try:
            # Created here with the permissions a new file gets (0666 less the umask), and
            # those are put back after the writer, which may make its own file (safetensors
            # makes it private to the owner).
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            mode = temp.stat().st_mode & 0o777
        except OSError as e:
            raise _cannot_write(target, e) from None
        try:
            yield temp
            temp.chmod(mode)
            _sync(temp)
            _move(temp, target, force)
        except BaseException as e:
            with contextlib.suppress(OSError):
                temp.unlink()
            if isinstance(e, OSError):
                raise _cannot_write(target, e) from None
            raise
    _sync_folder(target.parent)


class Terminated(BaseException):
    """The process was asked to end (SIGTERM, SIGHUP) inside :func:`_signals_unwind`:
    raised like ``KeyboardInterrupt`` for SIGINT, so cleanup code runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: What ends a process by default besides Ctrl-C (which Python turns into
#: KeyboardInterrupt already): ``kill`` and a CI runner's cancel, a closed terminal.
ENDING_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextlib.contextmanager
def _signals_unwind() -> Iterator[None]:
    """Within the block, a signal that would end the process at once raises
    :class:`Terminated` instead, so the block's ``except``/``finally`` clean up; then
    the process ends by that signal after all, as it would have without the block.

    Only signals left to their default action are taken over (one a program ignores,
    as under ``nohup``, or handles itself stays so), and only in the main thread,
    where Python runs signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def unwind(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    taken = [s for s in ENDING_SIGNALS if signal.getsignal(s) == signal.SIG_DFL]
    for signum in taken:
        signal.signal(signum, unwind)
    try:
        yield
    except Terminated as e:
        for signum in taken:
            signal.signal(signum, signal.SIG_DFL)
        taken = []
        signal.raise_signal(e.signum)  # to this thread, at once: the process ends here
        raise  # (where the default action does not end a process)
    finally:
        for signum in taken:
            signal.signal(signum, signal.SIG_DFL)


def _move(temp: Path, target: Path, force: bool) -> None:
    if force:
        temp.replace(target)
        return
    try:
        os.link(temp, target)  # fails, atomically, if the target exists
    except FileExistsError:
        raise _appeared(target) from None
    except OSError:  # a filesystem without hard links: check, then rename
        if target.exists():
            raise _appeared(target) from None
        temp.replace(target)
        return
    with contextlib.suppress(OSError):  # the target is complete; a stray link is harmless
        temp.unlink()


def _appeared(target: Path) -> Exception:
    return fail(
        "file-error",
        "appeared while the model was being built; nothing was written",
        Source(str(target), 0, 0),
        hint="pass --force to replace it",
    )


def _sync(path: Path, flags: int = os.O_RDWR) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; elsewhere a folder cannot be opened)."""
    with contextlib.suppress(OSError):
        _sync(folder, os.O_RDONLY)


def _cannot_write(target: Path, error: OSError) -> Exception:
    return fail(
        "file-error",
        f"cannot write: {error.strerror or error}; nothing was written",
        Source(str(target), 0, 0),
    )
