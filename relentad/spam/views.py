"""Three views of a message, three chi-square models, one score: how relentad scores spam (README, "The spam filter").

scripts/bench/spam_eval.py ``--train views`` measures it with in-memory models (:class:`ViewModels`); in SQLite
(spam/storage.py) the view models' token rows are the marked tokens (:func:`marked_views`) beside the full model's,
with their own message totals, and :func:`score_stored` scores them all with one lookup.

- The **full** model counts every token of a message (the single model relentad had before); the **head** model
  only the tokens that come from its header fields (prefixed: ``subj:``, ``rcvd:``, ``hn:`` ...); the **body**
  model only those of its text (unprefixed words, and the ``url:``, ``attr:``, ``skip:`` ... families the body
  yields). Each view is one of two disjoint parts of the same token set, decided by the token alone.
- Each model is trained on its own view with the same train-on-error ensemble (``train_ensemble``): which messages
  it needs differs per view, and that separate training is what helps — the header and body scores of the full
  model's counts do not (cross-validated).
- The score is the mean of the three scores' log-odds (a product of experts: the geometric mean of their odds),
  each clipped to [``EPSILON``, 1 - ``EPSILON``] so that a model's certainty cannot veto the others.

Invariants: ``ViewModels.score`` is in [0, 1]; all three at 0.5 give 0.5; swapping spam and ham in every model mirrors
the score around 0.5 (as ``combine`` does).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from . import parallel
from .classifier import (
    DEFAULT_PARAMS,
    TRAIN_MARGIN,
    FrozenCounts,
    MemoryCounts,
    Params,
    Scored,
    Thresholds,
    TokenCounts,
    learn_times,
    score,
    score_clues,
    unseen_tokens_count,
)

BODY_PREFIXES = frozenset({"url", "attr", "skip", "proto", "email", "html", "mime", "filetype", "cte"})
"""Token families the tokenizer derives from a message's text and MIME structure rather than its header fields."""
EPSILON = 1e-9
MARK = "\t"
"""Starts the stored token strings of the view models (a view's mark, then the token). No token the tokenizer makes
starts with a tab (words are split at whitespace, every other token starts with its prefix), so none collides."""
HEAD_MARK = MARK + "h"
BODY_MARK = MARK + "b"


def is_body_token(token: str) -> bool:
    """Whether ``token`` belongs to the body view: no prefix, a body family, or a word like ``10:30``."""
    prefix, colon, _ = token.partition(":")
    return not colon or prefix in BODY_PREFIXES or prefix.isdigit()


def is_head_token(token: str) -> bool:
    """Whether ``token`` belongs to the head view (every token is in exactly one view)."""
    return not is_body_token(token)


def split_views(tokens: Collection[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(head, body): the two disjoint views of a message's tokens."""
    # is_body_token inlined: this runs for every token of every message scored.
    body = frozenset(
        t for t in tokens if ":" not in t or (prefix := t.partition(":")[0]) in BODY_PREFIXES or prefix.isdigit()
    )
    return frozenset(tokens) - body, body


def marked_views(tokens: Collection[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(head, body) views as the view models store them: each token with its view's mark."""
    head, body = split_views(tokens)
    return frozenset(HEAD_MARK + t for t in head), frozenset(BODY_MARK + t for t in body)


class ViewCounts(TokenCounts, Protocol):
    """Stored counts of all three models: ``lookup`` answers plain and marked tokens alike."""

    @property
    def head_totals(self) -> tuple[int, int]:
        """Messages the head model learned as (spam, ham)."""
        ...

    @property
    def body_totals(self) -> tuple[int, int]:
        """Messages the body model learned as (spam, ham)."""
        ...


@dataclass(frozen=True)
class Found:
    """``TokenCounts`` over rows already looked up, with one model's totals: three models, one query."""

    nspam: int
    nham: int
    rows: dict[str, tuple[int, int]]

    def lookup(self, tokens: Collection[str]) -> dict[str, tuple[int, int]]:
        rows = self.rows
        return {t: rows[t] for t in tokens if t in rows}


def view_counts(counts: ViewCounts, view: str, tokens: Collection[str]) -> Found:
    """One model of ``counts`` ("full", "head" or "body") with the rows of ``tokens`` looked up."""
    nspam, nham = {"full": (counts.nspam, counts.nham), "head": counts.head_totals, "body": counts.body_totals}[view]
    return Found(nspam, nham, counts.lookup(tokens))


def score_stored(tokens: Collection[str], counts: ViewCounts, params: Params = DEFAULT_PARAMS) -> Scored:
    """The combined score with every model's clues (marked for the views), from one ``lookup``.

    A view model that has learned nothing (a model trained before views existed) is left out, so such a model
    scores exactly as the full model alone until it is retrained."""
    head, body = marked_views(tokens)
    rows = counts.lookup(frozenset(tokens) | head | body)
    full = score_clues(tokens, Found(counts.nspam, counts.nham, rows), params)
    scores, clues = [full.score], list(full.clues)
    for marked, (nspam, nham) in ((head, counts.head_totals), (body, counts.body_totals)):
        if nspam or nham:
            view = score_clues(marked, Found(nspam, nham, rows), params)
            scores.append(view.score)
            clues += view.clues
    return Scored(combine_views(scores), tuple(clues))


def strongest_clues(clues: Sequence[tuple[str, float]], each: int = 8) -> list[tuple[str, str, float]]:
    """The ``each`` most spammy and ``each`` most hammy of :func:`score_stored`'s clues, as (model, token, f(w)),
    most extreme first, the view marks turned into the model's name ("all", "head" or "body"): why a verdict."""
    named = [(*_unmarked(token), f) for token, f in clues]
    spammy = sorted((c for c in named if c[2] > 0.5), key=lambda c: (-c[2], c[0], c[1]))[:each]
    hammy = sorted((c for c in named if c[2] < 0.5), key=lambda c: (c[2], c[0], c[1]))[:each]
    return spammy + hammy


def _unmarked(token: str) -> tuple[str, str]:
    """(model name, plain token) of a token as :func:`score_stored` reports it."""
    for mark, model in ((HEAD_MARK, "head"), (BODY_MARK, "body")):
        if token.startswith(mark):
            return model, token[len(mark) :]
    return "all", token


def logit(p: float) -> float:
    """log(p / (1 - p)) with p kept EPSILON away from 0 and 1; exactly antisymmetric: logit(1 - p) = -logit(p)."""
    if p > 0.5:
        return -logit(1.0 - p)
    p = max(p, EPSILON)
    return math.log(p / (1.0 - p))


def combine_views(scores: Sequence[float]) -> float:
    """The product of experts: sigmoid of the mean log-odds of ``scores`` (0.5 for none)."""
    if not scores:
        return 0.5
    z = sum(logit(s) for s in scores) / len(scores)
    return 1.0 / (1.0 + math.exp(-z))


@dataclass
class ViewModels:
    """The three models in memory (for evaluation and tests); each is a plain ``MemoryCounts``."""

    full: MemoryCounts = field(default_factory=MemoryCounts)
    head: MemoryCounts = field(default_factory=MemoryCounts)
    body: MemoryCounts = field(default_factory=MemoryCounts)

    def train(
        self,
        messages: Sequence[tuple[Collection[str], bool]],
        params: Params = DEFAULT_PARAMS,
        margin: Thresholds = TRAIN_MARGIN,
        seed: int = 0,
        workers: int = 1,
    ) -> tuple[int, int, int]:
        """Bulk training: ``train_ensemble`` on each view of (tokens, is_spam) pairs; learn calls per model.

        ``workers`` above one runs the orders on that many forked processes (``spam.parallel``, as ``spam train``
        does), with the same counts; the default stays in this process, which may have threads of its own."""
        views = [(frozenset(tokens), spam, *split_views(tokens)) for tokens, spam in messages]
        corpora = [[(v[0], v[1]) for v in views], [(v[2], v[1]) for v in views], [(v[3], v[1]) for v in views]]
        times = parallel.ensemble_times(corpora, params, margin, seed=seed, workers=workers)
        full, head, body = (
            learn_times(corpus, model, counts)
            for corpus, model, counts in zip(corpora, (self.full, self.head, self.body), times, strict=True)
        )
        return full, head, body

    def learn(self, tokens: Collection[str], spam: bool) -> None:
        """One message into every model (its view in each); ``unlearn`` reverses it exactly."""
        head, body = split_views(tokens)
        self.full.learn(tokens, spam)
        self.head.learn(head, spam)
        self.body.learn(body, spam)

    def unlearn(self, tokens: Collection[str], spam: bool) -> None:
        head, body = split_views(tokens)
        self.full.unlearn(tokens, spam)
        self.head.unlearn(head, spam)
        self.body.unlearn(body, spam)

    def scorer(self, params: Params = DEFAULT_PARAMS) -> Callable[[Collection[str]], float]:
        """``self.score`` with ``params``, frozen (:class:`FrozenCounts`) when the parameters allow: for scoring many
        messages while the models stay as they are; the same scores to the bit."""
        if unseen_tokens_count(params):
            return functools.partial(self.score, params=params)
        frozen = [FrozenCounts(self.full, params)]
        for model, only in ((self.head, is_head_token), (self.body, is_body_token)):
            if model.nspam or model.nham:
                frozen.append(FrozenCounts(model, params, only))
        return lambda tokens: combine_views([model.score(tokens) for model in frozen])

    def score(self, tokens: Collection[str], params: Params = DEFAULT_PARAMS) -> float:
        """The combined score of a message's tokens in [0, 1]; like :func:`score_stored`, a view model that has
        learned nothing is left out."""
        head, body = split_views(tokens)
        scores = [score(tokens, self.full, params)]
        for view, model in ((head, self.head), (body, self.body)):
            if model.nspam or model.nham:
                scores.append(score(view, model, params))
        return combine_views(scores)
