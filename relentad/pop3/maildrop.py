"""The POP3 maildrop: the account's INBOX as it was at login, and the one transaction QUIT commits.

RFC 1939 numbers messages 1..n for the whole session, so the list is a snapshot taken at login: mail arriving later
shows at the next session, and a message another session (IMAP, or a second POP3 client) expunged meanwhile keeps
its number and answers -ERR. Sizes are the octets RETR sends before byte-stuffing: RFC822.SIZE as IMAP reports it (the
copy's trace prefix plus the CRLF-normalised blob), and two more for a message whose last line has no CRLF, which a
multi-line reply must end with. Unique ids (UIDL) are Dovecot's default
format, UID then UIDVALIDITY in hex: stable for as long as the message stays in INBOX.

Invariants: nothing is written before QUIT (RFC 1939 §6: a dropped connection changes nothing); at QUIT, the
deleted messages still present go through the store's expunge (retention area, QRESYNC tombstones, quota
counters) and the retrieved ones get \\Seen, in one transaction; messages already gone are skipped, so two
sessions deleting the same message expunge it once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..mimetree import normalize_crlf
from ..store import imapwrite, mailboxes
from ..store.imapview import chunks, placeholders


@dataclass(slots=True)
class Entry:
    uid: int
    size: int
    deleted: bool = False
    retrieved: bool = False


@dataclass
class Maildrop:
    mailbox_id: int
    uidvalidity: int
    entries: list[Entry] = field(default_factory=list)

    def unique_id(self, entry: Entry) -> str:
        return f"{entry.uid:08X}{self.uidvalidity:08X}"

    def live(self) -> list[tuple[int, Entry]]:
        """(message number, entry) of the messages not marked deleted."""
        return [(n, e) for n, e in enumerate(self.entries, 1) if not e.deleted]

    def totals(self) -> tuple[int, int]:
        live = self.live()
        return len(live), sum(entry.size for _, entry in live)

    def reset(self) -> None:
        for entry in self.entries:
            entry.deleted = False


def load(conn: sqlite3.Connection, account_id: int) -> Maildrop:
    """The account's INBOX now (an account without one has an empty maildrop). Runs in a reader thread."""
    mailbox_id = mailboxes.find(conn, account_id, mailboxes.INBOX)
    if mailbox_id is None:
        return Maildrop(0, 0)
    (uidvalidity,) = conn.execute("SELECT uidvalidity FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
    drop = Maildrop(mailbox_id, int(uidvalidity))
    rows = conn.execute(
        """SELECT m.uid, length(m.prefix),
                  CASE WHEN json_valid(b.structure) THEN json_extract(b.structure, '$.s') END,
                  CASE WHEN json_valid(b.structure) THEN json_extract(b.structure, '$.o') END, m.blob_id
           FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE m.mailbox_id = ? ORDER BY m.uid""",
        (mailbox_id,),
    ).fetchall()
    for uid, prefix, stored, stored_open_end, blob_id in rows:
        size, open_end = stored, bool(stored_open_end)
        if not isinstance(size, int):  # no stored structure: measure the normalised blob
            blob = normalize_crlf(bytes(conn.execute("SELECT data FROM blobs WHERE id = ?", (blob_id,)).fetchone()[0]))
            size, open_end = len(blob), bool(blob) and not blob.endswith(b"\r\n")
        drop.entries.append(Entry(int(uid), int(prefix or 0) + size + (2 if open_end else 0)))
    return drop


def message(conn: sqlite3.Connection, mailbox_id: int, uid: int) -> bytes | None:
    """The octets RETR sends (before stuffing), None when the message left the mailbox since login."""
    row = conn.execute(
        """SELECT m.prefix, b.data FROM messages m JOIN blobs b ON b.id = m.blob_id
           WHERE m.mailbox_id = ? AND m.uid = ?""",
        (mailbox_id, uid),
    ).fetchone()
    if row is None:
        return None
    return bytes(row[0]) + normalize_crlf(bytes(row[1]))


@dataclass(frozen=True)
class Update:
    """What QUIT changed: the UIDs expunged and the mailbox's modseq after it (0: nothing changed)."""

    expunged: list[int]
    modseq: int


def commit(conn: sqlite3.Connection, mailbox_id: int, deleted: Sequence[int], retrieved: Sequence[int]) -> Update:
    """The UPDATE state (RFC 1939 §6) in the caller's write transaction: \\Seen on the retrieved messages kept,
    then the deleted ones still present expunged."""
    modseq = 0
    seen = sorted(set(retrieved) - set(deleted))
    if seen:
        modseq = imapwrite.store_flags(conn, mailbox_id, seen, "add", ["\\Seen"]).modseq
    present: list[int] = []
    for chunk in chunks(sorted(deleted)):
        present += [
            int(r[0])
            for r in conn.execute(
                f"SELECT uid FROM messages WHERE mailbox_id = ? AND uid IN ({placeholders(len(chunk))})",
                (mailbox_id, *chunk),
            )
        ]
    if present:
        modseq = imapwrite.expunge_uids(conn, mailbox_id, present)
    return Update(present, modseq)
