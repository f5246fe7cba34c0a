"""The Sender Rewriting Scheme (SRS, as postsrsd, Postfix, Stalwart and Exim write it), for forwarded mail.

A message forwarded to another server keeps its author's From but needs an envelope sender whose domain
authorises us, or SPF fails at the destination. ``alice@example.org`` forwarded by ``info@ours.example`` leaves
as::

    SRS0=HHHHHH=TT=example.org=alice@ours.example

``TT`` is the day (days since the epoch modulo 1024, two base32 characters) and ``HHHHHH`` the first six base32
characters of an HMAC-SHA256, under a secret kept in the database (migration ``030_forwarding``), over the
timestamp, domain and local part in lower case: compared case-insensitively, since servers on the way may change
the local part's case. A sender that is already SRS0 (another forwarder's) becomes ``SRS1=HHHHHH=host==…`` (the
first forwarder's host kept, so a bounce goes back through it), as postsrsd does.

A bounce to such an address is accepted only with a valid hash and a timestamp at most :data:`MAX_AGE_DAYS` old
(:func:`reverse`), so the MX never becomes a relay for made-up SRS addresses; and only when the original sender was
verified (SPF or DKIM for its domain): an unverified one's hash is made under another tag, and a bounce to it,
which would be backscatter to a maybe forged sender, is refused. The null sender is never rewritten.

Pure functions; the caller reads the secrets (newest first, so a rotated-out one still verifies); :func:`rotate`
makes a new one (``relentad srs rotate``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
import time

from .errors import InvalidInput

SEPARATOR = "="
HASH_LENGTH = 6
MAX_AGE_DAYS = 21
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # base32 (RFC 4648): letters and digits, safe in a local part
_PERIOD = 1024  # two base32 characters of days
UNVERIFIED = "!"  # hashed first for an unverified sender: no base32 character, so no verified input collides


def secrets_of(conn: sqlite3.Connection) -> list[bytes]:
    """The SRS secrets, newest first (the first signs; all verify)."""
    return [bytes(r[0]) for r in conn.execute("SELECT secret FROM srs_secrets ORDER BY id DESC")]


def rotate(conn: sqlite3.Connection, *, revoke: bool = False, now: float | None = None) -> int:
    """Make a new secret, the one that signs from now on (``relentad srs rotate``); returns how many old ones were
    removed. An old secret keeps verifying until no address it signed can still be valid (:data:`MAX_AGE_DAYS`
    after it was superseded; SRS1 addresses carry no date, a bounce through them is that late only when lost
    anyway); ``revoke`` removes every old one at once, for a secret that leaked — bounces to mail forwarded
    before are refused then."""
    now = time.time() if now is None else now
    newest = conn.execute("SELECT max(id) FROM srs_secrets").fetchone()[0]
    conn.execute("INSERT INTO srs_secrets (secret, created) VALUES (?, ?)", (secrets.token_bytes(32), now))
    if revoke:
        return conn.execute("DELETE FROM srs_secrets WHERE id <= ?", (newest or 0,)).rowcount
    # a secret is superseded when the next one was made: expired once that is over MAX_AGE_DAYS (+1: day rounding)
    return conn.execute(
        """DELETE FROM srs_secrets WHERE id IN (
               SELECT old.id FROM srs_secrets old
               WHERE (SELECT min(new.created) FROM srs_secrets new WHERE new.id > old.id) < ?)""",
        (now - (MAX_AGE_DAYS + 1) * 86400,),
    ).rowcount


def is_srs(local: str) -> bool:
    """The local part looks like an SRS address (any case, as the MX reads RCPT)."""
    head = local[:5].upper()
    return head in ("SRS0=", "SRS1=")


class Unverified(InvalidInput):
    """A valid SRS address of a forward whose original sender was not verified: its bounce goes nowhere."""


def _hash(secret: bytes, *parts: str) -> str:
    # NUL between the parts (no address holds one): run together, "evil.co" + "mvictim" would sign "evil.com" +
    # "victim" too, and the owner of evil.co could mint an address that relays to victim@evil.com
    digest = hmac.new(secret, "\0".join(parts).lower().encode("utf-8", "surrogateescape"), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii")[:HASH_LENGTH]


def _day(now: float) -> int:
    return int(now // 86400) % _PERIOD


def _stamp(now: float) -> str:
    day = _day(now)
    return _ALPHABET[day >> 5] + _ALPHABET[day & 31]


def _srs1(local: str) -> tuple[str, str, str] | None:
    """(hash, first forwarder's host, rest) of an SRS1 local part ``SRS1=HHHHHH=host==…``, the rest starting with
    "=" as an SRS0's after "SRS0"; None when it is not shaped so."""
    parts = local.split(SEPARATOR, 2)
    if len(parts) != 3 or SEPARATOR not in parts[2]:
        return None
    first, _, rest = parts[2].partition(SEPARATOR)
    return parts[1], first, rest


def forward(sender: str, domain: str, secret: bytes, now: float | None = None, verified: bool = True) -> str:
    """The envelope sender for ``sender``'s mail forwarded through ``domain`` (one of ours); "" stays "". An
    unverified sender (forwarding.sender_verified: it may be forged) gets a hash under another tag, which
    :func:`reverse` tells apart: a bounce to it would be backscatter."""
    if not sender:
        return ""
    tag = "" if verified else UNVERIFIED
    local, at, host = sender.rpartition("@")
    if not at or not local or not host:
        raise InvalidInput(f"{sender!r} has no domain to rewrite")
    upper = local[:5].upper()
    if upper == "SRS0=":  # another forwarder's SRS0: keep its host so that a bounce goes back through it
        rest = local[4:]
        return f"SRS1={_hash(secret, tag, host, rest)}={host}={rest}@{domain}"
    if upper == "SRS1=":  # SRS1=H=first==…: only the hash changes, the first forwarder's host stays
        srs1 = _srs1(local)
        if srs1 is not None:
            _given, first, rest = srs1
            return f"SRS1={_hash(secret, tag, first, rest)}={first}={rest}@{domain}"
    stamp = _stamp(time.time() if now is None else now)
    return f"SRS0={_hash(secret, tag, stamp, host, local)}={stamp}={host}={local}@{domain}"


def _verify(given: str, secrets: list[bytes], *parts: str) -> bool:
    """True for a valid hash of a verified sender's address, False for an unverified one's; InvalidInput else."""
    for tag in ("", UNVERIFIED):
        if any(hmac.compare_digest(given.upper(), _hash(secret, tag, *parts)) for secret in secrets):
            return not tag
    raise InvalidInput("SRS hash does not verify")


def reverse(local: str, secrets: list[bytes], now: float | None = None) -> str:
    """The address a bounce to ``local``@our domain goes back to; InvalidInput naming why when it must be refused
    (not SRS, a bad hash, an expired or future timestamp, a malformed address), :class:`Unverified` when it is
    valid but its sender was not verified."""
    upper = local[:5].upper()
    if upper == "SRS0=":
        parts = local.split(SEPARATOR, 4)
        if len(parts) != 5 or not all(parts[1:]):
            raise InvalidInput("malformed SRS0 address")
        _tag, given, stamp, host, original = parts
        verified = _verify(given, secrets, stamp, host, original)
        if len(stamp) != 2 or any(c not in _ALPHABET for c in stamp.upper()):
            raise InvalidInput("malformed SRS timestamp")
        day = (_ALPHABET.index(stamp[0].upper()) << 5) | _ALPHABET.index(stamp[1].upper())
        age = (_day(time.time() if now is None else now) - day) % _PERIOD
        if age > MAX_AGE_DAYS:
            raise InvalidInput("SRS address expired")
        if not verified:
            raise Unverified(f"the original sender <{original}@{host}> was not verified")
        return f"{original}@{host}"
    if upper == "SRS1=":
        srs1 = _srs1(local)
        if srs1 is None or not srs1[1]:
            raise InvalidInput("malformed SRS1 address")
        given, first, rest = srs1
        if not _verify(given, secrets, first, rest):
            raise Unverified(f"the original sender <SRS0{rest}@{first}> was not verified")
        return f"SRS0{rest}@{first}"
    raise InvalidInput("not an SRS address")
