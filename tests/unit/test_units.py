from __future__ import annotations

import pytest

from relentad.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [("500KB", 500_000), ("60MB", 60_000_000), ("5GB", 5_000_000_000), ("2GiB", 2 * 1024**3),
     ("1.5 MB", 1_500_000), ("123", 123), ("0", 0), ("10kib", 10_240), (42, 42)],
)  # fmt: skip
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "lots", "5XB", "-1MB", "MB", "1e9"])
def test_parse_size_refuses_nonsense(bad: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(bad)


def test_format_size_round_trips() -> None:
    for size in (512, 500_000, 25_000_000, 1_500_000_000, 5_000_000_000):
        assert parse_size(format_size(size)) == size


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("7.5m", 450), ("4h", 14400), ("5d", 432000),
                                               ("250ms", 0.25), (90, 90)])  # fmt: skip
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_format_duration_round_trips() -> None:
    for seconds in (1.0, 30.0, 300.0, 450.0, 14400.0, 432000.0):
        assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("huge", ["99999999999999999999999TB", "9" * 400, 2**63])
def test_parse_size_refuses_what_sqlite_cannot_hold(huge: str | int) -> None:
    with pytest.raises(ValueError, match="too large a size"):
        parse_size(huge)


@pytest.mark.parametrize("endless", [float("nan"), float("inf"), "9" * 400 + "d"])
def test_parse_duration_refuses_non_finite(endless: str | float) -> None:
    with pytest.raises(ValueError, match="not a finite duration"):
        parse_duration(endless)
