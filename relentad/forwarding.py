"""Forwarding to addresses elsewhere: alias targets outside this server, Sieve ``redirect``, and bounces to SRS
addresses going back to the original sender.

A forward is decided during delivery (:class:`Forward` on the :class:`~relentad.pipeline.Delivery`) and queued in
the transaction that files the local copies, before ``250``: a message answered ``250`` is never lost. What
leaves is the message byte for byte as it came (its DKIM signatures stay valid) under our trace fields —
``Delivered-To`` (the forwarding address, which loop detection looks for), ``Authentication-Results`` and
``Received`` — and, when the forwarding address's domain (or the hostname's) has a DKIM key, an ARC set (RFC 8617)
sealing our results, so that a receiver trusting us can see that SPF/DKIM/DMARC passed here. The envelope sender is
rewritten by SRS (:mod:`relentad.srs`) to the forwarding domain, whose SPF authorises us; the null sender stays null.

Never forwarded (:func:`withheld`): mail a message-wide check filed into Junk (a DMARC quarantine or reject
failure, a blocklisted client or link), mail the spam filter called spam (the local copy's verdict, or the global
model's when the alias has no local target: then it is dropped, only logged and counted), and a Sieve redirect of a
copy in Junk. A message carrying our ``Delivered-To`` for an address about to forward it, or more than
:data:`MAX_HOPS` ``Received`` fields, is a loop: ``554 5.4.6``, as Postfix answers.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from . import addrspec, headers, mailauth, quota, srs, trace
from .errors import InvalidInput
from .queue import queue
from .smtp import dsnparams
from .store import accounts

if TYPE_CHECKING:
    from .mailauth import AuthResult
    from .pipeline import Placement
    from .queue.dkimkeys import DomainKeys

log = logging.getLogger(__name__)

MAX_HOPS = 50
"""``Received`` fields a message may carry before it counts as looping (Postfix's ``hopcount_limit``)."""
ARC_HEADERS = (
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"in-reply-to",
    b"references",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"reply-to",
    b"list-id",
)
Kind = Literal["alias", "redirect", "srs"]
NO_REPORTS = dsnparams.RcptParams(frozenset({"NEVER"}))


@dataclass
class Forward:
    """One forwarding decision: ``via`` (the address of ours that forwards it: an alias, the account that
    redirects, an SRS address) sends the message on to ``targets``."""

    via: str
    targets: tuple[str, ...]
    kind: Kind
    account_id: int | None = None  # a redirect: its account's send limits count it
    # a redirect without :copy took the account's copy away: put back if the forward is withheld after all
    fallback: list[Placement] = field(default_factory=list)
    raw: bytes | None = None  # a redirect of a message the rules edited (Sieve editheader); None: as received


def loop_reason(raw: bytes, vias: list[str]) -> str | None:
    """Why forwarding ``raw`` from ``vias`` would loop: too many hops, or it already passed one of them."""
    fields = headers.header_fields(raw, 0, headers.header_end(raw))
    hops = sum(1 for name, _ in fields if name == "received")
    if hops > MAX_HOPS:
        return f"Too many hops ({hops} Received fields): mail loop"
    wanted = {v.lower() for v in vias}
    for name, value in fields:
        if name == "delivered-to" and value.strip().lower() in wanted:
            return f"Mail forwarding loop for <{trace.clean(value.strip())}>"
    return None


def prepared(raw: bytes, via: str, trace_fields: bytes) -> bytes:
    """The message as it leaves: our ``Delivered-To`` and trace fields on top, the rest untouched."""
    return trace.delivered_to(via) + trace_fields + raw


def seal(raw: bytes, keys: DomainKeys, authserv_id: str) -> bytes:
    """``raw`` with an ARC set (RFC 8617) by ``keys`` on top of our Authentication-Results (CPU-bound; a worker
    thread). The message unchanged when dkimpy cannot seal it (no results of ours, a broken chain it refuses), and
    when the newest ARC-Seal says cv=fail: an earlier hop ended the chain (RFC 8617 §5.2: validation stops there),
    and a set after it would only repeat the failure."""
    import dkim  # dkimpy: only the daemon's forwarding step needs it

    fields = headers.header_fields(raw, 0, headers.header_end(raw))
    if _chain_ended(fields):
        return raw
    present = {name.encode("ascii", "replace") for name, _ in fields}
    try:
        lines = dkim.arc_sign(
            raw,
            keys.selector.encode("ascii"),
            keys.domain.encode("ascii"),
            keys.rsa,
            authserv_id.encode("ascii"),
            include_headers=[h for h in ARC_HEADERS if h in present] or [b"from"],
        )
    except Exception as exc:  # dkimpy raises several kinds; the forward goes unsealed
        log.warning("forwarding: ARC sealing failed (%s); forwarded without a seal", exc)
        return raw
    if not lines:
        return raw
    return b"".join(line if line.endswith(b"\r\n") else line.rstrip(b"\r\n") + b"\r\n" for line in lines) + raw


def _chain_ended(fields: list[headers.Field]) -> bool:
    """The ARC-Seal with the highest i= among the header ``fields`` says cv=fail."""
    seals = []
    for name, value in fields:
        if name == "arc-seal":
            tags = dict(re.findall(r"(?:^|;)\s*([a-z]+)\s*=\s*([^;]*)", value.lower()))
            if tags.get("i", "").strip().isdigit():
                seals.append((int(tags["i"]), tags.get("cv", "").strip()))
    return bool(seals) and max(seals)[1] == "fail"


def enqueue(
    conn: sqlite3.Connection,
    *,
    forward: Forward,
    mail_from: str,
    data: bytes,
    transaction_id: str,
    now: float,
    bounce: bool = True,
) -> bool:
    """Queue the forwarded copy (in the delivery's transaction) and count a redirect against its account's send
    limits; False, queueing nothing, when that would pass them. The sorter checked the limits already, but only
    here, on the one writer thread, are check and count one step: deliveries running side by side would each see
    the same count. Nobody's account owns the copy in the queue, so its bounces go back through SRS
    (queue/runner.py); without ``bounce`` (an unverified sender) its targets have NOTIFY=NEVER (RFC 3461): neither
    our queue nor a next hop that offers DSN sends a failure report."""
    account_id = forward.account_id
    if account_id is not None and quota.send_refusal(quota.get(conn, account_id, now), len(forward.targets) - 1):
        return False
    queue.enqueue(
        conn,
        account_id=None,
        mail_from=mail_from,
        data=data,
        recipients=list(forward.targets),
        transaction_id=transaction_id,
        now=now,
        notify=None if bounce else dict.fromkeys(forward.targets, NO_REPORTS),
    )
    if account_id is not None:
        queue.count_sent(conn, account_id, len(forward.targets), now)
    return True


def sender_verified(auth: AuthResult | None, mail_from: str) -> bool:
    """Whether the envelope sender of a message to forward is known to be genuine: SPF passed for it, or a DKIM
    signature of its (organisational) domain verified. Only then may a failure of the forward bounce to it — a
    bounce to a forged sender is backscatter. True when the message was not checked (submitted by a user of ours,
    or ``[mailauth] verify`` off): nothing to go on, as before."""
    if auth is None or not mail_from:
        return True
    if auth.spf.identity == "mailfrom" and auth.spf.result == "pass":
        return True
    domain = mailauth.organizational_domain(mail_from.rpartition("@")[2])
    return any(mailauth.organizational_domain(d) == domain for d in auth.dkim_pass_domains)


def srs_sender(conn: sqlite3.Connection, mail_from: str, via: str, verified: bool = True) -> str:
    """The envelope sender of a forward from ``via``: ``mail_from`` rewritten by SRS to via's domain (marked when
    the sender is not ``verified``: bounces to it are refused)."""
    if not mail_from:
        return ""
    return srs.forward(mail_from, via.rpartition("@")[2], srs.secrets_of(conn)[0], verified=verified)


def srs_recipient(conn: sqlite3.Connection, address: str) -> str | None:
    """For RCPT on the MX: the original sender an SRS address of a hosted domain goes back to; None when
    ``address`` is no SRS address of ours (it resolves as usual); InvalidInput when it is one that does not verify
    or has expired (550 5.1.1: never a relay, never backscatter)."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not srs.is_srs(local):
        return None
    try:
        hosted = accounts.domain_id(conn, addrspec.normalize_domain(domain)) is not None
    except InvalidInput:
        return None
    if not hosted:
        return None
    original = srs.reverse(local, srs.secrets_of(conn))
    addrspec.split_path(original)  # what it decodes to must be an address we can send to: a reverse-path we took
    return original


def bounce_address(conn: sqlite3.Connection, mail_from: str) -> str | None:
    """The original sender a bounce of a forward (queued with an SRS ``mail_from``) goes to; None when
    ``mail_from`` is not a valid SRS address of ours."""
    local, _, _domain = mail_from.rpartition("@")
    if not srs.is_srs(local):
        return None
    try:
        return srs.reverse(local, srs.secrets_of(conn))
    except InvalidInput:  # forged, expired, or of an unverified sender (srs.Unverified)
        return None
