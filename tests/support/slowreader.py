"""A listener in process with a client that stops reading: for what needs a config the daemon refuses (timeouts
of half a second), shared by the IMAP and POP3 tests of the bounded flush (a session whose client does not take
its output is dropped after the protocol's idle limit, never held for ever)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from relentad import config
from relentad.auth import passwords
from relentad.auth.authenticator import Authenticator
from relentad.events import Bus
from relentad.message import parse
from relentad.store import accounts, db, mailboxes, messages
from relentad.store.db import Store
from tests.support.store import database_with

ALICE = "alice@example.test"
PASSWORD = "a pass phrase"
BIG = 16_000_000  # more than loopback's socket buffers take


class Server(Protocol):
    sessions: Any

    async def listen(self, host: str | None, port: int, *, implicit_tls: bool) -> asyncio.Server: ...

    def close(self) -> None: ...


def provision(path: Path) -> None:
    """A store with ALICE (PASSWORD) and one BIG message in her INBOX."""
    conn = database_with(path, ALICE)
    account = accounts.get_account(conn, ALICE).id
    inbox = mailboxes.find(conn, account, "INBOX")
    assert inbox is not None
    raw = b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * (BIG // 80)
    with db.transaction(conn):
        conn.execute("UPDATE accounts SET password_hash = ? WHERE id = ?", (passwords.hash_password(PASSWORD), account))
        blob = messages.store_blob(conn, raw, parse(raw).to_json())
        messages.append(conn, inbox, blob, prefix=b"", size=len(raw), internaldate=1e9)
    conn.close()


@dataclasses.dataclass
class Stalled:
    """The running listener, its store and the client's streams (its socket takes 4 KiB at a time)."""

    server: Server
    store: Store
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def ends(self) -> None:
        """Wait for every session to end (the old code waited for the client for ever)."""
        async with asyncio.timeout(30):
            while self.server.sessions:
                await asyncio.sleep(0.1)


@asynccontextmanager
async def stalled_client(
    tmp_path: Path, section: str, make: Callable[..., Server], **limits: float
) -> AsyncIterator[Stalled]:
    """Provision a store, start the listener class ``make`` (IMAP's, POP3's: store, bus, authenticator, config,
    TLS) with ``[section]`` ``limits`` and plaintext logins on loopback, and connect a client with a small receive
    buffer."""
    path = tmp_path / "t.db"
    provision(path)
    base = config.from_dict({})
    settings = dataclasses.replace(
        base,
        **{section: dataclasses.replace(getattr(base, section), **limits)},
        auth=dataclasses.replace(base.auth, plaintext_loopback=True),
    )
    store = Store(path)
    store.start(asyncio.get_running_loop())
    server = make(store, Bus(), Authenticator(store, lambda: settings.auth), lambda: settings, lambda: None)
    listener = await server.listen("127.0.0.1", 0, implicit_tls=False)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, listener.sockets[0].getsockname())
        reader, writer = await asyncio.open_connection(sock=sock)
        yield Stalled(server, store, reader, writer)
        writer.close()
    finally:
        sock.close()
        listener.close()
        server.close()
        store.close()
