"""The archive's ledger (lifecycle/archive.py): a hash chain that a changed message, a changed field or a deleted
entry breaks, and that the purge of its front keeps verifiable."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from relentad import message
from relentad.lifecycle import archive, retention
from relentad.store import db, messages
from tests.support.store import database_with

T0 = 1_800_000_000.0


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = database_with(tmp_path / "a.db", "alice@example.test")
    yield connection
    connection.close()


def put(conn: sqlite3.Connection, n: int, when: float) -> None:
    raw = f"From: p{n}@elsewhere.test\r\nSubject: m{n}\r\nMessage-ID: <{n}@x>\r\n\r\nbody {n}\r\n".encode()
    with db.transaction(conn):
        blob_id, _ = messages.put_blob(conn, raw)
        archive.record(
            conn, account_id=1, direction="in", blob_id=blob_id, prefix=b"Delivered-To: alice@example.test\r\n",
            raw=raw, mail_from=f"p{n}@elsewhere.test", recipients=["alice@example.test"], parsed=message.parse(raw),
            now=when,
        )  # fmt: skip


def rows_and_problem(verdict: archive.Verdict) -> tuple[int, str]:
    return verdict.rows, verdict.problem


def test_the_chain_finds_every_kind_of_change(conn: sqlite3.Connection) -> None:
    for n in range(4):
        put(conn, n, T0 + n)
    verdict = archive.verify(conn)
    assert (verdict.rows, verdict.problem, verdict.head) == (4, "", archive.head(conn))
    [found] = archive.search(conn, archive.Query(subject="M2"))
    assert (found.account, found.direction, found.message_id) == ("alice@example.test", "in", "2@x")
    changes = [
        ("UPDATE archive SET subject = 'harmless' WHERE id = 2", "entry 2: the chain is broken"),
        (
            "UPDATE blobs SET data = CAST(replace(data, 'body 2', 'body X') AS BLOB) "
            "WHERE id = (SELECT blob_id FROM archive WHERE id = 3)",
            "entry 3: the message's bytes",
        ),
        ("DELETE FROM archive WHERE id = 2", "entry 3: the chain is broken"),
    ]
    for change, problem in changes:
        conn.execute("SAVEPOINT s")
        conn.execute(change)
        verdict = archive.verify(conn)
        assert verdict.problem.startswith(problem), (change, verdict)
        conn.execute("ROLLBACK TO s")
        conn.execute("RELEASE s")
    assert archive.verify(conn).problem == ""


def test_the_purge_takes_the_front_and_the_rest_still_verifies(conn: sqlite3.Connection) -> None:
    for n in range(5):
        put(conn, n, T0 + n * archive.DAY)
    blobs = conn.execute("SELECT count(*) FROM blobs").fetchone()[0]
    with db.transaction(conn):
        result = retention.purge(conn, 90, now=T0 + 12 * archive.DAY, archive_days=10)
    assert result.archived == 2 and result.blobs == 2  # the two archived only: their blobs go too
    assert [e.subject for e in archive.search(conn, archive.Query())] == ["m2", "m3", "m4"]
    assert rows_and_problem(archive.verify(conn)) == (3, "")
    put(conn, 5, T0 + 13 * archive.DAY)  # links to the last kept entry, not to the anchor
    assert rows_and_problem(archive.verify(conn)) == (4, "")
    assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == blobs - 2 + 1
