"""Imports over IMAP that users start on the account page (``/account/import``).

A user knows the password of their old mailbox; the administrator usually does not, so moving a business over
means every user runs the import for themselves. A job is ``relentad import EMAIL URL --password-stdin --job`` in
a process of its own: the import is blocking network I/O and batches of SQLite writes, which the event loop must
not wait on, and the CLI's import is the tested one. At most :data:`MAX_RUNNING` run at once; the others wait in
this process's memory with their passwords, which are written nowhere (not to the database, not to a command
line: the child reads it from its stdin).

Each account has one row in ``imap_import_jobs`` (migration 042): the last job's source, state (``queued``,
``running``, ``done``, ``failed``), counts and error, which the page shows and the child process keeps up to date
(:func:`report`). A job cut off by a stop of the daemon, or a child that died, is ``failed`` with the reason; the
import is resumable, so starting it again goes on where it stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from .. import addrspec
from ..config import Config
from ..errors import InvalidInput
from ..store.db import Store
from . import imapsource

log = logging.getLogger(__name__)

MAX_RUNNING = 2
"""Imports copying at once, server-wide: each holds a connection to an old server and writes batches."""

INTERRUPTED = "interrupted when the mail server stopped; start it again to go on where it stopped"


@dataclass(frozen=True)
class Job:
    account_id: int
    source: str
    state: str  # queued, running, done, failed
    total: int
    done: int
    imported: int
    already: int
    error: str
    queued: float
    finished: float | None

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


def get(conn: sqlite3.Connection, account_id: int) -> Job | None:
    row = conn.execute(
        "SELECT account_id, source, state, total, done, imported, already, error, queued, finished "
        "FROM imap_import_jobs WHERE account_id = ?",
        (account_id,),
    ).fetchone()
    return None if row is None else Job(*row)


UNDER_WAY = "an import is already under way for this account; wait for it to finish"


def listed(conn: sqlite3.Connection) -> list[tuple[str, Job]]:
    """Every account's last job with its address, the most recent first (``relentad imports``)."""
    rows = conn.execute(
        "SELECT a.email, j.account_id, j.source, j.state, j.total, j.done, j.imported, j.already, j.error, j.queued, "
        "j.finished FROM imap_import_jobs j JOIN accounts a ON a.id = j.account_id ORDER BY j.queued DESC"
    )
    return [(str(row[0]), Job(*row[1:])) for row in rows]


def enqueue(conn: sqlite3.Connection, account_id: int, source: str) -> float:
    """A new job for the account, replacing its last one (the runner, which knows what it runs, refuses a second
    one while the first is under way). Returns the time it was queued: the job's identity, so that the end of one
    never marks the next."""
    now = time.time()
    conn.execute(
        """INSERT INTO imap_import_jobs (account_id, source, state, queued) VALUES (?, ?, 'queued', ?)
           ON CONFLICT (account_id) DO UPDATE SET source = excluded.source, state = 'queued', total = 0, done = 0,
             imported = 0, already = 0, error = '', queued = excluded.queued, finished = NULL""",
        (account_id, source, now),
    )
    return now


_FIELDS = frozenset({"state", "total", "done", "imported", "already", "error"})


def report(conn: sqlite3.Connection, account_id: int, **fields: object) -> None:
    """The job's progress or end, from the process doing it (a final state also sets ``finished``)."""
    unknown = set(fields) - _FIELDS
    if unknown:
        raise ValueError(f"unknown job fields {sorted(unknown)}")
    if fields.get("state") in ("done", "failed"):
        fields["finished"] = time.time()
    assignments = ", ".join(f"{name} = ?" for name in fields)
    conn.execute(f"UPDATE imap_import_jobs SET {assignments} WHERE account_id = ?", (*fields.values(), account_id))


def fail_unfinished(conn: sqlite3.Connection, reason: str, job: tuple[int, float] | None = None) -> int:
    """Jobs left queued or running (all, or the one ``(account id, queued time)``) are failed with ``reason``;
    returns how many."""
    where = "state IN ('queued', 'running')" + (" AND account_id = ? AND queued = ?" if job is not None else "")
    params: tuple[object, ...] = (reason, time.time(), *(job or ()))
    sql = f"UPDATE imap_import_jobs SET state = 'failed', error = ?, finished = ? WHERE {where}"
    return conn.execute(sql, params).rowcount


SECURITIES = {"tls": "imaps", "starttls": "imap"}


def url_of(host: str, port: str, security: str, login: str) -> str:
    """The source URL of what a user typed on the page (``imaps://LOGIN@HOST:PORT``), or InvalidInput naming the
    field that is wrong."""
    host = host.strip().rstrip(".").lower()
    try:
        literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is None:
        try:
            host = addrspec.normalize_domain(host)  # the one host-name rule: IDNA 2008, A-labels
        except InvalidInput:
            raise InvalidInput("the server is not a host name (imap.example.com) or an IP address") from None
    if not port.strip().isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidInput("the port is a number from 1 to 65535 (993 for TLS, 143 for STARTTLS)")
    scheme = SECURITIES.get(security)
    if scheme is None:
        raise InvalidInput("choose TLS or STARTTLS")
    if not login.strip() or len(login) > 320 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in login):
        raise InvalidInput("give the user name of the old mailbox (often its mail address)")
    shown = f"[{literal}]" if isinstance(literal, ipaddress.IPv6Address) else str(literal or host)
    url = f"{scheme}://{quote(login.strip(), safe='@')}@{shown}:{int(port)}"
    imapsource.parse_url(url)  # the same check the import makes
    return url


@dataclass(frozen=True)
class _Request:
    account_id: int
    email: str
    url: str
    password: str
    queued: float


class Runner:
    """Starts the child processes, a few at a time, and fails a job whose child ended without saying how."""

    def __init__(self, store: Store, get_config: Callable[[], Config]) -> None:
        self.store = store
        self.get_config = get_config
        self.waiting: list[_Request] = []
        self.children: dict[int, asyncio.subprocess.Process] = {}
        self.busy: set[int] = set()  # accounts with a job waiting, running, or whose process is still ending
        self.tasks: set[asyncio.Task[None]] = set()

    async def recover(self) -> None:
        """At the daemon's start: jobs a stop cut off are failed (one daemon per data folder, so none of them is
        running), so that the page and ``relentad imports`` say so."""
        count = await self.store.write(lambda conn: fail_unfinished(conn, INTERRUPTED))
        if count:
            log.info("%d import(s) over IMAP were cut off by the last stop; their users may start them again", count)

    async def submit(self, account_id: int, email: str, url: str, password: str) -> None:
        """Queue a job (InvalidInput while the account has one under way); it starts when a slot is free."""
        if account_id in self.busy:
            raise InvalidInput(UNDER_WAY)  # its row may say done while its process is still ending
        queued = await self.store.write(lambda conn: enqueue(conn, account_id, url))
        self.busy.add(account_id)
        self.waiting.append(_Request(account_id, email, url, password, queued))
        self._pump()

    def shown(self, job: Job | None) -> Job | None:
        """The job as the page shows it: one its row says is under way but this daemon is not running (a stop cut
        it off and :meth:`recover` could not write) is shown as interrupted."""
        if job is None or not job.active or job.account_id in self.busy:
            return job
        return dataclasses.replace(job, state="failed", error=INTERRUPTED)

    def _pump(self) -> None:
        while self.waiting and len(self.tasks) < MAX_RUNNING:
            request = self.waiting.pop(0)
            task = asyncio.ensure_future(self._run(request))
            self.tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("import job: %s", task.exception())
        self._pump()

    def command(self, request: _Request) -> list[str]:
        config = self.get_config()
        args = [sys.executable, "-m", "relentad"]
        if config.path is not None:
            args += ["--config", str(config.path)]
        args += ["import", request.email, request.url, "--password-stdin", "--job"]
        if config.queue.ca_file:  # the private CA outbound TLS trusts (tests, a company's own CA)
            args += ["--cafile", str(config.resolve(config.queue.ca_file))]
        if not config.web.import_private_hosts:
            args.append("--public-only")
        return args

    async def _run(self, request: _Request) -> None:
        try:
            await self._child(request)
        except OSError as exc:  # the process could not be started (no memory, no such interpreter any more)
            log.error("import into %s from %s could not start: %s", request.email, request.url, exc)
            job = (request.account_id, request.queued)
            reason = f"the import could not start on the server ({exc.strerror or exc})"
            await self.store.write(lambda conn: fail_unfinished(conn, reason, job))
        finally:
            self.busy.discard(request.account_id)

    async def _child(self, request: _Request) -> None:
        log.info("import into %s from %s started", request.email, request.url)
        child = await asyncio.create_subprocess_exec(
            *self.command(request),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self.children[request.account_id] = child
        try:
            _, err = await child.communicate(request.password.encode() + b"\n")
        finally:
            self.children.pop(request.account_id, None)
        lines = err.decode("utf-8", "replace").strip().splitlines()
        last = lines[-1].removeprefix("Error: ") if lines else f"the import stopped (exit status {child.returncode})"
        # the child reports its own end; a child killed or crashed before that leaves its job under way
        job = (request.account_id, request.queued)
        left = await self.store.write(lambda conn: fail_unfinished(conn, last, job))
        outcome = "failed" if left or child.returncode else "finished"
        log.info("import into %s from %s %s%s", request.email, request.url, outcome, f": {last}" if left else "")

    def stop(self) -> None:
        """At shutdown: the queued jobs are forgotten and the children ended (their rows are failed at the next
        start: the transaction a child was in rolls back, and the next run goes on from its last batch)."""
        self.waiting.clear()
        self.busy.clear()
        for child in list(self.children.values()):
            if child.returncode is None:
                child.terminate()
        for task in list(self.tasks):
            task.cancel()
