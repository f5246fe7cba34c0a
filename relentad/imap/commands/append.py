"""APPEND, with MULTIAPPEND (RFC 9051 §6.3.12, RFC 3502), APPENDLIMIT (RFC 7889), UIDPLUS APPENDUID (RFC 4315).

Invariants: each message is parsed once here (in a worker thread) and its structure stored with the blob, like
delivery does; several messages are appended all-or-nothing in one write job; a missing mailbox answers
NO [TRYCREATE], a message over ``limits.message_size`` NO [TOOBIG], an exceeded disk quota NO [OVERQUOTA].
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import datetime

from ...message import parse
from ...store import imapwrite
from .. import access, virtual
from ..errors import no
from ..parser import Append
from ..responses import Atom
from ..sequence import render as render_set
from ..session import Handler, Ok, Result, Session

INLINE_PARSE = 32_768
"""Messages up to this many octets in all are parsed on the loop thread (a thread round trip costs more)."""


def zone_of(moment: datetime | None) -> int:
    """The date-time's zone in minutes east of UTC, kept for FETCH INTERNALDATE and SEARCH ON (no date: UTC)."""
    offset = moment.utcoffset() if moment is not None else None
    return 0 if offset is None else int(offset.total_seconds()) // 60


async def append(session: Session, command: Append) -> Result:
    """APPEND mailbox [flags] [date] literal... ."""
    target = access.resolve(session, command.mailbox)
    if target is None:
        virtual.refuse_virtual(session, command.mailbox)
    if target is None or target.info.noselect:
        raise no(f"no mailbox {command.mailbox}", "TRYCREATE")
    access.require(target.rights, "i", "APPEND")
    info, owner = target.info, target.owner_id  # the message counts against the owner's quota
    for message in command.messages:
        if len(message.data) > session.appendlimit:
            raise no(f"message larger than {session.appendlimit} octets", "TOOBIG")
        if not message.data:
            raise no("empty message", "CANNOT")
    if sum(len(m.data) for m in command.messages) <= INLINE_PARSE:
        parsed = [parse(m.data) for m in command.messages]
    else:
        parsed = await asyncio.to_thread(lambda: [parse(m.data) for m in command.messages])

    def job(conn: sqlite3.Connection) -> list[int]:
        access.recheck(conn, session.account_id, info.id, owner, "i")
        now = time.time()
        return [
            imapwrite.append_message(
                conn,
                owner,
                info.id,
                message.data,
                structure=structure.to_json(),
                size=structure.size,
                names=tuple(access.allowed_flags(target.rights, message.flags)),
                internaldate=message.date.timestamp() if message.date else now,
                zone=zone_of(message.date),
            )
            for message, structure in zip(command.messages, parsed, strict=True)
        ]

    uids = await session.write(job)
    session.publish(info.id, 0, session.owner_of(target))
    return Ok("APPEND completed", [Atom("APPENDUID"), info.uidvalidity, Atom(render_set(uids))])


HANDLERS: dict[str, Handler] = {"APPEND": append}
