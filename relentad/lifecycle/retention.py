"""Retention and purging: what happens to deleted mail and terminated accounts, and when it is gone for good.

Invariants:
- IMAP EXPUNGE moves rows into ``expunged`` (the retention area, imapwrite); :func:`terminate` does the same with
  every message of the account at once and sets its state to 'terminated', so it can no longer log in or
  receive (recipient resolution and the authenticator only know 'active' accounts).
- :func:`purge` first expunges mail saved into a Junk folder (special use ``\\Junk``) more than ``[retention]
  junk_days`` ago and into a Trash folder (``\\Trash``) more than ``trash_days`` ago, by when it was saved there
  (RFC 8514 SAVEDATE: a MOVE saves anew), as EXPUNGE does (into the retention area, QRESYNC tombstones, a new
  modseq that IMAP sessions see), then removes what is older than ``[retention] deleted_days``: retained message
  rows, terminated accounts (with their mailboxes, aliases, send counters, CRM data and spam model), then every
  blob no row references any more (``refs`` = 0, kept right by triggers), the account pages' ended sessions,
  vacation tracking past its period, and the inbound DMARC evaluations and outbound TLS sessions noted for our
  reports that no report took within their few days. It runs in one write transaction, so a reader never sees
  half an account; ``now`` is a parameter so tests (``relentad purge --at``) can move the clock.
- Login history rows of a purged account lose their account id (ON DELETE SET NULL), as the schema says.
- Activity history is rolled up before rows go (:mod:`relentad.lifecycle.activity`): retained messages are folded
  into their month's summary, and with ``activity_days`` the days before the cutoff are rolled into months.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import daily, greylist
from ..accountpage import sessions
from ..auth import apppasswords, totp
from ..authreports import outgoing as dmarc_outgoing
from ..authreports import tlsreports
from ..config import RetentionConfig
from ..crm import vacation
from ..errors import InvalidInput
from ..imap import indexer
from ..store import acl, db, imapwrite
from ..store.db import Store
from . import activity, archive

log = logging.getLogger("relentad.retention")

DAY = 86400.0


@dataclass(frozen=True)
class PurgeResult:
    expunged: int  # retained message rows removed
    accounts: int  # terminated accounts removed
    blobs: int  # message bodies no longer referenced, removed
    bytes: int  # octets of those bodies
    activity_rows: int = 0  # login history and send counter rows past ``activity_days`` (rolled up into months)
    junk: int = 0  # messages expunged from Junk folders past ``junk_days`` (now in retention)
    trash: int = 0  # messages expunged from Trash folders past ``trash_days`` (now in retention)
    archived: int = 0  # archived messages past ``archive_days`` (lifecycle/archive.py)


def terminate(conn: sqlite3.Connection, account_id: int, now: float | None = None) -> int:
    """Terminate the account: no more logins or mail; its messages go to retention. Returns how many moved."""
    now = time.time() if now is None else now
    row = conn.execute("SELECT state FROM accounts WHERE id = ?", (account_id,)).fetchone()
    if row is None:
        raise InvalidInput(f"no account {account_id}")
    if row[0] == "terminated":
        raise InvalidInput("the account is already terminated")
    conn.execute("UPDATE accounts SET state = 'terminated', terminated = ? WHERE id = ?", (now, account_id))
    acl.forget_account(conn, account_id)
    apppasswords.forget_account(conn, account_id)
    totp.forget_account(conn, account_id)
    moved = conn.execute(
        """INSERT INTO expunged (account_id, mailbox_id, mailbox_name, uid, blob_id, prefix, flags, keywords,
                                 internaldate, zone, size, expunged)
           SELECT b.account_id, m.mailbox_id, b.name, m.uid, m.blob_id, m.prefix, m.flags, m.keywords,
                  m.internaldate, m.zone, m.size, ?
           FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.account_id = ?""",
        (now, account_id),
    ).rowcount
    conn.execute(
        "DELETE FROM messages WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = ?)", (account_id,)
    )
    return int(moved)


def _delete_account(conn: sqlite3.Connection, account_id: int) -> None:
    acl.forget_account(conn, account_id)
    totp.forget_account(conn, account_id)
    boxes = "SELECT id FROM mailboxes WHERE account_id = ?"
    conn.execute(f"DELETE FROM messages WHERE mailbox_id IN ({boxes})", (account_id,))
    conn.execute(f"DELETE FROM vanished WHERE mailbox_id IN ({boxes})", (account_id,))
    conn.execute("DELETE FROM expunged WHERE account_id = ?", (account_id,))
    conn.execute("DELETE FROM mailboxes WHERE account_id = ?", (account_id,))
    for table in ("spam_tokens", "spam_totals", "spam_trained"):  # the account's own model (scope = its id)
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone():
            conn.execute(f"DELETE FROM {table} WHERE scope = ? AND scope != 0", (account_id,))
    conn.execute("UPDATE queue_messages SET account_id = NULL WHERE account_id = ?", (account_id,))
    conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,))  # aliases, counters, CRM: ON DELETE CASCADE


def purge_account(conn: sqlite3.Connection, account_id: int) -> None:
    """``terminate --now``: remove a terminated account and everything of it at once."""
    row = conn.execute("SELECT state FROM accounts WHERE id = ?", (account_id,)).fetchone()
    if row is None or row[0] != "terminated":
        raise InvalidInput("only a terminated account can be purged")
    _delete_account(conn, account_id)
    _drop_unreferenced_blobs(conn)


def _drop_unreferenced_blobs(conn: sqlite3.Connection) -> tuple[int, int]:
    row = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM blobs WHERE refs <= 0").fetchone()
    # the ids of the deleted blobs stay used: new blobs are numbered above them (store/messages.put_blob)
    conn.execute("UPDATE blob_id_floor SET floor = max(floor, (SELECT coalesce(max(id), 0) FROM blobs))")
    indexer.forget(conn, "refs <= 0")  # the search index first: its rows are removed by their texts
    conn.execute("DELETE FROM blobs WHERE refs <= 0")
    return int(row[0]), int(row[1])


def purge(
    conn: sqlite3.Connection,
    deleted_days: int,
    now: float | None = None,
    activity_days: int = 0,
    junk_days: int = 0,
    reports_days: int = 0,
    trash_days: int = 0,
    archive_days: int = 0,
) -> PurgeResult:
    """Expunge Junk mail saved more than ``junk_days`` ago and Trash mail saved more than ``trash_days`` ago (0 =
    keep it), remove retained rows and terminated accounts older than ``deleted_days``, then unreferenced blobs,
    and activity rows older than ``activity_days`` (0 = keep them), and received DMARC and TLS reports whose
    period ended more than ``reports_days`` ago (0 = keep them), and archived messages older than ``archive_days``
    (0 = keep them; before the blobs, which they may hold the last reference to)."""
    now = time.time() if now is None else now
    junk = expire_folders(conn, "\\Junk", now - junk_days * DAY) if junk_days else 0
    trash = expire_folders(conn, "\\Trash", now - trash_days * DAY) if trash_days else 0
    cutoff = now - deleted_days * DAY
    activity.fold_purged(conn, cutoff)  # what the activity totals counted from these rows moves to their month
    expunged = conn.execute("DELETE FROM expunged WHERE expunged < ?", (cutoff,)).rowcount
    gone = [
        int(r[0])
        for r in conn.execute(
            "SELECT id FROM accounts WHERE state = 'terminated' AND terminated IS NOT NULL AND terminated < ?",
            (cutoff,),
        )
    ]
    for account_id in gone:
        _delete_account(conn, account_id)
    archived = archive.purge(conn, archive_days, now) if archive_days else 0
    blobs, size = _drop_unreferenced_blobs(conn)
    pruned = activity.prune(conn, activity_days, now) if activity_days else 0
    sessions.expire(conn, now)  # the account pages' ended sessions and the addresses they were opened from
    vacation.prune(conn, now)  # replies whose period is over: the sender may get one again anyway
    greylist.prune(conn, now)  # triplets not retried in time, and those (and clients) not seen for their lifetime
    # what was noted for the DMARC and TLS reports we send and no report took (send_reports switched off since)
    dmarc_outgoing.expire(conn, now)
    tlsreports.expire(conn, now)
    if reports_days:  # their records and policies go with them (ON DELETE CASCADE)
        conn.execute("DELETE FROM reports WHERE end < ?", (now - reports_days * DAY,))
    return PurgeResult(
        expunged=int(expunged),
        accounts=len(gone),
        blobs=blobs,
        bytes=size,
        activity_rows=pruned,
        junk=junk,
        trash=trash,
        archived=archived,
    )


def expire_folders(conn: sqlite3.Connection, special_use: str, saved_before: float) -> int:
    """Expunge from every account's folder of this special use (``\\Junk``, ``\\Trash``) the mail saved (moved or
    filed) there before ``saved_before`` (RFC 8514 SAVEDATE); returns how many messages."""
    boxes = [int(r[0]) for r in conn.execute("SELECT id FROM mailboxes WHERE special_use = ?", (special_use,))]
    return sum(len(imapwrite.expire(conn, box, saved_before)) for box in boxes)


async def run_daily(store: Store, settings: Callable[[], RetentionConfig], interval: float = DAY) -> None:
    """The daemon's daily job: purge once shortly after start, then every ``interval`` seconds, until cancelled."""

    async def purge_now() -> None:
        config = settings()
        job = functools.partial(
            purge,
            deleted_days=config.deleted_days,
            activity_days=config.activity_days,
            junk_days=config.junk_days,
            reports_days=config.reports_days,
            trash_days=config.trash_days,
            archive_days=config.archive_days,
        )
        result = await store.write(job)
        if result.blobs:  # their search index rows are gone; their postings go when the index is merged
            await indexer.merge(store)
        await asyncio.to_thread(db.truncate_wal, store.path)  # nor may the purged pages stay in the -wal file
        log.info(
            "purge: %d Junk and %d Trash message(s) expired; %d expunged message(s), %d account(s), %d blob(s) "
            "(%d octets) removed",
            result.junk,
            result.trash,
            result.expunged,
            result.accounts,
            result.blobs,
            result.bytes,
        )
        if config.archive or result.archived:  # the head in the journal pins the archive as of today
            head = store.read(archive.head)
            log.info("archive: %d entry(ies) past archive_days removed; chain head %s", result.archived, head.hex())

    await daily.every_day(purge_now, what="purge", log=log, first_delay=60.0, interval=interval)
