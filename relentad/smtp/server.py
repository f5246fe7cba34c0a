"""aiosmtpd's SMTP protocol embedded in our event loop, with the limits and replies a public MX needs.

aiosmtpd does the protocol; this module adds what it lacks and holds no mail policy (that is the handlers'):
- enhanced status codes on every reply (:mod:`relentad.smtp.replies`), except greeting and EHLO;
- per-IP and total connection limits, answered ``421`` before the greeting; a connection counts from accept to
  close, so on 465 the TLS handshake is done here, after the limits (see :meth:`RelentadSMTP.connection_made`);
- a separate, longer DATA timeout and a ``421 4.4.2`` on idle timeout instead of a silent close;
- per-connection command size limits (aiosmtpd keeps them in shared class state, which grows with every EHLO);
- a registry of open connections so SIGTERM can close idle ones at once and let transactions finish.

Settings are read from a :class:`ListenerContext` at connection time, so SIGHUP's new limits and certificate
apply to new connections while old ones finish undisturbed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import inspect
import logging
import re
import ssl
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import aiosmtpd.smtp
from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    Session,
    TLSSetupException,
    _AuthMechAttr,
    _Missing,
    login_always_fail,
    syntax,
)

from .. import __version__, metrics, tls
from ..config import Config
from . import dsnparams, replies

log = logging.getLogger(__name__)


@dataclass
class ListenerContext:
    """What a listener's new connections use; replaced as a whole on reload."""

    config: Config
    tls_context: ssl.SSLContext | None
    implicit_tls: bool = False  # port 465: a connection starts with a handshake in tls_context (no STARTTLS offered)


class Connections:
    """Open connections of one kind of listener: per-IP counts for the limit, the set for shutdown."""

    def __init__(self, name: str = "smtp") -> None:
        self.name = name  # the listener's name in metrics: "smtp" (the MX) or "submission" (587 and 465)
        self.per_ip: collections.Counter[str] = collections.Counter()
        self.open: set[RelentadSMTP] = set()
        self.closing = False  # SIGTERM: transactions in flight finish, no new one starts (MAIL gets 421)

    def admit(self, protocol: RelentadSMTP, ip: str, per_ip: int, total: int) -> str | None:
        """The refusal reply when a new connection from ``ip`` is over a limit, else None (and count it)."""
        if len(self.open) >= total:
            return replies.SERVER_BUSY
        if self.per_ip[ip] >= per_ip:
            return replies.TOO_MANY_CONNECTIONS
        self.per_ip[ip] += 1
        self.open.add(protocol)
        return None

    def release(self, protocol: RelentadSMTP, ip: str) -> None:
        if protocol in self.open:
            self.open.discard(protocol)
            self.per_ip[ip] -= 1
            if self.per_ip[ip] <= 0:
                del self.per_ip[ip]

    def close_idle(self) -> None:
        """Tell connections between transactions that we are going away, and close them; from now on a connection
        whose transaction is done gets the same answer at its next MAIL."""
        self.closing = True
        for protocol in list(self.open):
            if not protocol.in_transaction:
                protocol.shut_down()

    def close_all(self) -> None:
        for protocol in list(self.open):
            protocol.shut_down()

    async def drain(self, grace: float) -> None:
        """Wait until transactions in flight are done (or ``grace`` passes), then close what is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while any(p.in_transaction for p in self.open) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # polling: a shutdown happens once, an event per transaction is not worth it
        self.close_all()


_END_OF_DATA = b"\r\n.\r\n"
_CHUNK = 65536
_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"  # aiosmtpd's wording; replies.py adds the enhanced code
_TOO_MUCH = "552 Error: Too much mail data"
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
# Where MAIL's or RCPT's DSN parameters may be: their names after white space (an address may match too).
_MAIL_DSN = re.compile(r"\s(?:RET|ENVID)(?![A-Za-z0-9])", re.IGNORECASE)
_RCPT_DSN = re.compile(r"\s(?:NOTIFY|ORCPT)(?![A-Za-z0-9])", re.IGNORECASE)
# <local@domain> with a dot-atom local part and a plain host name, then the parameters (RFC 5321 §4.1.2).
_SIMPLE_PATH = re.compile(rf"<(({_ATOM}(?:\.{_ATOM})*)@{_LABEL}(?:\.{_LABEL})*)>[ \t]*((?:[^\s(].*)?)\Z", re.DOTALL)


@dataclass(frozen=True)
class _Introspection:
    """What aiosmtpd's SMTP.__init__ finds by inspecting the protocol and handler classes, as attribute names."""

    auth: tuple[tuple[str, str, bool], ...]  # (mechanism, attribute, on the protocol itself)
    hooks: tuple[tuple[str, str], ...]  # (command, handler attribute)
    commands: dict[str, str]  # command -> protocol attribute
    ehlo_hook_version: str | None


_TABLES: dict[tuple[type, type], _Introspection] = {}


def _introspect(protocol: type[SMTP], handler: type) -> _Introspection:
    """The same lookups as SMTP.__init__ (auth_*, handle_*, smtp_* members; the EHLO hook's arity), per class."""
    table = _TABLES.get((protocol, handler))
    if table is None:
        table = _TABLES[(protocol, handler)] = _inspect_classes(protocol, handler)
    return table


def _inspect_classes(protocol: type[SMTP], handler: type) -> _Introspection:
    auth: dict[str, tuple[str, bool]] = {}
    for owner, builtin in ((protocol, True), (handler, False)):
        for attr, member in inspect.getmembers(owner):
            if attr.startswith("auth_"):
                mechanism = getattr(member, "__auth_mechanism_name__", attr.replace("auth_", "").replace("__", "-"))
                auth[mechanism] = (attr, builtin)
    hooks = tuple((attr.replace("handle_", ""), attr) for attr in dir(handler) if attr.startswith("handle_"))
    ehlo = getattr(handler, "handle_EHLO", None)
    version = None
    if ehlo is not None:  # unbound here: self counts, so the 5-argument hook has 6 parameters
        version = "new" if len(inspect.signature(ehlo).parameters) == 6 else "old"
    commands = {attr.replace("smtp_", ""): attr for attr in dir(protocol) if attr.startswith("smtp_")}
    return _Introspection(tuple((m, a, b) for m, (a, b) in auth.items()), hooks, commands, version)


# A handler's hooks are the same bound methods for every connection: bound once per handler, not per connection.
_HOOKS: weakref.WeakKeyDictionary[Any, dict[str, Callable[..., Any]]] = weakref.WeakKeyDictionary()


def _hooks_of(handler: Any, table: _Introspection) -> dict[str, Callable[..., Any]]:
    hooks = _HOOKS.get(handler)
    if hooks is None:
        hooks = _HOOKS[handler] = {name: getattr(handler, attr) for name, attr in table.hooks}
    return hooks


class _BoundCommands(Mapping[str, Any]):
    """The protocol's ``smtp_*`` methods by command, bound when looked up: aiosmtpd binds all of them on every
    connection, and a connection uses four or five."""

    __slots__ = ("_attrs", "_owner")

    def __init__(self, owner: SMTP, attrs: dict[str, str]) -> None:
        self._owner = owner
        self._attrs = attrs

    def __getitem__(self, command: str) -> Any:
        return getattr(self._owner, self._attrs[command])

    def __iter__(self) -> Iterator[str]:
        return iter(self._attrs)

    def __len__(self) -> int:
        return len(self._attrs)


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_aiosmtpd_sanitized_log = aiosmtpd.smtp.sanitized_log


def _sanitized_log_when_enabled(func: Callable[..., None], msg: Any, *args: Any, **kwargs: Any) -> None:
    """aiosmtpd's ``sanitized_log``, skipped when the logger would drop the line anyway.

    aiosmtpd logs every command line at DEBUG and INFO through ``sanitized_log``, which escapes the bytes
    first — work done for nothing with ``mail.log`` at WARNING (the daemon's setting): ~2.5 % of the MX's CPU.
    """
    logger = getattr(func, "__self__", None)
    level = _LEVELS.get(getattr(func, "__name__", ""))
    if isinstance(logger, logging.Logger) and level is not None and not logger.isEnabledFor(level):
        return
    _aiosmtpd_sanitized_log(func, msg, *args, **kwargs)


aiosmtpd.smtp.sanitized_log = _sanitized_log_when_enabled  # aiosmtpd looks it up as a module global per call


def _open_writer(transport: asyncio.BaseTransport | None) -> asyncio.WriteTransport | None:
    """The transport, if it is still open for writing.

    By duck type: uvloop's transports implement the interface without subclassing asyncio's classes, so an
    ``isinstance`` check silently skipped the 421 on shutdown and timeout there (caught by test_daemon.py).
    """
    if transport is None or transport.is_closing() or not hasattr(transport, "write"):
        return None
    return cast(asyncio.WriteTransport, transport)


class RelentadSession(Session):
    """aiosmtpd's session plus what relentad's handlers keep across one connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.tx: Any = None  # the open transaction, owned by the handler
        self.last_reply = ""  # the last reply sent, for the transaction log
        self.listener = "smtp"  # the listener's name in metrics
        self.dnsbl_checked = False  # the client's IP was looked up in [dnsbl] zones (once per connection, STARTTLS
        # or not: the new session after it keeps the answer, which is about the IP, not anything the client said)
        self.dnsbl: Any = None  # what that found: a dnsbl.Listing, or None
        # The DSN parameters (RFC 3461) of the MAIL or RCPT command being handled, for the handler's hook.
        self.dsn_mail = dsnparams.NO_MAIL_PARAMS
        self.dsn_rcpt = dsnparams.NO_RCPT_PARAMS


class RelentadSMTP(SMTP):
    """aiosmtpd's SMTP with relentad's limits, timeouts and reply codes (see the module docstring)."""

    def __init__(
        self,
        handler: Any,
        context: ListenerContext,
        connections: Connections,
        *,
        auth_require_tls: bool = True,
    ) -> None:
        limits = context.config.limits
        self._connections = connections
        self._context = context
        self._refused = False
        self._handshaking = False  # implicit TLS: admitted, the handshake not done yet
        self._in_ehlo = False
        self._ehlo_lines: list[bytes] = []
        self._peer_ip = ""
        self._deadline = 0.0  # when the current command or DATA timeout runs out (loop time)
        self._timer_pending = False
        # aiosmtpd's SMTP.__init__ inspects the handler and this class (inspect.getmembers, dir, signature) on
        # every connection: ~17 % of the MX's CPU. This sets the same attributes from a per-class table.
        # tests/unit/test_smtp_server.py checks the result against SMTP.__init__, so an aiosmtpd upgrade that
        # adds state fails a test instead of a connection.
        self.line_length_limit = limits.line_length
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self.__ident__ = f"relentad {__version__} ESMTP"
        self.loop = asyncio.get_running_loop()
        asyncio.StreamReaderProtocol.__init__(
            self,
            asyncio.StreamReader(loop=self.loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected,
            loop=self.loop,
        )
        self.event_handler = handler
        self.data_size_limit = limits.message_size
        self.enable_SMTPUTF8 = True
        self._decode_data = False
        self.hostname = context.config.server.hostname
        self.tls_context = None if context.implicit_tls else context.tls_context  # what STARTTLS offers
        self.require_starttls = False
        self._timeout_duration = limits.command_timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = auth_require_tls
        self._proxy_timeout = None
        self._authenticator = None
        self._auth_callback = login_always_fail
        self._auth_required = False
        self._enforce_call_limit = False
        table = _introspect(type(self), type(handler))
        self._auth_methods = {
            mechanism: _AuthMechAttr(getattr(self if builtin else handler, attr), builtin)
            for mechanism, attr, builtin in table.auth
        }
        self._handle_hooks = _hooks_of(handler, table)
        self._ehlo_hook_ver = table.ehlo_hook_version
        self._smtp_methods = _BoundCommands(self, table.commands)  # type: ignore[assignment]  # read as a Mapping

    @property
    def in_transaction(self) -> bool:
        """True between MAIL and the end of DATA: closing now would abort a message."""
        return self.envelope is not None and bool(self.envelope.mail_from)

    def shut_down(self) -> None:
        transport = _open_writer(self.transport)
        if transport is not None:
            transport.write((replies.SHUTTING_DOWN + "\r\n").encode())
            transport.close()

    # -- connection limits ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._handshaking:  # implicit TLS is up: the session starts over it, as on a plaintext connection
            self._handshaking = False
            super().connection_made(transport)
            return
        first = self.transport is None and self._original_transport is None
        if first:
            peer = transport.get_extra_info("peername")
            self._peer_ip = str(peer[0]) if peer else ""
            limits = self._context.config.limits
            implicit, context = self._context.implicit_tls, self._context.tls_context
            if implicit and context is None:  # a reload took the certificate away: no plaintext SMTP on 465
                refusal: str | None = replies.TLS_UNAVAILABLE
            else:
                refusal = self._connections.admit(
                    self, self._peer_ip, limits.connections_per_ip, limits.max_connections
                )
            if refusal is not None:
                self._refused = True
                log.info("smtp refused peer=%s reply=%r", self._peer_ip, refusal[:3])
                metrics.rejected(self._connections.name, metrics.reason_of(refusal))
                writer = cast(asyncio.WriteTransport, transport)
                if not implicit:  # on 465 the client expects a handshake, not a 421
                    writer.write((refusal + "\r\n").encode())
                writer.close()
                return
            if implicit and context is not None:
                self._start_implicit_tls(transport, context)
                return
        else:
            self._end_transaction()  # STARTTLS done: aiosmtpd starts a new session (RFC 3207 §4.2)
        super().connection_made(transport)

    def _start_implicit_tls(self, transport: asyncio.BaseTransport, context: ssl.SSLContext) -> None:
        """Port 465: TLS goes under this protocol after the connection was counted; the session starts when the
        handshake is done (:meth:`connection_made` again). A handshake that fails or never comes gives the slot
        back here, as no ``connection_lost`` will."""
        self._handshaking = True
        tls.accept_tls(transport, self, context, self._handshake_failed)

    def _handshake_failed(self, error: BaseException | None) -> None:
        log.info("smtp TLS handshake failed peer=%s: %r", self._peer_ip, error)
        self._connections.release(self, self._peer_ip)

    def _end_transaction(self) -> None:
        """Let the handler end the session's transaction, as on a hang-up: aiosmtpd replaces the session after the
        TLS handshake, and a transaction left on the old one was never logged (nor, on submission, its send-limit
        reservation given back)."""
        hook = getattr(self.event_handler, "connection_lost", None)
        if hook is not None and self.session is not None:
            hook(self.session, self.envelope)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self._connections.release(self, self._peer_ip)
        self._end_transaction()
        super().connection_lost(error)

    def eof_received(self) -> bool:
        """The client hung up: aiosmtpd cancels the session task, and we always let the transport close.

        aiosmtpd keeps the transport open here and closes it from the cancelled task, but only once the task is
        inside its command loop. uvloop can deliver a connect-and-close before the task's first step, and that
        connection then held its per-IP slot until the idle timeout (caught by test_smtp_inbound.py).
        """
        if not self._refused:
            super().eof_received()
        return False

    # -- replies and timeouts ---------------------------------------------------------------------------------

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and not status.isascii():
            # aiosmtpd echoes client text (VRFY's argument) decoded with surrogateescape; a lone surrogate
            # cannot be sent, so it becomes "?" rather than an exception (found by scripts/fuzz, issue 8).
            status = status.encode("utf-8", "replace").decode("utf-8")
        if isinstance(status, str) and not self._in_ehlo:  # RFC 2034: no enhanced code in the EHLO/HELO response
            status = replies.with_enhanced_code(replies.CLOSING_REWRITES.get(status, status))
            if isinstance(self.session, RelentadSession):
                self.session.last_reply = status
        if isinstance(status, str) and status[:1] in ("4", "5"):  # an EHLO/HELO refusal counts too
            metrics.rejected(self._connections.name, metrics.reason_of(status))
        if self._in_ehlo:  # the EHLO/HELO reply lines go out in one write (one send(2), one segment)
            self._ehlo_lines.append(status.encode() if isinstance(status, str) else status)
            return
        await super().push(status)

    async def _greeting_reply(self, command: Any, hostname: str) -> None:
        """Run aiosmtpd's EHLO or HELO with ``push`` collecting the lines, then send them at once."""
        self._in_ehlo, self._ehlo_lines = True, []
        try:
            await command(hostname)
        finally:
            self._in_ehlo = False
            lines, self._ehlo_lines = self._ehlo_lines, []
            if lines:
                await super().push(b"\r\n".join(lines))

    @property
    def offers_auth(self) -> bool:
        """Whether this listener authenticates: its handler brings AUTH mechanisms of its own (submission does;
        the MX has only aiosmtpd's built-in ones, which always fail)."""
        return any(not mechanism.is_builtin for mechanism in self._auth_methods.values())

    async def challenge_auth(
        self, challenge: str | bytes, encode_to_b64: bool = True, log_client_response: bool = False
    ) -> _Missing | bytes:
        """aiosmtpd's ``334`` and the client's base64 answer (``*`` cancels), except for an answer over the line
        limit: RFC 4954's ``500 5.5.6`` with the rest of the line read and dropped, where aiosmtpd echoed asyncio's
        ValueError to the client, logged a traceback and read the rest of the line as a command."""
        if isinstance(challenge, str):
            challenge = challenge.encode()
        await self.push(b"334 " + (base64.b64encode(challenge) if encode_to_b64 else challenge))
        line = await self._read_line()
        if line is None:
            await self.push(replies.AUTH_LINE_TOO_LONG)
            return MISSING
        blob = line.strip()
        if blob == b"*":
            await self.push("501 5.7.0 Auth aborted")
            return MISSING
        try:
            return base64.b64decode(blob, validate=True)
        except binascii.Error:
            await self.push("501 5.5.2 Can't decode base64")
            return MISSING

    async def _read_line(self) -> bytes | None:
        """One line up to ``line_length_limit``; None when longer (then read to its end and dropped)."""
        reader = self._reader
        try:
            return await reader.readuntil()
        except asyncio.IncompleteReadError as eof:
            return eof.partial
        except asyncio.LimitOverrunError as overrun:
            consumed = overrun.consumed
        while True:
            try:
                await reader.readexactly(consumed)
                await reader.readuntil()
                return None
            except asyncio.IncompleteReadError:
                return None
            except asyncio.LimitOverrunError as overrun:
                consumed = overrun.consumed

    async def handle_exception(self, error: Exception) -> str:
        """A STARTTLS handshake that fails (a scanner, a client with no cipher in common, one that hangs up) is one
        INFO line, not aiosmtpd's ERROR with a traceback; aiosmtpd closes the connection after it either way."""
        if isinstance(error, TLSSetupException):
            log.info("smtp STARTTLS failed peer=%s: %r", self._peer_ip, error.__cause__)
            return replies.LOCAL_ERROR  # never sent: the connection is closed
        return await super().handle_exception(error)

    @syntax("AUTH <mechanism>", when="offers_auth")
    async def smtp_AUTH(self, arg: str) -> None:
        """AUTH where it is offered; elsewhere (the MX, whose EHLO never lists it) one clear ``502 5.5.1`` instead
        of aiosmtpd's ``538`` before TLS and a ``535`` for every password after it, and HELP leaves it out."""
        if not self.offers_auth:
            await self.push(replies.NO_AUTH_HERE)
            return
        await super().smtp_AUTH(arg)

    async def smtp_EHLO(self, hostname: str) -> None:
        await self._greeting_reply(super().smtp_EHLO, hostname)

    async def smtp_HELO(self, hostname: str) -> None:
        await self._greeting_reply(super().smtp_HELO, hostname)

    def offer_dsn(self) -> str:
        """The EHLO line that offers DSN, for a handler's EHLO hook; the MAIL and RCPT command lines may then be
        longer by what its parameters take (RFC 3461 §5: 110 and 500 characters)."""
        with_dsn = SMTP.command_size_limit + 26 + 10 + 110  # SIZE and SMTPUTF8 as aiosmtpd counts them, and DSN
        self.command_size_limits["MAIL"] = max(self.command_size_limits["MAIL"], with_dsn)
        self.command_size_limits["RCPT"] = SMTP.command_size_limit + 500
        return "250-DSN"

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        """aiosmtpd's MAIL, except while the daemon shuts down: ``421`` and the connection closed, so that a client
        whose transaction finished in the grace period does not start another one (and lose it at the deadline)."""
        if self._connections.closing:
            self.shut_down()
            return
        try:
            arg, self._session().dsn_mail = self._take_dsn(
                arg, "FROM:", _MAIL_DSN, dsnparams.parse_mail, dsnparams.NO_MAIL_PARAMS
            )
        except dsnparams.ParamError as refusal:
            await self.push(refusal.reply)
            return
        await super().smtp_MAIL(arg)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        """aiosmtpd's RCPT, with the DSN parameters taken out first (see :meth:`_take_dsn`)."""
        try:
            if self.envelope is not None and self.envelope.mail_from:
                arg, self._session().dsn_rcpt = self._take_dsn(
                    arg, "TO:", _RCPT_DSN, dsnparams.parse_rcpt, dsnparams.NO_RCPT_PARAMS
                )
        except dsnparams.ParamError as refusal:
            await self.push(refusal.reply)
            return
        await super().smtp_RCPT(arg)

    def _session(self) -> RelentadSession:
        assert isinstance(self.session, RelentadSession)
        return self.session

    def _take_dsn(
        self, arg: str | None, keyword: str, names: re.Pattern[str], parse: Callable[[str], tuple[Any, str]], none: Any
    ) -> Any:
        """(``arg`` without its DSN parameters, what they said) for aiosmtpd's MAIL or RCPT, which upper-cases
        parameters (ENVID and ORCPT are case-sensitive) and refuses those it does not know. ``arg`` as it is, and
        ``none``, where aiosmtpd refuses the command anyway (no EHLO, no keyword, a malformed address), and at
        once where no parameter's name appears (most commands: the address is not parsed twice)."""
        if arg is None or self.session is None or not self.session.extended_smtp or not names.search(arg):
            return arg, none
        stripped = self._strip_command_keyword(keyword, arg)
        if stripped is None:
            return arg, none
        address, params = self._getaddr(stripped)
        if not address or not params or not stripped.endswith(params):
            return arg, none
        found, rest = parse(params)
        return f"{keyword}{stripped[: len(stripped) - len(params)].rstrip()} {rest}".rstrip(), found

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        """aiosmtpd's STARTTLS, refused once TLS is up: aiosmtpd would answer 220 and start TLS inside TLS, which
        kills the connection. ``554 5.5.1`` as Postfix answers; the session goes on."""
        if self._tls_protocol is not None:
            await self.push(replies.TLS_ACTIVE)
            return
        await super().smtp_STARTTLS(arg)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA with the message read in chunks instead of line by line (see :meth:`_receive_data`).

        The checks, replies and the handler call are aiosmtpd's; tests/e2e/test_smtp_inbound.py covers the
        limits, dot-stuffing, bare LF and pipelining.
        """
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self._reset_timeout(self._context.config.limits.data_timeout)
        try:
            received = await self._receive_data()
        finally:
            self._reset_timeout()
        if received is None:
            return  # the client went away mid-message
        if isinstance(received, str):
            await self.push(received)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        self.envelope.content = self.envelope.original_content = received
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    async def _receive_data(self) -> bytes | str | None:
        """The message up to ``CRLF.CRLF``, dot-unstuffed; the error reply when over a limit; None on EOF.

        aiosmtpd reads DATA a line at a time (a readuntil, joins and checks per line: a quarter of its CPU per
        message); this reads what has arrived and looks for the end marker in it. The limits are aiosmtpd's:
        ``500`` for a line longer than ``line_length_limit`` (CRLF counted), ``552`` over ``data_size_limit``
        (counted as sent, dots included), whichever came first; the rest of an oversized message is read and
        dropped, as RFC 5321 §4.2.5 implies. Bytes after the marker (a pipelined QUIT, the next MAIL) go back
        to the reader for the command loop.
        """
        reader = self._reader
        limit = self.data_size_limit or 0
        data = bytearray(b"\r\n")  # a virtual CRLF before the first line, so one search finds a leading "."
        error: str | None = None
        scan = 0
        while (end := data.find(_END_OF_DATA, scan)) < 0:
            scan = max(len(data) - len(_END_OF_DATA) + 1, 0)
            if error is None and limit and len(data) - 4 > limit:  # 2 for the virtual CRLF, 2 for a partial ".\r"
                error = _TOO_LONG if self._has_long_line(data) else _TOO_MUCH
            if error is not None and len(data) > 8:
                del data[: len(data) - 4]  # over a limit: keep only what may hold the start of the marker
                scan = 0
            try:
                chunk = await reader.read(_CHUNK)
            except asyncio.CancelledError:  # the client hung up mid-message (eof_received cancels us)
                self._writer.close()
                raise
            if not chunk:
                self._writer.close()
                return None
            data += chunk
        rest = data[end + len(_END_OF_DATA) :]
        if rest:
            reader._buffer[:0] = rest  # type: ignore[attr-defined]  # back for the command loop
        if error is not None:
            return error
        del data[end + 2 :]
        if self._has_long_line(data):
            return _TOO_LONG
        if limit and len(data) - 2 > limit:
            return _TOO_MUCH
        if b"\r\n." in data:  # RFC 5321 §4.5.2: drop one leading dot per line
            data = data.replace(b"\r\n.", b"\r\n")
        del data[:2]  # the virtual CRLF (cheap: a bytearray drops its head without copying)
        return bytes(data)

    def _has_long_line(self, data: bytearray) -> bool:
        return max(map(len, data.split(b"\r\n"))) + 2 > self.line_length_limit

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """The common ``<dot-atom@domain>`` without email's header parser (a third of MAIL/RCPT's cost).

        Anything else (quoted local parts, source routes, UTF-8, no angle brackets) goes to aiosmtpd's parser,
        which gives the same answer for the fast path's inputs (tests/unit/test_smtp_server.py checks).
        """
        match = _SIMPLE_PATH.match(arg)
        if match is None or (self.local_part_limit and len(match[2]) > self.local_part_limit):
            try:
                result: tuple[str | None, str | None] = super()._getaddr(arg)
            except (IndexError, AttributeError, ValueError):
                # email's parser raises these on some malformed paths (IndexError on "<a@", AttributeError on
                # "<@x:y@[z>"): a syntax error like any other (found by scripts/fuzz, issue 8)
                return None, None
            return result
        return match[1], match[3]

    def _create_session(self) -> Session:
        session = RelentadSession(self.loop)
        session.listener = self._connections.name
        previous = self.session
        if isinstance(previous, RelentadSession):  # after STARTTLS: the same client, its IP already looked up
            session.dnsbl_checked, session.dnsbl = previous.dnsbl_checked, previous.dnsbl
        return session

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Move the timeout deadline. aiosmtpd cancels and creates a timer per command (8 per message); here
        one timer waits, and when it fires before the deadline it re-arms itself for the rest."""
        self._deadline = self.loop.time() + (duration or self._timeout_duration)
        handle = self._timeout_handle
        if handle is not None and self._timer_pending and handle.when() <= self._deadline:
            return
        if handle is not None:
            handle.cancel()  # the deadline came closer (DATA's longer timeout ended): fire earlier
        self._timeout_handle = self.loop.call_at(self._deadline, self._timer_fired)
        self._timer_pending = True

    def _timer_fired(self) -> None:
        self._timer_pending = False
        if self.loop.time() < self._deadline:
            self._timeout_handle = self.loop.call_at(self._deadline, self._timer_fired)
            self._timer_pending = True
            return
        self._timeout_cb()

    def _timeout_cb(self) -> None:
        transport = _open_writer(self.transport)
        if transport is not None:
            log.info("smtp timeout peer=%s", self._peer_ip)
            transport.write(b"421 4.4.2 Timeout, closing connection\r\n")
        super()._timeout_cb()  # type: ignore[no-untyped-call]


def protocol_factory(
    handler: Any, get_context: Callable[[], ListenerContext], connections: Connections, **kwargs: Any
) -> Callable[[], RelentadSMTP]:
    """A factory for ``loop.create_server`` that reads the current context for each new connection."""

    def factory() -> RelentadSMTP:
        return RelentadSMTP(handler, get_context(), connections, **kwargs)

    return factory
