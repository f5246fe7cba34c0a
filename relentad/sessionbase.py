"""What an IMAP, ManageSieve or POP3 session shares: its services, the peer, the login deadline, password policy,
the login through the shared authenticator, the STARTTLS handshake and the check that the account still exists.

Invariants: a subclass keeps its own states, commands and replies; this class holds no protocol text. Passwords
are accepted only where :func:`relentad.auth.authenticator.password_allowed` says so, and checked only by the
daemon's :class:`~relentad.auth.authenticator.Authenticator` (throttle, cache, login history). Whether the account
was terminated or the app password of the login revoked (another process) is asked at most once per
:data:`ACCOUNT_CHECK_INTERVAL`, so a run of commands costs no extra query each.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from .auth.authenticator import Authenticator, Login, LoginFailed, password_allowed, session_ended
from .auth.history import Protocol as Service
from .config import Config
from .imap.connection import Connection
from .store.db import Store

log = logging.getLogger(__name__)

ACCOUNT_CHECK_INTERVAL = 1.0
"""Seconds between two checks that a session's account is still active (a terminated one's sessions end)."""


class Services(Protocol):
    """What every session of a listener shares (each protocol's dataclass adds its own)."""

    @property
    def store(self) -> Store: ...
    @property
    def authenticator(self) -> Authenticator: ...
    @property
    def get_config(self) -> Callable[[], Config]: ...


SV = TypeVar("SV", bound=Services)
H = TypeVar("H")
T = TypeVar("T")


class BaseSession(Generic[SV, H]):
    service: Service
    """The protocol, in login history and log lines."""

    def __init__(self, services: SV, conn: Connection, handlers: dict[str, H], login_timeout: float) -> None:
        self.services = services
        self.conn = conn
        self.handlers = handlers
        self.peer = conn.peer_ip()
        self.account_id = 0
        self.email = ""
        self.login: Login | None = None
        self.busy = False
        """True while a command runs: shutdown lets it finish first."""
        self.account_checked = 0.0  # monotonic time the account was last seen active (:meth:`account_ended`)
        self.login_deadline = asyncio.get_running_loop().time() + login_timeout
        """Until when a client may stay not authenticated, however many commands it sends meanwhile."""

    @property
    def authenticated(self) -> bool:
        raise NotImplementedError

    def idle_timeout(self) -> float:
        """Seconds a logged-in client may stay silent."""
        raise NotImplementedError

    def read_deadline(self) -> float:
        """When waiting for the client gives up (loop time): the login deadline, then ``idle_timeout`` from now."""
        if not self.authenticated:
            return self.login_deadline
        return asyncio.get_running_loop().time() + self.idle_timeout()

    async def answer(self, read: Awaitable[T]) -> T:
        """What the client sends in the middle of a command (its SASL answer), waited for until
        :meth:`read_deadline` (TimeoutError after it). Not busy meanwhile: the client is the one to speak, as between
        commands or in IMAP IDLE, so a shutdown says goodbye at once rather than wait ``shutdown_grace`` for it."""
        self.busy = False
        try:
            async with asyncio.timeout_at(self.read_deadline()):
                return await read
        finally:
            self.busy = True

    @property
    def config(self) -> Config:
        return self.services.get_config()

    @property
    def store(self) -> Store:
        return self.services.store

    def send(self, data: bytes) -> None:
        self.conn.write(data)

    async def flush(self) -> None:
        """Send what is queued. A client that takes none of it for ``idle_timeout`` is as inactive as a silent one
        (RFC 9051 §5.4, RFC 1939 §3): its connection is dropped (ConnectionError) rather than held for ever with
        the output it did not take."""
        await self.conn.drain(self.idle_timeout())

    def login_allowed(self) -> bool:
        """No password in plaintext, except from loopback when the config allows it (RFC 9051 §11.1, RFC 5804
        §2.1, RFC 2595 §2.1)."""
        return password_allowed(self.conn.tls, self.peer, self.config.auth)

    async def verify(self, name: str, password: str) -> Login:
        """The account ``name``/``password`` opens; a refusal is logged and :class:`LoginFailed` goes on to the
        protocol's reply."""
        try:
            return await self.services.authenticator.verify(name, password, self.peer, self.service)
        except LoginFailed:
            log.info("%s login failed for %r from %s", self.service, name[:100], self.peer)
            raise

    def opened(self, login: Login) -> None:
        """The session serves ``login``'s account from now on (the caller sets its state); it was just seen active."""
        self.account_id, self.email, self.login = login.account_id, login.email, login
        self.account_checked = time.monotonic()

    async def start_tls(self, context: ssl.SSLContext, verb: str) -> bool:
        """The handshake after the protocol's go-ahead (the plaintext sent after it is dropped); a failed one is
        logged and closes the connection: False, the caller ends the session."""
        try:
            await self.conn.start_tls(context)
        except (ssl.SSLError, OSError, ConnectionError) as exc:
            log.info("%s %s from %s failed: %s", self.service, verb, self.peer, exc)
            await self.conn.close()
            return False
        return True

    def account_ended(self) -> str | None:
        """Why the session must end — the account was terminated (``relentad user terminate``) or the app password
        it logged in with revoked, by another process since the login — or None. The caller says it in its BYE."""
        now = time.monotonic()
        login = self.login
        if now - self.account_checked < ACCOUNT_CHECK_INTERVAL or not self.authenticated or login is None:
            return None
        self.account_checked = now
        return self.store.read(lambda conn: session_ended(conn, login))
