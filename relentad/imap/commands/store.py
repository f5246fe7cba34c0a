"""STORE and UID STORE (RFC 9051 §6.4.6; RFC 7162 §3.1.3 UNCHANGEDSINCE / MODIFIED).

Invariants: one write job per command; messages whose flags really change get one new modseq; the session
reports the resulting flags itself (and remembers them in ``view.own`` so the change is not echoed again),
other sessions hear of it through the bus. .SILENT suppresses the FETCH replies for this session only.
"""

from __future__ import annotations

import sqlite3

from ...spam import training as spam_training
from ...store import flags as flagmod
from ...store import imapwrite
from .. import access, virtual
from ..errors import bad
from ..parser import Store
from ..responses import Atom, ImapValue, flag_list
from ..sequence import render as render_set
from ..session import Handler, Ok, Result, Session
from ..virtual import VirtualView


async def store(session: Session, command: Store) -> Result:
    """STORE / UID STORE."""
    view = session.selected
    assert view is not None
    if isinstance(view, VirtualView):
        return await _store_virtual(session, view, command)
    needed = {access.flag_right(flag) for flag in command.flags}
    if command.action == "replace":  # FLAGS replaces every flag: each kind it may clear needs its right too
        needed |= {"s", "t", "w"}
    rights = "".join(sorted(needed))
    access.require_writable(view, rights, "STORE of these flags")
    if command.unchanged_since is not None:
        session.enabled.add("CONDSTORE")
    uids = view.resolve(command.sequence_set, uid=command.uid, saved=session.saved)

    def job(conn: sqlite3.Connection) -> imapwrite.StoreResult:
        access.recheck(conn, session.account_id, view.mailbox_id, view.owner_id, rights)
        return imapwrite.store_flags(
            conn, view.mailbox_id, uids, command.action, command.flags, command.unchanged_since
        )

    result = await session.write(job)
    for uid, modseq, _, keywords in result.changed:
        view.own[uid] = modseq
        if view.new_keywords(keywords):
            session.announce_flags(view)
    if result.changed:
        session.publish(view.mailbox_id, result.modseq, view.owner_id)
        if not view.shared:  # spam training learns from the account's own folders only
            changes = [(uid, result.before.get(uid, ""), keywords) for uid, _, _, keywords in result.changed]
            spam_training.after_store(session.store, session.config, session.account_id, view.mailbox_id, changes)
    for uid, modseq, bits, keywords in result.current:
        seq = view.seq(uid)
        if seq is None:
            continue
        if command.silent and not (session.condstore and any(uid == c[0] for c in result.changed)):
            continue
        items = session.flag_items(uid, bits, keywords, modseq)
        if command.silent:
            items = [Atom("UID"), uid, Atom("MODSEQ"), [modseq]]
        elif not command.uid:
            items = items[2:]
        session.untagged(seq, Atom("FETCH"), items)
    if result.modified:
        numbers = result.modified if command.uid else [s for u in result.modified if (s := view.seq(u))]
        return Ok("some messages were modified since", [Atom("MODIFIED"), Atom(render_set(numbers))])
    return None


async def _store_virtual(session: Session, view: VirtualView, command: Store) -> Result:
    """STORE in a CRM view: the flags land on the real message (see relentad.imap.virtual)."""
    if command.unchanged_since is not None:
        raise bad("a CRM view has no mod-sequences (NOMODSEQ)")
    uids = view.resolve(command.sequence_set, uid=command.uid, saved=session.saved)
    for uid, copy in await virtual.store(session, view, uids, command.action, command.flags):
        seq = view.seq(uid)
        if seq is None or command.silent:
            continue
        if view.new_keywords(copy.keywords):
            session.announce_flags(view)
        items: list[ImapValue] = [Atom("UID"), uid] if command.uid else []
        items += [Atom("FLAGS"), flag_list(flagmod.names(copy.flags, copy.keywords))]
        session.untagged(seq, Atom("FETCH"), items)
    return None


HANDLERS: dict[str, Handler] = {"STORE": store}
