"""The background job that fills SEARCH's full-text index (:mod:`.searchindex`), and its forgetting of purged blobs.

Delivery never waits for the index: new blobs lie above the watermark, where SEARCH scans them, until this job
reads a batch of them on its own read connection (in a thread), extracts their texts, and hands the rows to the
store writer in one small job that also moves the watermark (durable with them: a restart goes on from there).
Work per batch is bounded (``BATCH`` blobs, at most ``BATCH_BYTES`` read) and batches are spaced out, so a freshly
upgraded database is indexed without starving deliveries or IMAP sessions.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable

from ..config import Config
from ..store import db
from ..store.db import Store
from . import searchindex
from .commands.search import index_texts

log = logging.getLogger(__name__)

BATCH = 25
BATCH_BYTES = 4 * 1024 * 1024
PAUSE = 0.05
"""Seconds between two batches while catching up."""
IDLE = 1.0
"""Seconds between two looks for new blobs once everything is indexed (one indexed query)."""

FORGET_AT_MOST = 500
"""A purge takes at most this many blobs (or a tenth of the indexed ones, if more) out of the index one by one
(their texts computed again: about 0.8 ms each, in the writer's transaction: 5,000 took 3.9 s); past that the
index is emptied (``delete-all``: a moment) and the background job rebuilds it, SEARCH scanning meanwhile."""

Rows = list[tuple[int, str, str]]


def _texts(blob_id: int, data: bytes, structure: str | None) -> tuple[int, str, str]:
    """What the index holds of a blob; the ``UNINDEXED`` mark (always a candidate: scanned as without the index)
    when its texts are too long to insert in one short writer job, or when reading them fails (a parser bug must
    not stop indexing, and the matcher may still read the parts that did not fail)."""
    try:
        head, body = index_texts(data, structure)
    except Exception:
        log.exception("search index: cannot read blob %d", blob_id)
        return blob_id, searchindex.UNINDEXED, searchindex.UNINDEXED
    if len(head) + len(body) > searchindex.MAX_TEXT:
        return blob_id, searchindex.UNINDEXED, searchindex.UNINDEXED
    return blob_id, head, body


def pending(conn: sqlite3.Connection, batch: int = BATCH) -> tuple[int, int, Rows]:
    """Read side: (watermark read, new watermark, rows) for the next blobs above the watermark."""
    since, _ = searchindex.state(conn)
    rows: Rows = []
    upto, total = since, 0
    for blob_id, data, structure in conn.execute(
        "SELECT id, data, structure FROM blobs WHERE id > ? ORDER BY id LIMIT ?", (since, batch)
    ):
        rows.append(_texts(int(blob_id), bytes(data), structure))
        upto, total = int(blob_id), total + len(data)
        if total >= BATCH_BYTES:
            break
    return since, upto, rows


def step(conn: sqlite3.Connection, writer: sqlite3.Connection) -> int:
    """Index one batch with plain connections (the CLI's rebuild, tests); returns how many blobs it covered."""
    with db.transaction(writer):
        if searchindex.state(writer)[1] != searchindex.version():
            searchindex.reset(writer)
    since, upto, rows = db.in_snapshot(conn, pending)
    if upto == since:
        return 0
    with db.transaction(writer):
        searchindex.add(writer, rows, upto, since)
    return len(rows)


def forget(conn: sqlite3.Connection, where: str) -> None:
    """Writer, before ``DELETE FROM blobs WHERE <where>``: take those blobs out of the index (privacy: nothing of a
    purged message stays). An index made by other code cannot be told its texts: it is emptied and rebuilt."""
    mark, code = searchindex.state(conn)
    if code != searchindex.version():
        if mark:
            searchindex.reset(conn)
        return
    gone, indexed = conn.execute(
        f"SELECT count(*) FILTER (WHERE {where}), count(*) FROM blobs WHERE id <= ?", (mark,)
    ).fetchone()
    if gone > max(FORGET_AT_MOST, indexed // 10):
        log.info("search index: %d purged message(s) are rebuilt around faster than forgotten; rebuilding it", gone)
        searchindex.reset(conn)
        return
    rows = (
        _texts(int(blob_id), bytes(data), structure)
        for blob_id, data, structure in conn.execute(
            f"SELECT id, data, structure FROM blobs WHERE ({where}) AND id <= ?", (mark,)
        )
    )
    searchindex.remove(conn, rows)


_merging = False
"""The daemon's merge after a purge is running: the indexer waits, so that no new segment restarts it."""


async def merge(store: Store) -> int:
    """After a purge removed blobs: merge the index in bounded writer jobs until a single segment is left and
    nothing of the removed blobs stays in its pages; deliveries and sessions write between the steps."""
    global _merging
    _merging = True
    try:
        budget = store.read(searchindex.merge_budget)
        for steps in range(1, budget + 1):
            if not await store.write(searchindex.merge_step):
                return steps
        await store.write(searchindex.optimize)
        return budget + 1
    finally:
        _merging = False


def merge_now(conn: sqlite3.Connection) -> int:
    """:func:`merge` on a plain connection (the CLI, tests): a transaction per step; returns the steps. The
    daemon's indexer may add segments meanwhile: past the budget one ``optimize`` finishes it."""
    budget = searchindex.merge_budget(conn)
    for steps in range(1, budget + 1):
        with db.transaction(conn):
            if not searchindex.merge_step(conn):
                return steps
    with db.transaction(conn):
        searchindex.optimize(conn)
    return budget + 1


async def run(store: Store, settings: Callable[[], Config]) -> None:
    """The daemon's job: while ``[imap] search_index`` is on, index new blobs batch by batch, until cancelled. An
    error is logged and retried a minute later (SEARCH meanwhile scans what is not indexed)."""
    reader: sqlite3.Connection | None = None
    reading: asyncio.Future[tuple[int, int, Rows]] | None = None
    try:
        while True:
            try:
                config = settings()
                if not config.imap.search_index or _merging:
                    await asyncio.sleep(IDLE)
                    continue
                if reader is None:
                    reader = db.connect(config.database_path, readonly=True)
                if store.read(searchindex.state)[1] != searchindex.version():
                    await store.write(_reset_if_stale)
                reading = asyncio.ensure_future(asyncio.to_thread(db.in_snapshot, reader, pending))
                since, upto, rows = await reading
                if upto > since:
                    await store.write(functools.partial(searchindex.add, rows=rows, upto=upto, since=since))
                await asyncio.sleep(PAUSE if upto > since else IDLE)
            except (sqlite3.Error, OSError):
                log.exception("search index: indexing failed; retrying in a minute")
                await asyncio.sleep(60.0)
    finally:
        if reader is not None:
            if reading is not None and not reading.done():  # cancelled mid-read: close once the thread is done
                reading.add_done_callback(functools.partial(_close, reader))
            else:
                reader.close()


def _reset_if_stale(conn: sqlite3.Connection) -> None:
    code = searchindex.state(conn)[1]
    if code != searchindex.version():
        why = "made by other code (an upgrade); rebuilding it" if code else "building it"
        log.info("search index: %s in the background", why)
        searchindex.reset(conn)


def _close(reader: sqlite3.Connection, _: object) -> None:
    reader.close()
