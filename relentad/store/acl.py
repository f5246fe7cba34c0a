"""Shared mailboxes: rights (RFC 4314) an owner grants another account of this server on one of its mailboxes.

The grantee sees the mailbox as ``Shared/<owner address>/<name>`` (the RFC 2342 "other users" namespace). A grant
is keyed by mailbox id, so the owner's RENAME keeps it and DELETE removes it; terminating either account removes
its grants both ways. The owner always holds every right on its own mailboxes; identifiers are addresses of
accounts of this server ("anyone", "authuser" and negative rights are refused: a mailbox is never shared with
people nobody named).

Rights enforced: l (see it in LIST), r (SELECT, EXAMINE, STATUS, FETCH, SEARCH, COPY out), s (\\Seen), w (other
flags), i (APPEND, COPY/MOVE into it), t (\\Deleted, MOVE out with e), e (EXPUNGE, CLOSE's expunge), a (GETACL,
SETACL, DELETEACL for it). k, x and p are stored and shown but allow nothing: only the owner creates, renames and
deletes its mailboxes, and there is no posting address. The obsolete c and d are read as kx and te (§2.1.1).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from dataclasses import dataclass

from .. import addrspec
from ..errors import InvalidInput, NotFound
from . import mailboxes
from .imapview import MailboxInfo

RIGHTS = "lrswipkxtea"
"""Every RFC 4314 right, in the RFC's order (the order rights are shown in)."""
ALL = RIGHTS
WRITE = frozenset("swte")
"""Rights that make a SELECT read-write (RFC 4314 §4: without any of them the mailbox is READ-ONLY)."""
OBSOLETE = {"c": "kx", "d": "te"}
PREFIX = "Shared"
"""The other users' namespace: ``Shared/<owner address>/<mailbox>``."""
MAX_GRANTS = 100
"""Grants one mailbox may carry (a team; not a mailing list)."""
UNSUPPORTED_IDENTIFIERS = frozenset(("anyone", "authuser", "anonymous"))


def parse_rights(text: str) -> str:
    """The rights a string names, canonical (RFC order, no repeats); InvalidInput for a letter RFC 4314 lacks."""
    letters: set[str] = set()
    for char in text:
        expanded = OBSOLETE.get(char, char)
        if any(c not in RIGHTS for c in expanded):
            raise InvalidInput(f"unknown right {char!r} (rights are {RIGHTS})")
        letters.update(expanded)
    return "".join(c for c in RIGHTS if c in letters)


def modified(current: str, spec: str) -> str:
    """SETACL's rights (RFC 4314 §3.1): ``+xyz`` adds, ``-xyz`` removes, anything else replaces."""
    if spec.startswith("+"):
        return parse_rights(current + parse_rights(spec[1:]))
    if spec.startswith("-"):
        removed = set(parse_rights(spec[1:]))
        return "".join(c for c in current if c not in removed)
    return parse_rights(spec)


def shared_name(owner: str, name: str) -> str:
    return f"{PREFIX}{mailboxes.DELIMITER}{owner}{mailboxes.DELIMITER}{name}"


def split_shared(name: str) -> tuple[str, str] | None:
    """(owner address, the owner's mailbox name) for a name in the shared namespace, else None. Its second level
    holds an "@": an own folder named "Shared/Projects" stays an own folder."""
    head, sep, rest = name.partition(mailboxes.DELIMITER)
    if head != PREFIX or not sep:
        return None
    owner, sep, inner = rest.partition(mailboxes.DELIMITER)
    if "@" not in owner:
        return None
    return owner.lower(), inner


def in_namespace(name: str) -> bool:
    """Whether ``name`` lies in the shared namespace (the level of an owner included): not a name to CREATE."""
    head, _, rest = name.partition(mailboxes.DELIMITER)
    return head == PREFIX and "@" in rest.partition(mailboxes.DELIMITER)[0]


@dataclass(frozen=True)
class Shared:
    """A mailbox another account shares with the session's: its info (named in the shared namespace), its owner
    and the grantee's rights."""

    info: MailboxInfo
    owner_id: int
    owner: str
    rights: str


_COLUMNS = "b.id, b.name, b.special_use, b.uidvalidity, b.uidnext, b.highestmodseq, b.noselect, b.first_recent_uid"
_SHARED = f"""SELECT {_COLUMNS}, a.id AS owner_id, a.email AS owner, g.rights
    FROM imap_acl g JOIN mailboxes b ON b.id = g.mailbox_id JOIN accounts a ON a.id = b.account_id
    WHERE g.grantee_id = ? AND a.state = 'active' AND NOT b.noselect"""


def _shared(row: sqlite3.Row) -> Shared:
    info = MailboxInfo.from_row(row)
    info = dataclasses.replace(info, name=shared_name(row["owner"], info.name))
    return Shared(info=info, owner_id=int(row["owner_id"]), owner=row["owner"], rights=row["rights"])


def shared_with(conn: sqlite3.Connection, grantee_id: int) -> list[Shared]:
    """Every mailbox shared with the account (owners active), for LIST."""
    return [_shared(row) for row in conn.execute(_SHARED + " ORDER BY a.email, b.name", (grantee_id,))]


def lookup(conn: sqlite3.Connection, grantee_id: int, name: str) -> Shared | None:
    """The shared mailbox ``name`` (``Shared/owner/mailbox``) when it is shared with the account, else None: a
    name nobody shared with it tells it nothing, whether the mailbox exists or not."""
    parts = split_shared(name)
    if parts is None or not parts[1]:
        return None
    owner, inner = parts
    row = conn.execute(
        _SHARED + " AND a.email = ? AND b.name = ?", (grantee_id, owner, mailboxes.stored_name(inner))
    ).fetchone()
    return None if row is None else _shared(row)


def rights_of(conn: sqlite3.Connection, mailbox_id: int, grantee_id: int) -> str | None:
    """The grantee's current rights on a mailbox (None: no grant, or the owner is no longer active)."""
    row = conn.execute(
        """SELECT g.rights FROM imap_acl g JOIN mailboxes b ON b.id = g.mailbox_id
           JOIN accounts a ON a.id = b.account_id
           WHERE g.mailbox_id = ? AND g.grantee_id = ? AND a.state = 'active' AND NOT b.noselect""",
        (mailbox_id, grantee_id),
    ).fetchone()
    return None if row is None else str(row[0])


def grants(conn: sqlite3.Connection, mailbox_id: int) -> list[tuple[str, str]]:
    """(grantee address, rights) of a mailbox, by address."""
    rows = conn.execute(
        """SELECT a.email, g.rights FROM imap_acl g JOIN accounts a ON a.id = g.grantee_id
           WHERE g.mailbox_id = ? ORDER BY a.email""",
        (mailbox_id,),
    )
    return [(row[0], row[1]) for row in rows]


def shares_of(conn: sqlite3.Connection, owner_id: int) -> list[dict[str, str]]:
    """Every grant on the owner's mailboxes and every grant others made to it (``relentad shares``)."""
    given = conn.execute(
        """SELECT b.name AS mailbox, a.email AS grantee, g.rights FROM imap_acl g
           JOIN mailboxes b ON b.id = g.mailbox_id JOIN accounts a ON a.id = g.grantee_id
           WHERE b.account_id = ? ORDER BY b.name, a.email""",
        (owner_id,),
    )
    out = [{"mailbox": r["mailbox"], "with": r["grantee"], "rights": r["rights"]} for r in given]
    received = conn.execute(
        """SELECT b.name AS mailbox, a.email AS owner, g.rights FROM imap_acl g
           JOIN mailboxes b ON b.id = g.mailbox_id JOIN accounts a ON a.id = b.account_id
           WHERE g.grantee_id = ? ORDER BY a.email, b.name""",
        (owner_id,),
    )
    out += [
        {"mailbox": shared_name(r["owner"], r["mailbox"]), "from": r["owner"], "rights": r["rights"]} for r in received
    ]
    return out


def grantee(conn: sqlite3.Connection, owner_id: int, identifier: str) -> int:
    """The account an ACL identifier names: an active account of this server other than the owner."""
    if identifier.lower() in UNSUPPORTED_IDENTIFIERS or identifier.startswith("-"):
        raise InvalidInput(f"identifier {identifier!r} is not supported: share with an account's address")
    try:
        address = addrspec.normalize(identifier)
    except (InvalidInput, ValueError):
        raise NotFound(f"no such account: {identifier}") from None
    row = conn.execute("SELECT id FROM accounts WHERE email = ? AND state = 'active'", (address,)).fetchone()
    if row is None:
        raise NotFound(f"no such account: {address}")
    if int(row[0]) == owner_id:
        raise InvalidInput("the owner always has every right on its own mailboxes")
    return int(row[0])


def own_mailbox(conn: sqlite3.Connection, owner_id: int, name: str) -> int:
    """Id of the owner's selectable mailbox ``name`` (NotFound otherwise)."""
    mailbox_id = mailboxes.find(conn, owner_id, name)
    if mailbox_id is None:
        raise NotFound(f"no mailbox {name}")
    return mailbox_id


def set_rights(conn: sqlite3.Connection, mailbox_id: int, grantee_id: int, spec: str) -> str:
    """Grant (or with ``+``/``-`` change) rights; none left removes the grant. Returns the rights now held."""
    row = conn.execute(
        "SELECT rights FROM imap_acl WHERE mailbox_id = ? AND grantee_id = ?", (mailbox_id, grantee_id)
    ).fetchone()
    rights = modified("" if row is None else row[0], spec)
    if not rights:
        remove(conn, mailbox_id, grantee_id)
        return ""
    if row is None:
        count = conn.execute("SELECT count(*) FROM imap_acl WHERE mailbox_id = ?", (mailbox_id,)).fetchone()[0]
        if count >= MAX_GRANTS:
            raise InvalidInput(f"a mailbox can be shared with at most {MAX_GRANTS} accounts")
    conn.execute(
        """INSERT INTO imap_acl (mailbox_id, grantee_id, rights, created) VALUES (?, ?, ?, ?)
           ON CONFLICT (mailbox_id, grantee_id) DO UPDATE SET rights = excluded.rights""",
        (mailbox_id, grantee_id, rights, time.time()),
    )
    return rights


def remove(conn: sqlite3.Connection, mailbox_id: int, grantee_id: int) -> bool:
    cursor = conn.execute("DELETE FROM imap_acl WHERE mailbox_id = ? AND grantee_id = ?", (mailbox_id, grantee_id))
    return cursor.rowcount > 0


def forget_mailbox(conn: sqlite3.Connection, mailbox_id: int) -> None:
    """A deleted mailbox (or one turned into a \\Noselect level) is shared with nobody."""
    conn.execute("DELETE FROM imap_acl WHERE mailbox_id = ?", (mailbox_id,))


def forget_account(conn: sqlite3.Connection, account_id: int) -> None:
    """A terminated account shares nothing and is shared nothing."""
    conn.execute("DELETE FROM imap_acl WHERE grantee_id = ?", (account_id,))
    conn.execute(
        "DELETE FROM imap_acl WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = ?)", (account_id,)
    )
