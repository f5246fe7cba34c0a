"""The login history: one row per login attempt (SMTP AUTH, IMAP LOGIN/AUTHENTICATE, ManageSieve AUTHENTICATE,
CardDAV and the account pages: one per connection that logs in; a password changed on the account pages;
POP3 PASS/AUTH), successful or not.

Functions take a connection and run in the caller's transaction (``store.write`` in the daemon). ``login`` is
what the client typed (bounded, control characters removed), ``account_id`` the account it named when one
exists; a failure never says which part was wrong beyond the ``reason`` kept for the admin.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Literal

from .. import trace

Protocol = Literal["smtp", "imap", "managesieve", "carddav", "pop3", "web"]
Result = Literal["success", "failure"]


@dataclass(frozen=True)
class Attempt:
    login: str
    ip: str
    protocol: Protocol
    result: Result
    account_id: int | None = None
    reason: str = ""
    time: float = 0.0
    app_password: str = ""
    """The name of the app password the login used ("" for the account's password)."""


def record(conn: sqlite3.Connection, attempt: Attempt) -> None:
    conn.execute(
        """INSERT INTO login_history (time, account_id, login, ip, protocol, result, reason, app_password)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            attempt.time or time.time(),
            attempt.account_id,
            trace.clean(attempt.login),
            attempt.ip,
            attempt.protocol,
            attempt.result,
            attempt.reason,
            attempt.app_password,
        ),
    )
