"""Read-side queries of the CRM: contact lists and cards for the CLI, and what the IMAP virtual folders need.

Invariants: read only, any connection; every query is driven by an index on the account or contact, so a
``show`` costs the same with 10,000 contacts and 100,000 messages as with ten. Message lists come in a stable
order: ``crm_messages.id`` ascending (it only ever grows), then the copy's ``messages.id``.

For the IMAP virtual folders (``Contacts/<Name>``, ``Companies/<Name>``): :func:`contact_messages` and
:func:`company_messages` give the live copies (mailbox, uid, flags …) of every message filed against a contact
or company, in that stable order, with ``crm_messages.id`` usable as the virtual UID (it never repeats) and the
contact's ``uidvalidity`` as the folder's (it changes when a merge adds older messages).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from . import companies, threads

_SEP = "\x1f"
# The address book's members, as the IMAP Contacts/ folders and migration 024's triggers count them.
IN_BOOK = "c.confirmed = 1 AND c.kind != 'bulk'"

_CONTACT_SELECT = f"""
    SELECT c.id, c.name, c.kind, c.confirmed, c.notes, c.first_contact, c.last_contact, c.count_in, c.count_out,
           c.uidvalidity, c.card_rev, coalesce(c.card_changed, c.created) AS card_changed,
           coalesce(p.name, '') AS company, coalesce(p.domain, '') AS company_domain,
           (SELECT group_concat(address, '{_SEP}') FROM
               (SELECT address FROM crm_addresses a WHERE a.contact_id = c.id ORDER BY address)) AS addresses,
           (SELECT group_concat(tag, '{_SEP}') FROM
               (SELECT tag FROM crm_tags t WHERE t.contact_id = c.id ORDER BY tag)) AS tags
    FROM crm_contacts c LEFT JOIN crm_companies p ON p.id = c.company_id
"""


def _contact(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data["addresses"] = data["addresses"].split(_SEP) if data["addresses"] else []
    data["tags"] = data["tags"].split(_SEP) if data["tags"] else []
    data["confirmed"] = bool(data["confirmed"])
    return data


def list_contacts(
    conn: sqlite3.Connection,
    account_id: int,
    *,
    tag: str | None = None,
    company: str | None = None,
    kind: str | None = None,
    book: bool = False,
) -> list[dict[str, Any]]:
    """Contacts of an account, most recent contact first; filtered by tag, company (name or domain), kind, and
    ``book``: only the members of the CardDAV address book (as of the IMAP ``Contacts/`` folders)."""
    where: list[str] = ["c.account_id = ?"]
    if book:
        where.append(IN_BOOK)
    params: list[object] = [account_id]
    if tag is not None:
        where.append("EXISTS (SELECT 1 FROM crm_tags t WHERE t.contact_id = c.id AND t.tag = ?)")
        params.append(tag)
    if company is not None:
        ids = companies.named(conn, account_id, company)
        where.append(f"(p.domain = ? OR p.id IN ({', '.join('?' * len(ids))}))")
        params += [companies.domain_key(company), *ids]
    if kind is not None:
        where.append("c.kind = ?")
        params.append(kind)
    # Addresses and tags aggregated once per account (not per contact): one pass over each table.
    rows = conn.execute(
        f"""WITH addr AS (SELECT contact_id, group_concat(address, '{_SEP}') AS addresses
                           FROM (SELECT contact_id, address FROM crm_addresses WHERE account_id = ?
                                 ORDER BY contact_id, address) GROUP BY contact_id),
                 tag AS (SELECT contact_id, group_concat(tag, '{_SEP}') AS tags
                         FROM (SELECT t.contact_id, t.tag FROM crm_tags t JOIN crm_contacts o ON o.id = t.contact_id
                               WHERE o.account_id = ? ORDER BY t.contact_id, t.tag) GROUP BY contact_id)
            SELECT c.id, c.name, c.kind, c.confirmed, c.notes, c.first_contact, c.last_contact, c.count_in,
                   c.count_out, c.uidvalidity, c.card_rev, coalesce(c.card_changed, c.created) AS card_changed,
                   coalesce(p.name, '') AS company,
                   coalesce(p.domain, '') AS company_domain, a.addresses, g.tags
            FROM crm_contacts c LEFT JOIN crm_companies p ON p.id = c.company_id
            LEFT JOIN addr a ON a.contact_id = c.id LEFT JOIN tag g ON g.contact_id = c.id
            WHERE """
        + " AND ".join(where)
        + " ORDER BY c.last_contact DESC, c.id DESC",
        [account_id, account_id, *params],
    )
    return [_contact(r) for r in rows]


def contact(conn: sqlite3.Connection, contact_id: int) -> dict[str, Any]:
    row = conn.execute(_CONTACT_SELECT + " WHERE c.id = ?", (contact_id,)).fetchone()
    return _contact(row)


def last_messages(conn: sqlite3.Connection, contact_id: int, limit: int = 10) -> list[dict[str, Any]]:
    """The contact's latest messages (newest first) with a folder that holds a copy ('' when none is left)."""
    rows = conn.execute(
        """SELECT m.id, m.direction, m.time, m.sender, m.subject, m.thread_id, l.role,
                  coalesce((SELECT b.name FROM messages x JOIN mailboxes b ON b.id = x.mailbox_id
                            WHERE x.blob_id = m.blob_id AND b.account_id = m.account_id
                            ORDER BY x.id LIMIT 1), '') AS folder
           FROM crm_message_contacts l JOIN crm_messages m ON m.id = l.message_id
           WHERE l.contact_id = ? ORDER BY l.message_id DESC LIMIT ?""",
        (contact_id, limit),
    )
    return [dict(r) for r in rows]


def show(conn: sqlite3.Connection, contact_id: int, messages: int = 10, thread_count: int = 20) -> dict[str, Any]:
    """A contact card: the contact, its threads (most recent first) and last messages."""
    data = contact(conn, contact_id)
    data["threads"] = threads.threads_of_contact(conn, contact_id, thread_count)
    data["messages"] = last_messages(conn, contact_id, messages)
    return data


def unassigned(conn: sqlite3.Connection, account_id: int, keyword: str) -> list[dict[str, Any]]:
    """Copies still marked ``keyword`` whose sender is not (yet) a confirmed contact, newest first."""
    rows = conn.execute(
        """SELECT m.id AS message_id, b.name AS folder, m.uid, m.internaldate, c.sender, c.subject,
                  coalesce(p.name, '') AS name
           FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id
           JOIN crm_messages c ON c.account_id = b.account_id AND c.blob_id = m.blob_id
           LEFT JOIN crm_addresses a ON a.account_id = c.account_id AND a.address = c.sender
           LEFT JOIN crm_contacts p ON p.id = a.contact_id
           WHERE b.account_id = ? AND (' ' || lower(m.keywords) || ' ') LIKE ?
             AND coalesce(p.confirmed, 0) = 0
           ORDER BY m.internaldate DESC, m.id DESC""",
        (account_id, f"% {keyword.lower()} %"),
    )
    return [dict(r) for r in rows]


_COPIES = """
    SELECT m.id AS crm_id, x.id AS message_id, x.mailbox_id, b.name AS mailbox, x.uid, x.flags, x.keywords,
           x.internaldate, x.size, x.blob_id
    FROM crm_messages m
    JOIN messages x ON x.blob_id = m.blob_id
    JOIN mailboxes b ON b.id = x.mailbox_id AND b.account_id = m.account_id
"""


def contact_messages(conn: sqlite3.Connection, contact_id: int) -> list[dict[str, Any]]:
    """Every live copy of every message filed against the contact, across folders, in the stable order."""
    rows = conn.execute(
        _COPIES
        + """ WHERE m.id IN (SELECT message_id FROM crm_message_contacts WHERE contact_id = ?)
                      ORDER BY m.id, x.id""",
        (contact_id,),
    )
    return [dict(r) for r in rows]


def company_messages(conn: sqlite3.Connection, company_id: int) -> list[dict[str, Any]]:
    """Every live copy of every message filed against any contact of the company, in the stable order."""
    rows = conn.execute(
        _COPIES
        + """ WHERE m.id IN (SELECT l.message_id FROM crm_message_contacts l
                                     JOIN crm_contacts c ON c.id = l.contact_id WHERE c.company_id = ?)
                      ORDER BY m.id, x.id""",
        (company_id,),
    )
    return [dict(r) for r in rows]
