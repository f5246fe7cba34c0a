"""Contacts, companies and exports (relentad.crm.contacts, companies, views, export) on a real database."""

from __future__ import annotations

import csv
import io
import sqlite3
import subprocess
import sys

import pytest

from relentad.crm import companies, contacts, export, views
from relentad.crm.participants import IN, OUT, Participant
from relentad.crm.sorter import AccountPlan, file_message
from relentad.errors import InvalidInput, NotFound
from relentad.message import parse
from relentad.store import accounts


def person(address: str, name: str = "", role: str = "from", kind: str = "person") -> Participant:
    return Participant(address, name, role, kind)


def file(conn: sqlite3.Connection, account_id: int, blob: int, people: list[Participant], direction: str = IN) -> int:
    raw = f"Subject: message {blob}\r\nMessage-ID: <{blob}@x>\r\n\r\nbody\r\n".encode()
    plan = AccountPlan(account_id, direction, people, f"message {blob}", people[0].address if people else "")
    return file_message(conn, plan, parse(raw), blob, 1000.0 + blob)


def test_companies_skip_freemail_and_group_subdomains() -> None:
    assert companies.is_freemail("gmail.com") and companies.is_freemail("mail.yahoo.co.uk")
    assert companies.company_domain("bob@gmail.com") is None
    assert companies.company_domain("bob@mail.acme-corp.co.uk") == "acme-corp.co.uk"
    assert companies.display_name("acme-corp.co.uk") == "Acme Corp"
    assert companies.company_domain("root@localhost") is None
    regional = "bk.ru list.ru inbox.ru posteo.de mailbox.org rambler.ru ukr.net seznam.cz naver.com sohu.com"
    for domain in [*regional.split(), "virginmedia.com", "talktalk.net", "abv.bg"]:
        assert companies.company_domain(f"someone@{domain}") is None, domain


def test_filing_creates_and_counts(conn: sqlite3.Connection, account_id: int) -> None:
    file(conn, account_id, 1, [person("bob@acme.example", "Bob"), person("carol@gmail.com", "", "cc")])
    file(conn, account_id, 2, [person("bob@acme.example", "Robert Smith", "to")], OUT)
    assert file(conn, account_id, 2, [person("bob@acme.example", "", "to")], OUT) == 0  # duplicate counts once
    found = {c["addresses"][0]: c for c in views.list_contacts(conn, account_id)}
    bob, carol = found["bob@acme.example"], found["carol@gmail.com"]
    assert (bob["name"], bob["count_in"], bob["count_out"], bob["company"], bob["confirmed"]) == (
        "Bob",
        1,
        1,
        "Acme",
        True,
    )
    assert (bob["first_contact"], bob["last_contact"]) == (1001.0, 1002.0)
    assert (carol["company"], carol["confirmed"]) == ("", False)
    assert [c["addresses"] for c in views.list_contacts(conn, account_id, company="acme.example")] == [
        ["bob@acme.example"]
    ]
    card = views.show(conn, bob["id"])
    assert [m["subject"] for m in card["messages"]] == ["message 2", "message 1"]
    assert len(card["threads"]) == 2


def test_a_merged_away_contacts_id_is_never_handed_out_again(conn: sqlite3.Connection, account_id: int) -> None:
    """The id is in the contact folder's MAILBOXID (with its UIDVALIDITY, 1 for a new contact) and web links:
    merging away the newest contact must not free it for the next one (RFC 8474 §4: never another mailbox's)."""
    keep = contacts.create(conn, account_id, "ann@acme.example", "Ann")
    absorbed = contacts.create(conn, account_id, "ann.private@mail.example", "Annie")
    contacts.merge(conn, account_id, keep, absorbed)
    assert contacts.create(conn, account_id, "zed@other.example", "Zed") > absorbed


def test_address_name_is_replaced_by_a_real_name(conn: sqlite3.Connection, account_id: int) -> None:
    file(conn, account_id, 1, [person("dan@x.example", "dan@x.example")])
    file(conn, account_id, 2, [person("dan@x.example", "Dan Brown")])
    assert views.list_contacts(conn, account_id)[0]["name"] == "Dan Brown"


def test_tags_notes_add_address_and_merge(conn: sqlite3.Connection, account_id: int) -> None:
    file(conn, account_id, 1, [person("bob@acme.example", "Bob"), person("bob.private@gmail.com", "", "cc")])
    file(conn, account_id, 2, [person("bob.private@gmail.com", "Bobby")])
    bob = contacts.resolve(conn, account_id, "BOB@acme.example")
    private = contacts.resolve(conn, account_id, "Bobby")
    contacts.tag(conn, bob, ["vip", "eu"])
    contacts.tag(conn, private, ["vip", "friend"])
    contacts.add_note(conn, private, "met at\nthe fair", now=0)
    contacts.add_address(conn, account_id, bob, "Robert@Acme.example")
    with pytest.raises(InvalidInput, match="merge"):
        contacts.add_address(conn, account_id, bob, "bob.private@gmail.com")
    contacts.merge(conn, account_id, bob, private)
    card = views.show(conn, bob)
    assert card["addresses"] == ["bob.private@gmail.com", "bob@acme.example", "robert@acme.example"]
    assert card["tags"] == ["eu", "friend", "vip"]
    assert card["notes"] == "1970-01-01 met at the fair"
    assert (card["count_in"], card["count_out"]) == (2, 0)  # message 1 involved both: counted once
    assert [m["subject"] for m in card["messages"]] == ["message 2", "message 1"]
    with pytest.raises(NotFound):
        contacts.resolve(conn, account_id, f"#{private}")
    with pytest.raises(InvalidInput):
        contacts.merge(conn, account_id, bob, bob)
    assert [c["id"] for c in views.list_contacts(conn, account_id, tag="friend")] == [bob]


def test_vcard_is_valid_4_0(conn: sqlite3.Connection, account_id: int) -> None:
    long_name = "Ünïcode Nåme, with; specials " + "é" * 60
    file(
        conn, account_id, 1, [person("bob@acme.example", long_name), person("list@lists.example", "L", "list", "list")]
    )
    contacts.add_note(conn, contacts.resolve(conn, account_id, "bob@acme.example"), "line one", now=0)
    text = export.vcards(account_id, views.list_contacts(conn, account_id))
    lines = text.split("\r\n")
    assert lines[-1] == "" and all(len(line.encode()) <= 75 for line in lines)
    unfolded = text.replace("\r\n ", "").split("\r\n")[:-1]
    cards: list[list[str]] = []
    for line in unfolded:
        if line == "BEGIN:VCARD":
            cards.append([])
        cards[-1].append(line)
    assert len(cards) == 2
    for card in cards:
        assert card[0] == "BEGIN:VCARD" and card[1] == "VERSION:4.0" and card[-1] == "END:VCARD"
        assert sum(1 for line in card if line.startswith("FN:")) == 1
        assert all(":" in line for line in card)
    bob = next(card for card in cards if any("bob@acme.example" in line for line in card))
    assert "FN:Ünïcode Nåme\\, with\\; specials " + "é" * 60 in bob
    assert "ORG:Acme" in bob and "KIND:individual" in bob
    assert any(line == "KIND:group" for card in cards for line in card)


def test_csv_reads_back(conn: sqlite3.Connection, account_id: int) -> None:
    file(conn, account_id, 1, [person("bob@acme.example", 'Bob "The, Builder"')])
    contacts.tag(conn, contacts.resolve(conn, account_id, "bob@acme.example"), ["a", "b"])
    rows = list(csv.DictReader(io.StringIO(export.csv_text(views.list_contacts(conn, account_id)))))
    assert len(rows) == 1
    assert rows[0]["name"] == 'Bob "The, Builder"'
    assert rows[0]["addresses"] == "bob@acme.example" and rows[0]["tags"] == "a; b"
    assert rows[0]["count_in"] == "1"


def test_a_sender_planned_as_new_but_created_meanwhile_counts_once(conn: sqlite3.Connection, account_id: int) -> None:
    file(conn, account_id, 1, [person("bob@acme.example", "Bob")])
    raw = b"Subject: again\r\nMessage-ID: <again@x>\r\n\r\nbody\r\n"
    plan = AccountPlan(
        account_id, IN, [person("bob@acme.example")], "again", "bob@acme.example", frozenset({"bob@acme.example"})
    )
    file_message(conn, plan, parse(raw), 2, 2000.0)
    [bob] = views.list_contacts(conn, account_id)
    assert (bob["count_in"], bob["last_contact"]) == (2, 2000.0)
    assert conn.execute("SELECT count(*) FROM crm_contacts").fetchone()[0] == 1


def test_idn_company_is_named_in_unicode() -> None:
    assert companies.company_domain("jo@mail.xn--bcher-kva.example") == "xn--bcher-kva.example"
    assert companies.display_name("xn--bcher-kva.example") == "B\u00fccher"
    assert companies.display_name("xn--zz.example") == "Xn Zz"  # no valid A-label: left as it is


def test_own_addresses_are_never_added_to_a_contact(conn: sqlite3.Connection, account_id: int) -> None:
    # add-address once gave a contact the account's own address (the sorter never files it; the spam filter's
    # "contact written to" would then vouch for mail forged From the account itself)
    accounts.add_alias(conn, "sales@example.test", "alice@example.test")
    file(conn, account_id, 1, [person("bob@acme.example", "Bob")])
    bob = contacts.resolve(conn, account_id, "bob@acme.example")
    for own in ("Alice@Example.test", "alice+tag@example.test", "SALES@example.test", "sales+x@example.test"):
        with pytest.raises(InvalidInput, match="own address"):
            contacts.add_address(conn, account_id, bob, own)
    assert contacts.add_address(conn, account_id, bob, "bob+x@acme.example") == "bob+x@acme.example"


def test_odd_references_get_plain_errors(conn: sqlite3.Connection, account_id: int) -> None:
    file(conn, account_id, 1, [person("nameless@acme.example"), person("other@acme.example", "", "cc")])
    with pytest.raises(InvalidInput, match="name a contact"):
        contacts.resolve(conn, account_id, "  ")  # not "several contacts are named ''"
    for ref in ("#99999999999999999999999", "#\u00b2", "\u0661"):  # too large for SQLite; Unicode digits
        with pytest.raises(NotFound):
            contacts.resolve(conn, account_id, ref)


def test_notes_and_vcards_carry_no_control_characters(conn: sqlite3.Connection, account_id: int) -> None:
    file(conn, account_id, 1, [person("bob@acme.example", "Bob")])
    bob = contacts.resolve(conn, account_id, "bob@acme.example")
    contacts.add_note(conn, bob, "a\x01b\rc", now=0)
    assert views.contact(conn, bob)["notes"] == "1970-01-01 a b c"
    conn.execute("UPDATE crm_contacts SET name = ? WHERE id = ?", ("Old\rRow\x00Name", bob))  # an older release's
    text = export.vcards(account_id, views.list_contacts(conn, account_id))
    assert "FN:Old\\nRowName\r\n" in text and "\x00" not in text and "\rR" not in text


def test_subaddresses_of_one_mailbox_are_one_contact(conn: sqlite3.Connection, account_id: int) -> None:
    file(conn, account_id, 1, [person("bob+news@acme.example", "Bob")])
    file(conn, account_id, 2, [person("bob@acme.example", "Bob")])  # the base address after a subaddress
    file(conn, account_id, 3, [person("bob+x@acme.example"), person("bob+y@acme.example", "", "cc")])
    file(conn, account_id, 4, [person("bobby@acme.example"), person("bob@other.example", "", "cc")])  # not his
    plan = AccountPlan(
        account_id, IN, [person("bob+z@acme.example")], "m", "bob+z@acme.example", frozenset({"bob+z@acme.example"})
    )
    file_message(conn, plan, parse(b"Subject: m\r\n\r\nx\r\n"), 5, 1005.0)  # the sorter's "likely new" path
    found = views.list_contacts(conn, account_id)
    [bob] = [c for c in found if "bob@acme.example" in c["addresses"]]
    assert bob["addresses"] == sorted(f"bob{tag}@acme.example" for tag in ("", "+news", "+x", "+y", "+z"))
    assert bob["count_in"] == 4 and len(found) == 3


def test_links_of_many_contacts_fit_any_sqlite_build(conn: sqlite3.Connection, account_id: int) -> None:
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # the default before SQLite 3.32
    assert file(conn, account_id, 1, [person(f"p{i}@acme.example", "", "cc") for i in range(500)])
    assert conn.execute("SELECT count(*) FROM crm_message_contacts").fetchone()[0] == 500


def test_a_contact_takes_the_kind_its_mail_shows(conn: sqlite3.Connection, account_id: int) -> None:
    # an out-of-office reply first (Auto-Submitted: bulk), then the person writes: a person of Acme, not "bulk"
    file(conn, account_id, 1, [person("bob@acme.example", "Bob", kind="bulk")])
    file(conn, account_id, 2, [person("bob@acme.example", "Bob")])
    # the account wrote to a list first (a person to it), then the list's traffic came (List-Id)
    file(conn, account_id, 3, [person("dev@lists.proj.example", "Dev", "to")], OUT)
    file(conn, account_id, 4, [person("dev@lists.proj.example", "Dev", "list", "list")])
    file(conn, account_id, 5, [person("dev@lists.proj.example", "Dev", "to")], OUT)  # writing to it again: a list
    found = {c["addresses"][0]: (c["kind"], c["company"]) for c in views.list_contacts(conn, account_id)}
    assert found == {"bob@acme.example": ("person", "Acme"), "dev@lists.proj.example": ("list", "")}


def test_company_filter_takes_a_domain_as_typed(conn: sqlite3.Connection, account_id: int) -> None:
    file(conn, account_id, 1, [person("jo@mail.xn--bcher-kva.example", "Jo"), person("al@acme.example", "", "cc")])
    for typed in ("Mail.B\u00fccher.example", "b\u00fccher.example.", "XN--BCHER-KVA.example", "b\u00fccher"):
        assert [c["name"] for c in views.list_contacts(conn, account_id, company=typed)] == ["Jo"], typed
    assert views.list_contacts(conn, account_id, company="gmail.com") == []


def test_a_contact_is_found_by_its_name_in_any_case(conn: sqlite3.Connection, account_id: int) -> None:
    file(conn, account_id, 1, [person("elise@acme.example", "\u00c9lise M\u00fcller")])
    elise = contacts.resolve(conn, account_id, "elise@acme.example")
    for typed in ("\u00e9lise m\u00fcller", "\u00c9LISE M\u00dcLLER", "  \u00c9lise   M\u00fcller "):
        assert contacts.resolve(conn, account_id, typed) == elise


def test_company_filter_takes_a_name_in_any_case(conn: sqlite3.Connection, account_id: int) -> None:
    """`contacts list --company` folded only A-Z (SQLite's lower()), while `companies rename` finds a name in any
    case: both go through companies.named now."""
    file(conn, account_id, 1, [person("jo@xn--lan-9la.example", "Jo")])  # élan.example: the company "Élan"
    company = conn.execute("SELECT name FROM crm_companies WHERE account_id = ?", (account_id,)).fetchone()[0]
    assert company == "\u00c9lan"
    for typed in ("\u00e9lan", "\u00c9LAN", " \u00e9lan "):
        assert [c["name"] for c in views.list_contacts(conn, account_id, company=typed)] == ["Jo"], typed


def test_contact_views_do_not_load_mail_authentication() -> None:
    """`relentad contacts list` imports the views and companies; mail authentication (dkimpy and the rest, about
    50 ms of a ~230 ms command) is loaded only once a company's domain is looked up."""
    code = (
        "import sys\n"
        "from relentad.crm import companies, views\n"
        "assert 'relentad.mailauth' not in sys.modules, 'loaded at import'\n"
        "assert companies.company_domain('jo@mail.acme.co.uk') == 'acme.co.uk'\n"
        "assert 'relentad.mailauth' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
