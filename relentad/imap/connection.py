"""One IMAP connection's byte stream: buffered line/literal reading, STARTTLS and COMPRESS=DEFLATE.

The session reads lines and literals through :class:`Connection` and never sees TLS or compression.
Invariants:
- A line longer than the limit raises :class:`LineTooLong` before more than ``limit`` octets are buffered.
- STARTTLS drops whatever plaintext the client sent after the command (RFC 9051 §6.2.1: no command injection).
- After COMPRESS (RFC 4978), input already buffered is inflated and everything written is deflated and
  flushed with Z_SYNC_FLUSH at each :meth:`drain`, so the client always sees complete responses.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib

from .. import tls


class LineTooLong(Exception):
    """The client sent a line over the limit without CRLF."""


CLOSE_TIMEOUT = 5.0
"""Seconds a closing connection may take to send what is left before it is dropped (:meth:`Connection.close`)."""
INFLATE_STEP = 256 * 1024
"""Inflated octets one fill of the buffer may add after COMPRESS (the rest waits in the inflater)."""


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._buffer = bytearray()
        self._inflate: zlib._Decompress | None = None
        self._deflate: zlib._Compress | None = None
        self._out = bytearray()
        self.closed = False

    @property
    def tls(self) -> bool:
        return self.writer.get_extra_info("ssl_object") is not None

    @property
    def compressed(self) -> bool:
        return self._deflate is not None

    def peer_ip(self) -> str:
        return tls.peer_ip(self.writer.transport)

    def tls_info(self) -> str:
        obj = self.writer.get_extra_info("ssl_object")
        if obj is None:
            return ""
        return f"{obj.version()} {obj.cipher()[0] if obj.cipher() else ''}".strip()

    async def _fill(self) -> None:
        """More input into the buffer: at most :data:`INFLATE_STEP` inflated octets at a time after COMPRESS, so
        that a deflate bomb (one 64 KB read inflates to about 64 MB) meets the line and literal limits first."""
        if self._inflate is not None and self._inflate.unconsumed_tail:
            self._buffer += self._inflate.decompress(self._inflate.unconsumed_tail, INFLATE_STEP)
            return
        chunk = await self.reader.read(65536)
        if not chunk:
            raise EOFError("client closed the connection")
        if self._inflate is not None:
            chunk = self._inflate.decompress(chunk, INFLATE_STEP)
        self._buffer += chunk

    async def readline(self, limit: int) -> bytes:
        """One line including its LF; LineTooLong past ``limit`` octets, EOFError at end of stream."""
        start = 0
        while True:
            index = self._buffer.find(b"\n", start)
            if index >= limit or (index < 0 and len(self._buffer) > limit):
                raise LineTooLong
            if index >= 0:
                line = bytes(self._buffer[: index + 1])
                del self._buffer[: index + 1]
                return line
            start = len(self._buffer)
            await self._fill()

    async def readexactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            await self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def discard(self, size: int) -> None:
        """Read and forget ``size`` octets (a refused non-synchronizing literal)."""
        while size > 0:
            if not self._buffer:
                await self._fill()
            take = min(size, len(self._buffer))
            del self._buffer[:take]
            size -= take

    def write(self, data: bytes) -> None:
        """Queue output; it goes out (one send for many responses) at the next :meth:`drain`."""
        if not self.closed:
            self._out += data

    def _send_pending(self) -> None:
        data = bytes(self._out)
        self._out.clear()
        if self._deflate is not None:
            data = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        if data:
            self.writer.write(data)

    async def drain(self, stall_limit: float | None = None) -> None:
        """Send what is queued. With ``stall_limit``: a client that has taken none of it for that many seconds is
        dropped (ConnectionError), so one that stopped reading frees its connection and the output it held. The
        timer is set only when the write buffer is above its low-water mark: writing pauses above the high mark and
        resumes at the low one, so below it the drain does not wait (the common case costs no timer)."""
        if self.closed:
            return
        self._send_pending()
        transport = self.writer.transport
        if stall_limit is None or transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[0]:
            await self.writer.drain()
            return
        try:
            async with asyncio.timeout(stall_limit):
                await self.writer.drain()
        except TimeoutError:
            transport.abort()
            raise ConnectionError(f"the client took nothing for {stall_limit:g} s") from None

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Handshake, dropping every plaintext octet received before it: ours and the stream reader's buffer both
        (a client writing more than one read's worth after STARTTLS left the rest there, run after the handshake).
        No await between the clear and ``start_tls`` handing the transport to TLS, so nothing lands in between."""
        self._send_pending()
        await self.writer.drain()
        self._buffer.clear()
        self.reader._buffer.clear()  # type: ignore[attr-defined]  # no public way to drop what it holds
        await self.writer.start_tls(context, ssl_handshake_timeout=tls.HANDSHAKE_TIMEOUT)

    def start_compress(self) -> None:
        self._send_pending()
        self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        pending = bytes(self._buffer)
        self._buffer = bytearray(self._inflate.decompress(pending, INFLATE_STEP)) if pending else bytearray()

    async def close(self) -> None:
        """Send what is left and close; a client that takes none of it for :data:`CLOSE_TIMEOUT` is dropped (a
        plain close would keep the socket until it read everything: for ever, for one that stopped reading)."""
        if self.closed:
            return
        self.closed = True
        try:
            self._send_pending()
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), CLOSE_TIMEOUT)
        except TimeoutError:
            self.writer.transport.abort()
        except (OSError, ssl.SSLError):
            pass
