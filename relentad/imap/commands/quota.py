"""QUOTA (RFC 9208): one quota root "" per account, resources STORAGE (KiB, §5.1) and MESSAGE (§5.2), fed by the
store's usage (:mod:`relentad.quota`).

Invariants: a resource is listed only when the account has a limit for it, and an account with neither a disk
quota nor a message limit (0 = unlimited) has no quota root; limits are the administrator's (``relentad quota
set``), so SETQUOTA is refused with NO [NOPERM].
"""

from __future__ import annotations

from ...store import imapview
from .. import access
from ..errors import no
from ..parser import GetQuota, MailboxCommand, SetQuota
from ..responses import Atom, ImapValue, mailbox_value
from ..session import Handler, Result, Session

ROOT = ""


def kib(octets: int) -> int:
    """RFC 9208 §5.1 counts STORAGE in units of 1024 octets. Usage and limit both round up, so that a client never
    sees an account within its quota as over it (9157 of 10000 octets is 9 of 10 KiB, not 9 of 9)."""
    return (octets + 1023) // 1024


def _quota(session: Session) -> list[ImapValue] | None:
    disk, most = session.read(lambda c: imapview.quota_limits(c, session.account_id))
    if not disk and not most:
        return None
    used, held = session.read(lambda c: imapview.usage(c, session.account_id))
    resources: list[ImapValue] = []
    if disk:
        resources += [Atom("STORAGE"), kib(used), kib(disk)]
    if most:
        resources += [Atom("MESSAGE"), held, most]
    return resources


async def getquotaroot(session: Session, command: MailboxCommand) -> Result:
    """GETQUOTAROOT (RFC 9208 §4.3)."""
    target = access.resolve(session, command.mailbox)
    if target is None:
        raise no(f"no mailbox {command.mailbox}", "NONEXISTENT")
    name = mailbox_value(command.mailbox, utf8=session.utf8)
    resources = _quota(session) if target.owner_id == session.account_id else None
    if resources is None:  # a shared mailbox counts against its owner, whose quota is not this account's to see
        session.untagged(Atom("QUOTAROOT"), name)
        return None
    session.untagged(Atom("QUOTAROOT"), name, ROOT)
    session.untagged(Atom("QUOTA"), ROOT, resources)
    return None


async def getquota(session: Session, command: GetQuota) -> Result:
    """GETQUOTA (RFC 9208 §4.2)."""
    resources = _quota(session) if command.root == ROOT else None
    if resources is None:
        raise no(f"no quota root {command.root!r}", "NONEXISTENT")
    session.untagged(Atom("QUOTA"), ROOT, resources)
    return None


async def setquota(session: Session, command: SetQuota) -> Result:
    """SETQUOTA (RFC 9208 §4.4): quotas are set by the administrator."""
    raise no("quotas are set by the administrator (relentad quota set)", "NOPERM")


HANDLERS: dict[str, Handler] = {"GETQUOTAROOT": getquotaroot, "GETQUOTA": getquota, "SETQUOTA": setquota}
