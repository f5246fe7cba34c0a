"""Logging in: STARTTLS, LOGIN, AUTHENTICATE PLAIN with SASL-IR (RFC 9051 §6.2, RFC 4959, RFC 4616).

Invariants: no password is accepted on a connection where :meth:`Session.login_allowed` is False (plaintext,
not a permitted loopback): those get ``NO [PRIVACYREQUIRED]``. Every attempt goes through the shared
:class:`~relentad.auth.authenticator.Authenticator` (throttle, credential cache, argon2 off the loop, login
history), behind :func:`check_credentials` only.
"""

from __future__ import annotations

from ...auth import sasl
from ...auth.authenticator import LoginFailed
from ..errors import bad, no
from ..parser import Authenticate, Login, NoArgs
from ..responses import continuation
from ..session import ANSWERED, Handler, Ok, Result, Session, State


async def check_credentials(session: Session, username: str, password: str) -> None:
    """Verify and open the account, or raise the IMAP NO (RFC 5530 AUTHENTICATIONFAILED / UNAVAILABLE)."""
    try:
        login = await session.verify(username, password)
    except LoginFailed as exc:
        if exc.throttled:
            raise no("too many failed logins; try again later", "UNAVAILABLE") from None
        raise no("invalid user name or password", "AUTHENTICATIONFAILED") from None
    session.logged_in(login)


def _require_privacy(session: Session) -> None:
    if not session.login_allowed():
        raise no("logins need TLS: use STARTTLS or port 993", "PRIVACYREQUIRED")


async def login(session: Session, command: Login) -> Result:
    """LOGIN (RFC 9051 §6.2.3)."""
    _require_privacy(session)
    await check_credentials(session, command.username, command.password)
    return Ok("logged in", session.capability_code())


async def authenticate(session: Session, command: Authenticate) -> Result:
    """AUTHENTICATE PLAIN (RFC 9051 §6.2.2, RFC 4616), initial response inline (RFC 4959) or after `+`."""
    if command.mechanism != "PLAIN":
        raise no(f"unsupported SASL mechanism {command.mechanism}; use PLAIN", "CANNOT")
    _require_privacy(session)
    response = command.initial_response
    if response is None:
        session.send(continuation(""))
        await session.flush()
        try:
            line = (await session.answer(session.conn.readline(session.config.imap.line_length))).rstrip(b"\r\n")
        except TimeoutError:  # a client that never answers the "+" must not hold its connection for ever
            session.say_timeout()
            session.state = State.LOGOUT
            return ANSWERED
        if line == b"*":
            raise bad("authentication cancelled")
        try:
            response = sasl.decode_base64(line)
        except sasl.SaslError as exc:
            raise bad(exc.text) from None
    try:
        authcid, password = sasl.plain(response)
    except sasl.SaslError as exc:
        raise (no(exc.text, "AUTHORIZATIONFAILED") if exc.authorization else bad(exc.text)) from None
    await check_credentials(session, authcid, password)
    return Ok("logged in", session.capability_code())


async def starttls(session: Session, command: NoArgs) -> Result:
    """STARTTLS (RFC 9051 §6.2.1): the OK goes out in plaintext, then the handshake; buffered input is dropped."""
    context = session.services.get_tls()
    if session.conn.tls:
        raise bad("TLS is already active")
    if context is None:
        raise no("TLS is not available: no certificate configured")
    session.reply(command.tag, "OK", "begin TLS negotiation now")
    await session.flush()
    if not await session.start_tls(context, "STARTTLS"):
        session.state = State.LOGOUT
    return ANSWERED


HANDLERS: dict[str, Handler] = {
    "LOGIN": login,
    "AUTHENTICATE": authenticate,
    "STARTTLS": starttls,
}
