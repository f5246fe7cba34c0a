"""A fresh relentad database for unit tests that need accounts but no daemon."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from relentad.store import accounts, db


def database_with(path: Path, *emails: str, quota_bytes: int = 0) -> sqlite3.Connection:
    """A new database at ``path`` with an account (password "x", no send limit) for each of ``emails``, and
    their domains."""
    connection = db.open_database(path)
    with db.transaction(connection):
        for domain in dict.fromkeys(email.rpartition("@")[2] for email in emails):
            accounts.add_domain(connection, domain)
        for email in emails:
            accounts.add_account(connection, email, "x", quota_bytes=quota_bytes, daily_send=0)
    return connection
