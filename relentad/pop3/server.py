"""The POP3 listeners: 110 (STLS) and 995 (implicit TLS), one :class:`Session` per connection.

Invariants: a connection counts against ``[pop3] connections_per_ip`` and ``max_connections`` from accept to close,
its TLS handshake on 995 included (:class:`relentad.tls.ImplicitTLS`); over a limit, 110 answers ``-ERR
[SYS/TEMP]`` and closes, 995 closes without a word (the client expects a handshake); every open session is
registered so SIGTERM can close each without deleting anything; a session's crash is logged and never takes the
listener down.
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
from ..imap.connection import Connection, Slots
from ..store.db import Store
from ..store.imapview import ReaderPool
from .commands import HANDLERS
from .parser import status
from .session import Services, Session

log = logging.getLogger(__name__)

STREAM_LIMIT = 1 << 16


class Pop3Server:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        authenticator: Authenticator,
        get_config: Callable[[], Config],
        get_tls: Callable[[], ssl.SSLContext | None],
    ) -> None:
        self.services = Services(store, bus, ReaderPool(store.path, size=2), authenticator, get_config, get_tls)
        self.sessions: set[Session] = set()
        self.slots = Slots("pop3")

    async def listen(self, host: str | None, port: int, *, implicit_tls: bool) -> asyncio.Server:
        if implicit_tls and self.services.get_tls() is None:
            raise ValueError("implicit TLS needs [tls] cert and key")
        loop = asyncio.get_running_loop()

        def plain() -> asyncio.StreamReaderProtocol:
            reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
            return asyncio.StreamReaderProtocol(reader, self._handle, loop=loop)

        def implicit() -> tls.ImplicitTLS:
            return tls.ImplicitTLS(
                "pop3", self.services.get_tls, lambda ip: self.admit(ip) is None, self.release, self.serve, STREAM_LIMIT
            )

        factory = implicit if implicit_tls else plain
        return await loop.create_server(factory, host, port, reuse_address=True, start_serving=True)

    def admit(self, ip: str) -> str | None:
        limits = self.services.get_config().pop3
        return self.slots.admit(ip, limits.connections_per_ip, limits.max_connections)

    def release(self, ip: str) -> None:
        self.slots.release(ip)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Port 110: over a connection limit, -ERR and close; else the session."""
        ip = tls.peer_ip(writer.transport)
        refusal = self.admit(ip)
        if refusal is not None:
            connection = Connection(reader, writer)
            connection.write(status(False, refusal, "SYS/TEMP"))
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
            log.exception("pop3 session from %s ended with an error", ip)
        finally:
            self.sessions.discard(session)
            self.release(ip)
            await connection.close()

    async def close_all(self, grace: float) -> None:
        """SIGTERM: close idle sessions at once (nothing deleted); one in the middle of a command (a QUIT
        committing, a big RETR) gets up to ``grace`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        pending = set(self.sessions)
        while pending:
            ready = pending if loop.time() >= deadline else {s for s in pending if not s.busy}
            await asyncio.gather(*(session.shutdown() for session in ready), return_exceptions=True)
            pending = {session for session in pending - ready if session in self.sessions}
            if pending:
                await asyncio.sleep(0.05)

    def close(self) -> None:
        self.services.readers.close()
