"""EXPUNGE and UID EXPUNGE (RFC 9051 §6.4.3, RFC 4315 §2.1).

Invariant: expunged messages move to the retention area (``expunged``) and are tombstoned for QRESYNC; nothing
is destroyed here (the purge after ``retention.deleted_days`` is the lifecycle's job).
"""

from __future__ import annotations

import sqlite3

from ...store import imapview, imapwrite
from .. import access
from ..parser import Command, Expunge
from ..session import Handler, Result, Session


async def expunge(session: Session, command: Command) -> Result:
    """EXPUNGE / UID EXPUNGE: remove \\Deleted messages (of the UID set), answering EXPUNGE or VANISHED."""
    view = session.selected
    assert view is not None
    access.require_writable(view, "e", "EXPUNGE")
    uids = None
    if isinstance(command, Expunge):
        uids = view.resolve(command.sequence_set, uid=True, saved=session.saved)
        if not uids:
            return None
    if not session.read(lambda c: imapview.has_deleted(c, view.mailbox_id)):
        return None

    def job(conn: sqlite3.Connection) -> tuple[list[int], int]:
        access.recheck(conn, session.account_id, view.mailbox_id, view.owner_id, "e")
        return imapwrite.expunge(conn, view.mailbox_id, uids)

    gone, modseq = await session.write(job)
    if gone:
        session.publish(view.mailbox_id, modseq, view.owner_id)
        session.announce_expunged(gone)
    return None


HANDLERS: dict[str, Handler] = {"EXPUNGE": expunge}
