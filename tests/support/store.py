"""A fresh relentad database for unit tests that need accounts but no daemon."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from relentad.store import accounts, acl, db, mailboxes


def database_with(path: Path, *emails: str, quota_bytes: int = 0) -> sqlite3.Connection:
    """A new database at ``path`` with an account (password "x", no send limit) for each of ``emails``, and
    their domains."""
    connection = db.open_database(path)
    with db.transaction(connection):
        for domain in dict.fromkeys(email.rpartition("@")[2] for email in emails):
            accounts.add_domain(connection, domain)
        for email in emails:
            accounts.add_account(connection, email, "x", quota_bytes=quota_bytes, daily_send=0)
    return connection


def use_every_feature(conn: sqlite3.Connection, me: int, other: int, now: float) -> None:
    """What an account leaves behind by using every feature: Sieve scripts, vacation tracking, grants both ways,
    CardDAV sync state and a tombstone, a follow-up, its settings, logins over every protocol."""
    mine, theirs = mailboxes.find(conn, me, "INBOX"), mailboxes.find(conn, other, "INBOX")
    assert mine is not None and theirs is not None
    acl.set_rights(conn, mine, other, "lr")
    acl.set_rights(conn, theirs, me, "lrsw")
    conn.execute(
        "INSERT INTO sieve_scripts (account_id, name, script, active, created, updated) VALUES (?, 'v', 'keep;', 1,"
        " ?, ?)",
        (me, now, now),
    )
    conn.execute(
        "INSERT INTO sieve_vacation (account_id, sender, handle, sent, expires) VALUES (?, 'z@far.test', 'h', ?, ?)",
        (me, now, now + 365 * 86400.0),
    )
    conn.execute("INSERT INTO crm_followup_settings (account_id, days) VALUES (?, 3)", (me,))
    for name in ("Jo", "Al"):
        conn.execute(
            "INSERT INTO crm_contacts (account_id, name, kind, confirmed, created) VALUES (?, ?, 'person', 1, ?)",
            (me, name, now),
        )
    conn.execute("DELETE FROM crm_contacts WHERE name = 'Al'")  # a tombstone in carddav_removed
    conn.execute(
        "INSERT INTO crm_threads (account_id, subject, subject_key, first_message, last_message, messages,"
        " awaiting_message, awaiting) VALUES (?, 's', 's', ?, ?, 1, 1, ?)",
        (me, now, now, now),
    )
    for protocol in ("imap", "submission", "managesieve", "pop3", "carddav", "web"):
        conn.execute(
            "INSERT INTO login_history (time, account_id, login, ip, protocol, result) VALUES (?, ?, 'a@example.test',"
            " '192.0.2.1', ?, 'success')",
            (now, me, protocol),
        )
