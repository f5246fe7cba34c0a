"""One ManageSieve connection (RFC 5804): read a command, check the state allows it, run it, answer.

Invariants:
- One place renders outcomes (:meth:`Session.execute`): a handler returns the OK's text (or None) or raises
  :class:`Refused` / a store error for NO; an unexpected exception is logged and answered NO, the session goes on.
  The protocol has no BAD: syntax errors are NO, and :data:`MAX_BAD` of them in a row end in BYE.
- Passwords only over TLS, or in plaintext from loopback when ``[auth] plaintext_loopback`` says so: before that,
  SASL is advertised empty and AUTHENTICATE answers NO (ENCRYPT-NEEDED). Logins go through the daemon's
  :class:`~relentad.auth.authenticator.Authenticator` (throttle, cache, login history) as IMAP's do.
- STARTTLS drops the plaintext the client sent after it (:meth:`relentad.imap.connection.Connection.start_tls`).
- Scripts are checked by :func:`relentad.crm.rules.check` (the admin's checker) in a worker thread before they
  are stored; a session of a terminated account ends with BYE at its next command.
- No traceback reaches the client; reads wait at most ``login_timeout`` before login, ``idle_timeout`` after.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..auth.authenticator import Authenticator
from ..config import Config
from ..crm import sieve
from ..crm.userscripts import ScriptError
from ..errors import RelentadError, StoreUnavailable
from ..imap.connection import Connection, LineTooLong
from ..sessionbase import BaseSession
from ..store.db import Store
from .parser import Command, ParseError, parse, pending_literal, response, string

log = logging.getLogger(__name__)

LINE_LENGTH = 8192
"""Octets of a command's own text, all its lines together, literals excluded."""
PREAUTH_LITERAL = 16_384
"""Largest literal before login, all of a command's literals together (a SASL answer; no script is sent then)."""
SCRIPT_LITERAL = sieve.MAX_SCRIPT + 4096
"""Largest literal after login, all of a command's literals together: a script at the size limit and its name."""
DISCARD_LIMIT = 4
"""Literals over the limit are read and dropped (then NO) up to this many times the limit; beyond, BYE."""
MAX_BAD = 10
"""Consecutive commands that do not parse before BYE."""
CONCURRENT_CHECKS = 2
"""Worker threads checking scripts at once (a 1 MiB script takes about a second of CPU)."""
IMPLEMENTATION = "relentad"


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    LOGOUT = "logout"


_ANY = frozenset(("CAPABILITY", "LOGOUT", "NOOP"))
STATE_COMMANDS: dict[State, frozenset[str]] = {
    State.NOT_AUTHENTICATED: _ANY | {"AUTHENTICATE", "STARTTLS"},
    State.AUTHENTICATED: _ANY
    | {
        "HAVESPACE",
        "PUTSCRIPT",
        "LISTSCRIPTS",
        "SETACTIVE",
        "GETSCRIPT",
        "DELETESCRIPT",
        "RENAMESCRIPT",
        "CHECKSCRIPT",
        "UNAUTHENTICATE",
    },
    State.LOGOUT: frozenset(),
}


class Refused(Exception):
    """A NO (or with ``bye``, a BYE that ends the session) with its response code and text."""

    def __init__(self, text: str, code: str = "", *, bye: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.bye = bye


class LiteralTooLarge(Exception):
    """A literal far over the limit: not worth reading to the end."""


@dataclass
class Services:
    store: Store
    authenticator: Authenticator
    get_config: Callable[[], Config]
    get_tls: Callable[[], ssl.SSLContext | None]
    checks: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONCURRENT_CHECKS))
    """Script checks running at once, all sessions together: a flood of 1 MiB uploads waits its turn."""


Handler = Callable[["Session", Command], Awaitable[str | None]]


def sieve_extensions() -> str:
    """The SIEVE capability: the engine's own list of what ``require`` accepts (RFC 5804 §1.7)."""
    return " ".join(sorted(sieve.CAPABILITIES))


class Session(BaseSession[Services, Handler]):
    service = "managesieve"

    def __init__(self, services: Services, conn: Connection, handlers: dict[str, Handler]) -> None:
        super().__init__(services, conn, handlers, services.get_config().managesieve.login_timeout)
        self.state = State.NOT_AUTHENTICATED
        self.bad = 0

    def idle_timeout(self) -> float:
        return self.config.managesieve.idle_timeout

    @property
    def authenticated(self) -> bool:
        return self.state is State.AUTHENTICATED

    def capabilities(self) -> None:
        """The capability lines (RFC 5804 §1.7); the caller adds the OK."""
        authenticated = self.state is State.AUTHENTICATED
        lines: list[tuple[str, str | None]] = [
            ("IMPLEMENTATION", IMPLEMENTATION),
            ("SASL", "" if authenticated or not self.login_allowed() else "PLAIN"),
            ("SIEVE", sieve_extensions()),
        ]
        if not authenticated and not self.conn.tls and self.services.get_tls() is not None:
            lines.append(("STARTTLS", None))
        if authenticated:
            lines.append(("OWNER", self.email))
        lines += [("MAXREDIRECTS", str(sieve.MAX_REDIRECTS)), ("UNAUTHENTICATE", None), ("VERSION", "1.0")]
        for name, value in lines:
            self.send(string(name) + (b" " + string(value) if value is not None else b"") + b"\r\n")

    # -- the command loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        self.capabilities()
        self.send(response("OK", "relentad ManageSieve ready"))
        try:
            await self.flush()
            while self.state is not State.LOGOUT and not self.conn.closed:
                try:
                    async with asyncio.timeout_at(self.read_deadline()):
                        raw = await self.read_command()
                except TimeoutError:
                    self.bye("idle for too long" if self.state is State.AUTHENTICATED else "not logged in in time")
                    break
                except LineTooLong:
                    self.bye(f"command longer than {LINE_LENGTH} octets")
                    break
                except LiteralTooLarge:
                    self.bye("literal far larger than allowed", "QUOTA/MAXSIZE")
                    break
                except Refused as exc:
                    self.send(response("NO", exc.text, exc.code))
                else:
                    self.busy = True
                    try:
                        await self.execute(raw)
                    except LineTooLong:  # the SASL answer
                        self.bye(f"line longer than {LINE_LENGTH} octets")
                        break
                    finally:
                        self.busy = False
                if self.bad >= MAX_BAD:
                    self.bye("too many invalid commands")
                    break
                await self.flush()
            with contextlib.suppress(ConnectionError, OSError):
                await self.flush()
        except (EOFError, ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.state = State.LOGOUT
            await self.conn.close()

    def bye(self, text: str, code: str = "") -> None:
        self.send(response("BYE", text, code))
        self.state = State.LOGOUT

    async def read_command(self) -> bytes:
        """One command with its literals inline; :class:`Refused` when literals over the limit were read and dropped.
        ``LINE_LENGTH`` bounds the command's own text across its lines and the limit bounds its literals together
        (each one alone would let a chain of a few hundred hold hundreds of MiB per command)."""
        line = await self.conn.readline(LINE_LENGTH)
        parts, text = [line], len(line)
        limit = SCRIPT_LITERAL if self.state is State.AUTHENTICATED else PREAUTH_LITERAL
        refused = False
        total = 0
        while (size := pending_literal(line)) is not None:
            total += size
            if total > limit * DISCARD_LIMIT:
                raise LiteralTooLarge
            if total > limit:
                refused = True
                parts.clear()
                await self.conn.discard(size)
            else:
                parts.append(await self.conn.readexactly(size))
            line = await self.conn.readline(LINE_LENGTH - text)
            text += len(line)
            parts.append(line)
        if refused:
            code = "QUOTA/MAXSIZE" if self.state is State.AUTHENTICATED else ""
            raise Refused(f"literal larger than {limit} octets", code)
        return b"".join(parts)

    async def execute(self, raw: bytes) -> None:
        """Parse, check the state, run the handler, answer (the one place that does)."""
        try:
            command = parse(raw)
        except ParseError as exc:
            self.bad += 1
            self.send(response("NO", str(exc)))
            return
        self.bad = 0
        ended = self.account_ended()
        if ended:
            self.bye(ended)
            return
        if command.name not in STATE_COMMANDS[self.state]:
            text = "log in first" if self.state is State.NOT_AUTHENTICATED else "not allowed after login"
            self.send(response("NO", f"{command.name}: {text}"))
            return
        try:
            done = await self.handlers[command.name](self, command)
        except Refused as exc:
            if exc.bye:
                self.bye(exc.text, exc.code)
            else:
                self.send(response("NO", exc.text, exc.code))
            return
        except ScriptError as exc:
            self.send(response("NO", str(exc), exc.code))
            return
        except StoreUnavailable as exc:
            self.send(response("NO", str(exc), "TRYLATER"))
            return
        except RelentadError as exc:
            self.send(response("NO", str(exc)))
            return
        except (EOFError, ConnectionError, asyncio.IncompleteReadError, LineTooLong):
            raise
        except Exception:
            log.exception("managesieve %s: %s failed", self.email or self.peer, command.name)
            self.send(response("NO", "internal server error; the session goes on", "TRYLATER"))
            return
        if done is not None:
            self.send(response("OK", done))

    async def shutdown(self) -> None:
        """Daemon stopping: BYE and close (the client reconnects to the next instance)."""
        with contextlib.suppress(Exception):
            self.bye("server shutting down", "TRYLATER")
            await asyncio.wait_for(self.conn.drain(), 2)
        self.state = State.LOGOUT
        await self.conn.close()
