"""Fixtures for the spam unit tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from relentad.store import db


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    """A fresh database with the domain a.test and the accounts 1 (u1@a.test) and 2 (u2@a.test)."""
    conn = db.open_database(tmp_path / "spam.db")
    conn.execute("INSERT INTO domains (name, created) VALUES ('a.test', 0)")
    for n in (1, 2):
        conn.execute(
            "INSERT INTO accounts (id, email, domain_id, password_hash, created) VALUES (?, ?, 1, 'x', 0)",
            (n, f"u{n}@a.test"),
        )
    return conn
