"""What sending DMARC aggregate reports (:mod:`.outgoing`) and SMTP TLS reports (:mod:`.tlsreports`) share: the
``mailto:`` destinations of a ``rua=``, DKIM signing for the reporter's domain, queueing, one run's
read-prepare-write steps, and the daily job that sends both kinds shortly after midnight UTC.

Both go as mail through the outbound queue, from ``[dmarc] reporter``: queued in the transaction that deletes the
records they cover, so a report is neither lost nor sent twice.
"""

from __future__ import annotations

import email.utils
import inspect
import logging
import sqlite3
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol, TypeVar

import dns.asyncresolver

from .. import addrspec, daily
from ..config import Config
from ..dns import make_resolver
from ..errors import InvalidInput
from ..queue import queue
from ..queue.dkimkeys import KeyRing
from ..store.db import Store

log = logging.getLogger("relentad.reports")

MAX_DESTINATIONS = 5
_SIZE_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}  # the lower reading: never over a limit

Reader = Callable[[Callable[[sqlite3.Connection], Any]], Any]
Writer = Callable[[Callable[[sqlite3.Connection], Any]], Any]
P = TypeVar("P")
"""One kind's pending batch (a domain's records not yet reported)."""


@dataclass(frozen=True)
class Destination:
    address: str
    limit: int  # bytes; 0 = none


def destinations(rua: str) -> list[Destination]:
    """The ``mailto:`` URIs of a ``rua=`` value (RFC 7489 §6.2: ``mailto:addr[!size[unit]]``, comma-separated; RFC
    8460 §3 the same without a size); other schemes and addresses that are not ones are left out."""
    found = []
    for uri in rua.split(","):
        scheme, _, rest = uri.strip().partition(":")
        if scheme.lower() != "mailto" or not rest:
            continue
        target, _, size = rest.partition("!")
        limit = 0
        if size:
            number, unit = (size[:-1], size[-1]) if size[-1:].isalpha() else (size, "")
            if not number.isdigit() or unit.lower() not in _SIZE_UNITS:
                continue
            limit = int(number) * _SIZE_UNITS[unit.lower()]
        try:
            address = addrspec.normalize(urllib.parse.unquote(target.partition("?")[0]))
        except InvalidInput:
            continue
        found.append(Destination(address, limit))
    return found[:MAX_DESTINATIONS]


async def sign(raw: bytes, config: Config, keyring: KeyRing | None) -> bytes:
    """``raw`` DKIM-signed for the reporter's domain (or a parent in its alignment); unsigned when it has no key
    or the key is broken (logged)."""
    if keyring is None:
        return raw
    try:
        return await keyring.sign(raw, config.dmarc.reporter.rpartition("@")[2], aligned=True)
    except Exception as exc:  # a broken key: the report goes unsigned
        log.error("reports: DKIM signing failed: %s", exc)
        return raw


def enqueue(conn: sqlite3.Connection, config: Config, raw: bytes, recipients: list[str], tid: str, now: float) -> None:
    queue.enqueue(
        conn,
        account_id=None,
        mail_from=config.dmarc.reporter,
        data=raw,
        recipients=recipients,
        transaction_id=tid,
        now=now,
    )


async def write_with(write: Writer, job: Callable[[sqlite3.Connection], Any]) -> None:
    """Run ``job`` through ``write``, awaited when that returns an awaitable (the daemon's store; the CLI's
    transaction returns at once)."""
    done = write(job)
    if inspect.isawaitable(done):
        await done


@dataclass(frozen=True)
class Outgoing:
    """One report mail, signed and ready to queue."""

    domain: str
    raw: bytes
    recipients: list[str]
    report_id: str


def message(
    config: Config, domain: str, submitter: str, recipients: list[str], report_id: str, end: int
) -> EmailMessage:
    """A report mail's common header fields: from the reporter, dated at the period's end, the subject of RFC 7489
    §7.2.1.1 (which RFC 8460 §5.3 takes up)."""
    msg = EmailMessage()
    msg["From"] = config.dmarc.reporter
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = f"Report Domain: {domain} Submitter: {submitter} Report-ID: <{report_id}>"
    msg["Date"] = email.utils.formatdate(end, usegmt=True)
    return msg


def period(begin: int, end: int) -> str:
    """The time a report covers, as its mail's text says it."""
    return " to ".join(time.strftime("%Y-%m-%d %H:%M", time.gmtime(moment)) for moment in (begin, end)) + " UTC"


async def run(
    read: Reader,
    write: Writer,
    collect: Callable[[sqlite3.Connection], list[P]],
    prepare: Callable[[list[P], Config, dns.asyncresolver.Resolver, KeyRing | None, float], Awaitable[list[Outgoing]]],
    commit: Callable[[sqlite3.Connection, list[P], list[Outgoing], Config, float], None],
    config: Config,
    resolver: dns.asyncresolver.Resolver,
    keyring: KeyRing | None,
    now: float | None,
) -> list[Outgoing]:
    """One run of a kind: ``collect`` the pending records (``read``), ``prepare`` the reports, then ``commit``: queue
    them and delete what they cover (``write``, awaited when it returns an awaitable: the daemon's store, or the
    CLI's transaction)."""
    now = time.time() if now is None else now
    batches: list[P] = read(collect)
    if not batches:
        return []
    outgoing = await prepare(batches, config, resolver, keyring, now)
    await write_with(write, lambda conn: commit(conn, batches, outgoing, config, now))
    return outgoing


class Sender(Protocol):
    """One kind's ``send``: a run over the pending records, returning the reports it queued."""

    def __call__(
        self,
        read: Reader,
        write: Writer,
        config: Config,
        resolver: dns.asyncresolver.Resolver,
        keyring: KeyRing | None,
        now: float | None = None,
    ) -> Coroutine[Any, Any, list[Any]]: ...


def first_delay(now: float | None = None) -> float:
    """Seconds until 00:15 UTC: reports then cover about a day (RFC 7489 §7.2 and RFC 8460 §4.1 ask for UTC days)."""
    now = time.time() if now is None else now
    return (-now + 15 * 60) % daily.DAY or daily.DAY


def kinds(config: Config) -> list[tuple[str, Sender]]:
    """The report kinds switched on: (name, send)."""
    from .outgoing import send as send_dmarc  # they import this module
    from .tlsreports import send as send_tls

    found: list[tuple[str, Sender]] = []
    if config.dmarc.send_reports:
        found.append(("DMARC", send_dmarc))
    if config.tlsrpt.send_reports:
        found.append(("TLS", send_tls))
    return found


async def run_daily(
    store: Store,
    settings: Callable[[], Config],
    keyring: KeyRing,
    wake: Callable[[], None],
    interval: float = daily.DAY,
) -> None:
    """The daemon's daily job: send the reports of each kind switched on at that moment, wake the queue."""

    async def send_now() -> None:
        config = settings()
        resolver = make_resolver(config.dns.nameservers, config.dns.timeout)
        queued = False
        for name, send in kinds(config):
            try:
                queued = bool(await send(store.read, store.write, config, resolver, keyring)) or queued
            except Exception:  # one kind failing must not keep the other from going
                log.exception("reports: sending the %s reports failed; retrying tomorrow", name)
        if queued:
            wake()

    await daily.every_day(send_now, what="reports", log=log, first_delay=first_delay(), interval=interval)
