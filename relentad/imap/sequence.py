"""IMAP sequence sets: `1:*`, `2,4:7,9` and `$` (RFC 3501 §9 sequence-set, RFC 5182 SEARCHRES).

A `SequenceSet` keeps the ranges exactly as the client wrote them, with `None` standing for `*`, because `*`
only gets a value once the server knows the mailbox (the highest sequence number or UID). Every query method
therefore takes that value (`star`). `n:m` and `m:n` mean the same; ranges may overlap.

Invariants: numbers are 1..4294967295 (nz-number); `$` (saved=True) is never mixed with ranges and must be
replaced with the saved result (`resolve`) before any query; queries run in O(ranges · log) and never
materialise a range larger than what they return.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

__all__ = ["MAX_NUMBER", "SequenceSet", "SequenceSetError", "render"]

MAX_NUMBER = 4294967295
"""Largest nz-number (32 bits); sequence numbers and UIDs never exceed it."""

Bound = int | None
"""One end of a range; None is `*`."""


class SequenceSetError(ValueError):
    """Malformed sequence set text, or a query on an unresolved `$`."""


def _parse_number(text: str) -> int:
    if not text.isascii() or not text.isdigit() or text[0] == "0" or len(text) > 10:
        raise SequenceSetError(f"invalid number {text!r} in sequence set")
    value = int(text)
    if value > MAX_NUMBER:
        raise SequenceSetError(f"number {text} in sequence set is larger than 4294967295")
    return value


def _parse_bound(text: str) -> Bound:
    return None if text == "*" else _parse_number(text)


def _render_bound(bound: Bound) -> str:
    return "*" if bound is None else str(bound)


@dataclass(frozen=True)
class SequenceSet:
    """A parsed sequence set; `ranges` as written (None = `*`), or `saved` for `$`."""

    ranges: tuple[tuple[Bound, Bound], ...] = ()
    saved: bool = False

    @classmethod
    def parse(cls, text: str, *, allow_saved: bool = True) -> SequenceSet:
        """Parse `1:3,5,7:*` (or `$` when allow_saved); raise SequenceSetError when malformed."""
        if text == "$":
            if not allow_saved:
                raise SequenceSetError('"$" is not allowed here')
            return cls(saved=True)
        if not text:
            raise SequenceSetError("empty sequence set")
        ranges: list[tuple[Bound, Bound]] = []
        for item in text.split(","):
            low, sep, high = item.partition(":")
            first = _parse_bound(low)
            ranges.append((first, _parse_bound(high) if sep else first))
        return cls(tuple(ranges))

    @classmethod
    def of(cls, numbers: Iterable[int]) -> SequenceSet:
        """The compact set holding exactly `numbers` (e.g. to save a SEARCH result for `$`)."""
        return cls(tuple((low, high) for low, high in _runs(numbers)))

    def resolve(self, saved: SequenceSet) -> SequenceSet:
        """Replace `$` by the saved result set; other sets are returned unchanged."""
        return saved if self.saved else self

    def normalized(self, star: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive (low, high) ranges with `*` = star; cache it for repeated queries."""
        if self.saved:
            raise SequenceSetError('"$" must be resolved before use')
        spans = sorted(
            (min(a, b), max(a, b))
            for a, b in ((star if lo is None else lo, star if hi is None else hi) for lo, hi in self.ranges)
        )
        merged: list[tuple[int, int]] = []
        for low, high in spans:
            if merged and low <= merged[-1][1] + 1:
                if high > merged[-1][1]:
                    merged[-1] = (merged[-1][0], high)
            else:
                merged.append((low, high))
        return merged

    def highest(self, star: int) -> int:
        """The largest number the set names (0 for an empty set); for `seq > EXISTS` checks."""
        spans = self.normalized(star)
        return spans[-1][1] if spans else 0

    def contains(self, number: int, star: int) -> bool:
        """Whether `number` is in the set, `*` being star."""
        spans = self.normalized(star)
        index = bisect.bisect_right(spans, (number, MAX_NUMBER + 1)) - 1
        return index >= 0 and spans[index][0] <= number <= spans[index][1]

    def expand(self, star: int) -> Iterator[int]:
        """Ascending numbers of the set that are <= star (the largest existing value)."""
        for low, high in self.normalized(star):
            if low > star:
                break
            yield from range(max(low, 1), min(high, star) + 1)

    def select(self, values: Sequence[int]) -> list[int]:
        """Members of ascending `values` (e.g. the mailbox's UIDs) in the set, `*` being values[-1].

        This is the UID rule of RFC 3501 §6.4.8: `559:*` always includes the last UID.
        """
        star = values[-1] if values else 0
        out: list[int] = []
        for low, high in self.normalized(star):
            out.extend(values[bisect.bisect_left(values, low) : bisect.bisect_right(values, high)])
        return out

    def select_positions(self, values: Sequence[int]) -> list[int]:
        """Items of `values` at the 1-based positions in the set (message sequence numbers → UIDs).

        `*` is len(values); positions past the end are ignored (check `highest` first to answer BAD).
        """
        out: list[int] = []
        for low, high in self.normalized(len(values)):
            out.extend(values[low - 1 : high])
        return out

    def __str__(self) -> str:
        if self.saved:
            return "$"
        return ",".join(
            _render_bound(lo) if lo == hi else f"{_render_bound(lo)}:{_render_bound(hi)}" for lo, hi in self.ranges
        )


def _runs(numbers: Iterable[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for number in sorted(set(numbers)):
        if number < 1 or number > MAX_NUMBER:
            raise SequenceSetError(f"{number} is not a valid sequence number or UID")
        if runs and number == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    return runs


def render(numbers: Iterable[int]) -> str:
    """Render numbers compactly and ascending: [5, 1, 2, 3] → `1:3,5` (empty input gives "")."""
    return ",".join(str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in _runs(numbers))


def render_in_order(numbers: Iterable[int]) -> str:
    """Render numbers in the order given, runs of consecutive ascending ones as `lo:hi` (ESORT's ALL is in sort
    order, RFC 5267 §3.1): [7, 1, 2, 3] → `7,1:3`; ascending input gives what :func:`render` gives."""
    out: list[str] = []
    low = high = None
    for number in numbers:
        if high is not None and number == high + 1:
            high = number
            continue
        if low is not None:
            out.append(str(low) if low == high else f"{low}:{high}")
        low = high = number
    if low is not None:
        out.append(str(low) if low == high else f"{low}:{high}")
    return ",".join(out)
