"""The outbound queue in SQLite: enqueue at submission, pick due work, record per-recipient results.

A message is queued (``queue_messages`` + one ``queue_recipients`` row per remote recipient) in the same
transaction that answers the submission's DATA, so ``250`` means "durably queued". The runner
(:mod:`relentad.queue.runner`) picks due recipients grouped by (message, destination domain) and records each
recipient's result the moment its server answered, one transaction per result set:

- ``delivered``: the receiving server accepted it; the row is never attempted again, whatever restarts follow;
- ``failed``: a permanent refusal, or ``queue.lifetime`` is over; the sender got (or gets, in the same
  transaction) a DSN;
- ``queued`` with a later ``next_attempt``: a temporary failure, retried on ``queue.retry_schedule``.

A message row goes away once none of its recipients is queued any more. Every function takes a connection and
runs in the caller's transaction (``store.write`` in the daemon, ``db.transaction`` in the CLI).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import addrspec
from ..errors import NotFound
from ..smtp import dsnparams

QUEUED, DELIVERED, FAILED = "queued", "delivered", "failed"


@dataclass(frozen=True)
class Recipient:
    id: int
    address: str
    attempts: int
    dsn: dsnparams.RcptParams = dsnparams.NO_RCPT_PARAMS


@dataclass(frozen=True)
class Work:
    """One delivery attempt's worth: a message and its due recipients at one destination domain."""

    message_id: int
    account_id: int | None
    mail_from: str
    data: bytes
    created: float
    delay_notified: bool
    domain: str
    recipients: tuple[Recipient, ...]
    dsn: dsnparams.MailParams = field(default=dsnparams.NO_MAIL_PARAMS)
    transaction_id: str = ""


def recipient_domain(address: str) -> str:
    """The destination domain of a recipient address (normalised when possible)."""
    try:
        return addrspec.split(address)[1]
    except Exception:  # an address we accepted at RCPT always splits; stay total anyway
        return address.rpartition("@")[2].lower()


def enqueue(
    conn: sqlite3.Connection,
    *,
    account_id: int | None,
    mail_from: str,
    data: bytes,
    recipients: list[str],
    transaction_id: str,
    now: float | None = None,
    dsn: dsnparams.MailParams = dsnparams.NO_MAIL_PARAMS,
    notify: Mapping[str, dsnparams.RcptParams] | None = None,
) -> int:
    """Queue ``data`` for ``recipients``, due at once, with MAIL's DSN parameters and each recipient's (RFC 3461);
    returns the queue id."""
    now = time.time() if now is None else now
    cursor = conn.execute(
        """INSERT INTO queue_messages (account_id, mail_from, data, size, transaction_id, created, dsn_ret, dsn_envid)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
        (account_id, mail_from, data, len(data), transaction_id, now, dsn.ret, dsn.envid),
    )
    message_id = int(cursor.lastrowid or 0)
    rows = []
    for address in recipients:
        params = (notify or {}).get(address, dsnparams.NO_RCPT_PARAMS)
        notify_text = dsnparams.notify_text(params.notify)
        rows.append((message_id, address, recipient_domain(address), now, notify_text, params.orcpt))
    conn.executemany(
        """INSERT INTO queue_recipients (message_id, address, domain, next_attempt, dsn_notify, dsn_orcpt)
           VALUES (?, ?, ?, ?, ?, ?)""",
        rows,
    )
    return message_id


def count_sent(conn: sqlite3.Connection, account_id: int, recipients: int, now: float | None = None) -> None:
    """Add ``recipients`` to the account's send counters for the current hour and day (UTC)."""
    now = time.time() if now is None else now
    for period, length in (("hour", 3600), ("day", 86400)):
        start = int(now // length * length)
        conn.execute(
            """INSERT INTO send_counts (account_id, period, start, recipients) VALUES (?, ?, ?, ?)
               ON CONFLICT (account_id, period, start) DO UPDATE SET recipients = recipients + excluded.recipients""",
            (account_id, period, start, recipients),
        )


def due(
    conn: sqlite3.Connection,
    now: float,
    limit: int = 200,
    *,
    skip_domains: Collection[str] = (),
    skip: Collection[tuple[int, str]] = (),
) -> list[tuple[int, str]]:
    """(message id, domain) pairs with recipients due now, oldest first, leaving out ``skip_domains`` and the
    pairs in ``skip``: the runner's busy destinations and work in flight must not fill the page, or a domain with
    many due messages hides all others."""
    rows = conn.execute(
        """SELECT message_id, domain FROM queue_recipients WHERE state = 'queued' AND next_attempt <= ?
             AND domain NOT IN (SELECT value FROM json_each(?))
             AND (message_id, domain) NOT IN
                 (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))
           GROUP BY message_id, domain ORDER BY min(next_attempt) LIMIT ?""",
        (now, json.dumps(list(skip_domains)), json.dumps(list(skip)), limit),
    )
    return [(int(r[0]), str(r[1])) for r in rows]


def next_due(conn: sqlite3.Connection) -> float | None:
    row = conn.execute("SELECT min(next_attempt) FROM queue_recipients WHERE state = 'queued'").fetchone()
    return None if row[0] is None else float(row[0])


def load(conn: sqlite3.Connection, message_id: int, domain: str, now: float) -> Work | None:
    """The due recipients of one message at one domain, with the message; None when nothing is due."""
    message = conn.execute(
        """SELECT account_id, mail_from, data, created, delay_notified, dsn_ret, dsn_envid, transaction_id
           FROM queue_messages WHERE id = ?""",
        (message_id,),
    ).fetchone()
    if message is None:
        return None
    rows = conn.execute(
        """SELECT id, address, attempts, dsn_notify, dsn_orcpt FROM queue_recipients
           WHERE message_id = ? AND domain = ? AND state = 'queued' AND next_attempt <= ? ORDER BY id""",
        (message_id, domain, now),
    ).fetchall()
    if not rows:
        return None
    return Work(
        message_id=message_id,
        account_id=message["account_id"],
        mail_from=str(message["mail_from"]),
        data=bytes(message["data"]),
        created=float(message["created"]),
        delay_notified=bool(message["delay_notified"]),
        domain=domain,
        recipients=tuple(
            Recipient(
                int(r["id"]),
                str(r["address"]),
                int(r["attempts"]),
                dsnparams.rcpt_params(r["dsn_notify"], r["dsn_orcpt"]),
            )
            for r in rows
        ),
        dsn=dsnparams.MailParams(message["dsn_ret"], message["dsn_envid"]),
        transaction_id=str(message["transaction_id"]),
    )


def retry_delay(schedule: list[float], attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1-based); the schedule's last step repeats."""
    if not schedule:
        return 60.0
    return schedule[min(max(attempts, 1), len(schedule)) - 1]


def record(
    conn: sqlite3.Connection,
    recipient_id: int,
    state: str,
    reply: str,
    now: float,
    next_attempt: float | None = None,
) -> None:
    """One recipient's attempt result; only a still-queued recipient changes (a result is never undone)."""
    if state == QUEUED:
        conn.execute(
            """UPDATE queue_recipients SET attempts = attempts + 1, last_attempt = ?, last_reply = ?,
                      next_attempt = ? WHERE id = ? AND state = 'queued'""",
            (now, reply, next_attempt if next_attempt is not None else now, recipient_id),
        )
    else:
        conn.execute(
            """UPDATE queue_recipients SET state = ?, attempts = attempts + 1, last_attempt = ?, last_reply = ?,
                      finished = ? WHERE id = ? AND state = 'queued'""",
            (state, now, reply, now, recipient_id),
        )


def mark_delay_notified(conn: sqlite3.Connection, message_id: int) -> bool:
    """Set the message's delay_notified flag; True when this call set it (the delay notice is this caller's)."""
    cursor = conn.execute(
        "UPDATE queue_messages SET delay_notified = 1 WHERE id = ? AND delay_notified = 0", (message_id,)
    )
    return cursor.rowcount == 1


def finish(conn: sqlite3.Connection, message_id: int) -> bool:
    """Delete the message when none of its recipients is queued any more; True when it went."""
    left = conn.execute(
        "SELECT 1 FROM queue_recipients WHERE message_id = ? AND state = 'queued' LIMIT 1", (message_id,)
    ).fetchone()
    if left is not None:
        return False
    conn.execute("DELETE FROM queue_messages WHERE id = ?", (message_id,))
    return True


def list_queue(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every queued message with its recipients' states, oldest first (what ``relentad queue list`` shows), and the
    DSN parameters it was sent with (None where not given): RET and decoded ENVID, each recipient's NOTIFY and
    ORCPT (``type;decoded address``)."""
    messages = conn.execute(
        """SELECT q.id, q.mail_from, q.size, q.created, q.transaction_id, a.email AS account,
                  q.dsn_ret AS ret, q.dsn_envid AS envid
           FROM queue_messages q LEFT JOIN accounts a ON a.id = q.account_id ORDER BY q.created, q.id"""
    ).fetchall()
    result: list[dict[str, Any]] = []
    for message in messages:
        recipients = conn.execute(
            """SELECT address, state, attempts, next_attempt, last_attempt, last_reply,
                      dsn_notify AS notify, dsn_orcpt AS orcpt
               FROM queue_recipients WHERE message_id = ? ORDER BY id""",
            (message["id"],),
        ).fetchall()
        result.append({**dict(message), "recipients": [dict(r) for r in recipients]})
    return result


def retry_now(conn: sqlite3.Connection, message_id: int, now: float | None = None) -> int:
    """Make the queued recipients of a message due now; returns how many."""
    if conn.execute("SELECT 1 FROM queue_messages WHERE id = ?", (message_id,)).fetchone() is None:
        raise NotFound(f"no such queued message: {message_id}")
    cursor = conn.execute(
        "UPDATE queue_recipients SET next_attempt = ? WHERE message_id = ? AND state = 'queued'",
        (time.time() if now is None else now, message_id),
    )
    return cursor.rowcount


def delete(conn: sqlite3.Connection, message_id: int) -> None:
    """Drop a message from the queue without delivering or bouncing it."""
    cursor = conn.execute("DELETE FROM queue_messages WHERE id = ?", (message_id,))
    if cursor.rowcount == 0:
        raise NotFound(f"no such queued message: {message_id}")
