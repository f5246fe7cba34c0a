"""A fresh relentad database for unit tests that need accounts but no daemon."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from relentad.accountpage import sessions
from relentad.auth import apppasswords, totp
from relentad.store import accounts, acl, db, mailboxes, messages


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
    CardDAV sync state, a tombstone and a client's card, CRM rows with a follow-up, its settings, logins over every
    protocol, an app password used once, two-factor login with recovery codes and a session of the account pages."""
    email = conn.execute("SELECT email FROM accounts WHERE id = ?", (me,)).fetchone()[0]
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
    conn.execute("DELETE FROM crm_contacts WHERE account_id = ? AND name = 'Al'", (me,))  # a CardDAV tombstone
    jo = conn.execute("SELECT id FROM crm_contacts WHERE account_id = ? AND name = 'Jo'", (me,)).fetchone()[0]
    conn.execute("INSERT INTO crm_addresses (account_id, address, contact_id) VALUES (?, 'jo@far.test', ?)", (me, jo))
    conn.execute("INSERT INTO crm_tags (contact_id, tag) VALUES (?, 'client')", (jo,))
    card = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Jo\r\nEMAIL:jo@far.test\r\nTEL:+1\r\nEND:VCARD\r\n"
    conn.execute(  # a card a phone wrote, and the name of one deleted since (kept for its tombstone)
        "INSERT INTO carddav_cards (contact_id, account_id, name, uid, vcard, base)"
        " VALUES (?, ?, 'jo.vcf', 'j', ?, '{}'), (? + 1000, ?, 'al.vcf', '', NULL, NULL)",
        (jo, me, card, jo, me),
    )
    thread = conn.execute(
        "INSERT INTO crm_threads (account_id, subject, subject_key, first_message, last_message, messages)"
        " VALUES (?, 's', 's', ?, ?, 1)",
        (me, now, now),
    ).lastrowid
    raw = f"From: {email}\r\nTo: jo@far.test\r\nSubject: s\r\n\r\nhi\r\n".encode()
    blob = messages.store_blob(conn, raw)
    messages.append(conn, mine, blob, prefix=b"", size=len(raw), internaldate=now)
    sent = conn.execute(
        "INSERT INTO crm_messages (account_id, blob_id, thread_id, direction, time, sender, subject) VALUES (?, ?, ?,"
        " 'out', ?, ?, 's')",
        (me, blob, thread, now, email),
    ).lastrowid
    conn.execute("UPDATE crm_threads SET awaiting_message = ?, awaiting = ? WHERE id = ?", (sent, now, thread))
    conn.execute("INSERT INTO crm_thread_ids (account_id, msgid, thread_id) VALUES (?, '<m@x>', ?)", (me, thread))
    conn.execute("INSERT INTO subscriptions (account_id, name) VALUES (?, 'Projects')", (me,))
    for protocol in ("imap", "submission", "managesieve", "pop3", "carddav", "web"):
        conn.execute(
            "INSERT INTO login_history (time, account_id, login, ip, protocol, result, app_password) VALUES (?, ?, ?,"
            " '192.0.2.1', ?, 'success', 'phone')",
            (now, me, email, protocol),
        )
    phone = apppasswords.add(conn, me, "phone", ("imap", "smtp"), "$argon2id$h", "abcdabcdabcdabcd", now)
    apppasswords.note_use(conn, phone, now, "imap", "192.0.2.1")
    apppasswords.set_only(conn, me, True)
    totp.enable(conn, me, totp.new_secret(), 1, totp.recovery_codes())
    sessions.create(conn, me, "192.0.2.1", now)
