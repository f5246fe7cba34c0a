"""Schema migrations that move data: a database from before the migration comes out with the same facts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from relentad.store import migrations
from relentad.store.db import connect


def without(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, migration: str) -> sqlite3.Connection:
    """A database with every migration but ``migration`` (which ``monkeypatch.undo()`` brings back), and account 7,
    a@example.test."""
    conn = connect(tmp_path / "db.sqlite")
    monkeypatch.setattr(migrations, "MIGRATIONS", [m for m in migrations.MIGRATIONS if m[0] != migration])
    migrations.apply(conn)
    conn.execute("INSERT INTO domains (id, name, created) VALUES (1, 'example.test', 0)")
    conn.execute(
        "INSERT INTO accounts (id, email, domain_id, password_hash, created) VALUES (7, 'a@example.test', 1, '', 0)"
    )
    return conn


def test_subscriptions_leave_the_mailbox_rows_and_keep_who_subscribed_to_what(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """017: the subscribed flag of each mailbox becomes a row of ``subscriptions`` (so that DELETE can leave it)."""
    conn = without(tmp_path, monkeypatch, "017_imap_subscriptions")
    for name, subscribed in (("INBOX", 1), ("Lists", 0), ("Lists/rust", 1)):
        conn.execute(
            "INSERT INTO mailboxes (account_id, name, uidvalidity, subscribed, created) VALUES (7, ?, 1, ?, 0)",
            (name, subscribed),
        )
    monkeypatch.undo()
    assert migrations.apply(conn) == ["017_imap_subscriptions"]
    assert [tuple(r) for r in conn.execute("SELECT account_id, name FROM subscriptions ORDER BY name")] == [
        (7, "INBOX"),
        (7, "Lists/rust"),
    ]
    assert "subscribed" not in {row[1] for row in conn.execute("PRAGMA table_info(mailboxes)")}
    conn.execute("DELETE FROM mailboxes WHERE account_id = 7")
    conn.execute("DELETE FROM accounts WHERE id = 7")  # an account's subscriptions go with it
    assert conn.execute("SELECT count(*) FROM subscriptions").fetchone()[0] == 0


def test_internal_dates_stored_before_018_keep_showing_as_utc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """018: messages and retained copies get a zone for their internal date; those already stored get UTC (0),
    which is how FETCH INTERNALDATE showed them."""
    conn = without(tmp_path, monkeypatch, "018_imap_internaldate_zone")
    conn.execute("INSERT INTO mailboxes (id, account_id, name, uidvalidity, created) VALUES (3, 7, 'INBOX', 1, 0)")
    conn.execute("INSERT INTO blobs (id, sha256, size, data) VALUES (5, x'00', 1, x'00')")
    conn.execute(
        "INSERT INTO messages (mailbox_id, uid, modseq, internaldate, blob_id, size) VALUES (3, 1, 1, 1e9, 5, 1)"
    )
    conn.execute(
        """INSERT INTO expunged (account_id, mailbox_id, mailbox_name, uid, blob_id, prefix, flags, keywords,
                                 internaldate, size, expunged) VALUES (7, 3, 'INBOX', 2, 5, x'', 0, '', 1e9, 1, 0)"""
    )
    monkeypatch.undo()
    assert "018_imap_internaldate_zone" in migrations.apply(conn)
    assert [tuple(r) for r in conn.execute("SELECT internaldate, zone FROM messages")] == [(1e9, 0)]
    assert [tuple(r) for r in conn.execute("SELECT internaldate, zone FROM expunged")] == [(1e9, 0)]


def test_threads_filed_before_027_wait_when_their_newest_message_was_sent_to_a_person(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """027: a thread whose newest message is one the account sent to a person contact awaits a reply; a thread
    answered since, or whose newest sent message went to a list only, does not."""
    conn = without(tmp_path, monkeypatch, "027_crm_followups")
    conn.execute(
        "INSERT INTO crm_contacts (id, account_id, kind, created) VALUES (1, 7, 'person', 0), (2, 7, 'list', 0)"
    )
    for thread, times in ((10, (100.0, 200.0)), (11, (100.0, 300.0)), (12, (100.0, 100.0))):
        conn.execute(
            "INSERT INTO crm_threads (id, account_id, first_message, last_message, messages) VALUES (?, 7, ?, ?, 2)",
            (thread, *times),
        )
    rows = [  # id, thread, direction, time, contact, role
        (1, 10, "out", 100.0, 1, "to"),
        (2, 10, "out", 200.0, 1, "cc"),  # 10: waits since 2
        (3, 11, "out", 100.0, 1, "to"),
        (4, 11, "in", 300.0, 1, "from"),  # 11: answered
        (5, 12, "out", 100.0, 2, "to"),  # 12: to a list
    ]
    for message, thread, direction, when, contact, role in rows:
        conn.execute(
            "INSERT INTO crm_messages (id, account_id, blob_id, thread_id, direction, time) VALUES (?, 7, ?, ?, ?, ?)",
            (message, message, thread, direction, when),
        )
        conn.execute(
            "INSERT INTO crm_message_contacts (contact_id, message_id, role) VALUES (?, ?, ?)", (contact, message, role)
        )
    monkeypatch.undo()
    assert migrations.apply(conn) == ["027_crm_followups"]
    assert [tuple(r) for r in conn.execute("SELECT id, awaiting_message, awaiting FROM crm_threads ORDER BY id")] == [
        (10, 2, 200.0),
        (11, None, None),
        (12, None, None),
    ]
