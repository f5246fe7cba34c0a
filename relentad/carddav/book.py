"""The address book of an account, from the store: its cards, its sync token and what changed since one.

Invariants:
- Members are the account's confirmed contacts that are no automatic senders (:data:`views.IN_BOOK`), the same
  set as the IMAP ``Contacts/`` folders; read only, any connection, one read transaction per call.
- A card's href is ``<UID>.vcf`` with the UID of ``relentad export`` (:func:`export.uid`), stable for a contact,
  unless a client created the contact by PUT: then the name it chose (``carddav_cards.name``, migration
  ``033_carddav_write``), for ever. Its ETag is a digest of its vCard (3.0 for the CRM's own cards; a stored card's
  own version), the same whichever version is served (clients compare the ETag of a 4.0 fetch with PROPFIND's,
  which names no version); every change of a card bumps its REV or its stored text, so the ETag changes with it.
- A contact a client PUT a vCard for is served merged (:func:`relentad.carddav.vcard.merged`).
- The sync token is the account's change counter (migration ``024_carddav_sync``, kept by triggers): a token
  names a state of the whole book. Changes since token N are the contacts whose ``card_rev`` > N — reported as
  changed while members, as removed when they left the book — and the tombstones with ``rev`` > N. A token
  above the counter (another server, a restored backup) is unknown: the client starts over (RFC 6578 §3.2).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..crm import export, views
from . import vcard

SYNC_URI = "urn:relentad:sync:"  # a sync token is a URI (RFC 6578 §6.2)


@dataclass(frozen=True)
class Card:
    contact_id: int
    uid: str
    data: bytes  # the vCard, UTF-8
    etag: str  # quoted, strong
    changed: float | None  # the card's last change (REV), unix time
    values: dict[str, list[str]]  # property name → values, for addressbook-query filters
    name: str  # the resource name in the book: "<uid>.vcf" or the one the client chose


@dataclass(frozen=True)
class Stored:
    """A contact's row of ``carddav_cards``: its resource name and, while in the book, the client's last vCard."""

    name: str
    vcard: str | None
    base: dict[str, Any]


def stored(conn: sqlite3.Connection, account_id: int, contact_ids: Iterable[int] | None = None) -> dict[int, Stored]:
    """The ``carddav_cards`` rows of the account (of these contacts)."""
    sql = "SELECT contact_id, name, vcard, base FROM carddav_cards WHERE account_id = ?"
    params: list[object] = [account_id]
    if contact_ids is not None:
        wanted = list(contact_ids)
        if not wanted:
            return {}
        sql += f" AND contact_id IN ({', '.join('?' * len(wanted))})"
        params += wanted
    return {int(r[0]): Stored(str(r[1]), r[2], json.loads(r[3]) if r[3] else {}) for r in conn.execute(sql, params)}


def card(account_id: int, contact: dict[str, Any], version: str, kept: Stored | None = None) -> Card:
    uid = export.uid(account_id, contact["id"])
    resource = resource_name(account_id, contact["id"], kept)
    if kept is not None and kept.vcard is not None:
        native = vcard.merged(account_id, contact, kept.vcard, kept.base)
        served = native
        if vcard.version_of(native) != version:
            served = vcard.merged(account_id, contact, kept.vcard, kept.base, version)
        values: dict[str, list[str]] = {}
        for line in vcard.parse(native.encode("utf-8"), limits=False).lines:
            values.setdefault(line.name, []).append(vcard.unescape(line.value))
        values["N"] = values.get("FN", [])
        etag = '"' + hashlib.sha256(native.encode("utf-8")).hexdigest()[:32] + '"'
        return Card(contact["id"], uid, served.encode("utf-8"), etag, contact.get("card_changed"), values, resource)
    data = export.vcard(account_id, contact, version).encode("utf-8")
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
    return Card(contact["id"], uid, data, etag, contact.get("card_changed"), values, resource)


def export_vcards(conn: sqlite3.Connection, account_id: int, contacts: list[dict[str, Any]]) -> str:
    """The contacts as ``relentad contacts export`` writes them (vCard 4.0), except those a client wrote a card for:
    their card as CardDAV serves it, in its own version, so the phone numbers, addresses and photos typed on a
    phone leave with the account's export too."""
    kept = stored(conn, account_id, [c["id"] for c in contacts])
    out = []
    for contact in contacts:
        found = kept.get(contact["id"])
        if found is not None and found.vcard is not None:
            out.append(vcard.merged(account_id, contact, found.vcard, found.base))
        else:
            out.append(export.vcard(account_id, contact))
    return "".join(out)


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
    kept = stored(conn, account_id)
    return [card(account_id, c, version, kept.get(c["id"])) for c in sorted(members, key=lambda c: c["id"])]


class _Uids:
    """UID → contact id of each account's contacts, learnt incrementally: a contact's UID is a digest of its id
    (:func:`export.uid`) and ids only grow (:mod:`relentad.crm.ids`), so a lookup computes UIDs only of contacts
    newer than the last it saw, not of the whole book. Shared by the reader threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.known: dict[int, tuple[int, dict[str, int]]] = {}  # account → (highest id seen, uid → id)

    def find(self, conn: sqlite3.Connection, account_id: int, uids: set[str]) -> dict[str, int]:
        with self.lock:
            highest, table = self.known.get(account_id, (0, {}))
        if not uids <= table.keys():
            rows = conn.execute(
                "SELECT id FROM crm_contacts WHERE account_id = ? AND id > ? ORDER BY id", (account_id, highest)
            ).fetchall()
            if rows:
                table = {**table, **{export.uid(account_id, int(r[0])): int(r[0]) for r in rows}}
                with self.lock:
                    if len(self.known) > 10000:
                        self.known.clear()
                    self.known[account_id] = (int(rows[-1][0]), table)
        return {uid: table[uid] for uid in uids if uid in table}


_UIDS = _Uids()


def by_name(conn: sqlite3.Connection, account_id: int, names: set[str], version: str = "3.0") -> dict[str, Card]:
    """The cards of the book with these resource names (the others are not in it): a client's own names from
    ``carddav_cards``, ``<uid>.vcf`` through the UID table; each card read by its id, never the whole book."""
    wanted = list(names)
    ids: dict[int, str] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT contact_id, name FROM carddav_cards WHERE account_id = ? AND name IN ({marks})",
            [account_id, *chunk],
        )
        ids.update({int(r[0]): str(r[1]) for r in rows})
    rest = {n.removesuffix(".vcf") for n in names if n.endswith(".vcf") and n not in ids.values()}
    ids.update({cid: f"{uid}.vcf" for uid, cid in _UIDS.find(conn, account_id, rest).items()})
    kept = stored(conn, account_id, ids)
    found: dict[str, Card] = {}
    for contact_id in sorted(ids):
        row = conn.execute(
            f"SELECT 1 FROM crm_contacts c WHERE c.id = ? AND c.account_id = ? AND {views.IN_BOOK}",
            (contact_id, account_id),
        ).fetchone()
        if row is None:
            continue
        made = card(account_id, views.contact(conn, contact_id), version, kept.get(contact_id))
        if made.name == ids[contact_id]:  # a contact with a client's name is not also at "<uid>.vcf"
            found[made.name] = made
    return found


def contact_of(conn: sqlite3.Connection, account_id: int, name: str) -> int | None:
    """The contact a resource name names, in the book or not (None: no contact has it)."""
    row = conn.execute(
        "SELECT contact_id FROM carddav_cards WHERE account_id = ? AND name = ?", (account_id, name)
    ).fetchone()
    if row is not None:
        return int(row[0])
    if not name.endswith(".vcf"):
        return None
    contact_id = _UIDS.find(conn, account_id, {name.removesuffix(".vcf")}).get(name.removesuffix(".vcf"))
    if contact_id is None or conn.execute("SELECT 1 FROM carddav_cards WHERE contact_id = ?", (contact_id,)).fetchone():
        return None
    return contact_id


@dataclass(frozen=True)
class Changes:
    counter: int
    changed: list[Card]
    removed: list[str]  # resource names


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
    present = {int(r[0]) for r in rows}
    tombstones = [
        int(r[0])
        for r in conn.execute(
            "SELECT contact_id FROM carddav_removed WHERE account_id = ? AND rev > ? ORDER BY contact_id",
            (account_id, since),
        )
        if int(r[0]) not in present
    ]
    kept = stored(conn, account_id, [*present, *tombstones])
    changed, removed = [], []
    for contact_id, member in rows:
        if member:
            changed.append(card(account_id, views.contact(conn, contact_id), version, kept.get(contact_id)))
        else:
            removed.append(resource_name(account_id, contact_id, kept.get(contact_id)))
    removed += [resource_name(account_id, cid, kept.get(cid)) for cid in tombstones]
    return Changes(now, changed, removed)


def resource_name(account_id: int, contact_id: int, kept: Stored | None) -> str:
    """A contact's resource name in the book: the one a client created it under, else ``<uid>.vcf``."""
    return kept.name if kept is not None else f"{export.uid(account_id, contact_id)}.vcf"
