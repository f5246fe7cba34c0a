"""Two-factor login for the account pages: time-based one-time passwords (TOTP, RFC 6238, over HOTP, RFC 4226)
and single-use recovery codes.

Invariants:
- A secret is 160 random bits (RFC 4226 §4 R6 recommends 160), shown base32 (RFC 4648 §6) and as an
  ``otpauth://totp/`` URI; codes are 6 digits, HMAC-SHA1, 30-second steps: what every authenticator app reads.
- A code is accepted for the current step or one either side (RFC 6238 §5.2: clock drift and typing time), compared
  in constant time, and only for a step later than the last one accepted (``last_step``): a code seen over a
  shoulder or in a proxy log cannot be used again. The step moves forward in the same statement that checks it,
  so two requests racing with one code cannot both win.
- Recovery codes are 16 characters of the app passwords' alphabet (about 81 bits), stored as SHA-256 hashes
  (random, not chosen: no slow hash needed), each deleted when used.
- Threat model: the secret is stored as it is in the daemon's database (readable only by the daemon's user, as the
  password hashes, the DKIM keys and all mail are). Whoever can read the database or a backup can compute codes;
  the second factor protects against a stolen or guessed password, not against the server's disk.

Functions taking a connection run inside the caller's transaction.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import sqlite3
import struct
import time
import urllib.parse
from dataclasses import dataclass

from . import apppasswords

STEP = 30
DIGITS = 6
SECRET_BYTES = 20
RECOVERY_CODES = 10
WINDOW = 1  # steps accepted either side of the current one


def hotp(key: bytes, counter: int, digits: int = DIGITS, digest: str = "sha1") -> str:
    """RFC 4226 §5.3: the HMAC of the counter, dynamically truncated to ``digits`` decimal digits."""
    mac = hmac.new(key, struct.pack(">Q", counter), digest).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def step_of(now: float) -> int:
    return int(now // STEP)


def totp(key: bytes, now: float, digits: int = DIGITS, digest: str = "sha1") -> str:
    """RFC 6238 §4: HOTP of the number of 30-second steps since the epoch."""
    return hotp(key, step_of(now), digits, digest)


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def b32(key: bytes) -> str:
    """The secret as authenticator apps take it: base32, no padding."""
    return base64.b32encode(key).decode().rstrip("=")


def from_b32(text: str) -> bytes | None:
    """The secret of a base32 text as typed (any case, spaces, padding or not), or None when it is not one."""
    chars = text.replace(" ", "").replace("-", "").upper().rstrip("=")
    try:
        return base64.b32decode(chars + "=" * (-len(chars) % 8))
    except (binascii.Error, ValueError):
        return None


def uri(key: bytes, email: str, issuer: str) -> str:
    """The ``otpauth://totp/ISSUER:EMAIL?secret=…`` URI (the Key Uri Format authenticator apps scan)."""
    label = urllib.parse.quote(f"{issuer}:{email}", safe=":@")
    query = urllib.parse.urlencode(
        {"secret": b32(key), "issuer": issuer, "algorithm": "SHA1", "digits": DIGITS, "period": STEP}
    )
    return f"otpauth://totp/{label}?{query}"


def match(key: bytes, code: str, now: float, after: int) -> int | None:
    """The step ``code`` is right for, within :data:`WINDOW` of now and later than ``after``, or None."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    found = None
    current = step_of(now)
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(hotp(key, step), code) and step > after and found is None:
            found = step  # every step is computed and compared: the time does not tell which one matched
    return found


# -- recovery codes ----------------------------------------------------------------------------------------


def recovery_codes() -> list[str]:
    return [apppasswords.generate() for _ in range(RECOVERY_CODES)]


def recovery_hash(code: str) -> str | None:
    """The stored form of a recovery code as typed (hyphens, spaces, case ignored), None when it cannot be one."""
    normalized = apppasswords.normalize(code)
    return None if normalized is None else hashlib.sha256(b"recovery\0" + normalized.encode()).hexdigest()


# -- the store ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    enabled: bool
    since: float = 0.0
    recovery_left: int = 0


def state(conn: sqlite3.Connection, account_id: int) -> State:
    row = conn.execute(
        """SELECT t.created, (SELECT count(*) FROM totp_recovery r WHERE r.account_id = t.account_id)
           FROM totp t WHERE t.account_id = ?""",
        (account_id,),
    ).fetchone()
    return State(False) if row is None else State(True, float(row[0]), int(row[1]))


def enable(conn: sqlite3.Connection, account_id: int, key: bytes, step: int, codes: list[str]) -> None:
    """Turn two-factor login on with ``key`` (its code for ``step`` just typed) and these recovery codes."""
    conn.execute(
        "INSERT OR REPLACE INTO totp (account_id, secret, last_step, created) VALUES (?, ?, ?, ?)",
        (account_id, key, step, time.time()),
    )
    _replace_recovery(conn, account_id, codes)


def renew_recovery(conn: sqlite3.Connection, account_id: int, codes: list[str]) -> bool:
    """A new set of recovery codes in place of what is left of the old one (a printout lost, or most used up);
    whether two-factor login is on (when it is off there is nothing to renew, and nothing is stored)."""
    if conn.execute("SELECT 1 FROM totp WHERE account_id = ?", (account_id,)).fetchone() is None:
        return False
    _replace_recovery(conn, account_id, codes)
    return True


def _replace_recovery(conn: sqlite3.Connection, account_id: int, codes: list[str]) -> None:
    conn.execute("DELETE FROM totp_recovery WHERE account_id = ?", (account_id,))
    conn.executemany(
        "INSERT OR IGNORE INTO totp_recovery (account_id, code_hash) VALUES (?, ?)",
        [(account_id, recovery_hash(code)) for code in codes],
    )


def disable(conn: sqlite3.Connection, account_id: int) -> bool:
    """Turn it off (secret and recovery codes deleted); whether it was on."""
    conn.execute("DELETE FROM totp_recovery WHERE account_id = ?", (account_id,))
    return bool(conn.execute("DELETE FROM totp WHERE account_id = ?", (account_id,)).rowcount)


def use(conn: sqlite3.Connection, account_id: int, code: str, now: float) -> str | None:
    """Check a second factor: "2fa-ok" for a TOTP code (its step now used up), "recovery-code-used" for a
    recovery code (now deleted), None when it is neither (or two-factor login is off)."""
    row = conn.execute("SELECT secret, last_step FROM totp WHERE account_id = ?", (account_id,)).fetchone()
    if row is None:
        return None
    step = match(bytes(row[0]), code, now, int(row[1]))
    if step is not None:
        moved = conn.execute(
            "UPDATE totp SET last_step = ? WHERE account_id = ? AND last_step < ?", (step, account_id, step)
        ).rowcount
        return "2fa-ok" if moved else None
    hashed = recovery_hash(code)
    if hashed is not None:
        used = conn.execute(
            "DELETE FROM totp_recovery WHERE account_id = ? AND code_hash = ?", (account_id, hashed)
        ).rowcount
        if used:
            return "recovery-code-used"
    return None


def forget_account(conn: sqlite3.Connection, account_id: int) -> None:
    """Termination: the secret, the recovery codes and the account pages' sessions go with the logins."""
    disable(conn, account_id)
    conn.execute("DELETE FROM web_sessions WHERE account_id = ?", (account_id,))
