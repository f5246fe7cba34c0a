"""Follow-ups ("awaiting reply"): the threads in which the account wrote to someone and nobody has answered.

Definition. Of the messages the sorter files into a thread, two kinds *count*:
- a **sent** message: the account's own (direction ``out``: the Sent copy of its submission, or its own imported
  mail; mail arriving on the MX is never ``out``, whatever its From says) naming at least one person contact in
  To, Cc or Bcc (not a mailing list, not an automatic sender; the account's own addresses are never contacts);
- a **reply**: received mail (not filed into Junk) whose author is a person other than the account, a recipient
  or not (a colleague answering for them), or list traffic (a reply to the list). Automatic replies
  (``Auto-Submitted``, out of office, no-reply senders), spam and mail with a forged own From are no answer.
A thread *awaits a reply* when its newest counting message is a sent one; messages that do not count (a note to
oneself, a copy to a list only, an auto-reply) change nothing. The follow-up is *due* when that sent message is
at least the account's delay old (``[crm] followup_days``, or the account's own from ``relentad crm
followup-days``) and some copy of it is still in a folder other than Trash, none flagged ``$NoFollowUp``; it
stops being due, as stale, ``[crm] followup_window`` days later (0: never).

Invariants: the sorter keeps ``crm_threads.awaiting``/``awaiting_message`` (the newest sent message while the
thread awaits a reply, NULL otherwise) in the delivery's transaction — a reply clears them in the thread's own
UPDATE (:func:`relentad.crm.threads.assign`), a sent message sets them with one statement (:func:`sent`), so
received mail costs nothing extra; which threads are due is decided at query time from those times (time
passes without a write), through the partial index ``crm_threads_awaiting``. A view's virtual UID is the sent
message's ``crm_messages`` id.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .participants import IN, LIST, PERSON, Participant

NO_FOLLOW_UP = "$NoFollowUp"
DAY = 86400.0
MAX_DAYS = 365
FOLDER = "Follow-up"


@dataclass(frozen=True, slots=True)
class Policy:
    """The configured delay and window in days (``[crm] followup_days`` and ``followup_window``)."""

    days: int = 3
    window: int = 90


def is_reply(direction: str, people: Sequence[Participant]) -> bool:
    """Whether a filed message answers the account (see the module's definition)."""
    return direction == IN and any((p.role == "from" and p.kind == PERSON) or p.role == LIST for p in people)


def sent(conn: sqlite3.Connection, thread_id: int, message_id: int, when: float) -> None:
    """The account sent ``message_id`` into the thread: when it is the thread's newest message and names a person
    contact, the thread awaits a reply from now on (the clock restarts)."""
    conn.execute(
        """UPDATE crm_threads SET awaiting_message = ?1, awaiting = ?2
           WHERE id = ?3 AND last_message <= ?2
             AND EXISTS (SELECT 1 FROM crm_message_contacts l JOIN crm_contacts c ON c.id = l.contact_id
                         WHERE l.message_id = ?1 AND c.kind = 'person' AND l.role IN ('to', 'cc', 'bcc'))""",
        (message_id, when, thread_id),
    )


def _settings(conn: sqlite3.Connection, account_id: int) -> tuple[int | None, int, bool]:
    row = conn.execute(
        "SELECT days, uidvalidity, subscribed FROM crm_followup_settings WHERE account_id = ?", (account_id,)
    ).fetchone()
    return (None, 1, True) if row is None else (row[0], int(row[1]), bool(row[2]))


def days(conn: sqlite3.Connection, account_id: int, default: int) -> int:
    """The account's delay in days: its own, else ``default`` (``[crm] followup_days``)."""
    own = _settings(conn, account_id)[0]
    return default if own is None else int(own)


def set_days(conn: sqlite3.Connection, account_id: int, value: int | None) -> None:
    """The account's own delay (None: the configured one). The ``Follow-up`` folder's UIDVALIDITY grows: a shorter
    delay brings older messages into it, below UIDs a client has seen."""
    conn.execute(
        """INSERT INTO crm_followup_settings (account_id, days, uidvalidity) VALUES (?1, ?2, 2)
           ON CONFLICT (account_id) DO UPDATE SET days = ?2, uidvalidity = uidvalidity + 1""",
        (account_id, value),
    )


def uidvalidity(conn: sqlite3.Connection, account_id: int, delay: int) -> int:
    """The ``Follow-up`` folder's UIDVALIDITY: it changes with the delay (the configured one too)."""
    return _settings(conn, account_id)[1] * 1000 + delay


def subscribed(conn: sqlite3.Connection, account_id: int) -> bool:
    return _settings(conn, account_id)[2]


def set_subscribed(conn: sqlite3.Connection, account_id: int, value: bool) -> None:
    conn.execute(
        """INSERT INTO crm_followup_settings (account_id, subscribed) VALUES (?1, ?2)
           ON CONFLICT (account_id) DO UPDATE SET subscribed = ?2""",
        (account_id, int(value)),
    )


def due(
    conn: sqlite3.Connection, account_id: int, delay: float, now: float, window: float = 0, *, contacts: bool = True
) -> list[dict[str, Any]]:
    """The account's due follow-ups in virtual-UID order (the sent message's CRM id), each with the thread, the
    sent message, its person recipients (with ``contacts``) and the live copy it shows (the oldest outside Trash).
    ``window``: days a follow-up stays due before it is dropped as stale (0: for ever)."""
    people = CONTACTS if contacts else "'[]'"
    rows = conn.execute(
        f"""SELECT t.id AS thread_id, t.subject AS thread_subject, t.awaiting AS sent, m.id AS crm_id, m.subject,
                  x.id AS message_id, x.mailbox_id, x.uid, x.flags, x.keywords, x.internaldate, x.size,
                  {people} AS contacts
           FROM crm_threads t
           JOIN crm_messages m ON m.id = t.awaiting_message
           JOIN messages x ON x.id = (
               SELECT y.id FROM messages y JOIN mailboxes b ON b.id = y.mailbox_id
               WHERE y.blob_id = m.blob_id AND b.account_id = ?1 AND coalesce(b.special_use, '') != ?3
               ORDER BY y.id LIMIT 1)
           WHERE t.account_id = ?1 AND t.awaiting IS NOT NULL AND t.awaiting <= ?2 AND t.awaiting >= ?5
             AND NOT EXISTS (SELECT 1 FROM messages y JOIN mailboxes b ON b.id = y.mailbox_id
                             WHERE y.blob_id = m.blob_id AND b.account_id = ?1
                               AND (' ' || lower(y.keywords) || ' ') LIKE ?4)
           ORDER BY m.id""",
        (
            account_id,
            now - delay * DAY,
            "\\Trash",
            f"% {NO_FOLLOW_UP.lower()} %",
            now - (delay + window) * DAY if window else 0,
        ),
    )
    out = []
    for row in rows:
        data = dict(row)
        data["contacts"] = [
            {"id": int(c[0]), "name": c[1] or "", "address": c[2] or ""} for c in json.loads(data["contacts"] or "[]")
        ]
        data["days_waiting"] = max(0, math.floor((now - data["sent"]) / DAY))
        out.append(data)
    return out


CONTACTS = """(SELECT json_group_array(json_array(c.id, c.name,
                  (SELECT min(address) FROM crm_addresses a WHERE a.contact_id = c.id)))
               FROM crm_message_contacts l JOIN crm_contacts c ON c.id = l.contact_id
               WHERE l.message_id = m.id AND c.kind = 'person' AND l.role IN ('to', 'cc', 'bcc'))"""
"""The sent message's person recipients, as JSON [[id, name, address], …]."""


def next_due(conn: sqlite3.Connection, account_id: int, delay: float, now: float) -> float | None:
    """When the next waiting thread becomes due (None: none waits), for IDLE to wake then."""
    row = conn.execute(
        "SELECT min(awaiting) FROM crm_threads WHERE account_id = ? AND awaiting IS NOT NULL AND awaiting > ?",
        (account_id, now - delay * DAY),
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0]) + delay * DAY


def uidnext(conn: sqlite3.Connection, account_id: int, delay: float, now: float) -> int:
    """One above the newest sent message of a waiting, due thread: what becomes due later was sent later (for one
    delay), so its UID is above this."""
    row = conn.execute(
        """SELECT max(awaiting_message) FROM crm_threads
           WHERE account_id = ? AND awaiting IS NOT NULL AND awaiting <= ?""",
        (account_id, now - delay * DAY),
    ).fetchone()
    return int(row[0] or 0) + 1
