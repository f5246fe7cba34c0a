"""Scoring a folder of message files (``relentad spam score`` of many files), spread over the CPU cores.

Tokenizing and scoring against a model loaded into memory is pure CPU work, about 1.5-1.8 ms per message on one
core, so one process tops out near 550 messages/s. Worker processes forked after the model is loaded share it
copy-on-write (nothing is pickled but file names and scores), and each scores chunks of the files; the order of
the results is the order of the names. A one-core machine, or a short list, is scored in this process: starting a
worker costs more than a few dozen messages.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ..errors import RelentadError
from .tokenize import tokenize
from .views import ViewModels

FILES_PER_WORKER = 200
"""Fewer files than this per extra process are scored in this one (a fork and its pair tables cost ~10 ms)."""

_job: tuple[ViewModels, tuple[str, ...]] | None = None
"""The model and own host names, set before the workers are forked, so that they inherit rather than unpickle it."""


def usable_cores() -> int:
    """The CPUs this process may run on (the affinity mask, as systemd's CPUAffinity= or taskset set it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def score_file(name: str) -> float:
    """One file's combined score against the model of the current job."""
    assert _job is not None, "score_files sets the job before scoring"
    models, own_hosts = _job
    return models.score(tokenize(Path(name).read_bytes(), own_hosts=own_hosts))


def score_files(
    names: Sequence[str], models: ViewModels, own_hosts: tuple[str, ...], workers: int | None = None
) -> list[float]:
    """Scores of ``names`` in order. ``workers`` defaults to the usable cores, fewer for a short list; an error
    reading a file (OSError) is raised here as it would be in a single process, and a worker that dies is a
    ``RelentadError`` (``multiprocessing.Pool`` would wait for it forever)."""
    global _job
    if workers is None:
        workers = min(usable_cores(), len(names) // FILES_PER_WORKER)
    _job = (models, own_hosts)
    try:
        if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
            return [score_file(name) for name in names]
        chunk = max(16, min(256, len(names) // (workers * 8)))
        sys.stdout.flush()  # a forked worker flushes what it inherited when it exits
        sys.stderr.flush()
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(score_file, names, chunksize=chunk))
    except BrokenProcessPool as exc:  # a worker killed (out of memory, a signal): say so instead of hanging
        raise RelentadError(f"a scoring worker process died ({exc}); try fewer files at once") from None
    finally:
        _job = None
