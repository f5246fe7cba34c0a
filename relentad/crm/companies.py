"""Companies: grouped from the address domains of an account's contacts.

A company is an organisational domain (RFC 7489 §3.2: the public suffix plus one label, so ``mail.acme.co.uk``
and ``acme.co.uk`` are one company) per account, named after its first label until someone renames it.

Invariants: freemail and consumer-ISP domains (the curated list ``relentad/data/freemail.txt``, subdomains
included) never make a company; functions take a connection and run inside the caller's transaction.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Iterable
from importlib import resources

import idna

from ..addrspec import a_label
from ..errors import InvalidInput, NotFound
from .participants import check_name


@functools.cache
def freemail_domains() -> frozenset[str]:
    """The shipped list of freemail domains."""
    text = resources.files("relentad").joinpath("data/freemail.txt").read_text(encoding="utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    )


def is_freemail(domain: str) -> bool:
    domain = domain.lower().rstrip(".")
    listed = freemail_domains()
    labels = domain.split(".")
    return any(".".join(labels[i:]) in listed for i in range(len(labels) - 1))


def company_domain(address: str) -> str | None:
    """The organisational domain an address belongs to, or None (freemail, no domain, a bare host)."""
    return _company_of_domain(address.rpartition("@")[2].lower().rstrip("."))


@functools.lru_cache(maxsize=8192)
def _company_of_domain(domain: str) -> str | None:
    if "." not in domain or domain.startswith("[") or is_freemail(domain):
        return None
    # imported on first use: mailauth loads dkimpy and the rest of mail authentication (~50 ms), which the CLI's
    # `contacts list` and `companies list` (views and this module, no domain looked up) do not need
    from ..mailauth import organizational_domain

    return organizational_domain(domain)


def display_name(domain: str) -> str:
    """``acme-corp.co.uk`` → ``Acme Corp``: the first label, words capitalised; an IDNA A-label is shown as the
    Unicode it stands for (``xn--bcher-kva.example`` → ``Bücher``)."""
    label = domain.split(".", 1)[0]
    if label.startswith("xn--"):
        try:
            label = idna.ulabel(label)
        except (idna.IDNAError, UnicodeError):
            pass
    return " ".join(word.capitalize() for word in label.replace("_", "-").split("-") if word) or domain


def ensure(conn: sqlite3.Connection, account_id: int, domain: str, now: float | None = None) -> int:
    """Id of the account's company for ``domain`` (an organisational domain), creating it when new."""
    row = conn.execute(
        "SELECT id FROM crm_companies WHERE account_id = ? AND domain = ?", (account_id, domain)
    ).fetchone()
    if row is not None:
        return int(row[0])
    return create(conn, account_id, domain, now)


def create(conn: sqlite3.Connection, account_id: int, domain: str, now: float | None = None) -> int:
    """A new company for ``domain``, which the caller found missing in this transaction; returns its id."""
    cursor = conn.execute(
        "INSERT INTO crm_companies (account_id, domain, name, created) VALUES (?, ?, ?, ?)",
        (account_id, domain, display_name(domain), time.time() if now is None else now),
    )
    return int(cursor.lastrowid or 0)


def domain_key(text: str) -> str:
    """What a company's ``domain`` column would hold for a domain an owner types: ``Mail.Bücher.example`` →
    ``xn--bcher-kva.example`` (A-labels, organisational domain); the text in lower case when it is no domain."""
    domain = text.strip().lower().rstrip(".")
    ascii_domain = a_label(domain) if domain else None
    return (_company_of_domain(ascii_domain) if ascii_domain else None) or domain


def ids_named(rows: Iterable[tuple[int, str]], name: str) -> list[int]:
    """The ids of the (id, name) rows called ``name`` in any case, spaces folded: compared case-folded in Python,
    as SQLite's lower() folds only A-Z ("élise" must find "Élise"). Contacts and companies are found by name so."""
    wanted = " ".join(name.split()).casefold()
    return [int(row_id) for row_id, row_name in rows if str(row_name).casefold() == wanted]


def named(conn: sqlite3.Connection, account_id: int, name: str) -> list[int]:
    """The account's companies called ``name`` (:func:`ids_named`)."""
    return ids_named(conn.execute("SELECT id, name FROM crm_companies WHERE account_id = ?", (account_id,)), name)


def resolve(conn: sqlite3.Connection, account_id: int, ref: str) -> int:
    """A company named by ``#id``, a domain of it (``mail.acme.example``) or its name (any case)."""
    ref = " ".join(ref.split())
    if not ref:
        raise InvalidInput("name a company by domain, #id or name")
    digits = ref.removeprefix("#")
    if ref.startswith("#") and digits.isascii() and digits.isdigit() and len(digits) <= 18:
        row = conn.execute(
            "SELECT id FROM crm_companies WHERE account_id = ? AND id = ?", (account_id, int(digits))
        ).fetchone()
        if row is None:
            raise NotFound(f"no company {ref}")
        return int(row[0])
    row = conn.execute(
        "SELECT id FROM crm_companies WHERE account_id = ? AND domain = ?", (account_id, domain_key(ref))
    ).fetchone()
    if row is not None:
        return int(row[0])
    ids = named(conn, account_id, ref)
    if not ids:
        raise NotFound(f"no company {ref!r}")
    if len(ids) > 1:
        raise InvalidInput(f"several companies are named {ref!r}; name one by domain or #id")
    return ids[0]


def rename(conn: sqlite3.Connection, account_id: int, company_id: int, name: str) -> str:
    """Give the company the owner's name for it; its folder ``Companies/<Name>`` changes name, with a UIDVALIDITY
    above every company's of the account (see :func:`relentad.crm.contacts.rename`)."""
    clean = check_name(name)
    conn.execute(
        """UPDATE crm_companies SET name = ?1,
               uidvalidity = (SELECT max(uidvalidity) FROM crm_companies WHERE account_id = ?2) + 1
           WHERE id = ?3""",
        (clean, account_id, company_id),
    )
    return clean


def list_companies(conn: sqlite3.Connection, account_id: int) -> list[dict[str, object]]:
    """The account's companies by name, with how many contacts each has (and how many are confirmed)."""
    rows = conn.execute(
        """SELECT p.id, p.name, p.domain, count(c.id) AS contacts, coalesce(sum(c.confirmed), 0) AS confirmed
           FROM crm_companies p LEFT JOIN crm_contacts c ON c.company_id = p.id
           WHERE p.account_id = ? GROUP BY p.id ORDER BY lower(p.name), p.id""",
        (account_id,),
    )
    return [dict(r) for r in rows]
