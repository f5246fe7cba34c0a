"""The delivery pipeline: the one path every incoming message takes (SMTP, local submission, imports).

Each step is a small function that reads the :class:`Delivery` and adds its decision to it (DESIGN.md §1):
authenticate (SPF/DKIM/DMARC; the evaluation noted for DMARC reports with ``[dmarc] send_reports``), classify
(spam), read DMARC and TLS reports (only for mail to a ``[reports]`` address), sort (CRM, rules), charge quota —
then the store writes everything in ONE transaction and, only after it committed, the change bus is told. Protocol
modules call :func:`deliver` and hold no policy of their own.

Invariant: when :func:`deliver` returns, every placement is durably committed; when it raises, nothing of this
delivery is stored.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import attachments, dnsbl, forwarding, headers, mailauth, message, metrics, mimetree, quota, trace
from .authreports import intake, outgoing
from .config import AttachmentsConfig, Config
from .crm import participants, vacation
from .crm.sorter import FilingFailed, Sorter
from .dns import Resolvers, make_resolvers
from .dnsbl import Blocklists, Listing
from .errors import LimitReached, SMTPReply
from .events import Bus, MessageAdded
from .lifecycle import archive
from .queue import queue
from .queue.dkimkeys import KeyRing
from .spam import storage as spam_storage
from .spam import tokenize as tokenize_mod
from .spam import verdicts as spam_verdicts
from .spam.tokenize import tokenize
from .store import accounts, acl, db, imapwrite, mailboxes, messages
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
    outgoing: bool = False  # the sender's own copy of mail it sent (Sent): the CRM counts it "out"
    headers: list[bytes] = field(default_factory=list)  # fields only this copy gets (X-Spam-Score/-Status)
    rejected: str = ""  # a Sieve reject's reason: refused at SMTP time when every copy is (see Pipeline.reject)
    # The message this copy files when the account's rules edited its header (Sieve editheader), with its parsed
    # structure; None: the delivery's own
    raw: bytes | None = None
    structure: str | None = None


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
    verify_sender: bool = False  # mail from the world: check SPF/DKIM/DMARC before filing
    archive: bool = False  # [retention] archive: each received copy is archived with it (lifecycle/archive.py)
    # Skip copies for accounts the message would take over their disk quota or message limit, checked in the commit
    # transaction (exact; the sender's own Sent copy is never skipped); when no recipient's copy is left, the
    # commit raises SMTPReply 552 5.2.2 and nothing is stored — unless ``refuse_when_full`` is off (submission
    # whose message also goes to remote recipients: it bounces the skipped copies). The skipped placements end up
    # in ``over_quota``.
    check_quota: bool = False
    refuse_when_full: bool = True
    # With ``check_quota``: one copy that does not fit refuses the whole message (SMTPReply 452 4.2.2, nothing
    # stored) — the MX, which may neither drop a copy after 250 (RFC 5321 §6.1) nor bounce it (backscatter);
    # the sender's retry then finds the full mailbox refused at RCPT and the others get the message.
    refuse_partial: bool = False
    over_quota: list[Placement] = field(default_factory=list)
    headers: list[bytes] = field(default_factory=list)  # fields every copy gets (Authentication-Results)
    # Each copy gets our Received field; off when the message already carries ours for this hop (submission stamps
    # its own, without the client's address under [submission] hide_client_ip): one hop, one Received.
    add_received: bool = True
    auth: mailauth.AuthResult | None = None
    dnsbl: Listing | None = None  # the MX client is on a blocklist and ``[dnsbl] action`` is "junk"
    tokens: frozenset[str] | None = None  # the spam tokenizer's, once worked out (Pipeline.tokens)
    # Writes that must commit in the same transaction as the copies (submission's queue entries, a bounce's
    # queue result): they run on the writer thread after the copies are filed.
    also: list[Callable[[sqlite3.Connection], object]] = field(default_factory=list)
    parsed: message.ParsedMessage | None = None  # what ``structure`` holds, when this process parsed it
    # Submission: every envelope recipient. The CRM files those To and Cc do not name as the sender's Bcc
    # recipients (the Bcc field itself is removed before any copy, the Sent copy too, is stored).
    recipients: tuple[str, ...] = ()
    # Writes that need the rows just filed (the CRM's links), in the same transaction, after ``also``.
    linked: list[Callable[[sqlite3.Connection, list[Stored]], object]] = field(default_factory=list)
    replies: list[vacation.Reply] = field(default_factory=list)  # the rules' vacation replies (crm/vacation.py)
    # Their writes (queue entry or local filing, tracking), last in the transaction; each in its own savepoint, so
    # a failing one is logged and never costs the message
    responses: list[Callable[[sqlite3.Connection, list[Stored]], object]] = field(default_factory=list)
    # Forwards elsewhere (aliases with targets outside, Sieve redirects, SRS bounces): queued with the copies
    forwards: list[forwarding.Forward] = field(default_factory=list)
    junked: str = ""  # why a message-wide check (DMARC, a blocklist) filed every copy into Junk: never forwarded
    # The forwards' queue writes (forwarding.enqueue: False when a redirect would pass its account's send limits),
    # first in the transaction; the ones that returned False, whose fallback copies are filed instead
    forward_writes: list[tuple[forwarding.Forward, Callable[[sqlite3.Connection], bool]]] = field(default_factory=list)
    over_limit: list[forwarding.Forward] = field(default_factory=list)


@dataclass(frozen=True)
class Stored:
    account_id: int
    mailbox_id: int
    uid: int
    modseq: int
    message_id: int = 0  # messages.id of the copy
    blob_id: int = 0
    new_blob: bool = False  # the blob was inserted by this delivery: nothing else can refer to it yet


def _prefix(delivery: Delivery, placement: Placement, hostname: str) -> bytes:
    return (
        trace.return_path(delivery.mail_from)
        + trace.delivered_to(placement.address)
        + b"".join(delivery.headers)
        + b"".join(placement.headers)
        + (_received(delivery, placement.address, hostname) if delivery.add_received else b"")
    )


def _received(delivery: Delivery, recipient: str, hostname: str) -> bytes:
    return trace.received(
        delivery.source,
        hostname=hostname,
        transaction_id=delivery.transaction_id,
        recipient=recipient,
        when=delivery.received_at,
    )


def _new_mailbox(conn: sqlite3.Connection, placement: Placement) -> tuple[int, int, int]:
    """A UID in the mailbox a rule files into, made (with its missing levels) now; INBOX when the account holds
    as many mailboxes as it may (a rule naming folders from the sender's text must not stop delivery)."""
    try:
        mailbox_id = imapwrite.create_mailbox(conn, placement.account_id, placement.mailbox)
    except LimitReached as exc:
        log.warning("account %s: %s not made, filed into INBOX: %s", placement.account_id, placement.mailbox, exc)
        placement.reasons.append(f"{placement.mailbox} not made ({exc}): INBOX")
        found = mailboxes.allocate_uid_in(conn, placement.account_id, mailboxes.INBOX)
        assert found is not None  # INBOX always exists
        return found
    return (mailbox_id, *mailboxes.allocate_uid(conn, mailbox_id))


def _commit_job(delivery: Delivery, hostname: str) -> Callable[[sqlite3.Connection], list[Stored]]:
    """The write job: runs on the store's writer thread inside the group-commit transaction."""

    def job(conn: sqlite3.Connection) -> list[Stored]:
        delivery.over_limit = [forward for forward, write in delivery.forward_writes if not write(conn)]
        placements = delivery.placements + [p for forward in delivery.over_limit for p in forward.fallback]
        # a message only forwarded (an alias whose targets are all elsewhere) leaves no blob behind; a copy the
        # rules edited files a blob of its own
        blobs: dict[bytes, tuple[int, bool]] = {}
        stored = []
        delivery.over_quota = []
        for placement in placements:
            raw = delivery.raw if placement.raw is None else placement.raw
            if raw not in blobs:
                structure = delivery.structure if placement.raw is None else placement.structure
                blobs[raw] = messages.put_blob(conn, raw, structure)
            blob_id, new_blob = blobs[raw]
            prefix = _prefix(delivery, placement, hostname)
            size = len(prefix) + len(raw)
            if delivery.check_quota and not placement.outgoing and quota.would_exceed(conn, placement.account_id, size):
                delivery.over_quota.append(placement)
                continue  # that account is full; the others still get their copy (quota.py)
            found = mailboxes.allocate_uid_in(conn, placement.account_id, placement.mailbox)
            if found is None and acl.in_namespace(placement.mailbox):
                # a rule filing into "Shared/<owner>/...": an own folder of that name would be hidden behind the
                # shared namespace (and rules never write into others' mailboxes), so the message stays in INBOX
                found = mailboxes.allocate_uid_in(conn, placement.account_id, mailboxes.INBOX)
            if found is None:  # a rule's folder, a missing Sent: made with any missing parent levels
                found = _new_mailbox(conn, placement)
            mailbox_id, uid, modseq = found
            row_id = messages.append(
                conn,
                mailbox_id,
                blob_id,
                prefix=prefix,
                size=size,
                internaldate=delivery.received_at,
                flags=placement.flags,
                keywords=" ".join(placement.keywords),
                slot=(uid, modseq),
            ).row_id
            stored.append(Stored(placement.account_id, mailbox_id, uid, modseq, row_id, blob_id, new_blob))
            if delivery.archive and not placement.outgoing:  # the Sent copy: the submission archives what it sent
                archive.record(
                    conn,
                    account_id=placement.account_id,
                    direction="in",
                    blob_id=blob_id,
                    prefix=prefix,
                    raw=raw,
                    mail_from=delivery.mail_from,
                    recipients=[placement.address],
                    parsed=delivery.parsed,
                    now=delivery.received_at,
                )
        checked = sum(not p.outgoing for p in placements) if delivery.check_quota else 0
        if checked and delivery.refuse_when_full and len(delivery.over_quota) == checked:
            # no recipient's copy fits: raising rolls this job back (its savepoint), the Sent copy too
            raise SMTPReply(552, "5.2.2", "Mailbox full: the message would exceed the quota")
        if delivery.over_quota and delivery.refuse_partial:
            raise SMTPReply(452, "4.2.2", "Mailbox full for some recipients, try again later")
        for write in delivery.also:
            write(conn)
        for link in delivery.linked:
            link(conn, stored)
        for respond in delivery.responses:
            with db.on_the_side(conn, log, "vacation: the reply failed; the message is stored without it"):
                respond(conn, stored)
        return stored

    return job


def _nested_job(conn: sqlite3.Connection, *, delivery: Delivery, hostname: str) -> list[Stored]:
    """A report's commit job inside another's: a failure of its CRM writes rolls back only them (its own
    savepoint) and files it unsorted, as :meth:`Pipeline.deliver` does, instead of failing what it reports."""
    conn.execute("SAVEPOINT report")
    try:
        stored = _commit_job(delivery, hostname)(conn)
    except FilingFailed:
        log.exception("crm: filing of a report failed; the report is stored unfiled")
        conn.execute("ROLLBACK TO report")
        delivery.linked.clear()
        stored = _commit_job(delivery, hostname)(conn)
    conn.execute("RELEASE report")
    return stored


def file_all(delivery: Delivery, mailbox: str, reason: str) -> None:
    """Send every copy to ``mailbox`` (e.g. Junk), recording why (and that the message is not to be forwarded)."""
    delivery.junked = delivery.junked or reason
    for placement in delivery.placements:
        placement.mailbox = mailbox
        placement.reasons.append(reason)


def check_attachments(delivery: Delivery, policy: AttachmentsConfig) -> None:
    """Mail from the world with an attachment that can run programs (attachments.py): refused with 554 5.7.0
    naming the file (``[attachments] action = "refuse"``), or every copy filed into Junk ("junk")."""
    parsed = delivery.parsed if delivery.parsed is not None else message.parse(delivery.raw)
    data = mimetree.normalize_crlf(delivery.raw) if parsed.needs_crlf else delivery.raw
    found = attachments.find(data, parsed.tree, frozenset(policy.blocked), look_inside=policy.look_inside_archives)
    if found is None:
        return
    log.info("tx=%s attachment %s: %s", delivery.transaction_id, found.describe(), policy.action)
    if policy.action == "refuse":
        raise found.refusal()
    file_all(delivery, mailboxes.JUNK, "attachment-blocked")


def strip_forged_fields(raw: bytes, *, spam: bool) -> bytes:
    """``raw`` without the fields only this server writes (``X-DNSBL``, and the spam verdict's with ``spam``), in
    one pass over the header: a sender must not pre-set a listing or a verdict that users, clients or Sieve
    scripts would trust."""
    ours = spam_verdicts.STATUS_FIELDS | {dnsbl.FIELD} if spam else frozenset({dnsbl.FIELD})
    return headers.without_fields(raw, lambda name, _: name in ours)


def file_blocklisted(delivery: Delivery, listing: Listing) -> None:
    """Mail from a blocklisted client (``[dnsbl] action = "junk"``) or linking to a blocklisted domain: every copy
    into Junk, the listing recorded in an ``X-DNSBL`` field so that the user sees why."""
    delivery.headers.append(listing.field())
    file_all(delivery, mailboxes.JUNK, f"dnsbl-{listing.zone}")


async def authenticate(delivery: Delivery, config: Config, resolvers: Resolvers) -> None:
    """Step 1: who really sent it. Records Authentication-Results; applies the DMARC policy (RFC 7489 §6.7).

    A p=reject failure raises SMTPReply 550 5.7.1 when ``mailauth.dmarc_reject`` is on (the SMTP layer refuses
    the message at DATA, so the sender learns of it); p=quarantine failures are filed into Junk.
    """
    hostname = config.server.hostname
    delivery.raw = mailauth.strip_forged_results(delivery.raw, hostname)
    result = await mailauth.authenticate(
        delivery.raw,
        peer_ip=delivery.source.peer_ip,
        helo=delivery.source.helo,
        mail_from=delivery.mail_from,
        authserv_id=hostname,
        resolvers=resolvers,
    )
    delivery.auth = result
    delivery.headers.append(result.header(fold=True).encode("utf-8", "surrogateescape") + b"\r\n")
    disposition = result.dmarc.disposition if result.dmarc_failed else "none"
    if disposition == "reject" and config.mailauth.dmarc_reject:
        raise SMTPReply(550, "5.7.1", f"Message rejected by the DMARC policy of {result.dmarc.from_domain}")
    if disposition in ("reject", "quarantine"):
        file_all(delivery, mailboxes.JUNK, f"dmarc-{disposition}")


class Pipeline:
    """Runs the steps and the commit; one instance per daemon, shared by every listener."""

    def __init__(self, store: Store, bus: Bus, config: Config) -> None:
        self.store = store
        self.bus = bus
        self.sorter = Sorter()
        self.spam_counts = spam_storage.CountCache()  # token rows read while scoring, kept while valid
        self.keyring: KeyRing | None = None  # DKIM keys for the vacation replies (the daemon's)
        self.queued: Callable[[], None] = lambda: None  # wakes the queue runner after a reply was queued
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Take a (re)loaded configuration: hostname, checks, resolvers."""
        self.config = config
        self.hostname = config.server.hostname
        self.sorter.unassigned = config.crm.unassigned_keyword
        self.sorter.hostname = config.server.hostname
        self.sorter.user_forwarding = config.web.user_forwarding
        self.resolvers = make_resolvers(config.dns.nameservers, config.dns.timeout)
        self.blocklists = Blocklists(config.dnsbl.zones, self.resolvers.aio, config.dnsbl.domain_zones)
        self.report_addresses = intake.Addresses.of(config.reports.addresses)

    async def deliver(self, delivery: Delivery) -> list[Stored]:
        """Run the steps, then file the message for every placement; returns once durably committed.

        Raises SMTPReply when a step refuses the message (nothing is stored then).
        """
        if delivery.verify_sender and self.config.mailauth.verify:
            try:
                await authenticate(delivery, self.config, self.resolvers)
            except SMTPReply:
                await self.note_evaluation(delivery, refused=True)
                raise
            await self.note_evaluation(delivery, refused=False)
        if delivery.dnsbl is not None:
            file_blocklisted(delivery, delivery.dnsbl)
        elif delivery.verify_sender and self.blocklists.domain_zones:
            await self.check_links(delivery)
        if delivery.verify_sender:  # after the DKIM checks: a signature may cover them
            delivery.raw = strip_forged_fields(delivery.raw, spam=self.config.spam.enabled)
        if delivery.structure is None:  # parsed once here; IMAP serves ENVELOPE/BODYSTRUCTURE/sections from it
            delivery.parsed = message.parse(delivery.raw)
            delivery.structure = delivery.parsed.to_json()
        if delivery.verify_sender and self.config.attachments.action != "off":
            check_attachments(delivery, self.config.attachments)
        if delivery.verify_sender and self.config.spam.enabled:
            self.classify(delivery)
        if delivery.verify_sender:
            to_reports = self.report_addresses.match(p.address for p in delivery.placements)
            if to_reports:
                await self.take_reports(delivery, to_reports)
        if self.config.crm.enabled:
            self.sort(delivery)
            self.reject(delivery)
        queued = await self.forward(delivery) if delivery.forwards else []
        filed: list[list[Stored]] = []  # each local vacation reply's copies, once committed
        for reply in delivery.replies:
            filed.append([])
            redirected = any(f.account_id == reply.account_id for f in queued)  # its copy may have gone elsewhere
            delivery.responses.append(await self.respond(reply, delivery.transaction_id, filed[-1], redirected))
        try:
            stored = await self.store.write(_commit_job(delivery, self.hostname))
        except FilingFailed:  # rolled back with the job: store the message without the CRM's writes
            log.exception("crm: filing of a message failed; the message is stored unfiled")
            delivery.linked.clear()
            stored = await self.store.write(_commit_job(delivery, self.hostname))
        self.publish(stored + [s for copies in filed for s in copies])
        if queued:
            _note_queued(delivery, queued)
        if delivery.replies or queued:
            self.queued()  # a reply may have been queued; an idle wake is harmless
        return stored

    async def forward(self, delivery: Delivery) -> list[forwarding.Forward]:
        """The forwarding step (forwarding.py), last before the commit: refuse a loop (554 5.4.6), leave out what
        must not be forwarded, and add the queue writes of the others to the delivery's transaction."""
        loop = forwarding.loop_reason(delivery.raw, [f.via for f in delivery.forwards if f.kind != "srs"])
        if loop is not None:
            raise SMTPReply(554, "5.4.6", loop)
        queued = []
        verified = forwarding.sender_verified(delivery.auth, delivery.mail_from)
        # each address elsewhere gets one copy however many aliases name it; only aliases: a redirect may still be
        # held back by its account's send limit at commit (its copy is then kept), and a later one must not rely on it
        sent: set[str] = set()
        for forward in delivery.forwards:
            why = self.withheld(delivery, forward)
            if why:
                _note_forward(delivery, forward, "withheld", f"withheld: {why}")
                delivery.placements.extend(forward.fallback)
                continue
            if forward.kind == "alias":
                targets = tuple(t for t in forward.targets if t.lower() not in sent)
                if not targets:
                    _note_forward(delivery, forward, "duplicate", f"→ {', '.join(forward.targets)}: already forwarded")
                    continue
                forward.targets = targets
                sent.update(t.lower() for t in targets)
            trace_fields = b"".join(delivery.headers)
            if delivery.add_received:  # submission's message carries its Received for this hop already
                trace_fields += _received(delivery, forward.via, self.hostname)
            raw = forwarding.prepared(forward.raw or delivery.raw, forward.via, trace_fields)
            if self.keyring is not None and delivery.auth is not None:  # an ARC set over the results we checked
                domain = forward.via.rpartition("@")[2]
                keys = self.keyring.aligned(domain) or self.keyring.aligned(self.hostname)
                if keys is not None:
                    raw = await asyncio.to_thread(forwarding.seal, raw, keys, self.hostname)
            sender = self.store.read(
                functools.partial(
                    forwarding.srs_sender, mail_from=delivery.mail_from, via=forward.via, verified=verified
                )
            )
            delivery.forward_writes.append(
                (
                    forward,
                    functools.partial(
                        forwarding.enqueue,
                        forward=forward,
                        mail_from=sender,
                        data=raw,
                        transaction_id=f"fwd-{delivery.transaction_id}",
                        now=delivery.received_at,
                        bounce=verified,
                    ),
                )
            )
            queued.append(forward)
        return queued

    def withheld(self, delivery: Delivery, forward: forwarding.Forward) -> str:
        """Why ``forward`` must not leave ("" when it may): a message-wide Junk verdict, or spam — the local copy's
        verdict for an alias that also reaches accounts here (the sorter already kept a redirect of a Junk copy),
        else the global model's."""
        if delivery.junked:
            return delivery.junked
        if forward.kind == "redirect":
            return ""
        local = [p for p in delivery.placements if p.address == forward.via and not p.outgoing]
        if local:
            junk = [p for p in local if p.mailbox == mailboxes.JUNK]
            return "the local copy is in Junk" if junk else ""
        if not (delivery.verify_sender and self.config.spam.enabled):
            return ""
        try:
            parsed = delivery.parsed or message.ParsedMessage.from_json(delivery.structure or "")
            judge = functools.partial(
                spam_verdicts.judge,
                account_id=0,  # no account: the global model alone
                tokens=self.tokens(delivery),
                spam=self.config.spam,
                sender=participants.sender(parsed),
                cache=self.spam_counts,
            )
            judgement = self.store.read(judge)
        except Exception:
            log.exception("spam: judging a forward failed; it is forwarded unscored")
            return ""
        metrics.spam_verdict(judgement.verdict)
        return f"spam ({judgement.reason()})" if judgement.verdict == "spam" else ""

    async def report_write(
        self, raw: bytes, to: str, account_ids: Sequence[int], transaction_id: str, now: float
    ) -> Callable[[sqlite3.Connection], list[Stored]]:
        """The write that gets a report of ours (from MAILER-DAEMON, the null sender) to ``to``, in the transaction
        of what it reports: filed into the INBOX of ``account_ids`` when ``to`` is one of ours (never queued to
        ourselves), else queued, DKIM-signed for the hostname's domain when there is a key (a broken key: unsigned).
        The caller publishes the copies."""
        if account_ids:
            return self.filing(raw, [Placement(a, to) for a in account_ids], transaction_id, now)
        if self.keyring is not None:
            try:
                raw = await self.keyring.sign(raw, self.hostname, aligned=True)
            except Exception as exc:  # a broken key: the report goes unsigned, what it reports on is not held up
                log.error("tx=%s DKIM signing of a report to <%s> failed: %s", transaction_id, trace.clean(to), exc)

        def send(conn: sqlite3.Connection) -> list[Stored]:
            queue.enqueue(
                conn, account_id=None, mail_from="", data=raw, recipients=[to], transaction_id=transaction_id, now=now
            )
            return []

        return send

    async def respond(
        self, reply: vacation.Reply, transaction_id: str, filed: list[Stored], redirected: bool = False
    ) -> Callable[[sqlite3.Connection, list[Stored]], object]:
        """The write that sends a vacation reply with the message it answers, when that account's copy was stored
        and the tracking allows (:func:`vacation.claim`): filed into the INBOX of a local sender (as submission
        does for local mail), else queued with the null envelope sender (RFC 5230 §5.7, RFC 3834 §3.3), DKIM-signed
        for the From domain when it has a key."""
        sender = self.store.read(functools.partial(accounts.resolve_recipient, address=reply.to))
        transaction = f"vacation-{transaction_id}-{reply.account_id}"
        send: Callable[[sqlite3.Connection], object] | None = None
        if sender.kind is accounts.RecipientKind.LOCAL:
            placements = [Placement(a, reply.to) for a in sender.account_ids]
            job = self.filing(reply.raw, placements, transaction, time.time())

            def send(conn: sqlite3.Connection) -> None:
                filed[:] = job(conn)  # assigned, not added: the transaction may run again

        elif sender.kind is accounts.RecipientKind.NOT_HOSTED:
            raw = reply.raw
            if self.keyring is not None:
                try:
                    raw = await self.keyring.sign(raw, reply.from_address.rpartition("@")[2])
                except Exception as exc:  # a broken key: the reply goes unsigned
                    log.error("vacation: DKIM signing failed: %s", exc)

            def send(conn: sqlite3.Connection) -> None:
                queue.enqueue(
                    conn,
                    account_id=reply.account_id,
                    mail_from="",
                    data=raw,
                    recipients=[reply.to],
                    transaction_id=transaction,
                )

        def write(conn: sqlite3.Connection, stored: list[Stored]) -> None:
            if not redirected and not any(s.account_id == reply.account_id for s in stored):
                return  # that account's copy was not stored (over quota) nor redirected: no reply for it
            why = f"<{trace.clean(reply.to)}> is nobody here" if send is None else ""
            why = why or vacation.claim(conn, reply, time.time())
            if why:
                log.info("vacation: no reply to <%s>: %s", trace.clean(reply.to), why)
                return
            assert send is not None
            send(conn)
            log.info("vacation: reply to <%s> from <%s>", trace.clean(reply.to), reply.from_address)

        return write

    async def note_evaluation(self, delivery: Delivery, *, refused: bool) -> None:
        """``[dmarc] send_reports``: record the DMARC evaluation for the daily aggregate report, with the copies (or
        alone, for a message refused at DATA). Never changes what happens to the message: a failure is logged."""
        if not self.config.dmarc.send_reports or delivery.auth is None:
            return
        row = outgoing.evaluation(
            delivery.auth, source_ip=delivery.source.peer_ip, refused=refused, now=delivery.received_at
        )
        if row is None:
            return
        if not refused:
            delivery.also.append(functools.partial(outgoing.insert, row=row))
            return
        try:
            await self.store.write(functools.partial(outgoing.insert, row=row))
        except Exception:
            log.exception("reports: recording the DMARC evaluation of a refused message failed")

    async def take_reports(self, delivery: Delivery, to_reports: list[str]) -> None:
        """Mail to a report address (``[reports] addresses``): read the DMARC or TLS-RPT reports it carries (in a
        worker thread, bounded by ``[reports] max_size``) and record them with the copies (authreports/intake.py).
        Never refuses or delays the message beyond reading it: a failure is logged and the message filed as usual."""
        if not intake.trusted(delivery.auth):
            assert delivery.auth is not None
            dmarc = delivery.auth.dmarc
            log.info(
                "reports: tx=%s not read: DMARC %s for %s", delivery.transaction_id, dmarc.result, dmarc.from_domain
            )
            return
        try:
            letter, found = await asyncio.to_thread(intake.read, delivery.raw, self.config.reports.max_size)
        except Exception:
            log.exception("reports: reading failed; the message is delivered as usual")
            return
        if found:
            fallback = to_reports[0].rpartition("@")[2]
            received = delivery.received_at
            delivery.also.append(
                functools.partial(
                    intake.record, letter=letter, found=found, received=received, fallback_domain=fallback
                )
            )

    def publish(self, stored: list[Stored]) -> None:
        """Tell the change bus (IMAP IDLE) about copies that were committed."""
        self.bus.publish([MessageAdded(s.account_id, s.mailbox_id, s.uid, s.modseq) for s in stored])

    def filing(
        self,
        raw: bytes,
        placements: list[Placement],
        transaction_id: str,
        received_at: float,
        conn: sqlite3.Connection | None = None,
    ) -> Callable[[sqlite3.Connection], list[Stored]]:
        """The write that files ``raw``, a message this server wrote itself (a report, from the null sender), inside
        another delivery's transaction (one of its ``also``), so that it is committed exactly when what it reports
        is. Of the steps only the CRM applies (a user's rules may file reports; no sender to check, no spam): sorted
        now, or on ``conn`` when called inside that transaction. The caller publishes the copies."""
        delivery = Delivery(
            raw=raw,
            mail_from="",
            placements=placements,
            source=trace.Source(peer_ip="127.0.0.1", helo=self.hostname, protocol="local"),
            transaction_id=transaction_id,
            received_at=received_at,
        )
        delivery.parsed = message.parse(raw)
        delivery.structure = delivery.parsed.to_json()
        if self.config.crm.enabled:
            if conn is None:
                self.sort(delivery)
            else:
                sort_step(self.sorter, conn, delivery)
        for forward in delivery.forwards:  # a report is never forwarded: a rule's redirect keeps it here instead
            delivery.placements.extend(forward.fallback)
        delivery.forwards.clear()
        return functools.partial(_nested_job, delivery=delivery, hostname=self.hostname)

    async def check_links(self, delivery: Delivery) -> None:
        """``[dnsbl] domain_zones``: a message linking to a listed domain goes to Junk (the links come from the spam
        tokenizer, whose tokens the spam step then reuses)."""
        domains = dnsbl.link_domains(tokenize_mod.link_hosts(self.tokens(delivery)))
        listing = await self.blocklists.check_domains(domains) if domains else None
        if listing is not None:
            metrics.dnsbl_listed("domain", listing.zone)
            file_blocklisted(delivery, listing)

    def tokens(self, delivery: Delivery) -> frozenset[str]:
        """The spam tokenizer's tokens of the message as filed (with the fields every copy gets), once."""
        if delivery.tokens is None:
            delivery.tokens = tokenize(b"".join(delivery.headers) + delivery.raw, own_hosts=(self.hostname,))
        return delivery.tokens

    def classify(self, delivery: Delivery) -> None:
        """Step 2, spam (spam/): score each recipient account's copy with its model (plus the global one), record
        X-Spam-Score/-Status on that copy, file spam into Junk with ``$Junk`` (not when the sender is a contact
        the account wrote to), mark unsure mail with ``[spam] unsure_keyword``; a model short of ``[spam]
        min_trained`` messages of a class files nothing (``untrained``). Never refuses mail: a failure is logged and
        the message filed unscored."""
        spam = self.config.spam
        try:
            tokens = self.tokens(delivery)
            parsed = delivery.parsed or message.ParsedMessage.from_json(delivery.structure or "")
            sender = participants.sender(parsed)
            trusted = delivery.auth is None or not delivery.auth.dmarc_failed
            judged: dict[int, spam_verdicts.Judgement] = {}
            for placement in delivery.placements:
                if placement.outgoing:
                    continue
                judgement = judged.get(placement.account_id)
                if judgement is None:
                    judge = functools.partial(
                        spam_verdicts.judge,
                        account_id=placement.account_id,
                        tokens=tokens,
                        spam=spam,
                        sender=sender,
                        sender_trusted=trusted,
                        cache=self.spam_counts,
                    )
                    judgement = judged[placement.account_id] = self.store.read(judge)
                    metrics.spam_verdict(judgement.verdict)
                    if judgement.stale:
                        touch = functools.partial(
                            spam_storage.touch, account_id=placement.account_id, tokens=judgement.stale
                        )
                        delivery.also.append(touch)
                placement.headers.append(judgement.header())
                placement.reasons.append(judgement.reason())
                keyword = spam_verdicts.JUNK_KEYWORD if judgement.to_junk else ""
                if judgement.to_junk:
                    placement.mailbox = mailboxes.JUNK
                elif judgement.verdict == "unsure":
                    keyword = spam.unsure_keyword
                if keyword and keyword.lower() not in (k.lower() for k in placement.keywords):
                    placement.keywords.append(keyword)
        except Exception:
            log.exception("spam: classifying failed; the message is filed unscored")

    @staticmethod
    def reject(delivery: Delivery) -> None:
        """Sieve reject / ereject (RFC 5429 §2.1): while the MX's DATA waits for its reply, a message that every copy's
        rules reject (one recipient, or all of them) and that is forwarded nowhere is refused with 550 5.7.1 and
        the reason; nothing is stored and the sending server tells its sender — no bounce of ours, so no
        backscatter. Otherwise (other recipients take it, or it came by submission) the rejecting copies are kept
        as if there had been no reject, with a log line: a bounce after the 250 could go to a forged sender."""
        rejected = [p for p in delivery.placements if p.rejected]
        if not rejected:
            return
        if delivery.verify_sender and not delivery.forwards and len(rejected) == len(delivery.placements):
            log.info("sieve: tx %s rejected by the rules: %s", delivery.transaction_id, rejected[0].rejected)
            raise SMTPReply(550, "5.7.1", _reply_text(rejected[0].rejected))
        for placement in rejected:
            placement.reasons.append("reject not done: the message is taken for others or was submitted; kept")
            log.info("sieve: reject of tx %s not done at SMTP time; the copy is kept", delivery.transaction_id)

    def sort(self, delivery: Delivery) -> None:
        """Step 3, the CRM (crm/sorter.py): rules choose folders and flags now; contacts, threads and links are
        written with the copies. Never refuses mail: a sorter failure is logged and the message filed unsorted."""
        self.store.read(functools.partial(sort_step, self.sorter, delivery=delivery))


def _note_forward(delivery: Delivery, forward: forwarding.Forward, outcome: str, what: str) -> None:
    """Count and log what became of one forward (``outcome``: queued or withheld)."""
    metrics.forwarded(forward.kind, outcome)
    log.info("forward tx=%s %s <%s> %s", delivery.transaction_id, forward.kind, trace.clean(forward.via), what)


def _note_queued(delivery: Delivery, queued: list[forwarding.Forward]) -> None:
    """Once committed: each forward queued, or withheld after all for its account's send limit (the writer's check)."""
    verified = forwarding.sender_verified(delivery.auth, delivery.mail_from)
    unverified = "" if verified else " (sender unverified: no bounce)"
    for forward in queued:
        if any(forward is o for o in delivery.over_limit):
            _note_forward(delivery, forward, "withheld", "withheld: the account's send limit is reached")
        else:
            targets = ",".join(f"<{trace.clean(t)}>" for t in forward.targets)
            _note_forward(delivery, forward, "queued", f"→ {targets}{unverified}")


def _reply_text(reason: str) -> str:
    """A reject reason as the text of one SMTP reply line: printable ASCII, whitespace runs folded, bounded."""
    text = " ".join(reason.split()).encode("ascii", "replace").decode("ascii")
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:400] or "Rejected"


def sort_step(sorter: Sorter, conn: sqlite3.Connection, delivery: Delivery, *, keep_copies: bool = False) -> None:
    """The CRM step on ``conn`` (the pipeline's reader; ``relentad import``'s write transaction): plan the copies
    and add the job that files the message to ``delivery.linked``. ``keep_copies``: an import — no rules, no
    unassigned keyword (:meth:`Sorter.plan`). Never raises: a failure is logged and the message filed unsorted."""
    try:
        parsed = delivery.parsed or message.ParsedMessage.from_json(delivery.structure or "")
        record = sorter.plan(conn, delivery, parsed, keep_copies=keep_copies)
    except Exception:
        log.exception("crm: sorting failed; the message is filed unsorted")
        return
    if record is not None:
        delivery.linked.append(record)
