"""A fresh database with one account, for the CRM's store-side tests."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from relentad.store import accounts
from tests.support.store import database_with


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = database_with(tmp_path / "relentad.db", "alice@example.test")
    yield connection
    connection.close()


@pytest.fixture
def account_id(conn: sqlite3.Connection) -> int:
    return accounts.get_account(conn, "alice@example.test").id
