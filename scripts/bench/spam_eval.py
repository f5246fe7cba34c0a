"""Cross-validate relentad's spam classifier on a real corpus, side by side with Debian's bogofilter.

Usage: .venv/bin/python scripts/bench/spam_eval.py [--corpus DIR] [--folds K | --split 0.5 [--repeat N] | --test DIR]
       [--seed S | --fold-seeds S,S,...] [--train-fraction F] [--scores FILE]

The corpus directory holds ``ham/`` and ``spam/`` trees of one-message files (any depth). Messages are
split into stratified folds with a fixed seed; every fold trains a fresh model on the other folds and
scores the held-out one, through the real ``tokenize`` and ``classifier`` code. ``--split F`` instead
trains on a stratified fraction F and tests on the rest; ``--repeat N`` does that for seeds S, S+1, ... S+N-1
and pools the held-out scores. ``--test DIR`` trains on the whole corpus and scores another one (the same
``ham/`` and ``spam/`` layout), as a held-out judgement does. One split's "FN at FP <= 0.1 %" rests on the
one or two highest-scoring ham of ~1,040 and moves by several points from seed to seed; pooled over ten
splits it rests on ten. ``--fold-seeds`` pools k-fold runs over several fold seeds the same way, and
``--train-fraction F`` trains each round on a random fraction F of its training messages (the learning curve
behind ``[spam] confident_after``).

relentad trains the way production bulk training does (``--train views``, the default: the three-view model of
relentad/spam/views.py, each view's model trained with ``train_ensemble``, train-on-error passes with a margin,
``classifier.ENSEMBLE_ROUNDS`` orders summed); ``--train ensemble`` measures the single model of sessions 1-3
that way, ``--train toe`` with one order, ``--train all`` training every message;
bogofilter registers every training message, its normal use.

The band's spam cut-off is the one the daemon would use for a model trained on as many messages (the smallest
round's, as ``verdicts.model_size`` counts them): ``--confident-after`` and ``--spam-above-min``, as ``[spam]``:
raised for fewer than 2,000, lowered for more, to 0.7 at most. Mail through a discussion list is judged against a
cut-off ``--list-mail-shift`` log-odds lower, as the daemon judges it (``verdicts.for_message``); "FN at FP <= x %"
ranks such a ham by the cut-off it would pass once lowered.

Definitions (the same for both filters): a false positive is a ham called spam; a false negative is a
spam not called spam (with an unsure band, unsure spam counts as a false negative, unsure ham does not
count as a false positive); accuracy counts only right ham/spam verdicts as right. Speeds include
tokenizing (ours) and process start and file reading (bogofilter, run in bulk mode once per fold). Our
training runs its orders on every usable core, as ``spam train`` does (``--train views``; the other modes, and
scoring, run in one process: the CPU per scored message is printed too).

Invariants: the corpus is only read; bogofilter's wordlists live in a temporary directory removed at exit.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from relentad.spam.classifier import (
    DEFAULT_PARAMS,
    MemoryCounts,
    Params,
    Thresholds,
    score,
    train_ensemble,
    train_until_clean,
    verdict,
)
from relentad.spam.parallel import usable_cores
from relentad.spam.tokenize import through_discussion_list, tokenize
from relentad.spam.verdicts import (
    CONFIDENT_AFTER,
    LIST_MAIL_SHIFT,
    LOWEST_SPAM_ABOVE,
    for_message,
    model_size,
    scaled_thresholds,
)
from relentad.spam.views import ViewModels

DEFAULT_CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "spamassassin" / "train"
BOGOFILTER_BAND = Thresholds(ham_below=0.45, spam_above=0.99)  # Debian's shipped ham/spam cut-offs
SINGLE_CUTOFF = Thresholds(ham_below=0.5, spam_above=0.5)


@dataclass(frozen=True)
class Mail:
    path: Path
    raw: bytes
    spam: bool


class Result(NamedTuple):
    """One held-out message's score and class."""

    score: float
    spam: bool
    list_mail: bool = False  # came through a discussion list: the daemon lowers its spam cut-off
    path: str = ""  # the message file, for --scores


@dataclass
class Run:
    """Held-out scores and timings of one filter over all folds."""

    name: str
    list_mail_shift: float = 0.0  # the daemon's [spam] list_mail_shift for ours, 0 for bogofilter
    results: list[Result] = field(default_factory=list)
    train_n: int = 0
    train_s: float = 0.0
    score_n: int = 0
    score_s: float = 0.0
    tokenize_cpu: float = 0.0  # process CPU seconds (ours only): steadier than wall time on a shared machine
    score_cpu: float = 0.0


def load(corpus: Path) -> list[Mail]:
    mails: list[Mail] = []
    for label in ("ham", "spam"):
        for path in sorted((corpus / label).rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                mails.append(Mail(path, path.read_bytes(), label == "spam"))
    if not any(m.spam for m in mails) or all(m.spam for m in mails):
        raise SystemExit(f"{corpus}: need both ham/ and spam/ messages")
    return mails


def folds(mails: Sequence[Mail], k: int, seed: int) -> list[list[Mail]]:
    """Stratified folds: each class shuffled with ``seed`` and dealt round-robin."""
    rng = random.Random(seed)
    out: list[list[Mail]] = [[] for _ in range(k)]
    for spam in (False, True):
        group = [m for m in mails if m.spam is spam]
        rng.shuffle(group)
        for i, mail in enumerate(group):
            out[i % k].append(mail)
    return out


def split(mails: Sequence[Mail], fraction: float, seed: int) -> tuple[list[Mail], list[Mail]]:
    rng = random.Random(seed)
    train: list[Mail] = []
    test: list[Mail] = []
    for spam in (False, True):
        group = [m for m in mails if m.spam is spam]
        rng.shuffle(group)
        cut = round(len(group) * fraction)
        train += group[:cut]
        test += group[cut:]
    return train, test


def subsample(train: Sequence[Mail], fraction: float, seed: int) -> list[Mail]:
    """A random ``fraction`` of ``train`` (each message kept with that chance), in corpus order."""
    rng = random.Random(seed)
    return [m for m in sorted(train, key=lambda m: (m.spam, str(m.path))) if rng.random() < fraction]


def run_ours(train: Sequence[Mail], test: Sequence[Mail], params: Params, mode: str, run: Run) -> None:
    start = time.perf_counter()
    scorer = trained(train, params, mode)
    run.train_s += time.perf_counter() - start
    run.train_n += len(train)
    start, cpu = time.perf_counter(), time.process_time()
    tokens = [tokenize(mail.raw) for mail in test]
    middle = time.process_time()
    scores = [scorer(t) for t in tokens]
    run.score_s += time.perf_counter() - start
    run.tokenize_cpu += middle - cpu
    run.score_cpu += time.process_time() - middle
    run.score_n += len(test)
    run.results += [
        Result(s, m.spam, through_discussion_list(t), str(m.path)) for s, m, t in zip(scores, test, tokens, strict=True)
    ]


def trained(train: Sequence[Mail], params: Params, mode: str) -> Callable[[Collection[str]], float]:
    """A model trained on ``train`` the way ``mode`` says, as a function from tokens to score."""
    pairs = [(tokenize(m.raw), m.spam) for m in train]
    if mode == "views":
        models = ViewModels()
        models.train(pairs, params, workers=usable_cores())  # as `spam train` does
        return models.scorer(params)
    counts = MemoryCounts()
    if mode == "all":
        for tokens, spam in pairs:
            counts.learn(tokens, spam)
    elif mode == "toe":
        train_until_clean(pairs, counts, params)
    else:
        train_ensemble(pairs, counts, params)
    return lambda tokens: score(tokens, counts, params)


def run_bogofilter(exe: str, train: Sequence[Mail], test: Sequence[Mail], run: Run) -> None:
    with tempfile.TemporaryDirectory(prefix="spam_eval_bogo_") as wordlists:
        base = [exe, "-C", "-d", wordlists]
        start = time.perf_counter()
        for flag, spam in (("-s", True), ("-n", False)):
            files = [str(m.path) for m in train if m.spam is spam]
            subprocess.run([*base, flag, "-B", *files], check=True)
        run.train_s += time.perf_counter() - start
        run.train_n += len(train)
        start = time.perf_counter()
        proc = subprocess.run(
            [*base, "-T", "-B", *(str(m.path) for m in test)], capture_output=True, text=True, check=False
        )
        run.score_s += time.perf_counter() - start
        run.score_n += len(test)
    spamicity = {}
    for line in proc.stdout.splitlines():
        name, _, value = line.rsplit(" ", 2)
        spamicity[name] = float(value)
    run.results += [Result(spamicity[str(m.path)], m.spam) for m in test]


def rates(run: Run, cut: Thresholds) -> dict[str, float]:
    """Rates at ``cut``, lowered for list mail as the daemon lowers it (``verdicts.for_message``)."""
    lists = {False: cut, True: for_message(cut, True, run.list_mail_shift)}
    judged = [(verdict(r.score, lists[r.list_mail]), r.spam) for r in run.results]
    ham = sum(not spam for _, spam in judged)
    fp = sum(v == "spam" for v, spam in judged if not spam)
    fn = sum(v != "spam" for v, spam in judged if spam)
    unsure = sum(v == "unsure" for v, _ in judged)
    right = sum(v == ("spam" if spam else "ham") for v, spam in judged)
    return {
        "acc": 100.0 * right / len(judged),
        "fp": 100.0 * fp / ham,
        "fn": 100.0 * fn / (len(judged) - ham),
        "unsure": 100.0 * unsure / len(judged),
        "fp_n": fp,
        "fn_n": fn,
    }


def row(label: str, run: Run, cut: Thresholds) -> str:
    r = rates(run, cut)
    return (
        f"{label:<34} {r['acc']:7.2f} {r['fp']:6.2f} ({int(r['fp_n']):2d}) {r['fn']:6.2f} ({int(r['fn_n']):3d})"
        f" {r['unsure']:7.2f} {run.train_n / run.train_s:9.0f} {run.score_n / run.score_s:9.0f}"
    )


def fp_limit_band(run: Run, limit: float = 0.1) -> Thresholds:
    """The band with the lowest spam cut-off keeping FP <= ``limit`` %: just above the highest ham it may let by (a
    list ham ranked by the cut-off that, lowered, it would just pass)."""
    hams = sorted((cut_passed(r, run.list_mail_shift) for r in run.results if not r.spam), reverse=True)
    allowed = int(len(hams) * limit / 100)
    cut = hams[allowed] if allowed < len(hams) else 0.0
    return Thresholds(0.0, cut)  # FP and FN only: with no unsure band, the list cut-off is lowered unclamped


def cut_passed(result: Result, shift: float) -> float:
    """The spam cut-off ``result`` just passes: its score, or for list mail the cut-off that, lowered by ``shift``
    log-odds (``verdicts.lowered``), is its score."""
    if not (result.list_mail and shift > 0) or not 0 < result.score < 1:
        return result.score
    return 1 / (1 + math.exp(-(math.log(result.score / (1 - result.score)) + shift)))


def at_fp_limit(run: Run, limit: float = 0.1) -> str:
    """FN at the lowest spam cut-off keeping FP <= ``limit`` %: the operating point the target names."""
    band = fp_limit_band(run, limit)
    cut = band.spam_above
    r = rates(run, band)
    return (
        f"{run.name:<11} FN at FP <= {limit:g} %: spam_above {cut:.6f} -> FP {r['fp']:.2f} % ({int(r['fp_n'])}),"
        f" FN {r['fn']:.2f} % ({int(r['fn_n'])})"
    )


def sweep(run: Run, band: Thresholds) -> list[str]:
    """FP/FN at a range of spam cut-offs (to choose ``spam_above``; unsure spam counts as FN), and how
    much spam lands in the inbox and how much ham in unsure at a range of ham cut-offs (``ham_below``)."""
    hams = [r.score for r in run.results if not r.spam]
    spams = [r.score for r in run.results if r.spam]
    lines = ["", f"{run.name}: spam_above sweep", "  spam_above   FP%  (n)    FN%  (n)"]
    for cut in sorted({0.5, 0.6, 0.7, 0.75, 0.79, 0.8, 0.85, 0.9, 0.95, 0.99, band.spam_above}):
        r = rates(run, Thresholds(0.0, cut))
        lines.append(f"  {cut:<10.4g} {r['fp']:5.2f} ({int(r['fp_n']):2d})  {r['fn']:5.2f} ({int(r['fn_n']):3d})")
    lines += ["", f"{run.name}: ham_below sweep", "  ham_below  spam called ham %  ham not called ham %"]
    for cut in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5):
        leak = 100.0 * sum(s < cut for s in spams) / len(spams)
        held = 100.0 * sum(s >= cut for s in hams) / len(hams)
        lines.append(f"  {cut:<10} {leak:17.2f}  {held:20.2f}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--split", type=float, default=None, help="train fraction (one split, no folds)")
    parser.add_argument("--repeat", type=int, default=1, help="with --split: this many seeds from --seed, pooled")
    parser.add_argument("--test", type=Path, default=None, help="train on all of --corpus, score this corpus")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--fold-seeds", default=None, help="k-fold runs for these fold seeds (comma-separated), pooled")
    parser.add_argument("--train-fraction", type=float, default=1.0, help="train each round on this random fraction")
    parser.add_argument("--ham-below", type=float, default=Thresholds().ham_below)
    parser.add_argument("--spam-above", type=float, default=Thresholds().spam_above)
    parser.add_argument(
        "--confident-after",
        type=int,
        default=CONFIDENT_AFTER,
        help="[spam] confident_after: the band's spam cut-off is raised for smaller training sets and lowered for "
        "larger ones, as the daemon's is",
    )
    parser.add_argument(
        "--spam-above-min",
        type=float,
        default=LOWEST_SPAM_ABOVE,
        help="[spam] spam_above_min: the lowest cut-off a training set larger than --confident-after is given",
    )
    parser.add_argument("--s", type=float, default=DEFAULT_PARAMS.s)
    parser.add_argument("--x", type=float, default=DEFAULT_PARAMS.x)
    parser.add_argument("--min-dev", type=float, default=DEFAULT_PARAMS.min_dev)
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_PARAMS.max_tokens)
    parser.add_argument(
        "--train",
        choices=("views", "ensemble", "toe", "all"),
        default="views",
        help="the three-view model of relentad/spam/views.py as `spam train` builds it (default), or the single "
        "model with summed train-on-error orders, one order, or every message",
    )
    parser.add_argument(
        "--list-mail-shift",
        type=float,
        default=LIST_MAIL_SHIFT,
        help="[spam] list_mail_shift: the spam cut-off is this much lower (log-odds) for discussion-list mail",
    )
    parser.add_argument("--no-bogofilter", action="store_true")
    parser.add_argument(
        "--scores",
        type=Path,
        default=None,
        help="also write every held-out score of ours to this file, one JSON object per line (path, spam, score, "
        "list_mail, and the score the cut-off is compared with): for looking at the misses and the ham tail",
    )
    args = parser.parse_args(argv)

    params = Params(s=args.s, x=args.x, min_dev=args.min_dev, max_tokens=args.max_tokens)
    band = Thresholds(args.ham_below, args.spam_above)
    mails = load(args.corpus)
    if args.test is not None:
        rounds = [(mails, load(args.test))]
        how = f"trained on all of it, tested on {args.test}"
    elif args.split is not None:
        rounds = [split(mails, args.split, args.seed + k) for k in range(max(args.repeat, 1))]
        how = f"split {args.split:g} train / {1 - args.split:g} test"
        if args.repeat > 1:
            how += f", {args.repeat} seeds pooled from"
    else:
        seeds = [int(s) for s in args.fold_seeds.split(",")] if args.fold_seeds else [args.seed]
        rounds = []
        for seed in seeds:
            parts = folds(mails, args.folds, seed)
            rounds += [([m for j, p in enumerate(parts) if j != i for m in p], parts[i]) for i in range(args.folds)]
        how = f"{args.folds}-fold cross-validation" + (
            f", fold seeds {args.fold_seeds} pooled" if args.fold_seeds else ""
        )
    if args.train_fraction < 1:
        rounds = [
            (subsample(train, args.train_fraction, args.seed * 100 + i), test) for i, (train, test) in enumerate(rounds)
        ]
        how += f", each trained on a random {args.train_fraction:g} of its training messages"
    exe = None if args.no_bogofilter else shutil.which("bogofilter")
    smallest = min(model_size((sum(m.spam for m in train), sum(not m.spam for m in train))) for train, _ in rounds)
    band = scaled_thresholds(band, smallest, args.confident_after, args.spam_above_min)

    list_shift = args.list_mail_shift if smallest >= args.confident_after else 0.0  # verdicts.lowers_list_mail
    ours, bogo = Run("relentad", list_shift), Run("bogofilter")
    for train, test in rounds:
        run_ours(train, test, params, args.train, ours)
        if exe is not None:
            run_bogofilter(exe, train, test, bogo)

    nham = sum(not m.spam for m in mails)
    print(f"corpus {args.corpus}: {nham} ham, {len(mails) - nham} spam; {how}, seed {args.seed}")
    if args.test is not None:
        tested = rounds[0][1]
        print(f"test corpus: {sum(not m.spam for m in tested)} ham, {sum(m.spam for m in tested)} spam")
    print(f"relentad params {params}, training: {args.train} ({usable_cores()} usable cores)")
    print()
    print(
        f"{'filter / cut-offs':<34} {'acc%':>7} {'FP%  (n)':>11} {'FN%  (n)':>12} {'unsure%':>7}"
        f" {'train/s':>9} {'score/s':>9}"
    )
    print(row("relentad  single 0.5", ours, SINGLE_CUTOFF))
    print(row(f"relentad  band {band.ham_below:g}/{band.spam_above:.3g}", ours, band))
    tok_ms, score_ms = (1000 * cpu / ours.score_n for cpu in (ours.tokenize_cpu, ours.score_cpu))
    print(f"relentad CPU per scored message: tokenize {tok_ms:.3f} ms + score {score_ms:.3f} ms (in-memory counts)")
    if exe is not None:
        print(row("bogofilter single 0.5", bogo, SINGLE_CUTOFF))
        label = f"bogofilter band {BOGOFILTER_BAND.ham_below:g}/{BOGOFILTER_BAND.spam_above:g}"
        print(row(label, bogo, BOGOFILTER_BAND))
        speed = (ours.score_n / ours.score_s) / (bogo.score_n / bogo.score_s)
        print(f"\nscoring speed ratio relentad / bogofilter: {speed:.2f}")
    else:
        print("\nbogofilter not run (not installed or --no-bogofilter)")
    print()
    print(at_fp_limit(ours))
    if exe is not None:
        print(at_fp_limit(bogo))
    print("\n".join(sweep(ours, band)))
    if args.scores is not None:
        write_scores(args.scores, ours)
        print(f"\nscores of {len(ours.results)} held-out messages written to {args.scores}")
    return 0


def write_scores(path: Path, run: Run) -> None:
    """One JSON line per held-out score, in the order scored (fold seed by fold seed, fold by fold)."""
    with path.open("w", encoding="utf-8") as out:
        for result in run.results:
            fields = result._asdict() | {"judged": cut_passed(result, run.list_mail_shift)}
            out.write(json.dumps(fields) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
