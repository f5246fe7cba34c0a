"""The POP3 maildrop on a real SQLite file: sizes are the octets RETR sends (with or without a stored structure,
bare LFs counted as CRLF), and QUIT's transaction expunges what is still there, once."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from relentad.imap.commands.fetch import Message
from relentad.message import parse
from relentad.pop3 import maildrop
from relentad.pop3.parser import stuff
from relentad.store import accounts, db, imapview, mailboxes, messages
from tests.support.store import database_with

RAW = b"From: Jo <jo@elsewhere.test>\r\nSubject: Hello\r\n\r\nSome body text\r\n"
BARE_LF = b"From: Jo <jo@elsewhere.test>\nSubject: Bare\n\nline one\n.dot\n"
PREFIX = b"Received: from elsewhere.test; Wed, 25 Nov 2026 08:00:00 +0000\r\n"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = database_with(tmp_path / "t.db", "a@example.test")
    yield connection
    connection.close()


def account(conn: sqlite3.Connection) -> int:
    return accounts.get_account(conn, "a@example.test").id


def add(conn: sqlite3.Connection, raw: bytes, *, structure: bool) -> int:
    inbox = mailboxes.find(conn, account(conn), "INBOX")
    assert inbox is not None
    with db.transaction(conn):
        blob = messages.store_blob(conn, raw, parse(raw).to_json() if structure else None)
        size = len(PREFIX) + len(raw)
        return messages.append(conn, inbox, blob, prefix=PREFIX, size=size, internaldate=1e9).uid


@pytest.mark.parametrize("structure", [True, False])
def test_sizes_are_the_octets_retr_sends_and_imaps_rfc822_size(conn: sqlite3.Connection, structure: bool) -> None:
    uids = [add(conn, RAW, structure=structure), add(conn, BARE_LF, structure=structure)]
    drop = maildrop.load(conn, account(conn))
    assert [e.uid for e in drop.entries] == uids
    rows = imapview.message_rows(conn, drop.mailbox_id, uids, with_data=True)
    for entry, row in zip(drop.entries, rows, strict=True):
        data = maildrop.message(conn, drop.mailbox_id, entry.uid)
        assert data is not None and b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
        assert entry.size == len(data) == Message(conn, row).size
    assert drop.unique_id(drop.entries[0]) == f"{uids[0]:08X}{drop.uidvalidity:08X}"


@pytest.mark.parametrize("structure", [True, False])
def test_a_message_ending_mid_line_is_listed_with_the_crlf_retr_ends_it_with(
    conn: sqlite3.Connection, structure: bool
) -> None:
    uid = add(conn, b"Subject: draft\nno final line break", structure=structure)
    (entry,) = maildrop.load(conn, account(conn)).entries
    data = maildrop.message(conn, mailboxes.find(conn, account(conn), "INBOX") or 0, uid)
    assert data is not None and not data.endswith(b"\r\n")
    assert entry.size == len(data) + 2 == len(stuff(data))


def test_commit_expunges_what_is_still_there_and_marks_retrieved_seen(conn: sqlite3.Connection) -> None:
    uids = [add(conn, RAW, structure=True) for _ in range(3)]
    drop = maildrop.load(conn, account(conn))
    with db.transaction(conn):
        first = maildrop.commit(conn, drop.mailbox_id, [uids[0]], [uids[1]])
    assert first.expunged == [uids[0]] and first.modseq > 0
    with db.transaction(conn):  # a second session deleting the same message and one more
        second = maildrop.commit(conn, drop.mailbox_id, [uids[0], uids[2]], [])
    assert second.expunged == [uids[2]]
    assert imapview.uids(conn, drop.mailbox_id) == [uids[1]]
    [flags] = conn.execute("SELECT flags FROM messages WHERE uid = ?", (uids[1],)).fetchone()
    assert flags & messages.SEEN
    assert conn.execute("SELECT count(*) FROM expunged").fetchone()[0] == 2
    assert maildrop.message(conn, drop.mailbox_id, uids[0]) is None, "RETR of an expunged message: None"
    with db.transaction(conn):
        assert maildrop.commit(conn, drop.mailbox_id, [uids[0]], []) == maildrop.Update([], 0), "nothing to do"
