"""Shared mailboxes' rights (RFC 4314): parsing, SETACL modifications, identifiers, lookups in the shared
namespace, and grants that go with DELETE and account termination."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from relentad.errors import InvalidInput, NotFound
from relentad.imap import access
from relentad.imap.errors import ImapError
from relentad.lifecycle import retention
from relentad.store import accounts, acl, db, imapwrite, mailboxes
from tests.support.store import database_with

OWNER, OTHER, THIRD = "owner@example.test", "other@example.test", "third@example.test"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = database_with(tmp_path / "t.db", OWNER, OTHER, THIRD)
    yield connection
    connection.close()


def ids(conn: sqlite3.Connection) -> tuple[int, int, int]:
    return tuple(accounts.get_account(conn, email).id for email in (OWNER, OTHER, THIRD))  # type: ignore[return-value]


def share(conn: sqlite3.Connection, name: str, rights: str, to: str = OTHER) -> int:
    owner = accounts.get_account(conn, OWNER).id
    with db.transaction(conn):
        mailbox_id = acl.own_mailbox(conn, owner, name)
        acl.set_rights(conn, mailbox_id, acl.grantee(conn, owner, to), rights)
    return mailbox_id


@pytest.mark.parametrize(
    ("text", "rights"),
    [("lr", "lr"), ("rl", "lr"), ("lrswipkxtea", "lrswipkxtea"), ("c", "kx"), ("d", "te"), ("llrr", "lr"), ("", "")],
)
def test_parse_rights_is_canonical(text: str, rights: str) -> None:
    assert acl.parse_rights(text) == rights


@pytest.mark.parametrize("text", ["lrz", "L", "lr ", "*"])
def test_unknown_rights_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        acl.parse_rights(text)


def test_setacl_modifications() -> None:
    assert acl.modified("lr", "+sw") == "lrsw"
    assert acl.modified("lrsw", "-sw") == "lr"
    assert acl.modified("lrsw", "i") == "i"
    assert acl.modified("lr", "-lr") == ""


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("Shared/a@b.test/INBOX", ("a@b.test", "INBOX")),
        ("Shared/A@B.test/Customers/2026", ("a@b.test", "Customers/2026")),
        ("Shared/Projects", None),
        ("Shared", None),
        ("INBOX", None),
        ("shared/a@b.test/INBOX", None),
    ],
)
def test_split_shared(name: str, parts: tuple[str, str] | None) -> None:
    assert acl.split_shared(name) == parts


def test_flag_rights_and_allowed_flags() -> None:
    assert [access.flag_right(f) for f in ("\\Seen", "\\Deleted", "\\Flagged", "$Work")] == ["s", "t", "w", "w"]
    assert access.allowed_flags("lrs", ["\\Seen", "\\Deleted", "\\Flagged"]) == ["\\Seen"]
    access.require("lrswite", "te", "MOVE")
    with pytest.raises(ImapError) as caught:
        access.require("lrs", "te", "MOVE")
    assert caught.value.code == "NOPERM" and "te" in caught.value.text


def test_identifiers(conn: sqlite3.Connection) -> None:
    owner, other, _ = ids(conn)
    assert acl.grantee(conn, owner, "Other@Example.test") == other
    for identifier in ("anyone", "authuser", "-other@example.test", OWNER):
        with pytest.raises(InvalidInput):
            acl.grantee(conn, owner, identifier)
    with pytest.raises(NotFound):
        acl.grantee(conn, owner, "nobody@example.test")


def test_lookup_only_what_is_shared(conn: sqlite3.Connection) -> None:
    owner, other, third = ids(conn)
    with db.transaction(conn):
        imapwrite.create_mailbox(conn, owner, "Customers")
    share(conn, "Customers", "lrs")
    found = acl.lookup(conn, other, f"Shared/{OWNER}/Customers")
    assert found is not None and found.rights == "lrs" and found.owner_id == owner
    assert found.info.name == f"Shared/{OWNER}/Customers"
    assert acl.lookup(conn, other, f"Shared/{OWNER}/INBOX") is None  # exists, not shared
    assert acl.lookup(conn, third, f"Shared/{OWNER}/Customers") is None  # shared with someone else
    assert acl.lookup(conn, other, f"Shared/{OWNER}/Nothing") is None
    assert [s.info.name for s in acl.shared_with(conn, other)] == [f"Shared/{OWNER}/Customers"]
    assert acl.shared_with(conn, third) == []


def test_rename_keeps_delete_drops_grants(conn: sqlite3.Connection) -> None:
    owner, other, _ = ids(conn)
    with db.transaction(conn):
        imapwrite.create_mailbox(conn, owner, "Team")
    mailbox_id = share(conn, "Team", "lr")
    with db.transaction(conn):
        imapwrite.rename_mailbox(conn, owner, "Team", "Crew")
    assert acl.lookup(conn, other, f"Shared/{OWNER}/Crew") is not None
    with db.transaction(conn):
        imapwrite.delete_mailbox(conn, owner, "Crew")
    assert acl.rights_of(conn, mailbox_id, other) is None
    assert conn.execute("SELECT count(*) FROM imap_acl").fetchone()[0] == 0


def test_empty_rights_remove_the_grant(conn: sqlite3.Connection) -> None:
    _, other, _ = ids(conn)
    mailbox_id = share(conn, "INBOX", "lr")
    with db.transaction(conn):
        assert acl.set_rights(conn, mailbox_id, other, "-lr") == ""
    assert acl.rights_of(conn, mailbox_id, other) is None


def test_termination_removes_grants_both_ways(conn: sqlite3.Connection) -> None:
    owner, other, third = ids(conn)
    share(conn, "INBOX", "lr", OTHER)
    with db.transaction(conn):
        theirs = mailboxes.find(conn, third, "INBOX")
        assert theirs is not None
        acl.set_rights(conn, theirs, owner, "lr")
    with db.transaction(conn):
        retention.terminate(conn, owner)
    assert conn.execute("SELECT count(*) FROM imap_acl").fetchone()[0] == 0
    assert acl.shared_with(conn, other) == []
