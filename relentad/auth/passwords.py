"""Password hashing with argon2id (argon2-cffi's RFC 9106 low-memory profile).

Invariants: only hashes are stored; a password never appears in argv, logs or errors. Verification is slow by
design (tens of ms); callers that verify often put a short-lived cache in front (DESIGN.md §4), never a weaker
hash.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()

MIN_LENGTH = 8


def hash_password(password: str) -> str:
    """The argon2id hash of ``password``, with its parameters and salt encoded in the string."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches; False on mismatch or an unreadable hash (never raises)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A random password for new accounts: 20 URL-safe characters (about 120 bits)."""
    return secrets.token_urlsafe(15)


def check_strength(password: str) -> str | None:
    """Why ``password`` is refused, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"password too short: at least {MIN_LENGTH} characters"
    if password != password.strip():
        return "password must not start or end with white space"
    if any(ord(c) < 32 for c in password):
        return "password must not contain control characters"
    return None
