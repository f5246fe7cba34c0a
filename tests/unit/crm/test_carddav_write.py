"""Writing the address book on a real database (relentad.carddav.write, migration 033's triggers): a client's card
in the CRM, its name kept through sync and merges, and single cards read without going through the book."""

from __future__ import annotations

import sqlite3

import pytest

from relentad.carddav import book, write
from relentad.carddav.davxml import DavError
from relentad.crm import contacts, export, views
from relentad.crm.participants import OUT
from relentad.store import db
from tests.unit.crm.test_contacts import file, person

BASE = "/dav/addressbooks/alice@example.test/contacts/"


def put(conn: sqlite3.Connection, account_id: int, name: str, text: str, **conditions: str) -> write.Written:
    with db.transaction(conn):
        return write.put(
            conn, account_id, name, text.encode(), conditions.get("if_match"), conditions.get("if_none_match"), BASE
        )


def vcf(uid: str, fn: str, *lines: str) -> str:
    return "".join(
        f"{line}\r\n" for line in ("BEGIN:VCARD", "VERSION:3.0", f"UID:{uid}", f"FN:{fn}", *lines, "END:VCARD")
    )


def test_a_client_card_keeps_its_name_through_sync_and_merge(conn: sqlite3.Connection, account_id: int) -> None:
    with db.transaction(conn):
        file(conn, account_id, 1, [person("bob@acme.example", "Bob Stone")], OUT)
    start = book.counter(conn, account_id)
    done = put(
        conn, account_id, "iphone-1.vcf", vcf("i1", "Eve", "EMAIL:eve@else.example", "TEL:+1"), if_none_match="*"
    )
    assert done.created and done.data.endswith(b"TEL:+1\r\nEND:VCARD\r\n")
    eve = contacts.resolve(conn, account_id, "eve@else.example")
    assert views.contact(conn, eve)["confirmed"] and views.contact(conn, eve)["name"] == "Eve"
    found = book.changes(conn, account_id, start)
    assert found is not None and [c.name for c in found.changed] == ["iphone-1.vcf"]
    assert found.changed[0].etag == done.etag
    # the same card again: nothing changes, the token stays
    again = book.counter(conn, account_id)
    put(conn, account_id, "iphone-1.vcf", vcf("i1", "Eve", "EMAIL:eve@else.example", "TEL:+1"), if_match=done.etag)
    assert book.counter(conn, account_id) == again
    # merged away in the CLI: reported removed under the client's name, not "<uid>.vcf"
    bob = contacts.resolve(conn, account_id, "bob@acme.example")
    with db.transaction(conn):
        contacts.merge(conn, account_id, bob, eve)
    found = book.changes(conn, account_id, again)
    assert found is not None and found.removed == ["iphone-1.vcf"]
    # the client puts its copy back (a UID of a merged-away card is free again): a new contact at that name
    readded = put(conn, account_id, "iphone-2.vcf", vcf("i1", "Eve", "EMAIL:eve2@else.example"), if_none_match="*")
    assert readded.created


def test_a_refused_write_keeps_nothing(conn: sqlite3.Connection, account_id: int) -> None:
    with pytest.raises(DavError) as caught:
        put(conn, account_id, "x.vcf", vcf("x", "X", "EMAIL:x@x.example", "EMAIL:alice@example.test"))
    assert caught.value.status == 403
    assert conn.execute("SELECT count(*) FROM crm_contacts").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM carddav_cards").fetchone()[0] == 0


def test_one_card_is_read_without_the_book(
    conn: sqlite3.Connection, account_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    with db.transaction(conn):
        file(conn, account_id, 1, [person("bob@acme.example", "Bob Stone")], OUT)
    bob = contacts.resolve(conn, account_id, "bob@acme.example")
    name = f"{export.uid(account_id, bob)}.vcf"

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the whole book was read")

    monkeypatch.setattr(views, "list_contacts", refuse)
    assert book.by_name(conn, account_id, {name, "nobody.vcf"}).keys() == {name}
    with db.transaction(conn):  # a contact made after the first lookup is learnt on the next
        file(conn, account_id, 2, [person("eve@else.example", "Eve")], OUT)
    eve = contacts.resolve(conn, account_id, "eve@else.example")
    assert book.contact_of(conn, account_id, f"{export.uid(account_id, eve)}.vcf") == eve


def test_a_merge_keeps_what_the_phone_wrote_on_either_card(conn: sqlite3.Connection, account_id: int) -> None:
    """The absorbed contact's stored card is not dropped with it (its phone numbers were in no other place), nor
    kept as an orphan row nobody serves, exports or purges with the contact."""
    one = put(conn, account_id, "one.vcf", vcf("one", "One", "EMAIL:one@x.example", "item1.TEL:+111", "item1.X-L:a"))
    put(conn, account_id, "two.vcf", vcf("two", "Two", "EMAIL:two@x.example", "item1.TEL:+222", "item1.X-L:b"))
    first, second = (contacts.resolve(conn, account_id, f"{n}@x.example") for n in ("one", "two"))
    with db.transaction(conn):
        contacts.merge(conn, account_id, first, second)
    served = book.by_name(conn, account_id, {"one.vcf"})["one.vcf"]
    text = served.data.decode()
    assert "item1.TEL:+111\r\nitem1.X-L:a\r\n" in text and "merged1.TEL:+222\r\nmerged1.X-L:b\r\n" in text
    assert "UID:one\r\n" in text and "UID:two" not in text and served.etag != one.etag
    assert "\r\nEMAIL:two@x.example\r\n" in text  # the absorbed card's line, as the phone wrote it
    assert conn.execute("SELECT vcard FROM carddav_cards WHERE contact_id = ?", (second,)).fetchone()[0] is None
    # a card the CRM made gains the stored card of the contact merged into it, under its own UID
    with db.transaction(conn):
        file(conn, account_id, 1, [person("bob@acme.example", "Bob Stone")], OUT)
    put(conn, account_id, "carl.vcf", vcf("carl", "Carl", "EMAIL:carl@x.example", "TEL:+333"))
    bob, carl = (contacts.resolve(conn, account_id, a) for a in ("bob@acme.example", "carl@x.example"))
    with db.transaction(conn):
        contacts.merge(conn, account_id, bob, carl)
    name = f"{export.uid(account_id, bob)}.vcf"
    text = book.by_name(conn, account_id, {name})[name].data.decode()
    assert f"UID:{export.uid(account_id, bob)}\r\n" in text and "TEL:+333\r\n" in text and "FN:Bob Stone" in text
    assert "carl@x.example" in text and "UID:carl" not in text


def test_an_address_of_a_sender_out_of_the_book_is_no_uid_conflict(conn: sqlite3.Connection, account_id: int) -> None:
    """RFC 6352 §6.3.2.1: CARDDAV:no-uid-conflict names the card that has it; a sender who is in no card is none."""
    with db.transaction(conn):
        file(conn, account_id, 1, [person("petra@acme.example", "Petra")])  # received: not confirmed
    put(conn, account_id, "dan.vcf", vcf("dan", "Dan", "EMAIL:dan@x.example"))
    with pytest.raises(DavError) as caught:
        put(conn, account_id, "dan.vcf", vcf("dan", "Dan", "EMAIL:dan@x.example", "EMAIL:petra@acme.example"))
    assert caught.value.status == 403 and caught.value.href is None and "contacts merge" in caught.value.message
    petra = contacts.resolve(conn, account_id, "petra@acme.example")
    assert book.by_name(conn, account_id, {f"{export.uid(account_id, petra)}.vcf"}) == {}


def test_an_org_joining_a_company_renews_its_folder(conn: sqlite3.Connection, account_id: int) -> None:
    """A card's ORG that moves a contact into a company gives the company's IMAP folder the contact's older
    messages: its UIDVALIDITY grows, as when an address joins a contact (``contacts.add_address``)."""
    with db.transaction(conn):
        file(conn, account_id, 1, [person("bob@acme.example", "Bob Stone")], OUT)
        file(conn, account_id, 2, [person("eve@else.example", "Eve")], OUT)
    acme = views.contact(conn, contacts.resolve(conn, account_id, "bob@acme.example"))["company"]
    validity = "SELECT uidvalidity FROM crm_companies WHERE account_id = ? AND name = ?"
    before = conn.execute(validity, (account_id, acme)).fetchone()[0]
    eve = contacts.resolve(conn, account_id, "eve@else.example")
    put(
        conn,
        account_id,
        f"{export.uid(account_id, eve)}.vcf",
        vcf("e1", "Eve", "EMAIL:eve@else.example", f"ORG:{acme}"),
    )
    assert views.contact(conn, eve)["company"] == acme
    assert conn.execute(validity, (account_id, acme)).fetchone()[0] > before
