"""App passwords: one generated password per mail client, each with a name, a scope and its last use, revocable
on its own without changing the account's password.

Invariants:
- A password is 16 characters of :data:`ALPHABET` (about 81 bits), shown once as four groups of four
  (``abcd-efgh-ijkm-npqr``) and stored only as an argon2id hash, as account passwords are. A client may send it
  with or without the hyphens or with spaces, in any case (phones capitalise the first letter).
- A login finds the one app password to check by a 16-bit ``tag`` (the first two octets of the SHA-256 of the
  password), so a login costs one argon2 verification as before, however many app passwords the account has.
  The tag gives away 16 of the 81 bits; the other 65 behind argon2 are far beyond guessing.
- Revoking deletes the row (hash, last address): nothing is kept that could log in. Login history rows keep the
  name. At most :data:`MAX_PER_ACCOUNT` per account, names unique per account.

Functions taking a connection run inside the caller's transaction.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

from ..errors import AlreadyExists, InvalidInput, NotFound
from .history import Protocol

ALPHABET = "abcdefghijkmnopqrstuvwxyz23456789"
"""Lower-case letters and digits without the look-alikes 0, 1 and l (o and i remain: nothing to confuse them with)."""
LENGTH = 16
MAX_PER_ACCOUNT = 50
MAX_NAME = 64

SCOPES = ("imap", "pop3", "smtp", "sieve", "dav")
"""What an app password may be limited to; the account pages (``web``) never take one."""
_SCOPE_OF: dict[str, str] = {
    "imap": "imap",
    "pop3": "pop3",
    "smtp": "smtp",
    "managesieve": "sieve",
    "carddav": "dav",
}


@dataclass(frozen=True)
class AppPassword:
    """One app password as listed (never its hash)."""

    id: int
    name: str
    scope: tuple[str, ...]
    created: float
    last_used: float | None
    last_protocol: str
    last_ip: str


@dataclass(frozen=True)
class Candidate:
    """What a login checks: the row's id, name, hash and scope."""

    id: int
    name: str
    password_hash: str
    scope: frozenset[str]


def generate() -> str:
    """A new app password as shown to the user: four groups of four characters joined by hyphens."""
    chars = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return "-".join(chars[i : i + 4] for i in range(0, LENGTH, 4))


def normalize(password: str) -> str | None:
    """The 16 characters of an app password as typed (hyphens and spaces dropped, lower-cased), or None when
    ``password`` cannot be one (then only the account's password is checked)."""
    if len(password) > 2 * LENGTH:
        return None
    chars = password.replace("-", "").replace(" ", "").lower()
    if len(chars) != LENGTH or any(c not in ALPHABET for c in chars):
        return None
    return chars


def tag(normalized: str) -> int:
    """The 16-bit lookup tag of a normalised app password."""
    return int.from_bytes(hashlib.sha256(normalized.encode()).digest()[:2], "big")


def scope_of(protocol: Protocol) -> str | None:
    """The scope a login over ``protocol`` needs; None for the account pages, which take no app password."""
    return _SCOPE_OF.get(protocol)


def parse_scope(text: str | None) -> tuple[str, ...]:
    """``imap,smtp`` → ("imap", "smtp") in :data:`SCOPES` order; None (not given): every scope. An empty one is
    refused: ``--scope "$UNSET"`` must not make a password for every protocol."""
    if text is None:
        return SCOPES
    wanted = {part.strip().lower() for part in text.split(",") if part.strip()}
    if not wanted:
        raise InvalidInput(f"give at least one scope: {', '.join(SCOPES)}")
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise InvalidInput(f"unknown scope {', '.join(unknown)}: use {', '.join(SCOPES)}")
    return tuple(scope for scope in SCOPES if scope in wanted)


_UNSHOWN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Unicode categories a name may not hold: controls (C1's CSI drives a terminal), formatting (bidi overrides,
zero-width characters: a name that reads as another), surrogates (an undecodable octet on the command line) and
line or paragraph separators. A user names it on the account pages; ``app-password list`` prints it for the admin."""


def check_name(name: str) -> str:
    """The name trimmed, or InvalidInput: 1 to 64 characters, none of :data:`_UNSHOWN`."""
    name = name.strip()
    if not name:
        raise InvalidInput("an app password needs a name (the device or program it is for)")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"app password name too long: at most {MAX_NAME} characters")
    if any(unicodedata.category(c) in _UNSHOWN for c in name):
        raise InvalidInput("app password name must not contain control or formatting characters")
    return name


# -- the store --------------------------------------------------------------------------------------------


def add(
    conn: sqlite3.Connection,
    account_id: int,
    name: str,
    scope: tuple[str, ...],
    password_hash: str,
    normalized: str,
    now: float | None = None,
) -> int:
    """Store a new app password (its hash and tag); refuses a taken name or more than the limit."""
    name = check_name(name)
    count = conn.execute("SELECT count(*) FROM app_passwords WHERE account_id = ?", (account_id,)).fetchone()[0]
    if count >= MAX_PER_ACCOUNT:
        raise InvalidInput(f"at most {MAX_PER_ACCOUNT} app passwords per account: revoke one first")
    try:
        cursor = conn.execute(
            """INSERT INTO app_passwords (account_id, name, password_hash, tag, scope, created)
               VALUES (?, ?, ?, ?, ?, ?)""",
            (account_id, name, password_hash, tag(normalized), ",".join(scope), time.time() if now is None else now),
        )
    except sqlite3.IntegrityError:
        raise AlreadyExists(f"an app password named {name!r} already exists") from None
    return int(cursor.lastrowid or 0)


def listed(conn: sqlite3.Connection, account_id: int) -> list[AppPassword]:
    """The account's app passwords, oldest first."""
    rows = conn.execute(
        """SELECT id, name, scope, created, last_used, last_protocol, last_ip FROM app_passwords
           WHERE account_id = ? ORDER BY created, id""",
        (account_id,),
    )
    return [
        AppPassword(int(r[0]), str(r[1]), tuple(str(r[2]).split(",")), float(r[3]), r[4], str(r[5]), str(r[6]))
        for r in rows
    ]


def revoke(conn: sqlite3.Connection, account_id: int, name: str) -> None:
    """Delete the app password ``name``: logins with it fail at once, sessions end at their next command."""
    done = conn.execute(
        "DELETE FROM app_passwords WHERE account_id = ? AND name = ?", (account_id, name.strip())
    ).rowcount
    if not done:
        raise NotFound(f"no app password named {name.strip()!r}")


_CANDIDATE = "SELECT id, name, password_hash, scope FROM app_passwords"


def _candidate(row: Any) -> Candidate:
    return Candidate(int(row[0]), str(row[1]), str(row[2]), frozenset(str(row[3]).split(",")))


def candidates(conn: sqlite3.Connection, account_id: int, normalized: str) -> list[Candidate]:
    """The app passwords of the account a login with ``normalized`` may be (by its tag; almost always 0 or 1)."""
    rows = conn.execute(f"{_CANDIDATE} WHERE account_id = ? AND tag = ?", (account_id, tag(normalized)))
    return [_candidate(row) for row in rows]


def current(conn: sqlite3.Connection, app_password_id: int) -> Candidate | None:
    """The app password while it exists (None once revoked or its account purged)."""
    row = conn.execute(f"{_CANDIDATE} WHERE id = ?", (app_password_id,)).fetchone()
    return None if row is None else _candidate(row)


def note_use(conn: sqlite3.Connection, app_password_id: int, when: float, protocol: str, ip: str) -> None:
    conn.execute(
        "UPDATE app_passwords SET last_used = ?, last_protocol = ?, last_ip = ? WHERE id = ?",
        (when, protocol, ip, app_password_id),
    )


def set_only(conn: sqlite3.Connection, account_id: int, on: bool) -> None:
    """``app_passwords_only``: the mail protocols refuse the account's password (the account pages still take it)."""
    conn.execute("UPDATE accounts SET app_passwords_only = ? WHERE id = ?", (int(on), account_id))


def forget_account(conn: sqlite3.Connection, account_id: int) -> None:
    """Termination: the account's app passwords go with its logins."""
    conn.execute("DELETE FROM app_passwords WHERE account_id = ?", (account_id,))
