"""Password logins for every protocol (SMTP AUTH now, IMAP later): throttle → cache → argon2 → history.

``Authenticator.verify(login, password, ip, protocol)`` is the one entry point. In order:

1. the throttle (:mod:`relentad.auth.throttle`): too many recent failures from the IP or for the account
   refuse the attempt before any password work;
2. the credential cache (DESIGN.md §4): an HMAC-SHA256 of login and password under a random per-process key,
   kept ``auth.cache_ttl`` seconds with the account's password hash at the time; a hit counts only while the
   stored hash is unchanged, so ``relentad user passwd`` (any process) drops it at once. Failures are never
   cached, and neither password nor hash-of-password leaves the process;
3. argon2id verification in a worker thread (tens of ms, never on the event loop); an unknown login is checked
   against a dummy hash so it costs the same as a wrong password;
4. one login history row (:mod:`relentad.auth.history`), success or failure, committed before the answer;
   when the store cannot be written (disk full) the attempt is logged instead and the answer stands, so a full
   disk does not lock users out of reading their mail. Every refused attempt is also one WARNING log line.

Failures raise :class:`LoginFailed`; the protocol layer turns it into its own reply (SMTP 535/454, IMAP NO).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import addrspec
from ..config import AuthConfig
from ..errors import InvalidInput, RelentadError, StoreUnavailable
from ..store.db import Store
from . import history, passwords
from .history import Protocol
from .throttle import LoginThrottle

_CACHE_MAX = 10_000

log = logging.getLogger("relentad.auth")


def password_allowed(tls: bool, ip: str, config: AuthConfig) -> bool:
    """May a client send a password here? Over TLS always; in plaintext only from a loopback address, and only
    with ``[auth] plaintext_loopback`` (development and tests). The one rule for SMTP, IMAP, ManageSieve and POP3."""
    if tls:
        return True
    if not config.plaintext_loopback:
        return False
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


class LoginFailed(RelentadError):
    """A refused login; ``throttled`` means "too many failures, try later" rather than "wrong credentials"."""

    def __init__(self, throttled: bool = False) -> None:
        super().__init__("too many failed logins, try again later" if throttled else "invalid credentials")
        self.throttled = throttled


@dataclass(frozen=True)
class Login:
    """A successful login: the account it opened."""

    account_id: int
    email: str


@dataclass(frozen=True)
class _Entry:
    account_id: int
    password_hash: str
    expires: float


class CredentialCache:
    """Recently verified (login, password) pairs, keyed by HMAC under a key that never leaves this process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._key = secrets.token_bytes(32)
        self._clock = clock
        self._entries: dict[bytes, _Entry] = {}

    def _digest(self, login: str, password: str) -> bytes:
        material = login.lower().encode("utf-8", "surrogateescape") + b"\0" + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, material, hashlib.sha256).digest()

    def get(self, login: str, password: str, current_hash: str) -> int | None:
        """The account id when this pair was verified recently against ``current_hash``, else None."""
        key = self._digest(login, password)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock() or not hmac.compare_digest(entry.password_hash, current_hash):
            del self._entries[key]
            return None
        return entry.account_id

    def put(self, login: str, password: str, account_id: int, password_hash: str, ttl: float) -> None:
        if ttl <= 0:
            return
        if len(self._entries) >= _CACHE_MAX:
            now = self._clock()
            self._entries = {k: e for k, e in self._entries.items() if e.expires > now}
            if len(self._entries) >= _CACHE_MAX:
                self._entries.clear()
        self._entries[self._digest(login, password)] = _Entry(account_id, password_hash, self._clock() + ttl)

    def __len__(self) -> int:
        return len(self._entries)


def _account_row(conn: sqlite3.Connection, email: str) -> tuple[int, str, str] | None:
    row = conn.execute(
        "SELECT id, email, password_hash FROM accounts WHERE email = ? AND state = 'active'", (email,)
    ).fetchone()
    return None if row is None else (int(row["id"]), str(row["email"]), str(row["password_hash"]))


def _account_id(conn: sqlite3.Connection, email: str) -> int | None:
    row = conn.execute("SELECT id FROM accounts WHERE email = ?", (email,)).fetchone()
    return None if row is None else int(row["id"])


class Authenticator:
    """Shared by every listener of the daemon; ``get_config`` returns the current ``[auth]`` section."""

    def __init__(self, store: Store, get_config: Callable[[], AuthConfig]) -> None:
        self.store = store
        self.get_config = get_config
        self.throttle = LoginThrottle()
        self.cache = CredentialCache()
        self._dummy_hash: str | None = None

    async def verify(self, login: str, password: str, ip: str, protocol: Protocol) -> Login:
        """The account ``login``/``password`` opens; raises LoginFailed (and records every attempt)."""
        config = self.get_config()
        try:
            email = addrspec.normalize(login)
        except InvalidInput:
            email = login.strip().lower()
        reason = self.throttle.blocked(
            ip,
            email,
            per_ip=config.failures_per_ip,
            per_account=config.failures_per_account,
            window=config.failure_window,
        )
        if reason is not None:
            await self._record(email, ip, protocol, None, f"throttled-{reason}")
            raise LoginFailed(throttled=True)
        row = self.store.read(lambda conn: _account_row(conn, email))
        if row is not None:
            account_id, email, stored_hash = row
            if self.cache.get(email, password, stored_hash) == account_id:
                await self._record(email, ip, protocol, account_id, "cached")
                return Login(account_id, email)
            ok = await asyncio.to_thread(passwords.verify_password, stored_hash, password)
        else:
            await asyncio.to_thread(passwords.verify_password, await self._dummy(), password)
            ok = False
        if not ok or row is None:
            self.throttle.failed(ip, email, config.failure_window)
            await self._record(email, ip, protocol, None, "unknown-account" if row is None else "bad-password")
            raise LoginFailed()
        self.cache.put(email, password, account_id, stored_hash, config.cache_ttl)
        await self._record(email, ip, protocol, account_id, "")
        return Login(account_id, email)

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(passwords.hash_password, secrets.token_urlsafe(16))
        return self._dummy_hash

    async def _record(self, login: str, ip: str, protocol: Protocol, account_id: int | None, reason: str) -> None:
        success = account_id is not None and reason in ("", "cached")
        if not success:  # one line per refused login, for fail2ban-style watchers and the admin
            log.warning("login failed protocol=%s ip=%s login=%r reason=%s", protocol, ip, login[:320], reason)

        def job(conn: sqlite3.Connection) -> None:
            named = account_id if account_id is not None else _account_id(conn, login)
            history.record(
                conn,
                history.Attempt(
                    login=login,
                    ip=ip,
                    protocol=protocol,
                    result="success" if success else "failure",
                    account_id=named,
                    reason=reason,
                ),
            )

        try:
            await self.store.write(job)
        except StoreUnavailable as exc:  # a full disk must not lock users out of reading their mail
            log.error("login history not recorded (login=%r ip=%s): %s", login[:320], ip, exc)
