"""One SMTP transaction (MAIL … DATA) as relentad's handlers track and log it, shared by the MX and submission.

Invariant: every transaction that got as far as a recipient is logged exactly once, in one line — after DATA, or
when it is abandoned (RSET, a new MAIL, QUIT, hang-up) — with the last reply the client was given.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import Envelope

from .. import addrspec, forwarding, metrics, trace
from ..dnsbl import Listing
from ..errors import InvalidInput, SMTPReply, StoreUnavailable
from ..pipeline import Placement
from . import dsnparams, replies
from .server import RelentadSession

log = logging.getLogger("relentad.smtp")
NULL_SENDER = "<>"
"""MAIL FROM:<> as aiosmtpd passes it: bounces and DSNs on the MX, read receipts (MDNs) on submission."""


def delivered_to(address: str) -> str:
    """A recipient address as a copy's Delivered-To and the key its placement is known by: normalised, or as it
    came when it cannot be."""
    try:
        return addrspec.normalize(address)
    except InvalidInput:
        return address


@dataclass
class Transaction:
    """What one MAIL…DATA transaction gathered, for the pipeline and the log line."""

    id: str = field(default_factory=lambda: secrets.token_hex(6))
    started: float = field(default_factory=time.perf_counter)
    placements: dict[int, Placement] = field(default_factory=dict)
    accepted: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    mail_from: str = ""
    dnsbl: Listing | None = None  # the client is listed and [dnsbl] action is "junk": the pipeline files it there
    dsn: dsnparams.MailParams = dsnparams.NO_MAIL_PARAMS  # MAIL's RET and ENVID (RFC 3461)
    notify: dict[str, dsnparams.RcptParams] = field(default_factory=dict)  # accepted recipient → its NOTIFY, ORCPT
    forwards: dict[str, forwarding.Forward] = field(default_factory=dict)  # recipient → where it is forwarded
    here: set[str] = field(default_factory=set)  # recipients (as delivered_to reads them) with a mailbox here

    def accept(self, address: str, session: RelentadSession) -> None:
        """``address`` is accepted, with the DSN parameters of its RCPT (the first, when it is named again)."""
        self.accepted.append(address)
        self.notify.setdefault(address, session.dsn_rcpt)


def transaction_of(session: RelentadSession) -> Transaction:
    """The session's open transaction (kept on the session: aiosmtpd replaces the envelope before RSET hooks)."""
    tx: Transaction | None = session.tx
    if tx is None:
        tx = Transaction()
        session.tx = tx
    return tx


def tls_info(session: RelentadSession) -> tuple[str | None, str | None]:
    """(TLS version, cipher name) of the session, or (None, None) without TLS."""
    ssl_object = session.ssl.get("ssl_object") if isinstance(session.ssl, dict) else None
    if ssl_object is None:
        return None, None
    cipher = ssl_object.cipher()
    return ssl_object.version(), (cipher[0] if cipher else None)


async def outcome_reply(tx: Transaction, attempt: Awaitable[str]) -> str:
    """The DATA reply for ``attempt`` (the commit): its own reply, or the one its failure calls for.

    A policy refusal carries its reply; a store that cannot commit is 451 4.3.0 (try again, nothing kept); any
    other failure is logged with its traceback and answered 451 4.3.0 too, never a dropped connection.
    """
    try:
        return await attempt
    except SMTPReply as refusal:
        return refusal.reply
    except StoreUnavailable:
        return replies.STORE_FAILED
    except Exception:
        log.exception("smtp tx=%s delivery failed", tx.id)
        return replies.LOCAL_ERROR


def log_transaction(session: RelentadSession, tx: Transaction, reply: str, size: int | None) -> None:
    if size is not None and reply.startswith("250"):
        metrics.received(session.listener)
    peer = session.peer[0] if session.peer else "?"
    log.info(
        "smtp tx=%s peer=%s from=<%s> rcpt=%s rejected=%d size=%s result=%s ms=%.1f",
        tx.id,
        peer,
        trace.clean(tx.mail_from),
        ",".join(f"<{trace.clean(r)}>" for r in tx.accepted) or "-",
        len(tx.rejected),
        size if size is not None else "-",
        reply[:3],
        (time.perf_counter() - tx.started) * 1000,
    )


class TransactionLog:
    """Handler hooks that log transactions abandoned before DATA; the MX and submission handlers inherit them."""

    def connection_lost(self, session: RelentadSession, envelope: Envelope | None) -> None:
        """Log a transaction that ended without DATA (all recipients refused, RSET, QUIT, hang-up)."""
        tx: Transaction | None = session.tx
        if tx is not None and (tx.accepted or tx.rejected):
            log_transaction(session, tx, session.last_reply or "000", None)
        session.tx = None

    async def handle_RSET(self, server: Any, session: RelentadSession, envelope: Envelope) -> str:
        self.connection_lost(session, envelope)
        return replies.OK
