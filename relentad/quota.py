"""Quota tracker: the one place an account's disk usage, disk limit and send limits come from (issue 7).

Disk usage is the sum of the sizes (trace prefix + blob) of the messages in the account's mailboxes, kept in
``accounts.used_bytes``/``used_messages`` by triggers (migration 006) in the same transaction that adds or
removes a row, so it is exact under concurrency and O(1) to read; :func:`recount` checks it against the rows.
Messages in the retention area (``expunged``) do not count: the user deleted them. Limits live on the account
row (``quota_bytes``, ``quota_messages`` — RFC 9208 STORAGE and MESSAGE —, ``daily_send``, ``hourly_send``;
0 = unlimited), defaults for new accounts come from ``[quota]``. Every check that adds messages
(:func:`would_exceed`) tests both the octets and the message count, in the transaction that adds them.

Send counters are the submission's ``send_counts`` rows (recipients per UTC hour / day), so they survive
restarts; a limit of N lets exactly N recipients through in the period and refuses the next one.

Pure functions over a connection: protocol modules turn the answers into their replies (SMTP 452/552,
IMAP NO [OVERQUOTA], submission 450/550).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

WARN_FRACTION = 0.9  # a warning is delivered once when usage passes this share of the limit


@dataclass(frozen=True)
class Usage:
    """One account's disk use and limits."""

    account_id: int
    bytes: int
    messages: int
    limit: int  # disk quota in octets, 0 = unlimited
    daily_send: int
    hourly_send: int
    sent_today: int
    sent_this_hour: int
    message_limit: int = 0  # most messages the mailboxes may hold, 0 = unlimited

    @property
    def full(self) -> bool:
        """No room left at all (SMTP RCPT gets 452 4.2.2): the octets or the message count are at their limit."""
        disk_full = bool(self.limit) and self.bytes >= self.limit
        return disk_full or (bool(self.message_limit) and self.messages >= self.message_limit)

    def fits(self, extra: int, count: int = 1) -> bool:
        """``count`` more messages of ``extra`` octets in all stay within both limits."""
        disk = not self.limit or self.bytes + extra <= self.limit
        return disk and (not self.message_limit or self.messages + count <= self.message_limit)

    @property
    def percent(self) -> float:
        return 0.0 if not self.limit else 100.0 * self.bytes / self.limit


def disk_usage(conn: sqlite3.Connection, account_id: int) -> tuple[int, int]:
    """(octets, messages) the account's mailboxes hold: what QUOTA reports and limits are checked against."""
    row = conn.execute("SELECT used_bytes, used_messages FROM accounts WHERE id = ?", (account_id,)).fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def count_usage(conn: sqlite3.Connection, account_id: int) -> tuple[int, int]:
    """(octets, messages) counted from the message rows: what the triggers' counters must equal."""
    row = conn.execute(
        """SELECT coalesce(sum(m.size), 0), count(*) FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id
           WHERE b.account_id = ?""",
        (account_id,),
    ).fetchone()
    return int(row[0]), int(row[1])


def recount(conn: sqlite3.Connection, account_id: int) -> tuple[int, int]:
    """Inside a write transaction: count the usage from the rows, store it, return the (octets, messages) the
    counters were off by (0, 0 when they were exact)."""
    before = disk_usage(conn, account_id)
    counted = count_usage(conn, account_id)
    conn.execute("UPDATE accounts SET used_bytes = ?, used_messages = ? WHERE id = ?", (*counted, account_id))
    return before[0] - counted[0], before[1] - counted[1]


def limits(conn: sqlite3.Connection, account_id: int) -> tuple[int, int]:
    """(octets, messages) the account may hold (0 = unlimited, also for an unknown account)."""
    row = conn.execute("SELECT quota_bytes, quota_messages FROM accounts WHERE id = ?", (account_id,)).fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def would_exceed(conn: sqlite3.Connection, account_id: int, extra: int, count: int = 1) -> bool:
    """``count`` more messages of ``extra`` octets in all would take the account over its disk quota or its
    message limit (``count`` = 0 checks the octets only)."""
    disk, most = limits(conn, account_id)
    if not disk and not most:
        return False
    used, held = disk_usage(conn, account_id)
    return (bool(disk) and used + extra > disk) or (bool(most) and count > 0 and held + count > most)


def is_full(conn: sqlite3.Connection, account_id: int) -> bool:
    """No room left at all (SMTP RCPT gets 452 4.2.2): octets or message count at the limit."""
    disk, most = limits(conn, account_id)
    if not disk and not most:
        return False
    used, held = disk_usage(conn, account_id)
    return (bool(disk) and used >= disk) or (bool(most) and held >= most)


def sent_count(conn: sqlite3.Connection, account_id: int, period: str, now: float | None = None) -> int:
    """Recipients the account sent to in the current UTC ``period`` ("hour" or "day")."""
    now = time.time() if now is None else now
    length = 3600 if period == "hour" else 86400
    row = conn.execute(
        "SELECT recipients FROM send_counts WHERE account_id = ? AND period = ? AND start = ?",
        (account_id, period, int(now // length * length)),
    ).fetchone()
    return 0 if row is None else int(row[0])


def get(conn: sqlite3.Connection, account_id: int, now: float | None = None) -> Usage:
    """Everything about one account's quotas, read in one go."""
    row = conn.execute(
        "SELECT quota_bytes, daily_send, hourly_send, quota_messages FROM accounts WHERE id = ?", (account_id,)
    ).fetchone()
    limit, daily, hourly, most = (0, 0, 0, 0) if row is None else (int(row[0]), int(row[1]), int(row[2]), int(row[3]))
    used, count = disk_usage(conn, account_id)
    return Usage(
        account_id=account_id,
        bytes=used,
        messages=count,
        limit=limit,
        daily_send=daily,
        hourly_send=hourly,
        sent_today=sent_count(conn, account_id, "day", now),
        sent_this_hour=sent_count(conn, account_id, "hour", now),
        message_limit=most,
    )


def send_refusal(usage: Usage, pending: int) -> str | None:
    """Which send limit one more recipient (after ``pending`` already accepted in this transaction) would break:
    "hour", "day" or None."""
    if usage.hourly_send and usage.sent_this_hour + pending + 1 > usage.hourly_send:
        return "hour"
    if usage.daily_send and usage.sent_today + pending + 1 > usage.daily_send:
        return "day"
    return None


def set_limits(
    conn: sqlite3.Connection,
    account_id: int,
    *,
    disk: int | None = None,
    daily_send: int | None = None,
    hourly_send: int | None = None,
    messages: int | None = None,
) -> None:
    """Change an account's limits (None leaves one as it is); a new disk limit re-arms the 90 % warning."""
    if disk is not None:
        conn.execute("UPDATE accounts SET quota_bytes = ?, quota_warned = 0 WHERE id = ?", (disk, account_id))
    if messages is not None:
        conn.execute("UPDATE accounts SET quota_messages = ? WHERE id = ?", (messages, account_id))
    if daily_send is not None:
        conn.execute("UPDATE accounts SET daily_send = ? WHERE id = ?", (daily_send, account_id))
    if hourly_send is not None:
        conn.execute("UPDATE accounts SET hourly_send = ? WHERE id = ?", (hourly_send, account_id))


def rearm_warning(conn: sqlite3.Connection, account_id: int) -> None:
    """Inside the write transaction that took mail out of the account's mailboxes (EXPUNGE, DELETE, Junk expiry):
    usage back under 90 % re-arms the warning, so the next crossing warns again even when no delivery saw the
    account below the line in between (one large message can take it from 80 % to 95 %)."""
    conn.execute(
        "UPDATE accounts SET quota_warned = 0 WHERE id = ? AND quota_warned != 0 AND used_bytes < ? * quota_bytes",
        (account_id, WARN_FRACTION),
    )


def warning_state_stale(conn: sqlite3.Connection, account_id: int) -> bool:
    """A cheap read: :func:`claim_warning` would change something (warn now, or re-arm)."""
    row = conn.execute("SELECT quota_bytes, quota_warned FROM accounts WHERE id = ?", (account_id,)).fetchone()
    if row is None or not row[0]:
        return False
    over = disk_usage(conn, account_id)[0] >= WARN_FRACTION * int(row[0])
    return over != bool(row[1])


def claim_warning(conn: sqlite3.Connection, account_id: int, now: float | None = None) -> Usage | None:
    """Inside a write transaction: the account's usage when a 90 % warning is due now (and mark it sent), else
    None. Usage back under 90 % re-arms the warning, so it is delivered once per crossing."""
    usage = get(conn, account_id)
    if not usage.limit:
        return None
    warned = conn.execute("SELECT quota_warned FROM accounts WHERE id = ?", (account_id,)).fetchone()
    already = bool(warned and warned[0])
    if usage.bytes < WARN_FRACTION * usage.limit:
        if already:
            conn.execute("UPDATE accounts SET quota_warned = 0 WHERE id = ?", (account_id,))
        return None
    if already:
        return None
    conn.execute("UPDATE accounts SET quota_warned = ? WHERE id = ?", (time.time() if now is None else now, account_id))
    return usage
