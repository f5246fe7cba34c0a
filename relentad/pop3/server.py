"""The POP3 listeners: 110 (STLS) and 995 (implicit TLS), one :class:`Session` per connection.

Invariants: a connection counts against ``[pop3] connections_per_ip`` and ``max_connections`` from accept to close,
its TLS handshake on 995 included (:class:`relentad.tls.ImplicitTLS`); over a limit, 110 answers ``-ERR
[SYS/TEMP]`` and closes, 995 closes without a word (the client expects a handshake); every open session is
registered so SIGTERM can close each without deleting anything; a session's crash is logged and never takes the
listener down (:class:`relentad.listener.Listener`).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from ..auth.authenticator import Authenticator
from ..config import Config
from ..events import Bus
from ..imap.connection import Connection
from ..listener import Listener
from ..store.db import Store
from ..store.imapview import ReaderPool
from .commands import HANDLERS
from .parser import status
from .session import Services, Session

STREAM_LIMIT = 1 << 16


class Pop3Server(Listener[Session]):
    def __init__(
        self,
        store: Store,
        bus: Bus,
        authenticator: Authenticator,
        get_config: Callable[[], Config],
        get_tls: Callable[[], ssl.SSLContext | None],
    ) -> None:
        super().__init__("pop3", STREAM_LIMIT, get_tls)
        self.services = Services(store, bus, ReaderPool(store.path, size=2), authenticator, get_config, get_tls)

    def limits(self) -> tuple[int, int]:
        limits = self.services.get_config().pop3
        return limits.connections_per_ip, limits.max_connections

    def refusal(self, text: str) -> bytes:
        return status(False, text, "SYS/TEMP")

    def session(self, connection: Connection) -> Session:
        return Session(self.services, connection, HANDLERS)

    def close(self) -> None:
        self.services.readers.close()
