"""The CLI's CPU-bound spam work spread over the cores: scoring a folder, and bulk training's orders.

Tokenizing and scoring against a model in memory costs about 1.2-1.5 ms per message on one core, so one process
tops out near 750 messages/s; bulk training runs 24 independent train-on-error orders (8 per view model), each a
few seconds for a few thousand messages. Worker processes forked after the inputs are in memory inherit them
copy-on-write, so nothing is pickled but file names, order numbers and the results, and the results come back in
the order they were asked for: the same scores and counts as one process gives. Short jobs, or a one-core
machine, stay in this process: a worker costs about 10 ms to start.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import RelentadError
from .classifier import (
    DEFAULT_PARAMS,
    ENSEMBLE_ROUNDS,
    TRAIN_MARGIN,
    MemoryCounts,
    Params,
    Thresholds,
    order_times,
    sum_times,
)
from .tokenize import through_discussion_list, tokenize

if TYPE_CHECKING:  # views trains through this module
    from .views import ViewModels

FILES_PER_WORKER = 200
"""Fewer files than this per extra process are scored in this one."""

FREEZE_FROM = 250
"""From this many files the models are frozen before scoring (``ViewModels.scorer``): about 0.1 s for a model of a
few thousand messages, won back at about 0.4 ms per message."""

MESSAGES_TO_FORK = 100
"""Bulk training of fewer messages than this runs its orders in this process (each takes milliseconds)."""

_job: Any = None
"""The inputs of the current job, set before the workers are forked so that they inherit rather than unpickle them."""

Item = TypeVar("Item")
Result = TypeVar("Result")


def usable_cores() -> int:
    """The CPUs this process may run on (the affinity mask, as systemd's CPUAffinity= or taskset set it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _spread(work: Callable[[Item], Result], items: Sequence[Item], job: Any, workers: int) -> list[Result]:
    """``[work(item) for item in items]`` with ``_job`` set, on ``workers`` forked processes when more than one."""
    global _job
    _job = job
    try:
        if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
            return [work(item) for item in items]
        chunk = max(1, min(256, len(items) // (workers * 8)))
        sys.stdout.flush()  # a forked worker flushes what it inherited when it exits
        sys.stderr.flush()
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(work, items, chunksize=chunk))
    except BrokenProcessPool as exc:  # a worker killed (out of memory, a signal): say so instead of hanging
        raise RelentadError(f"a spam worker process died ({exc}); try fewer messages at once") from None
    finally:
        _job = None


def score_file(name: str) -> tuple[float, bool]:
    """One file's combined score against the model of the current job, and whether it came through a discussion list
    (its spam cut-off is lower: ``verdicts.for_message``)."""
    scorer, own_hosts = _job
    tokens = tokenize(Path(name).read_bytes(), own_hosts=own_hosts)
    return float(scorer(tokens)), through_discussion_list(tokens)


def score_files(
    names: Sequence[str], models: ViewModels, own_hosts: tuple[str, ...], workers: int | None = None
) -> list[tuple[float, bool]]:
    """:func:`score_file` of ``names`` in order. ``workers`` defaults to the usable cores, fewer for a short list; an
    error reading a file (OSError) is raised here as it would be in a single process, and a worker that dies is a
    ``RelentadError`` (``multiprocessing.Pool`` would wait for it forever)."""
    if workers is None:
        workers = min(usable_cores(), len(names) // FILES_PER_WORKER)
    scorer = models.scorer() if len(names) >= FREEZE_FROM else models.score
    return _spread(score_file, names, (scorer, own_hosts), workers)


def _one_order(model_and_round: tuple[int, int]) -> list[int]:
    model, round_ = model_and_round
    corpora, params, margin, seed, below = _job
    return order_times(corpora[model], params, margin, seed + round_, below[model] if below else None)


def ensemble_times(
    corpora: Sequence[Sequence[tuple[Collection[str], bool]]],
    params: Params = DEFAULT_PARAMS,
    margin: Thresholds = TRAIN_MARGIN,
    rounds: int = ENSEMBLE_ROUNDS,
    seed: int = 0,
    workers: int | None = None,
    below: Sequence[MemoryCounts] | None = None,
) -> list[list[int]]:
    """``classifier.ensemble_times`` of each corpus (one per view model, the same messages), every (model, order)
    run a job of its own: for bulk training on several cores, with the counts one process gives. ``below``: per
    corpus, the model its counts will be scored with (``classifier.order_times``)."""
    if workers is None:
        workers = usable_cores() if max(map(len, corpora), default=0) >= MESSAGES_TO_FORK else 1
    jobs = [(model, round_) for model in range(len(corpora)) for round_ in range(rounds)]
    orders = _spread(_one_order, jobs, (corpora, params, margin, seed, below), min(workers, len(jobs)))
    return [sum_times(len(corpus), orders[m * rounds : (m + 1) * rounds]) for m, corpus in enumerate(corpora)]
