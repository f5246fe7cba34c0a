"""Rebuilding an account's model from its recorded lessons (spam/rebuild.py): the counts bulk training gives the
same messages, exact unlearning afterwards, a lesson that comes meanwhile, which accounts are due, the daemon's job."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from relentad import metrics
from relentad.config import SpamConfig
from relentad.errors import RelentadError
from relentad.spam import rebuild, storage
from relentad.spam.storage import GLOBAL
from relentad.store import db
from relentad.store.db import Store

SPAM = SpamConfig()
SPAMMY = frozenset({"viagra", "cheap", "winner", "subj:free", "hdr:x-mailer-bulk", "url:pills.test"})
HAMMY = frozenset({"meeting", "agenda", "tuesday", "subj:minutes", "from:colleague", "url:partner.test"})


def lessons(n: int = 12) -> list[tuple[bytes, frozenset[str], bool]]:
    """Spam and ham sharing a few tokens with each other, so train-on-error has choices to make."""
    out = []
    for i in range(n):
        out.append((storage.digest(b"spam%d" % i), SPAMMY | {f"s{i}", "shared", f"n{i % 3}"}, True))
        out.append((storage.digest(b"ham%d" % i), HAMMY | {f"h{i}", "shared", f"n{i % 4}"}, False))
    return out


def taught(conn: sqlite3.Connection, scope: int, items: list[tuple[bytes, frozenset[str], bool]]) -> None:
    """As a user teaches: one lesson at a time, as the IMAP moves and flags come."""
    for key, tokens, spam in items:
        storage.train_message(conn, scope, key, tokens, spam, "imap-move")


def model(conn: sqlite3.Connection, scope: int) -> tuple[list[tuple[object, ...]], tuple[object, ...]]:
    tokens = conn.execute("SELECT token, spam, ham FROM spam_tokens WHERE scope = ? ORDER BY token", (scope,))
    totals = conn.execute(
        "SELECT nspam, nham, head_spam, head_ham, body_spam, body_ham, tokens FROM spam_totals WHERE scope = ?",
        (scope,),
    ).fetchone()
    return [tuple(row) for row in tokens], tuple(totals)


def rebuilt(conn: sqlite3.Connection, scope: int) -> rebuild.RebuildResult:
    result = rebuild.swap(conn, rebuild.prepare(conn, scope, workers=1), SPAM)
    assert result is not None
    return result


def due_at(path: Path) -> list[int]:
    conn = db.connect(path)
    try:
        return rebuild.due(conn)
    finally:
        conn.close()


def rebuilds(result: str) -> float:
    """``relentad_spam_rebuilds_total{result}`` as a scrape would read it."""
    return metrics.REGISTRY.get_sample_value("relentad_spam_rebuilds_total", {"result": result}) or 0.0


async def rebuild_due_at(path: Path) -> dict[int, rebuild.RebuildResult | None]:
    """The daemon's job over a real ``Store`` (its writer thread, the worker process)."""
    store = Store(path)
    store.start(asyncio.get_running_loop())
    try:
        return await rebuild.rebuild_due(store, SPAM)
    finally:
        store.close()


def test_a_rebuild_gives_the_model_bulk_training_gives_the_same_lessons(conn: sqlite3.Connection) -> None:
    items = lessons()
    taught(conn, 1, items)
    one_by_one = model(conn, 1)
    result = rebuilt(conn, 1)
    storage.train_corpus(conn, 2, sorted(items), workers=1)  # a rebuild visits the lessons in key order
    assert model(conn, 1) == model(conn, 2) != one_by_one
    assert result.lessons == len(items) and result.learned > 0 and result.before > 0
    by_key = "SELECT sha256, times, head_times, body_times FROM spam_trained WHERE scope = ? ORDER BY sha256"
    assert conn.execute(by_key, (1,)).fetchall() == conn.execute(by_key, (2,)).fetchall()


def test_unlearning_after_a_rebuild_stays_exact_and_a_second_rebuild_changes_nothing(
    conn: sqlite3.Connection,
) -> None:
    items = lessons()
    taught(conn, 1, items)
    rebuilt(conn, 1)
    first = model(conn, 1)
    rebuilt(conn, 1)
    assert model(conn, 1) == first
    for key, _, _ in items:
        assert storage.forget(conn, 1, key)
    tokens, totals = model(conn, 1)
    assert tokens == [] and totals == (0, 0, 0, 0, 0, 0, 0)


def test_a_lesson_recorded_while_the_orders_ran_stops_the_swap(conn: sqlite3.Connection) -> None:
    items = lessons()
    taught(conn, 1, items[:-1])
    prepared = rebuild.prepare(conn, 1, workers=1)
    taught(conn, 1, items[-1:])
    before = model(conn, 1)
    assert rebuild.swap(conn, prepared, SPAM) is None
    assert model(conn, 1) == before and rebuild.due(conn) == [1]


def test_due_lists_the_accounts_that_learned_since_their_last_rebuild(conn: sqlite3.Connection) -> None:
    items = lessons(4)
    taught(conn, 1, items[:3])
    taught(conn, 2, items[3:5])
    assert rebuild.due(conn) == [1, 2]
    rebuilt(conn, 1)
    assert rebuild.due(conn) == [2]
    conn.execute("UPDATE spam_totals SET rebuilt = rebuilt - 10 WHERE scope = 1")  # a lesson after the rebuild
    taught(conn, 1, items[5:6])
    assert rebuild.due(conn) == [1, 2]
    storage.train_corpus(conn, GLOBAL, lessons(8)[4:], workers=1)
    assert rebuild.due(conn) == []  # over a global model the accounts learn one lesson at a time


def test_bulk_training_alone_does_not_make_an_account_due(conn: sqlite3.Connection) -> None:
    """``spam train EMAIL`` (and ``--mailboxes``) trains the ensemble already; the next lesson a user teaches does."""
    items = lessons()
    storage.train_corpus(conn, 1, items[:-1], workers=1)
    storage.train_corpus(conn, 1, items[-1:], workers=1, source="mailboxes")
    assert rebuild.due(conn) == []
    taught(conn, 1, [(storage.digest(b"a user's lesson"), SPAMMY | {"lesson"}, True)])
    assert rebuild.due(conn) == [1]


def test_tokens_keep_the_day_they_were_last_seen(conn: sqlite3.Connection) -> None:
    taught(conn, 1, lessons(4))
    today = storage.day()
    conn.execute("UPDATE spam_tokens SET seen = ? WHERE scope = 1 AND token = 'viagra'", (today - 30,))
    rebuilt(conn, 1)
    seen = dict(conn.execute("SELECT token, seen FROM spam_tokens WHERE scope = 1"))
    assert seen["viagra"] == today - 30 and seen["meeting"] == today


def test_bulk_trained_messages_no_model_needed_stay_out(conn: sqlite3.Connection) -> None:
    """``spam train`` records a message no model learned without its tokens: there is nothing to relearn."""
    items = lessons(40)
    storage.train_corpus(conn, 1, items, workers=1)
    without_tokens = conn.execute(
        "SELECT count(*) FROM spam_trained WHERE scope = 1 AND times = 0 AND head_times = 0 AND body_times = 0"
    ).fetchone()[0]
    assert without_tokens > 0
    bulk = model(conn, 1)
    result = rebuilt(conn, 1)
    assert result.lessons == len(items) - without_tokens
    assert model(conn, 1)[1][:6] != (0, 0, 0, 0, 0, 0) and bulk[1][:6] != (0, 0, 0, 0, 0, 0)


def test_a_rebuild_prunes_to_max_tokens(conn: sqlite3.Connection) -> None:
    taught(conn, 1, lessons())
    result = rebuild.swap(conn, rebuild.prepare(conn, 1, workers=1), SpamConfig(max_tokens=20))
    assert result is not None and result.pruned > 0
    assert conn.execute("SELECT count(*) FROM spam_tokens WHERE scope = 1").fetchone()[0] <= 20


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_the_daemons_job_rebuilds_the_accounts_due_off_the_event_loop(
    conn: sqlite3.Connection, tmp_path: Path, event_loop: str
) -> None:
    """On both event loops the daemon runs on (uvloop's subprocesses are libuv's own)."""
    items = lessons()
    taught(conn, 1, items)
    conn.close()

    factory = pytest.importorskip("uvloop").new_event_loop if event_loop == "uvloop" else None
    rebuilt_before = rebuilds("rebuilt")
    with asyncio.Runner(loop_factory=factory) as runner:
        done = runner.run(rebuild_due_at(tmp_path / "spam.db"))
    assert list(done) == [1] and done[1] is not None and done[1].lessons == len(items)
    assert done[1].seconds > 0  # prepared in the worker process, swapped by the store's writer
    assert rebuilds("rebuilt") == rebuilt_before + 1
    check = db.connect(tmp_path / "spam.db")
    try:
        assert rebuild.due(check) == []
        storage.train_corpus(check, 2, sorted(items), workers=1)
        assert model(check, 1) == model(check, 2)
    finally:
        check.close()


def test_a_rebuild_judges_the_lessons_with_the_global_model_under_the_accounts(conn: sqlite3.Connection) -> None:
    """As scoring sums the two models, a lesson the global model already scores clearly teaches the account nothing
    new; without a global model the same lesson is learned."""
    items = lessons()
    taught(conn, 1, items[:2])
    taught(conn, 2, items[:2])
    storage.train_corpus(conn, GLOBAL, lessons(40)[4:], workers=1)  # the same kinds of mail, other messages
    conn.execute("UPDATE spam_totals SET rebuilt = 0")
    under_global = rebuilt(conn, 1)
    assert under_global.lessons == 2 and under_global.learned == 0
    conn.execute("DELETE FROM spam_tokens WHERE scope = ?", (GLOBAL,))
    conn.execute("DELETE FROM spam_totals WHERE scope = ?", (GLOBAL,))
    alone = rebuilt(conn, 2)
    assert alone.lessons == 2 and alone.learned > 0


def test_a_failing_worker_process_is_a_one_line_error(tmp_path: Path) -> None:
    """The worker's traceback stays in the worker: the daemon gets one line naming the account and the cause."""
    with pytest.raises(RelentadError) as failure:
        asyncio.run(rebuild.prepare_apart(tmp_path / "missing" / "spam.db", 7))
    message = str(failure.value)
    assert "\n" not in message and "account 7" in message and "unable to open database file" in message


def test_the_daemons_job_logs_a_failing_account_and_rebuilds_the_others(
    conn: sqlite3.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    taught(conn, 1, lessons())
    taught(conn, 2, lessons())
    conn.close()
    real = rebuild.prepare_apart

    async def failing_for_account_1(path: Path, scope: int) -> rebuild.Prepared:
        if scope == 1:
            raise RelentadError("spam rebuild: the worker process for account 1 failed: MemoryError")
        return await real(path, scope)

    monkeypatch.setattr(rebuild, "prepare_apart", failing_for_account_1)
    failed_before = rebuilds("failed")

    done = asyncio.run(rebuild_due_at(tmp_path / "spam.db"))
    assert list(done) == [2] and done[2] is not None
    assert "account 1 failed: MemoryError; trying again next time" in caplog.text
    assert rebuilds("failed") == failed_before + 1
    assert due_at(tmp_path / "spam.db") == [1]


def test_bulk_training_an_account_over_a_global_model_judges_with_it_as_a_rebuild_does(
    conn: sqlite3.Connection,
) -> None:
    """``spam train EMAIL`` and ``spam rebuild`` of the same lessons give the same counts over a global model too, and
    the global model keeps the account from learning what it already knows."""
    storage.train_corpus(conn, GLOBAL, lessons(40)[4:], workers=1)
    items = lessons()
    taught(conn, 1, items)
    rebuilt(conn, 1)
    storage.train_corpus(conn, 2, sorted(items), workers=1)
    assert model(conn, 1) == model(conn, 2)
    by_key = "SELECT sha256, times, head_times, body_times FROM spam_trained WHERE scope = ? ORDER BY sha256"
    assert conn.execute(by_key, (1,)).fetchall() == conn.execute(by_key, (2,)).fetchall()
    conn.execute("DELETE FROM spam_trained WHERE scope = 2")
    conn.execute("DELETE FROM spam_tokens WHERE scope = 2")
    conn.execute("DELETE FROM spam_totals WHERE scope = 2")
    conn.execute("DELETE FROM spam_tokens WHERE scope = ?", (GLOBAL,))
    conn.execute("DELETE FROM spam_totals WHERE scope = ?", (GLOBAL,))
    standalone = storage.train_corpus(conn, 2, sorted(items), workers=1)
    assert standalone.learned > model_learned(conn, 1)


def model_learned(conn: sqlite3.Connection, scope: int) -> int:
    return int(conn.execute("SELECT sum(times) FROM spam_trained WHERE scope = ?", (scope,)).fetchone()[0])


def test_a_worker_that_writes_something_else_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever else a worker's stdout holds (here echo's), the daemon gets one line, not an unpickling traceback."""
    monkeypatch.setattr(rebuild.sys, "executable", "/bin/echo")
    with pytest.raises(RelentadError, match=r"^spam rebuild: the worker process for account 3 wrote no result"):
        asyncio.run(rebuild.prepare_apart(tmp_path / "spam.db", 3))


def worker_children() -> list[int]:
    """This process's children running the rebuild worker."""
    pids = []
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            cmdline = Path(f"/proc/{pid}/cmdline")
            if cmdline.exists() and b"relentad.spam.rebuild_worker" in cmdline.read_bytes():
                pids.append(int(pid))
    return pids


def test_cancelling_a_rebuild_kills_its_worker(conn: sqlite3.Connection, tmp_path: Path) -> None:
    """The daemon cancels the daily job when it stops: the worker must not outlive it."""
    taught(conn, 1, lessons())
    conn.close()

    async def cancel_while_the_worker_runs() -> None:
        task = asyncio.create_task(rebuild.prepare_apart(tmp_path / "spam.db", 1))
        for _ in range(500):
            await asyncio.sleep(0.002)
            if worker_children():
                break
        assert worker_children(), "the worker started"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert worker_children() == []  # gone while the loop runs on, as the daemon's does while it drains

    asyncio.run(cancel_while_the_worker_runs())


def test_the_daemons_job_leaves_an_account_that_learned_meanwhile_due(
    conn: sqlite3.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taught(conn, 1, lessons())
    conn.close()
    real = rebuild.prepare_apart

    async def a_lesson_comes_while_the_worker_runs(path: Path, scope: int) -> rebuild.Prepared:
        prepared = await real(path, scope)
        late = db.connect(path)
        taught(late, scope, [(storage.digest(b"late"), HAMMY | {"late"}, False)])
        late.commit()
        late.close()
        return prepared

    monkeypatch.setattr(rebuild, "prepare_apart", a_lesson_comes_while_the_worker_runs)
    deferred_before = rebuilds("deferred")
    done = asyncio.run(rebuild_due_at(tmp_path / "spam.db"))
    assert done == {1: None} and rebuilds("deferred") == deferred_before + 1
    assert due_at(tmp_path / "spam.db") == [1]


@pytest.mark.parametrize("when", ["before the mark", "while the lessons are read"])
def test_lessons_and_their_mark_are_read_in_one_snapshot(
    conn: sqlite3.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """A lesson another connection commits while the rebuild reads is in both the lessons and the mark, or in
    neither: a swap never puts in place a model that misses it."""
    items = lessons()
    taught(conn, 1, items[:-1])
    reader = db.connect(tmp_path / "spam.db", readonly=True)
    late = items[-1]
    committed: list[bool] = []

    def commit_late() -> None:
        if not committed:
            committed.append(True)
            taught(conn, 1, [late])  # autocommit on the writer: a MOVE into Junk lands now

    real_mark, real_unpack = rebuild.lesson_mark, storage.unpack

    def mark(c: sqlite3.Connection, scope: int) -> rebuild.Mark:
        if c is reader and when == "before the mark":
            commit_late()
        return real_mark(c, scope)

    def unpack(packed: bytes) -> list[str]:
        if when == "while the lessons are read":
            commit_late()
        return real_unpack(packed)

    monkeypatch.setattr(rebuild, "lesson_mark", mark)
    monkeypatch.setattr(storage, "unpack", unpack)
    try:
        prepared = rebuild.prepare(reader, 1, workers=1)
    finally:
        reader.close()
    monkeypatch.undo()
    assert committed
    assert storage.trained_as(conn, 1, late[0]) is not None
    result = rebuild.swap(conn, prepared, SPAM)
    assert result is None or late[0] in prepared.keys  # the swap refuses, or its model learned the late lesson
