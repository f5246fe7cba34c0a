"""One POP3 connection (RFC 1939): read a command line, check the state allows it, run it, answer.

Invariants:
- One place renders outcomes (:meth:`Session.execute`): a handler writes its ``+OK`` (and body) or raises
  :class:`Refused` for ``-ERR``; a store error is ``-ERR [SYS/TEMP]``; an unexpected exception is logged and
  answered ``-ERR``, the session goes on. :data:`MAX_BAD` invalid commands in a row close the connection.
- Passwords only over TLS, or in plaintext from loopback when ``[auth] plaintext_loopback`` says so: before that,
  CAPA lists neither USER nor SASL and USER/PASS/AUTH answer ``-ERR [AUTH]``. Logins go through the daemon's
  :class:`~relentad.auth.authenticator.Authenticator` (throttle, cache, login history) as IMAP's do.
- STLS drops the plaintext the client sent after it (:meth:`relentad.imap.connection.Connection.start_tls`).
- Only QUIT in the TRANSACTION state writes (:mod:`.maildrop`); a timeout, a dropped connection, a shutdown or a
  terminated account closes without the UPDATE state.
- Reads wait at most ``login_timeout`` before login and ``idle_timeout`` after (RFC 1939 §3: at least 10 min);
  so do writes: a client that takes nothing of a RETR for that long is as inactive, its connection is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..auth.authenticator import Authenticator
from ..config import Config
from ..errors import RelentadError, StoreUnavailable
from ..events import Bus
from ..imap.connection import Connection, LineTooLong
from ..sessionbase import BaseSession
from ..store.db import Store
from ..store.imapview import ReaderPool
from .maildrop import Maildrop
from .parser import TERMINATOR, Command, ParseError, parse, status

log = logging.getLogger(__name__)

LINE_LENGTH = 8192
"""Octets of one line: RFC 2449 asks 255 of commands, a SASL answer may be longer."""
SLICE = 64 * 1024
"""Octets of a message queued before waiting for the client to take them: a big RETR costs the message once, not
again in the write buffers, and a client that stops reading is noticed (:meth:`Session.flush`)."""
MAX_BAD = 10
"""Consecutive invalid commands before the connection is closed."""
IMPLEMENTATION = "relentad"


class State(enum.Enum):
    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    CLOSED = "closed"


_ANY = frozenset(("CAPA", "QUIT", "NOOP"))
STATE_COMMANDS: dict[State, frozenset[str]] = {
    State.AUTHORIZATION: frozenset(("CAPA", "QUIT", "USER", "PASS", "AUTH", "STLS")),
    State.TRANSACTION: _ANY | {"STAT", "LIST", "RETR", "DELE", "RSET", "TOP", "UIDL"},
    State.CLOSED: frozenset(),
}


class Refused(Exception):
    """A ``-ERR`` with an optional RFC 2449 response code; ``close`` ends the session after it."""

    def __init__(self, text: str, code: str = "", *, close: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.close = close


@dataclass
class Services:
    """What every session of the listener shares."""

    store: Store
    bus: Bus
    readers: ReaderPool
    authenticator: Authenticator
    get_config: Callable[[], Config]
    get_tls: Callable[[], ssl.SSLContext | None]


Handler = Callable[["Session", Command], Awaitable[None]]


class Session(BaseSession[Services, Handler]):
    service = "pop3"

    def __init__(self, services: Services, conn: Connection, handlers: dict[str, Handler]) -> None:
        super().__init__(services, conn, handlers, services.get_config().pop3.login_timeout)
        self.state = State.AUTHORIZATION
        self.user = ""
        """The name USER gave, until PASS."""
        self.drop = Maildrop(0, 0)
        self.bad = 0

    def idle_timeout(self) -> float:
        return self.config.pop3.idle_timeout

    @property
    def authenticated(self) -> bool:
        return self.state is State.TRANSACTION

    def ok(self, text: str = "", code: str = "") -> None:
        self.send(status(True, text, code))

    async def send_body(self, body: bytes) -> None:
        """A (stuffed) multi-line body and its terminator, :data:`SLICE` octets at a time."""
        view = memoryview(body)
        for start in range(0, len(view), SLICE):
            self.send(bytes(view[start : start + SLICE]))
            await self.flush()
        self.send(TERMINATOR)

    def capabilities(self) -> list[str]:
        """RFC 2449 §5 CAPA lines: USER and SASL only where a password may be sent, STLS until TLS is up."""
        lines = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state is State.AUTHORIZATION:
            if self.login_allowed():
                lines += ["USER", "SASL PLAIN"]
            if not self.conn.tls and self.services.get_tls() is not None:
                lines.append("STLS")
        lines += ["EXPIRE NEVER", f"IMPLEMENTATION {IMPLEMENTATION}"]
        return lines

    # -- the command loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        self.ok("relentad POP3 ready")
        try:
            await self.flush()
            while self.state is not State.CLOSED and not self.conn.closed:
                try:
                    async with asyncio.timeout_at(self.read_deadline()):
                        line = await self.conn.readline(LINE_LENGTH)
                except TimeoutError:
                    self.close("idle for too long" if self.state is State.TRANSACTION else "not logged in in time")
                    break
                except LineTooLong:
                    self.close(f"line longer than {LINE_LENGTH} octets")
                    break
                self.busy = True
                try:
                    await self.execute(line)
                except LineTooLong:  # the SASL answer
                    self.close(f"line longer than {LINE_LENGTH} octets")
                finally:
                    self.busy = False
                if self.bad >= MAX_BAD:
                    self.close("too many invalid commands")
                await self.flush()
        except (EOFError, ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if self.state is State.TRANSACTION:
                log.info("pop3 %s: connection ended without QUIT; nothing deleted", self.email)
            self.state = State.CLOSED
            await self.conn.close()

    def close(self, text: str, code: str = "") -> None:
        """A final -ERR, then the connection closes (no UPDATE state)."""
        self.send(status(False, text, code))
        self.state = State.CLOSED

    async def execute(self, line: bytes) -> None:
        """Parse, check the state, run the handler; the one place that turns failures into -ERR."""
        try:
            command = parse(line)
        except ParseError as exc:
            self.bad += 1
            self.send(status(False, str(exc)))
            return
        if command.name not in STATE_COMMANDS[self.state]:
            self.bad += 1
            where = "log in first" if self.state is State.AUTHORIZATION else "not after login"
            self.send(status(False, f"{command.name}: {where}"))
            return
        self.bad = 0
        ended = self.account_ended()
        if ended:
            self.close(ended, "SYS/PERM")
            return
        try:
            await self.handlers[command.name](self, command)
        except Refused as exc:
            if exc.close:
                self.close(exc.text, exc.code)
            else:
                self.send(status(False, exc.text, exc.code))
        except ParseError as exc:  # a bad message number
            self.send(status(False, str(exc)))
        except StoreUnavailable as exc:
            self.send(status(False, str(exc), "SYS/TEMP"))
        except RelentadError as exc:
            self.send(status(False, str(exc)))
        except (EOFError, ConnectionError, asyncio.IncompleteReadError, LineTooLong):
            raise
        except Exception:
            log.exception("pop3 %s: %s failed", self.email or self.peer, command.name)
            self.send(status(False, "internal server error; the session goes on", "SYS/TEMP"))

    async def shutdown(self) -> None:
        """Daemon stopping: -ERR and close, nothing deleted (the client reconnects to the next instance)."""
        with contextlib.suppress(Exception):
            self.close("server shutting down; nothing was deleted", "SYS/TEMP")
            await asyncio.wait_for(self.conn.drain(), 2)
        self.state = State.CLOSED
        await self.conn.close()
