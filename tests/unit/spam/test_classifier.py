"""Classifier arithmetic (Robinson f(w), chi-square combining), verdicts, and exact training reversal."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relentad.spam import classifier
from relentad.spam.classifier import (
    DEFAULT_PARAMS,
    FrozenCounts,
    MemoryCounts,
    Params,
    Thresholds,
    chi2q,
    clues,
    combine,
    needs_training,
    score,
    score_clues,
    token_probability,
    train_ensemble,
    train_until_clean,
    unseen_tokens_count,
    verdict,
)


class FixedCounts:
    """A TokenCounts backed by a plain dict, as the SQLite store will be (structural typing check)."""

    def __init__(self, nspam: int, nham: int, table: dict[str, tuple[int, int]]) -> None:
        self.nspam, self.nham, self.table = nspam, nham, table

    def lookup(self, tokens: object) -> dict[str, tuple[int, int]]:
        assert not isinstance(tokens, str)
        return {t: c for t, c in self.table.items() if t in tokens}  # type: ignore[operator]


def snapshot(counts: MemoryCounts, universe: set[str]) -> tuple[int, int, dict[str, tuple[int, int]]]:
    return counts.nspam, counts.nham, counts.lookup(universe)


# --- Robinson's f(w) -------------------------------------------------------------------------------


def test_unknown_token_gets_x() -> None:
    assert token_probability(0, 0, 10, 10) == DEFAULT_PARAMS.x
    assert token_probability(0, 0, 10, 10, Params(x=0.4)) == 0.4


def test_f_of_w_matches_the_formula() -> None:
    # p = (3/10) / (3/10 + 1/20) = 6/7; f = (s*x + n*p) / (s + n) with n = 4
    s, x = 0.45, 0.5
    expected = (s * x + 4 * (6 / 7)) / (s + 4)
    assert token_probability(3, 1, 10, 20, Params(s=s, x=x)) == pytest.approx(expected)


def test_f_of_w_is_symmetric_and_pulled_towards_x() -> None:
    one = token_probability(1, 0, 5, 5)
    many = token_probability(5, 0, 5, 5)
    assert 0.5 < one < many < 1.0  # more evidence, more confidence, never certainty
    assert token_probability(0, 1, 5, 5) == pytest.approx(1 - one)
    assert token_probability(2, 2, 5, 5) == pytest.approx(0.5)


def test_f_of_w_uses_ratios_not_raw_counts() -> None:
    # seen in 10 % of 100 spam and 10 % of 10 ham: as spammy as hammy
    assert token_probability(10, 1, 100, 10, Params(s=1e-9)) == pytest.approx(0.5)


def test_inconsistent_counts_are_clamped() -> None:
    assert token_probability(50, 0, 5, 5) == token_probability(5, 0, 5, 5)
    assert token_probability(-3, 2, 5, 5) == token_probability(0, 2, 5, 5)
    assert 0 < token_probability(3, 0, 0, 5) < 1  # nothing trained as spam yet


# --- chi-square and combining -----------------------------------------------------------------------


@pytest.mark.parametrize("x2", [0.0, 0.5, 3.0, 10.0, 40.0])
def test_chi2q_closed_forms(x2: float) -> None:
    m = x2 / 2
    assert chi2q(x2, 2) == pytest.approx(math.exp(-m))
    assert chi2q(x2, 4) == pytest.approx(math.exp(-m) * (1 + m))
    assert chi2q(x2, 6) == pytest.approx(math.exp(-m) * (1 + m + m * m / 2))


def test_chi2q_known_value_and_domain() -> None:
    assert chi2q(18.307, 10) == pytest.approx(0.05, abs=1e-4)  # the textbook 95 % point
    assert chi2q(1e6, 300) == 0.0  # underflows to 0, never NaN
    with pytest.raises(ValueError):
        chi2q(1.0, 3)


def full_series(x2: float, dof: int) -> float:
    """chi2q as the plain series, every term added."""
    m = x2 / 2
    term = total = math.exp(-m)
    for i in range(1, dof // 2):
        term *= m / i
        total += term
    return min(total, 1.0)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 300), st.floats(min_value=0, max_value=3000, allow_nan=False))
def test_chi2q_stopping_early_gives_the_bits_of_the_full_series(half_dof: int, x2: float) -> None:
    """chi2q stops once no further term can change the sum, and at once when exp(-m) underflows."""
    assert chi2q(x2, 2 * half_dof) == full_series(x2, 2 * half_dof)


@pytest.mark.parametrize("x2", [0.0, 1e-300, 2.0, 150.0, 599.0, 1489.0, 1490.5, 1e6])
def test_chi2q_edges_match_the_full_series(x2: float) -> None:
    for dof in (2, 10, 300, 600):
        assert chi2q(x2, dof) == full_series(x2, dof)


def test_combine_edges() -> None:
    assert combine([]) == 0.5
    assert combine([0.99] * 20) > 0.99
    assert combine([0.01] * 20) < 0.01
    assert combine([0.99] * 10 + [0.01] * 10) == pytest.approx(0.5)  # strong both ways: unsure


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=1e-6, max_value=1 - 1e-6), max_size=200))
def test_combine_is_bounded_and_antisymmetric(fs: list[float]) -> None:
    value = combine(fs)
    assert 0.0 <= value <= 1.0
    assert combine([1 - f for f in fs]) == pytest.approx(1 - value, abs=1e-9)


# --- clue selection and scoring ---------------------------------------------------------------------


def test_clues_respect_min_dev_max_tokens_and_order() -> None:
    table = {f"s{i}": (9, 0) for i in range(5)} | {f"h{i}": (0, 9) for i in range(5)} | {"meh": (5, 5)}
    counts = FixedCounts(10, 10, table)
    chosen = clues(set(table) | {"unseen"}, counts, Params(max_tokens=4))
    assert len(chosen) == 4
    spammy = clues({"s3", "s1", "s4", "s0", "s2", "meh"}, counts, Params(max_tokens=3))
    assert [t for t, _ in spammy] == ["s0", "s1", "s2"]  # ties broken by token, deterministic
    assert clues({"s1", "h1", "meh"}, FixedCounts(10, 10, {"s1": (2, 0), "h1": (0, 9), "meh": (5, 5)}))[0][0] == "h1"
    names = [t for t, _ in clues(set(table), counts)]
    assert "meh" not in names and "unseen" not in names


def test_a_token_learned_once_is_no_clue() -> None:
    """At the default s (4.0) and min_dev (0.15) a token learned once stays out (f = 0.6); learned twice (one
    message in two of the eight summed orders, or two messages) it counts (f = 2/3)."""
    table = {"once": (1, 0), "twice": (2, 0), "hamonce": (0, 1), "hamtwice": (0, 2)}
    counts = FixedCounts(100, 100, table)
    assert sorted(t for t, _ in clues(set(table), counts)) == ["hamtwice", "twice"]


def test_score_uses_the_protocol_and_explains_itself() -> None:
    counts = FixedCounts(40, 40, {"viagra": (36, 0), "meeting": (0, 36)})
    assert score({"viagra"}, counts) > 0.9
    assert score({"meeting"}, counts) < 0.1
    assert score(set(), counts) == 0.5
    assert score({"never-seen"}, counts) == 0.5
    explained = score_clues({"viagra", "meeting"}, counts)
    assert {t for t, _ in explained.clues} == {"viagra", "meeting"}
    assert explained.score == pytest.approx(0.5)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 50),
    st.integers(0, 50),
    st.dictionaries(st.text(max_size=3), st.tuples(st.integers(-5, 80), st.integers(-5, 80)), max_size=40),
)
def test_score_is_bounded_for_any_counts(nspam: int, nham: int, table: dict[str, tuple[int, int]]) -> None:
    value = score(set(table) | {"x"}, FixedCounts(nspam, nham, table))
    assert 0.0 <= value <= 1.0


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 50),
    st.integers(1, 50),
    st.dictionaries(st.text(max_size=3), st.tuples(st.integers(-5, 80), st.integers(-5, 80)), max_size=40),
    st.sampled_from([Params(), Params(s=1.0, x=0.4, min_dev=0.05, max_tokens=5)]),
)
def test_score_is_the_formula_whatever_the_pair_table_remembers(
    nspam: int, nham: int, table: dict[str, tuple[int, int]], params: Params
) -> None:
    """Scoring remembers f(w) per (spam, ham) pair and totals; a warm, a cold and an overflowing table all give
    the score computed from token_probability and combine directly (ties broken by token)."""
    tokens = set(table) | {"unseen"}
    probabilities = {t: token_probability(*table.get(t, (0, 0)), nspam, nham, params) for t in tokens}
    ranked = sorted((-abs(f - 0.5), t) for t, f in probabilities.items() if abs(f - 0.5) >= params.min_dev)
    expected = combine(probabilities[t] for _, t in ranked[: params.max_tokens])
    counts = FixedCounts(nspam, nham, table)
    assert score(tokens, counts, params) == pytest.approx(expected)
    assert score(tokens, counts, params) == pytest.approx(expected)  # warm
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(classifier, "PAIR_TABLE_ROWS", 1)
        assert score(tokens, counts, params) == pytest.approx(expected)  # every lookup overflows


def memory_counts(nspam: int, nham: int, table: dict[str, tuple[int, int]]) -> MemoryCounts:
    return MemoryCounts.of(nspam, nham, {t: c for t, c in table.items() if c != (0, 0)})


@settings(max_examples=80, deadline=None)
@given(
    st.integers(0, 60),
    st.integers(0, 60),
    st.dictionaries(st.text(max_size=3), st.tuples(st.integers(0, 80), st.integers(0, 80)), max_size=60),
    st.sets(st.text(max_size=3), max_size=20),
    st.sampled_from([Params(), Params(s=1.0, min_dev=0.05, max_tokens=5), Params(min_dev=0.3, max_tokens=2)]),
)
def test_a_frozen_model_scores_to_the_bit_as_the_counts_do(
    nspam: int, nham: int, table: dict[str, tuple[int, int]], extra: set[str], params: Params
) -> None:
    counts = memory_counts(nspam, nham, table)
    tokens = set(table) | extra
    assert FrozenCounts(counts, params).score(tokens) == score(tokens, counts, params)
    assert FrozenCounts(counts, params).score(list(tokens)) == score(tokens, counts, params)


def test_a_frozen_model_leaves_out_the_tokens_it_is_told_to() -> None:
    counts = memory_counts(40, 40, {"viagra": (36, 0), "meeting": (0, 36), "subj:sale": (30, 0)})
    frozen = FrozenCounts(counts, only=lambda token: ":" not in token)
    assert frozen.score({"viagra", "meeting", "subj:sale"}) == score({"viagra", "meeting"}, counts)
    assert frozen.score({"subj:sale"}) == 0.5


def test_freezing_refuses_parameters_under_which_unseen_tokens_count() -> None:
    """With x far enough from 0.5 every unseen token is a clue, which a table of known tokens cannot hold."""
    assert not unseen_tokens_count(DEFAULT_PARAMS)
    leaning = Params(x=0.3)
    assert unseen_tokens_count(leaning)
    with pytest.raises(ValueError, match="unseen tokens"):
        FrozenCounts(memory_counts(1, 1, {"a": (1, 0)}), leaning)


# --- verdicts and configuration ---------------------------------------------------------------------


def test_verdict_boundaries() -> None:
    band = Thresholds(ham_below=0.2, spam_above=0.9)
    assert verdict(0.0, band) == "ham"
    assert verdict(0.2, band) == "unsure"
    assert verdict(0.9, band) == "unsure"
    assert verdict(0.900001, band) == "spam"
    single = Thresholds(0.5, 0.5)
    assert verdict(0.49, single) == "ham" and verdict(0.51, single) == "spam"


def test_invalid_configuration_is_rejected() -> None:
    with pytest.raises(ValueError):
        Thresholds(ham_below=0.9, spam_above=0.2)
    with pytest.raises(ValueError):
        Thresholds(ham_below=-0.1, spam_above=0.5)
    with pytest.raises(ValueError):
        Params(s=0)
    with pytest.raises(ValueError):
        Params(min_dev=0.5)


# --- training ---------------------------------------------------------------------------------------


def test_learn_counts_messages_not_occurrences() -> None:
    counts = MemoryCounts()
    counts.learn(["cash", "cash", "now"], spam=True)
    counts.learn(["cash"], spam=False)
    assert (counts.nspam, counts.nham) == (1, 1)
    assert counts.lookup({"cash", "now", "other"}) == {"cash": (1, 1), "now": (1, 0)}
    assert len(counts) == 2


def test_unlearn_flips_a_message_exactly() -> None:
    counts = MemoryCounts()
    counts.learn({"a", "b"}, spam=True)
    counts.learn({"b", "c"}, spam=False)
    before = snapshot(counts, {"a", "b", "c", "d"})
    counts.learn({"c", "d"}, spam=True)  # delivered, then moved out of Junk:
    counts.unlearn({"c", "d"}, spam=True)
    assert snapshot(counts, {"a", "b", "c", "d"}) == before
    assert "d" not in counts.lookup({"d"})  # no zero rows left behind


def test_unlearn_never_goes_negative() -> None:
    counts = MemoryCounts()
    counts.unlearn({"ghost"}, spam=False)
    assert (counts.nspam, counts.nham, len(counts)) == (0, 0, 0)


_MESSAGES = st.lists(st.tuples(st.frozensets(st.sampled_from("abcdefghij"), max_size=6), st.booleans()), max_size=15)


@settings(max_examples=60, deadline=None)
@given(_MESSAGES, _MESSAGES)
def test_learn_then_unlearn_is_identity(
    base: list[tuple[frozenset[str], bool]], extra: list[tuple[frozenset[str], bool]]
) -> None:
    counts = MemoryCounts()
    for tokens, spam in base:
        counts.learn(tokens, spam)
    before = snapshot(counts, set("abcdefghij"))
    for tokens, spam in extra:
        counts.learn(tokens, spam)
    for tokens, spam in reversed(extra):
        counts.unlearn(tokens, spam)
    assert snapshot(counts, set("abcdefghij")) == before


def test_needs_training_margin() -> None:
    margin = Thresholds(0.1, 0.9)
    assert needs_training(0.5, spam=True, margin=margin)
    assert not needs_training(0.95, spam=True, margin=margin)
    assert needs_training(0.2, spam=False, margin=margin)
    assert not needs_training(0.05, spam=False, margin=margin)


def _toy_corpus() -> list[tuple[frozenset[str], bool]]:
    spam = [frozenset({"cheap", "pills", "click", f"s{i}"}) for i in range(20)]
    ham = [frozenset({"meeting", "agenda", "notes", f"h{i}"}) for i in range(20)]
    return [(t, True) for t in spam] + [(t, False) for t in ham]


def test_train_until_clean_learns_and_then_is_idempotent() -> None:
    corpus = _toy_corpus()
    counts = MemoryCounts()
    learned = train_until_clean(corpus, counts, seed=1)
    assert 0 < learned < 2 * len(corpus)
    for tokens, spam in corpus:
        assert verdict(score(tokens, counts), Thresholds(0.1, 0.9)) == ("spam" if spam else "ham")
    before = snapshot(counts, set().union(*(t for t, _ in corpus)))
    assert train_until_clean(corpus, counts, seed=2) == 0
    assert snapshot(counts, set().union(*(t for t, _ in corpus))) == before


def test_train_until_clean_is_reproducible() -> None:
    corpus = _toy_corpus()
    one, two = MemoryCounts(), MemoryCounts()
    train_until_clean(corpus, one, seed=7)
    train_until_clean(corpus, two, seed=7)
    universe = set().union(*(t for t, _ in corpus))
    assert snapshot(one, universe) == snapshot(two, universe)


def test_train_ensemble_sums_independent_orders() -> None:
    corpus = _toy_corpus()
    counts = MemoryCounts()
    learned = train_ensemble(corpus, counts, rounds=3, seed=5)
    assert learned == counts.nspam + counts.nham
    single = MemoryCounts()
    assert learned >= train_until_clean(corpus, single, seed=5)  # at least the first order's share
    for tokens, spam in corpus:
        assert verdict(score(tokens, counts), Thresholds(0.1, 0.9)) == ("spam" if spam else "ham")


def test_train_ensemble_is_reproducible_and_adds_to_existing_counts() -> None:
    corpus = _toy_corpus()
    universe = set().union(*(t for t, _ in corpus)) | {"old"}
    one, two = MemoryCounts(), MemoryCounts()
    for counts in (one, two):
        counts.learn({"old"}, spam=False)
        train_ensemble(corpus, counts, seed=3)
    assert snapshot(one, universe) == snapshot(two, universe)
    assert one.lookup({"old"}) == {"old": (0, 1)}
