"""Read-only queries the IMAP server runs against the store: mailboxes, UID lists, changes, message rows.

Every function takes a connection and is short and indexed, so the loop thread may run it through
``store.read``; the FETCH/SEARCH row loaders may return many rows and are meant for a worker thread with its own
connection (:class:`ReaderPool`). Nothing here writes.

Invariants: UID lists are ascending; ``changes_since(m)`` returns every message whose modseq is greater than
``m`` and every UID that vanished with a modseq greater than ``m`` (RFC 7162), so a session that remembers the
highest modseq it has seen never misses a change.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .. import quota
from . import db

T = TypeVar("T")
CHUNK = 500
"""Largest `IN (...)` list per query (SQLite allows 32766 parameters; smaller keeps plans cheap)."""


@dataclass(frozen=True, kw_only=True)
class MailboxInfo:
    id: int
    name: str
    special_use: str | None
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    noselect: bool
    first_recent_uid: int = 1
    subscribed: bool = False
    """Read only for LIST (:func:`all_mailboxes`); the lookups of one mailbox (SELECT, APPEND, COPY…) leave it
    False rather than query the subscriptions each time."""

    @classmethod
    def from_row(cls, row: sqlite3.Row, subscribed: bool = False) -> MailboxInfo:
        return cls(
            id=row["id"],
            name=row["name"],
            special_use=row["special_use"],
            uidvalidity=row["uidvalidity"],
            uidnext=row["uidnext"],
            highestmodseq=row["highestmodseq"],
            noselect=bool(row["noselect"]),
            first_recent_uid=row["first_recent_uid"],
            subscribed=subscribed,
        )


_MAILBOX_COLUMNS = "id, name, special_use, uidvalidity, uidnext, highestmodseq, noselect, first_recent_uid"


def subscriptions(conn: sqlite3.Connection, account_id: int) -> set[str]:
    """The account's subscribed names, mailboxes that exist or not (RFC 9051 §6.3.7)."""
    return {row[0] for row in conn.execute("SELECT name FROM subscriptions WHERE account_id = ?", (account_id,))}


def chunks(values: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def placeholders(count: int) -> str:
    return ",".join("?" * count)


def mailbox(conn: sqlite3.Connection, account_id: int, name: str) -> MailboxInfo | None:
    row = conn.execute(
        f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, name)
    ).fetchone()
    return None if row is None else MailboxInfo.from_row(row)


def mailbox_by_id(conn: sqlite3.Connection, mailbox_id: int) -> MailboxInfo | None:
    row = conn.execute(f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
    return None if row is None else MailboxInfo.from_row(row)


def all_mailboxes(conn: sqlite3.Connection, account_id: int) -> list[MailboxInfo]:
    """Every mailbox of the account with whether it is subscribed: what LIST shows."""
    rows = conn.execute(
        f"""SELECT {_MAILBOX_COLUMNS}, EXISTS (SELECT 1 FROM subscriptions s
                WHERE s.account_id = mailboxes.account_id AND s.name = mailboxes.name) AS subscribed
            FROM mailboxes WHERE account_id = ? ORDER BY name""",
        (account_id,),
    )
    return [MailboxInfo.from_row(row, bool(row["subscribed"])) for row in rows]


def uids(conn: sqlite3.Connection, mailbox_id: int) -> list[int]:
    """Ascending UIDs of the mailbox: position i (from 0) is message sequence number i + 1."""
    return [row[0] for row in conn.execute("SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid", (mailbox_id,))]


@dataclass(frozen=True)
class Counts:
    messages: int
    unseen: int
    deleted: int
    size: int
    recent: int
    deleted_size: int = 0  # octets of the messages with \Deleted (RFC 9208 DELETED-STORAGE)


def counts(conn: sqlite3.Connection, mailbox_id: int, first_recent_uid: int = 0) -> Counts:
    """STATUS numbers (RFC 9051 §6.3.11): messages, without \\Seen, with \\Deleted, total octets, those
    not yet claimed as \\Recent by a session (UID >= first_recent_uid), and octets with \\Deleted."""
    row = conn.execute(
        """SELECT count(*), coalesce(sum(flags & 1 = 0), 0), coalesce(sum(flags & 8 != 0), 0), coalesce(sum(size), 0),
                  coalesce(sum(uid >= ?), 0), coalesce(sum(CASE WHEN flags & 8 != 0 THEN size ELSE 0 END), 0)
           FROM messages WHERE mailbox_id = ?""",
        (first_recent_uid, mailbox_id),
    ).fetchone()
    return Counts(int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]), int(row[5]))


def has_deleted(conn: sqlite3.Connection, mailbox_id: int) -> bool:
    """Whether some message carries \\Deleted (CLOSE and EXPUNGE skip their write job when none does)."""
    row = conn.execute("SELECT 1 FROM messages WHERE mailbox_id = ? AND flags & 8 != 0 LIMIT 1", (mailbox_id,))
    return row.fetchone() is not None


def first_unseen(conn: sqlite3.Connection, mailbox_id: int) -> int | None:
    """UID of the first message without \\Seen, None when every message is seen."""
    row = conn.execute("SELECT min(uid) FROM messages WHERE mailbox_id = ? AND flags & 1 = 0", (mailbox_id,)).fetchone()
    return None if row[0] is None else int(row[0])


def keywords_in_use(conn: sqlite3.Connection, mailbox_id: int) -> list[str]:
    """Keywords set on some message of the mailbox, for the FLAGS response."""
    found: dict[str, str] = {}
    for (text,) in conn.execute(
        "SELECT DISTINCT keywords FROM messages WHERE mailbox_id = ? AND keywords != ''", (mailbox_id,)
    ):
        for keyword in text.split():
            found.setdefault(keyword.lower(), keyword)
    return sorted(found.values())


@dataclass(frozen=True)
class Change:
    """A message whose modseq moved past what a session has seen (new, or flags changed)."""

    uid: int
    modseq: int
    flags: int
    keywords: str


def changes_since(conn: sqlite3.Connection, mailbox_id: int, modseq: int) -> tuple[list[Change], list[int], int]:
    """(changed messages by UID, vanished UIDs, current highestmodseq) after ``modseq``; the highestmodseq is -1
    when the mailbox no longer exists (deleted by another session).

    Needs no read transaction: the highestmodseq H is read first and only changes up to H are returned. Modseqs
    grow with every committed change, so a row with a modseq <= H in a later snapshot was last changed by then;
    what commits between the queries has a modseq > H and is returned by the next call."""
    highest = highest_modseq(conn, mailbox_id)
    if highest < 0:
        return [], [], -1
    changed = [
        Change(row[0], row[1], row[2], row[3])
        for row in conn.execute(
            """SELECT uid, modseq, flags, keywords FROM messages WHERE mailbox_id = ? AND modseq > ? AND modseq <= ?
               ORDER BY uid""",
            (mailbox_id, modseq, highest),
        )
    ]
    gone = [
        row[0]
        for row in conn.execute(
            "SELECT uid FROM vanished WHERE mailbox_id = ? AND modseq > ? AND modseq <= ? ORDER BY uid",
            (mailbox_id, modseq, highest),
        )
    ]
    return changed, gone, highest


def highest_modseq(conn: sqlite3.Connection, mailbox_id: int) -> int:
    """The mailbox's highestmodseq, -1 when it no longer exists (as in :func:`changes_since`)."""
    row = conn.execute("SELECT highestmodseq, noselect FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
    return int(row[0]) if row is not None and not row[1] else -1


def vanished_since(conn: sqlite3.Connection, mailbox_id: int, modseq: int) -> list[int]:
    """UIDs expunged from the mailbox with a modseq greater than ``modseq`` (QRESYNC)."""
    return [
        row[0]
        for row in conn.execute(
            "SELECT uid FROM vanished WHERE mailbox_id = ? AND modseq > ? ORDER BY uid", (mailbox_id, modseq)
        )
    ]


@dataclass
class MessageRow:
    """What FETCH needs of one message; ``data`` (the blob) only when asked for."""

    uid: int
    modseq: int
    flags: int
    keywords: str
    internaldate: float
    size: int
    blob_id: int
    prefix: bytes
    structure: str | None
    data: bytes | None
    saved: float | None = None
    """When the message was saved into the mailbox (RFC 8514 SAVEDATE); None when unknown (CRM views)."""
    zone: int = 0
    """The internal date's time zone, minutes east of UTC (APPEND's date-time)."""


def message_rows(
    conn: sqlite3.Connection, mailbox_id: int, wanted: Sequence[int], *, with_data: bool, with_structure: bool = True
) -> list[MessageRow]:
    """Rows of the UIDs in ``wanted`` (ascending) that still exist, in UID order."""
    data_column = "b.data" if with_data else "NULL"
    structure_column = "b.structure" if with_structure else "NULL"
    join = "JOIN blobs b ON b.id = m.blob_id" if with_data or with_structure else ""
    out: list[MessageRow] = []
    for chunk in chunks(wanted):
        rows = conn.execute(
            f"""SELECT m.uid, m.modseq, m.flags, m.keywords, m.internaldate, m.size, m.blob_id, m.prefix,
                       {structure_column}, {data_column}, m.saved, m.zone
                FROM messages m {join}
                WHERE m.mailbox_id = ? AND m.uid IN ({placeholders(len(chunk))}) ORDER BY m.uid""",
            (mailbox_id, *chunk),
        )
        out.extend(
            MessageRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                bytes(r[7]),
                r[8],
                None if r[9] is None else bytes(r[9]),
                r[10],
                r[11],
            )
            for r in rows
        )
    return out


def blob_data(conn: sqlite3.Connection, blob_id: int) -> bytes:
    row = conn.execute("SELECT data FROM blobs WHERE id = ?", (blob_id,)).fetchone()
    return b"" if row is None else bytes(row[0])


def blob_slice(conn: sqlite3.Connection, blob_id: int, offset: int, length: int) -> bytes:
    """``length`` octets of a blob from ``offset``, read incrementally: a preview of a message with large
    attachments reads its first text part, not the attachments."""
    try:
        with conn.blobopen("blobs", "data", blob_id, readonly=True) as blob:
            blob.seek(min(offset, len(blob)))
            return blob.read(max(0, length))
    except sqlite3.Error:  # purged meanwhile
        return b""


def blob_digests(conn: sqlite3.Connection, blob_ids: Sequence[int]) -> dict[int, bytes]:
    """The SHA-256 of each blob (RFC 8474 EMAILID)."""
    out: dict[int, bytes] = {}
    for chunk in chunks(blob_ids):
        out.update(
            (int(blob_id), bytes(digest))
            for blob_id, digest in conn.execute(
                f"SELECT id, sha256 FROM blobs WHERE id IN ({placeholders(len(chunk))})", chunk
            )
        )
    return out


def thread_ids(conn: sqlite3.Connection, account_id: int, blob_ids: Sequence[int]) -> dict[int, int]:
    """The CRM thread of each blob the account's CRM filed (RFC 8474 THREADID); blobs it never filed are left
    out."""
    out: dict[int, int] = {}
    for chunk in chunks(blob_ids):
        out.update(
            conn.execute(
                f"""SELECT blob_id, thread_id FROM crm_messages
                    WHERE account_id = ? AND thread_id IS NOT NULL AND blob_id IN ({placeholders(len(chunk))})""",
                (account_id, *chunk),
            ).fetchall()
        )
    return out


def usage(conn: sqlite3.Connection, account_id: int) -> tuple[int, int]:
    """(octets, messages) the account's mailboxes hold: what QUOTA reports (RFC 9208 STORAGE is in KiB)."""
    return quota.disk_usage(conn, account_id)


def quota_limits(conn: sqlite3.Connection, account_id: int) -> tuple[int, int]:
    """(octets, messages) the account may hold, 0 = unlimited (RFC 9208 STORAGE, MESSAGE)."""
    return quota.limits(conn, account_id)


class ReaderPool:
    """Read connections for worker threads: heavy reads (big FETCH, SEARCH, a CardDAV book) run off the event loop.

    Each call borrows a connection for the duration of ``fn`` only; connections are made on demand and kept.
    """

    def __init__(self, path: Path, size: int = 4) -> None:
        self.path = path
        self._idle: list[sqlite3.Connection] = []
        self._semaphore = asyncio.Semaphore(size)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        async with self._semaphore:
            conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = await asyncio.to_thread(db.connect, self.path, readonly=True)
            try:
                return await asyncio.to_thread(db.in_snapshot, conn, fn)
            finally:
                self._idle.append(conn)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
