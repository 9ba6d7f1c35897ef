"""How much memory real weights need, how much there is, and ``--max-memory`` sizes.

``build`` is the one step that allocates, so it checks first: the bytes come from the
meta dry run (shapes and dtypes, nothing allocated), and are compared with the limit
the user gave and with the memory the machine can give. A refusal names both.

Free memory is what the kernel calls *available* (``MemAvailable``: free pages plus
caches it can drop), not ``MemFree``, which on a machine that has been up a while is a
small fraction of what an allocation can actually get; inside a container the cgroup's
limit counts too. No torch here: the command line parses ``--max-memory`` before torch
is imported.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from shapecli.errors import fail

#: Units of ``--max-memory``: decimal (kB, MB …) and binary (KiB, MiB …), as ``df`` and
#: ``free`` spell them; case does not matter.
UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}

_SIZE = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?) ?(?P<unit>[A-Za-z]*)")


def parse_size(text: str) -> int:
    """``8GiB``, ``500MB``, ``1.5 GB`` or a number of bytes → bytes (``usage`` if bad).

    A bare ``8G`` is refused: whether it means 10⁹ or 2³⁰ is exactly the question a
    memory limit should not leave open.
    """
    match = _SIZE.fullmatch(text.strip())
    unit = match["unit"].lower() if match else ""
    if match is None or (unit and unit not in UNITS):
        letter = match["unit"].upper() if match and len(match["unit"]) == 1 else ""
        hint = (
            f": {match['number']}{letter}iB or {match['number']}{letter}B?"
            if match and letter
            else ""
        )
        raise fail(
            "usage",
            f"--max-memory {text!r} is not a size{hint} (write e.g. 8GiB, 500MB, or a "
            "number of bytes)",
        )
    size = int(float(match["number"]) * UNITS[unit or "b"])
    if size <= 0:
        raise fail("usage", f"--max-memory {text!r}: a limit must be more than 0 bytes")
    return size


def available_memory() -> int | None:
    """Bytes a new allocation can get, where the platform says; None where it does not."""
    found = [n for n in (_meminfo_available(), _cgroup_room()) if n is not None]
    if found:
        return min(found)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _meminfo_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in meminfo.read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB and means KiB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_room(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """A cgroup v2 memory limit minus what the group uses (None: no limit here)."""
    try:
        limit = (root / "memory.max").read_text(encoding="ascii").strip()
        if limit == "max":
            return None
        current = int((root / "memory.current").read_text(encoding="ascii"))
        return max(int(limit) - current, 0)
    except (OSError, ValueError):
        return None


#: The way past one machine, which every refusal names: build on meta, shard, give
#: memory, initialize (the recipe in docs/distributed.md).
SHARDED = (
    'or train it sharded over several devices: shapecli.build(spec, device="meta"), '
    "fully_shard, to_empty, shapecli.initialize (the recipe: docs/distributed.md)"
)


def check_fits(needed: int, what: str, limit: int | None = None) -> None:
    """Refuse (``too-large``) when ``needed`` bytes exceed ``limit`` or free memory.

    ``what`` says what the bytes are for (``the float32 weights``), for the message.
    """
    from shapecli.render.format import nbytes

    if limit is not None and needed > limit:
        raise fail(
            "too-large",
            f"{what} need {nbytes(needed)}, more than --max-memory {nbytes(limit)}; "
            "nothing was allocated",
            hint="raise --max-memory, build a smaller variant (--set) or a smaller --dtype, "
            + SHARDED,
        )
    free = available_memory()
    if free is not None and needed > free:
        raise fail(
            "too-large",
            f"{what} need {nbytes(needed)} but only {nbytes(free)} of memory is free; "
            "nothing was allocated",
            hint=f"inspect the spec instead (it allocates nothing), build a smaller one, {SHARDED}",
        )
