"""One SMTP transaction (MAIL … DATA) as relentad's handlers track and log it, shared by the MX and submission.

Invariant: every transaction that got as far as a recipient is logged exactly once, in one line — after DATA, or
when it is abandoned (RSET, a new MAIL, QUIT, hang-up) — with the last reply the client was given.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import Envelope

from .. import metrics, trace
from ..pipeline import Placement
from . import replies
from .server import RelentadSession

log = logging.getLogger("relentad.smtp")


@dataclass
class Transaction:
    """What one MAIL…DATA transaction gathered, for the pipeline and the log line."""

    id: str = field(default_factory=lambda: secrets.token_hex(6))
    started: float = field(default_factory=time.perf_counter)
    placements: dict[int, Placement] = field(default_factory=dict)
    accepted: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    mail_from: str = ""


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
