"""Per-account sender lists: senders whose mail always goes to Junk (block) or never does on its score (allow).

The answer to "always put mail from X in Junk" and "this newsletter is not spam, stop filing it", which a
statistical filter only learns after several corrections. Patterns are a full address (``news@shop.example``)
or a domain (``@shop.example``, which covers its subdomains too). The most specific pattern wins: an address
over its domain, a subdomain over its parent.

Invariants: patterns are stored normalised (lower case, the domain as an A-label), so matching is exact string
comparison; ``allow`` only applies to a sender that DMARC did not fail (the caller passes that), as with the
contact allow-listing, so a forged From gains nothing; ``block`` applies whatever the authentication said.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Literal

from .. import addrspec
from ..errors import InvalidInput

Action = Literal["allow", "block"]
ACTIONS: tuple[Action, ...] = ("allow", "block")


@dataclass(frozen=True, slots=True)
class Entry:
    pattern: str
    action: Action
    created: float


def normalize_pattern(text: str) -> str:
    """``News@Shop.Example`` → ``news@shop.example``; ``@Shop.Example`` or ``shop.example`` → ``@shop.example``."""
    value = text.strip()
    if value.startswith("@") or "@" not in value:
        return "@" + addrspec.normalize_domain(value.removeprefix("@"))
    try:
        return addrspec.normalize(value)
    except InvalidInput:
        raise InvalidInput(f"not an address or @domain: {text!r}") from None


def put(conn: sqlite3.Connection, account_id: int, pattern: str, action: Action) -> None:
    """List ``pattern`` (normalised) with ``action`` for the account, replacing an earlier entry for it."""
    conn.execute(
        """INSERT INTO spam_senders (account_id, pattern, action, created) VALUES (?, ?, ?, ?)
           ON CONFLICT (account_id, pattern) DO UPDATE SET action = excluded.action, created = excluded.created""",
        (account_id, pattern, action, time.time()),
    )


def remove(conn: sqlite3.Connection, account_id: int, pattern: str) -> bool:
    """Take ``pattern`` (normalised) off the account's lists; False when it was not listed."""
    return (
        conn.execute("DELETE FROM spam_senders WHERE account_id = ? AND pattern = ?", (account_id, pattern)).rowcount
        > 0
    )


def entries(conn: sqlite3.Connection, account_id: int) -> list[Entry]:
    rows = conn.execute(
        "SELECT pattern, action, created FROM spam_senders WHERE account_id = ? ORDER BY action, pattern", (account_id,)
    )
    return [
        Entry(str(pattern), "block" if action == "block" else "allow", float(created))
        for pattern, action, created in rows
    ]


def decision(conn: sqlite3.Connection, account_id: int, sender: str) -> Action | None:
    """The action of the most specific pattern matching ``sender`` (a normalised address), or None."""
    local, _, domain = sender.rpartition("@")
    if not local or not domain:
        return None
    try:
        domain = addrspec.normalize_domain(domain)  # patterns hold A-labels; a From may carry U-labels
    except InvalidInput:
        return None
    labels = domain.split(".")
    candidates = [f"{local}@{domain}"] + ["@" + ".".join(labels[i:]) for i in range(len(labels))]
    marks = ",".join("?" * len(candidates))
    found = dict(
        conn.execute(
            f"SELECT pattern, action FROM spam_senders WHERE account_id = ? AND pattern IN ({marks})",
            (account_id, *candidates),
        ).fetchall()
    )
    for candidate in candidates:
        action = found.get(candidate)
        if action in ACTIONS:
            return "block" if action == "block" else "allow"
    return None
