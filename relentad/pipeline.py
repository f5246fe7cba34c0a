"""The delivery pipeline: the one path every incoming message takes (SMTP, local submission, imports).

Each step is a small function that reads the :class:`Delivery` and adds its decision to it (DESIGN.md §1):
authenticate (SPF/DKIM/DMARC), classify (spam), sort (CRM, rules), charge quota — then the store writes
everything in ONE transaction and, only after it committed, the change bus is told. Protocol modules call
:func:`deliver` and hold no policy of their own.

Invariant: when :func:`deliver` returns, every placement is durably committed; when it raises, nothing of this
delivery is stored.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import trace
from .events import Bus, MessageAdded
from .store import mailboxes, messages
from .store.db import Store

log = logging.getLogger(__name__)


@dataclass
class Placement:
    """Where one recipient account's copy goes, and why (reasons end up in logs)."""

    account_id: int
    address: str  # the recipient address that reached this account (for Delivered-To)
    mailbox: str = mailboxes.INBOX
    flags: int = 0
    keywords: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


@dataclass
class Delivery:
    """One message on its way into local mailboxes."""

    raw: bytes
    mail_from: str
    placements: list[Placement]
    source: trace.Source
    transaction_id: str
    received_at: float = field(default_factory=time.time)
    structure: str | None = None


@dataclass(frozen=True)
class Stored:
    account_id: int
    mailbox_id: int
    uid: int
    modseq: int


def _prefix(delivery: Delivery, placement: Placement, hostname: str) -> bytes:
    return (
        trace.return_path(delivery.mail_from)
        + trace.delivered_to(placement.address)
        + trace.received(
            delivery.source,
            hostname=hostname,
            transaction_id=delivery.transaction_id,
            recipient=placement.address,
            when=delivery.received_at,
        )
    )


def _commit_job(delivery: Delivery, hostname: str) -> Callable[[sqlite3.Connection], list[Stored]]:
    """The write job: runs on the store's writer thread inside the group-commit transaction."""

    def job(conn: sqlite3.Connection) -> list[Stored]:
        blob_id = messages.store_blob(conn, delivery.raw, delivery.structure)
        stored = []
        for placement in delivery.placements:
            mailbox_id = mailboxes.find(conn, placement.account_id, placement.mailbox)
            if mailbox_id is None:
                mailbox_id = mailboxes.create(conn, placement.account_id, placement.mailbox)
            prefix = _prefix(delivery, placement, hostname)
            uid, modseq = messages.append(
                conn,
                mailbox_id,
                blob_id,
                prefix=prefix,
                size=len(prefix) + len(delivery.raw),
                internaldate=delivery.received_at,
                flags=placement.flags,
                keywords=" ".join(placement.keywords),
            )
            stored.append(Stored(placement.account_id, mailbox_id, uid, modseq))
        return stored

    return job


class Pipeline:
    """Runs the steps and the commit; one instance per daemon, shared by every listener."""

    def __init__(self, store: Store, bus: Bus, hostname: str) -> None:
        self.store = store
        self.bus = bus
        self.hostname = hostname

    async def deliver(self, delivery: Delivery) -> list[Stored]:
        """File the message for every placement; returns once durably committed."""
        stored = await self.store.write(_commit_job(delivery, self.hostname))
        self.bus.publish([MessageAdded(s.account_id, s.mailbox_id, s.uid, s.modseq) for s in stored])
        return stored
