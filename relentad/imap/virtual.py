"""The CRM's virtual folders over IMAP: ``Contacts/<Name>``, ``Companies/<Name>`` (issue 6) and ``Follow-up``.

What a client sees (the store side is :mod:`relentad.crm.folders`):
- LIST/LSUB: the roots ``Contacts`` and ``Companies`` as ``\\Noselect \\HasChildren``, each folder as
  ``\\NoInferiors``; SUBSCRIBE/UNSUBSCRIBE are kept per folder. A real mailbox of the same name wins.
- SELECT and EXAMINE answer ``[READ-ONLY]`` and ``[NOMODSEQ]`` (RFC 7162 §3.1.2.2: virtual UIDs have no
  modseqs of their own). After SELECT, PERMANENTFLAGS lists every flag but ``\\Deleted``: Thunderbird then still
  sends STORE for \\Seen, \\Flagged … in a read-only folder (and skips deletes), and the flags land on the real
  message, as the issue asks. EXAMINE allows no STORE at all.
- FETCH, SEARCH, UID forms and COPY (out of the folder; it teaches the spam filter and relabels as COPY from
  each message's real folder would) work; APPEND, COPY/MOVE into, MOVE out of, EXPUNGE, CREATE, DELETE, RENAME
  answer ``NO [CANNOT]``; STORE of ``\\Deleted`` too.

Invariants: the view maps each virtual UID to the live copy it shows (:attr:`VirtualView.refs`); any change
in the account (the bus has no finer grain that covers CRM filing) makes :func:`sync` re-read the folder and
announce EXISTS, EXPUNGE and FETCH FLAGS from the difference. ``Follow-up`` also changes as time passes: its
view knows when the next thread becomes due (:attr:`VirtualView.wake_at`), the next command looks again after
that, and IDLE wakes up then. No transaction spans network I/O.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..crm import folders, followups
from ..crm.folders import Copy, Folder
from ..spam import training as spam_training
from ..store import flags as flagmod
from ..store import imapview, imapwrite
from ..store.imapview import MailboxInfo, MessageRow
from .errors import ImapError, no
from .responses import Atom, ImapValue, flag_list
from .view import Selected

if TYPE_CHECKING:
    from .session import Session

VIRTUAL_ID = -1
"""``mailbox_id`` of every virtual view: matches no real mailbox, so real-mailbox queries find nothing."""


@dataclasses.dataclass(frozen=True)
class VirtualInfo(MailboxInfo):
    """A LIST entry of the virtual tree; ``folder`` is None for the roots."""

    folder: Folder | None = None


@dataclasses.dataclass
class VirtualView(Selected):
    """A selected virtual folder: UIDs are ``crm_messages`` ids, ``refs`` the copy each one shows."""

    folder: Folder | None = None
    refs: dict[int, Copy] = dataclasses.field(default_factory=dict)
    settable: bool = False
    """SELECT (not EXAMINE): flags but \\Deleted may be stored on the real messages."""
    wake_at: float | None = None
    """When the view changes without a write (``Follow-up``: the next thread becomes due); None: never."""

    def due(self, now: float) -> bool:
        """Whether time alone has changed what the view shows since it was last read."""
        return self.wake_at is not None and now >= self.wake_at

    def watches(self, mailbox_id: int) -> bool:
        return True  # its messages live in every folder of the account


def cannot(name: str) -> ImapError:
    return no(f"{name} is a read-only CRM view; its messages stay in their real folders", "CANNOT")


def refuse_virtual(session: Session, *names: str) -> None:
    """NO [CANNOT] when a command would change a name in the virtual tree (CREATE, DELETE, RENAME, APPEND…);
    with ``[crm] imap_folders`` off the names are ordinary."""
    if not session.config.crm.imap_folders:
        return
    for name in names:
        if folders.is_virtual(name.rstrip("/")):
            raise cannot(name)


def _info(name: str, folder: Folder | None, uidnext: int = 1, *, subscribed: bool = False) -> VirtualInfo:
    return VirtualInfo(
        id=VIRTUAL_ID,
        name=name,
        special_use=None,
        uidvalidity=folder.uidvalidity if folder else 1,
        uidnext=uidnext,
        highestmodseq=0,
        subscribed=folder.subscribed if folder else subscribed,
        noselect=folder is None,
        first_recent_uid=1 << 62,  # nothing is \Recent in a view
        folder=folder,
    )


def policy(session: Session) -> followups.Policy:
    """The configured follow-up delay and window."""
    crm = session.config.crm
    return followups.Policy(crm.followup_days, crm.followup_window)


def list_entries(
    conn: sqlite3.Connection, account_id: int, real: set[str], followup: followups.Policy
) -> list[VirtualInfo]:
    """LIST entries of the virtual tree (roots only when they have folders), real names excluded."""
    found = [f for f in folders.folders(conn, account_id, followup) if f.name not in real]
    out: list[VirtualInfo] = [_info(f.name, f) for f in found if f.kind == "followup"]
    for root in folders.ROOTS:
        children = [f for f in found if f.name.startswith(root + "/")]
        if children and root not in real:
            out.append(_info(root, None, subscribed=any(f.subscribed for f in children)))
        out += [_info(f.name, f) for f in children]
    return out


def lookup(session: Session, name: str) -> VirtualInfo | None:
    """The virtual folder ``name`` with its current UIDNEXT; None when there is none (or a real one shadows it)."""
    if not folders.is_virtual(name):
        return None

    def read(conn: sqlite3.Connection) -> VirtualInfo | None:
        folder = folders.find(conn, session.account_id, name, policy(session))
        if folder is None or imapview.mailbox(conn, session.account_id, name) is not None:
            return None
        return _info(folder.name, folder, folders.uidnext(conn, folder))

    return session.read(read, snapshot=True)


def with_uidnext(session: Session, info: VirtualInfo) -> VirtualInfo:
    """The LIST entry with its current UIDNEXT (LIST-STATUS), without looking the folder up again."""
    folder = info.folder
    if folder is None:
        return info
    return dataclasses.replace(info, uidnext=session.read(lambda c: folders.uidnext(c, folder)))


def status_counts(session: Session, info: VirtualInfo) -> imapview.Counts:
    """STATUS numbers of a virtual folder (nothing is \\Recent, nothing \\Deleted counts: it cannot be expunged)."""
    assert info.folder is not None
    folder = info.folder
    rows = session.read(lambda c: folders.copies(c, folder))
    unseen = sum(1 for r in rows if not r.flags & flagmod.SYSTEM_BITS["\\Seen"])
    deleted = sum(1 for r in rows if r.flags & flagmod.SYSTEM_BITS["\\Deleted"])
    return imapview.Counts(len(rows), unseen, deleted, sum(r.size for r in rows), 0)


def open_view(session: Session, info: VirtualInfo, *, examine: bool) -> VirtualView:
    """The view of a virtual folder being selected."""
    assert info.folder is not None
    folder = info.folder
    rows = session.read(lambda c: folders.copies(c, folder))
    view = VirtualView(
        info=info,
        readonly=True,
        uids=[r.uid for r in rows],
        modseq=0,
        folder=folder,
        refs={r.uid: r for r in rows},
        settable=not examine,
    )
    view.new_keywords(" ".join(r.keywords for r in rows))
    view.wake_at = _wake_at(session, folder)
    return view


def _wake_at(session: Session, folder: Folder) -> float | None:
    if folder.kind != "followup":
        return None
    return session.read(lambda c: followups.next_due(c, folder.id, folder.delay, time.time()))


def permanent_flags(view: VirtualView) -> list[Atom]:
    """PERMANENTFLAGS: what STORE may set on the real messages (never \\Deleted)."""
    if not view.settable:
        return []
    names = [f for f in flagmod.SYSTEM_FLAGS if f != "\\Deleted"]
    return flag_list([*names, *view.keywords.values(), "\\*"])


def _flag_items(uid: int, copy: Copy) -> list[ImapValue]:
    return [Atom("UID"), uid, Atom("FLAGS"), flag_list(flagmod.names(copy.flags, copy.keywords))]


async def sync(session: Session, view: VirtualView, *, expunge_allowed: bool) -> None:
    """Re-read the folder and announce the difference (see module notes)."""
    assert view.folder is not None
    folder = view.folder
    rows = session.read(lambda c: folders.copies(c, folder))
    view.wake_at = _wake_at(session, folder)
    current = {r.uid: r for r in rows}
    view.pending_gone.update(uid for uid in view.uids if uid not in current)
    if expunge_allowed and view.pending_gone:
        session.announce_expunged(sorted(view.pending_gone))
    for uid in list(view.refs):
        if view.seq(uid) is None:
            del view.refs[uid]
    for uid, old in view.refs.items():
        new = current.get(uid)
        if new is None or uid in view.pending_gone or (new.flags, new.keywords) == (old.flags, old.keywords):
            continue
        if view.new_keywords(new.keywords):
            session.announce_flags(view)
        session.untagged(view.seq(uid) or 0, Atom("FETCH"), _flag_items(uid, new))
    last = view.uids[-1] if view.uids else 0
    added = [r for r in rows if r.uid > last]
    view.refs.update((uid, r) for uid, r in current.items() if uid in view.refs or uid > last)
    if added:
        view.uids.extend(r.uid for r in added)
        if view.new_keywords(" ".join(r.keywords for r in added)):
            session.announce_flags(view)
        session.untagged(view.exists, Atom("EXISTS"))
        if not session.rev2:
            session.untagged(0, Atom("RECENT"))


def message_rows(
    view: VirtualView, conn: sqlite3.Connection, wanted: Sequence[int], *, with_data: bool, with_structure: bool
) -> list[MessageRow]:
    """FETCH rows of virtual UIDs (ascending): each copy's row, renumbered with the virtual UID, modseq 0."""
    out: list[MessageRow] = []
    by_mailbox: dict[int, dict[int, int]] = {}
    for uid in wanted:
        copy = view.refs.get(uid)
        if copy is not None:
            by_mailbox.setdefault(copy.mailbox_id, {})[copy.real_uid] = uid
    for mailbox_id, mapping in by_mailbox.items():
        for row in imapview.message_rows(
            conn, mailbox_id, sorted(mapping), with_data=with_data, with_structure=with_structure
        ):
            row.uid, row.modseq = mapping[row.uid], 0
            out.append(row)
    out.sort(key=lambda row: row.uid)
    return out


def search_source(view: VirtualView) -> tuple[str, list[object]]:
    """A subquery standing for ``messages m`` in SEARCH: the shown copies, ``uid`` being the virtual UID."""
    pairs = [[uid, copy.message_id] for uid, copy in view.refs.items()]
    sql = """SELECT json_extract(j.value, '$[0]') AS uid, x.modseq, x.flags, x.keywords, x.internaldate, x.size,
                    x.blob_id, x.prefix, x.zone
             FROM json_each(?) j JOIN messages x ON x.id = json_extract(j.value, '$[1]')"""
    return sql, [json.dumps(pairs)]


async def store(
    session: Session, view: VirtualView, uids: list[int], action: str, names: Sequence[str]
) -> list[tuple[int, Copy]]:
    """STORE on the real copies of virtual UIDs; (uid, copy after) for each that still exists."""
    if not view.settable:
        raise no("the folder was opened with EXAMINE", "READ-ONLY")
    if any(name.lower() == "\\deleted" for name in names):
        raise no("a CRM view cannot delete; delete the message in its real folder", "CANNOT")
    deleted = flagmod.SYSTEM_BITS["\\Deleted"]
    targets = [(uid, view.refs[uid]) for uid in uids if uid in view.refs]

    Changes = list[tuple[int, str, str]]

    def job(conn: sqlite3.Connection) -> tuple[list[tuple[int, Copy]], dict[int, tuple[int, Changes]]]:
        out: list[tuple[int, Copy]] = []
        changed: dict[int, tuple[int, Changes]] = {}  # mailbox → (modseq, (real UID, keywords before, after))
        for uid, copy in targets:
            wanted = list(names)
            if action == "replace" and copy.flags & deleted:
                wanted.append("\\Deleted")  # FLAGS (...) replaces all but the flag a view cannot touch
            result = imapwrite.store_flags(conn, copy.mailbox_id, [copy.real_uid], action, wanted)
            for _, _, bits, keywords in result.current:
                out.append((uid, dataclasses.replace(copy, flags=bits, keywords=keywords)))
            if result.changed:
                done = changed.get(copy.mailbox_id, (0, []))[1]
                done += [(real, result.before.get(real, ""), keywords) for real, _, _, keywords in result.changed]
                changed[copy.mailbox_id] = (result.modseq, done)
        return out, changed

    out, changed = await session.write(job)
    for mailbox_id, (modseq, changes) in changed.items():
        session.publish(mailbox_id, modseq)
        spam_training.after_store(session.store, session.config, session.account_id, mailbox_id, changes)
    for uid, copy in out:
        view.refs[uid] = copy
    return out


async def copy_out(
    session: Session, view: VirtualView, uids: list[int], target_id: int
) -> tuple[list[tuple[int, int]], list[tuple[spam_training.Lesson | None, list[int]]]]:
    """COPY from a virtual folder: (virtual uid, new uid) pairs, the real copies copied in one write job; and what
    each real source folder's copies teach, with their new UIDs. Each group is copied as COPY from its real folder
    would: a message that is really in Junk teaches ham when copied out, and its copy's keywords change
    (``spam_training.relabel``)."""
    groups: dict[int, dict[int, int]] = {}
    for uid in uids:
        copy = view.refs.get(uid)
        if copy is not None:
            groups.setdefault(copy.mailbox_id, {})[copy.real_uid] = uid
    Lessons = list[tuple[spam_training.Lesson | None, list[int]]]

    def job(conn: sqlite3.Connection) -> tuple[list[tuple[int, int]], Lessons]:
        size = sum(imapwrite.size_of(conn, mailbox_id, sorted(m)) for mailbox_id, m in groups.items())
        imapwrite.check_quota(conn, session.account_id, size, sum(len(m) for m in groups.values()))
        pairs: list[tuple[int, int]] = []
        lessons: Lessons = []
        for mailbox_id, mapping in groups.items():
            lesson = spam_training.copy_lesson(conn, mailbox_id, target_id)
            relabel = spam_training.relabel(lesson)
            copied = imapwrite.copy_messages(conn, mailbox_id, sorted(mapping), target_id, relabel)
            pairs += [(mapping[s], n) for s, n in copied]
            lessons.append((lesson, [n for _, n in copied]))
        return sorted(pairs), lessons

    return await session.write(job)
