"""The CardDAV address book on a real database (relentad.carddav.book and migration 024's triggers): who is in it,
what each sync token reports as changed and removed, and that delivery's counters leave the cards alone."""

from __future__ import annotations

import base64
import sqlite3
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, cast

import pytest

from relentad.auth.authenticator import Login
from relentad.auth.basic import BasicLogin, Session
from relentad.carddav import book, davxml, server
from relentad.crm import companies, contacts, export
from relentad.crm.participants import IN, OUT
from relentad.httpserver import Request
from relentad.store import db
from relentad.store.imapview import ReaderPool
from tests.unit.crm.test_contacts import file, person


def delta(conn: sqlite3.Connection, account_id: int, since: int) -> tuple[list[str], list[str]]:
    """(names changed, UIDs removed) since counter ``since``."""
    found = book.changes(conn, account_id, since)
    assert found is not None
    return [c.values["FN"][0] for c in found.changed], [name.removesuffix(".vcf") for name in found.removed]


def test_sync_reports_what_cards_show_and_nothing_else(conn: sqlite3.Connection, account_id: int) -> None:
    with db.transaction(conn):
        file(conn, account_id, 1, [person("bob@acme.example", "Bob Stone")], OUT)  # written to: confirmed
        file(conn, account_id, 2, [person("eve@else.example", "Eve")])  # only received from: not in the book
    assert [c.values["FN"] for c in book.cards(conn, account_id)] == [["Bob Stone"]]
    bob = contacts.resolve(conn, account_id, "bob@acme.example")
    start = book.counter(conn, account_id)
    etag = book.cards(conn, account_id)[0].etag
    with db.transaction(conn):  # more mail: counts and times change, the card does not
        file(conn, account_id, 3, [person("bob@acme.example", "Bob Stone")], IN)
        file(conn, account_id, 4, [person("eve@else.example", "Eve")])
    assert book.counter(conn, account_id) == start and book.cards(conn, account_id)[0].etag == etag
    assert delta(conn, account_id, start) == ([], [])

    with db.transaction(conn):
        contacts.rename(conn, account_id, bob, "Robert Stone")
    assert delta(conn, account_id, start) == (["Robert Stone"], [])
    second = book.counter(conn, account_id)
    assert book.cards(conn, account_id)[0].etag != etag
    with db.transaction(conn):
        contacts.tag(conn, bob, ["vip"])
        company = companies.resolve(conn, account_id, "acme.example")
        companies.rename(conn, account_id, company, "ACME Ltd")
    assert delta(conn, account_id, second) == (["Robert Stone"], [])
    assert b"ORG:ACME Ltd\r\n" in book.cards(conn, account_id)[0].data

    third = book.counter(conn, account_id)
    eve = contacts.resolve(conn, account_id, "eve@else.example")
    with db.transaction(conn):
        contacts.add_note(conn, eve, "met at the fair", now=0)  # confirms her: she joins
    assert delta(conn, account_id, third) == (["Eve"], [])
    fourth = book.counter(conn, account_id)
    with db.transaction(conn):
        contacts.merge(conn, account_id, bob, eve)
    assert delta(conn, account_id, fourth) == (["Robert Stone"], [export.uid(account_id, eve)])
    assert delta(conn, account_id, third) == (["Robert Stone"], [export.uid(account_id, eve)])

    fifth = book.counter(conn, account_id)
    with db.transaction(conn):  # an automatic sender leaves the book: reported removed, though its row stays
        conn.execute("UPDATE crm_contacts SET kind = 'bulk' WHERE id = ?", (bob,))
    assert delta(conn, account_id, fifth) == ([], [export.uid(account_id, bob)])
    assert book.cards(conn, account_id) == []
    assert book.changes(conn, account_id, book.counter(conn, account_id) + 1) is None  # a token from elsewhere


def test_sync_tokens_round_trip() -> None:
    assert book.parse_token(book.token(42)) == 42
    for text in ("", "urn:relentad:sync:", "urn:relentad:sync:-1", "urn:relentad:sync:1x", "http://x/sync/1"):
        assert book.parse_token(text) is None, text
    assert book.parse_token("urn:relentad:sync:" + "9" * 19) is None


def test_vcard_3_0_for_carddav(conn: sqlite3.Connection, account_id: int) -> None:
    with db.transaction(conn):
        file(conn, account_id, 1, [person("jo@acme.example", "Doe, Jo;hn")], OUT)
        contacts.tag(conn, contacts.resolve(conn, account_id, "jo@acme.example"), ["a;b", "c"])
    (card,) = book.cards(conn, account_id)
    lines = card.data.decode().split("\r\n")
    assert lines[:2] == ["BEGIN:VCARD", "VERSION:3.0"] and lines[-2:] == ["END:VCARD", ""]
    assert f"UID:{card.uid}" in lines and card.name == f"{card.uid}.vcf"
    assert "FN:Doe\\, Jo\\;hn" in lines and "N:Doe;Jo\\;hn;;;" in lines and "CATEGORIES:a\\;b,c" in lines
    assert "EMAIL;TYPE=INTERNET,PREF:jo@acme.example" in lines and not any(x.startswith("KIND") for x in lines)
    assert card.values["EMAIL"] == ["jo@acme.example"] and card.values["CATEGORIES"] == ["a;b", "c"]


def test_a_card_that_left_the_book_and_is_then_merged_away_stays_removed(
    conn: sqlite3.Connection, account_id: int
) -> None:
    """A client that synced while a contact was in the book must learn it is gone even when the contact left the
    book (became bulk) and was then deleted by a merge before the client synced again."""
    with db.transaction(conn):
        file(conn, account_id, 1, [person("bob@acme.example", "Bob Stone")], OUT)
        file(conn, account_id, 2, [person("news@acme.example", "Acme News")], OUT)
    bob = contacts.resolve(conn, account_id, "bob@acme.example")
    news = contacts.resolve(conn, account_id, "news@acme.example")
    synced = book.counter(conn, account_id)  # the client holds both cards
    with db.transaction(conn):
        conn.execute("UPDATE crm_contacts SET kind = 'bulk' WHERE id = ?", (news,))
        conn.execute("UPDATE crm_contacts SET kind = 'bulk' WHERE id = ?", (bob,))
    with db.transaction(conn):
        contacts.merge(conn, account_id, news, bob)  # bob's row is deleted while out of the book
    assert export.uid(account_id, bob) in delta(conn, account_id, synced)[1]
    assert delta(conn, account_id, synced)[1].count(export.uid(account_id, bob)) == 1


def test_a_name_with_noncharacters_leaves_the_book_well_formed(conn: sqlite3.Connection, account_id: int) -> None:
    """U+FFFE and U+FFFF (an RFC 2047 name may decode to them) are no XML characters: in address-data they made
    every PROPFIND and sync of the whole book a document no client could parse."""
    with db.transaction(conn):
        file(conn, account_id, 1, [person("odd@x.example", "Odd\uffff Name\ufffe")], OUT)
    (card,) = book.cards(conn, account_id)
    assert "\uffff" not in card.data.decode() and "FN:Odd Name\r\n" in card.data.decode()
    document = davxml.multistatus([davxml.response("/c.vcf", [davxml.el(davxml.ADDRESS_DATA, card.data.decode())])])
    assert ET.fromstring(document).findtext(".//{urn:ietf:params:xml:ns:carddav}address-data") == card.data.decode()


def test_a_card_has_one_etag_whichever_vcard_version_is_served(conn: sqlite3.Connection, account_id: int) -> None:
    """DAVx5 fetches vCard 4.0 (multiget with address-data version="4.0") and lists the book with PROPFIND getetag,
    which names no version: with an ETag per version every listing looked like a change of every card."""
    with db.transaction(conn):
        file(conn, account_id, 1, [person("bob@acme.example", "Bob Stone")], OUT)
    (old,) = book.cards(conn, account_id, "3.0")
    assert book.cards(conn, account_id, "4.0")[0].etag == old.etag
    with db.transaction(conn):
        contacts.rename(conn, account_id, contacts.resolve(conn, account_id, "bob@acme.example"), "Robert Stone")
    assert book.cards(conn, account_id, "3.0")[0].etag != old.etag


def test_a_new_contact_never_takes_the_uid_of_a_card_merged_away(conn: sqlite3.Connection, account_id: int) -> None:
    """The UID (and href) is derived from the contact's id, and SQLite gives a new row the highest id + 1: merging
    away the newest contact handed its UID to the next correspondent, a different person under a known card."""
    with db.transaction(conn):
        file(conn, account_id, 1, [person("bob@acme.example", "Bob")], OUT)
        file(conn, account_id, 2, [person("bob.private@home.example", "Bobby")], OUT)
    bob = contacts.resolve(conn, account_id, "bob@acme.example")
    private = contacts.resolve(conn, account_id, "bob.private@home.example")
    with db.transaction(conn):
        contacts.merge(conn, account_id, bob, private)
    with db.transaction(conn):
        file(conn, account_id, 3, [person("carol@other.example", "Carol")], OUT)
    assert contacts.resolve(conn, account_id, "carol@other.example") > private


class _Accepts:
    """An authenticator that takes any password (the Basic login path is tested end to end)."""

    def __init__(self, account_id: int) -> None:
        self.account_id = account_id

    async def verify(self, user: str, password: str, ip: str, protocol: str) -> Login:
        return Login(self.account_id, user)


async def test_a_request_reads_the_book_off_the_event_loop(
    conn: sqlite3.Connection, account_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A book of 5000 cards took 0.6-1 s to serve (PROPFIND, multiget, sync) on the loop's thread, where every IMAP
    and SMTP session waited for it."""
    with db.transaction(conn):
        file(conn, account_id, 1, [person("bob@acme.example", "Bob Stone")], OUT)
    path = Path(conn.execute("PRAGMA database_list").fetchone()[2])
    threads = []
    cards = book.cards

    def recorded(*args: Any) -> list[book.Card]:
        threads.append(threading.current_thread())
        return cards(*args)

    monkeypatch.setattr(book, "cards", recorded)
    store, readers = db.Store(path), ReaderPool(path)
    try:
        dav = server.CardDav(BasicLogin(store, cast(Any, _Accepts(account_id)), lambda: "mx"), readers, store)
        credentials = base64.b64encode(b"alice@example.test:secret").decode()
        fields = (("depth", "1"), ("authorization", f"Basic {credentials}"))
        target = server.book_href("alice@example.test")
        body = f'<propfind xmlns="DAV:"><prop><address-data xmlns="{davxml.CARD}"/></prop></propfind>'.encode()
        response = await dav.respond(Request("PROPFIND", target, (1, 1), fields, body), Session("127.0.0.1"))
    finally:
        readers.close()
        store.close()
    assert response.status == 207 and b"Bob Stone" in response.body
    assert threads and threading.main_thread() not in threads
