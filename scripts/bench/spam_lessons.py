"""How good is an account's spam model that learned only from its user, learned one lesson at a time as the daemon
does, against the same lessons rebuilt together (``relentad spam rebuild``, daily in the daemon)?

Usage: .venv/bin/python scripts/bench/spam_lessons.py [--corpus DIR] [--folds K] [--fold-seeds S,S,...]
       [--reply-rate R]

k-fold over a corpus of ``ham/`` and ``spam/`` files: the other folds arrive as the account's mail, in a random order,
at a model with no global one under it. Each message is judged as the daemon judges (the three-view score, ``[spam]``
cut-offs for a model of the lessons recorded so far, ``untrained`` until ``min_trained`` of each class), and the user
teaches what a user teaches: spam not filed into Junk is moved there (a spam lesson), ham filed into Junk is moved
out (a ham lesson), and a share ``--reply-rate`` of the ham left in the inbox is answered (a ham lesson: replies
teach ham). Each lesson is learned as ``storage.train_message`` learns it: each view model at least once, then again
(up to ``FEEDBACK_MAX``) until it scores the message clearly. At the end the held-out fold is scored twice:

- one by one: the counts those lessons left;
- rebuilt: a model trained from the same lessons by ``train_ensemble``'s orders (what ``spam rebuild`` does);

and, as the baseline, every message of the other folds labelled and bulk-trained (``spam train``; spam_eval.py). It
prints, pooled over the fold seeds, FN at FP <= 0.1 % and FP / FN at the cut-off the daemon gives a model of that
many lessons, and the misses of each against the baseline's as a ratio.

Invariants: the corpus is only read; everything is in memory (no store), with the product's own functions.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import sys
from collections.abc import Collection, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from spam_eval import DEFAULT_CORPUS, Mail, Run, at_fp_limit, folds, fp_limit_band, load, rates

from relentad.config import SpamConfig
from relentad.spam import parallel
from relentad.spam.classifier import FrozenCounts, MemoryCounts, learn_times, needs_training, score
from relentad.spam.storage import FEEDBACK_MAX
from relentad.spam.tokenize import tokenize
from relentad.spam.verdicts import cut_offs, gated_verdict
from relentad.spam.views import EPSILON, split_views

Views = tuple[frozenset[str], frozenset[str], frozenset[str]]


def views(tokens: Collection[str]) -> Views:
    head, body = split_views(tokens)
    return frozenset(tokens), head, body


def combined(scores: Sequence[float]) -> float:
    """The mean of the three views' log-odds, as ``views.ViewModels`` combines them."""
    logits = [math.log(p / (1 - p)) for p in (min(max(s, EPSILON), 1 - EPSILON) for s in scores)]
    return 1 / (1 + math.exp(-sum(logits) / len(logits)))


def teach(models: Sequence[MemoryCounts], message: Views, spam: bool) -> None:
    """One lesson as ``storage.train_message`` learns it, into the three in-memory view models."""
    for model, tokens in zip(models, message, strict=True):
        for _ in range(FEEDBACK_MAX):
            model.learn(tokens, spam)
            if not needs_training(score(tokens, model), spam):
                break


def bulk(messages: Sequence[tuple[Views, bool]]) -> list[FrozenCounts]:
    """Three view models trained together as ``spam train`` (and ``spam rebuild``) trains them."""
    corpora = [[(message[v], spam) for message, spam in messages] for v in range(3)]
    models = []
    for corpus, times in zip(corpora, parallel.ensemble_times(corpora), strict=True):
        model = MemoryCounts()
        learn_times(corpus, model, times)
        models.append(FrozenCounts(model))
    return models


def held_out(models: Sequence[FrozenCounts], test: Sequence[tuple[Views, bool]], run: Run) -> None:
    run.results += [(combined([m.score(t) for m, t in zip(models, message, strict=True)]), y) for message, y in test]


def key(mail: Mail) -> bytes:
    return hashlib.sha256(mail.raw).digest()  # a rebuild visits the lessons in the order of their keys


def one_round(
    train: Sequence[Mail], test: Sequence[Mail], tokens: dict[Path, Views], rate: float, seed: int, runs: list[Run]
) -> tuple[int, int]:
    spam_config = SpamConfig()
    rng = random.Random(seed)
    arriving = list(train)
    rng.shuffle(arriving)
    models = [MemoryCounts() for _ in range(3)]
    lessons: list[tuple[Mail, bool]] = []
    recorded = [0, 0]
    for mail in arriving:
        message = tokens[mail.path]
        value = combined([score(t, m) for m, t in zip(models, message, strict=True)])
        status = gated_verdict(
            value,
            cut_offs(spam_config, (recorded[0], recorded[1])),
            (recorded[0], recorded[1]),
            spam_config.min_trained,
        )
        if mail.spam and status != "spam":
            lesson = True
        elif not mail.spam and (status == "spam" or rng.random() < rate):
            lesson = False
        else:
            continue
        teach(models, message, lesson)
        lessons.append((mail, lesson))
        recorded[0 if lesson else 1] += 1
    scored = [(tokens[m.path], m.spam) for m in test]
    held_out([FrozenCounts(m) for m in models], scored, runs[0])
    held_out(bulk([(tokens[m.path], y) for m, y in sorted(lessons, key=lambda item: key(item[0]))]), scored, runs[1])
    held_out(bulk([(tokens[m.path], m.spam) for m in train]), scored, runs[2])
    return recorded[0], recorded[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--fold-seeds", default="20260101,7,11")
    parser.add_argument("--reply-rate", type=float, default=0.3, help="share of the ham in the inbox answered")
    args = parser.parse_args(argv)
    mails = load(args.corpus)
    tokens = {m.path: views(tokenize(m.raw)) for m in mails}
    runs = [Run("one by one"), Run("rebuilt"), Run("all labelled")]
    sizes = []
    for fold_seed in (int(s) for s in args.fold_seeds.split(",")):
        parts = folds(mails, args.folds, fold_seed)
        for index, test in enumerate(parts):
            train = [m for j, part in enumerate(parts) if j != index for m in part]
            sizes.append(one_round(train, test, tokens, args.reply_rate, fold_seed * 1000 + index, runs))
            print(
                f"fold seed {fold_seed}, fold {index}: {sizes[-1][0]} spam and {sizes[-1][1]} ham lessons", flush=True
            )
    spam_lessons = sum(s for s, _ in sizes) // len(sizes)
    ham_lessons = sum(h for _, h in sizes) // len(sizes)
    cut = cut_offs(SpamConfig(), (spam_lessons, ham_lessons))
    print(
        f"\nlessons per round: {spam_lessons} spam, {ham_lessons} ham; the daemon's band for that: "
        f"{cut.ham_below:g}/{cut.spam_above:.3f}"
    )
    baseline = 0.0
    for run in reversed(runs):
        line = at_fp_limit(run)
        missed = rates(run.results, fp_limit_band(run)).get("fn", 0.0)
        baseline = baseline or missed
        r = rates(run.results, cut)
        print(
            f"{line}; at {cut.spam_above:.3f}: FP {r['fp']:.2f} % ({int(r['fp_n'])}), FN {r['fn']:.2f} % "
            f"({int(r['fn_n'])}); misses {missed / baseline:.2f} x all labelled"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
