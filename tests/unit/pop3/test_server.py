"""The POP3 listener in process, for what needs a config the daemon refuses: a client that stops reading in the
middle of a RETR is dropped after ``idle_timeout`` (10 minutes at least in a real config, half a second here)."""

from __future__ import annotations

from pathlib import Path

from relentad.pop3.server import Pop3Server
from tests.support.slowreader import ALICE, PASSWORD, stalled_client


async def test_a_client_that_stops_reading_a_retr_is_dropped_and_nothing_deleted(tmp_path: Path) -> None:
    async with stalled_client(tmp_path, "pop3", Pop3Server, idle_timeout=0.5) as client:
        reader, writer = client.reader, client.writer
        assert (await reader.readline()).startswith(b"+OK")
        writer.write(f"USER {ALICE}\r\nPASS {PASSWORD}\r\n".encode())
        assert (await reader.readline()).startswith(b"+OK")
        assert (await reader.readline()).startswith(b"+OK maildrop has 1 messages")
        writer.write(b"RETR 1\r\n")  # and then read nothing more
        await client.ends()
        flags = client.store.read(lambda conn: [tuple(row) for row in conn.execute("SELECT flags FROM messages")])
        assert flags == [(0,)]  # no UPDATE state: not marked \\Seen
