"""``GET /account/export``: what ``relentad export`` writes (:mod:`relentad.lifecycle.transfer`) as one zip,
made while it is sent.

A worker thread reads the account in one read transaction (one consistent snapshot) on its own read-only
connection and writes the zip into a bounded queue of :data:`CHUNK`-octet pieces; the event loop sends them as
the client takes them (:attr:`httpserver.Response.stream`). So memory stays at a few chunks and one message
whatever the mailbox's size, the loop never compresses or reads blobs itself, and a client that stops reading
stops the thread (:data:`QUEUED` pieces later). At most :data:`MAX_RUNNING` exports run at once (more: 503).
Entries (zip64, deflated) sit under one folder, ``relentad-export-<address>/``, which ``relentad import`` reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import sqlite3
import threading
import time
import zipfile
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, cast

from .. import httpserver
from ..auth.authenticator import Login
from ..httpserver import Response
from ..lifecycle import transfer
from ..store import db

CHUNK = 256 * 1024
QUEUED = 4
MAX_RUNNING = 2
_lock = threading.Lock()
_running = 0


def _claim() -> bool:
    global _running
    with _lock:
        if _running >= MAX_RUNNING:
            return False
        _running += 1
        return True


def _release() -> None:
    global _running
    with _lock:
        _running -= 1


class _Stopped(Exception):
    """The client went away: the worker ends."""


class _Sink:
    """A write-only, unseekable file for :class:`zipfile.ZipFile` that hands on full chunks."""

    def __init__(self, chunks: queue.Queue[bytes | BaseException | None], stop: threading.Event) -> None:
        self.chunks = chunks
        self.stop = stop
        self.pending = bytearray()

    def write(self, data: bytes) -> int:
        self.pending += data
        if len(self.pending) >= CHUNK:
            self.hand_on()
        return len(data)

    def flush(self) -> None:
        pass

    def hand_on(self) -> None:
        """What is pending, in pieces of at most :data:`CHUNK` octets: one big message deflates in one write, and
        the queue bounds memory only while its pieces are small."""
        data, self.pending = self.pending, bytearray()
        view = memoryview(data)
        for start in range(0, len(view), CHUNK):
            self.put(bytes(view[start : start + CHUNK]))

    def put(self, item: bytes | BaseException | None) -> None:
        """Wait for room in the queue for as long as the client is there (:class:`_Stopped` once it is not)."""
        while True:
            try:
                self.chunks.put(item, timeout=1.0)
                return
            except queue.Full:
                if self.stop.is_set():
                    raise _Stopped from None


def folder_name(email: str) -> str:
    return "relentad-export-" + re.sub(r"[^A-Za-z0-9@._+-]", "_", email)


def write_zip(conn: sqlite3.Connection, account_id: int, out: IO[bytes], folder: str) -> int:
    """The export of one account as a zip into ``out``; returns the messages written."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:

        @contextmanager
        def open_file(name: str) -> Iterator[IO[bytes]]:
            with archive.open(f"{folder}/{name}", "w", force_zip64=True) as entry:
                yield entry

        count, _ = transfer.export(conn, account_id, open_file)
    return count


def _work(path: Path, login: Login, chunks: queue.Queue[bytes | BaseException | None], stop: threading.Event) -> None:
    """The worker thread: the zip into ``chunks``, then None (done) or the exception that ended it."""
    sink = _Sink(chunks, stop)
    out, folder = cast(IO[bytes], sink), folder_name(login.email)
    end: BaseException | None = None
    try:
        conn = db.connect(path, readonly=True)
        try:
            db.in_snapshot(conn, lambda c: write_zip(c, login.account_id, out, folder))
        finally:
            conn.close()
        sink.hand_on()
    except _Stopped:
        return
    except Exception as exc:  # handed to the loop, which logs it and drops the connection
        end = exc
    finally:
        _release()
    with contextlib.suppress(_Stopped):  # the end is never dropped while the client waits for it
        sink.put(end)


def response(path: Path, login: Login) -> Response:
    """The export's response: 200 with a streamed zip (HEAD: its head; the zip is only made for a GET), or 503
    while :data:`MAX_RUNNING` others run."""
    day = datetime.fromtimestamp(time.time(), UTC).date().isoformat()
    headers = (("Content-Disposition", f'attachment; filename="{folder_name(login.email)}-{day}.zip"'),)
    if _running >= MAX_RUNNING:
        return httpserver.text(503, "other exports are running; try again in a few minutes", ("Retry-After", "120"))

    async def stream() -> AsyncGenerator[bytes, None]:
        if not _claim():  # others started since the check: the connection is dropped
            raise RuntimeError("too many exports at once")
        chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(QUEUED)
        stop = threading.Event()
        threading.Thread(target=_work, args=(path, login, chunks, stop), name="account-export", daemon=True).start()
        try:
            while True:
                item = await asyncio.to_thread(chunks.get)
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    return Response(200, b"", "application/zip", headers, stream)
