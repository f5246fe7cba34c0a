"""Rebuilding an account's spam model from its recorded lessons, the way ``relentad spam train`` builds a model.

Why: a user's lessons (Junk moves, ``$Junk`` / ``$NotJunk``, replies: spam/training.py) are learned one at a time as
they come (``storage.train_message``: at least once, then again until the message scores clearly) and never
revisited, so each weighs what it weighed the day it came, whatever was learned after it. Bulk training instead
runs train-on-error over the whole corpus in eight orders and sums them (``classifier.train_ensemble``), which
cross-validation chose over every alternative. On the SpamAssassin corpus, a model learned from a simulated user's
corrections and replies (about 990 lessons, no global model) misses 8.8 % of the spam at 0.1 % false positives
learned one by one, and 3.8 % once the same lessons are rebuilt (scripts/bench/spam_lessons.py; README, "The spam
filter").

Every lesson is recorded with its exact tokens (``spam_trained``), so a model can be rebuilt from them at any time:
the daemon does it once a day for each account that learned something since its last rebuild, while there is no
global model (``[spam] rebuild_daily``; :func:`due` says why), working each one out in a worker process
(:func:`prepare_apart`) and swapping the counts in with one write job; ``relentad spam rebuild`` does it on demand.

Invariants: a rebuild replaces the scope's counts by exactly the ensemble's counts over its recorded lessons and
records how many times each model learned each lesson, so unlearning one afterwards is still exact; bulk-trained
messages recorded without tokens (no model needed them) stay out, as they were; the same lessons give the same
counts (seeded orders, lessons in key order); a token keeps the day it was last seen, so pruning by age goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import pickle
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import daily, metrics
from ..config import SpamConfig
from ..errors import RelentadError
from ..store import db
from ..store.db import Store
from . import storage
from .classifier import DEFAULT_PARAMS
from .tokenize import TOKENIZER_VERSION

log = logging.getLogger(__name__)

FIRST_DELAY = 600.0
"""Seconds after the daemon starts before the first daily rebuild: start-up and the first deliveries come first."""

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
"""Where ``relentad`` is imported from, for the worker process whatever its working folder."""

Lesson = tuple[bytes, list[str], bool]
"""(key, clean tokens, is_spam) of one recorded message, as ``storage.ensemble_times`` takes them."""
Mark = tuple[int, float, int]
"""(lessons, latest lesson time, learn count) of a scope: changes whenever a lesson is recorded or forgotten."""


@dataclass
class RebuildResult:
    """What a rebuild did, for the CLI and the daemon's log."""

    lessons: int = 0  # recorded messages relearned (those with tokens)
    before: int = 0  # the full model's learn operations over them before
    learned: int = 0  # … and after
    tokens: int = 0  # the scope's token rows after (before pruning)
    pruned: int = 0
    seconds: float = 0.0


def lesson_mark(conn: sqlite3.Connection, scope: int) -> Mark:
    row = conn.execute(
        "SELECT count(*), coalesce(max(trained), 0), coalesce(sum(times), 0) FROM spam_trained WHERE scope = ?",
        (scope,),
    ).fetchone()
    return int(row[0]), float(row[1]), int(row[2])


def read_lessons(conn: sqlite3.Connection, scope: int) -> tuple[list[Lesson], Mark]:
    """The scope's recorded messages that kept their tokens, in key order, and the mark they were read at, both in
    ONE read transaction (a lesson committed between two autocommit reads would be in the mark but not in the
    lessons, and :func:`swap` would put in place a model without it). Each distinct token string is kept once (most
    recur from message to message): with ``storage.ensemble_times``' tuples, the worker of 2,457 lessons peaks at
    97 MB instead of 177 MB, with the same result byte for byte."""
    read = functools.partial(_lessons_and_mark, scope=scope)
    return read(conn) if conn.in_transaction else db.in_snapshot(conn, read)  # a caller's transaction is one already


def _lessons_and_mark(conn: sqlite3.Connection, scope: int) -> tuple[list[Lesson], Mark]:
    lessons: list[Lesson] = []
    distinct: dict[str, str] = {}
    mark = lesson_mark(conn, scope)
    for key, kind, packed in conn.execute(
        "SELECT sha256, class, tokens FROM spam_trained WHERE scope = ? ORDER BY sha256", (scope,)
    ):
        tokens = [distinct.setdefault(token, token) for token in storage.unpack(packed)]
        if tokens:
            lessons.append((bytes(key), tokens, kind == "spam"))
    return lessons, mark


@dataclass(frozen=True, slots=True)
class Prepared:
    """A scope's lessons (keys), the mark they were read at, how many times the ensemble learns each, and the counts
    that gives: everything but the SQL, so that the write job holds the writer only for the rows."""

    scope: int
    keys: list[bytes]
    mark: Mark
    times: list[list[int]]
    deltas: dict[str, tuple[int, int]]
    totals: list[tuple[int, int]]


def _apply(conn: sqlite3.Connection, prepared: Prepared) -> RebuildResult:
    """Replace the scope's counts by those of learning each lesson as many times as the prepared orders say."""
    scope, keys, times, deltas = prepared.scope, prepared.keys, prepared.times, prepared.deltas
    now = time.time()
    today = storage.day(now)
    result = RebuildResult(lessons=len(keys), before=prepared.mark[2])  # the mark is checked unchanged
    seen = dict(conn.execute("SELECT token, seen FROM spam_tokens WHERE scope = ?", (scope,)).fetchall())
    conn.execute("DELETE FROM spam_tokens WHERE scope = ?", (scope,))
    conn.executemany(
        "INSERT INTO spam_tokens (scope, token, spam, ham, seen) VALUES (?, ?, ?, ?, ?)",
        [(scope, token, spam, ham, seen.get(token, today)) for token, (spam, ham) in sorted(deltas.items())],
    )
    (full, head, body) = prepared.totals
    conn.execute(
        """INSERT INTO spam_totals (scope, nspam, nham, head_spam, head_ham, body_spam, body_ham, tokens, updated,
                                    tokenizer, rebuilt)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (scope) DO UPDATE SET nspam = excluded.nspam, nham = excluded.nham,
               head_spam = excluded.head_spam, head_ham = excluded.head_ham, body_spam = excluded.body_spam,
               body_ham = excluded.body_ham, tokens = excluded.tokens, updated = excluded.updated,
               rebuilt = excluded.rebuilt""",
        (scope, *full, *head, *body, len(deltas), now, TOKENIZER_VERSION, now),
    )
    conn.executemany(
        "UPDATE spam_trained SET times = ?, head_times = ?, body_times = ? WHERE scope = ? AND sha256 = ?",
        [(*(max(t[i], 0) for t in times), scope, key) for i, key in enumerate(keys)],
    )
    result.learned = sum(max(count, 0) for count in times[0]) if keys else 0
    result.tokens = len(deltas)
    return result


def prepare(conn: sqlite3.Connection, scope: int, workers: int | None = None) -> Prepared:
    """Read ``scope``'s lessons and run the ensemble's orders over them, judging each with the global model under the
    account's as scoring and ``train_message`` do (seconds of CPU for a thousand lessons: on a read connection,
    outside any write transaction)."""
    lessons, mark = read_lessons(conn, scope)
    below = storage.models_below(conn, scope) if lessons else None
    times = storage.ensemble_times(lessons, DEFAULT_PARAMS, workers, below)
    deltas, totals = storage.ensemble_counts(lessons, times)
    return Prepared(scope, [key for key, _, _ in lessons], mark, times, deltas, totals)


def swap(conn: sqlite3.Connection, prepared: Prepared, spam: SpamConfig) -> RebuildResult | None:
    """In a write transaction: put the prepared counts in place and prune, unless the scope recorded or forgot a
    lesson since it was read (None: nothing changed; prepare again)."""
    if lesson_mark(conn, prepared.scope) != prepared.mark:
        return None
    result = _apply(conn, prepared)
    result.pruned = storage.prune(conn, prepared.scope, spam.max_tokens, spam.max_age_days)
    return result


BULK_SOURCES = ("cli", "mailboxes")
"""``spam_trained.source`` of bulk training (``spam train``): its counts already are the ensemble's."""


def due(conn: sqlite3.Connection) -> list[int]:
    """Accounts that learned a lesson one at a time (IMAP, replies) since their model was last rebuilt, while there is
    no global model (never the global model itself: ``spam train`` builds that one whole). Bulk training alone does
    not make an account due: it trains the ensemble already, and a rebuild of its recorded messages measured the same
    (README, "The daily rebuild"), so rebuilding right after it would be minutes of CPU for nothing.

    Over a global model the rebuild measured as a trade rather than a gain (scripts/bench/spam_lessons.py
    ``--global-share 0.5``, three fold seeds: at the daemon's band 1.1 points less spam missed, but 10 ham of 6,225
    in Junk instead of 7, and the same spam missed at FP <= 0.1 %), so the daemon leaves those accounts to learn one
    lesson at a time; ``relentad spam rebuild`` still rebuilds them on demand."""
    if storage.has_global(conn):
        return []
    rows = conn.execute(
        """SELECT t.scope FROM spam_totals t WHERE t.scope != ? AND EXISTS
               (SELECT 1 FROM spam_trained r WHERE r.scope = t.scope AND r.trained > t.rebuilt
                                                AND r.source NOT IN (?, ?)) ORDER BY t.scope""",
        (storage.GLOBAL, *BULK_SOURCES),
    ).fetchall()
    return [int(row[0]) for row in rows]


async def prepare_apart(path: Path, scope: int) -> Prepared:
    """:func:`prepare` in a child process (spam/rebuild_worker.py) on a read-only connection of its own, so that the
    orders' seconds of CPU never hold the GIL the event loop needs; cancelling kills the child."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")])))
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relentad.spam.rebuild_worker",
        str(path),
        str(scope),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await child.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
        raise
    if child.returncode != 0:
        last = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit status {child.returncode}"]
        raise RelentadError(f"spam rebuild: the worker process for account {scope} failed: {last[0]}")
    try:
        prepared = pickle.loads(out)  # noqa: S301 - the bytes come from the worker this function started
    except Exception as exc:  # anything else on its stdout: say so in one line
        prepared = exc
    if not isinstance(prepared, Prepared):
        raise RelentadError(f"spam rebuild: the worker process for account {scope} wrote no result ({prepared!r:.80})")
    return prepared


async def rebuild_due(store: Store, spam: SpamConfig) -> dict[int, RebuildResult | None]:
    """Rebuild every account :func:`due`, one at a time: the orders run in a child process, then one write job swaps
    the counts in, unless a lesson came meanwhile (None: the account stays due). An account whose worker fails is
    left due; the others are still rebuilt. Each outcome is logged and counted here, in one place."""
    done: dict[int, RebuildResult | None] = {}
    for scope in store.read(due):
        started = time.perf_counter()
        try:
            prepared = await prepare_apart(store.path, scope)
        except RelentadError as exc:
            log.warning("%s; trying again next time", exc)
            metrics.spam_rebuild("failed")
            continue
        result = done[scope] = await store.write(functools.partial(swap, prepared=prepared, spam=spam))
        if result is None:
            log.info("spam rebuild: account %d learned meanwhile; trying again next time", scope)
            metrics.spam_rebuild("deferred")
            continue
        result.seconds = time.perf_counter() - started
        log.info(
            "spam rebuild: account %d, %d lessons relearned in %.1fs (%d learn operations, %d before)",
            scope,
            result.lessons,
            result.seconds,
            result.learned,
            result.before,
        )
        metrics.spam_rebuild("rebuilt")
    return done


async def run_daily(store: Store, settings: Callable[[], SpamConfig], interval: float = daily.DAY) -> None:
    """The daemon's daily job: rebuild the accounts that learned something, :data:`FIRST_DELAY` after start and
    then every ``interval`` seconds, while ``[spam] rebuild_daily`` (and learning) is on; until cancelled."""

    async def rebuild_now() -> None:
        spam = settings()
        if spam.enabled and spam.learn and spam.rebuild_daily:
            await rebuild_due(store, spam)

    await daily.every_day(rebuild_now, what="spam rebuild", log=log, first_delay=FIRST_DELAY, interval=interval)
