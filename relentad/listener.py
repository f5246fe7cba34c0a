"""What the IMAP, POP3 and ManageSieve listeners share: connection slots, refusal, TLS wiring, the session set.

Invariants: a connection counts against its protocol's ``connections_per_ip`` and ``max_connections`` from accept
to close, an implicit-TLS handshake included (:class:`relentad.tls.ImplicitTLS`, so clients that never finish one
cannot pile up); over a limit a plaintext connection gets the protocol's refusal line (:meth:`Listener.refusal`)
and an implicit-TLS one is closed without a word (the client expects a handshake); every open session is
registered so SIGTERM can end each (:meth:`Listener.close_all`); a session's crash is logged and never takes the
listener down. A subclass says only what differs: its limits, its refusal line and how a session is made.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from . import tls
from .imap.connection import Connection

log = logging.getLogger(__name__)


class Slots:
    """A listener's open connections, per client address and in all, against its two limits."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.per_ip: collections.Counter[str] = collections.Counter()
        self.open = 0

    def admit(self, ip: str, per_ip: int, total: int) -> str | None:
        """Count a new connection from ``ip`` (until :meth:`release`), or the reason it is over a limit."""
        refusal = None
        if self.open >= total:
            refusal = "server busy: too many connections, try again later"
        elif self.per_ip[ip] >= per_ip:
            refusal = "too many connections from your address"
        if refusal is not None:
            log.info("%s connection from %s refused: %s", self.name, ip, refusal)
            return refusal
        self.per_ip[ip] += 1
        self.open += 1
        return None

    def release(self, ip: str) -> None:
        self.open -= 1
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]


class ServedSession(Protocol):
    @property
    def busy(self) -> bool:
        """True while a command runs: :meth:`Listener.close_all` lets it finish first."""

    async def run(self) -> None: ...

    async def shutdown(self) -> None: ...


S = TypeVar("S", bound=ServedSession)


class Listener(Generic[S]):
    """One protocol's listeners (its plaintext and implicit-TLS ports share the slots and the session set)."""

    def __init__(self, name: str, stream_limit: int, get_tls: Callable[[], ssl.SSLContext | None]) -> None:
        self.name = name
        """The protocol, in the slots' and the crash log's lines."""
        self.stream_limit = stream_limit
        """The stream reader's buffer size before it stops reading from the socket."""
        self.get_tls = get_tls
        self.sessions: set[S] = set()
        self.slots = Slots(name)

    def limits(self) -> tuple[int, int]:
        """(connections per IP, connections in all), read at each accept (SIGHUP applies to new connections)."""
        raise NotImplementedError

    def refusal(self, text: str) -> bytes:
        """The line a plaintext connection over a limit gets before it is closed."""
        raise NotImplementedError

    def session(self, connection: Connection) -> S:
        raise NotImplementedError

    async def listen(self, host: str | None, port: int, *, implicit_tls: bool = False) -> asyncio.Server:
        """Bind one listener. With implicit TLS every connection handshakes with the daemon's current context (a
        certificate reloaded on SIGHUP or got by ACME serves new connections; while there is none, a connection
        is closed at accept)."""
        loop = asyncio.get_running_loop()

        def plain() -> asyncio.StreamReaderProtocol:
            reader = asyncio.StreamReader(limit=self.stream_limit, loop=loop)
            return asyncio.StreamReaderProtocol(reader, self._handle, loop=loop)

        def implicit() -> tls.ImplicitTLS:  # counted at accept, the handshake within the limits
            return tls.ImplicitTLS(
                self.name, self.get_tls, lambda ip: self.admit(ip) is None, self.release, self.serve, self.stream_limit
            )

        factory = implicit if implicit_tls else plain
        return await loop.create_server(factory, host, port, reuse_address=True, start_serving=True)

    def admit(self, ip: str) -> str | None:
        """Count a new connection from ``ip`` (until :meth:`release`), or the text of the limit it is over."""
        per_ip, total = self.limits()
        return self.slots.admit(ip, per_ip, total)

    def release(self, ip: str) -> None:
        self.slots.release(ip)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A plaintext port: over a connection limit, the refusal line and close; else the session."""
        ip = tls.peer_ip(writer.transport)
        refusal = self.admit(ip)
        if refusal is not None:
            connection = Connection(reader, writer)
            connection.write(self.refusal(refusal))
            await connection.close()
            return
        await self.serve(reader, writer, ip)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str) -> None:
        """Run the session of a connection admitted as ``ip``; its slot is given back when it ends."""
        connection = Connection(reader, writer)
        session = self.session(connection)
        self.sessions.add(session)
        try:
            await session.run()
        except Exception:
            log.exception("%s session from %s ended with an error", self.name, ip)
        finally:
            self.sessions.discard(session)
            self.release(ip)
            await connection.close()

    async def close_all(self, grace: float) -> None:
        """SIGTERM: end idle sessions at once; one in the middle of a command gets up to ``grace`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        pending = set(self.sessions)
        while pending:
            ready = pending if loop.time() >= deadline else {s for s in pending if not s.busy}
            await asyncio.gather(*(session.shutdown() for session in ready), return_exceptions=True)
            pending = {session for session in pending - ready if session in self.sessions}
            if pending:
                await asyncio.sleep(0.05)  # polling: a shutdown happens once, an event per command is not worth it
