"""Delivery status notifications (RFC 3464, RFC 3461 §6): the bounce, the delay notice and the success reports
("delivered", "relayed") a sender gets.

A DSN is a ``multipart/report; report-type=delivery-status`` with three parts: a human explanation, the
machine-readable ``message/delivery-status`` (one per-recipient block each), and the original header fields as
``text/rfc822-headers`` (not the body: it may be large, and the sender has it in Sent) — or, for a failure of a
message sent with ``RET=FULL`` no larger than :data:`FULL_LIMIT`, the whole message as ``message/rfc822``
(RFC 3461 §4.3); with UTF-8 in the original's header, message/global-headers or message/global, and a status
needing UTF-8 is message/global-delivery-status (RFC 6533 §6). ENVID and ORCPT come back as Original-Envelope-Id
and Original-Recipient. It comes from ``MAILER-DAEMON@<hostname>`` with the null envelope sender, so nobody ever
bounces a bounce.

Pure: bytes out, no I/O. Invariant: every value taken from the remote server or the original message is
cleaned of control characters before it becomes part of a header or a status field.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Literal

from .. import trace
from ..smtp import dsnparams
from .deliver import enhanced_status

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]
FULL_LIMIT = 1_000_000  # bytes: a larger message comes back as its header even with RET=FULL (RFC 3461 §4.3)
_TEXTS = {
    "failed": (
        "Undelivered Mail Returned to Sender",
        "Your message could not be delivered to the recipients below. The remote servers refused it, "
        "or delivery kept failing for too long; it will not be retried.",
    ),
    "delivered": (
        "Successful Mail Delivery Report",
        "Your message was delivered to the mailboxes of the recipients below, as you asked to be told.",
    ),
    "relayed": (
        "Relayed Mail Delivery Report",
        "Your message was delivered to the recipients' mail servers below, which do not report delivery "
        "themselves: you will not hear more about it from them.",
    ),
}


_NOTES = {
    "expanded": " (delivered, and forwarded on to other addresses, which may still fail)",
    "relayed": " (forwarded to a server elsewhere, which will not report delivery)",
}
"""What a recipient's line in the text says when it was forwarded rather than only delivered here."""


@dataclass(frozen=True)
class RecipientStatus:
    address: str
    reply: str  # the last reply or error
    remote: str = ""
    last_attempt: float | None = None
    from_remote: bool = False  # ``reply`` is the remote server's own: an ``smtp`` Diagnostic-Code
    orcpt: str | None = None  # the RCPT's ORCPT ("type;address"), reported as Original-Recipient
    action: Action | None = None  # this recipient's own (RFC 3464 §2.3.3), when not the report's


def _original_headers(original: bytes) -> bytes:
    end = original.find(b"\r\n\r\n")
    if end < 0:
        end = original.find(b"\n\n")
    head = original if end < 0 else original[:end]
    return head.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n"


def _subject(original: bytes) -> str:
    for line in _original_headers(original).split(b"\r\n"):
        if line.lower().startswith(b"subject:"):
            return trace.clean(line[8:].decode("utf-8", "replace").strip())[:120]
    return ""


def build(
    *,
    action: Action,
    hostname: str,
    sender: str,
    recipients: list[RecipientStatus],
    original: bytes,
    arrival: float,
    retry_until: float | None = None,
    now: float | None = None,
    envid: str | None = None,
    ret: str | None = None,
) -> bytes:
    """The DSN message for ``sender`` about ``recipients`` of ``original``; ``envid`` and ``ret`` are MAIL's."""
    now = time.time() if now is None else now
    boundary = f"dsn-{secrets.token_hex(12)}"
    host = trace.clean(hostname)
    subject = _subject(original)
    if action in _TEXTS:
        title, explanation = _TEXTS[action]
    else:
        title = "Delayed Mail (still being retried)"
        explanation = (
            "Your message has not been delivered yet to the recipients below. No action is needed: delivery "
            "will be retried"
            + (f" until {trace.date(retry_until)}" if retry_until else "")
            + " and you will be told if it finally fails."
        )
    lines = [f"This is the mail system at {host}.", "", explanation, ""]
    for recipient in recipients:
        reply = f": {trace.clean(recipient.reply)}" if recipient.reply else ""  # a local delivery has none
        lines.append(f"<{trace.clean(recipient.address)}>{reply}{_NOTES.get(recipient.action or action, '')}")
    if subject:
        lines += ["", f"Subject of your message: {subject}"]
    human = "\r\n".join(lines) + "\r\n"

    status_fields = [f"Reporting-MTA: dns; {host}"]
    if envid is not None:
        status_fields.append(f"Original-Envelope-Id: {trace.clean(envid)}")
    status_fields += [f"Arrival-Date: {trace.date(arrival)}", ""]
    for recipient in recipients:
        own = recipient.action or action
        code = _status(own, recipient.reply)
        if recipient.orcpt:
            status_fields.append(f"Original-Recipient: {trace.clean(dsnparams.original_recipient(recipient.orcpt))}")
        status_fields += [
            f"Final-Recipient: {_final_recipient(recipient.address)}",
            f"Action: {own}",
            f"Status: {code}",
        ]
        if recipient.remote:
            status_fields.append(f"Remote-MTA: dns; {trace.clean(recipient.remote)}")
        if recipient.reply:  # RFC 3464 §2.3.6: "smtp" only for what the remote MTA said, not for our own texts
            kind = "smtp" if recipient.from_remote and recipient.reply[:3].isdigit() else "X-Relentad"
            status_fields.append(f"Diagnostic-Code: {kind}; {trace.clean(recipient.reply)}")
        if recipient.last_attempt:
            status_fields.append(f"Last-Attempt-Date: {trace.date(recipient.last_attempt)}")
        if action == "delayed" and retry_until:
            status_fields.append(f"Will-Retry-Until: {trace.date(retry_until)}")
        status_fields.append("")
    delivery_status = "\r\n".join(status_fields)

    headers = [
        f"From: Mail Delivery System <MAILER-DAEMON@{host}>",
        f"To: <{trace.clean(sender)}>",
        f"Subject: {title}",
        f"Date: {trace.date(now)}",
        f"Message-ID: <dsn-{secrets.token_hex(12)}@{host}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    ]
    full = action == "failed" and ret == "FULL" and len(original) <= FULL_LIMIT
    original_head = _original_headers(original)
    # RFC 6533 §6: a header with UTF-8 (RFC 6532) comes back as message/global or message/global-headers, and a
    # status that needs UTF-8 (a server's UTF-8 reply) is message/global-delivery-status
    intl = "global" if not original_head.isascii() else ""
    returned = (
        [f"\r\n--{boundary}\r\nContent-Type: message/{intl or 'rfc822'}\r\n\r\n".encode(), original]
        if full
        else [
            f"\r\n--{boundary}\r\nContent-Type: {'message/global-headers' if intl else 'text/rfc822-headers'}"
            "\r\n\r\n".encode(),
            original_head,
        ]
    )
    status_type = "message/delivery-status" if delivery_status.isascii() else "message/global-delivery-status"
    eight_bit = "" if human.isascii() else "\r\nContent-Transfer-Encoding: 8bit"
    parts = [
        "\r\n".join(headers).encode() + b"\r\n\r\n",
        b"This is a MIME-encapsulated delivery status notification.\r\n\r\n",
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8{eight_bit}\r\n\r\n".encode(),
        human.encode("utf-8"),
        f"\r\n--{boundary}\r\nContent-Type: {status_type}\r\n\r\n".encode(),
        delivery_status.encode("utf-8"),
        *returned,
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts)


def _status(action: Action, reply: str) -> str:
    if action in ("delivered", "relayed", "expanded"):
        code = enhanced_status(reply, "2.0.0")
        return code if code.startswith("2") else "2.0.0"
    code = enhanced_status(reply, "5.0.0" if action == "failed" else "4.0.0")
    if action == "failed" and not code.startswith("5"):
        code = "5" + code[1:] if code[0] == "4" else "5.0.0"  # a temporary error that outlived the queue
    return code


def _final_recipient(address: str) -> str:
    """RFC 3464 §2.3.2 (RFC 6533 §3 for an internationalized address: ``utf-8;`` with \\x{HEX} escapes, ASCII)."""
    if address.isascii():
        return f"rfc822; {trace.clean(address)}"
    return f"utf-8; {dsnparams.utf8_addr_xtext(trace.clean(address))}"
