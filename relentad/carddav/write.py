"""Writing the address book: a client's PUT and DELETE of a card, applied to the CRM in one store transaction.

Invariants:
- Runs on the store's writer thread (:meth:`relentad.store.db.Store.write`), inside its transaction: a refusal
  raises :class:`DavError` and nothing of the request is kept.
- Nothing a client sends is lost: its vCard is kept whole in ``carddav_cards`` (migration ``033_carddav_write``,
  at most :data:`vcard.MAX_CARD` octets a card and :data:`MAX_CARDS` cards an account) and the CRM's fields are set
  from it (FN → name, EMAIL → addresses, ORG → company when the account has one of that name, CATEGORIES → tags,
  NOTE → notes); what the CRM recorded right after is the card's ``base`` for the merge (:mod:`.vcard`).
- The CRM's own rules hold: an address belongs to one contact (another contact's in the book: 409
  CARDDAV:no-uid-conflict naming it), never to the account itself (403 CARDDAV:valid-address-data), and a
  contact has at least one address; companies come from address domains only (``crm.companies``).
- ``relentad contacts import`` (:mod:`relentad.crm.importing`) stores its cards through :func:`keep` as well, so an
  imported card and a client's are one kind of stored card, served by one merge rule.
- DELETE removes the card from the book, not the contact from the CRM: the contact is no longer confirmed (as
  before the owner knew it), keeps its messages, tags and notes, and its stored vCard is dropped; mail the account
  sends it confirms it again. The resource name stays the contact's.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from ..crm import contacts as crm
from ..crm import export, views
from ..crm.participants import display_name, normalize
from ..errors import RelentadError
from . import book, vcard
from .davxml import CARD, DAV, DavError

MAX_CARDS = 20000  # stored vCards of an account


@dataclass(frozen=True)
class Written:
    created: bool
    etag: str
    data: bytes  # the card as a GET now serves it (in the PUT's version)


def matches(header: str, etag: str | None, *, weak: bool = False) -> bool:
    """Whether an If-Match / If-None-Match value matches the current ETag (None: no resource). Strong comparison
    (RFC 7232 §2.3.2) for If-Match (§3.1); ``weak`` for If-None-Match, of any method (§3.2: "MUST use the weak
    comparison"), where ``W/"x"`` matches ``"x"``."""
    tags = [t.strip() for t in header.split(",") if t.strip()]
    if "*" in tags:
        return etag is not None
    if weak:
        tags = [t.removeprefix("W/") for t in tags]
    return etag is not None and etag in tags


def check(if_match: str | None, if_none_match: str | None, etag: str | None) -> None:
    """RFC 7232 §3.1, §3.2 for a write: 412 when the condition fails."""
    if if_match is not None and not matches(if_match, etag):
        raise DavError(412, "the card changed (or does not exist): fetch it again")
    if if_none_match is not None and matches(if_none_match, etag, weak=True):
        raise DavError(412, "the card exists")


def put(
    conn: sqlite3.Connection,
    account_id: int,
    name: str,
    data: bytes,
    if_match: str | None,
    if_none_match: str | None,
    base_href: str,
) -> Written:
    card = _parse(data)
    contact_id = book.contact_of(conn, account_id, name)
    current = book.by_name(conn, account_id, {name}, card.version).get(name) if contact_id is not None else None
    check(if_match, if_none_match, None if current is None else current.etag)
    fields = vcard.fields(card)
    editing = None if current is None else contact_id  # a name of a contact out of the book is a new card
    try:
        addresses = _addresses(conn, account_id, fields["addresses"], editing, base_href)
        _uid_free(conn, account_id, card.uid, editing, base_href)
        contact_id = editing if editing is not None else _new_contact(conn, account_id, name, addresses)
        _apply(conn, account_id, contact_id, fields, addresses)
    except RelentadError as exc:
        raise DavError(403, str(exc), (CARD, "valid-address-data")) from None
    keep(
        conn,
        account_id,
        contact_id,
        name,
        card.uid,
        data.decode("utf-8"),
        vcard.crm_values(views.contact(conn, contact_id)),
    )
    if kept_cards(conn, account_id) > MAX_CARDS:
        raise DavError(507, f"at most {MAX_CARDS} cards written by clients", (DAV, "quota-not-exceeded"))
    served = book.by_name(conn, account_id, {name}, card.version)[name]
    return Written(editing is None, served.etag, served.data)


def keep(
    conn: sqlite3.Connection,
    account_id: int,
    contact_id: int,
    name: str,
    uid: str,
    text: str | None,
    base: dict[str, Any] | None,
) -> None:
    """Store a contact's vCard at resource ``name`` with the CRM's values ``base`` it is merged against (PUT, merge
    and ``contacts import`` alike); ``text`` None drops the card, and the row keeps the name (the href a DELETE or a
    merge reports removed)."""
    conn.execute(
        """INSERT INTO carddav_cards (contact_id, account_id, name, uid, vcard, base) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (contact_id) DO UPDATE SET name = excluded.name, uid = excluded.uid, vcard = excluded.vcard,
               base = excluded.base""",
        (contact_id, account_id, name, uid, text, None if base is None else json.dumps(base)),
    )


def kept_cards(conn: sqlite3.Connection, account_id: int) -> int:
    """The account's stored vCards (of contacts that exist), held to :data:`MAX_CARDS`."""
    return int(
        conn.execute(
            """SELECT count(*) FROM carddav_cards k JOIN crm_contacts c ON c.id = k.contact_id
               WHERE k.account_id = ? AND k.vcard IS NOT NULL""",
            (account_id,),
        ).fetchone()[0]
    )


def uid_owner(conn: sqlite3.Connection, account_id: int, uid: str, contact_id: int | None) -> int | None:
    """The contact in the book (other than ``contact_id``) whose stored card has ``uid``: RFC 6352 §6.3.2.1, a UID
    is one card's in the collection."""
    if not uid:
        return None
    row = conn.execute(  # of a card in the book: a merged-away contact's row stays (its name for the tombstone)
        f"""SELECT k.contact_id FROM carddav_cards k JOIN crm_contacts c ON c.id = k.contact_id
            WHERE k.account_id = ? AND k.uid = ? AND k.vcard IS NOT NULL AND k.contact_id IS NOT ?
                  AND {views.IN_BOOK}""",
        (account_id, uid, contact_id),
    ).fetchone()
    return None if row is None else int(row[0])


def _parse(data: bytes) -> vcard.Card:
    if len(data) > vcard.MAX_CARD:
        raise DavError(413, f"a card is at most {vcard.MAX_CARD // 1024} KiB", (CARD, "max-resource-size"))
    try:
        return vcard.parse(data)
    except vcard.BadCard as exc:
        if exc.version:
            raise DavError(415, str(exc), (CARD, "supported-address-data")) from None
        raise DavError(400, str(exc), (CARD, "valid-address-data")) from None


def _addresses(
    conn: sqlite3.Connection, account_id: int, written: list[str], contact_id: int | None, base_href: str
) -> list[str]:
    """The card's addresses, normalised, each free or the contact's own (else the refusal the CRM's rules give)."""
    if not written:
        raise DavError(403, "a contact of relentad has an email address", (CARD, "valid-address-data"))
    addresses = []
    for text in written:
        address = normalize(text)
        if not address:
            raise DavError(403, f"not an email address: {text[:80]!r}", (CARD, "valid-address-data"))
        if crm.is_own_address(conn, account_id, address):
            raise DavError(403, f"{address} is the account's own address", (CARD, "valid-address-data"))
        row = conn.execute(
            f"""SELECT a.contact_id, {views.IN_BOOK} FROM crm_addresses a JOIN crm_contacts c ON c.id = a.contact_id
                WHERE a.account_id = ? AND a.address = ?""",
            (account_id, address),
        ).fetchone()
        if row is not None and int(row[0]) != contact_id and row[1]:
            href = base_href + _name_of(conn, account_id, int(row[0]))
            raise DavError(409, f"{address} belongs to {href}", (CARD, "no-uid-conflict"), href)
        if row is not None and int(row[0]) != contact_id and contact_id is not None:  # no card to name in a 409
            raise DavError(
                403,
                f"{address} is a sender's not in the address book: merge the two with `relentad contacts merge`",
                (CARD, "valid-address-data"),
            )
        addresses.append(address)
    return list(dict.fromkeys(addresses))


def _name_of(conn: sqlite3.Connection, account_id: int, contact_id: int) -> str:
    return book.resource_name(account_id, contact_id, book.stored(conn, account_id, [contact_id]).get(contact_id))


def _uid_free(conn: sqlite3.Connection, account_id: int, uid: str, contact_id: int | None, base_href: str) -> None:
    owner = uid_owner(conn, account_id, uid, contact_id)
    if owner is not None:
        href = base_href + _name_of(conn, account_id, owner)
        raise DavError(409, f"the UID is the card {href}'s", (CARD, "no-uid-conflict"), href)


def _new_contact(conn: sqlite3.Connection, account_id: int, name: str, addresses: list[str]) -> int:
    """A confirmed person for a card PUT at a new resource name — or the contact already holding its first
    address while out of the book (a sender the owner now adds), which joins the book under that name."""
    owner = crm.owner_of(conn, account_id, addresses[0])
    # made nameless: :func:`_apply` names it through the CRM's rule (one line, at most 200 characters)
    contact_id = owner if owner is not None else crm.create(conn, account_id, addresses[0])
    # the name passes to this contact from one out of the book (deleted from it earlier), whose href was reported
    # removed then
    conn.execute(
        "DELETE FROM carddav_cards WHERE account_id = ? AND name = ? AND contact_id != ?",
        (account_id, name, contact_id),
    )
    crm.confirm_person(conn, contact_id)
    return contact_id


def _apply(
    conn: sqlite3.Connection, account_id: int, contact_id: int, fields: dict[str, Any], addresses: list[str]
) -> None:
    """Set the CRM's fields of the contact, one of the book (confirmed), to the card's."""
    name = display_name(str(fields["name"]))  # as the CRM compares and keeps names: controls are spaces
    current = views.contact(conn, contact_id)
    if name and name != current["name"] and "@" not in name:
        crm.rename(conn, account_id, contact_id, name)
    for address in addresses:
        if address not in current["addresses"]:
            crm.add_address(conn, account_id, contact_id, address)
    for address in current["addresses"]:
        if address not in addresses:
            conn.execute("DELETE FROM crm_addresses WHERE account_id = ? AND address = ?", (account_id, address))
    tags = crm.keepable_tags(fields["tags"] or ())  # the others are kept in the card's CATEGORIES only
    if fields["tags"] is not None and sorted(tags) != current["tags"]:
        conn.execute("DELETE FROM crm_tags WHERE contact_id = ?", (contact_id,))
        crm.tag(conn, contact_id, tags)
    notes = None if fields["notes"] is None else crm.clean_notes(fields["notes"])
    if notes is not None and notes != current["notes"]:
        conn.execute("UPDATE crm_contacts SET notes = ? WHERE id = ?", (notes, contact_id))
    company = str(fields["company"] or "")
    if company and company.casefold() != current["company"].casefold():
        crm.join_company(conn, account_id, contact_id, company)


def delete(
    conn: sqlite3.Connection, account_id: int, name: str, if_match: str | None, if_none_match: str | None = None
) -> None:
    current = book.by_name(conn, account_id, {name}).get(name)
    if current is None:
        raise DavError(404, "no such card")
    check(if_match, if_none_match, current.etag)
    conn.execute("UPDATE crm_contacts SET confirmed = 0 WHERE id = ?", (current.contact_id,))
    keep(conn, account_id, current.contact_id, name, "", None, None)  # the row's name is ``name`` already


def merge_cards(conn: sqlite3.Connection, account_id: int, survivor: int, absorb: int) -> None:
    """The stored cards' part of a merge of contact ``absorb`` into ``survivor`` (``crm.contacts.merge``): what a
    client wrote on the absorbed card and the CRM does not keep passes to the survivor's card
    (:func:`vcard.combine`), and the absorbed row keeps only its name (the href its tombstone reports): no vCard of
    a contact that is gone."""
    rows = book.stored(conn, account_id, [survivor, absorb])
    gone, kept = rows.get(absorb), rows.get(survivor)
    if gone is None or gone.vcard is None:
        return
    text = vcard.combine(kept.vcard if kept is not None else None, gone.vcard, export.uid(account_id, survivor))
    base = kept.base if kept is not None and kept.vcard is not None else gone.base
    keep(conn, account_id, absorb, gone.name, "", None, None)
    uid = vcard.parse(text.encode("utf-8"), limits=False).uid
    keep(conn, account_id, survivor, book.resource_name(account_id, survivor, kept), uid, text, base)
