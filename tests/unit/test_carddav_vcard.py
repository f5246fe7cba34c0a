"""The vCards clients PUT: parsing, the CRM fields they set, and the merge a GET serves (relentad.carddav.vcard)."""

from __future__ import annotations

from typing import Any

import pytest

from relentad.carddav import vcard, write
from relentad.carddav.davxml import DavError

PHONE = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nPRODID:-//Apple Inc.//iPhone OS 17//EN\r\nUID:ABC-123\r\n"
    "N:Doe;Jane;;;\r\nFN:Jane Doe\r\nitem1.EMAIL;type=INTERNET;type=pref:Jane@Acme.example\r\n"
    "item1.X-ABLabel:work\r\nTEL;type=CELL:+49 170 1234567\r\nORG:Acme;Sales\r\n"
    "NOTE:met at the fair\\, booth 4\\nsecond line\r\nCATEGORIES:customer,vip\r\n"
    "ADR;type=WORK:;;Main St 1;Berlin;;10115;Germany\r\nREV:2026-01-01T00:00:00Z\r\nEND:VCARD\r\n"
)


def contact(**changes: Any) -> dict[str, Any]:
    """The CRM's contact as views.contact gives it, right after PHONE was PUT."""
    base = {
        "id": 7,
        "name": "Jane Doe",
        "kind": "person",
        "addresses": ["jane@acme.example"],
        "company": "Acme",
        "company_domain": "acme.example",
        "tags": ["customer", "vip"],
        "notes": "met at the fair, booth 4\nsecond line",
        "last_contact": None,
        "card_changed": 1790000000.0,
    }
    return {**base, **changes}


def test_fields_of_a_phone_card() -> None:
    card = vcard.parse(PHONE.encode())
    assert card.version == "3.0" and card.uid == "ABC-123"
    assert vcard.fields(card) == {
        "name": "Jane Doe",
        "addresses": ["Jane@Acme.example"],
        "company": "Acme",
        "tags": ["customer", "vip"],
        "notes": "met at the fair, booth 4\nsecond line",
    }


def test_folded_lf_only_and_n_without_fn_text() -> None:
    text = "BEGIN:VCARD\nVERSION:4.0\nFN:\nN:Mustermann;Max;;;\nEMAIL:max@example.org\nNOTE:a long\n  note\nEND:VCARD\n"
    fields = vcard.fields(vcard.parse(text.encode()))
    assert fields["name"] == "Max Mustermann" and fields["notes"] == "a long note"
    assert fields["tags"] is None and fields["company"] is None  # no line: the CRM's stay as they are


@pytest.mark.parametrize(
    ("data", "version"),
    [
        (b"BEGIN:VCARD\r\nEND:VCARD\r\n", False),
        (b"BEGIN:VCARD\r\nVERSION:3.0\r\nEMAIL:a@b.example\r\nEND:VCARD\r\n", False),  # no FN
        (b"BEGIN:VCARD\r\nVERSION:2.1\r\nFN:x\r\nEND:VCARD\r\n", True),
        # vCard 2.1 as phones export it: a quoted-printable soft line break, Latin-1 (415, not 400: the version)
        (
            b"BEGIN:VCARD\r\nVERSION:2.1\r\nFN;ENCODING=QUOTED-PRINTABLE:J=C3=BCrgen=20=\r\nSchmidt\r\nEND:VCARD\r\n",
            True,
        ),
        (b"BEGIN:VCARD\r\nVERSION:2.1\r\nFN;CHARSET=ISO-8859-1:J\xfcrgen\r\nEND:VCARD\r\n", True),
        (b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:x\r\n", False),  # no END
        (PHONE.encode() + PHONE.encode(), False),  # two cards
        (b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:\xff\r\nEND:VCARD\r\n", False),  # not UTF-8
        (b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN x\r\nEND:VCARD\r\n", False),  # no colon
        (b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", False),
        (b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:a\rb\r\nEND:VCARD\r\n", False),  # a bare CR
        (b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:x\r\nNOTE:" + b"a" * vcard.MAX_CARD + b"\r\nEND:VCARD\r\n", False),
    ],
)
def test_refused_cards(data: bytes, version: bool) -> None:
    with pytest.raises(vcard.BadCard) as caught:
        vcard.parse(data)
    assert caught.value.version is version


def test_unchanged_crm_serves_the_card_as_sent() -> None:
    base = vcard.crm_values(contact())
    out = vcard.merged(1, contact(), PHONE, base)
    assert out == PHONE  # octet for octet: the PUT's reply may carry the ETag


def test_crm_rename_replaces_the_name_group_only() -> None:
    base = vcard.crm_values(contact())
    out = vcard.merged(1, contact(name="Jane Smith", card_changed=1800000000.0), PHONE, base)
    assert "FN:Jane Smith\r\n" in out and "N:Smith;Jane;;;\r\n" in out and "Jane Doe" not in out
    assert "TEL;type=CELL:+49 170 1234567\r\n" in out and "item1.EMAIL;type=INTERNET;type=pref:Jane@Acme.example" in out
    assert "ADR;type=WORK:;;Main St 1;Berlin;;10115;Germany\r\n" in out and "UID:ABC-123\r\n" in out
    assert "REV:2027-01-15T08:00:00Z" not in out and "REV:2026-01-01" not in out and "REV:20270115T080000Z\r\n" in out
    assert out.index("FN:Jane Smith") < out.index("TEL")  # where the client had it


def test_crm_changes_of_tags_notes_addresses_and_groups_the_card_lacked() -> None:
    plain = "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:x\r\nFN:Bob\r\nEMAIL:bob@b.example\r\nTEL:+1\r\nEND:VCARD\r\n"
    was = contact(name="Bob", addresses=["bob@b.example"], company="", tags=[], notes="")
    now = {**was, "addresses": ["bob@b.example", "bob@c.example"], "tags": ["lead"], "notes": "2026-11-27 called"}
    out = vcard.merged(1, now, plain, vcard.crm_values(was))
    assert "EMAIL:bob@b.example\r\nEMAIL:bob@c.example\r\n" in out  # the client's line of the one it had
    assert "CATEGORIES:lead\r\n" in out and "NOTE:2026-11-27 called\r\n" in out and "TEL:+1\r\n" in out
    assert out.startswith("BEGIN:VCARD\r\nVERSION:4.0\r\n") and out.endswith("END:VCARD\r\n")
    assert "ORG" not in out  # unchanged (empty) in the CRM: the card's (none) stands


def test_a_group_the_card_lacks_appears_when_the_crm_changes_it() -> None:
    """iOS drops CATEGORIES on an edit: the CRM keeps its tags (write.py), the card stays as sent until they
    change."""
    dropped = PHONE.replace("CATEGORIES:customer,vip\r\n", "")
    assert vcard.merged(1, contact(), dropped, vcard.crm_values(contact())) == dropped
    out = vcard.merged(1, contact(tags=["customer"]), dropped, vcard.crm_values(contact()))
    assert "CATEGORIES:customer\r\n" in out and "REV:2026-01-01T00:00:00Z" not in out


def test_other_version_and_long_lines_fold() -> None:
    long = PHONE.replace("TEL;type=CELL:+49 170 1234567", "X-LONG:" + "ü" * 60)
    out = vcard.merged(1, contact(), long, vcard.crm_values(contact()), "4.0")
    assert out.startswith("BEGIN:VCARD\r\nVERSION:4.0\r\n")
    assert all(len(line.encode()) <= 75 for line in out.split("\r\n"))
    assert vcard.parse(out.encode()).values("X-LONG") == ["ü" * 60]


def test_conditions_of_rfc_7232() -> None:
    assert write.matches('"a", "b"', '"b"') and write.matches("*", '"x"') and not write.matches("*", None)
    assert not write.matches('W/"b"', '"b"') and write.matches('W/"b"', '"b"', weak=True)
    write.check('"b"', None, '"b"')
    write.check(None, "*", None)
    refused = (('"a"', None, '"b"'), ('"a"', None, None), (None, "*", '"b"'), (None, 'W/"b"', '"b"'))
    for if_match, if_none_match, etag in refused:  # a PUT's If-None-Match compares weakly too (§3.2)
        with pytest.raises(DavError) as caught:
            write.check(if_match, if_none_match, etag)
        assert caught.value.status == 412


def test_the_crms_card_is_rendered_once_per_card_served(monkeypatch: pytest.MonkeyPatch) -> None:
    """A book of thousands of stored cards the CRM changed is served per request: each card renders the CRM's
    vCard once, not once per changed group (it took twice as long for a 4.0 client)."""
    calls = []
    render = vcard.export.vcard

    def counted(*args: Any) -> str:
        calls.append(args)
        return render(*args)

    monkeypatch.setattr(vcard.export, "vcard", counted)
    now = contact(name="Jane Roe", tags=["lead"], notes="called", addresses=["jane@roe.example"], company="Roe")
    out = vcard.merged(1, now, PHONE, vcard.crm_values(contact()))
    assert len(calls) == 1 and "FN:Jane Roe\r\n" in out and "NOTE:called\r\n" in out and "REV:" in out


def test_an_address_added_in_the_crm_keeps_the_cards_other_email_lines() -> None:
    """A CRM change of the addresses touches only the addresses it changed: the phone's own lines for the others
    keep their group (Apple's label ``item1.X-ABLabel``) and parameters (TYPE=work)."""
    now = contact(addresses=["jane@acme.example", "jane@home.example"])
    out = vcard.merged(1, now, PHONE, vcard.crm_values(contact()))
    assert "\r\nitem1.EMAIL;type=INTERNET;type=pref:Jane@Acme.example\r\n" in out and "item1.X-ABLabel:work" in out
    assert "EMAIL;TYPE=INTERNET:jane@home.example\r\n" in out and out.count("EMAIL") == 2
    # an address the CRM no longer has loses its line (its label stays, as the card had it)
    gone = vcard.merged(1, contact(addresses=["jane@home.example"]), PHONE, vcard.crm_values(contact()))
    assert "Jane@Acme.example" not in gone and "jane@home.example" in gone


def test_a_merge_of_two_full_cards_stays_a_card_relentad_serves() -> None:
    """The combined card stays within the line limit (and is made in one pass: two cards of 5,000 lines)."""
    head = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nEMAIL:a@x.example\r\n"
    lines = head + "".join(f"TEL:+{i:020d}\r\n" for i in range(4900)) + "END:VCARD\r\n"
    other = lines.replace("FN:A", "FN:B").replace("TEL:+", "TEL:-")
    assert len(vcard.parse(vcard.combine(lines, other, "u").encode()).lines) == vcard.MAX_LINES - 3
