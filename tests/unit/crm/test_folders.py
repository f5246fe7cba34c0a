"""The CRM's virtual folders, store side (relentad.crm.folders): which contacts and companies get one, their
names (cleaned, disambiguated), UIDNEXT and UIDVALIDITY."""

from __future__ import annotations

import sqlite3

from relentad.crm import contacts, folders
from relentad.crm.participants import IN, OUT, Participant
from relentad.crm.sorter import AccountPlan, file_message
from relentad.message import parse


def file(conn: sqlite3.Connection, account_id: int, blob: int, address: str, name: str, direction: str = IN) -> int:
    raw = f"Subject: message {blob}\r\nMessage-ID: <{blob}@x>\r\n\r\nbody\r\n".encode()
    who = Participant(address, name, "from" if direction == IN else "to", "person")
    plan = AccountPlan(account_id, direction, [who], f"message {blob}", address if direction == IN else "")
    return file_message(conn, plan, parse(raw), blob, 1000.0 + blob)


def names(conn: sqlite3.Connection, account_id: int) -> list[str]:
    return [folder.name for folder in folders.folders(conn, account_id)]


def test_clean_makes_one_safe_level() -> None:
    assert folders.clean("AT&T / Support") == "AT&T - Support"
    assert folders.clean("  a\tb*%c ") == "a b-c"
    assert folders.clean("..") == "" and folders.clean("x" * 300) == "x" * 200
    assert folders.is_virtual("Contacts") and folders.is_virtual("Companies/Acme")
    assert not folders.is_virtual("Contactsx") and not folders.is_virtual("INBOX")


def test_only_confirmed_contacts_and_their_companies_get_folders(conn: sqlite3.Connection, account_id: int) -> None:
    file(conn, account_id, 1, "jo@acme.example", "Jo Smith")
    file(conn, account_id, 2, "stranger@other.example", "Stranger")
    assert names(conn, account_id) == []
    file(conn, account_id, 3, "jo@acme.example", "Jo Smith", OUT)  # writing to Jo confirms her
    assert names(conn, account_id) == ["Contacts/Jo Smith", "Companies/Acme"]
    folder = folders.find(conn, account_id, "Contacts/Jo Smith")
    assert folder is not None and folders.find(conn, account_id, "Contacts/jo smith") is None
    assert [c.uid for c in folders.copies(conn, folder)] == []  # blobs 1-3 have no live copy in this bare store
    assert folders.uidnext(conn, folder) == 4  # one above the highest message ever filed against her


def test_clashing_names_are_disambiguated_and_merges_raise_uidvalidity(
    conn: sqlite3.Connection, account_id: int
) -> None:
    file(conn, account_id, 1, "jo@a.example", "Jo", OUT)
    file(conn, account_id, 2, "jo@b.example", "JO", OUT)
    assert names(conn, account_id)[:2] == ["Contacts/Jo (jo@a.example)", "Contacts/JO (jo@b.example)"]
    before = {f.id: f.uidvalidity for f in folders.folders(conn, account_id) if f.kind == "contact"}
    keep, absorb = sorted(before)
    contacts.merge(conn, account_id, keep, absorb)
    [jo] = [f for f in folders.folders(conn, account_id) if f.kind == "contact"]
    assert jo.name == "Contacts/Jo" and jo.uidvalidity > max(before.values())
    folders.set_subscribed(conn, jo, False)
    assert not folders.folders(conn, account_id)[0].subscribed
