"""Write jobs of the IMAP server: mailbox CREATE/DELETE/RENAME/SUBSCRIBE, STORE, COPY, MOVE, EXPUNGE, APPEND.

Each function runs on the store's writer thread inside the group-commit transaction (``await store.write(lambda
conn: ...)``) and does no I/O. Invariants (DESIGN.md §3, RFC 3501 §2.3.1.1, RFC 7162):
- UIDs come from ``mailboxes.allocate_uid`` only, so they strictly ascend and are never reused.
- Every change bumps the mailbox's modseq and stamps the changed rows with it (one modseq per command and
  mailbox); every UID leaving a mailbox is recorded in ``vanished`` with that modseq (QRESYNC).
- Nothing a user could lose is destroyed: EXPUNGE and DELETE move rows to ``expunged`` (the retention area,
  purged after ``retention.deleted_days``); blob reference counts stay right through the triggers.
- Names are validated here (hierarchy delimiter "/", no empty levels, no wildcards).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .. import quota
from ..errors import AlreadyExists, InvalidInput, NotFound, RelentadError
from . import acl, mailboxes, messages
from . import flags as flagmod
from .imapview import chunks, placeholders

DELIMITER = mailboxes.DELIMITER
FlagLimit = Callable[[int, str], tuple[int, str]]
"""(flag bits, keywords) → what of them may be set (:func:`relentad.imap.access.flag_limit`)."""
MAX_NAME = 512


class QuotaExceeded(RelentadError):
    """The account's disk quota would be exceeded (IMAP: NO [OVERQUOTA])."""


class NotSelectable(RelentadError):
    """The mailbox exists only as a hierarchy level (\\Noselect)."""


def check_name(name: str) -> None:
    """Refuse names IMAP cannot round-trip or that break the hierarchy."""
    if not name or len(name) > MAX_NAME:
        raise InvalidInput("mailbox name is empty or too long")
    if any(c in name for c in "*%\r\n\0") or any(ord(c) < 0x20 for c in name):
        raise InvalidInput("mailbox name contains a wildcard or control character")
    if any(not level for level in name.split(DELIMITER)):
        raise InvalidInput('mailbox name has an empty hierarchy level (leading, trailing or double "/")')
    if any(level in (".", "..") for level in name.split(DELIMITER)):
        raise InvalidInput('mailbox name has a "." or ".." level (names must not look like paths)')


def _row(conn: sqlite3.Connection, account_id: int, name: str) -> sqlite3.Row | None:
    return conn.execute(  # type: ignore[no-any-return]
        "SELECT id, noselect FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, name)
    ).fetchone()


def _parents(name: str) -> list[str]:
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:i]) for i in range(1, len(levels))]


def create_mailbox(conn: sqlite3.Connection, account_id: int, name: str, special_use: str | None = None) -> int:
    """CREATE (RFC 3501 §6.3.3): also creates missing superior levels; a \\Noselect level becomes real again
    with a new UIDVALIDITY."""
    check_name(name)
    name = mailboxes.stored_name(name)
    if name == mailboxes.INBOX:
        raise AlreadyExists("INBOX always exists")
    if acl.in_namespace(name):  # IMAP would resolve it as another account's mailbox: the own one could never be seen
        raise InvalidInput(f"{name} is in the shared namespace (Shared/<address>/...), where no own folder can be")
    missing = [parent for parent in _parents(name) if _row(conn, account_id, parent) is None]
    existing = _row(conn, account_id, name)
    mailboxes.check_room(conn, account_id, len(missing) + (existing is None))
    for parent in missing:
        mailboxes.create(conn, account_id, parent)
    if existing is None:
        return mailboxes.create(conn, account_id, name, special_use)
    if not existing["noselect"]:
        raise AlreadyExists(f"mailbox {name} exists")
    conn.execute("DELETE FROM vanished WHERE mailbox_id = ?", (existing["id"],))
    return mailboxes.revive(conn, account_id, int(existing["id"]), special_use)


def _has_children(conn: sqlite3.Connection, account_id: int, name: str) -> bool:
    prefix = name + DELIMITER
    row = conn.execute(
        "SELECT 1 FROM mailboxes WHERE account_id = ? AND substr(name, 1, ?) = ? LIMIT 1",
        (account_id, len(prefix), prefix),
    ).fetchone()
    return row is not None


def _retain(conn: sqlite3.Connection, mailbox_id: int, uids: Sequence[int] | None) -> None:
    """Copy message rows (all, or those UIDs) into the retention area."""
    select = """INSERT INTO expunged (account_id, mailbox_id, mailbox_name, uid, blob_id, prefix, flags, keywords,
                                      internaldate, zone, size, expunged)
                SELECT b.account_id, m.mailbox_id, b.name, m.uid, m.blob_id, m.prefix, m.flags, m.keywords,
                       m.internaldate, m.zone, m.size, ?
                FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id WHERE m.mailbox_id = ?"""
    now = time.time()
    if uids is None:
        conn.execute(select, (now, mailbox_id))
        return
    for chunk in chunks(uids):
        conn.execute(select + f" AND m.uid IN ({placeholders(len(chunk))})", (now, mailbox_id, *chunk))


def _remove(conn: sqlite3.Connection, mailbox_id: int, uids: Sequence[int], modseq: int) -> None:
    """Delete message rows and leave QRESYNC tombstones."""
    for chunk in chunks(uids):
        marks = placeholders(len(chunk))
        conn.execute(
            f"""INSERT OR REPLACE INTO vanished (mailbox_id, uid, modseq)
                SELECT mailbox_id, uid, ? FROM messages WHERE mailbox_id = ? AND uid IN ({marks})""",
            (modseq, mailbox_id, *chunk),
        )
        conn.execute(f"DELETE FROM messages WHERE mailbox_id = ? AND uid IN ({marks})", (mailbox_id, *chunk))


def delete_mailbox(conn: sqlite3.Connection, account_id: int, name: str) -> int:
    """DELETE (RFC 3501 §6.3.4): messages go to retention; with children the name stays as \\Noselect.
    Returns the id of the deleted mailbox."""
    if name.upper() == mailboxes.INBOX:
        raise InvalidInput("INBOX cannot be deleted")
    row = _row(conn, account_id, name)
    if row is None:
        raise NotFound(f"no mailbox {name}")
    mailbox_id = int(row["id"])
    children = _has_children(conn, account_id, name)
    if row["noselect"] and children:
        raise InvalidInput(f"{name} has child mailboxes and holds no messages; delete those first")
    _retain(conn, mailbox_id, None)
    conn.execute("DELETE FROM messages WHERE mailbox_id = ?", (mailbox_id,))
    conn.execute("DELETE FROM vanished WHERE mailbox_id = ?", (mailbox_id,))
    quota.rearm_warning(conn, account_id)
    acl.forget_mailbox(conn, mailbox_id)
    if children:
        conn.execute("UPDATE mailboxes SET noselect = 1, special_use = NULL WHERE id = ?", (mailbox_id,))
    else:
        conn.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))
    return mailbox_id


def rename_mailbox(conn: sqlite3.Connection, account_id: int, source: str, destination: str) -> None:
    """RENAME (RFC 3501 §6.3.5): children follow; renaming INBOX moves its messages to a new mailbox and leaves
    INBOX empty (its children stay)."""
    check_name(destination)
    if destination.upper() == mailboxes.INBOX:
        raise AlreadyExists("INBOX always exists")
    row = _row(conn, account_id, source)
    if row is None:
        raise NotFound(f"no mailbox {source}")
    if _row(conn, account_id, destination) is not None:
        raise AlreadyExists(f"mailbox {destination} exists")
    if destination.startswith(source + DELIMITER):
        raise InvalidInput("a mailbox cannot be moved inside itself")
    missing = [parent for parent in _parents(destination) if _row(conn, account_id, parent) is None]
    mailboxes.check_room(conn, account_id, len(missing) + (source == mailboxes.INBOX))
    for parent in missing:
        mailboxes.create(conn, account_id, parent)
    if source == mailboxes.INBOX:
        target = mailboxes.create(conn, account_id, destination)
        all_uids = [r[0] for r in conn.execute("SELECT uid FROM messages WHERE mailbox_id = ?", (row["id"],))]
        copy_messages(conn, int(row["id"]), all_uids, target)
        _remove(conn, int(row["id"]), all_uids, mailboxes.bump_modseq(conn, int(row["id"])))
        return
    prefix = source + DELIMITER
    conn.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (destination, row["id"]))
    conn.execute(
        """UPDATE mailboxes SET name = ? || substr(name, ?) WHERE account_id = ? AND substr(name, 1, ?) = ?""",
        (destination + DELIMITER, len(prefix) + 1, account_id, len(prefix), prefix),
    )
    # the subscriptions of the renamed mailboxes follow them (a client's folder list should not lose them)
    conn.execute(
        "UPDATE OR REPLACE subscriptions SET name = ? WHERE account_id = ? AND name = ?",
        (destination, account_id, source),
    )
    conn.execute(
        """UPDATE OR REPLACE subscriptions SET name = ? || substr(name, ?)
           WHERE account_id = ? AND substr(name, 1, ?) = ?""",
        (destination + DELIMITER, len(prefix) + 1, account_id, len(prefix), prefix),
    )


def claim_recent(conn: sqlite3.Connection, mailbox_id: int) -> tuple[int, int]:
    """Take ownership of the mailbox's recent messages (RFC 3501 §2.3.2 \\Recent: one session only).

    Returns (first, end): UIDs first <= uid < end are recent for the caller; the next claim starts at end.
    """
    row = conn.execute("SELECT first_recent_uid, uidnext FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
    if row is None:
        return 0, 0
    conn.execute("UPDATE mailboxes SET first_recent_uid = ? WHERE id = ?", (row[1], mailbox_id))
    return int(row[0]), int(row[1])


def set_subscribed(conn: sqlite3.Connection, account_id: int, name: str, subscribed: bool) -> None:
    """SUBSCRIBE / UNSUBSCRIBE (RFC 9051 §6.3.7-8). A name may be subscribed whether or not the mailbox exists (the
    server MAY check, and a client that subscribes before it creates must work); unsubscribing a name that is not
    subscribed is NO."""
    name = mailboxes.stored_name(name)
    if subscribed:
        check_name(name)
        conn.execute("INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)", (account_id, name))
        return
    cursor = conn.execute("DELETE FROM subscriptions WHERE account_id = ? AND name = ?", (account_id, name))
    if cursor.rowcount == 0:
        raise NotFound(f"{name} is not subscribed")


@dataclass(frozen=True)
class StoreResult:
    """STORE outcome: rows whose flags changed (uid, modseq, flags, keywords) and UIDs that failed
    UNCHANGEDSINCE (RFC 7162 §3.1.3 MODIFIED)."""

    changed: list[tuple[int, int, int, str]]
    modified: list[int]
    modseq: int
    current: list[tuple[int, int, int, str]]
    """Every requested message that exists and was not MODIFIED, with its flags after the STORE."""
    before: dict[int, str] = field(default_factory=dict)
    """The keywords each changed message (by UID) had before the STORE (what spam training learns from)."""


def store_flags(
    conn: sqlite3.Connection,
    mailbox_id: int,
    uids: Sequence[int],
    action: str,
    names: Sequence[str],
    unchanged_since: int | None = None,
) -> StoreResult:
    """STORE (RFC 3501 §6.4.6) on existing UIDs; unchanged messages keep their modseq."""
    bits, keywords = flagmod.split(names)
    modseq = 0
    changed: list[tuple[int, int, int, str]] = []
    modified: list[int] = []
    current: list[tuple[int, int, int, str]] = []
    before: dict[int, str] = {}
    for chunk in chunks(uids):
        rows = conn.execute(
            f"""SELECT uid, modseq, flags, keywords FROM messages
                WHERE mailbox_id = ? AND uid IN ({placeholders(len(chunk))}) ORDER BY uid""",
            (mailbox_id, *chunk),
        ).fetchall()
        for uid, old_modseq, old_bits, old_keywords in rows:
            if unchanged_since is not None and old_modseq > unchanged_since:
                modified.append(uid)
                continue
            new_bits, new_keywords = flagmod.apply(action, old_bits, old_keywords, bits, keywords)
            if new_bits == old_bits and new_keywords == old_keywords:
                current.append((uid, old_modseq, old_bits, old_keywords))
                continue
            if not modseq:
                modseq = mailboxes.bump_modseq(conn, mailbox_id)
            conn.execute(
                "UPDATE messages SET flags = ?, keywords = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
                (new_bits, new_keywords, modseq, mailbox_id, uid),
            )
            changed.append((uid, modseq, new_bits, new_keywords))
            current.append((uid, modseq, new_bits, new_keywords))
            before[uid] = old_keywords
    return StoreResult(changed, modified, modseq, current, before)


def check_quota(conn: sqlite3.Connection, account_id: int, extra: int, count: int = 1) -> None:
    """Raise QuotaExceeded when ``count`` more messages of ``extra`` octets would take the account over its disk
    quota or its message limit (RFC 9208 STORAGE, MESSAGE)."""
    if quota.would_exceed(conn, account_id, extra, count):
        raise QuotaExceeded("the account's quota (storage or number of messages) would be exceeded")


def size_of(conn: sqlite3.Connection, mailbox_id: int, uids: Sequence[int]) -> int:
    """Octets the messages ``uids`` of a mailbox count against the quota."""
    total = 0
    for chunk in chunks(uids):
        total += conn.execute(
            f"SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox_id = ? AND uid IN ({placeholders(len(chunk))})",
            (mailbox_id, *chunk),
        ).fetchone()[0]
    return int(total)


def copy_messages(
    conn: sqlite3.Connection,
    source_id: int,
    uids: Sequence[int],
    target_id: int,
    relabel: Callable[[str], str] | None = None,
    limit: FlagLimit | None = None,
) -> list[tuple[int, int]]:
    """COPY (RFC 3501 §6.4.7): (source uid, new uid) pairs; the copies share the blob, flags and date (with its
    zone), and get the source's keywords (through ``relabel`` when given: the Junk keywords of a copy crossing
    Junk's border). ``limit`` drops the flags the copier may not set in the target (a shared mailbox's rights)."""
    pairs: list[tuple[int, int]] = []
    for chunk in chunks(uids):
        rows = conn.execute(
            f"""SELECT uid, flags, keywords, internaldate, zone, blob_id, prefix, size FROM messages
                WHERE mailbox_id = ? AND uid IN ({placeholders(len(chunk))}) ORDER BY uid""",
            (source_id, *chunk),
        ).fetchall()
        for uid, source_bits, source_keywords, internaldate, zone, blob_id, prefix, size in rows:
            keywords = relabel(source_keywords) if relabel is not None else source_keywords
            bits = source_bits
            if limit is not None:
                bits, keywords = limit(bits, keywords)
            new_uid = messages.append(
                conn,
                target_id,
                blob_id,
                prefix=bytes(prefix),
                size=size,
                internaldate=internaldate,
                zone=zone,
                flags=bits,
                keywords=keywords,
            ).uid
            pairs.append((uid, new_uid))
    return pairs


def move_messages(
    conn: sqlite3.Connection,
    source_id: int,
    uids: Sequence[int],
    target_id: int,
    relabel: Callable[[str], str] | None = None,
    limit: FlagLimit | None = None,
) -> tuple[list[tuple[int, int]], int]:
    """MOVE (RFC 6851): copy, then remove from the source (no retention copy: the message lives on)."""
    pairs = copy_messages(conn, source_id, uids, target_id, relabel, limit)
    modseq = mailboxes.bump_modseq(conn, source_id)
    _remove(conn, source_id, [source for source, _ in pairs], modseq)
    return pairs, modseq


def expunge(conn: sqlite3.Connection, mailbox_id: int, uids: Sequence[int] | None = None) -> tuple[list[int], int]:
    """EXPUNGE (RFC 3501 §6.4.3) / UID EXPUNGE (RFC 4315 §2.1): messages with \\Deleted (among ``uids``
    when given) go to retention; returns (expunged UIDs ascending, modseq)."""
    query = "SELECT uid FROM messages WHERE mailbox_id = ? AND flags & 8 != 0"
    if uids is None:
        gone = [r[0] for r in conn.execute(query + " ORDER BY uid", (mailbox_id,))]
    else:
        gone = []
        for chunk in chunks(uids):
            gone += [
                r[0] for r in conn.execute(query + f" AND uid IN ({placeholders(len(chunk))})", (mailbox_id, *chunk))
            ]
        gone.sort()
    if not gone:
        return [], 0
    return gone, expunge_uids(conn, mailbox_id, gone)


def expunge_uids(conn: sqlite3.Connection, mailbox_id: int, uids: Sequence[int]) -> int:
    """Move these messages into retention and out of the mailbox under a new modseq, which it returns."""
    modseq = mailboxes.bump_modseq(conn, mailbox_id)
    _retain(conn, mailbox_id, uids)
    _remove(conn, mailbox_id, uids, modseq)
    owner = conn.execute("SELECT account_id FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
    quota.rearm_warning(conn, int(owner[0]))
    return modseq


def expire(conn: sqlite3.Connection, mailbox_id: int, saved_before: float) -> list[int]:
    """Expunge every message saved into the mailbox before ``saved_before`` (Junk's expiry, ``[retention]
    junk_days``), into retention like EXPUNGE; returns the UIDs expunged, ascending."""
    gone = [
        int(r[0])
        for r in conn.execute(
            "SELECT uid FROM messages WHERE mailbox_id = ? AND coalesce(saved, internaldate) < ? ORDER BY uid",
            (mailbox_id, saved_before),
        )
    ]
    if gone:
        expunge_uids(conn, mailbox_id, gone)
    return gone


def append_message(
    conn: sqlite3.Connection,
    account_id: int,
    mailbox_id: int,
    raw: bytes,
    *,
    structure: str | None,
    size: int,
    names: Sequence[str],
    internaldate: float,
    zone: int = 0,
) -> int:
    """APPEND (RFC 3501 §6.3.11) of one message; checks the account's disk quota and message limit. ``zone``: the
    internal date's time zone, minutes east of UTC."""
    check_quota(conn, account_id, size, 1)
    bits, keywords = flagmod.split(names)
    blob_id = messages.store_blob(conn, raw, structure)
    return messages.append(
        conn,
        mailbox_id,
        blob_id,
        prefix=b"",
        size=size,
        internaldate=internaldate,
        zone=zone,
        flags=bits,
        keywords=" ".join(keywords),
    ).uid
