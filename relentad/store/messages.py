"""Messages and their deduplicated raw bytes.

Invariants: a raw message is stored once in ``blobs`` (keyed by SHA-256) however many mailboxes hold it, under an id
never used before (``blob_id_floor``: the CRM's history refers to blob ids after the purge removed them); the
``messages_blob_ref``/``unref`` triggers keep ``blobs.refs`` equal to the number of message rows pointing at it,
so the purge can drop blobs with no references. Bytes are kept exactly as received.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from typing import NamedTuple

from . import mailboxes

# System flags as bits (RFC 3501 §2.3.2); keywords are kept as a space-separated string.
SEEN, ANSWERED, FLAGGED, DELETED, DRAFT = 1, 2, 4, 8, 16


def store_blob(conn: sqlite3.Connection, raw: bytes, structure: str | None = None) -> int:
    """Id of the blob holding ``raw``, inserting it when new."""
    return put_blob(conn, raw, structure)[0]


def put_blob(conn: sqlite3.Connection, raw: bytes, structure: str | None = None) -> tuple[int, bool]:
    """(id, inserted now) of the blob holding ``raw``. Inserts first: nearly every delivered message is new, so
    that is one statement; a blob already stored costs the lookup after the ignored insert."""
    digest = hashlib.sha256(raw).digest()
    row = conn.execute(  # numbered above every id ever used (migration 012: ids are never reused)
        """INSERT INTO blobs (id, sha256, size, structure, data)
           VALUES (max((SELECT coalesce(max(id), 0) FROM blobs), (SELECT floor FROM blob_id_floor)) + 1, ?, ?, ?, ?)
           ON CONFLICT (sha256) DO NOTHING RETURNING id""",
        (digest, len(raw), structure, raw),
    ).fetchone()
    if row is not None:
        return int(row[0]), True
    found = conn.execute("SELECT id FROM blobs WHERE sha256 = ?", (digest,)).fetchone()
    return int(found[0]), False


class Appended(NamedTuple):
    """Where :func:`append` put a message: its UID and MODSEQ in the mailbox and its ``messages`` row id."""

    uid: int
    modseq: int
    row_id: int


def append(
    conn: sqlite3.Connection,
    mailbox_id: int,
    blob_id: int,
    *,
    prefix: bytes,
    size: int,
    internaldate: float,
    zone: int = 0,
    flags: int = 0,
    keywords: str = "",
    slot: tuple[int, int] | None = None,
) -> Appended:
    """Add a message to a mailbox; its save date (RFC 8514) is now. ``zone``: the internal date's time zone in
    minutes east of UTC (APPEND's date-time; 0 for delivered mail). ``slot``: the (uid, modseq) the caller already
    reserved in this mailbox (the delivery path's :func:`mailboxes.allocate_uid_in`), else one is reserved here."""
    uid, modseq = mailboxes.allocate_uid(conn, mailbox_id) if slot is None else slot
    cursor = conn.execute(
        """INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internaldate, zone, blob_id, prefix, size,
                                 saved)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (mailbox_id, uid, modseq, flags, keywords, internaldate, zone, blob_id, prefix, size, time.time()),
    )
    return Appended(uid, modseq, int(cursor.lastrowid or 0))
