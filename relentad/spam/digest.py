"""The Junk digest (``[spam] junk_digest``, off by default; ``relentad spam digest`` on demand): once a day, each user
whose Junk got mail since their last digest finds in their INBOX a message listing it — date, sender, subject and
score — so that a message the filter got wrong is seen without opening Junk, where nobody looks.

Invariants: what is listed and the mark of when the digest went are written in ONE transaction with the digest's
copy (as an announcement is: one blob, no trace prefix, no spam or CRM step, no quota), so a digest is never sent
twice for the same mail nor skipped; an account's first digest lists the day before.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import re
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import daily, message, trace
from ..config import Config
from ..headers import encode_field
from ..store import mailboxes, messages
from ..store.db import Store

log = logging.getLogger("relentad.spam")

MAX_LISTED = 100
"""Messages a digest lists one by one; the rest are counted."""
FIRST_SINCE = 86_400.0
"""How far back an account's first digest looks."""
_SCORE = re.compile(rb"^X-Spam-Score: ([0-9.]+)", re.MULTILINE)


@dataclass(frozen=True)
class Item:
    saved: float
    sender: str
    subject: str
    score: str  # as the copy's X-Spam-Score says it, "" when it has none (a blocked sender, a DMARC quarantine)


def _items(conn: sqlite3.Connection, account_id: int, since: float) -> list[Item]:
    rows = conn.execute(
        """SELECT m.saved, m.prefix, b.structure FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id
           JOIN blobs b ON b.id = m.blob_id
           WHERE x.account_id = ? AND x.special_use = '\\Junk' AND m.saved > ? ORDER BY m.saved""",
        (account_id, since),
    )
    out = []
    for saved, prefix, structure in rows:
        parsed = message.ParsedMessage.from_json(structure) if structure else None
        author = parsed.from_[0] if parsed and parsed.from_ else None
        sender = (author.address or author.name or "") if author else ""
        if author and author.name and author.address:
            sender = f"{author.name} <{author.address}>"
        found = _SCORE.search(bytes(prefix))
        subject = (parsed.subject or "") if parsed else ""
        score = found.group(1).decode() if found else ""
        out.append(Item(float(saved), trace.clean(sender)[:120], trace.clean(subject)[:160], score))
    return out


def due(conn: sqlite3.Connection, now: float) -> list[tuple[int, str, list[Item]]]:
    """(account id, address, what its Junk got since its last digest) of every active account with something."""
    found = []
    for account_id, address, last in conn.execute(
        """SELECT a.id, a.email, d.last FROM accounts a LEFT JOIN junk_digests d ON d.account_id = a.id
           WHERE a.state = 'active' ORDER BY a.id"""
    ).fetchall():
        items = _items(conn, int(account_id), float(last) if last is not None else now - FIRST_SINCE)
        if items:
            found.append((int(account_id), str(address), items))
    return found


def build(recipient: str, items: list[Item], *, sender: str, hostname: str, now: float) -> bytes:
    """The digest: a plain-text message, one line per message (the first :data:`MAX_LISTED`)."""
    lines = [
        f"{len(items)} message(s) went to your Junk folder since the last digest. If one of them is not spam,",
        "move it out of Junk: the filter learns from that, and it is filed in your inbox.",
        "",
    ]
    for item in items[:MAX_LISTED]:
        when = email.utils.formatdate(item.saved, localtime=True)[:-15].rstrip(", ")
        score = f" ({item.score})" if item.score else ""
        lines.append(f"- {when}  {item.sender or '(no sender)'}: {item.subject or '(no subject)'}{score}")
    if len(items) > MAX_LISTED:
        lines.append(f"… and {len(items) - MAX_LISTED} more.")
    head = [
        f"From: Mail system <{sender}>",
        f"To: <{recipient}>",
        encode_field("Subject", f"Junk: {len(items)} message(s) filed since the last digest").rstrip("\r\n"),
        f"Date: {trace.date(now)}",
        f"Message-ID: <junk-digest-{secrets.token_hex(12)}@{hostname}>",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    return ("\r\n".join(head) + "\r\n\r\n" + "\r\n".join(lines) + "\r\n").encode("utf-8")


def send(conn: sqlite3.Connection, *, sender: str, hostname: str, now: float | None = None) -> dict[str, int]:
    """The write job: each account's digest filed into its INBOX and its mark moved to ``now``; returns how many
    messages each address's digest lists."""
    now = time.time() if now is None else now
    sent = {}
    for account_id, address, items in due(conn, now):
        raw = build(address, items, sender=sender, hostname=hostname, now=now)
        mailbox_id = mailboxes.find(conn, account_id, mailboxes.INBOX)
        if mailbox_id is None:
            continue
        blob_id = messages.store_blob(conn, raw, message.parse(raw).to_json())
        messages.append(conn, mailbox_id, blob_id, prefix=b"", size=len(raw), internaldate=now)
        conn.execute(
            "INSERT INTO junk_digests (account_id, last) VALUES (?, ?) ON CONFLICT (account_id) DO UPDATE SET last = ?",
            (account_id, now, now),
        )
        sent[address] = len(items)
    return sent


async def run_daily(store: Store, settings: Callable[[], Config]) -> None:
    """The daemon's daily job: with ``[spam] junk_digest`` on, the digests due, an hour after start and then daily."""

    async def send_now() -> None:
        config = settings()
        if not config.spam.junk_digest:
            return
        sender = config.quota.notices_from or f"postmaster@{config.server.hostname}"
        sent = await store.write(functools.partial(send, sender=sender, hostname=config.server.hostname))
        if sent:
            log.info("spam: Junk digests sent to %d account(s)", len(sent))

    await daily.every_day(send_now, what="junk digest", log=log, first_delay=3600.0)
