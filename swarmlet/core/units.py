"""Human-readable quantities for messages (the same words everywhere)."""

from __future__ import annotations


def fmt_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n}B"


def fmt_cpus(nano: int) -> str:
    v = nano / 1e9
    return f"{v:g} CPU{'s' if v != 1 else ''}"


def fmt_seconds(v: float) -> str:
    return f"{v:g}s"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"
