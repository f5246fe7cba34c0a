"""The store's IMAP jobs on a real SQLite file: mailbox CREATE/DELETE/RENAME, STORE, COPY/MOVE, EXPUNGE into the
retention area (blob refcounts right), UIDVALIDITY never reused, change tracking, and SEARCH/FETCH rendering."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from relentad.errors import AlreadyExists, InvalidInput, LimitReached, NotFound
from relentad.imap.commands.fetch import render_batch
from relentad.imap.commands.search import Compiler, run_search
from relentad.imap.errors import reply_for
from relentad.imap.parser import FetchBody, FetchItem, Section, parse_command
from relentad.imap.parser import Search as SearchCommand
from relentad.imap.view import Selected
from relentad.message import parse
from relentad.store import accounts, db, imapview, imapwrite, mailboxes, messages
from tests.support.store import database_with

RAW = b"From: Jo <jo@elsewhere.test>\r\nSubject: Hello\r\n\r\nSome body text\r\n"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = database_with(tmp_path / "t.db", "a@example.test")
    yield connection
    connection.close()


def account(conn: sqlite3.Connection) -> int:
    return accounts.get_account(conn, "a@example.test").id


def inbox(conn: sqlite3.Connection) -> int:
    found = mailboxes.find(conn, account(conn), "INBOX")
    assert found is not None
    return found


def add(conn: sqlite3.Connection, raw: bytes = RAW, prefix: bytes = b"", structure: bool = True) -> int:
    with db.transaction(conn):
        blob = messages.store_blob(conn, raw, parse(raw).to_json() if structure else None)
        size = len(prefix) + len(raw)
        appended = messages.append(conn, inbox(conn), blob, prefix=prefix, size=size, internaldate=1e9)
    return appended.uid


def refs_consistent(conn: sqlite3.Connection) -> bool:
    rows = conn.execute(
        """SELECT b.refs, (SELECT count(*) FROM messages m WHERE m.blob_id = b.id)
                          + (SELECT count(*) FROM expunged e WHERE e.blob_id = b.id) FROM blobs b"""
    ).fetchall()
    return all(row[0] == row[1] for row in rows)


def test_create_delete_rename_rules(conn: sqlite3.Connection) -> None:
    me = account(conn)
    with db.transaction(conn):
        imapwrite.create_mailbox(conn, me, "a/b/c")
        assert imapview.mailbox(conn, me, "a/b") is not None
        with pytest.raises(AlreadyExists):
            imapwrite.create_mailbox(conn, me, "a/b")
        with pytest.raises(InvalidInput):
            imapwrite.create_mailbox(conn, me, "a//b")
        imapwrite.rename_mailbox(conn, me, "a", "z")
        assert [m.name for m in imapview.all_mailboxes(conn, me) if m.name.startswith("z")] == ["z", "z/b", "z/b/c"]
        with pytest.raises(InvalidInput):
            imapwrite.rename_mailbox(conn, me, "z", "z/b/y")
        imapwrite.delete_mailbox(conn, me, "z/b")
        noselect = imapview.mailbox(conn, me, "z/b")
        assert noselect is not None and noselect.noselect
        with pytest.raises(NotFound):
            imapwrite.delete_mailbox(conn, me, "nope")


def test_uidvalidity_never_reused(conn: sqlite3.Connection) -> None:
    me = account(conn)
    seen = set()
    for _ in range(3):
        with db.transaction(conn):
            imapwrite.create_mailbox(conn, me, "X")
            info = imapview.mailbox(conn, me, "X")
            assert info is not None
            seen.add(info.uidvalidity)
            imapwrite.delete_mailbox(conn, me, "X")
    assert len(seen) == 3


def test_store_copy_move_expunge_and_changes(conn: sqlite3.Connection) -> None:
    me = account(conn)
    box = inbox(conn)
    uids = [add(conn), add(conn), add(conn)]
    start = imapview.mailbox_by_id(conn, box)
    assert start is not None
    with db.transaction(conn):
        result = imapwrite.store_flags(conn, box, uids[:2], "add", ["\\Deleted", "$x"])
    assert [c[0] for c in result.changed] == uids[:2]
    with db.transaction(conn):
        again = imapwrite.store_flags(conn, box, uids[:2], "add", ["\\Deleted"], unchanged_since=result.modseq - 1)
    assert again.modified == uids[:2] and not again.changed
    archive = mailboxes.find(conn, me, "Archive")
    assert archive is not None
    with db.transaction(conn):
        pairs = imapwrite.copy_messages(conn, box, uids, archive)
        moved, _ = imapwrite.move_messages(conn, box, [uids[2]], archive)
        gone, modseq = imapwrite.expunge(conn, box)
    assert [p[1] for p in pairs] == [1, 2, 3] and moved == [(uids[2], 4)]
    assert gone == uids[:2] and modseq > result.modseq
    assert imapview.uids(conn, box) == []
    changes, vanished, highest = imapview.changes_since(conn, box, start.highestmodseq)
    assert vanished == uids and highest == modseq and changes == []
    assert conn.execute("SELECT count(*) FROM expunged").fetchone()[0] == 2  # the move is not an expunge
    assert refs_consistent(conn)
    with db.transaction(conn):
        imapwrite.delete_mailbox(conn, me, "Archive")
    assert conn.execute("SELECT count(*) FROM expunged").fetchone()[0] == 6
    assert refs_consistent(conn)


def test_rename_inbox_moves_messages(conn: sqlite3.Connection) -> None:
    me = account(conn)
    add(conn)
    with db.transaction(conn):
        imapwrite.rename_mailbox(conn, me, "INBOX", "Old")
    old = imapview.mailbox(conn, me, "Old")
    assert old is not None and imapview.uids(conn, old.id) == [1]
    assert imapview.uids(conn, inbox(conn)) == []
    assert refs_consistent(conn)


def compile_search(conn: sqlite3.Connection, text: str | bytes) -> list[int]:
    command = parse_command(b"t SEARCH " + (text.encode() if isinstance(text, str) else text))
    assert isinstance(command, SearchCommand)
    info = imapview.mailbox_by_id(conn, inbox(conn))
    assert info is not None
    view = Selected(info=info, readonly=True, uids=imapview.uids(conn, info.id), modseq=info.highestmodseq)
    compiler = Compiler(view, None, 2e9)
    sql, params = compiler.compile(command.key)
    return [uid for uid, _ in run_search(conn, info.id, sql, params, compiler.matchers, folded=compiler.folded)]


def test_search_in_sqlite_with_text_matchers(conn: sqlite3.Connection) -> None:
    add(conn)
    add(conn, b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nFrom: x@y.test\r\n\r\nhello\r\n", structure=False)
    add(conn, b"garbage \xff\xfe without header end")
    assert compile_search(conn, "ALL") == [1, 2, 3]
    assert compile_search(conn, "SUBJECT hello") == [1]
    assert compile_search(conn, "BODY hello") == [2]
    assert compile_search(conn, "TEXT hello") == [1, 2]
    assert compile_search(conn, "OR FROM jo NOT UID 1:2") == [1, 3]
    word = "grüß".encode()
    assert compile_search(conn, b"CHARSET UTF-8 SUBJECT {%d}\r\n" % len(word) + word) == [2]


def test_fetch_render_with_prefix_and_bare_lf(conn: sqlite3.Connection) -> None:
    prefix = b"Delivered-To: a@example.test\r\n"
    add(conn, b"Subject: lf\nFrom: z@z.test\n\nline\n", prefix=prefix, structure=False)
    add(conn, RAW, prefix=prefix)
    attributes = [
        FetchItem("UID"),
        FetchItem("RFC822.SIZE"),
        FetchBody("BODY", Section()),
        FetchBody("BODY", Section((), "TEXT")),
        FetchBody("BODY", Section((), "HEADER.FIELDS", ("DELIVERED-TO",))),
    ]
    batch = render_batch(
        conn,
        inbox(conn),
        [1, 2],
        {1: 1, 2: 2},
        attributes,
        with_data=True,
        changed_since=None,
        condstore=False,
        utf8=False,
    )
    first = prefix + b"Subject: lf\r\nFrom: z@z.test\r\n\r\nline\r\n"
    assert batch.lines[0] == (
        b"* 1 FETCH (UID 1 RFC822.SIZE %d BODY[] {%d}\r\n" % (len(first), len(first))
        + first
        + b' BODY[TEXT] "line\r\n"'.replace(b'"line\r\n"', b"{6}\r\nline\r\n")
        + b" BODY[HEADER.FIELDS (DELIVERED-TO)] {32}\r\n"
        + prefix
        + b"\r\n)\r\n"
    )
    assert batch.failed == 0 and len(batch.lines) == 2


def test_fetch_survives_a_corrupt_stored_structure(conn: sqlite3.Connection) -> None:
    add(conn)
    with db.transaction(conn):
        conn.execute('UPDATE blobs SET structure = \'{"v": 1, "broken\'')
    attributes = [FetchItem("ENVELOPE"), FetchItem("BODYSTRUCTURE"), FetchItem("RFC822.SIZE")]
    batch = render_batch(
        conn, inbox(conn), [1], {1: 1}, attributes, with_data=False, changed_since=None, condstore=False, utf8=False
    )
    assert batch.failed == 0 and b'"Hello"' in batch.lines[0] and b"RFC822.SIZE %d" % len(RAW) in batch.lines[0]
    assert compile_search(conn, "SUBJECT hello") == [1]


def test_blobs_are_shared_and_say_when_new(conn: sqlite3.Connection) -> None:
    """put_blob inserts first: the first store of some bytes is new, every later one finds the same row."""
    with db.transaction(conn):
        first = messages.put_blob(conn, RAW)
        again = messages.put_blob(conn, RAW)
        other = messages.put_blob(conn, RAW + b"more\r\n")
    assert first[1] and not again[1] and other[1]
    assert first[0] == again[0] != other[0]
    assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == 2


def test_allocation_by_name_matches_find_and_allocate(conn: sqlite3.Connection) -> None:
    """The delivery path's one-statement slot: the same mailbox, UIDs and MODSEQs as find + allocate_uid."""
    with db.transaction(conn):
        uid, modseq = mailboxes.allocate_uid(conn, inbox(conn))
        slot = mailboxes.allocate_uid_in(conn, account(conn), "inbox")
        missing = mailboxes.allocate_uid_in(conn, account(conn), "No Such Folder")
    assert slot == (inbox(conn), uid + 1, modseq + 1)
    assert missing is None


def test_only_list_reads_the_subscriptions(conn: sqlite3.Connection) -> None:
    """The lookup of one mailbox (every SELECT, STATUS, APPEND, COPY…) used to carry a correlated EXISTS on
    ``subscriptions`` that only LIST uses; LIST (all_mailboxes) still says which mailboxes are subscribed."""
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    info = imapview.mailbox(conn, account(conn), "INBOX")
    assert info is not None and imapview.mailbox_by_id(conn, info.id) == info
    assert statements and not any("subscriptions" in sql for sql in statements)
    conn.set_trace_callback(None)
    with db.transaction(conn):
        conn.execute("DELETE FROM subscriptions WHERE name = 'Junk'")
    listed = {box.name: box.subscribed for box in imapview.all_mailboxes(conn, account(conn))}
    assert listed["INBOX"] and listed["Sent"] and not listed["Junk"]


def test_a_noselect_level_becomes_real_in_place_with_what_it_holds(conn: sqlite3.Connection) -> None:
    """A \\Noselect level that holds messages (an older release delivered a rule's mail into one) is made real again
    where it is, with a new UIDVALIDITY, and shows them; deleting the row instead failed on the foreign key, so no
    CREATE or delivery to that name could succeed. Delivery never picks a \\Noselect level itself."""
    me = account(conn)
    with db.transaction(conn):
        imapwrite.create_mailbox(conn, me, "P/c")
        imapwrite.delete_mailbox(conn, me, "P")
        level = imapview.mailbox(conn, me, "P")
        assert level is not None and level.noselect
        assert mailboxes.find(conn, me, "P") is None and mailboxes.allocate_uid_in(conn, me, "P") is None
        blob = messages.store_blob(conn, RAW, parse(RAW).to_json())
        messages.append(conn, level.id, blob, prefix=b"", size=len(RAW), internaldate=1e9)  # the old delivery
        assert imapwrite.create_mailbox(conn, me, "P") == level.id
    real = imapview.mailbox(conn, me, "P")
    assert real is not None and not real.noselect and real.uidvalidity > level.uidvalidity
    assert conn.execute("SELECT count(*) FROM messages WHERE mailbox_id = ?", (level.id,)).fetchone()[0] == 1


def test_mailboxes_per_account_are_limited(conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    """CREATE and RENAME refuse past :data:`mailboxes.MAX_PER_ACCOUNT` (IMAP ``NO [LIMIT]``), making no level of
    the name when the whole of it does not fit."""
    me = account(conn)
    held = conn.execute("SELECT count(*) FROM mailboxes WHERE account_id = ?", (me,)).fetchone()[0]
    monkeypatch.setattr(mailboxes, "MAX_PER_ACCOUNT", held + 2)
    with db.transaction(conn):
        imapwrite.create_mailbox(conn, me, "One")
    with pytest.raises(LimitReached), db.transaction(conn):
        imapwrite.create_mailbox(conn, me, "Two/Three")
    with pytest.raises(LimitReached), db.transaction(conn):
        imapwrite.rename_mailbox(conn, me, "One", "Four/Five/Six")  # two new levels above it
    names = {row[0] for row in conn.execute("SELECT name FROM mailboxes WHERE account_id = ?", (me,))}
    assert "One" in names and not names & {"Two", "Two/Three", "Four", "Four/Five", "Four/Five/Six"}
    with db.transaction(conn):
        imapwrite.create_mailbox(conn, me, "Two")
    assert reply_for(LimitReached("x")).code == "LIMIT"
