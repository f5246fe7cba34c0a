"""The ManageSieve commands (RFC 5804 §2), one handler each: what a handler returns is the OK's text (None: it
answered itself); it raises :class:`~.session.Refused` or a store error for NO (:meth:`.session.Session.execute`
renders them).

Invariants: a script is checked by the admin's checker (:func:`relentad.crm.rules.check`) in a worker thread before
it is stored, and stored in one write job that checks the account's limits again (two sessions may race);
passwords go only through the shared authenticator.
"""

from __future__ import annotations

import asyncio
import logging

from ..auth import sasl
from ..auth.authenticator import LoginFailed
from ..crm import rules, sieve, userscripts
from ..errors import InvalidInput
from ..store import mailboxes
from .parser import Command, ParseError, parse_string, response, string
from .session import Handler, LiteralTooLarge, Refused, Session, State

log = logging.getLogger(__name__)

MAX_REASON = 300
"""Characters of a checker's message passed on in a NO."""


async def capability(session: Session, command: Command) -> str:
    """CAPABILITY (RFC 5804 §2.4)."""
    session.capabilities()
    return "capability completed"


async def noop(session: Session, command: Command) -> str | None:
    """NOOP (RFC 5804 §2.13)."""
    if command.args:  # RFC 5804 §2.13: the tag comes back in a TAG response code
        session.send(response("OK", "done", "TAG " + string(str(command.args[0])).decode("utf-8")))
        return None
    return "done"


async def logout(session: Session, command: Command) -> None:
    """LOGOUT (RFC 5804 §2.3): OK, then the server closes."""
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
    await session.flush()
    if not await session.start_tls(context, "STARTTLS"):
        session.state = State.LOGOUT
        return
    session.capabilities()
    session.send(response("OK", "TLS active"))


async def _sasl_answer(session: Session) -> str:
    """The client's answer to the empty challenge: a string (quoted or literal) of base64."""
    session.send(b'""\r\n')
    await session.flush()
    try:
        raw = await session.answer(session.read_command())
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
        authcid, password = sasl.plain(sasl.decode_base64(answer))
    except sasl.SaslError as exc:
        raise Refused(exc.text) from None
    try:
        login = await session.verify(authcid, password)
    except LoginFailed as exc:
        if exc.throttled:
            raise Refused("too many failed logins; try again later", "TRYLATER") from None
        raise Refused("authentication failed") from None
    session.state = State.AUTHENTICATED
    session.opened(login)
    log.info("managesieve login %s from %s%s", login.email, session.peer, login.via)
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
    """HAVESPACE (RFC 5804 §2.5): would PUTSCRIPT of that name and size fit?"""
    name, size = _name(command.args[0]), int(command.args[1])
    _space(session, name, size)
    return "there is room"


async def _checked(session: Session, text: str) -> str:
    """Check a script as ``relentad rules add`` does (in a thread: a 1 MiB parse must not stall the loop); the
    warnings for OK (WARNINGS): folders it files into that do not exist yet, rules that do not run at all."""
    try:
        async with session.services.checks:
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
    """PUTSCRIPT (RFC 5804 §2.6): check, then store (replacing a script of that name)."""
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
    """CHECKSCRIPT (RFC 5804 §2.12): the PUTSCRIPT check, nothing stored."""
    text = str(command.args[0])
    if len(text.encode("utf-8")) > sieve.MAX_SCRIPT:
        raise Refused(f"a script has at most {sieve.MAX_SCRIPT} octets", "QUOTA/MAXSIZE")
    return _ok(session, "the script is valid", await _checked(session, text))


async def listscripts(session: Session, command: Command) -> str:
    """LISTSCRIPTS (RFC 5804 §2.7): one line per script, the active one marked ACTIVE."""
    for name, active in session.store.read(lambda conn: userscripts.listing(conn, session.account_id)):
        session.send(string(name) + (b" ACTIVE" if active else b"") + b"\r\n")
    return "listscripts completed"


async def getscript(session: Session, command: Command) -> str:
    """GETSCRIPT (RFC 5804 §2.9): the script as stored, as a literal."""
    name = userscripts.normal(str(command.args[0]))
    text = session.store.read(lambda conn: userscripts.get(conn, session.account_id, name))
    data = text.encode("utf-8")
    session.send(b"{%d}\r\n%s\r\n" % (len(data), data))
    return "getscript completed"


async def setactive(session: Session, command: Command) -> str:
    """SETACTIVE (RFC 5804 §2.8); "" deactivates."""
    name = userscripts.normal(str(command.args[0]))
    await session.store.write(lambda conn: userscripts.set_active(conn, session.account_id, name))
    log.info("managesieve %s: active script %r", session.email, name)
    return f"{name!r} is active" if name else "no script is active"


async def deletescript(session: Session, command: Command) -> str:
    """DELETESCRIPT (RFC 5804 §2.10): not the active script (NO (ACTIVE))."""
    name = userscripts.normal(str(command.args[0]))
    await session.store.write(lambda conn: userscripts.delete(conn, session.account_id, name))
    log.info("managesieve %s: deleted script %r", session.email, name)
    return "script deleted"


async def renamescript(session: Session, command: Command) -> str:
    """RENAMESCRIPT (RFC 5804 §2.11.1)."""
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
