"""Who may send as what (relentad.senders), against a real database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from relentad import senders
from relentad.store import accounts, db


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = db.open_database(tmp_path / "s.db")
    with db.transaction(connection):
        accounts.add_domain(connection, "a.test")
        for user in ("alice", "carol"):
            accounts.add_account(connection, f"{user}@a.test", "x", quota_bytes=0, daily_send=0)
        accounts.add_alias(connection, "sales@a.test", "alice@a.test")
        accounts.add_alias(connection, "@a.test", "alice@a.test")
    yield connection
    connection.close()


@pytest.mark.parametrize(
    ("address", "owned"),
    [
        ("alice@a.test", True),
        ("ALICE@A.TEST", True),
        ("alice+news@a.test", True),
        ("sales@a.test", True),
        ("sales+x@a.test", True),
        ("carol@a.test", False),
        ("anything@a.test", False),  # the catch-all is not a licence to impersonate
        ("ceo@b.test", True),  # send_as grant
        ("someone@partner.test", True),  # send_as domain grant
        ("someone@other.test", False),
        ("not an address", False),
    ],
)
def test_owns(conn: sqlite3.Connection, address: str, owned: bool) -> None:
    send_as = senders.SendAs.parse(["alice@a.test=ceo@b.test", "Alice@a.test=@Partner.test", "bad entry"])
    assert senders.owns(conn, 1, "alice@a.test", address, send_as) is owned


def test_grants_are_per_account(conn: sqlite3.Connection) -> None:
    send_as = senders.SendAs.parse(["alice@a.test=ceo@b.test"])
    assert not senders.owns(conn, 2, "carol@a.test", "ceo@b.test", send_as)
