"""The store's writer thread: group commit, per-job isolation, durability pragmas."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from relentad.errors import StoreUnavailable
from relentad.store.db import Store, connect, on_the_side, truncate_wal


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "db.sqlite")
    store.start(asyncio.get_running_loop())
    store._writer_conn.execute("CREATE TABLE t (v INTEGER UNIQUE)")
    yield store
    store.close()


def insert(value: int):  # type: ignore[no-untyped-def]
    def job(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
        return value * 2

    return job


async def test_pragmas_make_commits_durable(tmp_path: Path) -> None:
    conn = connect(tmp_path / "x.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


async def test_concurrent_writes_share_commits(store: Store) -> None:
    results = await asyncio.gather(*(store.write(insert(i)) for i in range(200)))
    assert results == [i * 2 for i in range(200)]
    assert store.read(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 200
    assert store.stats.jobs == 200
    assert store.stats.commits < 200, "jobs waiting together are committed together"


async def test_a_failing_job_fails_alone(store: Store) -> None:
    await store.write(insert(1))

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (v) VALUES (100)")
        raise ValueError("boom")

    outcomes = await asyncio.gather(
        store.write(insert(2)), store.write(half_then_fail), store.write(insert(1)), store.write(insert(3)),
        return_exceptions=True,
    )  # fmt: skip
    assert outcomes[0] == 4 and outcomes[3] == 6
    assert isinstance(outcomes[1], ValueError)
    assert isinstance(outcomes[2], sqlite3.IntegrityError)
    values = store.read(lambda c: [r[0] for r in c.execute("SELECT v FROM t ORDER BY v")])
    assert values == [1, 2, 3], "the failed jobs left nothing behind, the others committed"


async def test_commit_failure_fails_every_job_of_the_batch(store: Store) -> None:
    def poison(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (v) VALUES (7)")
        conn.execute("COMMIT")  # breaks the writer's transaction: its COMMIT then fails

    outcome = await asyncio.gather(store.write(poison), return_exceptions=True)
    assert isinstance(outcome[0], StoreUnavailable | sqlite3.Error)
    assert await store.write(insert(8)) == 16, "the writer keeps working afterwards"


async def test_a_write_on_the_side_fails_alone(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """A side write (a report's record, a vacation reply) that fails is rolled back alone and logged: the writes
    before and after it in the same job, and the job itself, stand."""
    side = logging.getLogger("test.side")

    def job(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (v) VALUES (1)")
        with on_the_side(conn, side, "side write failed"):
            conn.execute("INSERT INTO t (v) VALUES (2)")
            conn.execute("INSERT INTO t (v) VALUES (1)")  # UNIQUE: fails, and takes v = 2 with it
        with on_the_side(conn, side, "never logged"):
            conn.execute("INSERT INTO t (v) VALUES (3)")

    await store.write(job)
    rows = store._writer_conn.execute("SELECT v FROM t ORDER BY v").fetchall()
    assert [v for (v,) in rows] == [1, 3]
    assert [r.getMessage() for r in caplog.records if r.name == "test.side"] == ["side write failed"]


def test_what_is_deleted_leaves_the_database_and_the_write_ahead_log(tmp_path: Path) -> None:
    """The purge deleted mail from the tables, but its text stayed readable in the ``-wal`` file until later writes
    overwrote it (found with ``strings``), and in free pages wherever SQLite was built without secure_delete."""
    path = tmp_path / "db.sqlite"
    conn = connect(path)
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # as a busy daemon's reader can hold it back
    conn.execute("CREATE TABLE mail (body BLOB)")
    conn.execute("INSERT INTO mail VALUES (?)", (b"purge-me-" * 500,))
    conn.execute("DELETE FROM mail")
    assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert b"purge-me-" in (tmp_path / "db.sqlite-wal").read_bytes()
    truncate_wal(path)
    assert (tmp_path / "db.sqlite-wal").read_bytes() == b""
    assert b"purge-me-" not in path.read_bytes()
    conn.close()
