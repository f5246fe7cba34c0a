"""Reading contact files for `contacts import`: CSV columns of Google, Outlook and plain spreadsheets, vCard 2.1's
quoted-printable and charsets, folding, limits and the file errors that import nothing."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from relentad.carddav import vcard
from relentad.crm import contactfile
from relentad.crm.contactfile import FileError, detect, parse, roles


def fields(entry: contactfile.Entry) -> dict[str, object]:
    assert entry.card is not None, entry.skip
    return vcard.fields(entry.card)


def test_google_outlook_thunderbird_and_plain_columns() -> None:
    google = [
        "Name",
        "Given Name",
        "Family Name",
        "E-mail 1 - Type",
        "E-mail 1 - Value",
        "E-mail 2 - Value",
        "Organization 1 - Name",
        "Notes",
        "Group Membership",
        "Phone 1 - Value",
        "Birthday",
    ]
    assert roles(google) == ["name", "given", "family", "", "email", "email", "company", "note", "tags", "phone", ""]
    outlook = [
        "First Name",
        "Middle Name",
        "Last Name",
        "E-mail Address",
        "E-mail 2 Address",
        "E-mail Display Name",
        "Company",
        "Categories",
        "Notes",
        "Mobile Phone",
        "Business Phone 2",
    ]
    assert roles(outlook) == [
        "given",
        "middle",
        "family",
        "email",
        "email",
        "",
        "company",
        "tags",
        "note",
        "phone",
        "phone",
    ]
    assert roles(["Display Name", "Primary Email", "Secondary Email", "Organization"]) == [
        "name",
        "email",
        "email",
        "company",
    ]
    new_google = [
        "First Name",
        "Phonetic First Name",
        "Last Name",
        "E-mail 1 - Label",
        "E-mail 1 - Value",
        "Organization Name",
        "Organization Title",
        "Labels",
        "Address 1 - Formatted",
        "Address",
        "Nickname",
    ]
    assert roles(new_google) == ["given", "", "family", "", "email", "company", "", "tags", "", "", ""]
    assert roles(["\ufeffNAME", " Email ", "company", "TAGS", "note", "Labels"]) == [
        "name",
        "email",
        "company",
        "tags",
        "note",
        "tags",
    ]


def test_relentad_export_csv_reads_back() -> None:
    assert roles(["id", "name", "kind", "addresses", "company", "company_domain", "tags", "notes"]) == [
        "",
        "name",
        "",
        "email",
        "company",
        "",
        "tags",
        "note",
    ]
    (entry,) = parse(b"id,name,addresses,tags\n7,Bob,bob@a.example; b@b.example,x; y\n", "csv").entries
    assert fields(entry)["addresses"] == ["bob@a.example", "b@b.example"] and fields(entry)["tags"] == ["x", "y"]


def test_google_row_becomes_a_card() -> None:
    text = (
        "Name,Given Name,Family Name,E-mail 1 - Value,E-mail 2 - Value,Group Membership,Notes,Phone 1 - Value\n"
        "Jürgen Müller,Jürgen,Müller,j@acme.example ::: jm@acme.example,jm2@mail.example,* myContacts ::: Kunden,"
        '"a, b; c\nline two",+49 170 1 ::: +49 30 2\n'
        ",,,,,,,\n"
        "Nobody,,,,,,,+1 555\n"
    )
    parsed = parse(("\ufeff" + text).encode("utf-8"), "csv")
    assert parsed.warnings == [] and [e.where for e in parsed.entries] == ["line 2", "line 5"]  # blank row ignored
    first, nobody = parsed.entries
    assert fields(first) == {
        "name": "Jürgen Müller",
        "addresses": ["j@acme.example", "jm@acme.example", "jm2@mail.example"],
        "company": None,
        "tags": ["Kunden"],
        "notes": "a, b; c\nline two",
    }
    assert first.card is not None and first.card.values("TEL") == ["+49 170 1", "+49 30 2"]  # no " " of " ::: "
    assert nobody.skip == contactfile.NO_ADDRESS


def test_outlook_csv_in_windows_1252_with_semicolons() -> None:
    text = "First Name;Last Name;E-mail Address;Company;Categories\r\nZoë;Ångström;zoe@example.net;Acme;VIP;Berlin\r\n"
    parsed = parse(text.encode("cp1252"), "csv")
    assert parsed.warnings == ["the file is not UTF-8: read as Windows-1252"]
    assert fields(parsed.entries[0])["name"] == "Zoë Ångström"
    assert fields(parsed.entries[0])["company"] == "Acme" and fields(parsed.entries[0])["tags"] == ["VIP"]


def test_vcard_21_quoted_printable_charsets_and_bare_types() -> None:
    data = (
        b"BEGIN:VCARD\r\nVERSION:2.1\r\n"
        b"N;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:M=C3=BCller;J=C3=BCrgen\r\n"
        b"TEL;WORK;VOICE:+49 30 1\r\n"
        b"item1.EMAIL;PREF;INTERNET:j@acme.example\r\n"
        b"NOTE;QUOTED-PRINTABLE:first line=0D=0Asecond =\r\n"
        b"line=3D continued\r\n"
        b"ORG;CHARSET=ISO-8859-1:B\xfccher AG\r\n"
        b"PHOTO;TYPE=JPEG;ENCODING=BASE64:\r\n    /9j/4AAQ\r\n    SkZJRg==\r\n\r\n"
        b"END:VCARD\r\n"
    )
    (entry,) = parse(data, "vcard").entries
    assert fields(entry) == {
        "name": "Jürgen Müller",  # no FN in 2.1: from N
        "addresses": ["j@acme.example"],
        "company": "Bücher AG",
        "tags": None,
        "notes": "first line\nsecond line= continued",
    }
    assert entry.card is not None and entry.card.version == "3.0"
    assert [line.raw for line in entry.card.lines if line.name == "TEL"] == ["TEL;TYPE=WORK;TYPE=VOICE:+49 30 1"]
    assert entry.card.values("PHOTO") == ["/9j/4AAQSkZJRg=="]
    (photo,) = [line.raw for line in entry.card.lines if line.name == "PHOTO"]
    assert photo.startswith("PHOTO;TYPE=JPEG;ENCODING=b:")


def test_vcard_30_and_40_folded_with_photo_bounded() -> None:
    photo = base64.b64encode(b"\xff" * (vcard.MAX_CARD)).decode()
    folded = "\r\n ".join(photo[i : i + 74] for i in range(0, len(photo), 74))
    data = (
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Anna\r\n Lena\r\nEMAIL:anna@x.example\r\nEND:VCARD\r\n"
        f"BEGIN:VCARD\nVERSION:3.0\nFN:Big\nEMAIL:big@x.example\nPHOTO;ENCODING=b;TYPE=JPEG:{folded}\nEND:VCARD\n"
    ).encode()
    small, big = parse(data, "vcard").entries
    assert fields(small)["name"] == "AnnaLena" and small.card is not None and small.card.version == "4.0"
    assert (
        big.card is not None
        and not big.card.values("PHOTO")
        and big.notes == ["photo dropped (the card is over 256 KiB with it)"]
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"BEGIN:VCARD\nFN:A\nBEGIN:VCARD\nEND:VCARD\n", "card 1 (line 1): BEGIN:VCARD on line 3 before its END"),
        (b"BEGIN:VCARD\nFN:A\nEND:VCARD\nEND:VCARD\n", "line 4: END:VCARD without a BEGIN:VCARD (after card 1)"),
        (b"BEGIN:VCARD\nFN:A\nEND:VCARD\nBEGIN:VCARD\nFN:B\n", "card 2 (line 4): the file ends before its END"),
        (b"hello\n", "line 1: text outside a card"),
    ],
)
def test_nesting_errors_name_the_card(data: bytes, message: str) -> None:
    with pytest.raises(FileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(data, "vcard")


def test_limits_and_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contactfile, "MAX_ENTRIES", 2)
    with pytest.raises(FileError, match="more than 2 entries"):
        parse(b"email\na@x.example\nb@x.example\nc@x.example\n", "csv")
    assert detect("export", b"\xef\xbb\xbf  BEGIN:VCARD\r\n") == "vcard"
    assert detect("export", b"Name;E-mail Address\n") == "csv"
    assert detect("x.VCF", b"") == "vcard" and detect("x.csv", b"") == "csv"
    with pytest.raises(FileError, match="neither a vCard file nor a CSV"):
        detect("notes.txt", b"name,phone\n")
    for name, data in (("abook.ldif", b""), ("export", b"dn: cn=Bob,mail=bob@x.example\nmail: bob@x.example\n")):
        with pytest.raises(FileError, match="is LDIF, which is not read: export the address book as vCard or CSV"):
            detect(name, data)
    monkeypatch.setattr(contactfile, "MAX_FILE", 10)
    big = tmp_path / "big.csv"
    big.write_bytes(b"email\n" + b"a@x.example\n" * 2)
    with pytest.raises(FileError, match="over 0 MB"):
        contactfile.read(big)


def test_utf16_tab_separated_text_from_excel(tmp_path: Path) -> None:
    path = tmp_path / "contacts.txt"
    path.write_bytes("Name\tE-mail Address\tCompany\r\nÉmile Zola\temile@paris.example\tGallimard\r\n".encode("utf-16"))
    parsed = contactfile.read(path)
    assert parsed.format == "csv" and fields(parsed.entries[0])["name"] == "Émile Zola"


def test_quoted_colon_and_lines_not_utf8_warned_once() -> None:
    data = (
        b'BEGIN:VCARD\nVERSION:3.0\nFN:Caf\xe9 Owner\nURL;TYPE="home:page":https://x.example\nNOTE:d\xe9j\xe0\n'
        b"EMAIL:cafe@x.example\nEND:VCARD\n"
    )
    parsed = parse(data, "vcard")
    (entry,) = parsed.entries
    assert fields(entry)["name"] == "Café Owner" and fields(entry)["notes"] == "déjà"
    assert entry.card is not None and entry.card.values("URL") == ["https://x.example"]
    assert parsed.warnings == [
        "card 1 (line 1), line 3 is not UTF-8: read as Windows-1252",
        "1 more line(s) not UTF-8: read as Windows-1252",
    ]


def test_a_huge_cell_skips_its_row_only() -> None:
    text = f'email,note\na@x.example,"{"n" * 300_000}"\nb@x.example,short\n'
    huge, fine = parse(text.encode(), "csv").entries
    assert huge.skip == "a card is at most 256 KiB" and fields(fine)["notes"] == "short"


def test_text_of_the_file_in_a_message_is_quoted() -> None:
    """A VERSION or CHARSET the report names is shown quoted: an escape sequence in the file never reaches the
    terminal through `contacts import -v` or its warnings."""
    data = (
        b"BEGIN:VCARD\r\nVERSION:2.1\x1b[2J\r\nFN:A\r\nEMAIL:a@x.example\r\nEND:VCARD\r\n"
        b"BEGIN:VCARD\r\nVERSION:2.1\r\nFN;CHARSET=x\x1b[31m:B\xe9\r\nEMAIL:b@x.example\r\nEND:VCARD\r\n"
    )
    parsed = parse(data, "vcard")
    assert parsed.entries[0].skip == "vCard '2.1\\x1b[2J' is not read: 2.1, 3.0 or 4.0"
    assert parsed.warnings == ["card 2 (line 6), line 8 (CHARSET='x\\x1b[31m') is not UTF-8: read as Windows-1252"]
    assert not any("\x1b" in text for text in [*parsed.warnings, *(e.skip for e in parsed.entries)])


@pytest.mark.timeout(20)
def test_many_continuation_lines_are_joined_in_linear_time() -> None:
    """A value folded (or soft-broken) into millions of short lines, within the 50 MB: each piece is joined once,
    not the line so far copied per piece (8 MB of them took over a minute; 50 MB hours)."""
    pieces = 1_500_000
    card = b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nEMAIL:a@x.example\r\n"
    folded = card + b"NOTE:x" + b"\r\n y" * pieces + b"\r\nEND:VCARD\r\n"
    soft = (
        b"BEGIN:VCARD\r\nVERSION:2.1\r\nEMAIL:a@x.example\r\nNOTE;ENCODING=QUOTED-PRINTABLE:x="
        + b"\r\ny=" * pieces
        + b"\r\nz\r\nEND:VCARD\r\n"
    )
    for data in (folded, soft):
        (entry,) = parse(data, "vcard").entries
        assert entry.skip == "a card is at most 256 KiB"


def test_a_vcard_file_of_millions_of_short_lines_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """48 MB of `X:` lines in one card took 4.8 GB of memory before the card was found too large: the file's
    content lines are counted as they are read."""
    monkeypatch.setattr(contactfile, "MAX_LINES", 100)
    card = b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nEMAIL:a@x.example\r\n%bEND:VCARD\r\n"
    assert len(parse(card % (b"X:\r\n" * 95), "vcard").entries) == 1
    with pytest.raises(FileError, match="more than 100 lines: split the file"):
        parse(card % (b"X:\r\n" * 96), "vcard")


def test_a_charset_that_names_no_codec_is_guessed() -> None:
    """A CHARSET with a NUL in it made the whole import fail with "embedded null character" (found by the fuzz
    target): the value is read as one with an unknown CHARSET is."""
    data = b"BEGIN:VCARD\r\nVERSION:2.1\r\nFN;CHARSET=latin\x001:B\xe9a\r\nEMAIL:b@x.example\r\nEND:VCARD\r\n"
    parsed = parse(data, "vcard")
    assert fields(parsed.entries[0])["name"] == "Béa"
    assert parsed.warnings == ["card 1 (line 1), line 3 (CHARSET='latin\\x001') is not UTF-8: read as Windows-1252"]
