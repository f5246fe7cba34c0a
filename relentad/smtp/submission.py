"""SMTP submission (587 with STARTTLS, 465 with implicit TLS): users send mail, authenticated.

Policy for these listeners, as aiosmtpd handler hooks (the protocol engine is :mod:`relentad.smtp.server`):
- AUTH PLAIN and LOGIN, offered and accepted only over TLS, or from a loopback address when
  ``auth.plaintext_loopback`` is on; elsewhere ``538 5.7.11``. The mechanisms are handler ``auth_*`` methods
  rather than aiosmtpd's ``authenticator`` callback because that callback is synchronous and a password check
  (argon2, :class:`relentad.auth.authenticator.Authenticator`) must not block the loop. Wrong credentials get
  ``535 5.7.8``, a throttled client ``454 4.7.0``; every attempt lands in the login history.
- No transaction before AUTH: MAIL gets ``530 5.7.0`` (RCPT and DATA then get aiosmtpd's ``503``); nor once the
  account was terminated after this session logged in (the session is logged out; logging in again fails).
- MAIL FROM, and the message's From and Sender, must be addresses the account owns (:mod:`relentad.senders`),
  else ``553 5.7.1``; MAIL FROM may also be the null sender ``<>`` (read receipts, RFC 8098 §2.1: the queue never
  bounces them), the From check still applies; the message is fixed up by :mod:`relentad.stamping` (Sender,
  Message-ID, Date, Received, no Bcc) and DKIM-signed when the From domain has a key (:mod:`relentad.queue.dkimkeys`).
- Local recipients are filed through the pipeline, remote ones queued, a copy goes to the sender's Sent folder
  and the send counters grow — all in ONE transaction, committed before ``250``; then the queue runner is woken.
- A recipient named twice in one transaction gets ``250`` again but one copy and one count against the send
  limits (as Postfix's duplicate filter does).
- Send limits (:mod:`relentad.quota`): a recipient beyond the account's hourly limit gets ``450 4.7.1``, beyond
  its daily limit ``550 5.7.1`` naming the limit; with a limit of N exactly N recipients per period get through,
  also across parallel sessions of one account: an accepted recipient is reserved at RCPT (checked and reserved
  with no ``await`` in between, on the one event loop) until its transaction commits or ends, and the check
  counts every session's reservations (:attr:`SubmissionHandler.reserved`).
- Local recipients are quota-checked as on the MX: an account at its disk quota or message limit gets
  ``452 4.2.2`` at RCPT; a copy the message would take over the quota is skipped inside the commit and the sender
  gets an RFC 3464 bounce (``552 5.2.2``) in its INBOX — or, when every recipient is such a local account,
  ``552 5.2.2`` at DATA and nothing is stored. The sender's own Sent copy is never refused. An account the
  message takes past 90 % of its disk quota (a recipient, or the sender by its Sent copy) is warned once
  (quotawarn.py), as on the MX.
- DSN (RFC 3461): the parameters (:mod:`relentad.smtp.dsnparams`) are queued with remote recipients for the
  queue to pass on or act on; local recipients that asked for NOTIFY=SUCCESS are reported "delivered" to the
  sender's INBOX after the commit, and an over-quota copy is not bounced when NOTIFY leaves FAILURE out
  (:mod:`relentad.smtp.reports`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import sqlite3
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import AuthResult, Envelope

from .. import addrspec, footer, quota, quotawarn, senders, stamping, trace
from ..auth.authenticator import Authenticator, Login, LoginFailed, password_allowed, session_ended
from ..errors import InvalidInput, SMTPReply
from ..lifecycle import archive
from ..message import ParsedMessage
from ..message import parse as parse_message
from ..pipeline import Delivery, Pipeline, Placement, Stored
from ..queue import dsn, queue
from ..queue.dkim import DkimKeyError, DkimMessageError
from ..queue.dkimkeys import KeyRing
from ..spam import training as spam_training
from ..store import accounts, messages
from ..store.db import Store
from . import replies, reports
from .server import ListenerContext, RelentadSession
from .transaction import NULL_SENDER, Transaction, TransactionLog, log_transaction, outcome_reply

log = logging.getLogger("relentad.smtp")

AUTH_REQUIRED = "530 5.7.0 Authentication required"
ENCRYPTION_REQUIRED = "538 5.7.11 Encryption required for requested authentication mechanism"
AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"
AUTH_THROTTLED = "454 4.7.0 Too many failed logins, try again later"
AUTH_OK = "235 2.7.0 Authentication successful"
BAD_BASE64 = "501 5.5.2 Cannot decode base64"
SENDER_NOT_OWNED = "553 5.7.1 Sender address not yours to send from"
SIGNING_FAILED = "451 4.3.0 Could not sign the message, try again later"
UNPARSABLE_HEADER = "550 5.6.0 The message's header section cannot be parsed"


@dataclass
class SubmissionTransaction(Transaction):
    """Inbound's transaction plus the recipients that leave this server."""

    remote: list[str] = field(default_factory=list)
    # (local part, domain) of each accepted recipient: a repeated RCPT is answered 250 and counted and sent once
    # (the local part's case kept, RFC 5321 §2.4; the domain normalised)
    recipients: set[tuple[str, str]] = field(default_factory=set)
    account_id: int = 0  # whose send counters the reservation below is held against
    reserved: int = 0  # recipients reserved in SubmissionHandler.reserved, until the commit or the end
    committing: bool = False  # DATA is committing: the reservation is released by DATA, not by a hang-up


def ssl_object(server: Any) -> ssl.SSLObject | None:
    """The TLS state of a connection, STARTTLS or implicit (aiosmtpd's session.ssl only knows STARTTLS)."""
    transport = getattr(server, "transport", None)
    if transport is None:
        return None
    found = transport.get_extra_info("ssl_object")
    return found if isinstance(found, ssl.SSLObject | ssl.SSLSocket) else None  # type: ignore[return-value]


def received_field(
    *,
    helo: str,
    peer_ip: str,
    hide_ip: bool,
    hostname: str,
    protocol: str,
    tls: ssl.SSLObject | None,
    login: str,
    transaction_id: str,
    when: float,
) -> bytes:
    """The Received field of a submitted message; without the client's address when ``hide_ip``."""
    origin = f"from {trace.clean(helo) or 'unknown'}" + ("" if hide_ip else f" ([{trace.clean(peer_ip)}])")
    lines = [f"Received: {origin}", f"\tby {hostname} (relentad) with {protocol} id {transaction_id}"]
    if tls is not None:
        cipher = tls.cipher()
        lines.append(f"\t(using {tls.version()} with cipher {cipher[0] if cipher else 'unknown'})")
    lines.append(f"\t(authenticated as {trace.clean(login)}); {trace.date(when)}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")


class SubmissionHandler(TransactionLog):
    """aiosmtpd handler for the 587 and 465 listeners."""

    def __init__(
        self,
        store: Store,
        pipeline: Pipeline,
        authenticator: Authenticator,
        keyring: KeyRing,
        get_context: Callable[[], ListenerContext],
        queued: Callable[[], None],
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.authenticator = authenticator
        self.keyring = keyring
        self.get_context = get_context
        self.queued = queued  # wakes the queue runner after a commit
        # Recipients accepted at RCPT and not yet counted in send_counts, per account, across every session.
        self.reserved: dict[int, int] = {}

    # -- EHLO and AUTH (RFC 4954) -------------------------------------------------------------------------------

    def may_authenticate(self, server: Any, session: RelentadSession) -> bool:
        peer = session.peer[0] if session.peer else ""
        return password_allowed(ssl_object(server) is not None, peer, self.get_context().config.auth)

    async def handle_EHLO(
        self, server: Any, session: RelentadSession, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        allowed = self.may_authenticate(server, session)
        extensions = [r for r in responses[1:-1] if allowed or not r.startswith("250-AUTH")]
        return [responses[0], *extensions, "250-PIPELINING", "250-ENHANCEDSTATUSCODES", server.offer_dsn(), "250 HELP"]

    async def auth_PLAIN(self, server: Any, args: list[str]) -> AuthResult:
        """RFC 4616: authzid NUL authcid NUL password, as an initial response or after a 334."""
        if not self.may_authenticate(server, server.session):
            await server.push(ENCRYPTION_REQUIRED)
            return AuthResult(success=False, handled=True)
        if len(args) > 1:
            blob = await self._decode(server, args[1])
        else:
            blob = await server.challenge_auth("")
        if not isinstance(blob, bytes):
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\0")
        if len(parts) != 3 or (parts[0] and parts[0] != parts[1]):
            await server.push("501 5.5.2 Malformed PLAIN credentials")
            return AuthResult(success=False, handled=True)
        return await self._verify(server, parts[1], parts[2])

    async def auth_LOGIN(self, server: Any, args: list[str]) -> AuthResult:
        """The de-facto LOGIN mechanism: user name and password in two base64 answers."""
        if not self.may_authenticate(server, server.session):
            await server.push(ENCRYPTION_REQUIRED)
            return AuthResult(success=False, handled=True)
        login = await self._decode(server, args[1]) if len(args) > 1 else await server.challenge_auth("Username:")
        if not isinstance(login, bytes):
            return AuthResult(success=False, handled=True)
        password = await server.challenge_auth("Password:")
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._verify(server, login, password)

    async def _decode(self, server: Any, text: str) -> bytes | None:
        try:
            return base64.b64decode(text.encode(), validate=True)
        except (binascii.Error, ValueError):
            await server.push(BAD_BASE64)
            return None

    async def _verify(self, server: Any, login: bytes, password: bytes) -> AuthResult:
        session: RelentadSession = server.session
        peer = session.peer[0] if session.peer else ""
        try:
            result = await self.authenticator.verify(
                login.decode("utf-8", "surrogateescape"), password.decode("utf-8", "surrogateescape"), peer, "smtp"
            )
        except LoginFailed as failure:
            reply = AUTH_THROTTLED if failure.throttled else AUTH_INVALID
            shown = trace.clean(login.decode(errors="replace"))
            log.info("smtp auth peer=%s login=<%s> result=%s", peer, shown, reply[:3])
            return AuthResult(success=False, handled=False, message=reply)
        log.info("smtp auth peer=%s login=<%s> result=235%s", peer, result.email, result.via)
        return AuthResult(success=True, auth_data=result, message=AUTH_OK)

    # -- the transaction ----------------------------------------------------------------------------------------

    def _login(self, session: RelentadSession) -> Login | None:
        data = session.auth_data
        return data if session.authenticated and isinstance(data, Login) else None

    def _owns(self, login: Login, address: str) -> bool:
        send_as = senders.SendAs.parse(self.get_context().config.submission.send_as)
        return self.store.read(lambda conn: senders.owns(conn, login.account_id, login.email, address, send_as))

    async def handle_MAIL(
        self, server: Any, session: RelentadSession, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.connection_lost(session, envelope)
        login = self._login(session)
        if login is None:
            return AUTH_REQUIRED
        if self.store.read(lambda conn: session_ended(conn, login)):
            # terminated or its app password revoked since this session logged in: it sends nothing more
            session.authenticated, session.auth_data = False, None
            return AUTH_REQUIRED
        if address != NULL_SENDER:  # the null sender: MDNs are sent with it (RFC 8098 §2.1); From is still checked
            try:
                addrspec.split(address)
            except InvalidInput:
                return replies.BAD_SENDER
            if not self._owns(login, address):
                return SENDER_NOT_OWNED
        envelope.mail_from = address  # "<>" stays: aiosmtpd reads an empty mail_from as "no MAIL command yet"
        envelope.mail_options.extend(options)
        session.tx = SubmissionTransaction(mail_from="" if address == NULL_SENDER else address, dsn=session.dsn_mail)
        return replies.SENDER_OK

    async def handle_RCPT(
        self, server: Any, session: RelentadSession, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        tx = session.tx
        if not isinstance(tx, SubmissionTransaction):
            return "503 5.5.1 Error: need MAIL command"
        if len(envelope.rcpt_tos) >= self.get_context().config.limits.max_recipients:
            tx.rejected.append(address)
            return replies.TOO_MANY_RECIPIENTS
        try:
            local, domain = addrspec.split(address)
        except InvalidInput:
            tx.rejected.append(address)
            return replies.BAD_RECIPIENT
        login = self._login(session)
        if login is None:
            return AUTH_REQUIRED
        if (local, domain) in tx.recipients:  # named again: one copy, one recipient against the send limits
            return replies.RECIPIENT_OK
        # From here to the reservation below nothing awaits: parallel sessions cannot both take the last one.
        limit = self._send_limit(login)
        if limit is not None:
            tx.rejected.append(address)
            return limit
        postmaster = self.get_context().config.server.postmaster
        resolution = self.store.read(lambda conn: accounts.resolve_recipient(conn, address, postmaster))
        if resolution.kind is accounts.RecipientKind.UNKNOWN_USER:
            tx.rejected.append(address)
            return replies.UNKNOWN_USER
        if resolution.kind is accounts.RecipientKind.LOCAL:
            full = [self.store.read(functools.partial(quota.is_full, account_id=a)) for a in resolution.account_ids]
            with_room = [a for a, is_full in zip(resolution.account_ids, full, strict=True) if not is_full]
            # an alias's targets elsewhere get the message as sent (the user's own mail, DKIM-signed: no SRS)
            tx.remote.extend(t for t in resolution.forwards if t not in tx.remote)
            if not with_room and not resolution.forwards:
                tx.rejected.append(address)
                return replies.MAILBOX_FULL
            for account_id in with_room:
                tx.placements.setdefault(account_id, Placement(account_id, addrspec.normalize(address)))
        else:
            tx.remote.append(address)
        tx.account_id = login.account_id
        tx.reserved += 1
        self.reserved[login.account_id] = self.reserved.get(login.account_id, 0) + 1
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        tx.accept(address, session)
        tx.recipients.add((local, domain))
        return replies.RECIPIENT_OK

    def _send_limit(self, login: Login) -> str | None:
        """The refusal for one more recipient when it would break the account's hourly or daily send limit, counting
        the recipients every session of the account has reserved and not yet committed."""
        usage = self.store.read(lambda conn: quota.get(conn, login.account_id))
        broken = quota.send_refusal(usage, self.reserved.get(login.account_id, 0))
        if broken == "hour":
            text = f"Hourly sending limit of {usage.hourly_send} recipients reached, try again later"
            return SMTPReply(450, "4.7.1", text).reply
        if broken == "day":
            return SMTPReply(550, "5.7.1", f"Daily sending limit of {usage.daily_send} recipients reached").reply
        return None

    def _release(self, tx: SubmissionTransaction) -> None:
        """Give back the transaction's reserved recipients (committed ones are in send_counts by now)."""
        if tx.reserved:
            left = self.reserved.get(tx.account_id, 0) - tx.reserved
            if left > 0:
                self.reserved[tx.account_id] = left
            else:
                self.reserved.pop(tx.account_id, None)
            tx.reserved = 0

    def connection_lost(self, session: RelentadSession, envelope: Envelope | None) -> None:
        """A transaction abandoned before DATA (RSET, new MAIL, QUIT, hang-up) releases its reservation."""
        tx = session.tx
        if isinstance(tx, SubmissionTransaction) and not tx.committing:
            self._release(tx)
        super().connection_lost(session, envelope)

    async def handle_DATA(self, server: Any, session: RelentadSession, envelope: Envelope) -> str:
        tx = session.tx
        login = self._login(session)
        raw = envelope.original_content or b""
        if not isinstance(tx, SubmissionTransaction) or login is None:
            return AUTH_REQUIRED
        tx.committing = True
        try:
            reply = await outcome_reply(tx, self._submit(server, session, envelope, tx, login, raw))
        finally:
            self._release(tx)  # after the commit (counted) or the failure (nothing counted)
        log_transaction(session, tx, reply, len(raw))
        session.tx = None
        return reply

    async def _submit(
        self,
        server: Any,
        session: RelentadSession,
        envelope: Envelope,
        tx: SubmissionTransaction,
        login: Login,
        raw: bytes,
    ) -> str:
        config = self.get_context().config
        tls = ssl_object(server)
        protocol = trace.with_protocol(
            extended=session.extended_smtp, tls=tls is not None, authenticated=True, smtputf8=envelope.smtp_utf8
        )
        now = time.time()
        peer = session.peer[0] if session.peer else ""
        received = received_field(
            helo=session.host_name or "",
            peer_ip=peer,
            hide_ip=config.submission.hide_client_ip,
            hostname=config.server.hostname,
            protocol=protocol,
            tls=tls,
            login=login.email,
            transaction_id=tx.id,
            when=now,
        )
        prepared = stamping.prepare(
            raw,
            mail_from=tx.mail_from,
            login=login.email,
            owns=lambda address: self._owns(login, address),
            received=received,
            hostname=config.server.hostname,
            now=now,
        )
        from_domain = addrspec.split(prepared.from_address)[1]
        company = self.store.read(lambda conn: footer.get(conn, from_domain))  # one primary-key read
        body = footer.add(prepared.raw, company) if company is not None else prepared.raw
        try:
            signed = await self.keyring.sign(body, from_domain)
        except DkimMessageError as exc:
            log.info("smtp tx=%s refused, DKIM cannot parse it: %s", tx.id, exc)
            return UNPARSABLE_HEADER
        except DkimKeyError as exc:
            log.error("smtp tx=%s DKIM signing failed: %s", tx.id, exc)
            return SIGNING_FAILED
        # parsed once for the archive, and the same parse serves the local copies and the reply lesson below
        parsed_for_archive = parse_message(signed) if config.retention.archive else None
        structure = parsed_for_archive.to_json() if parsed_for_archive is not None else None
        placements = list(tx.placements.values())
        if config.submission.sent_folder:
            sent = Placement(login.account_id, login.email, config.submission.sent_folder, messages.SEEN, outgoing=True)
            placements.append(sent)
        remote, total = list(tx.remote), len(tx.accepted)

        def also(conn: sqlite3.Connection) -> None:
            if parsed_for_archive is not None:  # what the account sent, once, as it went out (lifecycle/archive.py)
                blob_id, _ = messages.put_blob(conn, signed, structure)
                archive.record(
                    conn,
                    account_id=login.account_id,
                    direction="out",
                    blob_id=blob_id,
                    prefix=b"",
                    raw=signed,
                    mail_from=tx.mail_from,
                    recipients=tuple(tx.accepted),
                    parsed=parsed_for_archive,
                    now=now,
                )
            if remote:
                queue.enqueue(
                    conn,
                    account_id=login.account_id,
                    mail_from=tx.mail_from,
                    data=signed,
                    recipients=remote,
                    transaction_id=tx.id,
                    now=now,
                    dsn=tx.dsn,
                    notify=tx.notify,
                )
            queue.count_sent(conn, login.account_id, total, now)

        if placements:
            tls_version, cipher = (tls.version(), (tls.cipher() or ("",))[0]) if tls is not None else (None, None)
            source = trace.Source(
                peer_ip=peer,
                helo=session.host_name or "",
                protocol=protocol,
                tls_version=tls_version,
                tls_cipher=cipher,
                authenticated_as=login.email,
            )
            delivery = Delivery(
                raw=signed,
                mail_from=tx.mail_from,
                placements=placements,
                source=source,
                transaction_id=tx.id,
                received_at=now,
                also=[also],
                add_received=False,  # stamping added ours (received_field above)
                recipients=tuple(tx.accepted),
                check_quota=True,
                refuse_when_full=not remote,
                archive=config.retention.archive,
                parsed=parsed_for_archive,  # None: the pipeline parses it
                structure=structure,
            )
            reported: list[Stored] = []
            report = functools.partial(
                self._report_local, tx=tx, login=login, delivery=delivery, now=now, filed=reported
            )
            delivery.also.append(report)  # after ``also``: the copies are filed, their over-quota ones known
            stored = await self.pipeline.deliver(delivery)
            self.pipeline.publish(reported)
            # local recipients, and the sender by its Sent copy, get the 90 % warning as the MX's recipients do
            await quotawarn.warn_if_due(self.pipeline, self.store, sorted({s.account_id for s in stored}))
            parsed: ParsedMessage | None = delivery.parsed
        else:
            await self.store.write(also)
            parsed = parsed_for_archive
        if remote:
            self.queued()
        if parsed is None:
            parsed = parse_message(signed)
        spam_training.after_send(self.store, config, login.account_id, parsed.in_reply_to)
        return f"250 2.0.0 OK queued as {tx.id}"

    def _report_local(
        self,
        conn: sqlite3.Connection,
        *,
        tx: SubmissionTransaction,
        login: Login,
        delivery: Delivery,
        now: float,
        filed: list[Stored],
    ) -> None:
        """In the transaction that files the copies (so a crash never loses one, nor files one twice): tell the
        sender, by RFC 3464 reports in its INBOX (not quota-checked), which local recipients did not get the message
        because it would have taken them over their quota, and which that asked for NOTIFY=SUCCESS got it. Never
        about a message sent with the null sender (a read receipt): there is nobody to tell."""
        if not tx.mail_from:
            return
        hostname = self.get_context().config.server.hostname
        remote = set(tx.remote)
        local = [a for a in tx.accepted if a not in remote]
        skipped = {p.address for p in delivery.over_quota}
        failed, delivered = reports.local_outcomes(tx, local, skipped, hostname)
        stored: list[Stored] = []
        outcomes: tuple[tuple[dsn.Action, list[dsn.RecipientStatus]], ...] = (
            ("failed", failed),
            ("delivered", delivered),
        )
        for index, (action, recipients) in enumerate(outcomes):
            if recipients:
                raw = reports.report(tx, action, recipients, delivery.raw, hostname, now)
                placements = [Placement(login.account_id, tx.mail_from)]
                stored += self.pipeline.filing(raw, placements, f"dsn-{tx.id}-{index}", now, conn)(conn)
        filed[:] = stored  # assigned, not added: the transaction may run again (Pipeline.deliver)
