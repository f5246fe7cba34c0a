"""The IMAP listeners: 143 (STARTTLS) and 993 (implicit TLS), one :class:`Session` per connection.

This module only accepts connections, wraps them in a :class:`Connection` and runs sessions; everything a
command does is in ``session.py`` and ``commands/``. Invariants: a connection counts against the connection limits
(``[imap] connections_per_ip`` and ``max_connections``) from accept to close, its TLS handshake on 993 included (so
clients that never finish one cannot pile up); every open session is registered so SIGTERM can say BYE to each
(:meth:`ImapServer.close_all`); a session's crash is logged and never takes the listener down; sessions read the
configuration and TLS context current at each use (SIGHUP applies to new commands).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

from .. import tls
from ..auth.authenticator import Authenticator
from ..config import Config
from ..events import Bus
from ..store.db import Store
from ..store.imapview import ReaderPool
from .commands import HANDLERS
from .connection import Connection, Slots
from .session import Services, Session
from .watch import ExternalChanges

log = logging.getLogger(__name__)


STREAM_LIMIT = 1 << 20
"""The stream reader's buffer size before it stops reading from the socket."""


class ImapServer:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        authenticator: Authenticator,
        get_config: Callable[[], Config],
        get_tls: Callable[[], ssl.SSLContext | None],
    ) -> None:
        self.services = Services(
            store=store,
            bus=bus,
            readers=ReaderPool(store.path),
            authenticator=authenticator,
            get_config=get_config,
            get_tls=get_tls,
            watcher=ExternalChanges(store.path, bus),
        )
        self.sessions: set[Session] = set()
        self.slots = Slots("imap")

    async def listen(self, host: str | None, port: int, *, implicit_tls: bool) -> asyncio.Server:
        """Bind one listener. On 993 every connection handshakes with the daemon's current context (a certificate
        reloaded on SIGHUP serves new connections)."""
        if implicit_tls and self.services.get_tls() is None:
            raise ValueError("implicit TLS needs [tls] cert and key")
        loop = asyncio.get_running_loop()

        def plain() -> asyncio.StreamReaderProtocol:
            reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
            return asyncio.StreamReaderProtocol(reader, self._handle, loop=loop)

        def implicit() -> tls.ImplicitTLS:  # counted at accept, the handshake within the limits
            return tls.ImplicitTLS(
                "imap", self.services.get_tls, lambda ip: self.admit(ip) is None, self.release, self.serve, STREAM_LIMIT
            )

        factory = implicit if implicit_tls else plain
        return await loop.create_server(factory, host, port, reuse_address=True, start_serving=True)

    def admit(self, ip: str) -> str | None:
        """Count a new connection from ``ip`` (until :meth:`release`), or the BYE text of the limit it is over."""
        limits = self.services.get_config().imap
        return self.slots.admit(ip, limits.connections_per_ip, limits.max_connections)

    def release(self, ip: str) -> None:
        self.slots.release(ip)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Port 143: over a connection limit, BYE and close; else the session."""
        ip = tls.peer_ip(writer.transport)
        refusal = self.admit(ip)
        if refusal is not None:
            connection = Connection(reader, writer)
            connection.write(b"* BYE %s\r\n" % refusal.encode())
            await connection.close()
            return
        await self.serve(reader, writer, ip)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str) -> None:
        """Run the session of a connection admitted as ``ip``; its slot is given back when it ends."""
        connection = Connection(reader, writer)
        session = Session(self.services, connection, HANDLERS)
        self.sessions.add(session)
        try:
            await session.run()
        except Exception:
            log.exception("imap session from %s ended with an error", session.peer)
        finally:
            self.sessions.discard(session)
            self.release(ip)

    async def close_all(self, grace: float) -> None:
        """SIGTERM: BYE at once to sessions between commands or in IDLE; sessions in the middle of a command
        (an APPEND being written, a big FETCH) get up to ``grace`` seconds to finish it first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        pending = set(self.sessions)
        while pending:
            ready = {session for session in pending if not session.busy}
            if loop.time() >= deadline:
                ready = pending
            await asyncio.gather(*(session.shutdown() for session in ready), return_exceptions=True)
            pending = {session for session in pending - ready if session in self.sessions}
            if pending:
                await asyncio.sleep(0.05)  # polling: a shutdown happens once, an event per command is not worth it

    def close(self) -> None:
        self.services.readers.close()
        if self.services.watcher is not None:
            self.services.watcher.close()
