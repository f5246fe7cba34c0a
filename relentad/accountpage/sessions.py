"""Cookie sessions of the account pages: what a login through the form (address, password and, with two-factor
login on, a code) opens, since HTTP Basic cannot carry a second factor.

Invariants:
- The cookie holds 256 random bits; the store keeps only their SHA-256, so a database read gives no session.
- A session ends after :data:`IDLE` seconds without a request, :data:`ABSOLUTE` after its login, at logout, when
  its account is terminated, and (every other session of the account, or every one when the admin does it) when
  the password is changed or two-factor login is turned on, off or reset by the admin. ``last_seen`` is written at
  most once a minute, never per page view.
- The cookie is ``__Host-`` prefixed, ``Secure``, ``HttpOnly``, ``SameSite=Strict``, ``Path=/``: only this host
  over HTTPS gets it back, no script reads it, and no other site's link or form carries it.
- At most :data:`MAX_PER_ACCOUNT` per account (the oldest go first).

Functions taking a connection run inside the caller's transaction.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time

from ..auth.authenticator import Login
from ..httpserver import Request

COOKIE = "__Host-relentad-session"
IDLE = 12 * 3600
ABSOLUTE = 7 * 86400
MAX_PER_ACCOUNT = 20
_TOUCH_EVERY = 60.0


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def cookie_of(request: Request) -> str | None:
    """The session token the request carries, or None."""
    for header in (value for name, value in request.fields if name == "cookie"):
        for part in header.split(";"):
            name, eq, value = part.strip().partition("=")
            if eq and name == COOKIE and 0 < len(value) <= 64:
                return value
    return None


def set_cookie(token: str) -> tuple[str, str]:
    return ("Set-Cookie", f"{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={ABSOLUTE}")


def clear_cookie() -> tuple[str, str]:
    return ("Set-Cookie", f"{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")


def create(conn: sqlite3.Connection, account_id: int, ip: str, now: float | None = None) -> str:
    """A new session of the account (expired ones of every account dropped); returns the cookie's token."""
    now = time.time() if now is None else now
    expire(conn, now)
    conn.execute(
        """DELETE FROM web_sessions WHERE id_hash IN (SELECT id_hash FROM web_sessions WHERE account_id = ?
           ORDER BY created DESC LIMIT -1 OFFSET ?)""",
        (account_id, MAX_PER_ACCOUNT - 1),
    )
    token = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO web_sessions (id_hash, account_id, created, last_seen, ip) VALUES (?, ?, ?, ?, ?)",
        (_hash(token), account_id, now, now, ip),
    )
    return token


def expire(conn: sqlite3.Connection, now: float) -> int:
    """Delete the sessions that ended by time (with the address each was opened from); how many. A login and the
    daily purge call it, so an account nobody logs in to again does not keep its old sessions' addresses."""
    return int(
        conn.execute(
            "DELETE FROM web_sessions WHERE last_seen <= ? OR created <= ?", (now - IDLE, now - ABSOLUTE)
        ).rowcount
    )


def lookup(conn: sqlite3.Connection, token: str, now: float | None = None) -> tuple[Login, bool] | None:
    """The login of a live session (an active account's) and whether its ``last_seen`` is due to be written."""
    now = time.time() if now is None else now
    row = conn.execute(
        """SELECT a.id, a.email, s.last_seen FROM web_sessions s JOIN accounts a ON a.id = s.account_id
           WHERE s.id_hash = ? AND a.state = 'active' AND s.last_seen > ? AND s.created > ?""",
        (_hash(token), now - IDLE, now - ABSOLUTE),
    ).fetchone()
    if row is None:
        return None
    return Login(int(row[0]), str(row[1])), now - float(row[2]) >= _TOUCH_EVERY


def touch(conn: sqlite3.Connection, token: str, now: float | None = None) -> None:
    conn.execute("UPDATE web_sessions SET last_seen = ? WHERE id_hash = ?", (now or time.time(), _hash(token)))


def end(conn: sqlite3.Connection, token: str) -> None:
    conn.execute("DELETE FROM web_sessions WHERE id_hash = ?", (_hash(token),))


def end_all(conn: sqlite3.Connection, account_id: int, keep: str | None = None) -> int:
    """End every session of the account but ``keep``'s; how many ended."""
    return int(
        conn.execute(
            "DELETE FROM web_sessions WHERE account_id = ? AND id_hash != ?", (account_id, _hash(keep or ""))
        ).rowcount
    )


def count(conn: sqlite3.Connection, account_id: int) -> int:
    now = time.time()
    return int(
        conn.execute(
            "SELECT count(*) FROM web_sessions WHERE account_id = ? AND last_seen > ? AND created > ?",
            (account_id, now - IDLE, now - ABSOLUTE),
        ).fetchone()[0]
    )
