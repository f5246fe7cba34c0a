"""Account activity (issue 7): the login history and per-day counters of mail received, sent and bytes stored.

Invariants: nothing here writes on the mail path. Logins come from ``login_history`` (written by
:mod:`relentad.auth.history` for every IMAP and submission attempt); recipients sent per day from the
submission's ``send_counts``; messages received and bytes stored per UTC day are derived from the stored rows
(mailboxes other than the Sent folder, plus the retention area, so deleting mail does not rewrite history).
A retained row belongs to the account its ``expunged.account_id`` names, never to whatever mailbox now has its
old ``mailbox_id``: a deleted mailbox's row is gone and SQLite may give its id to a new mailbox of any account
(:data:`RECEIVED`).

Old rows are rolled up, not kept forever, and history totals survive: :func:`prune` (run by the retention purge)
first adds everything of the days before the cutoff (``[retention] activity_days`` ago, at a UTC day boundary)
to one ``activity_months`` row per account and UTC month, moves the account's watermark ``activity_rolled`` to
the cutoff, then deletes login history and send counters older than the cutoff. Retained messages about to be
purged are folded into their month first (:func:`fold_purged`) when they are newer than the watermark. So an
account's totals are always: its monthly summaries + what the rows say from the watermark on (:func:`totals`),
and nothing is counted twice: a row is counted by the rows until the watermark passes it, by its month after.
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
    app_password: str = ""  # the name of the app password used, "" for the account's password
    reason: str = ""  # what the row records beyond the password: password-changed, 2fa-failed, bad-password…


@dataclass(frozen=True)
class Day:
    day: str  # YYYY-MM-DD (UTC)
    received: int
    sent: int  # recipients
    bytes_stored: int  # octets of the mail received that day
    logins: int
    failed_logins: int


# Received mail (not in the Sent folder) per table: (account_id, internaldate, size) of each row. A
# retained row is the account's by ``expunged.account_id``; its mailbox, when it still exists and is that
# account's, says whether it was the Sent folder (a deleted mailbox's rows count as received).
RECEIVED = {
    "messages": """SELECT b.account_id, m.internaldate, m.size FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id
        WHERE coalesce(b.special_use, '') != '\\Sent'""",
    "expunged": """SELECT m.account_id, m.internaldate, m.size, m.expunged FROM expunged m
        LEFT JOIN mailboxes b ON b.id = m.mailbox_id AND b.account_id = m.account_id
        WHERE coalesce(b.special_use, '') != '\\Sent'""",
}


def _day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).date().isoformat()


def logins(conn: sqlite3.Connection, account_id: int, since: float) -> list[Login]:
    """Login attempts on the account since ``since``, newest first."""
    rows = conn.execute(
        """SELECT time, ip, protocol, result, app_password, reason FROM login_history
           WHERE account_id = ? AND time >= ? ORDER BY time DESC, id DESC""",
        (account_id, since),
    )
    return [Login(float(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5] or "")) for r in rows]


def days(conn: sqlite3.Connection, account_id: int, count: int, now: float | None = None) -> list[Day]:
    """The last ``count`` UTC days (today included), newest first."""
    now = time.time() if now is None else now
    first = int(now // DAY * DAY) - (count - 1) * DAY
    received: dict[str, list[int]] = {}
    for rows in RECEIVED.values():
        query = f"SELECT r.internaldate, r.size FROM ({rows}) r WHERE r.account_id = ? AND r.internaldate >= ?"
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


@dataclass(frozen=True)
class Month:
    month: str  # YYYY-MM (UTC)
    received: int
    sent: int  # recipients
    bytes_stored: int
    logins: int
    failed_logins: int


_MONTH = "strftime('%Y-%m', {}, 'unixepoch')"
_UPSERT = """ON CONFLICT (account_id, month) DO UPDATE SET received = received + excluded.received,
    bytes_stored = bytes_stored + excluded.bytes_stored, sent = sent + excluded.sent,
    logins = logins + excluded.logins, failed_logins = failed_logins + excluded.failed_logins"""


def _received_query(table: str, condition: str) -> str:
    """Received mail of ``table`` (messages or expunged) per account and month, ``condition`` on ``r`` (the row,
    :data:`RECEIVED`) and ``a`` (its account), as an upsert into activity_months."""
    return f"""INSERT INTO activity_months (account_id, month, received, bytes_stored, sent, logins, failed_logins)
        SELECT r.account_id, {_MONTH.format("r.internaldate")}, count(*), sum(r.size), 0, 0, 0
        FROM ({RECEIVED[table]}) r JOIN accounts a ON a.id = r.account_id
        WHERE {condition}
        GROUP BY 1, 2 {_UPSERT}"""


def fold_purged(conn: sqlite3.Connection, cutoff: float) -> None:
    """Inside the purge's transaction, before retained rows with ``expunged < cutoff`` are deleted: add the ones
    newer than their account's watermark to their month, so the purge does not lower any total."""
    conn.execute(
        _received_query("expunged", "r.expunged < ? AND r.internaldate >= a.activity_rolled"),
        (cutoff,),
    )


def roll_up(conn: sqlite3.Connection, cutoff: float) -> None:
    """Add each account's activity from its watermark up to ``cutoff`` to its monthly rows; move the watermark."""
    window = "{0} >= a.activity_rolled AND {0} < ?"
    for table in ("messages", "expunged"):
        conn.execute(_received_query(table, window.format("r.internaldate")), (cutoff,))
    conn.execute(
        f"""INSERT INTO activity_months (account_id, month, received, bytes_stored, sent, logins, failed_logins)
            SELECT s.account_id, {_MONTH.format("s.start")}, 0, 0, sum(s.recipients), 0, 0
            FROM send_counts s JOIN accounts a ON a.id = s.account_id
            WHERE s.period = 'day' AND {window.format("s.start")}
            GROUP BY 1, 2 {_UPSERT}""",
        (cutoff,),
    )
    conn.execute(
        f"""INSERT INTO activity_months (account_id, month, received, bytes_stored, sent, logins, failed_logins)
            SELECT l.account_id, {_MONTH.format("l.time")}, 0, 0, 0, sum(l.result = 'success'),
                   sum(l.result != 'success')
            FROM login_history l JOIN accounts a ON a.id = l.account_id
            WHERE {window.format("l.time")}
            GROUP BY 1, 2 {_UPSERT}""",
        (cutoff,),
    )
    conn.execute("UPDATE accounts SET activity_rolled = ? WHERE activity_rolled < ?", (cutoff, cutoff))


def prune(conn: sqlite3.Connection, keep_days: int, now: float | None = None) -> int:
    """Roll up everything before the start of the UTC day ``keep_days`` ago into monthly rows, then delete login
    history and send counters older than that; returns the rows removed."""
    now = time.time() if now is None else now
    cutoff = float(int(now // DAY * DAY) - keep_days * DAY)
    roll_up(conn, cutoff)
    removed = conn.execute("DELETE FROM login_history WHERE time < ?", (cutoff,)).rowcount
    removed += conn.execute("DELETE FROM send_counts WHERE start < ?", (int(cutoff),)).rowcount
    return int(removed)


def months(conn: sqlite3.Connection, account_id: int) -> list[Month]:
    """The account's rolled-up months, newest first."""
    rows = conn.execute(
        """SELECT month, received, sent, bytes_stored, logins, failed_logins FROM activity_months
           WHERE account_id = ? ORDER BY month DESC""",
        (account_id,),
    )
    return [Month(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows]


def totals(conn: sqlite3.Connection, account_id: int) -> dict[str, int]:
    """All-time counts: the monthly summaries plus the rows from the watermark on (what a roll-up preserves)."""
    row = conn.execute("SELECT activity_rolled FROM accounts WHERE id = ?", (account_id,)).fetchone()
    since = 0.0 if row is None else float(row[0])
    out = {"received": 0, "sent": 0, "bytes_stored": 0, "logins": 0, "failed_logins": 0}
    for month in months(conn, account_id):
        for key in out:
            out[key] += getattr(month, key)
    for rows in RECEIVED.values():
        got = conn.execute(
            f"SELECT count(*), coalesce(sum(r.size), 0) FROM ({rows}) r WHERE r.account_id = ? AND r.internaldate >= ?",
            (account_id, since),
        ).fetchone()
        out["received"] += int(got[0])
        out["bytes_stored"] += int(got[1])
    sent = conn.execute(
        "SELECT coalesce(sum(recipients), 0) FROM send_counts WHERE account_id = ? AND period = 'day' AND start >= ?",
        (account_id, since),
    ).fetchone()
    out["sent"] += int(sent[0])
    logins = conn.execute(
        """SELECT coalesce(sum(result = 'success'), 0), coalesce(sum(result != 'success'), 0) FROM login_history
           WHERE account_id = ? AND time >= ?""",
        (account_id, since),
    ).fetchone()
    out["logins"] += int(logins[0])
    out["failed_logins"] += int(logins[1])
    return out
