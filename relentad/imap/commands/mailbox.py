"""Mailbox commands: LIST, LSUB, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS
(RFC 9051 §6.3; RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE, RFC 3348 CHILDREN).

Invariants: one hierarchy delimiter "/"; INBOX matches case-insensitively; every LIST reply carries
\\HasChildren or \\HasNoChildren and the special-use attribute; names go out in modified UTF-7 unless the client
enabled UTF8=ACCEPT or IMAP4rev2.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from ...crm import folders
from ...store import acl, imapview, imapwrite
from ...store.imapview import MailboxInfo
from .. import access, objectid, virtual
from ..errors import bad, no
from ..parser import Create, List, MailboxCommand, Rename, Status
from ..parser_mailbox import SPECIAL_USE
from ..responses import Atom, ImapValue, mailbox_value
from ..session import Handler, Ok, Result, Session
from ..virtual import VirtualInfo
from . import quota

DELIMITER = "/"


def _pattern(reference: str, pattern: str) -> re.Pattern[str]:
    """RFC 9051 §6.3.9: `*` matches anything, `%` anything but the delimiter; the reference is a prefix."""
    full = pattern if pattern.startswith(DELIMITER) or not reference else reference + pattern
    out = []
    for char in full:
        if char == "*":
            out.append(".*")
        elif char == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(char))
    text = "".join(out)
    if full[:5].upper() == "INBOX":
        text = "(?i:INBOX)" + "".join(out[5:])
    return re.compile(text, re.DOTALL)


def _children(names: set[str], name: str) -> bool:
    prefix = name + DELIMITER
    return any(other.startswith(prefix) for other in names)


def _descendants(subscribed: set[str], name: str) -> list[str]:
    prefix = name + DELIMITER
    return [other for other in subscribed if other.startswith(prefix)]


def _ancestors(name: str) -> list[str]:
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:i]) for i in range(1, len(levels))]


def _attributes(box: MailboxInfo, names: set[str], show_subscribed: bool) -> list[ImapValue]:
    """LIST attributes: \\Noselect, CHILDREN (RFC 3348), special use (RFC 6154), \\Subscribed (RFC 5258)."""
    attributes: list[ImapValue] = []
    if box.noselect:
        attributes.append(Atom("\\Noselect"))
    attributes.append(Atom("\\HasChildren" if _children(names, box.name) else "\\HasNoChildren"))
    if box.special_use:
        attributes.append(Atom(box.special_use))
    if isinstance(box, VirtualInfo) and box.folder is not None:
        attributes.append(Atom("\\NoInferiors"))  # RFC 3501 §7.2.2: a CRM view has no children
    if show_subscribed and box.subscribed:
        attributes.append(Atom("\\Subscribed"))
    return attributes


def status_values(session: Session, info: MailboxInfo, items: tuple[str, ...]) -> list[ImapValue]:
    """The STATUS attribute list (RFC 9051 §6.3.11, RFC 7162 §3.1.6 HIGHESTMODSEQ, RFC 8438 SIZE, RFC 7889,
    RFC 9208 §5.1 DELETED-STORAGE)."""
    if isinstance(info, VirtualInfo):
        counts = virtual.status_counts(session, info)
    else:
        counts = session.read(lambda c: imapview.counts(c, info.id, info.first_recent_uid))
    values: dict[str, int] = {
        "MESSAGES": counts.messages,
        "RECENT": counts.recent,
        "UIDNEXT": info.uidnext,
        "UIDVALIDITY": info.uidvalidity,
        "UNSEEN": counts.unseen,
        "DELETED": counts.deleted,
        "DELETED-STORAGE": quota.kib(counts.deleted_size),  # RFC 9208 §5.1, KiB like STORAGE
        "SIZE": counts.size,
        "HIGHESTMODSEQ": info.highestmodseq,
        "APPENDLIMIT": session.appendlimit,
    }
    out: list[ImapValue] = []
    for item in items:
        if item in values:
            out += [Atom(item), values[item]]
        elif item == "MAILBOXID" and (mailbox_id := objectid.of_mailbox(info)) is not None:  # RFC 8474 §4.3
            out += [Atom(item), [Atom(mailbox_id)]]
    return out


async def list_(session: Session, command: List) -> Result:
    """LIST / LSUB (RFC 9051 §6.3.9, RFC 3501 §6.3.9, RFC 5258, RFC 5819)."""
    lsub = command.name == "LSUB"
    if not lsub and command.patterns == ("",):
        session.untagged(Atom("LIST"), [Atom("\\Noselect")], DELIMITER, "")
        return None
    boxes = session.read(lambda c: imapview.all_mailboxes(c, session.account_id))
    names = {box.name for box in boxes}
    if session.config.crm.imap_folders:
        boxes = sorted(
            [
                *boxes,
                *session.read(
                    lambda c: virtual.list_entries(c, session.account_id, names, virtual.policy(session)),
                    snapshot=True,
                ),
            ],
            key=lambda box: box.name,
        )
        names = {box.name for box in boxes}
    unreadable: set[str] = set()  # shared mailboxes the session may list but not read (no STATUS for them)
    shared = _shared_entries(session, names, unreadable)
    if shared:
        boxes = sorted([*boxes, *shared], key=lambda box: box.name)
        names = {box.name for box in boxes}
    patterns = [_pattern(command.reference, pattern) for pattern in command.patterns]
    subscribed_only = lsub or "SUBSCRIBED" in command.selection
    special_only = "SPECIAL-USE" in command.selection
    show_subscribed = "SUBSCRIBED" in command.returns or "SUBSCRIBED" in command.selection
    if "STATUS" in command.returns and "HIGHESTMODSEQ" in command.status_items:
        session.enabled.add("CONDSTORE")

    def matches(name: str) -> bool:
        return any(p.fullmatch(name) for p in patterns)

    subscribed = {box.name for box in boxes if box.subscribed}
    missing: list[str] = []  # subscribed names with no mailbox (RFC 5258 §3.1: \NonExistent; LSUB: \Noselect)
    if subscribed_only:
        missing = sorted(session.read(lambda c: imapview.subscriptions(c, session.account_id)) - names)
        subscribed.update(missing)
    for box in boxes:
        if not matches(box.name):
            continue
        if subscribed_only and not box.subscribed:
            _unsubscribed_parent(session, command, box, names, subscribed, matches)
            continue
        if special_only and not box.special_use:
            continue
        attributes = _attributes(box, names, show_subscribed) if not lsub else []
        if lsub and box.noselect:
            attributes.append(Atom("\\Noselect"))
        name = mailbox_value(box.name, utf8=session.utf8)
        session.untagged(Atom(command.name), attributes, DELIMITER, name)
        if "STATUS" in command.returns and not box.noselect and box.name not in unreadable:
            current = virtual.with_uidnext(session, box) if isinstance(box, VirtualInfo) else box
            values = status_values(session, current, command.status_items)
            session.untagged(Atom("STATUS"), mailbox_value(box.name, utf8=session.utf8), values)
    if not subscribed_only or special_only:
        return None
    # names that are not mailboxes: subscribed ones, and for LSUB the levels above them that "%" stops at
    listed = names | set(missing)
    for name in missing:
        if matches(name):
            attributes = [Atom("\\Noselect")] if lsub else [Atom("\\NonExistent"), Atom("\\Subscribed")]
            session.untagged(Atom(command.name), attributes, DELIMITER, mailbox_value(name, utf8=session.utf8))
    if lsub:
        levels = sorted({level for name in missing for level in _ancestors(name)} - listed)
        for level in levels:
            if matches(level) and any(not matches(d) for d in _descendants(subscribed, level)):
                session.untagged(Atom("LSUB"), [Atom("\\Noselect")], DELIMITER, mailbox_value(level, utf8=session.utf8))
    return None


def _shared_entries(session: Session, names: set[str], unreadable: set[str]) -> list[MailboxInfo]:
    """The mailboxes others share with the account and may be listed (right l), under ``Shared/<owner>/``, with
    the levels above them as \\Noselect (RFC 2342 other users' namespace); nothing else of the owners shows. Their
    special use (RFC 6154) is the owner's, not the grantee's: it is not shown, or a client that picks its Sent,
    Drafts or Trash by attribute (LIST order puts ``Shared/x/Trash`` before ``Trash``) would file the grantee's own
    mail into the owner's mailbox (Cyrus keeps special use private to the owner alike)."""
    shared = [s for s in session.read(lambda c: acl.shared_with(c, session.account_id)) if "l" in s.rights]
    if not shared:
        return []
    subscribed = session.read(lambda c: imapview.subscriptions(c, session.account_id))
    out: list[MailboxInfo] = []
    levels: set[str] = set()
    for entry in shared:
        out.append(dataclasses.replace(entry.info, special_use=None, subscribed=entry.info.name in subscribed))
        if "r" not in entry.rights:
            unreadable.add(entry.info.name)
        levels.update(_ancestors(entry.info.name))
    present = names | {box.name for box in out}
    for level in sorted(levels - present):
        out.append(
            MailboxInfo(
                id=0,
                name=level,
                special_use=None,
                uidvalidity=0,
                uidnext=0,
                highestmodseq=0,
                noselect=True,
                subscribed=level in subscribed,
            )
        )
    return out


def _unsubscribed_parent(
    session: Session,
    command: List,
    box: MailboxInfo,
    names: set[str],
    subscribed: set[str],
    matches: Callable[[str], bool],
) -> None:
    """A mailbox the selection leaves out that still has to be answered for its subscribed descendants: LSUB with
    "%" returns the level it stops at, flagged \\Noselect (RFC 3501 §6.3.9); LIST (SUBSCRIBED RECURSIVEMATCH) a
    parent with CHILDINFO (RFC 5258 §3.5)."""
    below = _descendants(subscribed, box.name)
    if not below:
        return
    name = mailbox_value(box.name, utf8=session.utf8)
    if command.name == "LSUB":
        if any(not matches(other) for other in below):
            session.untagged(Atom("LSUB"), [Atom("\\Noselect")], DELIMITER, name)
    elif "RECURSIVEMATCH" in command.selection:
        childinfo: list[ImapValue] = [Atom("CHILDINFO"), [Atom("SUBSCRIBED")]]
        session.untagged(Atom("LIST"), _attributes(box, names, False), DELIMITER, name, childinfo)


async def create(session: Session, command: Create) -> Result:
    """CREATE (RFC 9051 §6.3.4, RFC 6154 §3 CREATE-SPECIAL-USE)."""
    name = command.mailbox.rstrip(DELIMITER)
    if len(command.special_use) > 1:
        raise no("a mailbox can have one special-use attribute", "USEATTR")
    use = command.special_use[0] if command.special_use else None
    if use is not None and use not in SPECIAL_USE.values():
        raise no(f"unknown special-use attribute {use}", "USEATTR")
    access.refuse_namespace(name)
    virtual.refuse_virtual(session, name)
    mailbox_id = await session.write(lambda c: imapwrite.create_mailbox(c, session.account_id, name, use))
    info = session.read(lambda c: imapview.mailbox_by_id(c, mailbox_id))
    if info is None:  # deleted by another session in between
        return None
    return Ok("CREATE completed", [Atom("MAILBOXID"), [Atom(objectid.mailbox_id(info.id, info.uidvalidity))]])


async def delete(session: Session, command: MailboxCommand) -> Result:
    """DELETE (RFC 9051 §6.3.5): messages go to the retention area; children keep the name as \\Noselect."""
    name = command.mailbox.rstrip(DELIMITER) or command.mailbox
    access.refuse_namespace(name)
    if session.read(lambda c: imapview.mailbox(c, session.account_id, name)) is None:
        virtual.refuse_virtual(session, name)
    mailbox_id = await session.write(lambda c: imapwrite.delete_mailbox(c, session.account_id, name))
    session.publish(mailbox_id, 0)
    if session.selected is not None and session.selected.mailbox_id == mailbox_id:
        session.deselect()
        session.untagged_status("OK", "the selected mailbox was deleted", "CLOSED")
    return None


async def rename(session: Session, command: Rename) -> Result:
    """RENAME (RFC 9051 §6.3.6): children follow; INBOX's messages move to the new name."""
    access.refuse_namespace(command.source)
    access.refuse_namespace(command.destination)
    _refuse_children_into_namespace(session, command.source, command.destination)
    virtual.refuse_virtual(session, command.destination)
    if session.read(lambda c: imapview.mailbox(c, session.account_id, command.source)) is None:
        virtual.refuse_virtual(session, command.source)
    await session.write(lambda c: imapwrite.rename_mailbox(c, session.account_id, command.source, command.destination))
    return None


def _refuse_children_into_namespace(session: Session, source: str, destination: str) -> None:
    """RENAME takes the source's children along: none may land in the shared namespace either (``RENAME Foo
    Shared`` with a child ``Foo/<address>/x``), where an own folder would be hidden behind another account's."""
    if source.upper() == "INBOX":  # INBOX's children stay where they are
        return
    prefix = source + DELIMITER
    for box in session.read(lambda c: imapview.all_mailboxes(c, session.account_id)):
        if box.name.startswith(prefix):
            access.refuse_namespace(destination + box.name[len(source) :])


async def subscribe(session: Session, command: MailboxCommand) -> Result:
    """SUBSCRIBE / UNSUBSCRIBE (RFC 9051 §6.3.7, §6.3.8)."""
    wanted = command.name == "SUBSCRIBE"
    view = virtual.lookup(session, command.mailbox) if session.config.crm.imap_folders else None
    if view is not None and view.folder is not None:
        folder = view.folder
        await session.write(lambda c: folders.set_subscribed(c, folder, wanted))
        return None
    await session.write(lambda c: imapwrite.set_subscribed(c, session.account_id, command.mailbox, wanted))
    return None


async def status(session: Session, command: Status) -> Result:
    """STATUS (RFC 9051 §6.3.11)."""
    target = access.resolve(session, command.mailbox)
    if target is not None:
        access.require(target.rights, "r", "STATUS")
    info = None if target is None else target.info
    if info is None and session.config.crm.imap_folders:
        info = virtual.lookup(session, command.mailbox)
    if info is None or info.noselect:
        raise no(f"no mailbox {command.mailbox}", "NONEXISTENT")
    if not command.items:
        raise bad("STATUS needs at least one item")
    if "HIGHESTMODSEQ" in command.items:
        session.enabled.add("CONDSTORE")
    values = status_values(session, info, command.items)
    session.untagged(Atom("STATUS"), mailbox_value(info.name, utf8=session.utf8), values)
    return None


HANDLERS: dict[str, Handler] = {
    "LIST": list_,
    "LSUB": list_,
    "CREATE": create,
    "DELETE": delete,
    "RENAME": rename,
    "SUBSCRIBE": subscribe,
    "UNSUBSCRIBE": subscribe,
    "STATUS": status,
}
