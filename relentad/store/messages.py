"""Messages and their deduplicated raw bytes.

Invariants: a raw message is stored once in ``blobs`` (keyed by SHA-256) however many mailboxes hold it; the
``messages_blob_ref``/``unref`` triggers keep ``blobs.refs`` equal to the number of message rows pointing at it,
so the purge can drop blobs with no references. Bytes are kept exactly as received.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time

from . import mailboxes

# System flags as bits (RFC 3501 §2.3.2); keywords are kept as a space-separated string.
SEEN, ANSWERED, FLAGGED, DELETED, DRAFT = 1, 2, 4, 8, 16


def store_blob(conn: sqlite3.Connection, raw: bytes, structure: str | None = None) -> int:
    """Id of the blob holding ``raw``, inserting it when new."""
    digest = hashlib.sha256(raw).digest()
    row = conn.execute("SELECT id FROM blobs WHERE sha256 = ?", (digest,)).fetchone()
    if row is not None:
        return int(row[0])
    cursor = conn.execute(
        "INSERT INTO blobs (sha256, size, structure, data) VALUES (?, ?, ?, ?)",
        (digest, len(raw), structure, raw),
    )
    return int(cursor.lastrowid or 0)


def append(
    conn: sqlite3.Connection,
    mailbox_id: int,
    blob_id: int,
    *,
    prefix: bytes,
    size: int,
    internaldate: float,
    flags: int = 0,
    keywords: str = "",
) -> tuple[int, int]:
    """Add a message to a mailbox; returns its (uid, modseq). Its save date (RFC 8514) is now."""
    uid, modseq = mailboxes.allocate_uid(conn, mailbox_id)
    conn.execute(
        """INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internaldate, blob_id, prefix, size, saved)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (mailbox_id, uid, modseq, flags, keywords, internaldate, blob_id, prefix, size, time.time()),
    )
    return uid, modseq
