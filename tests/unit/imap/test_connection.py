"""The connection byte stream (IMAP, POP3, ManageSieve): inflation after COMPRESS=DEFLATE (RFC 4978) is bounded per
read; closing drops a client that stopped reading."""

from __future__ import annotations

import asyncio
import socket
import zlib
from typing import Any

import pytest

from relentad.imap import connection
from relentad.imap.connection import INFLATE_STEP, Connection, LineTooLong


class _Writer:
    """Enough of a StreamWriter for start_compress (nothing is written in these tests)."""

    def write(self, data: bytes) -> None:
        raise AssertionError("nothing to send")

    def get_extra_info(self, name: str) -> Any:
        return None


def deflated(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush(zlib.Z_SYNC_FLUSH)


async def test_a_deflate_bomb_meets_the_line_limit_before_it_is_inflated() -> None:
    """64 MB of one line, deflated into about 64 KB: one read used to inflate all of it into memory before the
    line limit was checked."""
    reader = asyncio.StreamReader()
    conn = Connection(reader, _Writer())  # type: ignore[arg-type]
    conn.start_compress()
    reader.feed_data(deflated(b"a" * (64 << 20)))
    with pytest.raises(LineTooLong):
        await conn.readline(8192)
    assert len(conn._buffer) <= 8192 + INFLATE_STEP


async def test_lines_and_literals_come_through_whole_in_bounded_steps() -> None:
    reader = asyncio.StreamReader()
    conn = Connection(reader, _Writer())  # type: ignore[arg-type]
    conn.start_compress()
    literal = bytes(range(256)) * 4096  # 1 MiB, four inflate steps
    reader.feed_data(deflated(b"a APPEND INBOX {%d}\r\n" % len(literal) + literal + b"\r\nb NOOP\r\n"))
    assert await conn.readline(8192) == b"a APPEND INBOX {1048576}\r\n"
    assert await conn.readexactly(len(literal)) == literal
    assert await conn.readline(8192) == b"\r\n"
    assert await conn.readline(8192) == b"b NOOP\r\n"


async def test_closing_a_connection_whose_client_stopped_reading_drops_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The data left over for a client that reads nothing held the socket for ever after close (a leaked descriptor
    per such client); now it is dropped after CLOSE_TIMEOUT."""
    monkeypatch.setattr(connection, "CLOSE_TIMEOUT", 0.2)
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))

    server = await asyncio.start_server(keep, "127.0.0.1", 0)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(server.sockets[0].getsockname())  # and never reads
    try:
        reader, writer = await accepted.get()
        conn = Connection(reader, writer)
        conn.write(b"x" * 8_000_000)  # more than the socket buffers take
        await conn.close()
        await asyncio.sleep(0.05)  # the transport's connection_lost runs on the next turns of the loop
        assert reader.at_eof(), "the socket is still open, waiting for the client to read"
    finally:
        client.close()
        server.close()
