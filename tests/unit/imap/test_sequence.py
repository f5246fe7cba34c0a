"""Sequence sets: parsing, `*` and `$`, expansion, UID selection, compact rendering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relentad.imap.sequence import MAX_NUMBER, SequenceSet, SequenceSetError, render


def test_parse_keeps_ranges_as_written() -> None:
    seqs = SequenceSet.parse("2,4:7,9,12:*")
    assert seqs.ranges == ((2, 2), (4, 7), (9, 9), (12, None))
    assert not seqs.saved
    assert str(seqs) == "2,4:7,9,12:*"


def test_parse_star_and_reversed_range() -> None:
    assert SequenceSet.parse("*").ranges == ((None, None),)
    assert SequenceSet.parse("*:4").ranges == ((None, 4),)
    assert str(SequenceSet.parse("7:3")) == "7:3"


def test_parse_saved() -> None:
    seqs = SequenceSet.parse("$")
    assert seqs.saved
    assert str(seqs) == "$"
    with pytest.raises(SequenceSetError):
        SequenceSet.parse("$", allow_saved=False)


@pytest.mark.parametrize(
    "text",
    ["", ",", "1,", ",1", "0", "1:0", "01", "1::2", "1:2:3", "a", "4294967296", "99999999999", "$,1", "1,$", "-1"],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(SequenceSetError):
        SequenceSet.parse(text)


def test_parse_max_number() -> None:
    assert SequenceSet.parse("4294967295").ranges == ((MAX_NUMBER, MAX_NUMBER),)


def test_normalized_merges_and_sorts() -> None:
    seqs = SequenceSet.parse("9,7:3,4,10:12,*")
    assert seqs.normalized(20) == [(3, 7), (9, 12), (20, 20)]


def test_star_means_the_given_value() -> None:
    seqs = SequenceSet.parse("3:*")
    assert list(seqs.expand(5)) == [3, 4, 5]
    # with a star below the low end the range is reversed, as RFC 3501 says
    assert list(seqs.expand(2)) == [2]


def test_expand_clamps_to_star() -> None:
    assert list(SequenceSet.parse("1:100").expand(3)) == [1, 2, 3]
    assert list(SequenceSet.parse("1:4294967295").expand(2)) == [1, 2]
    assert list(SequenceSet.parse("5").expand(3)) == []


def test_highest() -> None:
    assert SequenceSet.parse("1,5:3").highest(9) == 5
    assert SequenceSet.parse("1:*").highest(9) == 9
    assert SequenceSet().highest(9) == 0


def test_contains() -> None:
    seqs = SequenceSet.parse("2,4:7,12:*")
    star = 15
    members = [n for n in range(1, 20) if seqs.contains(n, star)]
    assert members == [2, 4, 5, 6, 7, 12, 13, 14, 15]


def test_select_uids_with_star_rule() -> None:
    uids = [3, 5, 8, 13, 21]
    assert SequenceSet.parse("4:13").select(uids) == [5, 8, 13]
    # RFC 3501 §6.4.8: 559:* always includes the last UID
    assert SequenceSet.parse("559:*").select(uids) == [21]
    assert SequenceSet.parse("*").select(uids) == [21]
    assert SequenceSet.parse("1:2,22:30").select(uids) == []
    assert SequenceSet.parse("1:*").select([]) == []


def test_select_positions_maps_sequence_numbers() -> None:
    uids = [3, 5, 8, 13, 21]
    assert SequenceSet.parse("2:3,5").select_positions(uids) == [5, 8, 21]
    assert SequenceSet.parse("*").select_positions(uids) == [21]
    assert SequenceSet.parse("4:9").select_positions(uids) == [13, 21]


def test_saved_set_must_be_resolved() -> None:
    saved = SequenceSet.parse("$")
    with pytest.raises(SequenceSetError):
        saved.normalized(5)
    result = SequenceSet.of([4, 2, 3])
    assert saved.resolve(result) is result
    plain = SequenceSet.parse("1")
    assert plain.resolve(result) is plain


def test_render_compacts() -> None:
    assert render([5, 1, 2, 3]) == "1:3,5"
    assert render([1, 1, 2]) == "1:2"
    assert render([]) == ""
    assert render([7]) == "7"
    assert str(SequenceSet.of([10, 11, 12, 20])) == "10:12,20"


def test_render_rejects_invalid_numbers() -> None:
    with pytest.raises(SequenceSetError):
        render([0])
    with pytest.raises(SequenceSetError):
        render([MAX_NUMBER + 1])


@given(st.sets(st.integers(min_value=1, max_value=500)))
def test_of_render_parse_round_trip(numbers: set[int]) -> None:
    seqs = SequenceSet.of(numbers)
    assert list(seqs.expand(500)) == sorted(numbers)
    if numbers:
        assert SequenceSet.parse(str(seqs)) == seqs


@given(
    st.lists(st.tuples(st.integers(1, 60) | st.none(), st.integers(1, 60) | st.none()), min_size=1, max_size=6),
    st.integers(1, 60),
)
def test_queries_agree_with_brute_force(ranges: list[tuple[int | None, int | None]], star: int) -> None:
    seqs = SequenceSet(tuple(ranges))
    expected: set[int] = set()
    for lo, hi in ranges:
        a = star if lo is None else lo
        b = star if hi is None else hi
        expected.update(range(min(a, b), max(a, b) + 1))
    assert list(seqs.expand(star)) == sorted(n for n in expected if n <= star)
    assert all(seqs.contains(n, star) == (n in expected) for n in range(1, 70))
    assert seqs.highest(star) == max(expected)
    values = list(range(2, 70, 3))
    assert seqs.select(values) == [v for v in values if seqs.contains(v, values[-1])]
