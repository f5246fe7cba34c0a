"""How good is an account's spam model that learned only from its user, learned one lesson at a time as the daemon
does, against the same lessons rebuilt together (``relentad spam rebuild``, daily in the daemon)?

Usage: .venv/bin/python scripts/bench/spam_lessons.py [--corpus DIR] [--folds K] [--fold-seeds S,S,...]
       [--reply-rate R] [--global-share F]

k-fold over a corpus of ``ham/`` and ``spam/`` files: the other folds arrive as the account's mail, in a random order,
at a model with no global one under it (``--global-share F``: a random share F of them is bulk-trained as the global
model first, as ``spam train --global`` does, and the rest arrives; the account's lessons are then judged and learned
with the global counts under them, as the daemon sums the two). Each message is judged as the daemon judges (the
three-view score, ``[spam]`` cut-offs for a model of the messages recorded so far, ``untrained`` until
``min_trained`` of each class), and the user teaches what a user teaches: spam not filed into Junk is moved there (a
spam lesson), ham filed into Junk is moved out (a ham lesson), and a share ``--reply-rate`` of the ham left in the
inbox is answered (a ham lesson: replies teach ham). Each lesson is learned as ``storage.train_message`` learns it:
each view model at least once, then again (up to ``FEEDBACK_MAX``) until it scores the message clearly. At the end
the held-out fold is scored by:

- one by one: the counts those lessons left;
- rebuilt: a model trained from the same lessons by ``train_ensemble``'s orders, judged with the global model under
  them (what ``spam rebuild`` does);
- global alone (with ``--global-share``): the global model without the account's lessons;
- all labelled, the baseline: every message of the other folds labelled and bulk-trained (``spam train``).

It prints, pooled over the fold seeds, FN at FP <= 0.1 % (and as a ratio to the baseline's) and FP / FN / unsure at
the band the daemon gives a model of that many messages. Ten folds and three fold seeds take about ten minutes on two
quiet cores.

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

from spam_eval import DEFAULT_CORPUS, Mail, Result, Run, at_fp_limit, folds, fp_limit_band, load, rates

from relentad.config import SpamConfig
from relentad.spam import parallel
from relentad.spam.classifier import FrozenCounts, MemoryCounts, learn_times, needs_training, score
from relentad.spam.storage import FEEDBACK_MAX
from relentad.spam.tokenize import through_discussion_list, tokenize
from relentad.spam.verdicts import cut_offs, gated_verdict, lowers_list_mail, message_cut_offs
from relentad.spam.views import EPSILON, split_views

Views = tuple[frozenset[str], frozenset[str], frozenset[str]]


def views(tokens: Collection[str]) -> Views:
    head, body = split_views(tokens)
    return frozenset(tokens), head, body


def combined(scores: Sequence[float]) -> float:
    """The mean of the three views' log-odds, as ``views.ViewModels`` combines them."""
    logits = [math.log(p / (1 - p)) for p in (min(max(s, EPSILON), 1 - EPSILON) for s in scores)]
    return 1 / (1 + math.exp(-sum(logits) / len(logits)))


def teach(models: Sequence[Summed], message: Views, spam: bool) -> None:
    """One lesson as ``storage.train_message`` learns it: into the account's three view models, each judged with the
    global one under it."""
    for model, tokens in zip(models, message, strict=True):
        for _ in range(FEEDBACK_MAX):
            model.own.learn(tokens, spam)
            if not needs_training(score(tokens, model), spam):
                break


def bulk(messages: Sequence[tuple[Views, bool]], below: Sequence[MemoryCounts] | None = None) -> list[MemoryCounts]:
    """Three view models trained together as ``spam train`` trains them (and ``spam rebuild``, with the global
    models ``below``)."""
    corpora = [[(message[v], spam) for message, spam in messages] for v in range(3)]
    models = []
    for corpus, times in zip(corpora, parallel.ensemble_times(corpora, below=below), strict=True):
        model = MemoryCounts()
        learn_times(corpus, model, times)
        models.append(model)
    return models


class Summed:
    """An account's counts with the global ones under them, as ``storage.StoredCounts`` sums the two scopes."""

    def __init__(self, below: MemoryCounts, own: MemoryCounts) -> None:
        self.below, self.own = below, own

    @property
    def nspam(self) -> int:
        return self.below.nspam + self.own.nspam

    @property
    def nham(self) -> int:
        return self.below.nham + self.own.nham

    def lookup(self, tokens: Collection[str]) -> dict[str, tuple[int, int]]:
        found = self.below.lookup(tokens)
        for token, (spam, ham) in self.own.lookup(tokens).items():
            have = found.get(token, (0, 0))
            found[token] = (have[0] + spam, have[1] + ham)
        return found

    def frozen(self) -> FrozenCounts:
        rows = dict(self.below.rows())
        for token, (spam, ham) in self.own.rows().items():
            have = rows.get(token, (0, 0))
            rows[token] = (have[0] + spam, have[1] + ham)
        return FrozenCounts(MemoryCounts.of(self.nspam, self.nham, rows))


def held_out(models: Sequence[FrozenCounts], test: Sequence[tuple[Views, bool]], run: Run) -> None:
    run.results += [
        Result(
            combined([m.score(t) for m, t in zip(models, message, strict=True)]), y, through_discussion_list(message[0])
        )
        for message, y in test
    ]


def key(mail: Mail) -> bytes:
    return hashlib.sha256(mail.raw).digest()  # a rebuild visits the lessons in the order of their keys


def one_round(
    train: Sequence[Mail],
    test: Sequence[Mail],
    tokens: dict[Path, Views],
    args: argparse.Namespace,
    seed: int,
    runs: dict[str, Run],
) -> tuple[int, int, int]:
    """One fold: returns the lessons (spam, ham) and the global model's messages."""
    spam_config = SpamConfig()
    rng = random.Random(seed)
    arriving = list(train)
    rng.shuffle(arriving)
    cut = round(len(arriving) * args.global_share)
    global_mail, arriving = arriving[:cut], arriving[cut:]
    below = bulk([(tokens[m.path], m.spam) for m in global_mail]) if global_mail else [MemoryCounts() for _ in range(3)]
    base = (sum(m.spam for m in global_mail), sum(not m.spam for m in global_mail))
    models = [Summed(g, MemoryCounts()) for g in below]
    lessons: list[tuple[Mail, bool]] = []
    recorded = [0, 0]
    for mail in arriving:
        message = tokens[mail.path]
        value = combined([score(t, m) for m, t in zip(models, message, strict=True)])
        summed = (base[0] + recorded[0], base[1] + recorded[1])
        band = message_cut_offs(spam_config, cut_offs(spam_config, summed), summed, through_discussion_list(message[0]))
        status = gated_verdict(value, band, summed, spam_config.min_trained)
        if mail.spam and status != "spam":
            lesson = True
        elif not mail.spam and (status == "spam" or rng.random() < args.reply_rate):
            lesson = False
        else:
            continue
        teach(models, message, lesson)
        lessons.append((mail, lesson))
        recorded[0 if lesson else 1] += 1
    scored = [(tokens[m.path], m.spam) for m in test]
    held_out([m.frozen() for m in models], scored, runs["one by one"])
    rebuilt = bulk([(tokens[m.path], y) for m, y in sorted(lessons, key=lambda item: key(item[0]))], below)
    held_out([Summed(g, own).frozen() for g, own in zip(below, rebuilt, strict=True)], scored, runs["rebuilt"])
    if global_mail:
        held_out([FrozenCounts(g) for g in below], scored, runs["global alone"])
    held_out([FrozenCounts(m) for m in bulk([(tokens[m.path], m.spam) for m in train])], scored, runs["all labelled"])
    return recorded[0], recorded[1], len(global_mail)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--fold-seeds", default="20260101,7,11")
    parser.add_argument("--reply-rate", type=float, default=0.3, help="share of the ham in the inbox answered")
    parser.add_argument(
        "--global-share",
        type=float,
        default=0.0,
        help="share of each round's mail bulk-trained as the global model under the account (the rest arrives)",
    )
    args = parser.parse_args(argv)
    mails = load(args.corpus)
    tokens = {m.path: views(tokenize(m.raw)) for m in mails}
    names = ["all labelled", *(["global alone"] if args.global_share else []), "rebuilt", "one by one"]
    runs = {name: Run(name, SpamConfig().list_mail_shift) for name in names}
    sizes = []
    for fold_seed in (int(s) for s in args.fold_seeds.split(",")):
        parts = folds(mails, args.folds, fold_seed)
        for index, test in enumerate(parts):
            train = [m for j, part in enumerate(parts) if j != index for m in part]
            sizes.append(one_round(train, test, tokens, args, fold_seed * 1000 + index, runs))
            print(
                f"fold seed {fold_seed}, fold {index}: {sizes[-1][0]} spam and {sizes[-1][1]} ham lessons"
                + (f" over a global model of {sizes[-1][2]}" if args.global_share else ""),
                flush=True,
            )
    spam_lessons, ham_lessons, global_size = (sum(size[i] for size in sizes) // len(sizes) for i in range(3))
    spams = sum(m.spam for m in mails)
    share = args.global_share
    labelled = (spams * (args.folds - 1) // args.folds, (len(mails) - spams) * (args.folds - 1) // args.folds)
    below = (round(labelled[0] * share), round(labelled[1] * share))
    learned = {
        "all labelled": labelled,
        "global alone": below,
        "rebuilt": (below[0] + spam_lessons, below[1] + ham_lessons),
        "one by one": (below[0] + spam_lessons, below[1] + ham_lessons),
    }
    bands = {name: cut_offs(SpamConfig(), size) for name, size in learned.items()}
    for run in runs.values():  # the list-mail cut-off only for a model large enough (verdicts.lowers_list_mail)
        run.list_mail_shift = run.list_mail_shift if lowers_list_mail(SpamConfig(), learned[run.name]) else 0.0
    print(
        f"\nlessons per round: {spam_lessons} spam, {ham_lessons} ham"
        + (f" over a global model of {global_size} messages" if share else "")
        + "; each model at the band the daemon gives a model of its size"
    )
    baseline = 0.0
    for run in runs.values():
        missed = rates(run, fp_limit_band(run))["fn"]
        baseline = baseline or missed
        band = bands[run.name]
        r = rates(run, band)
        print(
            f"{at_fp_limit(run)}, {missed / baseline:.2f} x all labelled; at {band.ham_below:g}/{band.spam_above:.3f}: "
            f"FP {r['fp']:.2f} % ({int(r['fp_n'])}), FN {r['fn']:.2f} % ({int(r['fn_n'])}), unsure {r['unsure']:.2f} %"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
