"""Reports about local delivery (RFC 3461 §6.2): "delivered" for recipients whose RCPT asked for NOTIFY=SUCCESS,
and "failed" for local copies submission had to skip (over quota), unless NOTIFY leaves FAILURE out.

Submission files them into the sender's INBOX after its commit; the MX gets its "delivered" report to the sender
in the same transaction as the copies — filed into the INBOX of a sender of ours, queued (with the null sender
like any DSN, RFC 3461 §6.1, and DKIM-signed) to any other — and never for mail that came with the null sender.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..queue import dsn
from .dsnparams import NO_RCPT_PARAMS
from .transaction import Transaction, delivered_to

OVER_QUOTA = "552 5.2.2 Mailbox full: the message would exceed the recipient's quota"


def local_outcomes(
    tx: Transaction, local: Iterable[str], skipped: set[str], hostname: str
) -> tuple[list[dsn.RecipientStatus], list[dsn.RecipientStatus]]:
    """(failed, delivered): the local recipients ``local`` (RCPT addresses) the sender is to hear about, the
    failed ones being those whose normalised address is in ``skipped`` (their copies were not filed; the MX's
    DATA, which never skips one, normalises nothing)."""
    failed: list[dsn.RecipientStatus] = []
    delivered: list[dsn.RecipientStatus] = []
    for address in dict.fromkeys(local):
        params = tx.notify.get(address, NO_RCPT_PARAMS)
        if skipped and delivered_to(address) in skipped:
            if params.wants("FAILURE"):
                failed.append(dsn.RecipientStatus(address, OVER_QUOTA, remote=hostname, orcpt=params.orcpt))
        elif params.wants("SUCCESS"):
            delivered.append(dsn.RecipientStatus(address, "", orcpt=params.orcpt, action=_success(tx, address)))
    return failed, delivered


def _success(tx: Transaction, address: str) -> dsn.Action:
    """What success means for a recipient (RFC 3464 §2.3.3): "delivered" into mailboxes here; an alias that also
    forwards elsewhere, or to several addresses there, "expanded"; one whose only target is elsewhere "relayed" —
    the forward does not ask the next server for a report of its own (RFC 3461 §6.2.7), so none will follow."""
    via = delivered_to(address)
    forward = tx.forwards.get(via)
    if forward is None:
        return "delivered"
    if via in tx.here or len(forward.targets) > 1:
        return "expanded"
    return "relayed"


def delivered_report(tx: Transaction, original: bytes, hostname: str, now: float) -> bytes | None:
    """The "delivered" DSN for every accepted recipient that asked for one; None when none did, or the message
    came with the null sender (nobody to tell, and never a report about a report)."""
    if not tx.mail_from:
        return None
    _, delivered = local_outcomes(tx, tx.accepted, set(), hostname)
    if not delivered:
        return None
    return report(tx, "delivered", delivered, original, hostname, now)


def report(
    tx: Transaction,
    action: dsn.Action,
    recipients: list[dsn.RecipientStatus],
    original: bytes,
    hostname: str,
    now: float,
) -> bytes:
    return dsn.build(
        action=action,
        hostname=hostname,
        sender=tx.mail_from,
        recipients=recipients,
        original=original,
        arrival=now,
        now=now,
        envid=tx.dsn.envid,
        ret=tx.dsn.ret,
    )
