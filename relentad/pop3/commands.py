"""The POP3 commands (RFC 1939 §4-7, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH), one handler each: a handler
writes its own ``+OK`` line (and multi-line body) or raises :class:`~.session.Refused` for ``-ERR``.

Invariants: passwords go only through the shared authenticator, and only where :meth:`Session.login_allowed`;
message numbers index the snapshot taken at login (:mod:`.maildrop`); message text is read and byte-stuffed in a
reader thread, never on the event loop; nothing is written before QUIT.
"""

from __future__ import annotations

import logging
import sqlite3

from ..auth import sasl
from ..auth.authenticator import LoginFailed
from ..events import MailboxChanged
from . import maildrop
from .maildrop import Entry
from .parser import Command, multiline, number, stuff, top
from .session import LINE_LENGTH, Handler, Refused, Session, State

log = logging.getLogger(__name__)

PLAINTEXT_REFUSED = "plaintext authentication disallowed on non-secure connections: use STLS or port 995"


async def capa(session: Session, command: Command) -> None:
    """CAPA (RFC 2449 §5)."""
    session.ok("capability list follows")
    session.send(multiline("".join(f"{line}\r\n" for line in session.capabilities()).encode()))


async def noop(session: Session, command: Command) -> None:
    session.ok()


async def quit_(session: Session, command: Command) -> None:
    """QUIT (RFC 1939 §6): in TRANSACTION, the UPDATE state: one transaction, then the bus tells IMAP."""
    if session.state is State.TRANSACTION:
        drop = session.drop
        deleted = [e.uid for e in drop.entries if e.deleted]
        retrieved = [e.uid for e in drop.entries if e.retrieved]
        if drop.mailbox_id and (deleted or retrieved):
            try:
                update = await session.store.write(
                    lambda conn: maildrop.commit(conn, drop.mailbox_id, deleted, retrieved)
                )
            except Exception as exc:
                log.error("pop3 %s: QUIT could not update the mailbox: %s", session.email, exc)
                raise Refused("deleted messages not removed; nothing changed", "SYS/TEMP", close=True) from None
            if update.modseq:
                session.services.bus.publish([MailboxChanged(session.account_id, drop.mailbox_id, update.modseq)])
            if deleted:  # a message another session expunged first is not counted twice
                log.info("pop3 %s: QUIT expunged %d of %d deleted", session.email, len(update.expunged), len(deleted))
        count, _ = drop.totals()
        session.ok(f"relentad POP3 signing off ({count} messages left)")
    else:
        session.ok("relentad POP3 signing off")
    session.state = State.CLOSED


async def stls(session: Session, command: Command) -> None:
    """STLS (RFC 2595 §4): +OK in plaintext, the handshake; the plaintext sent after it is forgotten, as is USER."""
    context = session.services.get_tls()
    if session.conn.tls:
        raise Refused("TLS is already active")
    if context is None:
        raise Refused("TLS is not available: no certificate configured")
    session.ok("begin TLS negotiation now")
    if not await session.start_tls(context, "STLS"):
        session.state = State.CLOSED
        return
    session.user = ""


def _require_privacy(session: Session) -> None:
    if not session.login_allowed():
        raise Refused(PLAINTEXT_REFUSED, "AUTH")


async def user(session: Session, command: Command) -> None:
    """USER (RFC 1939 §7): the name is remembered for PASS; whether it exists is not told."""
    _require_privacy(session)
    session.user = command.args[0]
    session.ok("send PASS")


async def pass_(session: Session, command: Command) -> None:
    """PASS (RFC 1939 §7), right after USER."""
    _require_privacy(session)
    if not session.user:
        raise Refused("USER first")
    name, session.user = session.user, ""
    await _log_in(session, name, command.args[0])


async def _sasl_answer(session: Session) -> bytes:
    session.send(b"+ \r\n")
    await session.flush()
    try:
        line = await session.answer(session.conn.readline(LINE_LENGTH))
    except TimeoutError:
        raise Refused("not logged in in time", close=True) from None
    return line.rstrip(b"\r\n")


async def auth(session: Session, command: Command) -> None:
    """AUTH (RFC 5034): PLAIN with an optional initial response ("=" for an empty one); without a mechanism, the
    list of mechanisms as Outlook asks for it."""
    if not command.args:
        session.ok("SASL mechanisms follow")
        session.send(multiline(b"PLAIN\r\n" if session.login_allowed() else b""))
        return
    mechanism = command.args[0].upper()
    if mechanism != "PLAIN":
        raise Refused(f"unsupported SASL mechanism {mechanism}; use PLAIN")
    _require_privacy(session)
    answer = command.args[1].encode() if len(command.args) > 1 else await _sasl_answer(session)
    if answer == b"*":
        raise Refused("authentication cancelled")
    if answer == b"=":
        answer = b""
    try:
        authcid, password = sasl.plain(sasl.decode_base64(answer))
    except sasl.SaslError as exc:
        raise Refused(exc.text, "AUTH" if exc.authorization else "") from None
    await _log_in(session, authcid, password)


async def _log_in(session: Session, name: str, password: str) -> None:
    """Verify, then take the maildrop snapshot (RFC 1939 §4: the TRANSACTION state starts with it)."""
    try:
        login = await session.verify(name, password)
    except LoginFailed as exc:
        if exc.throttled:
            raise Refused("too many failed logins; try again later", "SYS/TEMP") from None
        raise Refused("authentication failed", "AUTH") from None
    drop = await session.services.readers.run(lambda conn: maildrop.load(conn, login.account_id))
    session.drop = drop
    session.state = State.TRANSACTION
    session.opened(login)
    count, size = drop.totals()
    log.info("pop3 login %s from %s%s (%d messages)", login.email, session.peer, login.via, count)
    session.ok(f"maildrop has {count} messages ({size} octets)")


def _entry(session: Session, text: str) -> tuple[int, Entry]:
    """(number, entry) of a message number not marked deleted."""
    n = number(text)
    if n > len(session.drop.entries):
        raise Refused(f"no message {n}")
    entry = session.drop.entries[n - 1]
    if entry.deleted:
        raise Refused(f"message {n} is deleted")
    return n, entry


async def stat(session: Session, command: Command) -> None:
    count, size = session.drop.totals()
    session.ok(f"{count} {size}")


async def list_(session: Session, command: Command) -> None:
    """LIST (RFC 1939 §5): one message's size, or every message not deleted."""
    if command.args:
        n, entry = _entry(session, command.args[0])
        session.ok(f"{n} {entry.size}")
        return
    count, size = session.drop.totals()
    session.ok(f"{count} messages ({size} octets)")
    session.send(multiline("".join(f"{n} {e.size}\r\n" for n, e in session.drop.live()).encode()))


async def uidl(session: Session, command: Command) -> None:
    """UIDL (RFC 1939 §7)."""
    drop = session.drop
    if command.args:
        n, entry = _entry(session, command.args[0])
        session.ok(f"{n} {drop.unique_id(entry)}")
        return
    session.ok("unique-id listing follows")
    session.send(multiline("".join(f"{n} {drop.unique_id(e)}\r\n" for n, e in drop.live()).encode()))


async def _text(session: Session, entry: Entry, lines: int | None) -> bytes:
    """The stuffed body of RETR (``lines`` None) or TOP without its terminator, read in a reader thread."""
    mailbox_id = session.drop.mailbox_id

    def read(conn: sqlite3.Connection) -> bytes | None:
        data = maildrop.message(conn, mailbox_id, entry.uid)
        if data is None:
            return None
        return stuff(data if lines is None else top(data, lines))

    body = await session.services.readers.run(read)
    if body is None:
        raise Refused("message was deleted by another session since login")
    return body


async def retr(session: Session, command: Command) -> None:
    """RETR (RFC 1939 §5); the message gets \\Seen at QUIT (Dovecot's default too)."""
    _, entry = _entry(session, command.args[0])
    body = await _text(session, entry, None)
    entry.retrieved = True
    session.ok(f"{entry.size} octets")
    await session.send_body(body)


async def top_(session: Session, command: Command) -> None:
    """TOP (RFC 1939 §7): the header and that many body lines; no \\Seen."""
    _, entry = _entry(session, command.args[0])
    lines = number(command.args[1], zero=True)
    body = await _text(session, entry, lines)
    session.ok("top of message follows")
    await session.send_body(body)


async def dele(session: Session, command: Command) -> None:
    """DELE (RFC 1939 §5): marked only; QUIT expunges."""
    n, entry = _entry(session, command.args[0])
    entry.deleted = True
    session.ok(f"message {n} deleted")


async def rset(session: Session, command: Command) -> None:
    """RSET (RFC 1939 §5): every deletion mark is dropped."""
    session.drop.reset()
    count, size = session.drop.totals()
    session.ok(f"maildrop has {count} messages ({size} octets)")


HANDLERS: dict[str, Handler] = {
    "CAPA": capa,
    "NOOP": noop,
    "QUIT": quit_,
    "STLS": stls,
    "USER": user,
    "PASS": pass_,
    "AUTH": auth,
    "STAT": stat,
    "LIST": list_,
    "UIDL": uidl,
    "RETR": retr,
    "TOP": top_,
    "DELE": dele,
    "RSET": rset,
}
"""Every command's handler."""
