"""The archive: a copy of every message received and sent, kept for ``[retention] archive_days`` whatever users
delete (``[retention] archive``, off by default).

Many businesses must keep their business correspondence for years (German GoBD: six to ten; US SEC and FINRA
rules for brokers), unaltered, and produce it for an auditor. A mailbox cannot promise that: its user deletes.
With the archive on, every message an account receives (from the world or from another account here) and every
message it sends through submission is also recorded in the table ``archive`` (migration 044) in the transaction
that stores or queues it, as the exact bytes the user got or sent (the stored blob, shared with the copies, and the
copy's trace prefix). Users never see the archive and nothing they do changes it; ``relentad archive search``,
``export`` and ``verify`` are the administrator's.

Unaltered, and seen to be: each row carries ``chain``, the SHA-256 of the previous row's chain and of this row's
own fields and message digest (a hash chain, as an append-only ledger has it). ``relentad archive verify``
recomputes every digest from the stored bytes and every link from the rows, so a changed message, a changed field,
a row deleted from the middle or rows put in out of order are found; the daily purge removes rows older than
``archive_days`` from the front only, keeping the chain value of the last removed row as the anchor the next one
links to (table ``archive_anchor``).

Not archived: what this server writes itself (delivery reports, vacation replies, quota warnings, digests,
announcements), mail only forwarded elsewhere, and what was already there when the archive was turned on (an
import is not correspondence received). The archive goes into backups with the rest of the database.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .. import message
from ..errors import InvalidInput

DAY = 86_400.0
GENESIS = b"\0" * 32


@dataclass(frozen=True)
class Entry:
    id: int
    account: str
    direction: str  # "in" or "out"
    archived: float
    mail_from: str
    recipients: str
    subject: str
    message_id: str
    sha256: bytes

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "account": self.account,
            "direction": self.direction,
            "archived": datetime.fromtimestamp(self.archived, UTC).isoformat(),
            "mail_from": self.mail_from,
            "recipients": self.recipients.split(",") if self.recipients else [],
            "subject": self.subject,
            "message_id": self.message_id,
            "sha256": self.sha256.hex(),
        }


def _link(previous: bytes, entry: Entry) -> bytes:
    """The chain value of ``entry`` after ``previous``: every field and the message's digest, canonically."""
    fields = json.dumps(
        [entry.account, entry.direction, repr(entry.archived), entry.mail_from, entry.recipients, entry.subject,
         entry.message_id, entry.sha256.hex()],
        ensure_ascii=False,
        separators=(",", ":"),
    )  # fmt: skip
    return hashlib.sha256(previous + fields.encode("utf-8")).digest()


def _last_chain(conn: sqlite3.Connection) -> bytes:
    row = conn.execute("SELECT chain FROM archive ORDER BY id DESC LIMIT 1").fetchone()
    if row is not None:
        return bytes(row[0])
    anchor = conn.execute("SELECT chain FROM archive_anchor WHERE id = 1").fetchone()
    return GENESIS if anchor is None else bytes(anchor[0])


def record(
    conn: sqlite3.Connection,
    *,
    account_id: int,
    direction: str,
    blob_id: int,
    prefix: bytes,
    raw: bytes,
    mail_from: str,
    recipients: list[str] | tuple[str, ...],
    parsed: message.ParsedMessage | None,
    now: float,
) -> None:
    """One archived message: ``prefix + raw`` as the account got it (``in``) or sent it (``out``), ``raw`` being
    the blob ``blob_id``. Inside the transaction that stores or queues the message."""
    row = conn.execute("SELECT email FROM accounts WHERE id = ?", (account_id,)).fetchone()
    account = "" if row is None else str(row[0])
    digest = hashlib.sha256(prefix + raw).digest()
    subject = (parsed.subject or "") if parsed is not None else ""
    message_id = (parsed.message_id or "") if parsed is not None else ""
    entry = Entry(0, account, direction, now, mail_from, ",".join(recipients), subject[:998], message_id, digest)
    conn.execute(
        """INSERT INTO archive (account_id, account, direction, archived, blob_id, prefix, sha256, mail_from,
                                recipients, subject, message_id, chain)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (account_id, account, direction, now, blob_id, prefix, digest, mail_from, entry.recipients, entry.subject,
         message_id, _link(_last_chain(conn), entry)),
    )  # fmt: skip


@dataclass(frozen=True)
class Query:
    account: str = ""
    sender: str = ""  # a part of the envelope sender
    recipient: str = ""  # a part of a recipient
    subject: str = ""  # a part of the subject
    since: float | None = None
    until: float | None = None

    def where(self) -> tuple[str, list[object]]:
        clauses: list[str] = ["1"]
        params: list[object] = []
        if self.account:
            clauses.append("account = ?")
            params.append(self.account.lower())
        for column, text in (("mail_from", self.sender), ("recipients", self.recipient), ("subject", self.subject)):
            if text:
                clauses.append(f"instr(lower({column}), ?) > 0")
                params.append(text.lower())
        if self.since is not None:
            clauses.append("archived >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("archived < ?")
            params.append(self.until)
        return " AND ".join(clauses), params


_COLUMNS = "id, account, direction, archived, mail_from, recipients, subject, message_id, sha256"


def _entry(row: sqlite3.Row | tuple[object, ...]) -> Entry:
    return Entry(
        int(row[0]), str(row[1]), str(row[2]), float(row[3]), str(row[4]), str(row[5]), str(row[6]), str(row[7]),  # type: ignore[arg-type]
        bytes(row[8]),  # type: ignore[arg-type]
    )  # fmt: skip


def search(conn: sqlite3.Connection, query: Query, limit: int = 1000) -> list[Entry]:
    where, params = query.where()
    rows = conn.execute(f"SELECT {_COLUMNS} FROM archive WHERE {where} ORDER BY id LIMIT ?", (*params, limit))
    return [_entry(row) for row in rows]


def _messages(conn: sqlite3.Connection, query: Query) -> Iterator[tuple[Entry, bytes]]:
    where, params = query.where()
    rows = conn.execute(
        f"SELECT {', '.join('a.' + c.strip() for c in _COLUMNS.split(','))}, a.prefix, b.data FROM archive a "
        f"JOIN blobs b ON b.id = a.blob_id WHERE {where} ORDER BY a.id",
        params,
    )
    for row in rows:
        yield _entry(row), bytes(row[9]) + bytes(row[10])


def export(conn: sqlite3.Connection, query: Query, target: Path) -> int:
    """Write the matching messages to ``target`` (a new or empty folder): ``archive.mbox`` (mboxrd, each entry's
    From line carrying its archive time) and ``index.csv`` (one row per message: id, time, account, direction,
    envelope sender and recipients, subject, Message-ID, SHA-256 of the bytes); returns how many."""
    from .transfer import mbox_entry  # here: transfer imports the pipeline, which records into the archive

    if target.exists() and any(target.iterdir()):
        raise InvalidInput(f"{target} is not empty: export into a new or empty folder")
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    with (target / "archive.mbox").open("wb") as mbox, (target / "index.csv").open("w", newline="") as index:
        writer = csv.writer(index)
        writer.writerow(["id", "archived", "account", "direction", "mail_from", "recipients", "subject", "message_id",
                         "sha256"])  # fmt: skip
        for entry, raw in _messages(conn, query):
            mbox.write(mbox_entry(raw, entry.archived))
            shown = entry.as_json()
            writer.writerow([entry.id, shown["archived"], entry.account, entry.direction, entry.mail_from,
                             entry.recipients, entry.subject, entry.message_id, entry.sha256.hex()])  # fmt: skip
            count += 1
    return count


@dataclass(frozen=True)
class Verdict:
    rows: int
    problem: str  # "" when every digest and link holds
    head: bytes = GENESIS  # the chain value of the last entry verified


def head(conn: sqlite3.Connection) -> bytes:
    """The chain value of the newest entry: written down elsewhere (the daily log line, an auditor's notes), it
    pins everything before it, so that not even someone who can write the database can rebuild the chain
    unseen."""
    return _last_chain(conn)


def verify(conn: sqlite3.Connection) -> Verdict:
    """Recompute every message digest from the stored bytes and every link of the chain, in order."""
    anchor = conn.execute("SELECT chain FROM archive_anchor WHERE id = 1").fetchone()
    previous = GENESIS if anchor is None else bytes(anchor[0])
    count = 0
    rows = conn.execute(
        f"SELECT {', '.join('a.' + c.strip() for c in _COLUMNS.split(','))}, a.prefix, b.data, a.chain "
        "FROM archive a LEFT JOIN blobs b ON b.id = a.blob_id ORDER BY a.id"
    )
    for row in rows:
        entry = _entry(row)
        data = row[10]
        if isinstance(data, str):  # a blob rewritten as text by hand: not what was stored, whatever it says
            data = data.encode("utf-8", "surrogateescape")
        if data is None or hashlib.sha256(bytes(row[9]) + bytes(data)).digest() != entry.sha256:
            return Verdict(count, f"entry {entry.id}: the message's bytes are not the ones archived", previous)
        linked = _link(previous, entry)
        if linked != bytes(row[11]):
            return Verdict(
                count, f"entry {entry.id}: the chain is broken (a field changed, or an entry before it)", previous
            )
        previous = linked
        count += 1
    return Verdict(count, "", previous)


def purge(conn: sqlite3.Connection, keep_days: int, now: float | None = None) -> int:
    """Remove the entries archived more than ``keep_days`` ago, from the front, moving the anchor to the chain of
    the last one removed; their blobs lose a reference (the retention purge drops unreferenced ones)."""
    cutoff = (time.time() if now is None else now) - keep_days * DAY
    last = conn.execute(
        "SELECT id, chain FROM archive WHERE archived < ? ORDER BY id DESC LIMIT 1", (cutoff,)
    ).fetchone()
    if last is None:
        return 0
    removed = conn.execute("DELETE FROM archive WHERE id <= ?", (int(last[0]),)).rowcount
    conn.execute(
        "INSERT INTO archive_anchor (id, chain) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET chain = excluded.chain",
        (bytes(last[1]),),
    )
    return int(removed)
