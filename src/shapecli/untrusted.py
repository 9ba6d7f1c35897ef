"""Text and files shapecli did not write: how it shows the one and reads the other.

Specs, file names, saved reports and the names inside a Python model come from whoever
wrote them — often a pull request, read by a CI job that holds a token. So:

* **Shown text.** A character a terminal, a CI log or a renderer could act on, and a
  reader could not see — a control character (ESC, a C1 such as U+009B, NUL, CR, LF), a
  format character (a bidi override such as U+202E, a zero-width space), a line or
  paragraph separator, anything else Python does not call printable — is shown as a
  visible escape (``\\x1b``, ``\\u202e``, ``\\n``) by :func:`visible`. Every renderer
  passes text it did not write through it (the JSON ones write such characters as
  ``\\u`` escapes instead: the same data, nothing raw). Names and keys in a spec may
  not hold such characters at all (:func:`hidden_character`): they are identifiers.
* **Read files.** :func:`read_bounded` reads regular files only — whatever the path
  points to: ``/dev/zero`` never ends, a FIFO blocks forever — and at most a cap.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

from shapecli.errors import Source, fail

#: A saved report is about 750 bytes a row: 100,000 layers (the spec limit) are 75 MB.
MAX_REPORT_BYTES = 128 << 20


def hidden_character(text: str) -> str | None:
    """The first character of ``text`` that :func:`visible` would escape, if any."""
    if text.isprintable():
        return None
    return next(c for c in text if not c.isprintable())


def visible(text: str) -> str:
    """``text`` with every character that is not printable written as its escape:
    ``"a\\nb"`` becomes ``a\\nb`` (a backslash and an n). Printable text, every
    letter and symbol of every script included, is returned as it is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else escape(c) for c in text)


def escape(character: str) -> str:
    """One character as Python writes it in a string: ``\\n``, ``\\x1b``, ``\\u202e``."""
    return character.encode("unicode_escape", "backslashreplace").decode("ascii")


def describe(character: str) -> str:
    """``U+202E`` — how a message names a character it refuses."""
    return f"U+{ord(character):04X}"


def json_text(document: object, indent: int | None = 2) -> str:
    """``document`` as JSON text in which every character that is not printable —
    within strings, where alone they can occur — is a ``\\u`` escape: the same data
    for a JSON reader, and nothing a terminal or log acts on for anyone who looks."""
    text = json.dumps(document, indent=indent, ensure_ascii=False)
    if text.replace("\n", "").isprintable():  # the usual case, at C speed
        return text
    return "".join(c if c.isprintable() or c == "\n" else _json_escape(c) for c in text)


def _json_escape(character: str) -> str:
    code = ord(character)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # a character beyond the BMP: a UTF-16 surrogate pair, as JSON has it
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def read_bounded(file: str, limit: int, what: str = "a spec") -> bytes:
    """At most ``limit + 1`` bytes of a regular file — whatever ``stat`` says and
    whatever the path points to. ``what`` names the file in messages."""
    where = Source(file, 0, 0)
    try:
        mode = Path(file).stat().st_mode
        if stat.S_ISDIR(mode):
            raise fail("file-error", f"is a directory; {what} is a file", where)
        if not stat.S_ISREG(mode):
            raise fail(
                "file-error",
                f"is not a regular file (a device, pipe or socket); {what} is a file",
                where,
            )
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the stat above
                raise fail("file-error", "is not a regular file", where)
            chunks: list[bytes] = []
            size = 0
            while size <= limit:
                chunk = os.read(fd, min(1 << 16, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    except FileNotFoundError:
        broken = Path(file).is_symlink()
        why = "is a symlink to a file that does not exist" if broken else "no such file"
        raise fail("file-error", why, where) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise fail("file-error", "is a symlink loop: it leads back to itself", where) from None
        raise fail("file-error", f"cannot read: {e.strerror or e}", where) from None


def read_text(file: str, limit: int = MAX_REPORT_BYTES, what: str = "a saved report") -> str:
    """The UTF-8 text of ``file``, read as :func:`read_bounded` reads; a file that is
    too large or not UTF-8 is a ``file-error``."""
    where = Source(file, 0, 0)
    data = read_bounded(file, limit, what)
    if len(data) > limit:
        raise fail("file-error", f"is larger than {limit:,} bytes, the most {what} may be", where)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail("file-error", f"is not UTF-8 text (byte {e.start:,})", where) from None
