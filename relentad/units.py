"""Human units for configuration and the CLI: sizes (``500KB``, ``5GB``, ``2GiB``) and durations (``90s``, ``5m``).

Sizes use powers of 1000 for KB/MB/GB/TB and powers of 1024 for KiB/MiB/GiB/TiB, as DESIGN.md §5 says, so
what an admin types matches what ``df -H`` and mail clients show. Both parsers raise ValueError with a message
fit to show the user as is.
"""

from __future__ import annotations

import math
import re

MAX_INTEGER = 2**63 - 1
"""The largest integer SQLite stores (INTEGER is 64-bit signed): no size or count may exceed it."""

_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
    "TIB": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")

_DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|)\s*$")


def parse_size(text: str | int) -> int:
    """Bytes in ``text``: an integer, or a number with a unit such as ``25MB`` or ``1.5GiB``."""
    if isinstance(text, bool):
        raise ValueError(f"not a size: {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"a size cannot be negative: {text}")
        size = text
    else:
        match = _SIZE_RE.match(text)
        unit = match.group(2).upper() if match else ""
        if not match or unit not in _SIZE_UNITS:
            raise ValueError(f"not a size: {text!r} (write e.g. 500KB, 60MB, 5GB or 2GiB)")
        value = float(match.group(1)) * _SIZE_UNITS[unit]
        if not math.isfinite(value):
            raise ValueError(f"too large a size: {text!r} (at most {format_size(MAX_INTEGER)})")
        size = int(value)  # the limit below holds for both branches
    if size > MAX_INTEGER:
        raise ValueError(f"too large a size: {text!r} (at most {format_size(MAX_INTEGER)})")
    return size


def format_size(size: int) -> str:
    """The shortest exact-ish decimal form of ``size``: ``25MB``, ``1.5GB``, ``512B``."""
    for unit in ("TB", "GB", "MB", "KB"):
        factor = _SIZE_UNITS[unit]
        if size >= factor:
            value = size / factor
            return f"{value:.1f}".rstrip("0").rstrip(".") + unit
    return f"{size}B"


def parse_duration(text: str | float) -> float:
    """Seconds in ``text``: a number of seconds, or a number with a unit ``ms``, ``s``, ``m``, ``h``, ``d``."""
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"a duration cannot be negative: {text}")
        seconds = float(text)
    else:
        match = _DURATION_RE.match(text)
        if not match:
            raise ValueError(f"not a duration: {text!r} (write e.g. 30s, 5m, 4h or 5d)")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not math.isfinite(seconds):
        raise ValueError(f"not a finite duration: {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """A compact form of ``seconds`` that :func:`parse_duration` reads back: ``5m``, ``7.5m``, ``4h``."""
    for unit in ("d", "h", "m"):
        factor = _DURATION_UNITS[unit]
        if seconds >= factor and (seconds / factor * 10).is_integer():
            return f"{seconds / factor:g}{unit}"
    return f"{seconds:g}s"
