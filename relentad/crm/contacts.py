"""Contacts of an account: people, mailing lists and automatic senders it corresponds with.

A contact has a display name (decoded; the best one known), any number of addresses, an optional company, tags,
notes, first/last contact times and counts of messages in (received mail involving them) and out (mail the account
sent to them). The sorter creates and updates contacts at delivery (:func:`record`); the owner tags, notes,
renames, merges and adds addresses through the CLI.

Invariants:
- An address (normalised, lower case) belongs to at most one contact of an account (``crm_addresses`` key).
- ``confirmed`` means the owner knows the contact: set when the account sends them mail or the owner tags, notes,
  renames, merges or adds an address to them. Mail from a person who is not a confirmed contact is "unassigned".
- Functions take a connection and run inside the caller's transaction; errors are :class:`RelentadError`s with
  a message fit for the CLI.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import InvalidInput, NotFound
from . import companies, ids
from .participants import (
    BULK,
    CONTROL,
    IN,
    LIST,
    PERSON,
    Participant,
    base_address,
    check_name,
    display_name,
    normalize,
)


@dataclass(frozen=True, slots=True)
class Known:
    """What delivery needs to know about an address before filing (rules, unassigned)."""

    contact_id: int
    kind: str
    confirmed: bool
    company: str  # "" when none
    company_domain: str
    tags: tuple[str, ...]


def lookup(conn: sqlite3.Connection, account_id: int, address: str) -> Known | None:
    """The contact owning ``address`` (normalised) with its company and tags, or None."""
    row = conn.execute(
        """SELECT c.id, c.kind, c.confirmed, coalesce(p.name, ''), coalesce(p.domain, ''),
                  (SELECT group_concat(tag, char(31)) FROM crm_tags t WHERE t.contact_id = c.id)
           FROM crm_addresses a JOIN crm_contacts c ON c.id = a.contact_id
           LEFT JOIN crm_companies p ON p.id = c.company_id
           WHERE a.account_id = ? AND a.address = ?""",
        (account_id, address),
    ).fetchone()
    if row is None:
        return None
    tags = tuple(row[5].split("\x1f")) if row[5] else ()
    return Known(int(row[0]), str(row[1]), bool(row[2]), str(row[3]), str(row[4]), tags)


def _better_name(current: str, offered: str, address: str) -> bool:
    """Whether ``offered`` is a better display name than ``current`` (empty or address-like names lose)."""
    offered = offered.strip()
    if not offered or "@" in offered or offered.lower() == address:
        return False
    return not current or "@" in current


def create(
    conn: sqlite3.Connection,
    account_id: int,
    address: str,
    name: str = "",
    kind: str = PERSON,
    now: float = 0.0,
    direction: str | None = None,
    *,
    if_free: bool = False,
) -> int:
    """A new contact with one address (which must be free); returns its id. With ``direction`` the contact is
    created already counting one message that way (the sorter's case). With ``if_free``, an address that turns
    out to be taken makes no contact and returns 0."""
    domain = companies.company_domain(address) if kind == PERSON else None
    when = now or time.time()
    seen = None if direction is None else when
    # The company's id comes from a subquery: one statement when the company exists (the common case), and the
    # company is made only when it does not. The id is above those of the account's deleted cards (CardDAV's
    # tombstones): the vCard UID is made of it, and SQLite would give a deleted newest contact's id to the next.
    row = conn.execute(
        """INSERT INTO crm_contacts (id, account_id, name, kind, company_id, created, first_contact, last_contact,
                                     count_in, count_out, confirmed)
           VALUES (:id, :account, :name, :kind,
                   (SELECT id FROM crm_companies WHERE account_id = :account AND domain = :domain),
                   :when, :seen, :seen, :count_in, :count_out, :count_out)
           RETURNING id, company_id""",
        {
            "id": ids.fresh(conn, "crm_contacts"),  # never a merged-away contact's (its folder's MAILBOXID)
            "account": account_id,
            "name": name.strip() if _better_name("", name, address) else "",
            "kind": kind,
            "domain": domain,
            "when": when,
            "seen": seen,
            "count_in": int(direction == IN),
            "count_out": int(direction is not None and direction != IN),
        },
    ).fetchone()
    contact_id, company_id = int(row[0]), row[1]
    if domain and company_id is None:
        company_id = companies.create(conn, account_id, domain, when)
        conn.execute("UPDATE crm_contacts SET company_id = ? WHERE id = ?", (company_id, contact_id))
    added = conn.execute(
        "INSERT OR IGNORE INTO crm_addresses (account_id, address, contact_id) VALUES (?, ?, ?)",
        (account_id, address, contact_id),
    ).rowcount
    if not added:
        conn.execute("DELETE FROM crm_contacts WHERE id = ?", (contact_id,))
        if if_free:
            return 0
        raise InvalidInput(f"{address} already belongs to a contact")
    return contact_id


def record(
    conn: sqlite3.Connection,
    account_id: int,
    who: Participant,
    direction: str,
    when: float,
    counted: set[int],
    likely_new: bool = False,
) -> int:
    """Create or update the contact for one participant of a filed message; returns the contact id.

    ``counted`` holds the contacts this message already counted (two addresses of one contact count once). A
    known contact costs one statement, a new one three or four (company, contact, address): this is the hot path.
    """
    adopted = False
    if likely_new:  # skip the update that would find nothing; a contact made meanwhile is caught below
        adopted = _adopt(conn, account_id, who.address)
        if not adopted:
            contact_id = create(conn, account_id, who.address, who.name, who.kind, when, direction, if_free=True)
            if contact_id:
                counted.add(contact_id)
                return contact_id
    column = "count_in" if direction == IN else "count_out"
    count = f"""UPDATE crm_contacts SET {column} = {column} + 1, first_contact = min(coalesce(first_contact, ?1), ?1),
                    last_contact = max(coalesce(last_contact, ?1), ?1), confirmed = confirmed OR ?2
                WHERE id = (SELECT contact_id FROM crm_addresses WHERE account_id = ?3 AND address = ?4)
                RETURNING id, name, kind"""
    values = (when, direction != IN, account_id, who.address)
    row = conn.execute(count, values).fetchone()
    if row is None and not adopted and _adopt(conn, account_id, who.address):
        row = conn.execute(count, values).fetchone()
    if row is None:
        contact_id = create(conn, account_id, who.address, who.name, who.kind, when, direction)
        counted.add(contact_id)
        return contact_id
    contact_id = int(row[0])
    if contact_id in counted:  # the same contact under a second address of this message (rare): count once
        conn.execute(f"UPDATE crm_contacts SET {column} = {column} - 1 WHERE id = ?", (contact_id,))
    counted.add(contact_id)
    if _better_name(row[1], who.name, who.address):
        conn.execute("UPDATE crm_contacts SET name = ? WHERE id = ?", (who.name.strip(), contact_id))
    if who.kind != row[2] and (who.kind == LIST or (who.kind == PERSON and row[2] == BULK)):
        _rekind(conn, account_id, contact_id, who)
    return contact_id


def _rekind(conn: sqlite3.Connection, account_id: int, contact_id: int, who: Participant) -> None:
    """Mail shows what an address really is: a list (its List-Id), or a person who writes themselves after their
    first message was automatic (an out-of-office reply). A contact made from the wrong first impression takes that
    kind — a list has no company, a person gets one — else a person stayed "bulk" for ever, out of the IMAP
    folders even once confirmed, and a list the account wrote to first stayed a "person" of a company."""
    company = _company_for(conn, account_id, who.address) if who.kind == PERSON else None
    conn.execute("UPDATE crm_contacts SET kind = ?, company_id = ? WHERE id = ?", (who.kind, company, contact_id))
    if company is not None:
        _company_view_changed(conn, contact_id)


def _adopt(conn: sqlite3.Connection, account_id: int, address: str) -> bool:
    """Give a new ``address`` to the contact that has another address of the same mailbox — ``bob@d`` for
    ``bob+news@d``, ``bob+x@d`` for ``bob@d`` or ``bob+news@d`` — so one person's subaddresses are one contact.
    Returns whether it did (one indexed lookup: the addresses of a mailbox sort together)."""
    local, _, domain = base_address(address).rpartition("@")
    row = conn.execute(
        """SELECT contact_id FROM crm_addresses WHERE account_id = ?1 AND address = ?2
           UNION ALL
           SELECT contact_id FROM crm_addresses WHERE account_id = ?1 AND address > ?3 AND address < ?4
               AND substr(address, -length(?5)) = ?5
           LIMIT 1""",
        (account_id, f"{local}@{domain}", local + "+", local + ",", "@" + domain),
    ).fetchone()
    if row is None:
        return False
    conn.execute(
        "INSERT OR IGNORE INTO crm_addresses (account_id, address, contact_id) VALUES (?, ?, ?)",
        (account_id, address, int(row[0])),
    )
    return True


# -- the owner's edits ------------------------------------------------------------------------------------


def owner_of(conn: sqlite3.Connection, account_id: int, address: str) -> int | None:
    """The contact holding ``address`` (normalised), or None."""
    row = conn.execute(
        "SELECT contact_id FROM crm_addresses WHERE account_id = ? AND address = ?", (account_id, address)
    ).fetchone()
    return None if row is None else int(row[0])


def resolve(conn: sqlite3.Connection, account_id: int, ref: str) -> int:
    """A contact named by address, ``#id`` (or a bare id) or exact display name; NotFound / InvalidInput."""
    ref = ref.strip()
    if not ref:
        raise InvalidInput("name a contact by address, #id or name")
    address = normalize(ref)
    if address:
        owner = owner_of(conn, account_id, address)
        if owner is None:
            raise NotFound(f"no contact with the address {address}")
        return owner
    digits = ref.removeprefix("#")
    if digits.isascii() and digits.isdigit():
        if len(digits) > 18:  # beyond SQLite's integers: no such row
            raise NotFound(f"no contact #{digits}")
        row = conn.execute(
            "SELECT id FROM crm_contacts WHERE account_id = ? AND id = ?", (account_id, int(digits))
        ).fetchone()
        if row is None:
            raise NotFound(f"no contact #{digits}")
        return int(row[0])
    ids = companies.ids_named(
        conn.execute("SELECT id, name FROM crm_contacts WHERE account_id = ? AND name != ''", (account_id,)), ref
    )
    if not ids:
        raise NotFound(f"no contact named {ref!r}")
    if len(ids) > 1:
        raise InvalidInput(f"several contacts are named {ref!r}; name one by address or #id")
    return ids[0]


def rename(conn: sqlite3.Connection, account_id: int, contact_id: int, name: str) -> str:
    """Give the contact the owner's name for it (mail never replaces it: it is no empty or address-like name).

    Its IMAP folder ``Contacts/<Name>`` changes name; the folder's UIDVALIDITY goes above every contact's of the
    account, so a client that knew another folder of that name (a contact renamed or merged away) resynchronises.
    """
    clean = check_name(name)
    conn.execute(
        """UPDATE crm_contacts SET name = ?1, confirmed = 1,
               uidvalidity = (SELECT max(uidvalidity) FROM crm_contacts WHERE account_id = ?2) + 1
           WHERE id = ?3""",
        (clean, account_id, contact_id),
    )
    return clean


def _confirm(conn: sqlite3.Connection, contact_id: int) -> None:
    conn.execute("UPDATE crm_contacts SET confirmed = 1 WHERE id = ?", (contact_id,))


def confirm_person(conn: sqlite3.Connection, contact_id: int) -> None:
    """The owner adds the contact (a card from a phone or a contact file): confirmed, and an automatic sender the
    owner adds is a person (as mail from them written by hand makes it); a list stays."""
    conn.execute(
        "UPDATE crm_contacts SET confirmed = 1, kind = CASE kind WHEN 'bulk' THEN 'person' ELSE kind END WHERE id = ?",
        (contact_id,),
    )


def check_tag(tag: str) -> str:
    tag = tag.strip()
    if not tag or len(tag) > 64 or CONTROL.search(tag) or "," in tag:  # C1's CSI drives a terminal as ESC [ does
        raise InvalidInput(f"not a tag: {tag!r} (1-64 characters, no commas or control characters)")
    return tag


def keepable_tags(tags: Iterable[str]) -> list[str]:
    """Of tags from elsewhere (a card's CATEGORIES), those the CRM keeps, each once; the others stay in the card."""
    kept = []
    for name in tags:
        try:
            kept.append(check_tag(name))
        except InvalidInput:
            continue
    return list(dict.fromkeys(kept))


def tag(conn: sqlite3.Connection, contact_id: int, tags: list[str]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO crm_tags (contact_id, tag) VALUES (?, ?)", [(contact_id, check_tag(t)) for t in tags]
    )
    _confirm(conn, contact_id)


def untag(conn: sqlite3.Connection, contact_id: int, tags: list[str]) -> int:
    removed = 0
    for name in tags:
        removed += conn.execute("DELETE FROM crm_tags WHERE contact_id = ? AND tag = ?", (contact_id, name)).rowcount
    return removed


def add_note(conn: sqlite3.Connection, contact_id: int, text: str, now: float | None = None) -> None:
    """Append a dated line to the contact's notes."""
    text = display_name(text)  # one line, no control characters (a vCard NOTE cannot carry them)
    if not text:
        raise InvalidInput("the note is empty")
    stamp = time.strftime("%Y-%m-%d", time.gmtime(time.time() if now is None else now))
    conn.execute(
        """UPDATE crm_contacts SET notes = CASE WHEN notes = '' THEN ? ELSE notes || char(10) || ? END
           WHERE id = ?""",
        (f"{stamp} {text}", f"{stamp} {text}", contact_id),
    )
    _confirm(conn, contact_id)


def clean_notes(text: str) -> str:
    """Notes from elsewhere (a card's NOTE) as the CRM keeps notes: lines without control characters (an escape
    sequence must not reach a terminal through ``relentad contacts show``)."""
    return "\n".join(display_name(line) for line in text.splitlines())


def join_company(conn: sqlite3.Connection, account_id: int, contact_id: int, name: str) -> bool:
    """Make the contact one of the account's company called ``name`` (a card's ORG): only when exactly one has that
    name, since the CRM makes companies from address domains only (False: nothing changed, the ORG stays in the
    card)."""
    found = companies.named(conn, account_id, name)
    if len(found) != 1:
        return False
    conn.execute("UPDATE crm_contacts SET company_id = ? WHERE id = ?", (found[0], contact_id))
    _company_view_changed(conn, contact_id)  # its folder gains the contact's older messages
    return True


def add_address(conn: sqlite3.Connection, account_id: int, contact_id: int, address: str) -> str:
    """Give the contact another address; an address owned by another contact is refused (merge them instead)."""
    normal = normalize(address)
    if not normal:
        raise InvalidInput(f"not an address: {address!r}")
    if is_own_address(conn, account_id, normal):
        raise InvalidInput(f"{normal} is the account's own address; it is never a contact's")
    owner = owner_of(conn, account_id, normal)
    if owner is not None and owner != contact_id:
        raise InvalidInput(f"{normal} belongs to contact #{owner}; merge the two contacts instead")
    conn.execute(
        "INSERT OR IGNORE INTO crm_addresses (account_id, address, contact_id) VALUES (?, ?, ?)",
        (account_id, normal, contact_id),
    )
    conn.execute(
        "UPDATE crm_contacts SET company_id = coalesce(company_id, ?) WHERE id = ?",
        (_company_for(conn, account_id, normal), contact_id),
    )
    _confirm(conn, contact_id)
    _company_view_changed(conn, contact_id)
    return normal


def is_own_address(conn: sqlite3.Connection, account_id: int, address: str) -> bool:
    """The account's address or one of its aliases, or a subaddress of one (what the sorter never files)."""
    candidates = (address, base_address(address))
    row = conn.execute(
        """SELECT 1 FROM accounts WHERE id = ?1 AND lower(email) IN (?2, ?3)
           UNION ALL SELECT 1 FROM aliases WHERE account_id = ?1 AND lower(address) IN (?2, ?3) LIMIT 1""",
        (account_id, *candidates),
    ).fetchone()
    return row is not None


def _company_view_changed(conn: sqlite3.Connection, contact_id: int) -> None:
    """The contact's company may have gained older messages: its virtual folder's UIDVALIDITY grows."""
    conn.execute(
        """UPDATE crm_companies SET uidvalidity = uidvalidity + 1
           WHERE id = (SELECT company_id FROM crm_contacts WHERE id = ?)""",
        (contact_id,),
    )


def _company_for(conn: sqlite3.Connection, account_id: int, address: str) -> int | None:
    domain = companies.company_domain(address)
    return companies.ensure(conn, account_id, domain) if domain else None


def merge(conn: sqlite3.Connection, account_id: int, keep: int, absorb: int) -> None:
    """Merge contact ``absorb`` into ``keep``: addresses, tags, notes, messages, threads, counts and times move.

    ``keep``'s name and company win when it has them. Its virtual folder gains older messages, so its
    ``uidvalidity`` changes (IMAP clients resynchronise ``Contacts/<Name>``).
    """
    if keep == absorb:
        raise InvalidInput("cannot merge a contact with itself")
    rows = {
        int(r["id"]): r
        for r in conn.execute(
            "SELECT * FROM crm_contacts WHERE account_id = ? AND id IN (?, ?)", (account_id, keep, absorb)
        )
    }
    if keep not in rows or absorb not in rows:
        raise NotFound("no such contact")
    a, b = rows[keep], rows[absorb]
    conn.execute("UPDATE crm_addresses SET contact_id = ? WHERE contact_id = ?", (keep, absorb))
    conn.execute("UPDATE OR IGNORE crm_tags SET contact_id = ? WHERE contact_id = ?", (keep, absorb))
    conn.execute("UPDATE OR IGNORE crm_message_contacts SET contact_id = ? WHERE contact_id = ?", (keep, absorb))
    conn.execute("UPDATE OR IGNORE crm_thread_contacts SET contact_id = ? WHERE contact_id = ?", (keep, absorb))
    firsts = [t for t in (a["first_contact"], b["first_contact"]) if t is not None]
    lasts = [t for t in (a["last_contact"], b["last_contact"]) if t is not None]
    notes = "\n".join(n for n in (a["notes"], b["notes"]) if n)
    conn.execute(
        """UPDATE crm_contacts SET name = ?, company_id = ?, notes = ?, confirmed = 1,
               kind = CASE WHEN kind = 'person' OR ? = 'person' THEN 'person' ELSE kind END,
               first_contact = ?, last_contact = ?, uidvalidity = ?
           WHERE id = ?""",
        (
            a["name"] or b["name"],
            a["company_id"] if a["company_id"] is not None else b["company_id"],
            notes,
            b["kind"],
            min(firsts) if firsts else None,
            max(lasts) if lasts else None,
            max(a["uidvalidity"], b["uidvalidity"]) + 1,  # above both: the folder name may pass from one to the other
            keep,
        ),
    )
    _company_view_changed(conn, keep)
    from ..carddav import write as carddav_write  # here: the address book builds on the CRM

    carddav_write.merge_cards(conn, account_id, keep, absorb)  # a phone's TEL, ADR … of ``absorb`` stay
    conn.execute("DELETE FROM crm_contacts WHERE id = ?", (absorb,))
    # a message that involved both counts once now
    conn.execute(
        """UPDATE crm_contacts SET
               count_in = (SELECT count(*) FROM crm_message_contacts l JOIN crm_messages m ON m.id = l.message_id
                           WHERE l.contact_id = ?1 AND m.direction = 'in'),
               count_out = (SELECT count(*) FROM crm_message_contacts l JOIN crm_messages m ON m.id = l.message_id
                            WHERE l.contact_id = ?1 AND m.direction = 'out')
           WHERE id = ?1""",
        (keep,),
    )
