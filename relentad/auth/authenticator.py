"""Password logins for every protocol (SMTP AUTH, IMAP, POP3, ManageSieve, HTTP Basic): throttle → cache → argon2
→ policy → history.

``Authenticator.verify(login, password, ip, protocol)`` is the one entry point. In order:

1. the throttle (:mod:`relentad.auth.throttle`): too many recent failures from the IP or for the account
   refuse the attempt before any password work;
2. the credential cache (DESIGN.md §4): an HMAC-SHA256 of login and password under a random per-process key,
   kept ``auth.cache_ttl`` seconds with the hash it was verified against (the account's or an app password's); a
   hit counts only while that hash is still stored, so ``relentad user passwd`` or revoking the app password (any
   process) drops it at once. Failures are never cached, and neither password nor hash-of-password leaves the
   process. The account's password costs the one indexed read it always did; an app password one more. The
   account pages (protocol "web") neither read nor fill it: there a right password can still be refused for want
   of a second factor, and a cache hit would tell by its speed that the password was right;
3. argon2id verification in a worker thread (tens of ms, never on the event loop): a password shaped like an app
   password (:mod:`relentad.auth.apppasswords`) against the one its tag points at, otherwise (or when that was not
   it) against the account's; a missing tag or an unknown login is checked against a dummy hash, so a failure
   costs the same whatever the tag or the login (two verifications for a password shaped like an app password);
4. the policy: an app password only within its scope and never on the account pages, the account's password not
   on the mail protocols under ``app_passwords_only``; a refusal is the same failure as a wrong password (its own
   ``reason`` in the history and log line, never in the reply);
5. one login history row (:mod:`relentad.auth.history`), success or failure, committed before the answer; a
   success checks in that transaction that the account is still active and the app password still there (a
   revocation or termination by another process while argon2 ran refuses it: ``ended-during-login``);
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
from typing import NoReturn

from .. import addrspec
from ..config import AuthConfig
from ..errors import InvalidInput, RelentadError, StoreUnavailable
from ..store.db import Store
from . import apppasswords, history, passwords
from .history import Protocol
from .throttle import LoginThrottle

_CACHE_MAX = 10_000
_NOTE_EVERY = 60.0  # seconds between two writes of an app password's last use from the same protocol and address

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
    """A successful login: the account it opened, and the app password it used (None: the account's password)."""

    account_id: int
    email: str
    app_password_id: int | None = None
    app_password: str = ""

    @property
    def via(self) -> str:
        """For log lines: " with app password 'NAME'", or "" for the account's password."""
        return f" with app password {self.app_password!r}" if self.app_password_id is not None else ""


@dataclass(frozen=True)
class _Entry:
    account_id: int
    password_hash: str  # the hash the pair was verified against: the account's or the app password's
    expires: float
    app_password_id: int | None = None


@dataclass(frozen=True)
class _Credential:
    """What a password turned out to be: the account's (``app`` None) or one of its app passwords."""

    password_hash: str
    app: apppasswords.Candidate | None = None


class CredentialCache:
    """Recently verified (login, password) pairs, keyed by HMAC under a key that never leaves this process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._key = secrets.token_bytes(32)
        self._clock = clock
        self._entries: dict[bytes, _Entry] = {}

    def _digest(self, login: str, password: str) -> bytes:
        material = login.lower().encode("utf-8", "surrogateescape") + b"\0" + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, material, hashlib.sha256).digest()

    def lookup(self, login: str, password: str) -> _Entry | None:
        """The unexpired entry of this pair; the caller checks its hash is still the stored one."""
        key = self._digest(login, password)
        entry = self._entries.get(key)
        if entry is not None and entry.expires <= self._clock():
            del self._entries[key]
            return None
        return entry

    def drop(self, login: str, password: str) -> None:
        self._entries.pop(self._digest(login, password), None)

    def get(self, login: str, password: str, current_hash: str) -> int | None:
        """The account id when this pair was verified recently against ``current_hash``, else None."""
        entry = self.lookup(login, password)
        if entry is None:
            return None
        if not hmac.compare_digest(entry.password_hash, current_hash):
            self.drop(login, password)
            return None
        return entry.account_id

    def put(
        self,
        login: str,
        password: str,
        account_id: int,
        password_hash: str,
        ttl: float,
        app_password_id: int | None = None,
    ) -> None:
        if ttl <= 0:
            return
        if len(self._entries) >= _CACHE_MAX:
            now = self._clock()
            self._entries = {k: e for k, e in self._entries.items() if e.expires > now}
            if len(self._entries) >= _CACHE_MAX:
                self._entries.clear()
        entry = _Entry(account_id, password_hash, self._clock() + ttl, app_password_id)
        self._entries[self._digest(login, password)] = entry

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class _Account:
    id: int
    email: str
    password_hash: str
    app_passwords_only: bool


def _account_row(conn: sqlite3.Connection, email: str) -> _Account | None:
    row = conn.execute(
        "SELECT id, email, password_hash, app_passwords_only FROM accounts WHERE email = ? AND state = 'active'",
        (email,),
    ).fetchone()
    return None if row is None else _Account(int(row[0]), str(row[1]), str(row[2]), bool(row[3]))


def _account_id(conn: sqlite3.Connection, email: str) -> int | None:
    row = conn.execute("SELECT id FROM accounts WHERE email = ?", (email,)).fetchone()
    return None if row is None else int(row["id"])


def log_refused(protocol: str, ip: str, login: str, reason: str, app_password: str = "") -> None:
    """The one WARNING line per refused login, for fail2ban-style watchers and the admin (its format is theirs)."""
    via = f" app_password={app_password!r}" if app_password else ""
    log.warning("login failed protocol=%s ip=%s login=%r reason=%s%s", protocol, ip, login[:320], reason, via)


def session_ended(conn: sqlite3.Connection, login: Login) -> str | None:
    """Why a session opened by ``login`` may not go on — its account terminated, its app password revoked — or
    None. One indexed read; sessions ask at most once a second."""
    row = conn.execute(
        "SELECT state = 'active', (SELECT count(*) FROM app_passwords WHERE id = ?) FROM accounts WHERE id = ?",
        (login.app_password_id or 0, login.account_id),
    ).fetchone()
    if row is None or not row[0]:
        return "the account was terminated"
    if login.app_password_id is not None and not row[1]:
        return "the app password was revoked"
    return None


def credential_hash(conn: sqlite3.Connection, login: Login) -> str | None:
    """The hash ``login``'s password is checked against now (the account's or its app password's), None once
    the account was terminated or the app password revoked: HTTP connections compare it on each request."""
    if login.app_password_id is None:
        row = conn.execute(
            "SELECT password_hash FROM accounts WHERE id = ? AND state = 'active'", (login.account_id,)
        ).fetchone()
    else:
        row = conn.execute(
            """SELECT p.password_hash FROM app_passwords p JOIN accounts a ON a.id = p.account_id
               WHERE p.id = ? AND a.id = ? AND a.state = 'active'""",
            (login.app_password_id, login.account_id),
        ).fetchone()
    return None if row is None else str(row[0])


def _refusal(credential: _Credential, account: _Account, protocol: Protocol) -> str | None:
    """Why a right password may not log in over ``protocol`` (the login history's reason), or None."""
    if credential.app is not None:
        return None if apppasswords.scope_of(protocol) in credential.app.scope else "app-password-scope"
    if account.app_passwords_only and protocol != "web":
        return "main-password-refused"
    return None


class Authenticator:
    """Shared by every listener of the daemon; ``get_config`` returns the current ``[auth]`` section."""

    def __init__(self, store: Store, get_config: Callable[[], AuthConfig]) -> None:
        self.store = store
        self.get_config = get_config
        self.throttle = LoginThrottle()
        self.cache = CredentialCache()
        self._dummy_hash: str | None = None
        self._noted: dict[int, tuple[float, str, str]] = {}  # app password id → last use written (time, protocol, ip)

    async def verify(self, login: str, password: str, ip: str, protocol: Protocol) -> Login:
        """The account ``login``/``password`` opens; raises LoginFailed (and records every attempt)."""
        config = self.get_config()
        try:
            email = addrspec.normalize(login)
        except InvalidInput:
            email = login.strip().lower()
        reason = self.blocked(ip, email)
        if reason is not None:
            await self._record(email, ip, protocol, None, f"throttled-{reason}")
            raise LoginFailed(throttled=True)
        account = self.store.read(lambda conn: _account_row(conn, email))
        if account is None:
            await self._check(None, password, protocol)  # the same argon2 work as a wrong password
            await self._fail(email, ip, protocol, "unknown-account")
        email = account.email
        cacheable = protocol != "web"  # the account pages: a right password costs what a wrong one does
        credential = self._cached(account, password) if cacheable else None
        cached = credential is not None
        if credential is None:
            credential = await self._check(account, password, protocol)
        if credential is None:
            await self._fail(email, ip, protocol, "bad-password")
        app = credential.app
        app_id = app.id if app else None
        refusal = _refusal(credential, account, protocol)
        if refusal is not None:  # the right password in the wrong place: the same answer as a wrong one
            await self._fail(email, ip, protocol, refusal, app.name if app else "")
        if not await self._record(email, ip, protocol, account.id, "cached" if cached else "", app):
            raise LoginFailed()
        if cacheable and not cached:
            self.cache.put(email, password, account.id, credential.password_hash, config.cache_ttl, app_id)
        return Login(account.id, email, app_id, app.name if app else "")

    def _cached(self, account: _Account, password: str) -> _Credential | None:
        """The credential this pair was verified as within ``cache_ttl``, while its hash is still the stored one
        (never asked for "web": the account pages neither read nor fill the cache, see the module's step 2)."""
        entry = self.cache.lookup(account.email, password)
        if entry is None or entry.account_id != account.id:
            return None
        app_id = entry.app_password_id
        app = None if app_id is None else self.store.read(lambda conn: apppasswords.current(conn, app_id))
        stored = account.password_hash if app_id is None else app.password_hash if app else ""
        if not hmac.compare_digest(entry.password_hash, stored):
            self.cache.drop(account.email, password)
            return None
        return _Credential(stored, app)

    async def _check(self, account: _Account | None, password: str, protocol: Protocol) -> _Credential | None:
        """Argon2, off the loop: the app password the tag points at when the password looks like one (not on the
        account pages), else — or when that was not it — the account's password. A password shaped like an app
        password costs two verifications whether or not its tag points at one and whether the account exists
        (the dummy hash stands in), so the time of a failure tells neither the tag nor the account."""
        normalized = apppasswords.normalize(password) if apppasswords.scope_of(protocol) else None
        if normalized is not None:
            account_id = account.id if account is not None else 0
            found = self.store.read(lambda conn: apppasswords.candidates(conn, account_id, normalized))
            for candidate in found:
                if await asyncio.to_thread(passwords.verify_password, candidate.password_hash, normalized):
                    return _Credential(candidate.password_hash, candidate)
            if not found:
                await asyncio.to_thread(passwords.verify_password, await self._dummy(), normalized)
        stored = account.password_hash if account is not None else await self._dummy()
        if await asyncio.to_thread(passwords.verify_password, stored, password) and account is not None:
            return _Credential(stored)
        return None

    def blocked(self, ip: str, login: str) -> str | None:
        """Whether the throttle refuses an attempt now ("ip" or "account"), under the current ``[auth]`` limits."""
        config = self.get_config()
        return self.throttle.blocked(
            ip,
            login,
            per_ip=config.failures_per_ip,
            per_account=config.failures_per_account,
            window=config.failure_window,
        )

    def failed(self, ip: str, login: str, protocol: Protocol, reason: str, app_password: str = "") -> None:
        """A refused attempt: counted by the throttle, and its one WARNING line (the format fail2ban-style
        watchers read). The caller records its login history row."""
        self.throttle.failed(ip, login, self.get_config().failure_window)
        log_refused(protocol, ip, login, reason, app_password)

    async def _fail(self, email: str, ip: str, protocol: Protocol, reason: str, app_password: str = "") -> NoReturn:
        self.throttle.failed(ip, email, self.get_config().failure_window)
        await self._record(email, ip, protocol, None, reason, name=app_password)
        raise LoginFailed()

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(passwords.hash_password, secrets.token_urlsafe(16))
        return self._dummy_hash

    async def _record(
        self,
        login: str,
        ip: str,
        protocol: Protocol,
        account_id: int | None,
        reason: str,
        app: apppasswords.Candidate | None = None,
        name: str = "",
    ) -> bool:
        """One login history row (and, for a successful app password, its last use, at most once a minute per
        protocol and address: one UPDATE in the same transaction). A success stands only if, in that transaction,
        the account is still active and the app password still there: a revocation or termination (another
        process) while argon2 ran refuses the login (``ended-during-login``). Returns whether it stands."""
        success = account_id is not None and reason in ("", "cached")
        name = app.name if app is not None else name
        now = time.time()
        note = app is not None and success and self._due(app.id, now, protocol, ip)

        def job(conn: sqlite3.Connection) -> None:
            nonlocal success, reason
            if account_id is not None and success:
                opened = Login(account_id, login, app.id if app is not None else None)
                if session_ended(conn, opened) is not None:
                    success, reason = False, "ended-during-login"
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
                    time=now,
                    app_password=name,
                ),
            )
            if note and success and app is not None:
                apppasswords.note_use(conn, app.id, now, protocol, ip)

        try:
            await self.store.write(job)
        except StoreUnavailable as exc:  # a full disk must not lock users out of reading their mail
            log.error("login history not recorded (login=%r ip=%s): %s", login[:320], ip, exc)
        if not success:
            log_refused(protocol, ip, login, reason, name)
        return success

    def _due(self, app_id: int, now: float, protocol: str, ip: str) -> bool:
        """Whether this use of an app password is news: another protocol or address, or a minute since."""
        last = self._noted.get(app_id)
        if last is not None and last[1:] == (protocol, ip) and now - last[0] < _NOTE_EVERY:
            return False
        if len(self._noted) >= _CACHE_MAX:
            self._noted.clear()
        self._noted[app_id] = (now, protocol, ip)
        return True
