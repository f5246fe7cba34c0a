"""aiosmtpd's SMTP protocol embedded in our event loop, with the limits and replies a public MX needs.

aiosmtpd does the protocol; this module adds what it lacks and holds no mail policy (that is the handlers'):
- enhanced status codes on every reply (:mod:`relentad.smtp.replies`), except greeting and EHLO;
- per-IP and total connection limits, answered ``421`` before the greeting;
- a separate, longer DATA timeout and a ``421 4.4.2`` on idle timeout instead of a silent close;
- per-connection command size limits (aiosmtpd keeps them in shared class state, which grows with every EHLO);
- a registry of open connections so SIGTERM can close idle ones at once and let transactions finish.

Settings are read from a :class:`ListenerContext` at connection time, so SIGHUP's new limits and certificate
apply to new connections while old ones finish undisturbed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Session

from .. import __version__, metrics
from ..config import Config
from . import replies

log = logging.getLogger(__name__)


@dataclass
class ListenerContext:
    """What a listener's new connections use; replaced as a whole on reload."""

    config: Config
    tls_context: ssl.SSLContext | None


class Connections:
    """Open connections of one kind of listener: per-IP counts for the limit, the set for shutdown."""

    def __init__(self, name: str = "smtp") -> None:
        self.name = name  # the listener's name in metrics: "smtp" (the MX) or "submission" (587 and 465)
        self.per_ip: collections.Counter[str] = collections.Counter()
        self.open: set[RelentadSMTP] = set()

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
        """Tell connections between transactions that we are going away, and close them."""
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


class RelentadSession(Session):
    """aiosmtpd's session plus what relentad's handlers keep across one connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.tx: Any = None  # the open transaction, owned by the handler
        self.last_reply = ""  # the last reply sent, for the transaction log
        self.listener = "smtp"  # the listener's name in metrics


class RelentadSMTP(SMTP):
    """aiosmtpd's SMTP with relentad's limits, timeouts and reply codes (see the module docstring)."""

    def __init__(self, handler: Any, context: ListenerContext, connections: Connections, **kwargs: Any) -> None:
        limits = context.config.limits
        # Instance attributes shadow aiosmtpd's class-level ones before its __init__ reads them.
        self.line_length_limit = limits.line_length
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self._connections = connections
        self._context = context
        self._refused = False
        self._in_ehlo = False
        self._peer_ip = ""
        super().__init__(
            handler,
            data_size_limit=limits.message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=context.config.server.hostname,
            ident=f"relentad {__version__} ESMTP",
            tls_context=context.tls_context,
            timeout=limits.command_timeout,
            **kwargs,
        )

    @property
    def in_transaction(self) -> bool:
        """True between MAIL and the end of DATA: closing now would abort a message."""
        return self.envelope is not None and bool(self.envelope.mail_from)

    def shut_down(self) -> None:
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            transport.write((replies.SHUTTING_DOWN + "\r\n").encode())
            transport.close()

    # -- connection limits ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None and self._original_transport is None
        if first:
            peer = transport.get_extra_info("peername")
            self._peer_ip = str(peer[0]) if peer else ""
            limits = self._context.config.limits
            refusal = self._connections.admit(self, self._peer_ip, limits.connections_per_ip, limits.max_connections)
            if refusal is not None:
                self._refused = True
                log.info("smtp refused peer=%s reply=%r", self._peer_ip, refusal[:3])
                metrics.rejected(self._connections.name, metrics.reason_of(refusal))
                assert isinstance(transport, asyncio.WriteTransport | asyncio.Transport)
                transport.write((refusal + "\r\n").encode())
                transport.close()
                return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self._connections.release(self, self._peer_ip)
        hook = getattr(self.event_handler, "connection_lost", None)
        if hook is not None and self.session is not None:
            hook(self.session, self.envelope)
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        result: bool | None = super().eof_received()
        return result

    # -- replies and timeouts ---------------------------------------------------------------------------------

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and not self._in_ehlo:
            status = replies.with_enhanced_code(status)
            if isinstance(self.session, RelentadSession):
                self.session.last_reply = status
            if status[:1] in ("4", "5"):
                metrics.rejected(self._connections.name, metrics.reason_of(status))
        await super().push(status)

    async def smtp_EHLO(self, hostname: str) -> None:
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    async def smtp_HELO(self, hostname: str) -> None:
        self._in_ehlo = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._in_ehlo = False

    async def smtp_DATA(self, arg: str) -> None:
        self._reset_timeout(self._context.config.limits.data_timeout)
        try:
            await super().smtp_DATA(arg)
        finally:
            self._reset_timeout()

    def _create_session(self) -> Session:
        session = RelentadSession(self.loop)
        session.listener = self._connections.name
        return session

    def _timeout_cb(self) -> None:
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
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
