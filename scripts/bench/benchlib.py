"""What the benchmarks share: a null SMTP server (accepts and discards) in its own process, the baseline both
the inbound and the submission benchmarks measure against."""

from __future__ import annotations

import subprocess
import sys
import textwrap

NULL_SERVER = textwrap.dedent(
    """
    import asyncio, sys
    from aiosmtpd.smtp import SMTP

    class Null:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    async def main(port, hostname):
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Null(), hostname=hostname, enable_SMTPUTF8=True), "127.0.0.1", port)
        await server.serve_forever()

    if sys.argv[3] == "uvloop":
        import uvloop
        uvloop.run(main(int(sys.argv[1]), sys.argv[2]))
    else:
        asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
    """
)


def start_null_smtp(port: int, hostname: str = "null.test", event_loop: str = "asyncio") -> subprocess.Popen[bytes]:
    """aiosmtpd with a handler that accepts every message and keeps nothing, on 127.0.0.1:``port``; on asyncio's
    event loop (stock aiosmtpd, the baseline the issues name) unless ``event_loop`` is "uvloop"."""
    return subprocess.Popen([sys.executable, "-c", NULL_SERVER, str(port), hostname, event_loop])
