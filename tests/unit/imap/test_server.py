"""The IMAP listener in process, for what needs a config the daemon refuses: a client that stops reading in the
middle of a FETCH is dropped after ``autologout`` (30 minutes in a real config, half a second here), as POP3's is
(tests/unit/pop3/test_server.py): the session's flush is bounded like its reads."""

from __future__ import annotations

from pathlib import Path

from relentad.imap.server import ImapServer
from tests.support.slowreader import ALICE, PASSWORD, stalled_client


async def test_a_client_that_stops_reading_a_fetch_is_dropped_after_autologout(tmp_path: Path) -> None:
    async with stalled_client(tmp_path, "imap", ImapServer, autologout=0.5) as client:
        reader, writer = client.reader, client.writer
        assert (await reader.readline()).startswith(b"* OK")
        writer.write(f'a LOGIN {ALICE} "{PASSWORD}"\r\nb SELECT INBOX\r\n'.encode())
        while not (line := await reader.readline()).startswith(b"b "):
            assert line
        assert line.startswith(b"b OK")
        writer.write(b"c FETCH 1 BODY[]\r\n")  # and then read nothing more
        await client.ends()
