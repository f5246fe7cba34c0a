"""Vacation replies (RFC 5230, ``:seconds`` of RFC 6131, RFC 3834): whether a rule's ``vacation`` answers a
message, the answer itself, and the response tracking that keeps it to one per sender and period.

No reply (RFC 5230 §4.5-§4.6, RFC 3834 §2): to the null sender, to a list's or a system's address
(``MAILER-DAEMON``, ``owner-*``, ``*-request``, no-reply style names), to the account itself (its addresses or the
rule's ``:addresses``), to mail marked ``Auto-Submitted`` (anything but ``no``), ``Precedence: bulk/list/junk``,
carrying any ``List-*`` field or asking ``X-Auto-Response-Suppress: OOF``, to mail that went to Junk (spam, DMARC
quarantine, a blocklist: an answer to a forged sender is backscatter), failed DMARC, or whose envelope sender failed
SPF (the reply goes to that address, and SPF ``fail`` says its domain did not send this), and to mail whose
To/Cc/Bcc (and Resent-*) name none of the account's personal addresses (its own, its aliases that reach nobody else,
their subaddresses, the rule's ``:addresses``): Bcc'd list copies, and mail to an alias shared with other accounts,
to a catch-all or to postmaster@ — each member of a shared alias would answer as it, a catch-all as any address a
sender made up (Pigeonhole, likewise, answers only for the final recipient and ``:addresses``).

Tracking: one row per (account, sender, handle) in ``sieve_vacation`` holds when the period ends; the handle is
the rule's ``:handle`` or a hash of what makes the reply (reason, subject, from, mime), so editing the text
answers everyone again (RFC 5230 §4.2). An account sends at most :data:`MAX_PER_HOUR` replies an hour whatever
the senders. Replies do not count against the send quota (``[quota]``): a flood of incoming mail must not use up
what the owner may send; the hourly cap bounds them instead.

Invariants: deciding and building are pure (no I/O); :func:`claim` runs in the transaction that stores the
original, so two deliveries at once cannot both answer, and no reply goes out for a message that was not stored.
"""

from __future__ import annotations

import hashlib
import quopri
import re
import secrets
import sqlite3
from dataclasses import dataclass
from email.utils import formataddr, parseaddr
from typing import TYPE_CHECKING

from .. import trace
from ..headers import encode_field
from ..message import ParsedMessage
from . import participants
from .rules import MessageView
from .sieve import Vacation

if TYPE_CHECKING:
    from ..mailauth import AuthResult

MAX_PER_HOUR = 100  # replies per account per hour
MAX_SUBJECT = 200  # characters of the original's subject taken into "Auto: …"
MAX_REFERENCES = 20  # ids of the original's References carried into the reply's
_RECIPIENT_FIELDS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")
_SYSTEM_LOCAL = re.compile(r"owner-.*|.*-request|.*-owner|listserv|majordomo|mailman|ezmlm", re.IGNORECASE)
_BULK = frozenset({"bulk", "list", "junk"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Reply:
    """A reply to send: who gets it, from which own address, and how it is tracked."""

    account_id: int
    to: str  # the envelope sender of the original (the reply's only recipient)
    from_address: str  # one of the account's own addresses
    handle: str
    period: int  # seconds until the same sender gets the same reply again
    raw: bytes


def handle_of(vacation: Vacation) -> str:
    """The tracking key of a reply (RFC 5230 §4.2): ``:handle``, else a hash of what the reply says."""
    if vacation.handle is not None:
        return "h:" + vacation.handle
    parts = (vacation.reason, vacation.subject or "", vacation.from_ or "", "mime" if vacation.mime else "")
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _own_recipient(view: MessageView, own: frozenset[str]) -> str:
    """The first own address the recipient fields name, or ""."""
    for name in _RECIPIENT_FIELDS:
        for address in view.addresses(name):
            normal = participants.normalize(address)
            if normal and participants.is_own(normal, own):
                return normal
    return ""


def forged(auth: AuthResult | None) -> str:
    """Why the checks of the sender (``[mailauth]``) say it is forged, or "": DMARC failed, or SPF ``fail`` for the
    envelope sender, the very address a reply would go to."""
    if auth is None:
        return ""
    if auth.dmarc_failed:
        return "the message failed DMARC"
    if auth.spf.result == "fail" and auth.spf.identity == "mailfrom":
        return f"the envelope sender failed SPF ({auth.spf.domain} did not send it)"
    return ""


def personal_addresses(conn: sqlite3.Connection, account_id: int) -> frozenset[str]:
    """The addresses a vacation answers for: the account's own and its aliases that reach no other account."""
    rows = conn.execute(
        """SELECT email FROM accounts WHERE id = ?1
           UNION SELECT x.address FROM aliases x WHERE x.account_id = ?1 AND x.address NOT LIKE '@%'
               AND NOT EXISTS (SELECT 1 FROM aliases o WHERE o.address = x.address AND o.account_id != ?1)""",
        (account_id,),
    )
    return frozenset(str(row[0]).lower() for row in rows)


def account_name(conn: sqlite3.Connection, account_id: int) -> str:
    """The account's display name, which a reply from one of its personal addresses carries (as the user's own
    mail would), so that the correspondent sees "Alice Example", not a bare address."""
    row = conn.execute("SELECT display_name FROM accounts WHERE id = ?", (account_id,)).fetchone()
    return _CONTROL.sub(" ", str(row[0] or "")).strip() if row else ""


def why_not(
    view: MessageView, own: frozenset[str], vacation: Vacation, *, personal: frozenset[str], junk: bool, forged: str
) -> str:
    """Why no reply goes to this message ("" when one may): the rules of the module docstring, in that order.
    ``own``: every address that reaches the account (the envelope's too); ``personal``: :func:`personal_addresses`."""
    sender = participants.normalize(view.envelope_from) if view.envelope_from else ""
    if not view.envelope_from:
        return "the envelope sender is empty (a bounce or a report)"
    if not sender:
        return "the envelope sender is no address"
    local = sender.rpartition("@")[0]
    own = own | frozenset(vacation.addresses)  # :addresses are the user's too (RFC 5230 §4.5), as sender and recipient
    if participants.is_own(sender, own):
        return "the sender is the account itself"
    if participants.is_automatic(sender) or _SYSTEM_LOCAL.fullmatch(local):
        return f"<{sender}> is a system or list address"
    auto = (view.parsed.auto_submitted or "").split(";")[0].strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    if (view.parsed.precedence or "").strip().lower() in _BULK:
        return f"Precedence: {(view.parsed.precedence or '').strip().lower()}"
    if any(name.startswith("list-") for name in view.field_names()):
        return "mailing list mail (List-* fields)"
    suppress = {v.strip().lower() for value in view.headers("x-auto-response-suppress") for v in value.split(",")}
    if suppress & {"oof", "all"}:
        return "X-Auto-Response-Suppress asks for none"
    if junk:
        return "the message went to Junk"
    if forged:
        return forged
    if not _own_recipient(view, personal | frozenset(vacation.addresses)):
        return "To/Cc/Bcc name none of the account's addresses (a shared alias or a catch-all is none of them)"
    return ""


def from_field(
    vacation: Vacation, view: MessageView, own: frozenset[str], personal: frozenset[str], name: str = ""
) -> tuple[str, str]:
    """(address, display name) the reply comes from: ``:from`` when it is one of the account's own addresses (with
    the name it gives), else the personal address the message was sent to (RFC 5230 §5.1) with the account's
    display name ``name``, else its envelope recipient (an address others share: no personal name)."""
    if vacation.from_ is not None:
        name, address = parseaddr(vacation.from_)
        normal = participants.normalize(address)
        if normal and participants.is_own(normal, own):
            return normal, _CONTROL.sub(" ", name)
    found = _own_recipient(view, personal)
    if found:
        return found, name
    return participants.normalize(view.envelope_to) or view.envelope_to, ""


def _body(vacation: Vacation) -> bytes:
    """The MIME header fields that describe the body, a blank line and the body (CRLF line ends)."""
    text = vacation.reason.replace("\r\n", "\n").replace("\r", "\n")
    if vacation.mime:  # the rule wrote the entity: its Content-* fields and its body, as written
        fields, _, entity = text.partition("\n\n")
        kept: list[str] = []
        keep = False
        for line in fields.split("\n"):
            if line[:1] not in (" ", "\t"):
                keep = line.split(":", 1)[0].strip().lower().startswith("content-")
            if keep:
                kept.append(line)
        return ("\r\n".join(kept) + "\r\n\r\n" + entity.replace("\n", "\r\n")).encode("utf-8") + b"\r\n"
    data = text.encode("utf-8")
    if data.isascii() and all(len(line) <= 998 for line in data.split(b"\n")):
        encoding, body = "7bit", data
    else:
        encoding, body = "quoted-printable", quopri.encodestring(data)
    head = f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n"
    return head.encode() + body.replace(b"\n", b"\r\n").rstrip(b"\r\n") + b"\r\n"


def build(vacation: Vacation, parsed: ParsedMessage, *, to: str, sender: tuple[str, str], now: float) -> bytes:
    """The reply (RFC 5230 §5, RFC 3834 §3): From the account, To the original's return path, "Auto: " subject,
    In-Reply-To / References, ``Auto-Submitted: auto-replied``."""
    address, name = sender
    domain = address.rpartition("@")[2] or "localhost"
    original = (parsed.subject or "").strip()[:MAX_SUBJECT]
    subject = vacation.subject if vacation.subject is not None else f"Auto: {original}" if original else "Auto reply"
    sender_value = formataddr((name, address), charset="utf-8") if name else f"<{address}>"
    fields = [
        f"From: {_CONTROL.sub(' ', sender_value)}\r\n",
        f"To: <{trace.clean(to)}>\r\n",
        encode_field("Subject", _CONTROL.sub(" ", subject)),
        f"Date: {trace.date(now)}\r\n",
        f"Message-ID: <vacation-{secrets.token_hex(12)}@{domain}>\r\n",
    ]
    if parsed.message_id:
        original_id = f"<{trace.clean(parsed.message_id)}>"
        references = [f"<{trace.clean(r)}>" for r in parsed.references[-MAX_REFERENCES:]]
        fields += [
            f"In-Reply-To: {original_id}\r\n",
            "References: " + "\r\n ".join([*references, original_id]) + "\r\n",
        ]
    fields += ["Auto-Submitted: auto-replied\r\n", "MIME-Version: 1.0\r\n"]
    return "".join(fields).encode("utf-8") + _body(vacation)


def decide(
    view: MessageView,
    own: frozenset[str],
    account_id: int,
    vacation: Vacation,
    *,
    personal: frozenset[str],
    junk: bool,
    forged: str,
    now: float,
    name: str = "",
) -> Reply | str:
    """The reply to send for this message, or why none is (the tracking is :func:`claim`'s, at commit)."""
    reason = why_not(view, own, vacation, personal=personal, junk=junk, forged=forged)
    if reason:
        return reason
    to = view.envelope_from
    sender = from_field(vacation, view, own, personal, name)
    raw = build(vacation, view.parsed, to=to, sender=sender, now=now)
    return Reply(account_id, to, sender[0], handle_of(vacation), vacation.period, raw)


def _key(address: str) -> str:
    return participants.normalize(address) or address.lower()


def replied(conn: sqlite3.Connection, account_id: int, to: str, handle: str, now: float) -> bool:
    """Has ``to`` had this reply within its period?"""
    row = conn.execute(
        "SELECT 1 FROM sieve_vacation WHERE account_id = ? AND sender = ? AND handle = ? AND expires > ?",
        (account_id, _key(to), handle, now),
    ).fetchone()
    return row is not None


def claim(conn: sqlite3.Connection, reply: Reply, now: float) -> str:
    """Record that ``reply`` is sent now; "" when it may be, else why not (already answered within the period,
    or the account's hourly cap is reached). Runs in the transaction that sends it."""
    if replied(conn, reply.account_id, reply.to, reply.handle, now):
        return "already replied to within the period"
    sent = conn.execute(
        "SELECT count(*) FROM sieve_vacation WHERE account_id = ? AND sent > ?", (reply.account_id, now - 3600)
    ).fetchone()[0]
    if sent >= MAX_PER_HOUR:
        return f"the account sent {MAX_PER_HOUR} vacation replies in the last hour"
    conn.execute(
        """INSERT INTO sieve_vacation (account_id, sender, handle, sent, expires) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (account_id, sender, handle) DO UPDATE SET sent = excluded.sent, expires = excluded.expires""",
        (reply.account_id, _key(reply.to), reply.handle, now, now + reply.period),
    )
    return ""


def prune(conn: sqlite3.Connection, now: float) -> int:
    """Forget replies whose period is over (the daily purge); returns how many rows went."""
    return conn.execute("DELETE FROM sieve_vacation WHERE expires <= ? AND sent <= ?", (now, now - 3600)).rowcount
