"""A fresh database with one account, for the CRM's store-side tests."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from relentad.store import accounts, db


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = db.open_database(tmp_path / "relentad.db")
    with db.transaction(connection):
        accounts.add_domain(connection, "example.test")
        accounts.add_account(connection, "alice@example.test", "x", quota_bytes=0, daily_send=0)
    yield connection
    connection.close()


@pytest.fixture
def account_id(conn: sqlite3.Connection) -> int:
    return accounts.get_account(conn, "alice@example.test").id
