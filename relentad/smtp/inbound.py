"""SMTP inbound (the MX): accept mail for hosted domains, users and aliases only, and hand it to the pipeline.

Policy for this listener, as aiosmtpd handler hooks:
- never an open relay: a recipient outside the hosted domains gets ``554 5.7.1``; AUTH is not offered here
  (users submit on 587/465);
- unknown users of hosted domains get ``550 5.1.1``; recipients over the limit ``452 4.5.3``;
- a client on a ``[dnsbl]`` blocklist gets ``550 5.7.1`` naming the list for every local recipient but
  postmaster@ (action "reject"), or has its mail filed into Junk (action "junk");
- a recipient whose accounts are all at their disk quota, or would be over it with the size declared in MAIL's
  ``SIZE=``, gets ``452 4.2.2`` at RCPT (RFC 1870 §6.2); at DATA (checked exactly, inside the commit:
  ``Delivery.check_quota``) a message that would take every recipient account over its quota gets ``552 5.2.2``,
  one that would take some over ``452 4.2.2`` for the whole message — never a copy silently dropped after ``250``
  (RFC 5321 §6.1) nor a bounce from the MX (backscatter): the sender's retry gets the full mailbox refused at
  RCPT and the others get the message; an account passing 90 % gets its warning once (quotawarn.py);
- ``250`` after DATA only once the message is committed (the pipeline returns after the store's commit); a
  store failure answers ``452 4.3.1`` so the sender retries, any other failure ``451 4.3.0``;
- DSN (RFC 3461): RET, ENVID, NOTIFY and ORCPT are accepted (:mod:`relentad.smtp.dsnparams`); a recipient whose
  RCPT said NOTIFY=SUCCESS makes the sender get a "delivered" report in the same transaction as the copies
  (:mod:`relentad.smtp.reports`): filed into its INBOX when the sender is one of our users, else queued to it,
  DKIM-signed when we have a key for the hostname's domain — only when SPF passed for MAIL FROM (or checks are
  off), so that nobody can have us send reports to a forged address; refusals are SMTP replies as before, never
  a bounce;
- one log line per transaction: peer, sender, recipients, size, reply code, milliseconds.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import Envelope

from .. import addrspec, forwarding, greylist, metrics, quota, quotawarn, srs, trace
from ..crm import contacts, participants
from ..dnsbl import Listing
from ..errors import InvalidInput, RelentadError
from ..pipeline import Delivery, Pipeline, Placement, Stored
from ..spam import senderlists
from ..store import accounts
from ..store.db import Store
from . import replies, reports
from .server import ListenerContext, RelentadSession
from .transaction import (
    NULL_SENDER,
    Transaction,
    TransactionLog,
    delivered_to,
    log_transaction,
    outcome_reply,
    tls_info,
    transaction_of,
)

log = logging.getLogger("relentad.smtp")


class InboundHandler(TransactionLog):
    """aiosmtpd handler for the MX listener."""

    def __init__(
        self,
        store: Store,
        pipeline: Pipeline,
        get_context: Callable[[], ListenerContext],
        queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.get_context = get_context
        self.queued = queued  # wakes the queue runner: a "delivered" report was queued

    async def handle_EHLO(
        self, server: Any, session: RelentadSession, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        extensions = [r for r in responses[1:-1] if not r.startswith("250-AUTH")]
        return [responses[0], *extensions, "250-PIPELINING", "250-ENHANCEDSTATUSCODES", server.offer_dsn(), "250 HELP"]

    async def handle_MAIL(
        self, server: Any, session: RelentadSession, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.connection_lost(session, envelope)  # log an abandoned earlier transaction, if any
        if address != NULL_SENDER:
            try:  # a reverse-path's local part may pass 64 octets (RFC 5321 §4.5.3.1: SRS senders of forwarders do)
                addrspec.split_path(address)
            except InvalidInput:
                return replies.BAD_SENDER
        # The null sender stays "<>": aiosmtpd reads an empty mail_from as "no MAIL command yet".
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        session.tx = Transaction(mail_from="" if address == NULL_SENDER else address, dsn=session.dsn_mail)
        return replies.SENDER_OK

    async def handle_RCPT(
        self, server: Any, session: RelentadSession, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        tx = transaction_of(session)
        limits = self.get_context().config.limits
        if len(envelope.rcpt_tos) >= limits.max_recipients:
            reply = replies.TOO_MANY_RECIPIENTS
        else:
            postmaster = self.get_context().config.server.postmaster
            bounce = self._srs_bounce(tx, address, postmaster)
            if isinstance(bounce, str):
                tx.rejected.append(address)
                return bounce
            resolution = bounce or self.store.read(lambda conn: accounts.resolve_recipient(conn, address, postmaster))
            room = functools.partial(_has_room, size=declared_size(envelope.mail_options))
            with_room = [a for a in resolution.account_ids if self.store.read(functools.partial(room, account_id=a))]
            forwarded_only = bool(resolution.forwards) and not resolution.account_ids
            refusal = await self._blocklisted(session, tx, address) if with_room or forwarded_only else None
            if refusal is None and resolution.kind is accounts.RecipientKind.LOCAL and (with_room or forwarded_only):
                refusal = await self._greylisted(session, tx, address, resolution.account_ids)
            if refusal is None and resolution.kind is accounts.RecipientKind.LOCAL and (with_room or forwarded_only):
                envelope.rcpt_tos.append(address)
                envelope.rcpt_options.extend(options)
                tx.accept(address, session)
                for account_id in with_room:
                    tx.placements.setdefault(account_id, Placement(account_id, delivered_to(address)))
                if with_room:
                    tx.here.add(delivered_to(address))
                if resolution.forwards:
                    via = delivered_to(address)
                    kind: forwarding.Kind = "srs" if bounce is not None else "alias"
                    tx.forwards.setdefault(via, forwarding.Forward(via, resolution.forwards, kind))
                if bounce is not None:
                    metrics.srs_bounce("accepted")
                return replies.RECIPIENT_OK
            if refusal is not None:
                reply = refusal
            elif resolution.kind is accounts.RecipientKind.LOCAL:
                reply = replies.MAILBOX_FULL
            elif resolution.kind is accounts.RecipientKind.UNKNOWN_USER:
                reply = replies.UNKNOWN_USER
            else:
                reply = replies.RELAY_DENIED
        tx.rejected.append(address)
        return reply

    def _srs_bounce(self, tx: Transaction, address: str, postmaster: str) -> accounts.Resolution | str | None:
        """For an SRS address of ours: where a bounce to it goes — the original sender, one of ours filed here, anyone
        else relayed — or the refusal (forged or expired, an unverified sender, not a bounce); None for any other
        address (it resolves as usual)."""
        if not srs.is_srs(address.strip()):  # cheap: SRS addresses are rare, the hot path skips the lookup
            return None
        try:
            original = self.store.read(functools.partial(forwarding.srs_recipient, address=address))
        except InvalidInput as exc:
            unverified = isinstance(exc, srs.Unverified)
            return _srs_refused(tx, address, str(exc), replies.SRS_UNVERIFIED if unverified else replies.BAD_SRS)
        if original is None:
            return None
        if tx.mail_from:
            # an SRS address stands in the Return-Path of every forward, for 21 days: taking any sender's mail
            # there would relay whatever its readers (or a forger of the original sender) write to that sender
            return _srs_refused(tx, address, "not a bounce", replies.SRS_NOT_BOUNCE)
        ours = self.store.read(lambda conn: accounts.resolve_recipient(conn, original, postmaster))
        if ours.kind is accounts.RecipientKind.LOCAL and ours.account_ids:
            return ours
        return accounts.Resolution(accounts.RecipientKind.LOCAL, (), (original,))

    async def _blocklisted(self, session: RelentadSession, tx: Transaction, address: str) -> str | None:
        """``[dnsbl]``: the refusal for a local recipient when the client is listed and the action is "reject"
        (mail to postmaster@ is still taken); with "junk" the listing goes with the transaction to the pipeline.
        The zones are asked once per connection, at its first local recipient."""
        config = self.get_context().config.dnsbl
        if not config.zones or not session.peer:
            return None
        if not session.dnsbl_checked:
            session.dnsbl = await self.pipeline.blocklists.check(session.peer[0])
            session.dnsbl_checked = True
            if session.dnsbl is not None:
                metrics.dnsbl_listed("ip", session.dnsbl.zone)
        listing: Listing | None = session.dnsbl
        if listing is None:
            return None
        if config.action == "junk":
            tx.dnsbl = listing
            return None
        if accounts.is_postmaster(delivered_to(address)):  # as resolve_recipient reads it: "postmaster"@ too
            return None
        return replies.blocklisted(session.peer[0], listing.describe())

    async def _greylisted(
        self, session: RelentadSession, tx: Transaction, address: str, account_ids: tuple[int, ...]
    ) -> str | None:
        """``[greylist]``: the 451 for a recipient whose triplet has not waited its delay (greylist.py); None to go
        on. postmaster@ is never delayed, nor a client in ``exempt_networks``, nor a sender that is a confirmed
        contact of a recipient account or on its allow-list."""
        config = self.get_context().config.greylist
        if not config.enabled or not session.peer:
            return None
        ip = session.peer[0]
        if greylist.exempt(ip, config) or accounts.is_postmaster(delivered_to(address)):
            metrics.greylisted("exempt")
            return None
        if tx.mail_from and self.store.read(
            functools.partial(_known_sender, sender=tx.mail_from, accounts=account_ids)
        ):
            metrics.greylisted("contact")
            return None
        triplet = (greylist.client_network(ip, config), greylist.sender_key(tx.mail_from), delivered_to(address))
        now = time.time()
        try:
            verdict, write = self.store.read(lambda conn: greylist.judge(conn, *triplet, now, config))
            if write:
                verdict = await self.store.write(lambda conn: greylist.record(conn, *triplet, now, config))
        except RelentadError as exc:  # a delay is no reason to refuse mail: greylisting fails open
            log.warning("greylist: %s not recorded (%s); accepted", triplet, exc)
            return None
        metrics.greylisted(verdict.outcome)
        if not verdict.deferred:
            return None
        log.info(
            "greylist: deferred <%s> -> <%s> from %s (retry in %d s)",
            trace.clean(tx.mail_from),
            trace.clean(address),
            triplet[0],
            round(verdict.wait),
        )
        return replies.greylisted(verdict.wait)

    async def handle_DATA(self, server: Any, session: RelentadSession, envelope: Envelope) -> str:
        tx = transaction_of(session)
        raw = envelope.original_content or b""
        tls_version, tls_cipher = tls_info(session)
        source = trace.Source(
            peer_ip=session.peer[0] if session.peer else "",
            helo=session.host_name or "",
            protocol=trace.with_protocol(
                extended=session.extended_smtp,
                tls=tls_version is not None,
                authenticated=False,
                smtputf8=envelope.smtp_utf8,
            ),
            tls_version=tls_version,
            tls_cipher=tls_cipher,
        )
        delivery = Delivery(
            raw=raw,
            mail_from=tx.mail_from,
            placements=list(tx.placements.values()),
            source=source,
            transaction_id=tx.id,
            verify_sender=True,
            check_quota=True,
            refuse_partial=True,
            dnsbl=tx.dnsbl,
            forwards=list(tx.forwards.values()),
            archive=self.get_context().config.retention.archive,
        )
        now = time.time()
        report = reports.delivered_report(tx, raw, self.get_context().config.server.hostname, now)
        filed: list[Stored] = []  # the report's copies, when the sender is one of ours
        if report is not None:
            write = await self._report_write(tx, report, now, filed)
            if write is not None:
                delivery.also.append(functools.partial(_gated, write=write, tx=tx, delivery=delivery))
        reply = await outcome_reply(tx, self._deliver(delivery, tx))
        if reply.startswith("250"):
            if filed:
                self.pipeline.publish(filed)
            elif report is not None:
                self.queued()
        log_transaction(session, tx, reply, len(raw))
        session.tx = None
        return reply

    async def _deliver(self, delivery: Delivery, tx: Transaction) -> str:
        stored = await self.pipeline.deliver(delivery)
        await quotawarn.warn_if_due(self.pipeline, self.store, sorted({s.account_id for s in stored}))
        return f"250 2.0.0 OK delivered as {tx.id}"

    async def _report_write(
        self, tx: Transaction, report: bytes, now: float, filed: list[Stored]
    ) -> Callable[[sqlite3.Connection], object] | None:
        """The write that gets the "delivered" report to the sender, for the copies' transaction: filed into its
        INBOX when it is one of our users (never queued to ourselves), else queued with the null sender (nobody's
        account sends it), DKIM-signed for MAILER-DAEMON@<hostname>'s domain when we have a key for it. None for an
        unknown user of a hosted domain."""
        postmaster = self.get_context().config.server.postmaster
        sender = self.store.read(lambda conn: accounts.resolve_recipient(conn, tx.mail_from, postmaster))
        if sender.kind is accounts.RecipientKind.UNKNOWN_USER:
            log.info("smtp tx=%s no delivered report: <%s> is nobody here", tx.id, trace.clean(tx.mail_from))
            return None
        if sender.kind is accounts.RecipientKind.LOCAL:
            if not sender.account_ids:
                return None  # an alias that only forwards: nobody here to file it for
            to = delivered_to(tx.mail_from)
        else:
            to = tx.mail_from
        job = await self.pipeline.report_write(report, to, sender.account_ids, f"dsn-{tx.id}", now)

        def write(conn: sqlite3.Connection) -> None:
            filed[:] = job(conn)  # assigned, not added: the transaction may run again (pipeline.deliver)

        return write


def _srs_refused(tx: Transaction, address: str, why: str, reply: str) -> str:
    """Count and log a refused recipient at an SRS address; ``reply``."""
    metrics.srs_bounce("refused")
    log.info("smtp tx=%s refused <%s>: %s", tx.id, trace.clean(address), why)
    return reply


def _gated(
    conn: sqlite3.Connection, *, write: Callable[[sqlite3.Connection], object], tx: Transaction, delivery: Delivery
) -> None:
    """Run the report's ``write`` unless the client is not the sender domain's (SPF did not pass): the report
    would go to whoever was forged."""
    if delivery.auth is not None and delivery.auth.spf.result != "pass":
        log.info(
            "smtp tx=%s no delivered report: SPF %s for <%s>",
            tx.id,
            delivery.auth.spf.result,
            trace.clean(tx.mail_from),
        )
        return
    write(conn)


def declared_size(options: list[str]) -> int:
    """The message size the client declared with MAIL FROM's SIZE= (RFC 1870), 0 when it did not."""
    for option in options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0


def _has_room(conn: sqlite3.Connection, account_id: int, size: int) -> bool:
    """The account can take a message of the declared ``size`` (RFC 1870 §6.2 lets RCPT refuse per recipient
    when it cannot); without a declared size, whether it is not full already."""
    return not (quota.would_exceed(conn, account_id, size) if size else quota.is_full(conn, account_id))


def _known_sender(conn: sqlite3.Connection, sender: str, accounts: tuple[int, ...]) -> bool:
    """Is ``sender`` a confirmed contact of one of ``accounts`` (someone its user wrote to) or on its allow-list?"""
    normal = participants.normalize(sender)
    for account_id in accounts if normal else ():
        known = contacts.lookup(conn, account_id, normal)
        if (known is not None and known.confirmed) or senderlists.decision(conn, account_id, normal) == "allow":
            return True
    return False
