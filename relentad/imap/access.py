"""Which mailbox a name means for a session, and what the session may do there (RFC 4314 rights).

Every command that takes a mailbox name resolves it here (:func:`resolve`): an own mailbox carries every right, a
name in the shared namespace (``Shared/<owner>/<mailbox>``) resolves only when the owner shared that mailbox with
the session's account, and then carries the granted rights. Commands on the selected mailbox check the view's
rights (:func:`require`), which the session re-reads before each command on a shared view
(:meth:`relentad.imap.session.Session.revoked`), so a changed or removed grant applies at once. Every write job on
a shared mailbox checks the rights again in its own transaction (:func:`recheck`): a grant withdrawn after the
command's first check and before its write (``relentad unshare`` in another process, the owner's termination)
stops the write, so nothing lands in a mailbox after its sharing ended.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..store import acl, imapview
from ..store.imapview import MailboxInfo
from ..store.messages import ANSWERED, DELETED, DRAFT, FLAGGED, SEEN
from . import virtual
from .errors import ImapError, no
from .view import Selected

if TYPE_CHECKING:
    from .session import Session


@dataclass(frozen=True)
class Target:
    """A resolved mailbox: its info (named as the session calls it), owner account (id and address) and the
    session's rights."""

    info: MailboxInfo
    owner_id: int
    rights: str
    owner: str


def resolve(session: Session, name: str) -> Target | None:
    """The mailbox ``name`` names for this session, None when there is none it may know of."""
    if acl.split_shared(name) is not None:
        shared = session.read(lambda c: acl.lookup(c, session.account_id, name))
        return None if shared is None else Target(shared.info, shared.owner_id, shared.rights, shared.owner)
    info = session.read(lambda c: imapview.mailbox(c, session.account_id, name))
    return None if info is None else Target(info, session.account_id, acl.ALL, session.email)


def missing(rights: str, needed: str) -> str:
    return "".join(c for c in needed if c not in rights)


def denied(what: str, lacking: str) -> ImapError:
    return no(f"{what} needs the right(s) {lacking} on this shared mailbox", "NOPERM")


def require(rights: str, needed: str, what: str) -> None:
    """NO [NOPERM] (RFC 5530) unless ``rights`` hold every right in ``needed``."""
    lacking = missing(rights, needed)
    if lacking:
        raise denied(what, lacking)


def require_writable(view: Selected, needed: str, what: str) -> None:
    """The selected mailbox may be changed by ``what`` (EXPUNGE, MOVE out, REPLACE, STORE): not a CRM view
    (NO [CANNOT]), not EXAMINEd (NO [READ-ONLY]), and on a shared mailbox the rights ``needed`` held (NO [NOPERM])."""
    if isinstance(view, virtual.VirtualView):
        raise virtual.cannot(view.info.name)
    if view.readonly:
        raise no("the mailbox is read-only (EXAMINE)", "READ-ONLY")
    require(view.rights, needed, what)


def holds(conn: sqlite3.Connection, account_id: int, mailbox_id: int, owner_id: int, needed: str) -> bool:
    """In a write job: whether the account still holds ``needed`` on the mailbox (always, on its own; ``owner_id``
    0 means the session's own, as :class:`relentad.imap.view.Selected` keeps it)."""
    if owner_id in (0, account_id):
        return True
    return not missing(acl.rights_of(conn, mailbox_id, account_id) or "", needed)


def recheck(conn: sqlite3.Connection, account_id: int, mailbox_id: int, owner_id: int, needed: str) -> None:
    """In a write job, before it writes: NO [NOPERM] when the grant was withdrawn or narrowed since the command
    checked it (the job runs in the transaction that writes, so the check and the write see the same grants)."""
    if not holds(conn, account_id, mailbox_id, owner_id, needed):
        raise no("access to the shared mailbox was withdrawn meanwhile", "NOPERM")


def flag_right(flag: str) -> str:
    """The right a flag change needs (RFC 4314 §4): s for \\Seen, t for \\Deleted, w for every other flag."""
    lowered = flag.lower()
    if lowered == "\\seen":
        return "s"
    if lowered == "\\deleted":
        return "t"
    return "w"


def allowed_flags(rights: str, flags: tuple[str, ...] | list[str]) -> list[str]:
    """The flags of an APPEND (or PERMANENTFLAGS) the rights allow setting; the others are dropped silently
    (RFC 4314 §4, APPEND)."""
    return [flag for flag in flags if flag_right(flag) in rights]


def flag_limit(rights: str) -> Callable[[int, str], tuple[int, str]] | None:
    """What of a copied message's flags the rights let COPY/MOVE set in the target (None: all of them), as
    APPEND's are filtered by :func:`allowed_flags`."""
    if all(right in rights for right in "swt"):
        return None
    mask = (SEEN if "s" in rights else 0) | (DELETED if "t" in rights else 0)
    mask |= (ANSWERED | FLAGGED | DRAFT) if "w" in rights else 0
    keep_keywords = "w" in rights
    return lambda bits, keywords: (bits & mask, keywords if keep_keywords else "")


def refuse_namespace(name: str) -> None:
    """Mailboxes in the shared namespace are created, renamed and deleted by their owners only."""
    if acl.in_namespace(name):
        raise no(f"{name} is in the shared namespace: only its owner manages it", "NOPERM")
