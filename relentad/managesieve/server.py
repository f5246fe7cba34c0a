"""The ManageSieve listener (RFC 5804, port 4190, STARTTLS): one :class:`Session` per connection.

Invariants: a connection counts against ``[managesieve] connections_per_ip`` and ``max_connections`` from accept to
close (over a limit: BYE at once); every open session is registered so SIGTERM can say BYE to each; a session's
crash is logged and never takes the listener down (:class:`relentad.listener.Listener`).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from ..auth.authenticator import Authenticator
from ..config import Config
from ..imap.connection import Connection
from ..listener import Listener
from ..store.db import Store
from .commands import HANDLERS
from .parser import response
from .session import Services, Session

STREAM_LIMIT = 1 << 20


class ManageSieveServer(Listener[Session]):
    def __init__(
        self,
        store: Store,
        authenticator: Authenticator,
        get_config: Callable[[], Config],
        get_tls: Callable[[], ssl.SSLContext | None],
    ) -> None:
        super().__init__("managesieve", STREAM_LIMIT, get_tls)
        self.services = Services(store, authenticator, get_config, get_tls)

    def limits(self) -> tuple[int, int]:
        limits = self.services.get_config().managesieve
        return limits.connections_per_ip, limits.max_connections

    def refusal(self, text: str) -> bytes:
        return response("BYE", text, "TRYLATER")

    def session(self, connection: Connection) -> Session:
        return Session(self.services, connection, HANDLERS)
