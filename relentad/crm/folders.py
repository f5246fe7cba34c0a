"""The CRM's IMAP virtual folders, store side: ``Contacts/<Name>``, ``Companies/<Name>`` and ``Follow-up``.

A folder is a read-only view: the messages filed against a confirmed contact (kind person or list; automatic
senders and people the owner never wrote to or tagged stay out, the way ``$Unassigned`` treats them), or against
any contact of a company that has a confirmed contact, across the account's real folders; ``Follow-up`` shows the
newest sent message of each thread due for a follow-up (:mod:`.followups`), computed when it is read.

Invariants:
- Names are derived, never stored: the contact's name (its first address when it has none) or the company's
  name, with "/" and wildcards replaced; when two folders would share a name (case-insensitively: clients keep
  folders as files), each gets its address or domain appended, so a bare name never moves to another contact
  without the UIDVALIDITY growing (a merge sets the kept contact's above both).
- One virtual message per filed message (``crm_messages``), whose UID is ``crm_messages.id`` (ascending, never
  reused). It shows one live copy (the oldest row in ``messages``): its flags, date and bytes; a message with no
  live copy left is not in the folder. UIDNEXT is one above the highest message ever filed against the view.
- ``Follow-up`` is one folder, not a tree; its UIDs are the sent messages' ``crm_messages`` ids and its
  UIDVALIDITY changes with the account's delay (:mod:`.followups`).
- Nothing here writes but :func:`set_subscribed`.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass

from . import followups, views
from .participants import MAX_NAME

CONTACTS = "Contacts"
COMPANIES = "Companies"
ROOTS = (CONTACTS, COMPANIES)
FOLLOW_UP = followups.FOLDER
_UNSAFE = re.compile(r"[/*%]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Folder:
    """One virtual folder: ``kind`` is "contact", "company" or "followup", ``id`` that row's id (the account's for
    "followup", whose ``delay`` and ``window`` are the account's follow-up delay and window in days)."""

    name: str
    kind: str
    id: int
    uidvalidity: int
    subscribed: bool
    delay: int = 0
    window: int = 0


@dataclass(frozen=True, slots=True)
class Copy:
    """The live copy a virtual message shows; ``uid`` is the virtual UID, ``real_uid`` its UID in ``mailbox_id``."""

    uid: int
    message_id: int
    mailbox_id: int
    real_uid: int
    flags: int
    keywords: str
    internaldate: float
    size: int


def is_virtual(name: str) -> bool:
    """Whether ``name`` is in the virtual tree (``Follow-up``, a root or below one)."""
    return name == FOLLOW_UP or any(name == root or name.startswith(root + "/") for root in ROOTS)


def clean(text: str) -> str:
    """A display name made safe as one hierarchy level: no "/", wildcards or controls; '' when nothing is left."""
    name = " ".join(_UNSAFE.sub("-", _CONTROL.sub(" ", text)).split())[:MAX_NAME].strip()
    return "" if name in (".", "..") else name


def _named(root: str, entries: list[tuple[str, str, int, int, bool]], kind: str) -> list[Folder]:
    """Folders from (display, disambiguator, id, uidvalidity, subscribed), clashing names disambiguated."""
    counts: dict[str, int] = {}
    for display, *_ in entries:
        counts[display.casefold()] = counts.get(display.casefold(), 0) + 1
    out = []
    for display, other, row_id, uidvalidity, subscribed in entries:
        name = display
        if counts[display.casefold()] > 1:
            name = f"{display} ({other})" if other and other != display else f"{display} (#{row_id})"
        out.append(Folder(f"{root}/{name}", kind, row_id, uidvalidity, subscribed))
    seen: set[str] = set()
    unique = []
    for folder in out:  # a disambiguated name may still clash with another bare one: the older row wins
        if folder.name.casefold() not in seen:
            seen.add(folder.name.casefold())
            unique.append(folder)
    return unique


def follow_up(conn: sqlite3.Connection, account_id: int, policy: followups.Policy) -> Folder:
    """The account's ``Follow-up`` folder (``policy``: as configured)."""
    delay = followups.days(conn, account_id, policy.days)
    uidvalidity = followups.uidvalidity(conn, account_id, delay)
    subscribed = followups.subscribed(conn, account_id)
    return Folder(FOLLOW_UP, "followup", account_id, uidvalidity, subscribed, delay, policy.window)


def folders(conn: sqlite3.Connection, account_id: int, followup: followups.Policy | None = None) -> list[Folder]:
    """Every virtual folder of the account (roots excluded): ``Follow-up`` (given the configured ``followup``
    policy, when the account has a contact folder), contacts, companies, each part in id order."""
    contacts: list[tuple[str, str, int, int, bool]] = []
    for row in conn.execute(
        """SELECT c.id, c.name, c.uidvalidity, c.subscribed,
                  (SELECT min(address) FROM crm_addresses a WHERE a.contact_id = c.id) AS address
           FROM crm_contacts c
           WHERE c.account_id = ? AND c.confirmed = 1 AND c.kind != 'bulk' ORDER BY c.id""",
        (account_id,),
    ):
        address = row["address"] or ""
        display = clean(row["name"]) or clean(address) or f"#{row['id']}"
        contacts.append((display, clean(address), int(row["id"]), int(row["uidvalidity"]), bool(row["subscribed"])))
    companies: list[tuple[str, str, int, int, bool]] = []
    for row in conn.execute(
        """SELECT p.id, p.name, p.domain, p.uidvalidity, p.subscribed FROM crm_companies p
           WHERE p.account_id = ? AND EXISTS (SELECT 1 FROM crm_contacts c
                                              WHERE c.company_id = p.id AND c.confirmed = 1 AND c.kind != 'bulk')
           ORDER BY p.id""",
        (account_id,),
    ):
        display = clean(row["name"]) or clean(row["domain"]) or f"#{row['id']}"
        companies.append(
            (display, clean(row["domain"]), int(row["id"]), int(row["uidvalidity"]), bool(row["subscribed"]))
        )
    # Follow-up is listed along with Contacts/: a thread can only await a reply from a contact the account wrote to
    extra = [] if followup is None or not contacts else [follow_up(conn, account_id, followup)]
    return extra + _named(CONTACTS, contacts, "contact") + _named(COMPANIES, companies, "company")


def find(
    conn: sqlite3.Connection, account_id: int, name: str, followup: followups.Policy | None = None
) -> Folder | None:
    """The folder called ``name`` (exactly), None when there is none."""
    if not is_virtual(name) or name in ROOTS:
        return None
    if name == FOLLOW_UP:
        return None if followup is None else follow_up(conn, account_id, followup)
    return next((folder for folder in folders(conn, account_id) if folder.name == name), None)


def copies(conn: sqlite3.Connection, folder: Folder) -> list[Copy]:
    """The folder's messages in UID order, each with the live copy it shows."""
    if folder.kind == "followup":
        due = followups.due(conn, folder.id, folder.delay, time.time(), folder.window, contacts=False)
        return [
            Copy(
                r["crm_id"],
                r["message_id"],
                r["mailbox_id"],
                r["uid"],
                r["flags"],
                r["keywords"],
                r["internaldate"],
                r["size"],
            )
            for r in due
        ]
    rows = (
        views.contact_messages(conn, folder.id) if folder.kind == "contact" else views.company_messages(conn, folder.id)
    )
    out: list[Copy] = []
    for row in rows:  # ordered by crm id, then copy id: the first row of each crm id is its oldest copy
        if out and out[-1].uid == row["crm_id"]:
            continue
        out.append(
            Copy(
                row["crm_id"],
                row["message_id"],
                row["mailbox_id"],
                row["uid"],
                row["flags"],
                row["keywords"],
                row["internaldate"],
                row["size"],
            )
        )
    return out


def uidnext(conn: sqlite3.Connection, folder: Folder) -> int:
    """One above the highest message ever filed against the folder's contact or company."""
    if folder.kind == "followup":
        return followups.uidnext(conn, folder.id, folder.delay, time.time())
    if folder.kind == "contact":
        row = conn.execute(
            "SELECT max(message_id) FROM crm_message_contacts WHERE contact_id = ?", (folder.id,)
        ).fetchone()
    else:
        row = conn.execute(
            """SELECT max(l.message_id) FROM crm_message_contacts l JOIN crm_contacts c ON c.id = l.contact_id
               WHERE c.company_id = ?""",
            (folder.id,),
        ).fetchone()
    return int(row[0] or 0) + 1


def set_subscribed(conn: sqlite3.Connection, folder: Folder, subscribed: bool) -> None:
    """SUBSCRIBE / UNSUBSCRIBE of a virtual folder."""
    if folder.kind == "followup":
        followups.set_subscribed(conn, folder.id, subscribed)
        return
    table = "crm_contacts" if folder.kind == "contact" else "crm_companies"
    conn.execute(f"UPDATE {table} SET subscribed = ? WHERE id = ?", (int(subscribed), folder.id))
