"""ACL commands (RFC 4314 §3): MYRIGHTS, GETACL, SETACL, DELETEACL, LISTRIGHTS.

Invariants: identifiers are addresses of accounts of this server (relentad.store.acl refuses "anyone" and
negative rights); only the owner, or a grantee holding ``a`` on the mailbox, sees or changes its ACL; the owner's
own rights are always every right and cannot be changed; a name nobody shared with the session is NONEXISTENT
whether it exists or not. A changed grant applies to open sessions at their next command
(:meth:`relentad.imap.session.Session.revoked`).
"""

from __future__ import annotations

import sqlite3

from ...errors import InvalidInput
from ...store import acl
from .. import access
from ..access import Target
from ..errors import bad, no
from ..parser import Acl, MailboxCommand
from ..responses import Atom, ImapValue, mailbox_value
from ..session import Handler, Result, Session


def _target(session: Session, name: str) -> Target:
    target = access.resolve(session, name)
    if target is None or target.info.noselect:
        raise no(f"no mailbox {name}", "NONEXISTENT")
    return target


def _identifier(identifier: str) -> ImapValue:
    """An identifier as an astring: a bare atom when it can be one (as clients' ACL parsers expect), else a
    string (the same rule as for mailbox names in UTF-8)."""
    return mailbox_value(identifier, utf8=True)


def _rights(rights: str) -> ImapValue:
    """Rights as an atom (``lrs``); none as ``""``."""
    return Atom(rights) if rights else ""


def _is_owner(target: Target, identifier: str) -> bool:
    return identifier.lower() == target.owner.lower()


async def myrights(session: Session, command: MailboxCommand) -> Result:
    """MYRIGHTS (RFC 4314 §3.5)."""
    target = _target(session, command.mailbox)
    session.untagged(Atom("MYRIGHTS"), mailbox_value(target.info.name, utf8=session.utf8), _rights(target.rights))
    return None


async def getacl(session: Session, command: MailboxCommand) -> Result:
    """GETACL (RFC 4314 §3.3): the owner with every right, then each grantee."""
    target = _target(session, command.mailbox)
    access.require(target.rights, "a", "GETACL")
    values: list[ImapValue] = [_identifier(target.owner), _rights(acl.ALL)]
    for grantee, rights in session.read(lambda c: acl.grants(c, target.info.id)):
        values += [_identifier(grantee), _rights(rights)]
    session.untagged(Atom("ACL"), mailbox_value(target.info.name, utf8=session.utf8), *values)
    return None


async def setacl(session: Session, command: Acl) -> Result:
    """SETACL / DELETEACL (RFC 4314 §3.1-3.2)."""
    target = _target(session, command.mailbox)
    access.require(target.rights, "a", command.name)
    if _is_owner(target, command.identifier):
        raise no("the owner always has every right on its own mailboxes", "CANNOT")
    spec = command.rights if command.name == "SETACL" else ""
    if command.name == "SETACL":
        try:
            acl.modified("", spec)
        except InvalidInput as exc:
            raise bad(str(exc)) from None  # RFC 4314 §3.1: an unknown right is a BAD

    def job(conn: sqlite3.Connection) -> None:
        access.recheck(conn, session.account_id, target.info.id, target.owner_id, "a")
        grantee = acl.grantee(conn, target.owner_id, command.identifier)
        if command.name == "DELETEACL":
            acl.remove(conn, target.info.id, grantee)
        else:  # rights that end up empty remove the grant
            acl.set_rights(conn, target.info.id, grantee, spec)

    await session.write(job)
    return None


async def listrights(session: Session, command: Acl) -> Result:
    """LISTRIGHTS (RFC 4314 §3.4): nothing is granted always; each right may be granted on its own."""
    target = _target(session, command.mailbox)
    access.require(target.rights, "a", "LISTRIGHTS")
    name = mailbox_value(target.info.name, utf8=session.utf8)
    if _is_owner(target, command.identifier):
        session.untagged(Atom("LISTRIGHTS"), name, _identifier(command.identifier), _rights(acl.ALL))
        return None
    optional = (Atom(right) for right in acl.RIGHTS)
    session.untagged(Atom("LISTRIGHTS"), name, _identifier(command.identifier), "", *optional)
    return None


HANDLERS: dict[str, Handler] = {
    "MYRIGHTS": myrights,
    "GETACL": getacl,
    "SETACL": setacl,
    "DELETEACL": setacl,
    "LISTRIGHTS": listrights,
}
