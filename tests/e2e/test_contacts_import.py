"""`relentad contacts import` end to end: a Google Contacts CSV and an Outlook vCard 2.1 file imported into a running
daemon's store, then seen through the CLI, as IMAP `Contacts/<Name>` folders and in the CardDAV address book."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from imapclient import imap_utf7

from tests.e2e.conftest import MakeDaemon
from tests.e2e.test_carddav import ALICE, BOOK, Dav, propfind, receive, sync
from tests.e2e.test_web import web_daemon
from tests.support.daemon import Daemon
from tests.support.imap import client

GOOGLE = (
    "Name,Given Name,Additional Name,Family Name,Notes,Group Membership,E-mail 1 - Type,E-mail 1 - Value,"
    "E-mail 2 - Type,E-mail 2 - Value,Phone 1 - Type,Phone 1 - Value,Organization 1 - Type,Organization 1 - Name\r\n"
    'Jürgen Müller,Jürgen,,Müller,"Met at the fair, 2024",* myContacts ::: Kunden ::: VIP,* Work,'
    "juergen@acme.example,Home,jm@mail.example,Mobile,+49 170 1234567,,Acme\r\n"
    "Petra Pan,Petra,,Pan,Second note,* myContacts,* Work,petra@acme.example,,,,,,\r\n"
    "No Address,No,,Address,,,,,,,Mobile,+1 555 0100,,\r\n"
    "Me Myself,,,,,,,alice@example.test,,,,,,\r\n"
)
OUTLOOK = (
    b"BEGIN:VCARD\r\nVERSION:2.1\r\n"
    b"N;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:Sch=C3=B6n;Bj=C3=B6rn\r\n"
    b"FN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:Bj=C3=B6rn Sch=C3=B6n\r\n"
    b"ORG:Beispiel GmbH\r\n"
    b"TEL;WORK;VOICE:+49 30 123456\r\n"
    b"EMAIL;PREF;INTERNET:bjoern@beispiel.example\r\n"
    b"EMAIL;INTERNET:b.schoen@beispiel.example\r\n"
    b"CATEGORIES:Lieferant,Berlin\r\n"
    b"NOTE;ENCODING=QUOTED-PRINTABLE:Erste Zeile=0D=0Azweite Zeile, sehr lang, weich umbroch=\r\n"
    b"en und fertig.\r\n"
    b"END:VCARD\r\n"
    b"BEGIN:VCARD\r\nVERSION:2.1\r\n"
    b"N;CHARSET=Windows-1252:\xc5ngstr\xf6m;Zo\xeb\r\n"
    b"FN;CHARSET=Windows-1252:Zo\xeb \xc5ngstr\xf6m\r\n"
    b"item1.EMAIL;INTERNET:zoe@example.net\r\n"
    b"item1.X-ABLabel:privat\r\n"
    b"END:VCARD\r\n"
)


@pytest.fixture
def dav(make_daemon: MakeDaemon) -> Dav:
    settings = {"dns": {"nameservers": ["127.0.0.1:9"], "timeout": 0.5}, "auth": {"plaintext_loopback": True}}
    return Dav(web_daemon(make_daemon, settings), 0)


def imported(daemon: Daemon, path: Path, *options: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(daemon.cli("contacts", "import", ALICE, str(path), "--json", *options).stdout)
    return result


def contacts(daemon: Daemon) -> dict[str, dict[str, Any]]:
    found = json.loads(daemon.cli("contacts", "list", ALICE, "--json").stdout)
    return {address: c for c in found for address in c["addresses"]}


def test_import_google_csv_and_outlook_vcard(dav: Dav, tmp_path: Path) -> None:
    daemon = dav.daemon
    receive(daemon, "Petra <petra@acme.example>", "petra@acme.example")  # known, unconfirmed, no note
    daemon.cli("contacts", "note", ALICE, "petra@acme.example", "first note")
    google = tmp_path / "google.csv"
    google.write_bytes(b"\xef\xbb\xbf" + GOOGLE.encode("utf-8"))
    outlook = tmp_path / "outlook.vcf"
    outlook.write_bytes(OUTLOOK)
    before = contacts(daemon)

    # a dry run says what would happen and changes nothing
    dry = imported(daemon, google, "--dry-run")
    assert (dry["created"], dry["updated"], dry["skipped"], dry["dry_run"]) == (1, 1, 2, True)
    assert contacts(daemon) == before

    verbose = daemon.cli("contacts", "import", ALICE, str(google), "-v").stdout.splitlines()
    assert verbose[-1].endswith("1 created, 1 updated, 0 unchanged, 2 skipped"), verbose
    assert any(line.startswith("line 4: skipped: no email address") for line in verbose), verbose
    assert any(line.startswith("line 5: skipped: alice@example.test left out") for line in verbose), verbose
    assert any(line.startswith("line 3: updated") and "note appended" in line for line in verbose), verbose

    report = imported(daemon, outlook)
    assert (report["format"], report["created"], report["skipped"]) == ("vcard", 2, 0), report
    assert report["warnings"] == []  # the CHARSET said what the bytes are: no guessing

    found = contacts(daemon)
    juergen = found["juergen@acme.example"]
    assert juergen["name"] == "Jürgen Müller" and juergen["confirmed"]
    assert sorted(juergen["addresses"]) == ["jm@mail.example", "juergen@acme.example"]
    assert juergen["tags"] == ["Kunden", "VIP"] and juergen["notes"] == "Met at the fair, 2024"
    petra = found["petra@acme.example"]
    assert petra["confirmed"] and petra["notes"].endswith("first note\nSecond note") and petra["name"] == "Petra"
    bjoern = found["b.schoen@beispiel.example"]
    assert bjoern["name"] == "Björn Schön" and bjoern["tags"] == ["Berlin", "Lieferant"]
    assert bjoern["notes"] == "Erste Zeile\nzweite Zeile, sehr lang, weich umbrochen und fertig."
    assert found["zoe@example.net"]["name"] == "Zoë Ångström"
    shown = json.loads(daemon.cli("contacts", "show", ALICE, "Björn Schön", "--json").stdout)
    assert shown["company"] == "Beispiel"  # from the address domain; the ORG "Beispiel GmbH" stays in the card

    # IMAP: their folders appear
    conn = client(daemon)
    try:
        typ, data = conn.list('"Contacts/"', "*")
        assert typ == "OK"
        names = {imap_utf7.decode(line.rpartition(b' "/" ')[2].strip(b'"')) for line in data if isinstance(line, bytes)}
    finally:
        conn.logout()
    assert {"Contacts/Björn Schön", "Contacts/Zoë Ångström", "Contacts/Jürgen Müller", "Contacts/Petra"} <= names

    # CardDAV: the cards are in the book with what the CRM has no field for (TEL, X-ABLabel)
    listing = dav.xml("PROPFIND", BOOK, propfind("d:getetag"), depth="1")
    hrefs = [h.text for h in listing.iter("{DAV:}href") if h.text and h.text.endswith(".vcf")]
    assert len(hrefs) == 4  # Jürgen, Petra, Björn, Zoë
    _, changed, _ = sync(dav, "")
    assert sorted(changed) == sorted(hrefs)
    (href,) = [h for h, data in changed.items() if "FN:Björn Schön" in data]
    status, _, body = dav.request("GET", href)
    text = body.decode()
    assert status == 200 and "TEL;TYPE=WORK;TYPE=VOICE:+49 30 123456\r\n" in text and "ORG:Beispiel GmbH" in text
    (zoe,) = [data for data in changed.values() if "zoe@example.net" in data]
    assert "item1.X-ABLabel:privat" in zoe
    (jm,) = [data for data in changed.values() if "juergen@acme.example" in data]
    assert "TEL:+49 170 1234567" in jm and "CATEGORIES:Kunden,VIP" in jm and BOOK in next(iter(changed))

    # again: nothing changes
    for path, skipped in ((google, 2), (outlook, 0)):
        again = imported(daemon, path)
        assert (again["created"], again["updated"], again["unchanged"], again["skipped"]) == (0, 0, 2, skipped)
        assert [entry["result"] for entry in again["entries"]] == ["skipped"] * skipped
    assert contacts(daemon) == found
    bad_files_are_one_line_errors_and_import_nothing(daemon, tmp_path)
    assert "Traceback" not in daemon.log()


def bad_files_are_one_line_errors_and_import_nothing(daemon: Daemon, tmp_path: Path) -> None:
    """(With the same daemon: one start fewer.)"""
    before = contacts(daemon)
    nested = tmp_path / "nested.vcf"
    nested.write_text(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nEMAIL:a@a.example\r\nEND:VCARD\r\n"
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:B\r\nBEGIN:VCARD\r\nEND:VCARD\r\n"
    )
    neither = tmp_path / "notes.txt"
    neither.write_text("just some text\n")
    no_email = tmp_path / "people.csv"
    no_email.write_text("name,phone\nBob,123\n")
    for path, message in (
        (nested, "card 2 (line 6): BEGIN:VCARD on line 9 before its END:VCARD"),
        (neither, "neither a vCard file nor a CSV file"),
        (no_email, "names no email column"),
        (tmp_path / "missing.csv", "No such file"),
    ):
        result = daemon.cli("contacts", "import", ALICE, str(path), check=False)
        assert result.returncode == 1 and message in result.stderr and len(result.stderr.splitlines()) == 1, result
    assert contacts(daemon) == before
