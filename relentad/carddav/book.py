"""The address book of an account, from the store: its cards, its sync token and what changed since one.

Invariants:
- Members are the account's confirmed contacts that are no automatic senders (:data:`views.IN_BOOK`), the same
  set as the IMAP ``Contacts/`` folders; read only, any connection, one read transaction per call.
- A card's href is ``<UID>.vcf`` with the UID of ``relentad export`` (:func:`export.uid`), stable for a contact;
  its ETag is a digest of its vCard 3.0, the same whichever version is served (clients compare the ETag of a 4.0
  fetch with PROPFIND's, which names no version); every change of a card bumps its REV, so the ETag changes with it.
- The sync token is the account's change counter (migration ``024_carddav_sync``, kept by triggers): a token
  names a state of the whole book. Changes since token N are the contacts whose ``card_rev`` > N — reported as
  changed while members, as removed when they left the book — and the tombstones with ``rev`` > N. A token
  above the counter (another server, a restored backup) is unknown: the client starts over (RFC 6578 §3.2).
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from typing import Any

from ..crm import export, views

SYNC_URI = "urn:relentad:sync:"  # a sync token is a URI (RFC 6578 §6.2)


@dataclass(frozen=True)
class Card:
    contact_id: int
    uid: str
    data: bytes  # the vCard, UTF-8
    etag: str  # quoted, strong
    changed: float | None  # the card's last change (REV), unix time
    values: dict[str, list[str]]  # property name → values, for addressbook-query filters

    @property
    def name(self) -> str:
        return f"{self.uid}.vcf"


def card(account_id: int, contact: dict[str, Any], version: str) -> Card:
    data = export.vcard(account_id, contact, version).encode("utf-8")
    uid = export.uid(account_id, contact["id"])
    name = contact["name"] or (contact["addresses"][0] if contact["addresses"] else f"contact {contact['id']}")
    values = {
        "UID": [uid],
        "FN": [name],
        "N": [name],
        "EMAIL": list(contact["addresses"]),
        "ORG": [contact["company"]] if contact["company"] else [],
        "CATEGORIES": list(contact["tags"]),
        "NOTE": [contact["notes"]] if contact["notes"] else [],
    }
    # one ETag for both versions: a client that fetches 4.0 compares it with PROPFIND's getetag, which names none.
    # Of the 3.0 card, what most requests serve: every change of a card changes its REV, so the ETag changes with it
    plain = data if version == "3.0" else export.vcard(account_id, contact, "3.0").encode("utf-8")
    etag = '"' + hashlib.sha256(plain).hexdigest()[:32] + '"'
    return Card(contact["id"], uid, data, etag, contact.get("card_changed"), values)


def token(counter: int) -> str:
    return f"{SYNC_URI}{counter}"


def parse_token(text: str) -> int | None:
    """The counter a sync token names; None when it is not one of ours."""
    digits = text.strip().removeprefix(SYNC_URI)
    if not text.strip().startswith(SYNC_URI) or not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        return None
    return int(digits)


def counter(conn: sqlite3.Connection, account_id: int) -> int:
    row = conn.execute("SELECT counter FROM carddav_sync WHERE account_id = ?", (account_id,)).fetchone()
    return 0 if row is None else int(row[0])


def cards(conn: sqlite3.Connection, account_id: int, version: str = "3.0") -> list[Card]:
    """Every card of the book, by contact id."""
    members = views.list_contacts(conn, account_id, book=True)
    return [card(account_id, c, version) for c in sorted(members, key=lambda c: c["id"])]


def by_uid(conn: sqlite3.Connection, account_id: int, uids: set[str], version: str = "3.0") -> dict[str, Card]:
    """The cards of the book with these UIDs (the others are not in it)."""
    found: dict[str, Card] = {}
    ids = conn.execute(f"SELECT id FROM crm_contacts c WHERE c.account_id = ? AND {views.IN_BOOK}", (account_id,))
    for (contact_id,) in ids.fetchall():
        uid = export.uid(account_id, contact_id)
        if uid in uids:
            found[uid] = card(account_id, views.contact(conn, contact_id), version)
    return found


@dataclass(frozen=True)
class Changes:
    counter: int
    changed: list[Card]
    removed: list[str]  # UIDs


def changes(conn: sqlite3.Connection, account_id: int, since: int | None, version: str = "3.0") -> Changes | None:
    """What changed since token ``since`` (everything, as changed, for None); None when the token is unknown."""
    now = counter(conn, account_id)
    if since is None:
        return Changes(now, cards(conn, account_id, version), [])
    if since > now:
        return None
    rows = conn.execute(
        f"SELECT c.id, {views.IN_BOOK} FROM crm_contacts c WHERE c.account_id = ? AND c.card_rev > ? ORDER BY c.id",
        (account_id, since),
    ).fetchall()
    changed, removed = [], []
    for contact_id, member in rows:
        if member:
            changed.append(card(account_id, views.contact(conn, contact_id), version))
        else:
            removed.append(export.uid(account_id, contact_id))
    present = {int(r[0]) for r in rows}
    tombstones = conn.execute(
        "SELECT contact_id FROM carddav_removed WHERE account_id = ? AND rev > ? ORDER BY contact_id",
        (account_id, since),
    )
    removed += [export.uid(account_id, cid) for (cid,) in tombstones if cid not in present]
    return Changes(now, changed, removed)
