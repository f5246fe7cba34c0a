"""The filters a user sets on the account page: "mail from X goes to folder Y", without a Sieve client.

Each filter is a small Sieve script of its own (table ``page_filters``) made from the form: a ``header`` or
``address`` test on one field with ``:contains``, then ``fileinto`` (the folder made when missing, as any rule's),
optionally marked read, then ``stop``. They run in the account's program after the admin's rules and before the
user's own active script, oldest first, and the first that matches files the message: later filters and the user's
script do not run for it (one message, one folder, as the form promises).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from ..errors import InvalidInput, NotFound
from ..store.mailboxes import stored_name
from . import rules
from .sieve import compile_script, quoted

FIELDS = {
    "from": ("From", 'address :all :contains "from"'),
    "to": ("To or Cc", 'address :all :contains ["to", "cc"]'),
    "subject": ("Subject", 'header :contains "subject"'),
    "list": ("Mailing list", 'header :contains "list-id"'),
}
"""Field key → (what the form calls it, the Sieve test before the value)."""
MAX_FILTERS = 100
MAX_VALUE = 200


@dataclass(frozen=True)
class Filter:
    id: int
    field: str
    value: str
    folder: str
    seen: bool
    created: float

    def describe(self) -> str:
        read = ", marked read" if self.seen else ""
        return f"{FIELDS[self.field][0]} contains “{self.value}” → {self.folder}{read}"


def listed(conn: sqlite3.Connection, account_id: int) -> list[Filter]:
    rows = conn.execute(
        "SELECT id, field, value, folder, seen, created FROM page_filters WHERE account_id = ? ORDER BY id",
        (account_id,),
    )
    return [Filter(int(r[0]), str(r[1]), str(r[2]), str(r[3]), bool(r[4]), float(r[5])) for r in rows]


def script(field: str, value: str, folder: str, seen: bool) -> str:
    """The Sieve script of one filter (its parts checked by :func:`add`)."""
    flags = ' :flags "\\\\Seen"' if seen else ""
    return (
        'require ["fileinto", "imap4flags"];\r\n'
        f"if {FIELDS[field][1]} {quoted(value)} {{\r\n  fileinto{flags} {quoted(folder)};\r\n  stop;\r\n}}\r\n"
    )


def _checked(field: str, value: str, folder: str, seen: bool) -> tuple[str, str, str]:
    """(value, folder, script) of a filter as the form gave it; InvalidInput (one line for the form) when it cannot
    be one."""
    if field not in FIELDS:
        raise InvalidInput("choose the field the filter looks at")
    value = " ".join(value.split())
    if not value:
        raise InvalidInput("write what the field must contain")
    if len(value) > MAX_VALUE:
        raise InvalidInput(f"what the field must contain is longer than {MAX_VALUE} characters")
    folder = folder.strip().strip("/")
    if not folder:
        raise InvalidInput("write the folder the mail goes to")
    folder = stored_name(folder)
    rules.check_folder(folder)
    text = script(field, value, folder, seen)
    compile_script(text)  # never store a script delivery cannot run
    return value, folder, text


def add(conn: sqlite3.Connection, account_id: int, field: str, value: str, folder: str, seen: bool) -> Filter:
    """Check and store a new filter, last in order; InvalidInput (one line for the form) when it cannot be."""
    value, folder, text = _checked(field, value, folder, seen)
    count = conn.execute("SELECT count(*) FROM page_filters WHERE account_id = ?", (account_id,)).fetchone()[0]
    if count >= MAX_FILTERS:
        raise InvalidInput(f"an account has at most {MAX_FILTERS} filters")
    now = time.time()
    row = conn.execute(
        """INSERT INTO page_filters (account_id, field, value, folder, seen, script, created)
           VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id""",
        (account_id, field, value, folder, int(seen), text, now),
    ).fetchone()
    return Filter(int(row[0]), field, value, folder, seen, now)


def get(conn: sqlite3.Connection, account_id: int, filter_id: int) -> Filter | None:
    return next((f for f in listed(conn, account_id) if f.id == filter_id), None)


def update(
    conn: sqlite3.Connection, account_id: int, filter_id: int, field: str, value: str, folder: str, seen: bool
) -> None:
    """Change a filter in place: it keeps its place in the order."""
    value, folder, text = _checked(field, value, folder, seen)
    changed = conn.execute(
        "UPDATE page_filters SET field = ?, value = ?, folder = ?, seen = ?, script = ? "
        "WHERE account_id = ? AND id = ?",
        (field, value, folder, int(seen), text, account_id, filter_id),
    ).rowcount
    if not changed:
        raise NotFound("that filter is gone")


def move_up(conn: sqlite3.Connection, account_id: int, filter_id: int) -> None:
    """Run a filter before the one above it. The order is the rows' ids (the program reads them so), so the two
    filters trade what they hold, not their ids."""
    ids = [f.id for f in listed(conn, account_id)]
    if filter_id not in ids:
        raise NotFound("that filter is gone")
    at = ids.index(filter_id)
    if at == 0:
        raise InvalidInput("that filter runs first already")
    above = ids[at - 1]
    columns = "field, value, folder, seen, script, created"
    rows = {
        int(r[0]): tuple(r[1:])
        for r in conn.execute(f"SELECT id, {columns} FROM page_filters WHERE id IN (?, ?)", (filter_id, above))
    }
    assignments = ", ".join(f"{name.strip()} = ?" for name in columns.split(","))
    for target, source in ((filter_id, above), (above, filter_id)):
        conn.execute(f"UPDATE page_filters SET {assignments} WHERE id = ?", (*rows[source], target))


def remove(conn: sqlite3.Connection, account_id: int, filter_id: int) -> None:
    if not conn.execute("DELETE FROM page_filters WHERE account_id = ? AND id = ?", (account_id, filter_id)).rowcount:
        raise NotFound("that filter is gone already")
