"""The ManageSieve listener (RFC 5804, port 4190, STARTTLS): one :class:`Session` per connection.

Invariants: a connection counts against ``[managesieve] connections_per_ip`` and ``max_connections`` from accept to
close (over a limit: BYE at once); every open session is registered so SIGTERM can say BYE to each; a session's
crash is logged and never takes the listener down.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

from .. import tls
from ..auth.authenticator import Authenticator
from ..config import Config
from ..imap.connection import Connection, Slots
from ..store.db import Store
from .commands import HANDLERS
from .parser import response
from .session import Services, Session

log = logging.getLogger(__name__)

STREAM_LIMIT = 1 << 20


class ManageSieveServer:
    def __init__(
        self,
        store: Store,
        authenticator: Authenticator,
        get_config: Callable[[], Config],
        get_tls: Callable[[], ssl.SSLContext | None],
    ) -> None:
        self.services = Services(store, authenticator, get_config, get_tls)
        self.sessions: set[Session] = set()
        self.slots = Slots("managesieve")

    async def listen(self, host: str | None, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()

        def factory() -> asyncio.StreamReaderProtocol:
            reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
            return asyncio.StreamReaderProtocol(reader, self._handle, loop=loop)

        return await loop.create_server(factory, host, port, reuse_address=True, start_serving=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip = tls.peer_ip(writer.transport)
        connection = Connection(reader, writer)
        limits = self.services.get_config().managesieve
        refusal = self.slots.admit(ip, limits.connections_per_ip, limits.max_connections)
        if refusal is not None:
            connection.write(response("BYE", refusal, "TRYLATER"))
            await connection.close()
            return
        session = Session(self.services, connection, HANDLERS)
        self.sessions.add(session)
        try:
            await session.run()
        except Exception:
            log.exception("managesieve session from %s ended with an error", ip)
        finally:
            self.sessions.discard(session)
            self.slots.release(ip)
            await connection.close()

    async def close_all(self, grace: float) -> None:
        """SIGTERM: BYE to idle sessions at once; one in the middle of a command gets up to ``grace`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        pending = set(self.sessions)
        while pending:
            ready = pending if loop.time() >= deadline else {s for s in pending if not s.busy}
            await asyncio.gather(*(session.shutdown() for session in ready), return_exceptions=True)
            pending = {session for session in pending - ready if session in self.sessions}
            if pending:
                await asyncio.sleep(0.05)
