"""Mailboxes (IMAP folders) of an account: creation, lookup and UID/MODSEQ allocation.

Invariants (RFC 3501 §2.3.1.1, RFC 7162): within a mailbox UIDs strictly ascend and are never reused;
``uidvalidity`` changes only when a mailbox of that name is created anew, and always grows for one account;
every change to a message bumps the mailbox's ``highestmodseq``. Allocation happens inside the caller's write
transaction, so concurrent deliveries never share a UID.
"""

from __future__ import annotations

import sqlite3
import time

from ..errors import LimitReached

INBOX = "INBOX"
JUNK = "Junk"
DELIMITER = "/"
MAX_PER_ACCOUNT = 10_000
"""Mailboxes (levels included) an account may have: a Sieve rule filing into a folder named from the sender's text
(``fileinto "Lists/${1}"``) or a runaway client would otherwise make one per message, and every LIST, STATUS and
IDLE pays for each. Dovecot has no default limit; 10,000 is far past what any mail client shows usefully."""
SENT_NAMES = frozenset({"sent", "sent items", "sent messages", "sent mail"})
DRAFTS_NAMES = frozenset({"drafts", "draft"})

# Every account starts with these, marked with their RFC 6154 special-use attribute.
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    (INBOX, None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    (JUNK, "\\Junk"),
    ("Trash", "\\Trash"),
    ("Archive", "\\Archive"),
)


def own_mail_role(name: str, special_use: str, sent_folder: str = "Sent") -> str:
    """``"sent"``, ``"drafts"`` or ``""``: whether a folder holds the account's own mail, by its special-use
    attribute, the configured Sent folder (``[submission] sent_folder``) or the usual names of its last level (other
    clients' and providers' Sent Items, Sent Mail...). Import files such mail as outgoing; spam training skips it."""
    last = name.rsplit(DELIMITER, 1)[-1].strip().lower()
    if special_use == "\\Sent" or (sent_folder and name == sent_folder) or last in SENT_NAMES:
        return "sent"
    if special_use == "\\Drafts" or last in DRAFTS_NAMES:
        return "drafts"
    return ""


def _next_uidvalidity(conn: sqlite3.Connection, account_id: int) -> int:
    row = conn.execute(
        """SELECT max(coalesce((SELECT max(uidvalidity) FROM mailboxes WHERE account_id = ?), 0), last_uidvalidity)
           FROM accounts WHERE id = ?""",
        (account_id, account_id),
    ).fetchone()
    previous = row[0] if row is not None and row[0] is not None else 0
    value = max(int(time.time()), previous + 1)
    conn.execute("UPDATE accounts SET last_uidvalidity = ? WHERE id = ?", (value, account_id))
    return value


def create(conn: sqlite3.Connection, account_id: int, name: str, special_use: str | None = None) -> int:
    """Create a mailbox and return its id (the caller checks the name is free). It is subscribed to, as every new
    mailbox is: clients that show only subscribed folders show it at once. :data:`MAX_PER_ACCOUNT` is checked here,
    the one place every creation (IMAP CREATE and RENAME, rules' folders, import) goes through."""
    check_room(conn, account_id, 1)
    cursor = conn.execute(
        """INSERT INTO mailboxes (account_id, name, special_use, uidvalidity, created)
           VALUES (?, ?, ?, ?, ?)""",
        (account_id, name, special_use, _next_uidvalidity(conn, account_id), time.time()),
    )
    conn.execute("INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)", (account_id, name))
    return int(cursor.lastrowid or 0)


def check_room(conn: sqlite3.Connection, account_id: int, adding: int) -> None:
    """Refuse (:class:`LimitReached`) when ``adding`` more mailboxes would pass :data:`MAX_PER_ACCOUNT`; callers that
    make several levels ask for all of them first, so that none is made when the last would not fit."""
    held = conn.execute("SELECT count(*) FROM mailboxes WHERE account_id = ?", (account_id,)).fetchone()[0]
    if held + adding > MAX_PER_ACCOUNT:
        raise LimitReached(f"the account has {held} mailboxes; at most {MAX_PER_ACCOUNT} are allowed")


def revive(conn: sqlite3.Connection, account_id: int, mailbox_id: int, special_use: str | None = None) -> int:
    """A \\Noselect level made a real mailbox again, in place, with a new UIDVALIDITY (not deleted and created anew:
    messages an older release delivered into the level would block the delete; this way they show up)."""
    row = conn.execute(
        "UPDATE mailboxes SET noselect = 0, special_use = ?, uidvalidity = ?, created = ? WHERE id = ? RETURNING name",
        (special_use, _next_uidvalidity(conn, account_id), time.time(), mailbox_id),
    ).fetchone()
    conn.execute("INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)", (account_id, row[0]))
    return mailbox_id


def create_defaults(conn: sqlite3.Connection, account_id: int) -> None:
    for name, special_use in DEFAULT_MAILBOXES:
        create(conn, account_id, name, special_use)


def stored_name(name: str) -> str:
    """The name as stored: INBOX is case-insensitive (RFC 3501 §5.1), also as the first level of its children
    ("inbox/x" is INBOX/x, as IMAP reads it); every other name is exact."""
    head, sep, tail = name.partition(DELIMITER)
    return INBOX + sep + tail if head.upper() == INBOX else name


def find(conn: sqlite3.Connection, account_id: int, name: str) -> int | None:
    """Id of the mailbox ``name`` (INBOX matched case-insensitively) to store a message in, None when it does not
    exist or is a \\Noselect level (which holds no messages: the caller creates it, making it real again)."""
    row = conn.execute(
        "SELECT id FROM mailboxes WHERE account_id = ? AND name = ? AND NOT noselect", (account_id, stored_name(name))
    ).fetchone()
    return None if row is None else int(row[0])


def allocate_uid(conn: sqlite3.Connection, mailbox_id: int) -> tuple[int, int]:
    """Reserve the next UID and MODSEQ of a mailbox: returns (uid, modseq)."""
    row = conn.execute(
        """UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1
           WHERE id = ? RETURNING uidnext - 1, highestmodseq""",
        (mailbox_id,),
    ).fetchone()
    return int(row[0]), int(row[1])


def allocate_uid_in(conn: sqlite3.Connection, account_id: int, name: str) -> tuple[int, int, int] | None:
    """(mailbox id, uid, modseq) reserved in the account's mailbox ``name`` (INBOX matched case-insensitively) in
    one statement — the delivery path's :func:`find` and :func:`allocate_uid` — or None when it does not exist or
    is a \\Noselect level (a message stored there could never be seen)."""
    row = conn.execute(
        """UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1
           WHERE account_id = ? AND name = ? AND NOT noselect RETURNING id, uidnext - 1, highestmodseq""",
        (account_id, stored_name(name)),
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]))


def bump_modseq(conn: sqlite3.Connection, mailbox_id: int) -> int:
    """Allocate the next MODSEQ of a mailbox for a change (flags, expunge) in the caller's transaction."""
    row = conn.execute(
        "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ? RETURNING highestmodseq", (mailbox_id,)
    ).fetchone()
    return int(row[0])


def list_for_account(conn: sqlite3.Connection, account_id: int) -> list[dict[str, object]]:
    rows = conn.execute(
        """SELECT b.name, b.special_use, b.uidvalidity, b.uidnext, b.highestmodseq,
                  (SELECT count(*) FROM messages m WHERE m.mailbox_id = b.id) AS messages
           FROM mailboxes b WHERE b.account_id = ? ORDER BY b.name = 'INBOX' DESC, b.name""",
        (account_id,),
    )
    return [dict(row) for row in rows]
