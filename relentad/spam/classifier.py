"""Statistical spam classifier arithmetic: Robinson token probabilities and chi-square combining.

This module is pure: it turns token counts into a score in [0, 1] and a score into a verdict. Where the
counts live is someone else's concern, behind the ``TokenCounts`` protocol (SQLite per account with a
global fallback in production, ``MemoryCounts`` in tests and the evaluation script).

The method is Gary Robinson's, as used by SpamBayes and bogofilter:
- p(w) = (spam(w)/nspam) / (spam(w)/nspam + ham(w)/nham), corrected for little evidence into
  f(w) = (s*x + n*p(w)) / (s + n), n = spam(w) + ham(w). Unknown tokens get x.
- Only tokens with |f(w) - 0.5| >= min_dev take part, at most ``max_tokens`` of the most extreme.
- Fisher's method twice: H = C^-1(-2 ln prod f, 2k) (how spammy), S = C^-1(-2 ln prod (1-f), 2k)
  (how hammy); score = (1 + H - S) / 2. Both near 0 or both near 1 give about 0.5: unsure.

Beyond plain Robinson, measured by cross-validation on the SpamAssassin corpus (scripts/bench/spam_eval.py):
training only on errors and near-misses (``needs_training``, ``train_until_clean``) instead of on every
message, and a higher ``min_dev``, both cut the spam missed at a 0.1 % false-positive rate. Training on
everything lets the thousands of easy messages make ordinary HTML-newsletter words look certain, and
legitimate newsletters then score 1.0.

Invariants:
- ``score`` is in [0, 1] for any counts (including inconsistent ones, e.g. a token count above nspam).
- A message with no usable tokens scores exactly 0.5.
- ``MemoryCounts.unlearn`` exactly reverses ``learn`` of the same tokens and class, so moving a message
  out of Junk can flip its training; counts never go below zero. Bulk training may learn one message
  more than once; a store that wants to flip it later must record how many times.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Verdict = Literal["ham", "unsure", "spam"]


@dataclass(frozen=True, slots=True)
class Params:
    """Tunable constants of the method; the defaults were chosen by cross-validation (spam_eval.py).

    s: strength of the prior x against the observed ratio (in learned messages' worth of evidence). Long HTML
       newsletters carry dozens of hapaxes (sizes, colours, product names) that outvoted their few hammy
       clues at s = 0.45; with four orders summed, s = 2.0 kept a token learned once (n = 1, f = 2/3 or 1/3)
       inside ``min_dev`` and cut the spam missed at FP <= 0.1 % by about a third. Eight orders summed
       learn each message about twice as often, so s = 4.0 keeps the prior's weight per trained message
       (8 orders at s = 2.0 spread spam into the unsure band; s = 3 did as well as 4, s = 6 worse).
    x: probability assumed for a token never seen.
    min_dev: tokens with |f(w) - 0.5| below this are ignored as noise. At s = 4.0, 0.15 keeps out a token
       learned once (f = 0.6 or 0.4) and lets in one learned twice (f = 2/3 or 1/3); against 0.2 (three
       times) it let fewer ham past the same cut-off, on two training seeds (README, "The spam filter").
    max_tokens: at most this many of the most extreme tokens are combined.
    """

    s: float = 4.0
    x: float = 0.5
    min_dev: float = 0.15
    max_tokens: int = 300

    def __post_init__(self) -> None:
        if not (self.s > 0 and 0 < self.x < 1 and 0 <= self.min_dev < 0.5 and self.max_tokens > 0):
            raise ValueError(f"invalid classifier parameters: {self}")


DEFAULT_PARAMS = Params()


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Verdict cut-offs: below ``ham_below`` is ham, above ``spam_above`` is spam, between is unsure.

    The defaults are the recommended configuration. For the three-view model (eight orders summed, s = 4.0,
    min_dev 0.15) the lowest ``spam_above`` keeping false positives at or under 0.1 % in both evaluations of
    the SpamAssassin corpus (5-fold cross-validation over three fold seeds, and ten 50/50 splits, pooled) is
    0.78 and 0.79 for two training seeds; 0.79 keeps one ham to spare in the splits for both and misses 3.3 %
    (CV) and 4.3-4.4 % (splits) of the spam. In cross-validation each 0.01 higher, up to 0.85, misses about
    0.2 % more spam for no fewer false positives. The daemon applies ``spam_above`` as it is to a model of 2,000
    messages, and raises it for smaller ones and lowers it for larger ones (``verdicts.scaled_thresholds``, ``[spam]
    confident_after`` and ``spam_above_min``): the learning curve measured since.
    """

    ham_below: float = 0.2
    spam_above: float = 0.79

    def __post_init__(self) -> None:
        if not 0 <= self.ham_below <= self.spam_above <= 1:
            raise ValueError(f"thresholds must satisfy 0 <= ham_below <= spam_above <= 1: {self}")


# Margin for train-on-error: a ham scoring above 0.1 or a spam below 0.9 is trained.
TRAIN_MARGIN = Thresholds(ham_below=0.1, spam_above=0.9)
# Independent train-on-error orders summed by ``train_ensemble``; passes over the messages at most.
ENSEMBLE_ROUNDS = 8
TRAIN_PASSES = 6


class TokenCounts(Protocol):
    """Read access to training counts: how many messages of each class were trained, and per token."""

    @property
    def nspam(self) -> int:
        """Number of messages trained as spam."""
        ...

    @property
    def nham(self) -> int:
        """Number of messages trained as ham."""
        ...

    def lookup(self, tokens: Collection[str]) -> dict[str, tuple[int, int]]:
        """Return (spam count, ham count) for each of ``tokens`` ever seen; unseen tokens may be left out."""
        ...


class TrainableCounts(TokenCounts, Protocol):
    """Counts that can also be trained; ``unlearn`` must exactly reverse ``learn``."""

    def learn(self, tokens: Iterable[str], spam: bool) -> None:
        """Count one message of class ``spam`` containing ``tokens``."""
        ...

    def unlearn(self, tokens: Iterable[str], spam: bool) -> None:
        """Remove one message of class ``spam`` containing ``tokens``."""
        ...


@dataclass(frozen=True, slots=True)
class Scored:
    """A score with the clues that made it, most extreme first (for logs and ``spam score``)."""

    score: float
    clues: tuple[tuple[str, float], ...]


def token_probability(spam: int, ham: int, nspam: int, nham: int, params: Params = DEFAULT_PARAMS) -> float:
    """Robinson's f(w): the spam ratio of a token, pulled towards ``params.x`` when evidence is thin."""
    spam = min(max(spam, 0), nspam)
    ham = min(max(ham, 0), nham)
    n = spam + ham
    if n == 0:
        return params.x
    spam_ratio = spam / nspam if spam else 0.0
    ham_ratio = ham / nham if ham else 0.0
    return (params.s * params.x + n * spam_ratio / (spam_ratio + ham_ratio)) / (params.s + n)


_BELOW_HALF_ULP = 2.0**-54
"""A term under ``total`` times this is under half a unit in the last place of ``total``: adding it rounds back to
``total``, so ``chi2q`` stops there with the bits of the full series."""


def chi2q(x2: float, dof: int) -> float:
    """P(chi-square with ``dof`` degrees of freedom >= ``x2``), for even ``dof`` (closed-form series)."""
    if dof <= 0 or dof % 2:
        raise ValueError("chi2q needs a positive even number of degrees of freedom")
    m = x2 / 2.0
    term = math.exp(-m)
    if term == 0.0:  # every term is a multiple of this one: the series is 0 (strong evidence; often at 300 clues)
        return 0.0
    total = term
    for i in range(1, dof // 2):
        term *= m / i
        if term < total * _BELOW_HALF_ULP and i > m:
            break  # past the peak the terms only shrink, and none of them can change ``total`` any more
        total += term
    return min(total, 1.0)


def combine(probabilities: Iterable[float]) -> float:
    """Fisher/Robinson chi-square combining of token probabilities into one score in [0, 1]."""
    logs = [(math.log(f), math.log1p(-f)) for f in probabilities]
    return _combine_logs(sum(s for s, _ in logs), sum(h for _, h in logs), len(logs))


def _combine_logs(log_spam: float, log_ham: float, k: int) -> float:
    """``combine`` from the sums of ln f and ln (1 - f) over ``k`` clues."""
    if k == 0:
        return 0.5
    hamminess = chi2q(-2.0 * log_spam, 2 * k)
    spamminess = chi2q(-2.0 * log_ham, 2 * k)
    return min(max((1.0 + hamminess - spamminess) / 2.0, 0.0), 1.0)


_Clue = tuple[float, float, float, float]
"""What scoring needs of one (spam, ham) count pair: (-|f - 0.5|, f, ln f, ln (1 - f))."""
PAIR_TABLE_ROWS = 16_384
"""A table holding more pairs starts again empty. A model learned from the whole SpamAssassin training half has
about 3,800 distinct pairs; eight tables of this many pairs take about 40 MB at worst."""


@functools.lru_cache(maxsize=8)
def _pair_table(nspam: int, nham: int, params: Params) -> dict[tuple[int, int], _Clue | None]:
    """The clue of each (spam, ham) pair met so far under these totals (``None``: inside ``min_dev``).

    Tokens with the same counts share f(w), and the same pairs recur from message to message while the
    totals stay put (always when scoring, between learns when training), so f(w) and its two logarithms
    are computed once per pair rather than once per token of every message: the hot loop of scoring (0.85-1.2
    to 0.55-0.9 ms of CPU per message for the three models, scores unchanged to the bit). Eight tables: the
    three models of the account being scored and of the one before, and a store writer training meanwhile."""
    return {}


def _pair_clue(pair: tuple[int, int], nspam: int, nham: int, params: Params) -> _Clue | None:
    f = token_probability(pair[0], pair[1], nspam, nham, params)
    dev = f - 0.5 if f > 0.5 else 0.5 - f
    return (-dev, f, math.log(f), math.log1p(-f)) if dev >= params.min_dev else None


def _chosen(tokens: Collection[str], counts: TokenCounts, params: Params) -> list[tuple[float, str, _Clue]]:
    """The tokens that take part, as (-|f - 0.5|, token, clue), most extreme first, at most ``max_tokens``.

    Ties in extremeness are broken by token so the result does not depend on set iteration order."""
    nspam, nham = counts.nspam, counts.nham
    found = counts.lookup(tokens)
    table = _pair_table(nspam, nham, params)
    missing = [pair for pair in set(found.values()) if pair not in table]
    if missing:
        if len(table) + len(missing) > PAIR_TABLE_ROWS:
            _pair_table.cache_clear()  # never clear a table: another thread (the store writer's) may be reading it
            table = _pair_table(nspam, nham, params)
        for pair in missing:
            table[pair] = _pair_clue(pair, nspam, nham, params)
    chosen = [(clue[0], token, clue) for token, pair in found.items() if (clue := table[pair]) is not None]
    unseen = _pair_clue((0, 0), nspam, nham, params)
    if unseen is not None:
        chosen.extend((unseen[0], t, unseen) for t in tokens if t not in found)
    chosen.sort()
    return chosen[: params.max_tokens]


def clues(tokens: Collection[str], counts: TokenCounts, params: Params = DEFAULT_PARAMS) -> list[tuple[str, float]]:
    """The tokens that take part in the score with their f(w), most extreme first."""
    return [(token, clue[1]) for _, token, clue in _chosen(tokens, counts, params)]


def score_clues(tokens: Collection[str], counts: TokenCounts, params: Params = DEFAULT_PARAMS) -> Scored:
    """Score ``tokens`` and keep the clues, for explaining a verdict."""
    chosen = _chosen(tokens, counts, params)
    return Scored(_score_chosen(chosen), tuple((token, clue[1]) for _, token, clue in chosen))


def score(tokens: Collection[str], counts: TokenCounts, params: Params = DEFAULT_PARAMS) -> float:
    """Spam score of a message's tokens in [0, 1]: near 0 ham, near 1 spam, near 0.5 unsure."""
    return _score_chosen(_chosen(tokens, counts, params))


def _score_chosen(chosen: Sequence[tuple[float, str, _Clue]]) -> float:
    return _combine_logs(sum(c[2][2] for c in chosen), sum(c[2][3] for c in chosen), len(chosen))


def unseen_tokens_count(params: Params) -> bool:
    """Whether a token never seen takes part in a score (only when ``x`` lies ``min_dev`` or more from 0.5)."""
    return _pair_clue((0, 0), 1, 1, params) is not None


class FrozenCounts:
    """One model's clues worked out once, for scoring many messages against counts that no longer change.

    ``score`` equals ``score(tokens, counts, params)`` to the bit while ``counts`` is unchanged, but costs one set
    intersection per message instead of a lookup and a pair-table pass per token (about half the CPU for the three
    view models); freezing them, for a model of the whole SpamAssassin training half, takes about 0.1 s. For bulk
    scoring (``spam score`` of a folder, spam_eval.py); tokens outside ``only`` are left out as if never seen."""

    __slots__ = ("_clues", "_max_tokens")

    def __init__(
        self, counts: MemoryCounts, params: Params = DEFAULT_PARAMS, only: Callable[[str], bool] | None = None
    ) -> None:
        if unseen_tokens_count(params):
            raise ValueError(f"unseen tokens take part in the score with {params}; score without freezing")
        nspam, nham = counts.nspam, counts.nham
        rows = counts.rows()
        pair_clues = {pair: _pair_clue(pair, nspam, nham, params) for pair in set(rows.values())}
        self._clues = {
            token: clue
            for token, pair in rows.items()
            if (clue := pair_clues[pair]) is not None and (only is None or only(token))
        }
        self._max_tokens = params.max_tokens

    def score(self, tokens: Collection[str]) -> float:
        clues = self._clues
        chosen = [(clues[token][0], token, clues[token]) for token in clues.keys() & tokens]
        chosen.sort()
        return _score_chosen(chosen[: self._max_tokens])


def verdict(value: float, thresholds: Thresholds) -> Verdict:
    """Map a score to a verdict; a score equal to a cut-off falls on the unsure side."""
    if value < thresholds.ham_below:
        return "ham"
    if value > thresholds.spam_above:
        return "spam"
    return "unsure"


def needs_training(value: float, spam: bool, margin: Thresholds = TRAIN_MARGIN) -> bool:
    """Train-on-error with a margin: train a message unless it already scores clearly in its class.

    Training only on mistakes and near-misses keeps the counts from being dominated by easy mail, which
    cross-validation showed is what lets legitimate HTML newsletters reach spam scores (see spam_eval.py).
    """
    return value < margin.spam_above if spam else value > margin.ham_below


def train_until_clean(
    messages: Sequence[tuple[Collection[str], bool]],
    counts: TrainableCounts,
    params: Params = DEFAULT_PARAMS,
    margin: Thresholds = TRAIN_MARGIN,
    passes: int = TRAIN_PASSES,
    seed: int = 0,
) -> int:
    """Incremental bulk training: train-on-error passes over ``messages`` on top of ``counts``, until none
    needs training.

    ``messages`` are (tokens, is_spam) pairs. Each pass visits them in an order shuffled with ``seed``, so
    the result is reproducible. Returns how many ``learn`` calls were made; a second call on the same
    messages learns little or nothing, since they are then already classified with the margin.
    """
    return sum(_train_passes(messages, counts, params, margin, passes, seed))


def _train_passes(
    messages: Sequence[tuple[Collection[str], bool]],
    counts: TrainableCounts,
    params: Params,
    margin: Thresholds,
    passes: int,
    seed: int,
) -> list[int]:
    """The train-on-error passes; returns how many times each message was learned."""
    learned = [0] * len(messages)
    order = list(range(len(messages)))
    rng = random.Random(seed)
    for _ in range(passes):
        rng.shuffle(order)
        errors = 0
        for i in order:
            tokens, spam = messages[i]
            if needs_training(score(tokens, counts, params), spam, margin):
                counts.learn(tokens, spam)
                learned[i] += 1
                errors += 1
        if errors == 0:
            break
    return learned


def train_ensemble(
    messages: Sequence[tuple[Collection[str], bool]],
    counts: TrainableCounts,
    params: Params = DEFAULT_PARAMS,
    margin: Thresholds = TRAIN_MARGIN,
    rounds: int = ENSEMBLE_ROUNDS,
    seed: int = 0,
) -> int:
    """Build a model from a corpus (``spam train``): ``rounds`` independent train-until-clean runs, summed.

    Which messages train-on-error picks depends on the visiting order, and that shows: on the same
    SpamAssassin folds, four orders gave 1 to 4 false positives and 5.5 % to 6.8 % missed spam at a 0.9
    cut-off; summing four orders gave 1 false positive and 7.2 % / 7.5 % missed spam for two seeds. Eight
    orders (with ``Params.s`` doubled to match) did better again in the three-view model (session 6).
    Each round trains an empty in-memory model with its own order; every message is then learned into
    ``counts`` as many times as the rounds together learned it, which averages the orders out. The same
    messages and seed give the same counts. Returns the number of ``learn`` calls made on ``counts``.
    """
    return learn_times(messages, counts, ensemble_times(messages, params, margin, rounds, seed))


def learn_times(messages: Sequence[tuple[Collection[str], bool]], counts: TrainableCounts, times: Sequence[int]) -> int:
    """Learn each message into ``counts`` as many times as ``times`` says; returns the ``learn`` calls made."""
    for (tokens, spam), n in zip(messages, times, strict=True):
        for _ in range(n):
            counts.learn(tokens, spam)
    return sum(times)


def ensemble_times(
    messages: Sequence[tuple[Collection[str], bool]],
    params: Params = DEFAULT_PARAMS,
    margin: Thresholds = TRAIN_MARGIN,
    rounds: int = ENSEMBLE_ROUNDS,
    seed: int = 0,
) -> list[int]:
    """How many times ``train_ensemble`` learns each message: the orders' learn counts, summed."""
    return sum_times(len(messages), (order_times(messages, params, margin, seed + r) for r in range(rounds)))


def order_times(
    messages: Sequence[tuple[Collection[str], bool]],
    params: Params,
    margin: Thresholds,
    seed: int,
    below: MemoryCounts | None = None,
) -> list[int]:
    """One train-on-error order of ``train_ensemble`` (an empty model, visiting order ``seed``): learns per message.
    ``below``: a model the learned counts will be summed with when scoring (the global one under an account's):
    messages are judged with it under them, and it is copied, not changed.

    The orders are independent of each other, so ``spam.parallel`` runs them on several cores."""
    counts = MemoryCounts() if below is None else below.copy()
    return _train_passes(messages, counts, params, margin, TRAIN_PASSES, seed)


def sum_times(size: int, orders: Iterable[Sequence[int]]) -> list[int]:
    total = [0] * size
    for learned in orders:
        total = [t + n for t, n in zip(total, learned, strict=True)]
    return total


class MemoryCounts:
    """In-memory ``TokenCounts`` with training, for tests and the evaluation script.

    Token counts are "messages containing the token", so callers pass each message's token set once.
    """

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, int]] = {}
        self._nspam = 0
        self._nham = 0

    @classmethod
    def of(cls, nspam: int, nham: int, counts: dict[str, tuple[int, int]]) -> MemoryCounts:
        """Counts read from elsewhere (a stored model loaded for fast scoring); ``counts`` is taken, not copied."""
        model = cls()
        model._counts, model._nspam, model._nham = counts, nspam, nham
        return model

    def copy(self) -> MemoryCounts:
        """An independent copy (learning into it leaves this model as it is)."""
        return MemoryCounts.of(self._nspam, self._nham, dict(self._counts))

    @property
    def nspam(self) -> int:
        return self._nspam

    @property
    def nham(self) -> int:
        return self._nham

    def __len__(self) -> int:
        """Number of distinct tokens with a non-zero count."""
        return len(self._counts)

    def rows(self) -> dict[str, tuple[int, int]]:
        """Every token's (spam, ham) count: the model itself, not a copy."""
        return self._counts

    def lookup(self, tokens: Collection[str]) -> dict[str, tuple[int, int]]:
        get = self._counts.get
        return {t: c for t in tokens if (c := get(t)) is not None}

    def learn(self, tokens: Iterable[str], spam: bool) -> None:
        """Count one message of class ``spam`` containing ``tokens`` (duplicates are counted once)."""
        counts = self._counts
        for token in set(tokens):
            s, h = counts.get(token, (0, 0))
            counts[token] = (s + 1, h) if spam else (s, h + 1)
        if spam:
            self._nspam += 1
        else:
            self._nham += 1

    def unlearn(self, tokens: Iterable[str], spam: bool) -> None:
        """Exactly undo ``learn(tokens, spam)``; counts that would go negative stay at zero."""
        counts = self._counts
        for token in set(tokens):
            s, h = counts.get(token, (0, 0))
            s, h = (max(s - 1, 0), h) if spam else (s, max(h - 1, 0))
            if s or h:
                counts[token] = (s, h)
            else:
                counts.pop(token, None)
        if spam:
            self._nspam = max(self._nspam - 1, 0)
        else:
            self._nham = max(self._nham - 1, 0)
