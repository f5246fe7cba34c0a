"""The automatic reply ("out of office") an account's user sets on the account page, or the admin with ``relentad
autoreply``: a Sieve ``vacation`` (RFC 5230) kept as a script of its own, so that a user without a ManageSieve
client (a phone's mail app, Outlook) can have one without touching the admin's rules or their own scripts.

The settings are stored with the script made from them (table ``autoreply``); at delivery the script runs first in
the account's program (:data:`relentad.crm.rules.PROGRAM`), so a rule that says ``stop`` cannot silence it, and it
answers as any vacation does: once per sender and period, never to lists, robots, Junk or the null sender.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
import time
from dataclasses import dataclass

from ..errors import InvalidInput
from .sieve import MAX_REASON, VACATION_MAX, compile_script, quoted

NAME = "automatic reply (account page)"
"""The script's name in traces and ``rules list``."""
MAX_DAYS = VACATION_MAX // 86_400


@dataclass(frozen=True)
class AutoReply:
    """An account's automatic reply. ``first_day`` / ``last_day``: ISO dates ("" for open), in the server's time
    zone, both included; ``days``: how long a sender waits for the next reply."""

    enabled: bool = False
    message: str = ""
    subject: str = ""  # "" for the vacation default, "Auto: <their subject>"
    first_day: str = ""
    last_day: str = ""
    days: int = 7
    updated: float = 0.0


def get(conn: sqlite3.Connection, account_id: int) -> AutoReply:
    row = conn.execute(
        "SELECT enabled, message, subject, first_day, last_day, days, updated FROM autoreply WHERE account_id = ?",
        (account_id,),
    ).fetchone()
    if row is None:
        return AutoReply()
    return AutoReply(bool(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), int(row[5]), float(row[6]))


def _day(text: str, what: str) -> str:
    text = text.strip()
    if not text:
        return ""
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise InvalidInput(f"the {what} day must be a date like 2026-12-24") from None


def checked(reply: AutoReply) -> AutoReply:
    """``reply`` with its fields normalised, or InvalidInput (one line a form or the CLI shows) saying what is wrong."""
    message = reply.message.replace("\r\n", "\n").strip("\n")
    subject = " ".join(reply.subject.split())
    if reply.enabled and not message.strip():
        raise InvalidInput("write the message the reply says")
    if len(message.encode("utf-8")) > MAX_REASON:
        raise InvalidInput(f"the message is longer than {MAX_REASON >> 10} KiB")
    if len(subject) > 200:
        raise InvalidInput("the subject is longer than 200 characters")
    first, last = _day(reply.first_day, "first"), _day(reply.last_day, "last")
    if first and last and last < first:
        raise InvalidInput("the last day is before the first day")
    if not 1 <= reply.days <= MAX_DAYS:
        raise InvalidInput(f"the days between replies to one sender must be 1 to {MAX_DAYS}")
    return dataclasses.replace(reply, message=message, subject=subject, first_day=first, last_day=last)


def script(reply: AutoReply) -> str:
    """The Sieve script of ``reply`` (compiled by the caller's check: what it writes must always compile)."""
    subject = f":subject {quoted(reply.subject)} " if reply.subject else ""
    action = f"vacation :days {reply.days} {subject}{quoted(reply.message)};\r\n"
    tests = [f'currentdate :value "ge" "date" "{reply.first_day}"'] if reply.first_day else []
    tests += [f'currentdate :value "le" "date" "{reply.last_day}"'] if reply.last_day else []
    head = 'require ["vacation", "date", "relational"];\r\n'
    if not tests:
        return head + action
    return head + f"if allof ({', '.join(tests)}) {{\r\n  {action}}}\r\n"


def save(conn: sqlite3.Connection, account_id: int, reply: AutoReply, now: float | None = None) -> AutoReply:
    """Check and store ``reply`` with its script; returns it as stored."""
    reply = dataclasses.replace(checked(reply), updated=time.time() if now is None else now)
    text = script(reply)
    compile_script(text)  # a bug here must refuse the change, never store a script delivery cannot run
    conn.execute(
        """INSERT INTO autoreply (account_id, enabled, message, subject, first_day, last_day, days, script, updated)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (account_id) DO UPDATE SET enabled = excluded.enabled, message = excluded.message,
               subject = excluded.subject, first_day = excluded.first_day, last_day = excluded.last_day,
               days = excluded.days, script = excluded.script, updated = excluded.updated""",
        (
            account_id,
            int(reply.enabled),
            reply.message,
            reply.subject,
            reply.first_day,
            reply.last_day,
            reply.days,
            text,
            reply.updated,
        ),
    )
    return reply


def describe(reply: AutoReply) -> str:
    """One line: whether and when it answers (the page's and ``autoreply show``'s summary)."""
    if not reply.enabled:
        return "off"
    if reply.first_day and reply.last_day:
        return f"on from {reply.first_day} to {reply.last_day}"
    if reply.first_day:
        return f"on from {reply.first_day}"
    if reply.last_day:
        return f"on until {reply.last_day}"
    return "on"
