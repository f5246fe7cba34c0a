"""SELECT, EXAMINE, CLOSE, UNSELECT (RFC 9051 §6.3.2-3, §6.4.1-2; RFC 3691; RFC 7162 CONDSTORE/QRESYNC).

Invariants: the view's modseq is read before its UID list, so a change racing the SELECT is reported later
rather than lost; a mailbox's UID list, keywords and first unseen UID are reused from :data:`_OPENED` while its
(UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ) is unchanged — every change to its messages moves one of them; QRESYNC
resynchronisation (RFC 7162 §3.2.5) answers VANISHED (EARLIER) for known UIDs that left the mailbox and FETCH
for messages changed since the client's modseq, when the UIDVALIDITY matches.
"""

from __future__ import annotations

import dataclasses
import sqlite3

from ...store import acl, imapview, imapwrite
from ...store.imapview import MailboxInfo
from .. import access, objectid, virtual
from ..access import Target
from ..errors import bad, no
from ..parser import NoArgs, Select
from ..responses import Atom, mailbox_value
from ..sequence import render as render_set
from ..session import Handler, Ok, Result, Session
from ..view import Selected

Opened = tuple[MailboxInfo | None, list[int], list[str], int | None]
_OPENED: dict[int, tuple[tuple[int, int, int], list[int], list[str], int | None]] = {}
"""Per mailbox id: ((uidvalidity, uidnext, highestmodseq), UIDs, keywords in use, first unseen UID) as last read."""
_OPENED_MAX = 1000
_OPENED_MAX_UIDS = 200_000
"""Bound on the UIDs held in :data:`_OPENED` altogether (a few MiB); past it the cache starts again empty."""


def _open(conn: sqlite3.Connection, mailbox_id: int) -> Opened:
    """The mailbox, its UIDs, keywords in use and first unseen UID, in one snapshot (modseq read first)."""
    info = imapview.mailbox_by_id(conn, mailbox_id)
    if info is None:
        return None, [], [], None
    uids = imapview.uids(conn, info.id)
    return info, uids, imapview.keywords_in_use(conn, info.id), imapview.first_unseen(conn, info.id)


def _open_cached(session: Session, target: Target | None) -> Opened:
    """:func:`_open` with no further query when the mailbox has not changed since it was last opened (by any
    session). The mailbox keeps the name the session knows it by (a shared one's is in the shared namespace)."""
    if target is None or target.info.noselect:
        return None if target is None else target.info, [], [], None
    info = target.info
    key = (info.uidvalidity, info.uidnext, info.highestmodseq)
    known = _OPENED.get(info.id)
    if known is not None and known[0] == key:
        return info, list(known[1]), known[2], known[3]
    opened = session.read(lambda c: _open(c, target.info.id), snapshot=True)
    current, uids, keywords, unseen_uid = opened
    if current is not None:
        current = dataclasses.replace(current, name=target.info.name)
        opened = current, uids, keywords, unseen_uid
    if current is not None and not current.noselect and len(uids) <= _OPENED_MAX_UIDS // 4:
        held = sum(len(entry[1]) for entry in _OPENED.values())
        if len(_OPENED) >= _OPENED_MAX or held + len(uids) > _OPENED_MAX_UIDS:
            _OPENED.clear()
        _OPENED[current.id] = (
            (current.uidvalidity, current.uidnext, current.highestmodseq),
            list(uids),
            keywords,
            unseen_uid,
        )
    return opened


async def select(session: Session, command: Select) -> Result:
    """SELECT / EXAMINE (RFC 9051 §6.3.2, §6.3.3)."""
    if command.qresync is not None and not session.qresync:
        raise bad("SELECT (QRESYNC ...) needs ENABLE QRESYNC first")
    if session.selected is not None:
        session.deselect()
        session.untagged_status("OK", "previous mailbox is now closed", "CLOSED")
    if command.condstore:
        session.enabled.add("CONDSTORE")
    target = access.resolve(session, command.mailbox)
    if target is not None and target.owner_id != session.account_id:
        access.require(target.rights, "r", command.name)
    info, uids, keywords, unseen_uid = _open_cached(session, target)
    if info is None and session.config.crm.imap_folders:
        found = virtual.lookup(session, command.mailbox)
        if found is not None and found.folder is not None:
            return _select_virtual(session, found, command)
    if info is None:
        raise no(f"no mailbox {command.mailbox}", "NONEXISTENT")
    if info.noselect:
        raise no(f"{command.mailbox} cannot be selected (it only holds other mailboxes)", "CANNOT")
    assert target is not None
    readonly = command.readonly or not (acl.WRITE & set(target.rights))  # RFC 4314 §4
    view = Selected(
        info=info,
        readonly=readonly,
        uids=uids,
        modseq=info.highestmodseq,
        owner_id=session.owner_of(target),
        rights=target.rights,
    )
    view.new_keywords(" ".join(keywords))
    view.recent_end = info.first_recent_uid  # older UIDs were claimed by earlier sessions: not recent
    await session.claim_recent(view, uids)  # writes only when there is something to claim
    session.announce_flags(view)
    session.send(b"* %d EXISTS\r\n" % len(uids))  # these lines are plain ASCII: written directly
    if not session.rev2:
        session.send(b"* %d RECENT\r\n" % len(view.recent))
        if unseen_uid is not None:
            seq = view.seq(unseen_uid)
            if seq is not None:
                session.send(b"* OK [UNSEEN %d] first unseen message\r\n" % seq)
    session.send(
        b"* OK [UIDVALIDITY %d] UIDs valid\r\n* OK [UIDNEXT %d] predicted next UID\r\n"
        b"* OK [HIGHESTMODSEQ %d] highest mod-sequence\r\n"
        b"* OK [MAILBOXID (%s)] mailbox id\r\n"
        % (info.uidvalidity, info.uidnext, info.highestmodseq, objectid.mailbox_id(info.id, info.uidvalidity).encode())
    )
    if session.rev2:
        session.untagged(Atom("LIST"), [], "/", mailbox_value(info.name, utf8=session.utf8))
    session.select(view)
    if command.qresync is not None and command.qresync.uidvalidity == info.uidvalidity:
        _resync(session, view, command.qresync.modseq, command.qresync.known_uids)
    return Ok(f"{command.name} completed", "READ-ONLY" if readonly else "READ-WRITE")


def _select_virtual(session: Session, info: virtual.VirtualInfo, command: Select) -> Result:
    """SELECT / EXAMINE of a CRM view: always [READ-ONLY], [NOMODSEQ] (see relentad.imap.virtual)."""
    view = virtual.open_view(session, info, examine=command.readonly)
    session.announce_flags(view)
    session.untagged(len(view.uids), Atom("EXISTS"))
    if not session.rev2:
        session.untagged(0, Atom("RECENT"))
    session.untagged_status("OK", "UIDs valid", [Atom("UIDVALIDITY"), info.uidvalidity])
    session.untagged_status("OK", "predicted next UID", [Atom("UIDNEXT"), info.uidnext])
    session.untagged_status("OK", "a CRM view has no mod-sequences", "NOMODSEQ")
    view_id = objectid.of_mailbox(info)
    if view_id is not None:
        session.untagged_status("OK", "mailbox id", [Atom("MAILBOXID"), [Atom(view_id)]])
    if session.rev2:
        session.untagged(Atom("LIST"), [Atom("\\NoInferiors")], "/", mailbox_value(info.name, utf8=session.utf8))
    session.select(view)
    return Ok(f"{command.name} completed (a read-only CRM view)", "READ-ONLY")


def _resync(session: Session, view: Selected, modseq: int, known: object) -> None:
    """QRESYNC (RFC 7162 §3.2.5.1): what changed since the client's modseq."""
    from ..sequence import SequenceSet

    gone = session.read(lambda c: imapview.vanished_since(c, view.mailbox_id, modseq))
    if isinstance(known, SequenceSet):
        star = max([*gone, *view.uids, 1])
        gone = [uid for uid in gone if known.contains(uid, star)]
    if gone:
        session.untagged(Atom("VANISHED"), [Atom("EARLIER")], Atom(render_set(gone)))
    changes, _, _ = session.read(lambda c: imapview.changes_since(c, view.mailbox_id, modseq), snapshot=True)
    for change in changes:
        seq = view.seq(change.uid)
        if seq is not None:
            session.untagged(
                seq, Atom("FETCH"), session.flag_items(change.uid, change.flags, change.keywords, change.modseq)
            )


async def close(session: Session, command: NoArgs) -> Result:
    """CLOSE (RFC 9051 §6.4.1): silently expunge \\Deleted messages (read-write only), then deselect."""
    view = session.selected
    assert view is not None
    expunges = not view.readonly and "e" in view.rights  # without the e right CLOSE only deselects (RFC 4314 §4)
    if expunges and session.read(lambda c: imapview.has_deleted(c, view.mailbox_id)):

        def job(conn: sqlite3.Connection) -> tuple[list[int], int]:
            if not access.holds(conn, session.account_id, view.mailbox_id, view.owner_id, "e"):
                return [], 0  # the e right was withdrawn meanwhile: CLOSE only deselects
            return imapwrite.expunge(conn, view.mailbox_id)

        gone, modseq = await session.write(job)
        if gone:
            session.publish(view.mailbox_id, modseq, view.owner_id)
    session.deselect()
    return None


async def unselect(session: Session, command: NoArgs) -> Result:
    """UNSELECT (RFC 3691): deselect without expunging."""
    session.deselect()
    return None


HANDLERS: dict[str, Handler] = {
    "SELECT": select,
    "EXAMINE": select,
    "CLOSE": close,
    "UNSELECT": unselect,
}
