"""The "mailbox almost full" warning: delivered once when an account passes 90 % of its disk quota (issue 7).

Invariants: whether a warning is due is decided and recorded in one write transaction
(:func:`relentad.quota.claim_warning`), so concurrent deliveries warn once; whatever takes mail out of the
mailboxes re-arms it in its own transaction once usage is back under 90 % (:func:`relentad.quota.rearm_warning`);
the warning itself is an ordinary local delivery through :meth:`Pipeline.deliver` (it is not subject to the
quota, it is small), and a failure to deliver it is logged, never turned into a failure of the delivery that
triggered it.
"""

from __future__ import annotations

import functools
import logging
import secrets
import sqlite3
import time
from collections.abc import Iterable

from . import quota, trace
from .pipeline import Delivery, Pipeline, Placement
from .store.db import Store
from .units import format_size

log = logging.getLogger("relentad.quota")


def warning_message(*, sender: str, recipient: str, usage: quota.Usage, hostname: str, now: float) -> bytes:
    """The warning, as a plain-text RFC 5322 message."""
    lines = [
        f"From: Mail system <{sender}>",
        f"To: <{recipient}>",
        "Subject: Your mailbox is almost full",
        f"Date: {trace.date(now)}",
        f"Message-ID: <quota-{secrets.token_hex(12)}@{hostname}>",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        f"Your mailbox {recipient} uses {format_size(usage.bytes)} of its {format_size(usage.limit)} quota "
        f"({usage.percent:.0f} %).",
        "",
        "When it is full, new mail is refused and returned to its senders. Please delete messages you no",
        "longer need (and empty the Trash).",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8")


def _email(conn: sqlite3.Connection, account_id: int) -> str:
    row = conn.execute("SELECT email FROM accounts WHERE id = ?", (account_id,)).fetchone()
    return "" if row is None else str(row[0])


async def warn_if_due(pipeline: Pipeline, store: Store, account_ids: Iterable[int]) -> None:
    """Deliver the warning to each of ``account_ids`` that just passed 90 % and was not warned yet."""
    config = pipeline.config
    sender = config.quota.notices_from or f"postmaster@{config.server.hostname}"
    for account_id in account_ids:
        try:
            if not store.read(functools.partial(quota.warning_state_stale, account_id=account_id)):
                continue
            usage = await store.write(functools.partial(quota.claim_warning, account_id=account_id))
            if usage is None:
                continue
            address = store.read(functools.partial(_email, account_id=account_id))
            now = time.time()
            raw = warning_message(
                sender=sender, recipient=address, usage=usage, hostname=config.server.hostname, now=now
            )
            await pipeline.deliver(
                Delivery(
                    raw=raw,
                    mail_from="",
                    placements=[Placement(account_id, address, reasons=["quota-warning"])],
                    source=trace.Source(peer_ip="127.0.0.1", helo=config.server.hostname, protocol="ESMTP"),
                    transaction_id=f"quota-{secrets.token_hex(6)}",
                    received_at=now,
                )
            )
            log.info("quota: warned %s at %.0f %% of %s", address, usage.percent, format_size(usage.limit))
        except Exception:
            log.exception("quota: delivering the 90 %% warning to account %d failed", account_id)
