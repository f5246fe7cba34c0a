"""Changes other processes commit to the database (``relentad import``, ``announce``…), told to IDLE sessions.

The in-process bus (:mod:`relentad.events`) only carries what this daemon writes; the CLI writes the SQLite file
directly. While at least one session IDLEs, :class:`ExternalChanges` polls every :data:`POLL_INTERVAL` seconds:
``PRAGMA data_version`` on its own connection (it changes whenever another connection, this daemon's writer
included, commits: one cheap call when nothing happened), and after a change the highest modseq of the idling
accounts' mailboxes. A mailbox whose modseq moved past what was last seen gets a ``MailboxChanged`` on the bus, and
its sessions look (:meth:`relentad.imap.session.Session.sync`).

Invariants: an account's baseline is read when its first session starts to IDLE, before that session's own first
look, so a change committed in between is reported twice at worst (the second look finds nothing), never missed;
changes this daemon made itself are published again by the poll, which costs an idle session one cheap query
(``drain_events`` skips events whose modseq the session has already seen); the poll runs only while someone IDLEs
and is a task of its own, never blocking a session.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
from pathlib import Path

from ..events import Bus, Event, MailboxChanged
from ..store import db
from ..store.imapview import placeholders

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.5
"""Seconds between two looks at the database while a session IDLEs."""


class ExternalChanges:
    def __init__(self, path: Path, bus: Bus, interval: float = POLL_INTERVAL) -> None:
        self.path = path
        self.bus = bus
        self.interval = interval
        self.idling: collections.Counter[int] = collections.Counter()
        """Account id → sessions of it in IDLE."""
        self.known: dict[int, int] = {}
        """Mailbox id → highest modseq last seen (mailboxes of idling accounts only)."""
        self._conn: sqlite3.Connection | None = None
        self._version = -1
        self._task: asyncio.Task[None] | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = db.connect(self.path, readonly=True)
        return self._conn

    def enter(self, account_id: int) -> None:
        """A session of the account starts to IDLE: read its baseline (first session only), make sure we poll."""
        self.idling[account_id] += 1
        if self.idling[account_id] == 1:
            try:
                self._scan([account_id], publish=False)
            except sqlite3.Error as exc:  # a failed baseline only delays notices; IDLE itself goes on
                log.warning("imap: could not read mailbox state for IDLE: %s", exc)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def leave(self, account_id: int) -> None:
        self.idling[account_id] -= 1
        if self.idling[account_id] <= 0:
            del self.idling[account_id]
            if not self.idling:
                self.known.clear()

    def _scan(self, accounts: list[int], *, publish: bool) -> None:
        conn = self._connection()
        rows = conn.execute(
            f"SELECT id, account_id, highestmodseq FROM mailboxes WHERE account_id IN ({placeholders(len(accounts))})",
            accounts,
        ).fetchall()
        events: list[Event] = []
        for mailbox_id, account_id, modseq in rows:
            before = self.known.get(mailbox_id)
            self.known[mailbox_id] = modseq
            if publish and before is not None and modseq > before:
                events.append(MailboxChanged(account_id, mailbox_id, modseq))
        if events:
            self.bus.publish(events)

    def poll(self) -> None:
        """One look: nothing but ``data_version`` unless some connection committed since the last one."""
        if not self.idling:
            return
        version = int(self._connection().execute("PRAGMA data_version").fetchone()[0])
        if version != self._version:  # read before the scan: a commit during it is seen by the next poll
            self._version = version
            self._scan(list(self.idling), publish=True)

    async def _run(self) -> None:
        while self.idling:
            await asyncio.sleep(self.interval)
            try:
                self.poll()
            except sqlite3.Error as exc:
                log.warning("imap: polling the database for changes failed: %s", exc)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
