"""``relentad contacts import``: the entries of a contact file (:mod:`.contactfile`) into an account's CRM.

Each entry is a vCard; it is read as a CardDAV PUT's card is (:func:`relentad.carddav.vcard.fields`) and stored as
one (:func:`relentad.carddav.write.keep`), so the phone numbers, postal addresses and everything else the CRM has no
field for are served in the address book. What differs from a PUT is that an import adds to what the CRM knows
instead of replacing it (the merge rule, README "Importing contacts"):

- An entry is matched to the contact holding any of its addresses; addresses of two different contacts make it
  skipped (merge them first). No match: a new confirmed person, made as delivery makes one (its company from the
  first address's domain).
- Addresses are added, never taken away; the account's own addresses and aliases, and what is no address, are
  left out with a reason; an entry left with none is skipped.
- The name is set when the contact has none (or only an address as a name); tags are added; a note is set when the
  contact has none, appended when it has another, left when the contact's notes already hold it as whole lines;
  ORG sets the company only when the account has exactly one company of that name and the contact has none.
  ``overwrite``: the file's name, note and company replace the contact's.
- The card is stored when the contact has none stored (from a phone or an earlier import); one stored is kept
  unless ``overwrite``. Its base makes every group the CRM holds otherwise served as the CRM has it.
- Entries are applied in a savepoint each: one the CRM refuses is skipped alone. Applying the same file again
  changes nothing ("unchanged").
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from ..carddav import book, vcard, write
from ..errors import RelentadError
from . import contacts as crm
from . import export, views
from .contactfile import NO_ADDRESS, Entry
from .participants import check_name, normalize

CREATED, UPDATED, UNCHANGED, SKIPPED = "created", "updated", "unchanged", "skipped"


@dataclass
class Outcome:
    where: str
    result: str
    contact_id: int | None = None
    name: str = ""
    changes: list[str] = field(default_factory=list)  # what changed, or why it was skipped

    def as_json(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "result": self.result,
            "contact": self.contact_id,
            "name": self.name,
            "details": self.changes,
        }


class Importer:
    """Applies entries to one account; ``overwrite`` lets the file's name, note, company and card win."""

    def __init__(self, account_id: int, overwrite: bool = False) -> None:
        self.account_id = account_id
        self.overwrite = overwrite
        self.kept = 0  # the account's stored cards, counted at each batch

    def run(self, conn: sqlite3.Connection, entries: list[Entry]) -> list[Outcome]:
        """One batch, inside the caller's transaction."""
        self.kept = write.kept_cards(conn, self.account_id)
        return [self.one(conn, entry) for entry in entries]

    def one(self, conn: sqlite3.Connection, entry: Entry) -> Outcome:
        if entry.skip or entry.card is None:
            return Outcome(entry.where, SKIPPED, changes=[entry.skip])
        fields = vcard.fields(entry.card)
        addresses, left_out = self._addresses(conn, fields["addresses"])
        if not addresses:
            return Outcome(entry.where, SKIPPED, changes=left_out or [NO_ADDRESS])
        owners = sorted({o for o in (crm.owner_of(conn, self.account_id, a) for a in addresses) if o is not None})
        if len(owners) > 1:
            named = " and ".join(f"#{owner}" for owner in owners)
            return Outcome(
                entry.where, SKIPPED, changes=[f"its addresses belong to contacts {named}: merge them first"]
            )
        conn.execute("SAVEPOINT contact_import")
        try:
            outcome = self._apply(conn, entry, fields, addresses, owners[0] if owners else None)
        except RelentadError as exc:
            conn.execute("ROLLBACK TO contact_import")
            outcome = Outcome(entry.where, SKIPPED, changes=[str(exc)])
        conn.execute("RELEASE contact_import")
        if outcome.result in (CREATED, UPDATED):
            outcome.changes += left_out + entry.notes
        return outcome

    def _addresses(self, conn: sqlite3.Connection, written: list[str]) -> tuple[list[str], list[str]]:
        addresses, left_out = [], []
        for text in written:
            angle = re.search(r"<([^<>]*)>", text)
            address = normalize(text) or (normalize(angle.group(1)) if angle else "")  # "Bob <bob@x>" in a cell
            if not address:
                left_out.append(f"not an email address: {text[:80]!r}")
            elif crm.is_own_address(conn, self.account_id, address):
                left_out.append(f"{address} left out: the account's own address or alias")
            else:
                addresses.append(address)
        return list(dict.fromkeys(addresses)), left_out

    def _apply(
        self, conn: sqlite3.Connection, entry: Entry, fields: dict[str, Any], addresses: list[str], found: int | None
    ) -> Outcome:
        changes: list[str] = []
        name = str(fields["name"]).strip()
        try:
            name = check_name(name) if name and "@" not in name else ""
        except RelentadError:  # too long for the CRM: the card keeps it
            name = ""
        if found is None:
            contact_id = crm.create(conn, self.account_id, addresses[0], name)
            crm.confirm_person(conn, contact_id)
        else:
            contact_id = found
        current = views.contact(conn, contact_id)
        if found is not None and (not current["confirmed"] or current["kind"] == "bulk"):
            crm.confirm_person(conn, contact_id)
            changes.append("confirmed")
        unnamed = not current["name"] or "@" in current["name"]
        if name and name != current["name"] and (unnamed or self.overwrite):
            crm.rename(conn, self.account_id, contact_id, name)
            changes.append(f"name {name!r}")
        for address in addresses:
            if address not in current["addresses"]:
                crm.add_address(conn, self.account_id, contact_id, address)
                changes.append(f"address {address}")
        tags = _tags(fields["tags"])
        added = [t for t in tags if t not in current["tags"]]
        if added:
            crm.tag(conn, contact_id, added)
            changes.append("tags +" + ",".join(added))
        note = crm.clean_notes(str(fields["notes"] or "")).strip()  # as for a PUT: no escape sequence kept
        changes += self._note(conn, contact_id, note, current["notes"])
        changes += self._company(conn, contact_id, str(fields["company"] or "").strip(), current["company"])
        stored, remarks = self._card(conn, entry.card, contact_id, fields, tags)
        changes += stored
        contact = views.contact(conn, contact_id)
        if found is None:
            return Outcome(
                entry.where, CREATED, contact_id, contact["name"], [", ".join(contact["addresses"]), *remarks]
            )
        if not changes:  # a remark alone (a card not kept) is no change: a second import stays "unchanged"
            return Outcome(entry.where, UNCHANGED, contact_id, contact["name"])
        return Outcome(entry.where, UPDATED, contact_id, contact["name"], changes + remarks)

    def _note(self, conn: sqlite3.Connection, contact_id: int, note: str, notes: str) -> list[str]:
        held = f"\n{note}\n" in f"\n{notes}\n"  # as whole lines: "hi" is not held by "high"
        if not note or note == notes or (held and not self.overwrite):
            return []
        if notes and not self.overwrite:
            conn.execute("UPDATE crm_contacts SET notes = notes || char(10) || ? WHERE id = ?", (note, contact_id))
            return ["note appended"]
        conn.execute("UPDATE crm_contacts SET notes = ? WHERE id = ?", (note, contact_id))
        return ["note replaced" if notes else "note"]

    def _company(self, conn: sqlite3.Connection, contact_id: int, company: str, current: str) -> list[str]:
        if not company or company.casefold() == current.casefold() or (current and not self.overwrite):
            return []
        return [f"company {company}"] if crm.join_company(conn, self.account_id, contact_id, company) else []

    def _card(
        self,
        conn: sqlite3.Connection,
        card: vcard.Card | None,
        contact_id: int,
        fields: dict[str, Any],
        tags: list[str],
    ) -> tuple[list[str], list[str]]:
        """Store the entry's vCard for the contact (the module's rule): (changes, remarks). Its UID is the
        contact's own when the card has none or another card in the book has it."""
        assert card is not None
        kept = book.stored(conn, self.account_id, [contact_id]).get(contact_id)
        uid = card.uid
        lines = [line.raw for line in card.lines]
        if not uid or write.uid_owner(conn, self.account_id, uid, contact_id) is not None:
            uid = export.uid(self.account_id, contact_id)
            lines = [f"UID:{uid}", *(line.raw for line in card.lines if line.name != "UID")]
        text = vcard.text(card.version, lines)
        if kept is not None and kept.vcard is not None and (kept.vcard == text or not self.overwrite):
            return [], []
        if kept is None or kept.vcard is None:
            if self.kept >= write.MAX_CARDS:
                return [], [f"its vCard not kept: the account has {write.MAX_CARDS} stored cards"]
            self.kept += 1
        now = vcard.crm_values(views.contact(conn, contact_id))
        written = {
            "name": fields["name"],
            "addresses": sorted({normalize(a) for a in fields["addresses"]}),
            "company": fields["company"],
            "tags": sorted(set(tags)) if fields["tags"] is not None else None,
            "notes": fields["notes"],
        }
        # a group the card has but the CRM holds otherwise is served as the CRM has it (its base differs); but an ORG
        # is served as written, as for a PUT: the CRM's company comes from a domain, the ORG is the fuller name
        base = {key: now[key] if written[key] in (None, now[key]) or key == "company" else written[key] for key in now}
        name = book.resource_name(self.account_id, contact_id, kept)
        write.keep(conn, self.account_id, contact_id, name, uid, text, base)
        return ["card replaced" if kept is not None and kept.vcard is not None else "card"], []


GOOGLE_GROUPS = frozenset({"myContacts", "starred"})
"""Google Contacts' own groups, in every card of its vCard export: no tags of the user's (they stay in the card)."""


def _tags(categories: list[str] | None) -> list[str]:
    return crm.keepable_tags(tag for tag in categories or () if tag not in GOOGLE_GROUPS)
