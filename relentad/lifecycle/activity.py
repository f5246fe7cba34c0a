"""Account activity (issue 7): the login history and per-day counters of mail received, sent and bytes stored.

Invariants: nothing here writes on the mail path. Logins come from ``login_history`` (written by
:mod:`relentad.auth.history` for every IMAP and submission attempt); recipients sent per day from the
submission's ``send_counts``; messages received and bytes stored per UTC day are derived from the stored rows
(mailboxes other than the Sent folder, plus the retention area, so deleting mail does not rewrite history until
it is purged). Old rows are not kept forever: :func:`prune` (run by the retention purge) deletes login history
and send counters older than ``[retention] activity_days``.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime

DAY = 86400


@dataclass(frozen=True)
class Login:
    time: float
    ip: str
    protocol: str
    result: str  # success | failure


@dataclass(frozen=True)
class Day:
    day: str  # YYYY-MM-DD (UTC)
    received: int
    sent: int  # recipients
    bytes_stored: int  # octets of the mail received that day
    logins: int
    failed_logins: int


def _day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).date().isoformat()


def logins(conn: sqlite3.Connection, account_id: int, since: float) -> list[Login]:
    """Login attempts on the account since ``since``, newest first."""
    rows = conn.execute(
        """SELECT time, ip, protocol, result FROM login_history WHERE account_id = ? AND time >= ?
           ORDER BY time DESC, id DESC""",
        (account_id, since),
    )
    return [Login(float(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def days(conn: sqlite3.Connection, account_id: int, count: int, now: float | None = None) -> list[Day]:
    """The last ``count`` UTC days (today included), newest first."""
    now = time.time() if now is None else now
    first = int(now // DAY * DAY) - (count - 1) * DAY
    received: dict[str, list[int]] = {}
    for table in ("messages", "expunged"):
        query = f"""SELECT m.internaldate, m.size FROM {table} m JOIN mailboxes b ON b.id = m.mailbox_id
                    WHERE b.account_id = ? AND coalesce(b.special_use, '') != '\\Sent' AND m.internaldate >= ?"""
        for when, size in conn.execute(query, (account_id, first)):
            entry = received.setdefault(_day(float(when)), [0, 0])
            entry[0] += 1
            entry[1] += int(size)
    sent = {
        _day(float(start)): int(n)
        for start, n in conn.execute(
            "SELECT start, recipients FROM send_counts WHERE account_id = ? AND period = 'day' AND start >= ?",
            (account_id, first),
        )
    }
    login_counts: dict[str, list[int]] = {}
    for when, result in conn.execute(
        "SELECT time, result FROM login_history WHERE account_id = ? AND time >= ?", (account_id, first)
    ):
        entry = login_counts.setdefault(_day(float(when)), [0, 0])
        entry[0 if result == "success" else 1] += 1
    out = []
    for index in range(count):
        key = _day(first + (count - 1 - index) * DAY)
        got, stored = received.get(key, [0, 0])
        ok, failed = login_counts.get(key, [0, 0])
        out.append(Day(key, got, sent.get(key, 0), stored, ok, failed))
    return out


def prune(conn: sqlite3.Connection, keep_days: int, now: float | None = None) -> int:
    """Delete login history and send counters older than ``keep_days``; returns the rows removed."""
    now = time.time() if now is None else now
    cutoff = now - keep_days * DAY
    removed = conn.execute("DELETE FROM login_history WHERE time < ?", (cutoff,)).rowcount
    removed += conn.execute("DELETE FROM send_counts WHERE start < ?", (int(cutoff),)).rowcount
    return int(removed)
