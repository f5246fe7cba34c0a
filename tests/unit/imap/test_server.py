"""The IMAP listener in process, for what needs a config the daemon refuses: a client that stops reading in the
middle of a FETCH is dropped after ``autologout`` (30 minutes in a real config, half a second here), as POP3's is
(tests/unit/pop3/test_server.py): the session's flush is bounded like its reads."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

from relentad import config
from relentad.auth.authenticator import Authenticator
from relentad.events import Bus
from relentad.imap.server import ImapServer
from relentad.store.db import Store
from tests.unit.pop3.test_server import ALICE, PASSWORD, provision


async def test_a_client_that_stops_reading_a_fetch_is_dropped_after_autologout(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    provision(path)
    base = config.from_dict({})
    settings = dataclasses.replace(
        base,
        imap=dataclasses.replace(base.imap, autologout=0.5),
        auth=dataclasses.replace(base.auth, plaintext_loopback=True),
    )
    store = Store(path)
    store.start(asyncio.get_running_loop())
    server = ImapServer(store, Bus(), Authenticator(store, lambda: settings.auth), lambda: settings, lambda: None)
    listener = await server.listen("127.0.0.1", 0, implicit_tls=False)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, listener.sockets[0].getsockname())
        reader, writer = await asyncio.open_connection(sock=sock)
        assert (await reader.readline()).startswith(b"* OK")
        writer.write(f'a LOGIN {ALICE} "{PASSWORD}"\r\nb SELECT INBOX\r\n'.encode())
        while not (line := await reader.readline()).startswith(b"b "):
            assert line
        assert line.startswith(b"b OK")
        writer.write(b"c FETCH 1 BODY[]\r\n")  # and then read nothing more
        async with asyncio.timeout(30):  # the old code waited for the client forever
            while server.sessions:
                await asyncio.sleep(0.1)
        writer.close()
    finally:
        sock.close()
        listener.close()
        server.close()
        store.close()
