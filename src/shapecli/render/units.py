"""Big numbers as people read them: counts with SI units, bytes with binary ones."""

from __future__ import annotations


def si(n: int) -> str:
    """``291.6 G``: a big count in SI units, for FLOPs."""
    value = float(n)
    for unit in ("", "K", "M", "G", "T"):
        if abs(value) < 1000:
            return f"{value:,.1f} {unit}".rstrip() if unit else f"{n:,}"
        value /= 1000
    return f"{value:,.1f} P"


def count_and_si(n: int) -> str:
    """``30,720 (30.7 K)``; a count below a thousand once (``72``, not ``72 (72)``)."""
    exact, short = f"{n:,}", si(n)
    return exact if short == exact else f"{exact} ({short})"


def nbytes(n: int) -> str:
    """Binary units with one decimal: ``31.0 KiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{n:,} B" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} TiB"
