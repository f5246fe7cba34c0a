"""Concurrent IMAP and SMTP sessions against a running test daemon, for the load test and scripts/bench/load.py.

Every session is a lean raw-socket client on its own asyncio task. IMAP sessions log in (plaintext on loopback),
SELECT INBOX and cycle NOOP / UID FETCH 1:50 (FLAGS) / STATUS until the time is up; SMTP sessions send small messages
one after the other on one connection. Sessions spread over several loopback source addresses (127.0.1.N), so the
daemon's per-IP limits (50 by default) hold while hundreds of sessions are open.

Invariant: bounded — a fixed number of sessions, each stopping at the deadline; every socket is to 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PER_SOURCE = 40  # sessions per loopback source address, under the default per-IP limits


@dataclass
class LoadResult:
    imap_sessions: int = 0
    imap_commands: int = 0
    smtp_sessions: int = 0
    smtp_acked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    peak_imap_open: int = 0
    rss_kib: int = 0
    peak_rss_kib: int = 0


def rss_kib(pid: int) -> tuple[int, int]:
    """(current, peak) resident memory of ``pid`` in KiB, from /proc."""
    values = {"VmRSS": 0, "VmHWM": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in values:
            values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def source_address(index: int) -> str:
    return f"127.0.1.{index // PER_SOURCE + 1}"


async def _open(host: str, port: int, index: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port, local_addr=(source_address(index), 0), limit=1 << 22)


async def _imap_command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tag: str, text: str) -> bytes:
    writer.write(f"{tag} {text}\r\n".encode())
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError(f"closed during {text!r}")
        if line.startswith(tag.encode() + b" "):
            if not line.startswith(tag.encode() + b" OK"):
                raise RuntimeError(f"{text!r}: {line!r}")
            return line


class Window:
    """The traffic window: opens once every IMAP session is open (or has failed), closes at ``deadline``."""

    def __init__(self, sessions: int) -> None:
        self.waiting = sessions
        self.all_arrived = asyncio.Event()
        self.opened = asyncio.Event()
        self.deadline = float("inf")
        if sessions == 0:
            self.all_arrived.set()

    def arrive(self) -> None:
        """One session is open or gave up; each calls this exactly once."""
        self.waiting -= 1
        if self.waiting <= 0:
            self.all_arrived.set()


async def imap_session(
    host: str, port: int, index: int, user: str, password: str, window: Window, result: LoadResult
) -> None:
    try:
        reader, writer = await _open(host, port, index)
    except BaseException:
        window.arrive()
        raise
    try:
        try:
            greeting = await reader.readline()
            if not greeting.startswith(b"* OK"):
                raise RuntimeError(f"greeting {greeting!r}")
            await _imap_command(reader, writer, "a", f'LOGIN "{user}" "{password}"')
            await _imap_command(reader, writer, "b", "SELECT INBOX")
            result.imap_sessions += 1
        finally:
            window.arrive()
        await window.opened.wait()  # every session is open at the same time before the traffic starts
        count = 0
        cycle = ("NOOP", "UID FETCH 1:50 (FLAGS)", "STATUS INBOX (MESSAGES UIDNEXT)")
        while time.monotonic() < window.deadline:
            await _imap_command(reader, writer, f"c{count}", cycle[count % len(cycle)])
            count += 1
            result.imap_commands += 1
            await asyncio.sleep(0.05)
        await _imap_command(reader, writer, "z", "LOGOUT")
    finally:
        writer.close()


async def _smtp_reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return line


async def smtp_session(
    host: str, port: int, index: int, recipients: list[str], window: Window, result: LoadResult
) -> None:
    reader, writer = await _open(host, port, index)
    try:
        if not (await _smtp_reply(reader)).startswith(b"220"):
            raise RuntimeError("no greeting")
        writer.write(b"EHLO load.test\r\n")
        await _smtp_reply(reader)
        result.smtp_sessions += 1
        n = 0
        while time.monotonic() < window.deadline:
            tag = f"s{index}-{n}"
            rcpt = recipients[n % len(recipients)]
            writer.write(f"MAIL FROM:<load@elsewhere.test>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode())
            for expected in (b"250", b"250", b"354"):
                reply = await _smtp_reply(reader)
                if not reply.startswith(expected):
                    raise RuntimeError(f"{tag}: {reply!r}")
            writer.write(f"Subject: {tag}\r\n\r\n{tag}\r\n.\r\n".encode())
            reply = await _smtp_reply(reader)
            if not reply.startswith(b"250"):
                raise RuntimeError(f"{tag}: {reply!r}")
            result.smtp_acked.append(tag)
            n += 1
        writer.write(b"QUIT\r\n")
        await _smtp_reply(reader)
    finally:
        writer.close()


async def run(
    *,
    host: str,
    imap_port: int,
    smtp_port: int,
    users: list[str],
    password: str,
    imap_sessions: int,
    smtp_sessions: int,
    seconds: float,
    pid: int | None = None,
) -> LoadResult:
    """Open ``imap_sessions`` IMAP sessions, then run them with ``smtp_sessions`` senders for ``seconds``."""
    result = LoadResult()
    window = Window(imap_sessions)
    # One login per user first, as a mail client's first sync would: the daemon's credential cache then serves the
    # crowd (200 simultaneous first logins would measure argon2 — 0.4 s of CPU each — not the server).
    for i, user in enumerate(users):
        reader, writer = await _open(host, imap_port, i)
        await reader.readline()
        await _imap_command(reader, writer, "w", f'LOGIN "{user}" "{password}"')
        await _imap_command(reader, writer, "x", "LOGOUT")
        writer.close()

    async def guarded(work: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await work
        except Exception as exc:
            result.errors.append(f"{name}: {exc!r}")

    tasks = [
        asyncio.create_task(
            guarded(imap_session(host, imap_port, i, users[i % len(users)], password, window, result), "imap")
        )
        for i in range(imap_sessions)
    ]
    try:
        async with asyncio.timeout(120):
            await window.all_arrived.wait()
    except TimeoutError:
        result.errors.append(f"only {result.imap_sessions} of {imap_sessions} IMAP sessions opened in 120 s")
    window.deadline = time.monotonic() + seconds
    window.opened.set()
    result.peak_imap_open = result.imap_sessions
    tasks += [
        asyncio.create_task(guarded(smtp_session(host, smtp_port, i, users, window, result), "smtp"))
        for i in range(smtp_sessions)
    ]
    if pid is not None:
        await asyncio.sleep(seconds / 2)
        result.rss_kib, result.peak_rss_kib = rss_kib(pid)
    await asyncio.gather(*tasks)
    if pid is not None:
        result.peak_rss_kib = max(result.peak_rss_kib, rss_kib(pid)[1])
    return result
