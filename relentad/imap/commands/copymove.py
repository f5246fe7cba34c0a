"""COPY, MOVE and their UID forms (RFC 9051 §6.4.7-8, RFC 6851 MOVE, RFC 4315 UIDPLUS COPYUID).

Invariants: the copies share the stored blob (refcounted), keep flags and internal date, and get fresh UIDs in
the target; a copy crossing the Junk folder's border gains ``$Junk`` (into Junk) or ``$NotJunk`` (out of it) and
loses the other, so that clients show what the user decided, and teaches the spam filter (spam/training.py); a
missing target answers NO [TRYCREATE], a COPY beyond the disk quota NO [OVERQUOTA]. MOVE is copy + removal in one
transaction; the source UIDs are tombstoned for QRESYNC but not kept in the retention area (the message lives on
in the target).
"""

from __future__ import annotations

import sqlite3

from ...spam import training as spam_training
from ...store import imapview, imapwrite
from .. import access, virtual
from ..errors import no
from ..parser import CopyMove
from ..responses import Atom, ImapValue
from ..sequence import render as render_set
from ..session import Handler, Ok, Result, Session
from ..virtual import VirtualView


async def copy_move(session: Session, command: CopyMove) -> Result:
    """COPY / MOVE / UID COPY / UID MOVE."""
    view = session.selected
    assert view is not None
    move = command.name == "MOVE"
    if move:
        access.require_writable(view, "te", "MOVE out of it")
    found = access.resolve(session, command.mailbox)
    if found is None:
        virtual.refuse_virtual(session, command.mailbox)
    if found is None or found.info.noselect:
        raise no(f"no mailbox {command.mailbox}", "TRYCREATE")
    access.require(found.rights, "i", f"{command.name} into it")
    target, owner = found.info, session.owner_of(found)
    uids = view.resolve(command.sequence_set, uid=command.uid, saved=session.saved)
    if not uids:
        return Ok("nothing to copy" if not move else "nothing to move")
    if isinstance(view, VirtualView) and owner:
        raise no("copy from a CRM view into your own mailboxes only", "CANNOT")
    if isinstance(view, VirtualView):  # each message teaches as a COPY from its real folder would
        pairs, lessons = await virtual.copy_out(session, view, uids, target.id)
        session.publish(target.id, 0)
        for lesson, new_uids in lessons:
            spam_training.after_copy(session.store, session.config, session.account_id, target.id, new_uids, lesson)
        if not pairs:
            return Ok("the messages were expunged meanwhile")
        return Ok("COPY completed", _copyuid(target, pairs))
    own = not owner and not view.shared  # spam training learns from the account's own folders only
    lesson = session.read(lambda c: spam_training.copy_lesson(c, view.mailbox_id, target.id)) if own else None
    relabel = spam_training.relabel(lesson) if own else None
    limit = access.flag_limit(found.rights)  # flags the rights do not let it set are dropped, as APPEND's

    def recheck(conn: sqlite3.Connection) -> None:
        """The rights on both ends again, in the write's transaction (access.recheck)."""
        access.recheck(conn, session.account_id, view.mailbox_id, view.owner_id, "rte" if move else "r")
        access.recheck(conn, session.account_id, target.id, found.owner_id, "i")

    if move:

        def move_job(conn: sqlite3.Connection) -> tuple[list[tuple[int, int]], int]:
            recheck(conn)
            if owner != view.owner_id:  # into another account's mailbox: it counts against that account now
                imapwrite.check_quota(conn, found.owner_id, imapwrite.size_of(conn, view.mailbox_id, uids), len(uids))
            return imapwrite.move_messages(conn, view.mailbox_id, uids, target.id, relabel, limit)

        pairs, modseq = await session.write(move_job)
        session.publish(view.mailbox_id, modseq, view.owner_id)
    else:

        def copy(conn: sqlite3.Connection) -> list[tuple[int, int]]:
            recheck(conn)
            size = imapwrite.size_of(conn, view.mailbox_id, uids)
            imapwrite.check_quota(conn, found.owner_id, size, len(uids))  # a shared mailbox's owner pays
            return imapwrite.copy_messages(conn, view.mailbox_id, uids, target.id, relabel, limit)

        pairs = await session.write(copy)
    session.publish(target.id, 0, owner)
    if own:
        spam_training.after_copy(
            session.store, session.config, session.account_id, target.id, [p[1] for p in pairs], lesson
        )
    if not pairs:
        return Ok("the messages were expunged meanwhile")
    code = _copyuid(target, pairs)
    if not move:
        return Ok("COPY completed", code)
    session.untagged_status("OK", "moved", code)
    session.announce_expunged([source for source, _ in pairs])
    return Ok("MOVE completed")


def _copyuid(target: imapview.MailboxInfo, pairs: list[tuple[int, int]]) -> list[ImapValue]:
    """The COPYUID response code (RFC 4315): target UIDVALIDITY, source UIDs, new UIDs."""
    return [
        Atom("COPYUID"),
        target.uidvalidity,
        Atom(render_set(p[0] for p in pairs)),
        Atom(render_set(p[1] for p in pairs)),
    ]


HANDLERS: dict[str, Handler] = {"COPY": copy_move, "MOVE": copy_move}
