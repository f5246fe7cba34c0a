"""The merge rule of `contacts import` on a real database: matching by any address, what is added and what is
kept, --overwrite, a phone's stored card, UIDs, conflicts, and a second import that changes nothing."""

from __future__ import annotations

import sqlite3

import pytest

from relentad.carddav import book, write
from relentad.crm import contactfile, importing, views
from relentad.store import db
from tests.unit.crm.test_carddav_write import put, vcf


def run(conn: sqlite3.Connection, account_id: int, text: str, overwrite: bool = False) -> list[importing.Outcome]:
    entries = contactfile.parse(text.encode(), "vcard").entries
    with db.transaction(conn):
        return importing.Importer(account_id, overwrite).run(conn, entries)


def results(outcomes: list[importing.Outcome]) -> list[str]:
    return [o.result for o in outcomes]


def test_merge_rule_adds_never_takes_and_overwrite_replaces(conn: sqlite3.Connection, account_id: int) -> None:
    put(conn, account_id, "phone-1.vcf", vcf("p1", "Bob Stone", "EMAIL:bob@acme.example", "TEL:+1", "NOTE:old"))
    card = vcf("f1", "Robert Stone", "EMAIL:rs@mail.example", "EMAIL:BOB@acme.example", "CATEGORIES:a,b", "NOTE:new")
    (outcome,) = run(conn, account_id, card)
    assert outcome.result == "updated" and outcome.changes == ["address rs@mail.example", "tags +a,b", "note appended"]
    bob = views.contact(conn, outcome.contact_id or 0)
    assert bob["name"] == "Bob Stone" and bob["notes"] == "old\nnew" and bob["tags"] == ["a", "b"]
    kept = book.stored(conn, account_id, [bob["id"]])[bob["id"]]
    assert kept.name == "phone-1.vcf" and kept.vcard is not None and "TEL:+1" in kept.vcard  # the phone's card stays
    assert results(run(conn, account_id, card)) == ["unchanged"]
    (outcome,) = run(conn, account_id, card.replace("NOTE:new", "NOTE:ne"))  # not a whole line of the notes
    assert outcome.changes == ["note appended"] and views.contact(conn, bob["id"])["notes"] == "old\nnew\nne"

    (outcome,) = run(conn, account_id, card, overwrite=True)
    bob = views.contact(conn, bob["id"])
    assert bob["name"] == "Robert Stone" and bob["notes"] == "new" and "card replaced" in outcome.changes
    assert results(run(conn, account_id, card, overwrite=True)) == ["unchanged"]


def test_skips_and_uids(conn: sqlite3.Connection, account_id: int) -> None:
    text = (
        vcf("same", "Ann", "EMAIL:Ann A <ann@a.example>", "CATEGORIES:myContacts,starred,Kunden")
        + vcf("same", "Ben", "EMAIL:ben@b.example", "EMAIL:alice@example.test", "EMAIL:not an address")
        + vcf("x", "Both", "EMAIL:ann@a.example", "EMAIL:ben@b.example")
        + vcf("y", "Me", "EMAIL:alice+news@example.test")
        + vcf("z", "Phone only", "TEL:+1")
    )
    ann, ben, both, me, phone = run(conn, account_id, text)
    assert (ann.result, ben.result) == ("created", "created")
    assert views.contact(conn, ann.contact_id or 0)["tags"] == ["Kunden"]  # Google's own groups are no tags
    assert ann.changes == ["ann@a.example"]  # the address in angle brackets of a "Name <address>" cell
    assert ben.changes[1:] == [
        "alice@example.test left out: the account's own address or alias",
        "not an email address: 'not an address'",
    ]
    assert both.result == "skipped" and "belong to contacts" in both.changes[0]
    assert me.result == "skipped" and me.changes == [
        "alice+news@example.test left out: the account's own address or alias"
    ]
    assert phone.result == "skipped" and phone.changes == [contactfile.NO_ADDRESS]
    cards = book.stored(conn, account_id)
    uids = {c.vcard.split("UID:")[1].split("\r\n")[0] for c in cards.values() if c.vcard}
    assert len(uids) == 2 and "same" in uids  # Ben's card took his contact's own UID, not Ann's
    assert results(run(conn, account_id, text)) == ["unchanged", "unchanged", "skipped", "skipped", "skipped"]


def test_cards_beyond_the_accounts_limit(
    conn: sqlite3.Connection, account_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(write, "MAX_CARDS", 1)
    text = vcf("a", "Ann", "EMAIL:ann@a.example", "TEL:+1") + vcf("b", "Ben", "EMAIL:ben@b.example", "TEL:+2")
    ann, ben = run(conn, account_id, text)
    assert ann.changes == ["ann@a.example"]
    assert ben.result == "created" and ben.changes == [
        "ben@b.example",
        "its vCard not kept: the account has 1 stored cards",
    ]
    assert results(run(conn, account_id, text)) == ["unchanged", "unchanged"]


def test_a_note_goes_through_the_crms_rule(conn: sqlite3.Connection, account_id: int) -> None:
    """A NOTE with escape sequences (a vCard from elsewhere) is kept as a CardDAV PUT's is: lines without control
    characters, so `contacts show` never writes them to a terminal; a second import stays unchanged."""
    card = vcf("n", "Eve", "EMAIL:eve@e.example", "NOTE:one\x1b]0;title\x07\\ntwo\x1b[2J\x9b1m")
    (outcome,) = run(conn, account_id, card)
    assert views.contact(conn, outcome.contact_id or 0)["notes"] == "one ]0;title\ntwo [2J 1m"
    assert results(run(conn, account_id, card)) == ["unchanged"]


def test_a_tag_with_a_c1_control_or_del_is_no_tag(conn: sqlite3.Connection, account_id: int) -> None:
    """U+009B is CSI to a terminal as ESC [ is: a tag holding it (or DEL) stays in the card's CATEGORIES only, as
    one with ESC does, and never reaches `contacts show`."""
    card = vcf("t", "Tia", "EMAIL:tia@t.example", "CATEGORIES:ok,c1\x9b2J,del\x7f,esc\x1b[1m")
    (outcome,) = run(conn, account_id, card)
    assert views.contact(conn, outcome.contact_id or 0)["tags"] == ["ok"]


def test_an_address_with_a_control_character_is_none(conn: sqlite3.Connection, account_id: int) -> None:
    (outcome,) = run(conn, account_id, vcf("c", "Cy", "EMAIL:\x9b2Jcy@c.example", "EMAIL:cy@c.example"))
    assert outcome.changes == ["cy@c.example", "not an email address: '\\x9b2Jcy@c.example'"]
