"""Which addresses an account may send as (submission's From, Sender and MAIL FROM check).

An account owns: its own address, its subaddresses (``user+tag@``), every alias routed to it (not a domain's
catch-all: catching mail for a domain is not a licence to impersonate all of it), and what ``[submission]
send_as`` grants it ("account=address" or "account=@domain"). Addresses are compared normalised
(:func:`relentad.addrspec.normalize`); anything that does not parse is owned by nobody.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from . import addrspec
from .errors import InvalidInput


@dataclass(frozen=True)
class SendAs:
    """The ``[submission] send_as`` grants, parsed: account email → addresses or ``@domain`` patterns."""

    grants: dict[str, frozenset[str]]

    @classmethod
    def parse(cls, entries: list[str]) -> SendAs:
        grants: dict[str, set[str]] = {}
        for entry in entries:
            account, _, target = entry.partition("=")
            try:
                key = addrspec.normalize(account)
                value = (
                    "@" + addrspec.normalize_domain(target.strip()[1:])
                    if target.strip().startswith("@")
                    else addrspec.normalize(target)
                )
            except InvalidInput:
                continue  # config.check() reports malformed entries; a bad one grants nothing
            grants.setdefault(key, set()).add(value)
        return cls({k: frozenset(v) for k, v in grants.items()})

    def allows(self, account_email: str, address: str) -> bool:
        granted = self.grants.get(account_email, frozenset())
        return address in granted or "@" + address.rpartition("@")[2] in granted


def owns(conn: sqlite3.Connection, account_id: int, account_email: str, address: str, send_as: SendAs) -> bool:
    """True when the account may use ``address`` as From, Sender or MAIL FROM."""
    try:
        normalized = addrspec.normalize(address)
    except InvalidInput:
        return False
    if send_as.allows(account_email, normalized):
        return True
    candidates = [normalized]
    base = addrspec.base_address(normalized)
    if base is not None:
        candidates.append(base)
    for candidate in candidates:
        if candidate == account_email:
            return True
        row = conn.execute(
            "SELECT 1 FROM aliases WHERE address = ? AND account_id = ?", (candidate, account_id)
        ).fetchone()
        if row is not None:
            return True
    return False
