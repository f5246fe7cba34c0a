"""SQLite connections and the single writer thread with group commit.

Invariants (DESIGN.md §3):
- WAL mode, ``synchronous=FULL``, foreign keys on: a transaction that returned is on disk.
- In the daemon, exactly one thread writes. Protocol code calls ``await store.write(fn)``; the writer runs every
  job waiting in its queue inside ONE transaction (each job in its own savepoint, so one failing job does not
  undo the others), commits once, then resolves the futures. A client is answered only after that commit.
- ``fn`` runs on the writer thread with the write connection; it must do no network I/O and must not touch the
  event loop. It may return anything; its exception is re-raised to its awaiting caller only.
- A failed COMMIT (disk full, I/O error) fails every job of the batch with :class:`StoreUnavailable`.
- Readers use their own connections; WAL readers never block the writer. Busy waits are bounded by
  ``busy_timeout`` and retried here, never surfaced as a crash.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..errors import StoreUnavailable
from . import migrations

log = logging.getLogger(__name__)

T = TypeVar("T")


def in_snapshot(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn`` in one read transaction, so that all its queries see one consistent snapshot (an autocommit
    connection gives each query its own)."""
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        conn.execute("COMMIT")  # it only read: this ends the snapshot


WriteFn = Callable[[sqlite3.Connection], T]

BUSY_TIMEOUT_MS = 10_000
_BUSY_RETRIES = 5


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with relentad's pragmas; ``isolation_level=None`` so transactions are explicit."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    # Statement journals (every statement inside the group commit's per-job savepoints needs one), temp tables and
    # sort spills in memory, not in temp files: a file per statement journal cost ~0.1-0.4 ms per delivery.
    # No effect on durability: the WAL alone makes a committed transaction durable.
    conn.execute("PRAGMA temp_store = MEMORY")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        # what a purge deletes is overwritten with zeros, not left in free pages (the privacy policy's purge);
        # Debian's SQLite does so by default, another build might not
        conn.execute("PRAGMA secure_delete = ON")
    conn.row_factory = sqlite3.Row
    return conn


def truncate_wal(path: Path) -> None:
    """Copy the write-ahead log into the database and empty it: after a purge, the deleted mail's pages would
    otherwise stay readable in the ``-wal`` file until later writes happen to overwrite them. Blocking (it waits
    for the writer lock and for readers of older snapshots, up to the busy timeout): call it in a thread."""
    conn = connect(path)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("the write-ahead log was not emptied after the purge: a reader or writer was busy")
    finally:
        conn.close()


def open_database(path: Path) -> sqlite3.Connection:
    """Create the folder and database if needed, apply pending migrations, return a write connection."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    migrations.apply(conn)
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ROLLBACK on error): for the CLI and other single-shot writers."""
    _begin_immediate(conn)
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def on_the_side(conn: sqlite3.Connection, logger: logging.Logger, failed: str) -> Iterator[None]:
    """A write that rides in another's transaction and must never cost it (a report's record, a vacation reply):
    in a savepoint of its own, so that its failure is logged (``failed`` says what failed) and rolled back alone."""
    conn.execute("SAVEPOINT on_the_side")
    try:
        yield
    except Exception:
        logger.exception("%s", failed)
        conn.execute("ROLLBACK TO on_the_side")
    conn.execute("RELEASE on_the_side")


def _begin_immediate(conn: sqlite3.Connection) -> None:
    """Take the write lock, retrying past busy_timeout a few times: another process (the CLI) may hold it."""
    for attempt in range(_BUSY_RETRIES):
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            log.warning("database busy, retrying (attempt %d)", attempt + 1)
    conn.execute("BEGIN IMMEDIATE")


@dataclass
class _Job:
    fn: WriteFn[Any]
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None


# Upper bounds (seconds) of the commit latency histogram that relentad.metrics exports.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class WriterStats:
    """Counters the benchmark and metrics read: how well group commit batches, and how long commits take.

    Only the writer thread changes them; readers on other threads see whole ints (a scrape may be one commit late).
    """

    commits: int = 0
    jobs: int = 0
    commit_seconds: float = 0.0
    failures: int = 0
    # commit_buckets[i] counts commits that took at most COMMIT_BUCKETS[i] (not cumulative; the last is +Inf).
    commit_buckets: list[int] = field(default_factory=lambda: [0] * (len(COMMIT_BUCKETS) + 1))

    def record(self, seconds: float, jobs: int) -> None:
        index = bisect.bisect_left(COMMIT_BUCKETS, seconds)
        self.commit_buckets[index] += 1
        self.commits += 1
        self.jobs += jobs
        self.commit_seconds += seconds


_STOP = object()


class Store:
    """The daemon's handle on the database: one writer thread, one reader connection for the loop thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer_conn = open_database(path)
        self._reader = connect(path)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.stats = WriterStats()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the writer thread; futures are resolved on ``loop``."""
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    async def write(self, fn: WriteFn[T]) -> T:
        """Run ``fn(conn)`` in the next group-commit transaction; returns once it is durably committed."""
        assert self._loop is not None, "Store.start() was not called"
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Job(fn, future))
        return await future

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a short query on the loop thread's reader connection (WAL: never blocked by the writer)."""
        return fn(self._reader)

    def close(self) -> None:
        """Finish queued writes, stop the writer, close connections."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        self._reader.close()
        with contextlib.suppress(sqlite3.Error):
            self._writer_conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._writer_conn.close()

    # -- writer thread -------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch: list[_Job] = [item]
            stop = False
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Job]) -> None:
        conn = self._writer_conn
        started = time.perf_counter()
        try:
            _begin_immediate(conn)
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    job.result = job.fn(conn)
                except Exception as exc:  # one job's failure is its own
                    job.error = exc
                    conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("store commit failed: %s", exc)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self.stats.failures += 1
            failure = StoreUnavailable(f"database write failed: {exc}")
            for job in batch:
                job.error = failure
        elapsed = time.perf_counter() - started
        self.stats.record(elapsed, len(batch))
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown: nobody is waiting
            self._loop.call_soon_threadsafe(_settle, batch)


def _settle(batch: list[_Job]) -> None:
    """Resolve the futures of a committed batch (runs on the event loop)."""
    for job in batch:
        if job.future.done():
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)
