"""REPLACE and UID REPLACE (RFC 8508): a new version of a message (a draft being edited), in one transaction.

What a client sees: ``* OK [APPENDUID v u]`` for the new message, then the old one's EXPUNGE (VANISHED with
QRESYNC), then the tagged OK; EXISTS when the new message lands in the selected mailbox. The new message is
taken as APPEND takes it (APPENDLIMIT, NO [TOOBIG], an empty message NO [CANNOT], NO [TRYCREATE] for a missing
mailbox); the quota is checked with the old message already gone, so a slightly longer draft fits an account at
its limit. The old message goes to the retention area like any expunged one.

Invariants: nothing happens unless everything does — the append and the expunge share one write job (one
savepoint), so a refusal (quota, the old message expunged meanwhile) leaves both mailboxes as they were. A
message number beyond EXISTS is BAD (as for FETCH); a UID not in the mailbox is NO, one another session expunged
NO [EXPUNGEISSUED] (RFC 5530).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

from ...message import parse
from ...store import imapwrite
from .. import access, virtual
from ..errors import bad, no
from ..parser import Replace
from ..responses import Atom
from ..session import Handler, Ok, Result, Session
from .append import INLINE_PARSE, zone_of


async def replace(session: Session, command: Replace) -> Result:
    view = session.selected
    assert view is not None
    access.require_writable(view, "te", "REPLACE (it expunges the message)")
    old = _target(session, command)
    found = access.resolve(session, command.mailbox)
    if found is None:
        virtual.refuse_virtual(session, command.mailbox)
    if found is None or found.info.noselect:
        raise no(f"no mailbox {command.mailbox}", "TRYCREATE")
    access.require(found.rights, "i", "REPLACE into it")
    info = found.info
    message = command.message
    if len(message.data) > session.appendlimit:
        raise no(f"message larger than {session.appendlimit} octets", "TOOBIG")
    if not message.data:
        raise no("empty message", "CANNOT")
    if len(message.data) <= INLINE_PARSE:
        structure = parse(message.data)
    else:
        structure = await asyncio.to_thread(parse, message.data)

    def job(conn: sqlite3.Connection) -> tuple[int, int]:
        access.recheck(conn, session.account_id, view.mailbox_id, view.owner_id, "te")
        access.recheck(conn, session.account_id, info.id, found.owner_id, "i")
        if not conn.execute(
            "SELECT 1 FROM messages WHERE mailbox_id = ? AND uid = ?", (view.mailbox_id, old)
        ).fetchone():
            raise no("the message was expunged meanwhile", "EXPUNGEISSUED")
        modseq = imapwrite.expunge_uids(conn, view.mailbox_id, [old])  # first: its octets are free for the new one
        uid = imapwrite.append_message(
            conn,
            found.owner_id,
            info.id,
            message.data,
            structure=structure.to_json(),
            size=structure.size,
            names=tuple(access.allowed_flags(found.rights, message.flags)),
            internaldate=message.date.timestamp() if message.date else time.time(),
            zone=zone_of(message.date),
        )
        return uid, modseq

    new_uid, modseq = await session.write(job)
    session.publish(view.mailbox_id, modseq, view.owner_id)
    if info.id != view.mailbox_id:
        session.publish(info.id, 0, session.owner_of(found))
    session.untagged_status("OK", "replacement message ready", [Atom("APPENDUID"), info.uidvalidity, new_uid])
    session.announce_expunged([old])
    return Ok("REPLACE completed")


def _target(session: Session, command: Replace) -> int:
    """The UID of the message to replace: a message number beyond EXISTS is BAD, a UID not there NO."""
    view = session.selected
    assert view is not None
    if command.target is None:  # "*": the last message
        uid = next((uid for uid in reversed(view.uids) if uid not in view.pending_gone), None)
        if uid is None:
            raise no("the mailbox is empty")
        return uid
    if not command.uid:
        if command.target > len(view.uids):
            raise bad(f"invalid message sequence number {command.target}")
        uid = view.uids[command.target - 1]
    else:
        uid = command.target
        if view.seq(uid) is None:
            raise no(f"no message with UID {uid}")
    if uid in view.pending_gone:
        raise no("the message was expunged meanwhile", "EXPUNGEISSUED")
    return uid


HANDLERS: dict[str, Handler] = {"REPLACE": replace}
