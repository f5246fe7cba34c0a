"""The POP3 listener in process, for what needs a config the daemon refuses: a client that stops reading in the
middle of a RETR is dropped after ``idle_timeout`` (10 minutes at least in a real config, half a second here)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

from relentad import config
from relentad.auth import passwords
from relentad.auth.authenticator import Authenticator
from relentad.events import Bus
from relentad.message import parse
from relentad.pop3.server import Pop3Server
from relentad.store import accounts, db, mailboxes, messages
from relentad.store.db import Store
from tests.support.store import database_with

ALICE = "alice@example.test"
PASSWORD = "a pass phrase"
BIG = 16_000_000  # more than loopback's socket buffers take


def provision(path: Path) -> None:
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


async def test_a_client_that_stops_reading_a_retr_is_dropped_and_nothing_deleted(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    provision(path)
    base = config.from_dict({})
    settings = dataclasses.replace(
        base,
        pop3=dataclasses.replace(base.pop3, idle_timeout=0.5),
        auth=dataclasses.replace(base.auth, plaintext_loopback=True),
    )
    store = Store(path)
    store.start(asyncio.get_running_loop())
    server = Pop3Server(store, Bus(), Authenticator(store, lambda: settings.auth), lambda: settings, lambda: None)
    listener = await server.listen("127.0.0.1", 0, implicit_tls=False)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, listener.sockets[0].getsockname())
        reader, writer = await asyncio.open_connection(sock=sock)
        assert (await reader.readline()).startswith(b"+OK")
        writer.write(f"USER {ALICE}\r\nPASS {PASSWORD}\r\n".encode())
        assert (await reader.readline()).startswith(b"+OK")
        assert (await reader.readline()).startswith(b"+OK maildrop has 1 messages")
        writer.write(b"RETR 1\r\n")  # and then read nothing more
        async with asyncio.timeout(30):  # the old code waited for the client forever
            while server.sessions:
                await asyncio.sleep(0.1)
        writer.close()
        flags = store.read(lambda conn: [tuple(row) for row in conn.execute("SELECT flags FROM messages")])
        assert flags == [(0,)]  # no UPDATE state: not marked \\Seen
    finally:
        sock.close()
        listener.close()
        server.close()
        store.close()
