"""Row ids the CRM hands out once only: a thread's id is its IMAP THREADID, a contact's is in its folder's
MAILBOXID (RFC 8474: never given to another thread or mailbox) and in web links.

SQLite numbers a new row max(id) + 1, so deleting the newest row (a merge absorbs it) let the next new one take its
id. ``crm_id_floors`` keeps the last id each table handed out (migration ``025_crm_thread_ids``); new rows are
numbered above it, as AUTOINCREMENT would do without rebuilding the tables.
"""

from __future__ import annotations

import sqlite3
from typing import Literal

Table = Literal["crm_threads", "crm_contacts"]


def fresh(conn: sqlite3.Connection, table: Table) -> int:
    """The id for a new row of ``table``, recorded as handed out (in the caller's transaction): ONE statement, as
    it runs for every new thread and contact on the delivery path."""
    row = conn.execute(
        f"""UPDATE crm_id_floors SET floor = max(floor, (SELECT coalesce(max(id), 0) FROM {table})) + 1
            WHERE name = ? RETURNING floor""",
        (table,),
    ).fetchone()
    return int(row[0])
