"""Forwarding an account's user sets on the account page: every message also (or only) to one address elsewhere.

It is a Sieve ``redirect`` (RFC 5228 §4.2, with RFC 3894's ``:copy`` to keep a copy here) kept as a script of its
own (table ``autoforward``), run in the account's program right after the automatic reply, so it goes through
everything a redirect does: SRS, ARC, the account's send limits, never a copy filed into Junk. An address of this
server is refused (an alias routes mail here; the account's own addresses are among them).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from dataclasses import dataclass

from .. import addrspec
from ..errors import InvalidInput
from ..store import accounts
from .sieve import compile_script

NAME = "forwarding (account page)"
"""The script's name in traces."""


@dataclass(frozen=True)
class AutoForward:
    enabled: bool = False
    address: str = ""
    keep: bool = True  # a copy stays in the mailbox too
    updated: float = 0.0


def get(conn: sqlite3.Connection, account_id: int) -> AutoForward:
    row = conn.execute(
        "SELECT enabled, address, keep, updated FROM autoforward WHERE account_id = ?", (account_id,)
    ).fetchone()
    return AutoForward() if row is None else AutoForward(bool(row[0]), str(row[1]), bool(row[2]), float(row[3]))


def checked(conn: sqlite3.Connection, forward: AutoForward) -> AutoForward:
    """``forward`` with its address normalised, or InvalidInput saying why it cannot forward there."""
    written = forward.address.strip()
    if not written:
        if forward.enabled:
            raise InvalidInput("write the address to forward to")
        return dataclasses.replace(forward, address="")
    try:
        address = addrspec.normalize(written)
    except InvalidInput:
        raise InvalidInput(f"{written!r} is not an email address") from None
    if accounts.domain_id(conn, address.rpartition("@")[2]) is not None:  # the account's own addresses too
        raise InvalidInput(f"{address} is at a domain of this server: ask for an alias instead")
    return dataclasses.replace(forward, address=address)


def script(forward: AutoForward) -> str:
    """The Sieve script of ``forward`` (its address checked: an addr-spec has no quote or backslash to escape)."""
    if forward.keep:
        return f'require ["copy"];\r\nredirect :copy "{forward.address}";\r\n'
    return f'redirect "{forward.address}";\r\n'


def save(conn: sqlite3.Connection, account_id: int, forward: AutoForward, now: float | None = None) -> AutoForward:
    """Check and store ``forward`` with its script; returns it as stored."""
    forward = dataclasses.replace(checked(conn, forward), updated=time.time() if now is None else now)
    text = script(forward) if forward.address else ""
    if text:
        compile_script(text)  # never store a script delivery cannot run
    conn.execute(
        """INSERT INTO autoforward (account_id, enabled, address, keep, script, updated) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (account_id) DO UPDATE SET enabled = excluded.enabled, address = excluded.address,
               keep = excluded.keep, script = excluded.script, updated = excluded.updated""",
        (account_id, int(forward.enabled), forward.address, int(forward.keep), text, forward.updated),
    )
    return forward


def describe(forward: AutoForward) -> str:
    if not forward.enabled:
        return "off"
    return f"on: to {forward.address}" + (", a copy kept here" if forward.keep else ", no copy kept here")
