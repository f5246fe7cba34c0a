"""Announcements (issue 7): one mandatory message from the operator into the INBOX of every (matching) account.

Invariants: the message is built once, stored once (one blob, its structure parsed once) and referenced by one
message row per account, all in ONE write transaction — every active account of the domain gets it or none
does. Copies have no per-recipient trace prefix, so every copy is byte-identical. Announcements are not subject
to quotas (the operator must be able to reach a full mailbox) and skip spam and CRM sorting.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
import unicodedata
from email.header import Header

from .. import addrspec, message, trace
from ..errors import InvalidInput
from ..store import mailboxes, messages


def build(*, sender: str, subject: str, body: str, hostname: str, now: float) -> bytes:
    """The announcement as an RFC 5322 message (UTF-8 text, quoted-printable free: 8bit body, encoded subject)."""
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in subject):
        raise InvalidInput("the subject must be one line without control characters (CR, LF, tab and the like)")
    # folded with CRLF like the rest of the message (Header's default is a bare LF)
    encoded = subject if subject.isascii() else Header(subject, "utf-8", header_name="Subject").encode(linesep="\r\n")
    if not body.endswith("\n"):
        body += "\n"
    text = body.replace("\r\n", "\n").replace("\n", "\r\n")
    lines = [
        f"From: <{sender}>",
        "To: undisclosed-recipients:;",
        f"Subject: {encoded}",
        f"Date: {trace.date(now)}",
        f"Message-ID: <announce-{secrets.token_hex(12)}@{hostname}>",
        "Auto-Submitted: auto-generated",
        "Precedence: bulk",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8") + text.encode("utf-8")


def recipients(conn: sqlite3.Connection, domain: str | None) -> list[int]:
    """Ids of the active accounts (of ``domain`` when given)."""
    if domain is None:
        rows = conn.execute("SELECT id FROM accounts WHERE state = 'active' ORDER BY id")
    else:
        rows = conn.execute(
            """SELECT a.id FROM accounts a JOIN domains d ON d.id = a.domain_id
               WHERE a.state = 'active' AND d.name = ? ORDER BY a.id""",
            (addrspec.normalize_domain(domain),),
        )
    return [int(r[0]) for r in rows]


def deliver(conn: sqlite3.Connection, raw: bytes, account_ids: list[int], now: float | None = None) -> int:
    """Inside one write transaction: file ``raw`` into every account's INBOX; returns the blob id."""
    if not account_ids:
        raise InvalidInput("no account to announce to")
    now = time.time() if now is None else now
    blob_id = messages.store_blob(conn, raw, message.parse(raw).to_json())
    for account_id in account_ids:
        mailbox_id = mailboxes.find(conn, account_id, mailboxes.INBOX)
        if mailbox_id is None:
            raise InvalidInput(f"account {account_id} has no INBOX")
        messages.append(conn, mailbox_id, blob_id, prefix=b"", size=len(raw), internaldate=now)
    return blob_id
