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
import base64
import binascii
import contextlib
import enum
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..auth.authenticator import Authenticator, LoginFailed, password_allowed
from ..config import Config
from ..crm import rules, sieve, userscripts
from ..crm.userscripts import ScriptError
from ..errors import InvalidInput, RelentadError, StoreUnavailable
from ..imap.connection import Connection, LineTooLong
from ..store import accounts, mailboxes
from ..store.db import Store
from .parser import Command, ParseError, parse, parse_string, pending_literal, response, string

log = logging.getLogger(__name__)

LINE_LENGTH = 8192
"""Octets of a command's own text, all its lines together, literals excluded."""
PREAUTH_LITERAL = 16_384
"""Largest literal before login (a SASL response; nobody uploads a script then)."""
SCRIPT_LITERAL = sieve.MAX_SCRIPT + 4096
"""Largest literal after login: a script at the size limit, with room for a name."""
DISCARD_LIMIT = 4
"""A literal over the limit is read and dropped (then NO) up to this many times the limit; beyond, BYE."""
MAX_BAD = 10
"""Consecutive commands that do not parse before BYE."""
ACCOUNT_CHECK_INTERVAL = 1.0
MAX_REASON = 300
"""Characters of a checker's message passed on in a NO."""
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


Handler = Callable[["Session", Command], Awaitable[str | None]]


def sieve_extensions() -> str:
    """The SIEVE capability: the engine's own list of what ``require`` accepts (RFC 5804 §1.7)."""
    return " ".join(sorted(sieve.CAPABILITIES))


class Session:
    def __init__(self, services: Services, conn: Connection) -> None:
        self.services = services
        self.conn = conn
        self.peer = conn.peer_ip()
        self.state = State.NOT_AUTHENTICATED
        self.account_id = 0
        self.email = ""
        self.bad = 0
        self.busy = False
        self.account_checked = 0.0
        self.login_deadline = asyncio.get_running_loop().time() + self.config.managesieve.login_timeout

    @property
    def config(self) -> Config:
        return self.services.get_config()

    @property
    def store(self) -> Store:
        return self.services.store

    # -- output ---------------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.conn.write(data)

    def login_allowed(self) -> bool:
        """RFC 5804 §2.1: no plaintext mechanism without TLS, except on loopback when the config allows it."""
        return password_allowed(self.conn.tls, self.peer, self.config.auth)

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
        lines += [("UNAUTHENTICATE", None), ("VERSION", "1.0")]
        for name, value in lines:
            self.send(string(name) + (b" " + string(value) if value is not None else b"") + b"\r\n")

    # -- the command loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        self.capabilities()
        self.send(response("OK", "relentad ManageSieve ready"))
        try:
            await self.conn.drain()
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
                await self.conn.drain()
            with contextlib.suppress(ConnectionError, OSError):
                await self.conn.drain()
        except (EOFError, ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.state = State.LOGOUT
            await self.conn.close()

    def bye(self, text: str, code: str = "") -> None:
        self.send(response("BYE", text, code))
        self.state = State.LOGOUT

    def read_deadline(self) -> float:
        if self.state is State.NOT_AUTHENTICATED:
            return self.login_deadline
        return asyncio.get_running_loop().time() + self.config.managesieve.idle_timeout

    async def read_command(self) -> bytes:
        """One command with its literals inline; :class:`Refused` when a literal over the limit was read and dropped.
        ``LINE_LENGTH`` bounds the command's own text across its lines, so chained literals cannot grow it."""
        line = await self.conn.readline(LINE_LENGTH)
        parts, text = [line], len(line)
        limit = SCRIPT_LITERAL if self.state is State.AUTHENTICATED else PREAUTH_LITERAL
        refused = False
        while (size := pending_literal(line)) is not None:
            if size > limit * DISCARD_LIMIT:
                raise LiteralTooLarge
            if size > limit:
                refused = True
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

    def account_ended(self) -> bool:
        """The account was terminated since the login (another process): checked at most once a second."""
        if self.state is not State.AUTHENTICATED:
            return False
        now = time.monotonic()
        if now - self.account_checked < ACCOUNT_CHECK_INTERVAL:
            return False
        self.account_checked = now
        return not self.store.read(lambda conn: accounts.is_active(conn, self.account_id))

    async def execute(self, raw: bytes) -> None:
        """Parse, check the state, run the handler, answer (the one place that does)."""
        try:
            command = parse(raw)
        except ParseError as exc:
            self.bad += 1
            self.send(response("NO", str(exc)))
            return
        self.bad = 0
        if self.account_ended():
            self.bye("the account was terminated")
            return
        if command.name not in STATE_COMMANDS[self.state]:
            text = "log in first" if self.state is State.NOT_AUTHENTICATED else "not allowed after login"
            self.send(response("NO", f"{command.name}: {text}"))
            return
        try:
            done = await HANDLERS[command.name](self, command)
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


# -- commands ---------------------------------------------------------------------------------------------


async def capability(session: Session, command: Command) -> str:
    session.capabilities()
    return "capability completed"


async def noop(session: Session, command: Command) -> str | None:
    if command.args:  # RFC 5804 §2.13: the tag comes back in a TAG response code
        session.send(response("OK", "done", "TAG " + string(str(command.args[0])).decode("utf-8")))
        return None
    return "done"


async def logout(session: Session, command: Command) -> None:
    session.send(response("OK", "logout completed"))
    session.state = State.LOGOUT


async def starttls(session: Session, command: Command) -> None:
    """RFC 5804 §2.2: OK in plaintext, the handshake, then the capabilities again (the plaintext is forgotten)."""
    context = session.services.get_tls()
    if session.conn.tls:
        raise Refused("TLS is already active")
    if context is None:
        raise Refused("TLS is not available: no certificate configured")
    session.send(response("OK", "begin TLS negotiation now"))
    await session.conn.drain()
    try:
        await session.conn.start_tls(context)
    except (ssl.SSLError, OSError, ConnectionError) as exc:
        log.info("managesieve STARTTLS from %s failed: %s", session.peer, exc)
        session.state = State.LOGOUT
        await session.conn.close()
        return
    session.capabilities()
    session.send(response("OK", "TLS active"))


async def _sasl_answer(session: Session) -> str:
    """The client's answer to the empty challenge: a string (quoted or literal) of base64."""
    session.send(b'""\r\n')
    await session.conn.drain()
    try:
        async with asyncio.timeout_at(session.read_deadline()):
            raw = await session.read_command()
    except TimeoutError:
        raise Refused("not logged in in time", bye=True) from None
    except LiteralTooLarge:
        raise Refused("literal far larger than allowed", bye=True) from None
    try:
        return parse_string(raw)
    except ParseError as exc:
        raise Refused(f"SASL answer: {exc}") from None


async def authenticate(session: Session, command: Command) -> str:
    """AUTHENTICATE "PLAIN" (RFC 5804 §2.1, RFC 4616), the initial response inline or after an empty challenge."""
    mechanism = str(command.args[0]).upper()
    if mechanism != "PLAIN":
        raise Refused(f"unsupported SASL mechanism {mechanism[:40]}; use PLAIN")
    if not session.login_allowed():
        raise Refused("logins need TLS: use STARTTLS", "ENCRYPT-NEEDED")
    answer = str(command.args[1]) if len(command.args) > 1 else await _sasl_answer(session)
    if answer == "*":
        raise Refused("authentication cancelled")
    try:
        decoded = base64.b64decode(answer, validate=True)
    except (binascii.Error, ValueError):
        raise Refused("the SASL response is not valid base64") from None
    parts = decoded.split(b"\0")
    if len(parts) != 3:
        raise Refused("a PLAIN response is authzid NUL authcid NUL password")
    try:
        authzid, authcid, password = (part.decode("utf-8") for part in parts)
    except UnicodeDecodeError:
        raise Refused("PLAIN credentials must be UTF-8") from None
    if authzid and authzid.lower() != authcid.lower():
        raise Refused("acting as another user is not allowed")
    try:
        login = await session.services.authenticator.verify(authcid, password, session.peer, "managesieve")
    except LoginFailed as exc:
        log.info("managesieve login failed for %r from %s", authcid[:100], session.peer)
        if exc.throttled:
            raise Refused("too many failed logins; try again later", "TRYLATER") from None
        raise Refused("authentication failed") from None
    session.state = State.AUTHENTICATED
    session.account_id, session.email = login.account_id, login.email
    session.account_checked = time.monotonic()
    log.info("managesieve login %s from %s", login.email, session.peer)
    return "logged in"


async def unauthenticate(session: Session, command: Command) -> str:
    """RFC 5804 §2.14: back to the not-authenticated state (a new login has ``login_timeout`` again)."""
    session.state = State.NOT_AUTHENTICATED
    session.account_id, session.email = 0, ""
    session.login_deadline = asyncio.get_running_loop().time() + session.config.managesieve.login_timeout
    return "logged out; log in again"


def _name(value: str | int) -> str:
    return userscripts.check_name(str(value))


def _space(session: Session, name: str, size: int) -> None:
    max_scripts = session.config.managesieve.max_scripts
    session.store.read(
        lambda conn: userscripts.check_space(conn, session.account_id, name, size, max_scripts, sieve.MAX_SCRIPT)
    )


async def havespace(session: Session, command: Command) -> str:
    name, size = _name(command.args[0]), int(command.args[1])
    _space(session, name, size)
    return "there is room"


async def _checked(session: Session, text: str) -> str:
    """Check a script as ``relentad rules add`` does (in a thread: a 1 MiB parse must not stall the loop); the
    warnings for OK (WARNINGS): folders it files into that do not exist yet, rules that do not run at all."""
    try:
        script = await asyncio.to_thread(rules.check, text)
    except InvalidInput as exc:  # a parse error quotes the token: a script's 1 MiB string is no answer
        reason = str(exc)
        raise Refused(reason if len(reason) <= MAX_REASON else reason[:MAX_REASON] + "…") from None
    notes = []
    missing = session.store.read(
        lambda conn: [f for f in script.folders() if mailboxes.find(conn, session.account_id, f) is None]
    )
    if missing:
        notes.append(f"fileinto creates {', '.join(repr(f) for f in sorted(set(missing)))} at the first match")
    if not session.config.crm.enabled:
        notes.append("filing is off on this server ([crm] enabled = false): scripts do not run")
    return "; ".join(notes)


def _ok(session: Session, done: str, warnings: str) -> str | None:
    if not warnings:
        return done
    session.send(response("OK", f"{done}; {warnings}", "WARNINGS"))
    return None


async def putscript(session: Session, command: Command) -> str | None:
    name, text = _name(command.args[0]), str(command.args[1])
    size = len(text.encode("utf-8"))
    _space(session, name, size)  # before the work of checking
    warnings = await _checked(session, text)
    max_scripts = session.config.managesieve.max_scripts
    await session.store.write(
        lambda conn: userscripts.put(conn, session.account_id, name, text, max_scripts, sieve.MAX_SCRIPT)
    )
    log.info("managesieve %s: stored script %r (%d octets)", session.email, name, size)
    return _ok(session, "script stored", warnings)


async def checkscript(session: Session, command: Command) -> str | None:
    text = str(command.args[0])
    if len(text.encode("utf-8")) > sieve.MAX_SCRIPT:
        raise Refused(f"a script has at most {sieve.MAX_SCRIPT} octets", "QUOTA/MAXSIZE")
    return _ok(session, "the script is valid", await _checked(session, text))


async def listscripts(session: Session, command: Command) -> str:
    for name, active in session.store.read(lambda conn: userscripts.listing(conn, session.account_id)):
        session.send(string(name) + (b" ACTIVE" if active else b"") + b"\r\n")
    return "listscripts completed"


async def getscript(session: Session, command: Command) -> str:
    name = userscripts.normal(str(command.args[0]))
    text = session.store.read(lambda conn: userscripts.get(conn, session.account_id, name))
    data = text.encode("utf-8")
    session.send(b"{%d}\r\n%s\r\n" % (len(data), data))
    return "getscript completed"


async def setactive(session: Session, command: Command) -> str:
    name = userscripts.normal(str(command.args[0]))
    await session.store.write(lambda conn: userscripts.set_active(conn, session.account_id, name))
    log.info("managesieve %s: active script %r", session.email, name)
    return f"{name!r} is active" if name else "no script is active"


async def deletescript(session: Session, command: Command) -> str:
    name = userscripts.normal(str(command.args[0]))
    await session.store.write(lambda conn: userscripts.delete(conn, session.account_id, name))
    log.info("managesieve %s: deleted script %r", session.email, name)
    return "script deleted"


async def renamescript(session: Session, command: Command) -> str:
    old, new = userscripts.normal(str(command.args[0])), _name(command.args[1])
    await session.store.write(lambda conn: userscripts.rename(conn, session.account_id, old, new))
    return "script renamed"


HANDLERS: dict[str, Handler] = {
    "CAPABILITY": capability,
    "NOOP": noop,
    "LOGOUT": logout,
    "STARTTLS": starttls,
    "AUTHENTICATE": authenticate,
    "UNAUTHENTICATE": unauthenticate,
    "HAVESPACE": havespace,
    "PUTSCRIPT": putscript,
    "CHECKSCRIPT": checkscript,
    "LISTSCRIPTS": listscripts,
    "GETSCRIPT": getscript,
    "SETACTIVE": setactive,
    "DELETESCRIPT": deletescript,
    "RENAMESCRIPT": renamescript,
}
"""Every command's handler: what it returns is the OK's text (None: it answered itself)."""
