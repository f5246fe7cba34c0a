"""The IMAP listeners: 143 (STARTTLS) and 993 (implicit TLS), one :class:`Session` per connection.

This module only accepts connections, wraps them in a :class:`Connection` and runs sessions; everything a
command does is in ``session.py`` and ``commands/``. Invariants: every open session is registered so SIGTERM
can say BYE to each (:meth:`ImapServer.close_all`); a session's crash is logged and never takes the listener
down; sessions read the configuration and TLS context current at each use (SIGHUP applies to new commands).
"""

from __future__ import annotations

import asyncio
import collections
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
from .connection import Connection
from .session import Services, Session
from .watch import ExternalChanges

log = logging.getLogger(__name__)


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
        self.per_ip: collections.Counter[str] = collections.Counter()

    async def listen(self, host: str | None, port: int, *, implicit_tls: bool) -> asyncio.Server:
        """Bind one listener. For implicit TLS (993) the listener gets its own context whose SNI callback hands
        each handshake the daemon's current context, so a certificate reloaded on SIGHUP serves new connections."""
        context = None
        if implicit_tls:
            context = tls.server_context(self.services.get_config())
            if context is None:
                raise ValueError("implicit TLS needs [tls] cert and key")
            context.sni_callback = self._current_tls
        return await asyncio.start_server(
            self._handle, host, port, ssl=context, reuse_address=True, start_serving=True, limit=1 << 20
        )

    def _current_tls(self, connection: ssl.SSLObject, server_name: str | None, initial: ssl.SSLContext) -> None:
        current = self.services.get_tls()
        if current is not None and current is not initial:
            connection.context = current

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(reader, writer)
        ip = connection.peer_ip()
        if self.per_ip[ip] >= self.services.get_config().imap.connections_per_ip:
            log.info("imap connection from %s refused: too many connections", ip)
            connection.write(b"* BYE too many connections from your address\r\n")
            await connection.close()
            return
        self.per_ip[ip] += 1
        session = Session(self.services, connection, HANDLERS)
        self.sessions.add(session)
        try:
            await session.run()
        except Exception:
            log.exception("imap session from %s ended with an error", session.peer)
        finally:
            self.sessions.discard(session)
            self.per_ip[ip] -= 1
            if self.per_ip[ip] <= 0:
                del self.per_ip[ip]

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
