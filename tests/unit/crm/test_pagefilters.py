"""The account page's filters (relentad.crm.pagefilters): checks, the Sieve they write, their place in the program."""

from __future__ import annotations

import sqlite3

import pytest

from relentad.crm import pagefilters, rules, userscripts
from relentad.errors import InvalidInput, NotFound
from relentad.message import parse
from relentad.store import accounts, db

RAW = (
    b"From: Shop <News@Shop.test>\r\nTo: alice@example.test\r\nCc: Team <team@a.test>\r\n"
    b'Subject: Your "weekly" deals\r\n'
    b"List-Id: Deals <deals.shop.test>\r\n\r\nHi.\r\n"
)


def account(conn: sqlite3.Connection) -> int:
    return accounts.get_account(conn, "alice@example.test").id


def run(conn: sqlite3.Connection) -> rules.Outcome:
    view = rules.MessageView(parse(RAW), RAW, "news@shop.test", "alice@example.test")
    return rules.evaluate(rules.load(conn, account(conn)), view)


@pytest.mark.parametrize(
    ("field", "value", "folder"),
    [
        ("from", "shop.test", "Deals"),
        ("to", "TEAM@", "Team"),
        ("subject", '"weekly"', "Deals"),
        ("list", "deals.", "L"),
    ],
)
def test_each_field_files_its_mail(conn: sqlite3.Connection, field: str, value: str, folder: str) -> None:
    with db.transaction(conn):
        pagefilters.add(conn, account(conn), field, value, folder, seen=True)
    assert run(conn).targets("INBOX") == [(folder, ["\\Seen"])]


def test_the_first_match_files_and_stops(conn: sqlite3.Connection) -> None:
    with db.transaction(conn):
        userscripts.put(conn, account(conn), "mine", 'require "fileinto"; fileinto "Mine";', 20, 1 << 20)
        userscripts.set_active(conn, account(conn), "mine")
        rules.add(conn, account(conn), "admin", 'require "imap4flags"; addflag "$Admin";')
        first = pagefilters.add(conn, account(conn), "from", "shop", "Deals", seen=False)
        pagefilters.add(conn, account(conn), "subject", "deals", "Other", seen=False)
    names = [name for name, _ in rules.load(conn, account(conn))]
    page = rules.PAGE_SUFFIX
    assert names == ["admin", f"filter {first.id}{page}", f"filter {first.id + 1}{page}", "mine" + rules.USER_SUFFIX]
    assert run(conn).targets("INBOX") == [("Deals", ["$Admin"])], "the admin's rules first; one folder"
    with db.transaction(conn):
        pagefilters.remove(conn, account(conn), first.id)
    assert run(conn).targets("INBOX") == [("Other", ["$Admin"])]
    with db.transaction(conn), pytest.raises(NotFound):
        pagefilters.remove(conn, account(conn), first.id)


@pytest.mark.parametrize(
    ("field", "value", "folder", "problem"),
    [
        ("date", "x", "F", "choose the field"),
        ("from", "  ", "F", "write what the field must contain"),
        ("from", "x" * 201, "F", "longer than 200"),
        ("from", "x", " / ", "write the folder"),
        ("from", "x", "Contacts/Jo", "read-only"),
    ],
)
def test_checks(conn: sqlite3.Connection, field: str, value: str, folder: str, problem: str) -> None:
    with db.transaction(conn), pytest.raises(InvalidInput, match=problem):
        pagefilters.add(conn, account(conn), field, value, folder, seen=False)


def test_quotes_and_backslashes_in_the_value_survive(conn: sqlite3.Connection) -> None:
    text = pagefilters.script("subject", 'a "b" \\ c', 'F "x"', seen=False)
    assert 'header :contains "subject" "a \\"b\\" \\\\ c"' in text
    compiled = rules.compiled(text)
    assert compiled.commands


def test_an_admin_rule_cannot_take_a_name_that_says_it_came_from_elsewhere(conn: sqlite3.Connection) -> None:
    """The sorter leaves the page's forwarding out by its name ([web] user_forwarding): no admin rule may share it."""
    for name in ("forwarding (account page)", "x (user)"):
        with db.transaction(conn), pytest.raises(InvalidInput, match="cannot end in"):
            rules.add(conn, account(conn), name, "keep;")


def test_a_filter_changes_in_its_place_and_moves_up(conn: sqlite3.Connection) -> None:
    with db.transaction(conn):
        first = pagefilters.add(conn, account(conn), "from", "shop", "Deals", seen=False)
        second = pagefilters.add(conn, account(conn), "subject", "deals", "Other", seen=True)
    assert run(conn).targets("INBOX") == [("Deals", [])]
    with db.transaction(conn):
        pagefilters.move_up(conn, account(conn), second.id)
    assert [f.describe() for f in pagefilters.listed(conn, account(conn))] == [
        "Subject contains “deals” → Other, marked read",
        "From contains “shop” → Deals",
    ]
    assert run(conn).targets("INBOX") == [("Other", ["\\Seen"])], "the filter moved up runs first"
    with db.transaction(conn), pytest.raises(InvalidInput, match="first already"):
        pagefilters.move_up(conn, account(conn), first.id)  # the first row holds the moved filter now
    with db.transaction(conn):
        pagefilters.update(conn, account(conn), first.id, "subject", "nothing like it", "Other", seen=True)
    assert run(conn).targets("INBOX") == [("Deals", [])], "changed in its place: the next one matches now"
    with db.transaction(conn), pytest.raises(InvalidInput, match="read-only"):
        pagefilters.update(conn, account(conn), first.id, "from", "x", "Contacts/Jo", seen=False)
    for change in (
        lambda: pagefilters.update(conn, account(conn), 999, "from", "x", "F", seen=False),
        lambda: pagefilters.move_up(conn, account(conn), 999),
    ):
        with db.transaction(conn), pytest.raises(NotFound):
            change()
    assert pagefilters.get(conn, account(conn), 999) is None
