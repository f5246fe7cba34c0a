"""The IMAP listeners: 143 (STARTTLS) and 993 (implicit TLS), one :class:`Session` per connection.

This module only accepts connections, wraps them in a :class:`Connection` and runs sessions; everything a
command does is in ``session.py`` and ``commands/``. Invariants: a connection counts against the connection limits
(``[imap] connections_per_ip`` and ``max_connections``) from accept to close, its TLS handshake on 993 included (so
clients that never finish one cannot pile up); every open session is registered so SIGTERM can say BYE to each
(:meth:`ImapServer.close_all`); a session's crash is logged and never takes the listener down; sessions read the
configuration and TLS context current at each use (SIGHUP applies to new commands).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from ..auth.authenticator import Authenticator
from ..config import Config
from ..events import Bus
from ..listener import Listener
from ..store.db import Store
from ..store.imapview import ReaderPool
from .commands import HANDLERS
from .connection import Connection
from .session import Services, Session
from .watch import ExternalChanges

STREAM_LIMIT = 1 << 20
"""The stream reader's buffer size before it stops reading from the socket."""


class ImapServer(Listener[Session]):
    def __init__(
        self,
        store: Store,
        bus: Bus,
        authenticator: Authenticator,
        get_config: Callable[[], Config],
        get_tls: Callable[[], ssl.SSLContext | None],
    ) -> None:
        super().__init__("imap", STREAM_LIMIT, get_tls)
        self.services = Services(
            store=store,
            bus=bus,
            readers=ReaderPool(store.path),
            authenticator=authenticator,
            get_config=get_config,
            get_tls=get_tls,
            watcher=ExternalChanges(store.path, bus),
        )

    def limits(self) -> tuple[int, int]:
        limits = self.services.get_config().imap
        return limits.connections_per_ip, limits.max_connections

    def refusal(self, text: str) -> bytes:
        return b"* BYE %s\r\n" % text.encode()

    def session(self, connection: Connection) -> Session:
        return Session(self.services, connection, HANDLERS)

    def close(self) -> None:
        self.services.readers.close()
        if self.services.watcher is not None:
            self.services.watcher.close()
