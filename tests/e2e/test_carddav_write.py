"""The writable address book end to end: vdirsyncer syncing both ways between a folder of .vcf files and the
daemon, the CRM seen through the `relentad contacts` CLI, and http.client for conditional requests and refusals."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from relentad.crm.export import fold
from tests.e2e.conftest import MakeDaemon
from tests.e2e.test_carddav import (
    ALICE,
    BOOK,
    NS,
    Dav,
    local_cards,
    receive,
    run_vdirsyncer,
    submit_to,
    sync,
    vdirsyncer_config,
)
from tests.e2e.test_web import web_daemon
from tests.support.daemon import Daemon


@pytest.fixture
def dav(make_daemon: MakeDaemon) -> Dav:
    settings = {"dns": {"nameservers": ["127.0.0.1:9"], "timeout": 0.5}}
    return Dav(web_daemon(make_daemon, settings), 0)


def card(uid: str, name: str, address: str, *extra: str, version: str = "3.0") -> str:
    lines = ["BEGIN:VCARD", f"VERSION:{version}", f"UID:{uid}", f"FN:{name}", f"EMAIL:{address}", *extra, "END:VCARD"]
    return "".join(line + "\r\n" for line in lines)


def show(daemon: Daemon, contact: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(daemon.cli("contacts", "show", ALICE, contact, "--json").stdout)
    return result


def test_vdirsyncer_two_way(dav: Dav, tmp_path: Path) -> None:
    daemon = dav.daemon
    submit_to(daemon, "Bob Builder <bob@builder.example>")
    config, folder = vdirsyncer_config(daemon, tmp_path)
    run_vdirsyncer(config, "discover")
    run_vdirsyncer(config, "sync")
    (collection,) = [p for p in folder.iterdir() if p.is_dir()]
    assert len(local_cards(folder)) == 1

    # a contact made on the phone reaches the CRM, confirmed, under the name the client chose
    local = collection / "carla-1.vcf"
    local.write_text(card("carla-1", "Carla Client", "carla@client.example", "NOTE:met at the fair"), newline="")
    run_vdirsyncer(config, "sync")
    carla = show(daemon, "carla@client.example")
    assert carla["name"] == "Carla Client" and carla["confirmed"] and carla["notes"] == "met at the fair"
    _, changed, _ = sync(dav, "")
    assert BOOK + "carla-1.vcf" in changed

    # a phone number and a new name from the phone: the CRM takes the name, the card keeps the TEL
    local.write_text(
        card("carla-1", "Carla Kundin", "carla@client.example", "TEL;TYPE=CELL:+49 170 555", "NOTE:met at the fair"),
        newline="",
    )
    run_vdirsyncer(config, "sync")
    assert show(daemon, "carla@client.example")["name"] == "Carla Kundin"
    status, _, body = dav.request("GET", BOOK + "carla-1.vcf")
    assert status == 200 and b"TEL;TYPE=CELL:+49 170 555\r\n" in body

    # the CRM renames and tags her: the phone's card shows it and still has the TEL
    daemon.cli("contacts", "rename", ALICE, "carla@client.example", "Carla Kunde")
    daemon.cli("contacts", "tag", ALICE, "carla@client.example", "customer")
    run_vdirsyncer(config, "sync")
    text = local.read_text()
    assert "FN:Carla Kunde\n" in text and "TEL;TYPE=CELL:+49 170 555\n" in text and "CATEGORIES:customer\n" in text
    assert "NOTE:met at the fair\n" in text and "UID:carla-1\n" in text

    # deleted on the phone: out of the book; the contact stays in the CRM, no longer confirmed
    local.unlink()
    run_vdirsyncer(config, "sync")
    assert dav.request("GET", BOOK + "carla-1.vcf")[0] == 404
    assert not show(daemon, "carla@client.example")["confirmed"]
    run_vdirsyncer(config, "sync")
    assert len(local_cards(folder)) == 1
    assert "Traceback" not in daemon.log()


def put(dav: Dav, name: str, body: str | bytes, **fields: str) -> tuple[int, dict[str, str], bytes]:
    return dav.request("PUT", BOOK + name, body, Content_Type="text/vcard; charset=utf-8", **fields)


def condition(body: bytes) -> str:
    root = ET.fromstring(body)
    assert root.tag == "{DAV:}error", body
    return root[0].tag.rpartition("}")[2]


def test_conditional_writes_and_refusals(dav: Dav) -> None:
    daemon = dav.daemon
    submit_to(daemon, "Bob Builder <bob@builder.example>")
    receive(daemon, "Petra <petra@acme.example>", "petra@acme.example")  # unconfirmed: not in the book
    token, _, _ = sync(dav, "")
    dan = card("dan", "Dan Dealer", "dan@dealer.example", "TEL:+1 555 0100")

    status, headers, _ = put(dav, "dan.vcf", dan, If_None_Match="*")
    assert status == 201 and headers["etag"]  # stored as sent: the ETag may be given (RFC 6352 §6.3.2.3)
    etag = headers["etag"]
    status, fields, body = dav.request("GET", BOOK + "dan.vcf")
    assert status == 200 and fields["etag"] == etag and body == dan.encode()
    assert dav.request("GET", BOOK + "dan.vcf", If_None_Match=etag)[0] == 304
    token2, changed, _ = sync(dav, token)
    assert list(changed) == [BOOK + "dan.vcf"] and token2 != token
    getetag = '<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>'
    root = dav.xml("PROPFIND", BOOK + "dan.vcf", getetag)
    assert root.findtext(".//d:getetag", namespaces=NS) == etag

    # RFC 7232: a stale If-Match, or If-None-Match: * on an existing card, is 412 and changes nothing
    status, _, _ = put(dav, "dan.vcf", dan.replace("Dan Dealer", "Dan D."), If_Match='"stale"')
    assert status == 412 and show(daemon, "dan@dealer.example")["name"] == "Dan Dealer"
    assert put(dav, "dan.vcf", dan, If_None_Match="*")[0] == 412
    status, headers, _ = put(dav, "dan.vcf", dan.replace("Dan Dealer", "Dan D."), If_Match=etag)
    assert status == 204 and headers["etag"] != etag
    assert sync(dav, token2)[1].keys() == {BOOK + "dan.vcf"}
    # the CRM changes the card after the PUT: the old ETag no longer matches
    etag = dav.request("GET", BOOK + "dan.vcf")[1]["etag"]
    daemon.cli("contacts", "note", ALICE, "dan@dealer.example", "called")
    assert put(dav, "dan.vcf", dan, If_Match=etag)[0] == 412
    assert dav.request("DELETE", BOOK + "dan.vcf", If_Match=etag)[0] == 412
    assert dav.request("DELETE", BOOK + "dan.vcf", If_None_Match="*")[0] == 412  # RFC 7232 §3.2: any method
    assert show(daemon, "dan@dealer.example")["confirmed"]

    # the CRM's rules: own address, another card's address or UID, no address at all
    status, _, body = put(dav, "me.vcf", card("me", "Me", ALICE), If_None_Match="*")
    assert status == 403 and condition(body) == "valid-address-data"
    status, _, body = put(dav, "bob2.vcf", card("bob2", "Bobby", "bob@builder.example"), If_None_Match="*")
    assert status == 409 and condition(body) == "no-uid-conflict"
    assert (ET.fromstring(body).findtext(".//d:href", namespaces=NS) or "").startswith(BOOK)
    status, _, body = put(dav, "dan2.vcf", card("dan", "Dan Two", "dan2@dealer.example"), If_None_Match="*")
    assert status == 409 and condition(body) == "no-uid-conflict"
    no_mail = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:x\r\nFN:Phone Only\r\nTEL:+1\r\nEND:VCARD\r\n"
    assert put(dav, "x.vcf", no_mail)[0] == 403
    # not a vCard relentad keeps: malformed, another version, another type, too big
    status, _, body = put(dav, "bad.vcf", "BEGIN:VCARD\r\nVERSION:3.0\r\nEND:VCARD\r\n")
    assert status == 400 and condition(body) == "valid-address-data"
    status, _, body = put(dav, "old.vcf", card("old", "Old", "old@x.example").replace("3.0", "2.1"))
    assert status == 415 and condition(body) == "supported-address-data"
    status, _, body = dav.request("PUT", BOOK + "j.vcf", "{}", Content_Type="application/json")
    assert status == 415 and condition(body) == "supported-address-data"
    big = card("big", "Big", "big@x.example", "NOTE:" + "a" * 300_000)
    status, _, body = put(dav, "big.vcf", big)
    assert status == 413 and condition(body) == "max-resource-size"
    assert dav.request("PUT", BOOK, dan, Content_Type="text/vcard")[0] == 405
    assert len(daemon.query("SELECT * FROM carddav_cards")) == 1

    # a sender not yet in the book is added to it, with the client's name for the card (percent-encoded)
    status, _, _ = put(dav, "petra%20p.vcf", card("petra", "Petra P", "petra@acme.example", version="4.0"))
    assert status == 201 and show(daemon, "petra@acme.example")["confirmed"]
    _, changed, _ = sync(dav, token2)
    petra = changed[BOOK + "petra%20p.vcf"]  # served in the version asked for (3.0: none named)
    assert petra.startswith("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:petra\r\nFN:Petra P\r\n")
    status, _, body = dav.request("GET", BOOK + "petra%20p.vcf", Accept="text/vcard; version=4.0")
    assert status == 200 and body.startswith(b"BEGIN:VCARD\r\nVERSION:4.0\r\n")

    # a card the CRM made, edited by a client at its href: the CRM's card gains the TEL, keeps its UID
    # (a client that drops CATEGORIES, as iOS does, leaves the tags as they are)
    daemon.cli("contacts", "tag", ALICE, "bob@builder.example", "supplier")
    (bob,) = [href for href in sync(dav, "")[1] if href.endswith(".vcf") and "dan" not in href and "petra" not in href]
    status, headers, body = dav.request("GET", bob)
    assert b"CATEGORIES:supplier\r\n" in body
    edited = body.decode().replace("CATEGORIES:supplier\r\n", "TEL:+44 20 7946 0000\r\n")
    assert dav.request("PUT", bob, edited, If_Match=headers["etag"], Content_Type="text/vcard")[0] == 204
    assert dav.request("GET", bob)[2] == edited.encode()  # as sent; the CRM's tags unchanged
    bob_now = show(daemon, "bob@builder.example")
    assert bob_now["name"] == "Bob Builder" and bob_now["tags"] == ["supplier"]
    daemon.cli("contacts", "tag", ALICE, "bob@builder.example", "builder")
    body = dav.request("GET", bob)[2]
    assert b"TEL:+44 20 7946 0000\r\n" in body and b"CATEGORIES:builder,supplier\r\n" in body

    # DELETE: out of the book, reported removed under the client's href; then 404
    token3, _, _ = sync(dav, "")
    assert dav.request("DELETE", BOOK + "petra%20p.vcf")[0] == 204
    assert sync(dav, token3)[2] == [BOOK + "petra%20p.vcf"]
    assert dav.request("DELETE", BOOK + "petra%20p.vcf")[0] == 404
    assert dav.request("GET", BOOK + "petra%20p.vcf")[0] == 404
    # put back under the same name: the same contact, in the book again
    assert put(dav, "petra%20p.vcf", card("petra", "Petra P", "petra@acme.example"), If_None_Match="*")[0] == 201
    assert show(daemon, "petra@acme.example")["confirmed"]
    assert "Traceback" not in daemon.log()


def test_a_card_name_with_a_slash_or_a_control_character_is_refused(dav: Dav) -> None:
    """A name sent as %2F would be served back as a path below the book (no client finds it there again); a
    control character would end up in the log line of the write."""
    for name in ("..%2F..%2Fetc.vcf", "a%2Fb.vcf", "x%0D%0Ainjected.vcf", "nul%00.vcf"):
        status, _, body = put(dav, name, card("u", "U", "u@x.example"), If_None_Match="*")
        assert status == 403 and condition(body) == "need-privileges", name
    assert dav.daemon.query("SELECT * FROM carddav_cards") == []
    assert put(dav, "fine%20name.vcf", card("u", "U", "u@x.example"), If_None_Match="*")[0] == 201


def test_a_new_card_follows_the_crms_rules_for_names_and_notes(dav: Dav) -> None:
    """A contact's name is one line of at most 200 characters and notes carry no control characters, whoever
    writes them (the CLI prints both; a CSV export writes the name in one row)."""
    daemon = dav.daemon
    odd = card("o", "Evil\\nName\x1b[2J", "odd@x.example", "NOTE:first\\nsecond\x1b]0;owned\x07")
    assert put(dav, "odd.vcf", odd, If_None_Match="*")[0] == 201
    shown = show(daemon, "odd@x.example")
    assert shown["name"] == "Evil Name [2J" and shown["notes"] == "first\nsecond ]0;owned"
    assert dav.request("GET", BOOK + "odd.vcf")[2] == odd.encode()  # the card itself as sent
    status, _, body = put(dav, "long.vcf", card("l", "L" * 201, "long@x.example"), If_None_Match="*")
    assert status == 403 and condition(body) == "valid-address-data"
    assert daemon.query("SELECT * FROM crm_addresses WHERE address = 'long@x.example'") == []


def test_what_a_phone_wrote_leaves_with_the_exports(dav: Dav, tmp_path: Path) -> None:
    """`relentad export` is how a user leaves with their data: the phone numbers and addresses they typed on a
    phone are in no other place than the stored card."""
    daemon = dav.daemon
    written = card("e", "Erin", "erin@x.example", "TEL;TYPE=CELL:+49 170 1", "ADR;TYPE=HOME:;;Main St 5;Town;;;")
    assert put(dav, "erin.vcf", written, If_None_Match="*")[0] == 201
    daemon.cli("contacts", "tag", ALICE, "erin@x.example", "friend")
    served = dav.request("GET", BOOK + "erin.vcf")[2].decode()
    assert "CATEGORIES:friend\r\n" in served
    assert daemon.cli("contacts", "export", ALICE, "--format", "vcard").stdout == served.replace("\r\n", "\n")
    daemon.cli("export", ALICE, str(tmp_path / "out"))
    assert (tmp_path / "out" / "contacts.vcf").read_bytes() == served.encode()


def test_vdirsyncer_after_a_merge_of_two_phone_cards(dav: Dav, tmp_path: Path) -> None:
    """Two cards made on the phone, merged in the CLI: the phone keeps one card with both phone numbers."""
    daemon = dav.daemon
    config, folder = vdirsyncer_config(daemon, tmp_path)
    run_vdirsyncer(config, "discover")
    run_vdirsyncer(config, "sync")
    (collection,) = [p for p in folder.iterdir() if p.is_dir()]
    for uid, address, phone in (("m1", "max@work.example", "+1 111"), ("m2", "max@home.example", "+2 222")):
        text = card(uid, "Max", address, f"TEL;TYPE=CELL:{phone}", "item1.ADR:;;Street;Town;;;", "item1.X-ABLabel:x")
        (collection / f"{uid}.vcf").write_text(text, newline="")
    run_vdirsyncer(config, "sync")
    daemon.cli("contacts", "merge", ALICE, "max@work.example", "max@home.example")
    run_vdirsyncer(config, "sync")
    (text,) = local_cards(folder).values()
    assert "TEL;TYPE=CELL:+1 111\r\n" in text and "TEL;TYPE=CELL:+2 222\r\n" in text
    assert "merged1." not in text and text.count("ADR") == 1  # the same address: not repeated
    assert "max@home.example" in text and "UID:m1\r\n" in text
    assert [tuple(r) for r in daemon.query("SELECT name FROM carddav_cards WHERE vcard IS NOT NULL")] == [("m1.vcf",)]


def test_a_card_near_the_size_limit_is_served_after_the_crm_grows_it(dav: Dav) -> None:
    """The 256 KiB limit is on what a client sends: the card relentad serves is folded anew and gains the CRM's
    lines, and was parsed again under the client's limit — a PUT of a long unfolded line was a 500, and a note
    added in the CLI to a large card made every PROPFIND of the book a 500."""
    daemon = dav.daemon
    unfolded = card("u", "Unfolded", "unfolded@x.example", "NOTE:" + "x" * 255_000)
    assert put(dav, "unfolded.vcf", unfolded, If_None_Match="*")[0] == 201
    folded = card("f", "Folded", "folded@x.example", fold("PHOTO;ENCODING=b:" + "A" * 250_000).removesuffix("\r\n"))
    assert put(dav, "folded.vcf", folded, If_None_Match="*")[0] == 201
    daemon.cli("contacts", "note", ALICE, "folded@x.example", "y" * 8000)
    status, _, body = dav.request("GET", BOOK + "folded.vcf")
    assert status == 200 and len(body) > 256 * 1024 and b"PHOTO;ENCODING=b:AAAA" in body
    root = dav.xml("PROPFIND", BOOK, '<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>', "1")
    assert len(root.findall("d:response", NS)) == 3
    assert "Traceback" not in daemon.log()
