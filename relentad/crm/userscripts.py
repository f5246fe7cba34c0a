"""Each account's own Sieve scripts, the ones its user manages over ManageSieve (RFC 5804).

The model: an account may store several scripts, of which at most one is active (RFC 5804 §1.2). At delivery the
active one runs after the admin's rules (:mod:`.rules`, ``relentad rules add``) as part of the same program: it
sees the flags they set, does not run when one of them said ``stop``, and the implicit keep covers both. Scripts are
checked by the same :func:`.rules.check` as the admin's (size, nesting, refused actions, ``require``) before they
are stored, so delivery never meets one it cannot run.

Functions take a connection and run in the caller's transaction; the expected refusals raise errors that carry the
RFC 5804 response code the protocol answers with (:class:`ScriptError`).
"""

from __future__ import annotations

import sqlite3
import time
import unicodedata
from typing import Any

from ..errors import RelentadError

MAX_NAME = 128
"""Characters in a script name (RFC 5804 §1.6: servers take at least 128)."""


class ScriptError(RelentadError):
    """A refused script operation; ``code`` is its RFC 5804 §1.3 response code (NONEXISTENT, ACTIVE, …)."""

    def __init__(self, text: str, code: str = "") -> None:
        super().__init__(text)
        self.code = code


def check_name(name: str) -> str:
    """A script name as RFC 5804 §1.6 allows it: 1-128 characters of Net-Unicode (RFC 5198) without control
    characters (C0, DEL, C1) or the line and paragraph separators; kept in NFC so that one name is one script."""
    if not name:
        raise ScriptError("a script name cannot be empty")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in name):
        raise ScriptError("a script name cannot contain control characters")
    name = normal(name)
    if len(name) > MAX_NAME:
        raise ScriptError(f"a script name has at most {MAX_NAME} characters")
    return name


def normal(name: str) -> str:
    """The form a name is stored in (NFC), to look one up."""
    return unicodedata.normalize("NFC", name)


def listing(conn: sqlite3.Connection, account_id: int) -> list[tuple[str, bool]]:
    """(name, active) of every script of the account, by name."""
    rows = conn.execute("SELECT name, active FROM sieve_scripts WHERE account_id = ? ORDER BY name", (account_id,))
    return [(str(name), bool(active)) for name, active in rows]


def rows(conn: sqlite3.Connection, account_id: int) -> list[dict[str, Any]]:
    """Every script with its text, for ``relentad rules list``: the active one first, then by name."""
    found = conn.execute(
        """SELECT name, script, active, created, updated FROM sieve_scripts WHERE account_id = ?
           ORDER BY active DESC, name""",
        (account_id,),
    )
    return [{**dict(r), "active": bool(r["active"])} for r in found]


def get(conn: sqlite3.Connection, account_id: int, name: str) -> str:
    row = conn.execute(
        "SELECT script FROM sieve_scripts WHERE account_id = ? AND name = ?", (account_id, name)
    ).fetchone()
    if row is None:
        raise ScriptError(f"there is no script named {name!r}", "NONEXISTENT")
    return str(row[0])


def _exists(conn: sqlite3.Connection, account_id: int, name: str) -> bool:
    found = conn.execute("SELECT 1 FROM sieve_scripts WHERE account_id = ? AND name = ?", (account_id, name))
    return found.fetchone() is not None


def check_space(
    conn: sqlite3.Connection, account_id: int, name: str, size: int, max_scripts: int, max_size: int
) -> None:
    """HAVESPACE / PUTSCRIPT: would a script of ``size`` octets named ``name`` fit? Replacing one never adds."""
    if size > max_size:
        raise ScriptError(f"a script has at most {max_size} octets", "QUOTA/MAXSIZE")
    if _exists(conn, account_id, name):
        return
    count = conn.execute("SELECT count(*) FROM sieve_scripts WHERE account_id = ?", (account_id,)).fetchone()[0]
    if count >= max_scripts:
        raise ScriptError(f"an account keeps at most {max_scripts} scripts", "QUOTA/MAXSCRIPTS")


def put(conn: sqlite3.Connection, account_id: int, name: str, text: str, max_scripts: int, max_size: int) -> None:
    """Store a script the caller checked (:func:`.rules.check`), replacing one of that name (which stays active
    when it was: RFC 5804 §2.6, the new text runs from the next delivery)."""
    check_space(conn, account_id, name, len(text.encode("utf-8")), max_scripts, max_size)
    now = time.time()
    conn.execute(
        """INSERT INTO sieve_scripts (account_id, name, script, created, updated) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (account_id, name) DO UPDATE SET script = excluded.script, updated = excluded.updated""",
        (account_id, name, text, now, now),
    )


def set_active(conn: sqlite3.Connection, account_id: int, name: str) -> None:
    """Make ``name`` the active script; "" deactivates whichever is (RFC 5804 §2.8)."""
    if name and not _exists(conn, account_id, name):
        raise ScriptError(f"there is no script named {name!r}", "NONEXISTENT")
    conn.execute("UPDATE sieve_scripts SET active = 0 WHERE account_id = ? AND active = 1", (account_id,))
    if name:
        conn.execute("UPDATE sieve_scripts SET active = 1 WHERE account_id = ? AND name = ?", (account_id, name))


def delete(conn: sqlite3.Connection, account_id: int, name: str, *, even_active: bool = False) -> None:
    """DELETESCRIPT: the active script is refused (RFC 5804 §2.10) unless ``even_active`` (the admin's CLI)."""
    row = conn.execute(
        "SELECT active FROM sieve_scripts WHERE account_id = ? AND name = ?", (account_id, name)
    ).fetchone()
    if row is None:
        raise ScriptError(f"there is no script named {name!r}", "NONEXISTENT")
    if row[0] and not even_active:
        raise ScriptError(f"{name!r} is the active script: deactivate it first", "ACTIVE")
    conn.execute("DELETE FROM sieve_scripts WHERE account_id = ? AND name = ?", (account_id, name))


def rename(conn: sqlite3.Connection, account_id: int, old: str, new: str) -> None:
    """RENAMESCRIPT (RFC 5804 §2.11.1): an active script stays active under its new name."""
    if not _exists(conn, account_id, old):
        raise ScriptError(f"there is no script named {old!r}", "NONEXISTENT")
    if _exists(conn, account_id, new):
        raise ScriptError(f"a script named {new!r} exists", "ALREADYEXISTS")
    conn.execute(
        "UPDATE sieve_scripts SET name = ?, updated = ? WHERE account_id = ? AND name = ?",
        (new, time.time(), account_id, old),
    )
