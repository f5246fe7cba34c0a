"""Named schema migrations, applied in order and recorded in ``_migrations``.

Invariants: a migration, once released, never changes; schema changes are always a new migration appended to
:data:`MIGRATIONS`. Each runs in its own transaction together with its record, so a crash leaves either the old
or the new schema. sqlite-utils is used for the bookkeeping table and is how admins inspect the database
(``sqlite-utils tables data/relentad.db --counts``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import sqlite_utils

Migration = Callable[[sqlite3.Connection], None]


def _m001_core(conn: sqlite3.Connection) -> None:
    """Domains, accounts, aliases, mailboxes, deduplicated blobs and messages."""
    execute_script(
        conn,
        """
        CREATE TABLE domains (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created REAL NOT NULL
        );
        CREATE TABLE accounts (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL UNIQUE,
            domain_id INTEGER NOT NULL REFERENCES domains(id),
            password_hash TEXT NOT NULL,
            display_name TEXT NOT NULL DEFAULT '',
            quota_bytes INTEGER NOT NULL DEFAULT 0,
            daily_send INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'terminated')),
            created REAL NOT NULL,
            terminated REAL
        );
        CREATE INDEX accounts_domain ON accounts(domain_id);
        -- address is 'local@domain', or '@domain' for a catch-all; one alias may reach several accounts.
        CREATE TABLE aliases (
            address TEXT NOT NULL,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            created REAL NOT NULL,
            PRIMARY KEY (address, account_id)
        );
        CREATE INDEX aliases_account ON aliases(account_id);
        CREATE TABLE mailboxes (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            name TEXT NOT NULL,
            special_use TEXT,
            uidvalidity INTEGER NOT NULL,
            uidnext INTEGER NOT NULL DEFAULT 1,
            highestmodseq INTEGER NOT NULL DEFAULT 1,
            subscribed INTEGER NOT NULL DEFAULT 1,
            created REAL NOT NULL,
            UNIQUE (account_id, name)
        );
        -- Raw messages exactly as received, stored once however many mailboxes hold them.
        CREATE TABLE blobs (
            id INTEGER PRIMARY KEY,
            sha256 BLOB NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            refs INTEGER NOT NULL DEFAULT 0,
            structure TEXT,
            data BLOB NOT NULL
        );
        -- One row per message in a mailbox. 'prefix' holds the trace headers added for this recipient
        -- (Return-Path, Delivered-To, Received...): the message a client sees is prefix || blob.
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id),
            uid INTEGER NOT NULL,
            modseq INTEGER NOT NULL,
            flags INTEGER NOT NULL DEFAULT 0,
            keywords TEXT NOT NULL DEFAULT '',
            internaldate REAL NOT NULL,
            blob_id INTEGER NOT NULL REFERENCES blobs(id),
            prefix BLOB NOT NULL DEFAULT x'',
            size INTEGER NOT NULL,
            UNIQUE (mailbox_id, uid)
        );
        CREATE INDEX messages_blob ON messages(blob_id);
        CREATE TRIGGER messages_blob_ref AFTER INSERT ON messages BEGIN
            UPDATE blobs SET refs = refs + 1 WHERE id = NEW.blob_id;
        END;
        CREATE TRIGGER messages_blob_unref AFTER DELETE ON messages BEGIN
            UPDATE blobs SET refs = refs - 1 WHERE id = OLD.blob_id;
        END;
        """,
    )


def _m003_imap(conn: sqlite3.Connection) -> None:
    """IMAP: modseq index, \\Noselect mailboxes, the expunge retention area and QRESYNC tombstones.

    ``expunged`` keeps every expunged message (its blob referenced, so refcounts stay right via triggers) until
    the retention purge; ``vanished`` remembers (mailbox, uid, modseq) of every message that left a mailbox
    (expunge or move) for QRESYNC VANISHED (RFC 7162 §3.2.10).
    """
    execute_script(
        conn,
        """
        CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);
        ALTER TABLE mailboxes ADD COLUMN noselect INTEGER NOT NULL DEFAULT 0;
        -- \\Recent (RFC 3501 §2.3.2): UIDs from here on are recent for the next session that selects the mailbox
        ALTER TABLE mailboxes ADD COLUMN first_recent_uid INTEGER NOT NULL DEFAULT 1;
        -- the highest UIDVALIDITY ever given out, so a mailbox deleted and created again never reuses one
        ALTER TABLE accounts ADD COLUMN last_uidvalidity INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE expunged (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL,
            mailbox_id INTEGER NOT NULL,
            mailbox_name TEXT NOT NULL,
            uid INTEGER NOT NULL,
            blob_id INTEGER NOT NULL REFERENCES blobs(id),
            prefix BLOB NOT NULL,
            flags INTEGER NOT NULL,
            keywords TEXT NOT NULL,
            internaldate REAL NOT NULL,
            size INTEGER NOT NULL,
            expunged REAL NOT NULL
        );
        CREATE INDEX expunged_account ON expunged(account_id);
        CREATE INDEX expunged_time ON expunged(expunged);
        CREATE INDEX expunged_blob ON expunged(blob_id);
        CREATE TRIGGER expunged_blob_ref AFTER INSERT ON expunged BEGIN
            UPDATE blobs SET refs = refs + 1 WHERE id = NEW.blob_id;
        END;
        CREATE TRIGGER expunged_blob_unref AFTER DELETE ON expunged BEGIN
            UPDATE blobs SET refs = refs - 1 WHERE id = OLD.blob_id;
        END;
        CREATE TABLE vanished (
            mailbox_id INTEGER NOT NULL,
            uid INTEGER NOT NULL,
            modseq INTEGER NOT NULL,
            PRIMARY KEY (mailbox_id, uid)
        ) WITHOUT ROWID;
        CREATE INDEX vanished_modseq ON vanished(mailbox_id, modseq);
        """,
    )


def _m002_outbound(conn: sqlite3.Connection) -> None:
    """The outbound queue (one row per message, one per recipient), send counters and the login history."""
    execute_script(
        conn,
        """
        -- A submitted message waiting for (some of) its remote recipients; deleted once none is queued.
        CREATE TABLE queue_messages (
            id INTEGER PRIMARY KEY,
            account_id INTEGER REFERENCES accounts(id),  -- the sender, who gets DSNs; NULL for our own DSNs
            mail_from TEXT NOT NULL,                     -- '' is the null sender (never bounced)
            data BLOB NOT NULL,
            size INTEGER NOT NULL,
            transaction_id TEXT NOT NULL,
            created REAL NOT NULL,
            delay_notified INTEGER NOT NULL DEFAULT 0
        );
        -- Per-recipient state: a result is written in the same transaction that records it, so a restart
        -- never sends again to a recipient whose server already accepted the message.
        CREATE TABLE queue_recipients (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES queue_messages(id) ON DELETE CASCADE,
            address TEXT NOT NULL,
            domain TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'delivered', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL NOT NULL,
            last_attempt REAL,
            last_reply TEXT NOT NULL DEFAULT '',
            finished REAL
        );
        CREATE INDEX queue_recipients_due ON queue_recipients(state, next_attempt);
        CREATE INDEX queue_recipients_message ON queue_recipients(message_id);
        -- Recipients of accepted submissions per account and period ('day' / 'hour', start as unix time).
        CREATE TABLE send_counts (
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            period TEXT NOT NULL CHECK (period IN ('day', 'hour')),
            start INTEGER NOT NULL,
            recipients INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (account_id, period, start)
        );
        -- Every login attempt, successful or not (protocol 'smtp' or 'imap').
        CREATE TABLE login_history (
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            account_id INTEGER REFERENCES accounts(id) ON DELETE SET NULL,
            login TEXT NOT NULL,
            ip TEXT NOT NULL,
            protocol TEXT NOT NULL,
            result TEXT NOT NULL CHECK (result IN ('success', 'failure')),
            reason TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX login_history_account ON login_history(account_id, time);
        """,
    )


def execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Run several statements inside the caller's transaction (``executescript`` would COMMIT first)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip():
        conn.execute(statement)


MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_core", _m001_core),
    ("002_outbound", _m002_outbound),
    ("003_imap", _m003_imap),
]


def applied(conn: sqlite3.Connection) -> set[str]:
    """Names of the migrations this database has."""
    db = sqlite_utils.Database(conn)
    if not db["_migrations"].exists():
        return set()
    return {row["name"] for row in db["_migrations"].rows}


def apply(conn: sqlite3.Connection) -> list[str]:
    """Apply every pending migration, each in its own transaction; returns the names applied."""
    db = sqlite_utils.Database(conn)
    if not db["_migrations"].exists():
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
    done = applied(conn)
    ran = []
    for name, migration in MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if name in applied(conn):  # another process migrated while we waited for the lock
                conn.execute("ROLLBACK")
                continue
            migration(conn)
            conn.execute("INSERT INTO _migrations (name, applied) VALUES (?, ?)", (name, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        ran.append(name)
    return ran
