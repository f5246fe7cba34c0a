"""Argument grammars of the mailbox commands: SELECT/EXAMINE, CREATE, DELETE, RENAME, (UN)SUBSCRIBE, LIST,
LSUB, STATUS, APPEND and GETQUOTAROOT (RFC 3501 §6.3, RFC 9051 §6.3, RFC 5258, RFC 5819, RFC 6154, RFC 7162,
RFC 3502, RFC 6855).

Each function gets the cursor just after the command name (before its first SP) and returns the command; the
caller checks the end of the line and attaches the tag to errors.

Invariants: option words are validated against the lists we implement, so a typo is a BAD rather than a
silently ignored option; mailbox names go through `Cursor.mailbox` (decoded, INBOX normalised).
"""

from __future__ import annotations

from datetime import datetime

from relentad.imap.parser_commands import (
    Acl,
    Append,
    AppendMessage,
    Create,
    List,
    MailboxCommand,
    Qresync,
    Rename,
    Select,
    Status,
)
from relentad.imap.parser_cursor import Cursor
from relentad.imap.sequence import SequenceSet

__all__ = [
    "LIST_RETURN_OPTIONS",
    "LIST_SELECTION_OPTIONS",
    "SPECIAL_USE",
    "STATUS_ITEMS",
    "append_message",
    "parse_append",
    "parse_create",
    "parse_list",
    "parse_lsub",
    "parse_mailbox_only",
    "parse_rename",
    "parse_select",
    "parse_status",
]

STATUS_ITEMS = frozenset(
    (
        "MESSAGES",
        "RECENT",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "DELETED",
        "DELETED-STORAGE",
        "SIZE",
        "HIGHESTMODSEQ",
        "APPENDLIMIT",
        "MAILBOXID",
    )
)
LIST_SELECTION_OPTIONS = frozenset(("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"))
LIST_RETURN_OPTIONS = frozenset(("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"))
SPECIAL_USE = {
    flag.upper(): flag
    for flag in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash", "\\Important")
}


def parse_mailbox_only(cur: Cursor, tag: str, name: str) -> MailboxCommand:
    """DELETE / SUBSCRIBE / UNSUBSCRIBE / GETQUOTAROOT SP mailbox."""
    cur.sp()
    return MailboxCommand(tag=tag, name=name, mailbox=cur.mailbox())


def parse_acl(cur: Cursor, tag: str, name: str) -> Acl:
    """SETACL SP mailbox SP identifier SP mod-rights / DELETEACL and LISTRIGHTS SP mailbox SP identifier
    (RFC 4314 §3.1-3.4)."""
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    identifier = cur.astring_text("identifier")
    rights = ""
    if name == "SETACL":
        cur.sp()
        rights = cur.astring_text("rights")
    return Acl(tag=tag, name=name, mailbox=mailbox, identifier=identifier, rights=rights)


def parse_rename(cur: Cursor, tag: str, name: str) -> Rename:
    """RENAME SP mailbox SP mailbox."""
    cur.sp()
    source = cur.mailbox("existing mailbox name")
    cur.sp()
    return Rename(tag=tag, name=name, source=source, destination=cur.mailbox("new mailbox name"))


def _seq_match(cur: Cursor) -> tuple[SequenceSet, SequenceSet]:
    cur.expect(b"(", '"(" starting sequence match data')
    seqs = cur.sequence_set("known sequence set", allow_saved=False)
    cur.sp()
    uids = cur.sequence_set("known UID set", allow_saved=False)
    cur.expect(b")", '")" closing sequence match data')
    return seqs, uids


def _qresync(cur: Cursor) -> Qresync:
    cur.expect(b"(", '"(" starting QRESYNC parameters')
    uidvalidity = cur.number("UIDVALIDITY", nonzero=True)
    cur.sp()
    modseq = cur.number("mod-sequence value", nonzero=True, bits=63)
    known_uids = None
    seq_match = None
    if cur.skip(b" "):
        if cur.peek() == ord("("):
            seq_match = _seq_match(cur)
        else:
            known_uids = cur.sequence_set("known UIDs", allow_saved=False)
            if cur.skip(b" "):
                seq_match = _seq_match(cur)
    cur.expect(b")", '")" closing QRESYNC parameters')
    return Qresync(uidvalidity=uidvalidity, modseq=modseq, known_uids=known_uids, seq_match=seq_match)


def parse_select(cur: Cursor, tag: str, name: str) -> Select:
    """SELECT / EXAMINE SP mailbox [SP "(" (CONDSTORE / QRESYNC (...)) ... ")"] (RFC 7162 §3.1.8, §3.2.5)."""
    cur.sp()
    mailbox = cur.mailbox()
    condstore = False
    qresync: Qresync | None = None
    if cur.more():

        def param() -> None:
            nonlocal condstore, qresync
            word = cur.keyword("SELECT parameter")
            if word == "CONDSTORE":
                condstore = True
            elif word == "QRESYNC" and qresync is None:
                cur.sp()
                qresync = _qresync(cur)
            else:
                cur.fail(f"unknown or repeated SELECT parameter {word}")

        cur.paren_list(param, allow_empty=False)
    return Select(tag=tag, name=name, mailbox=mailbox, readonly=name == "EXAMINE", condstore=condstore, qresync=qresync)


def _use_attribute(cur: Cursor) -> str:
    """One use-attr: a known one in its canonical spelling, any other ``"\\" atom`` as sent. An unknown one is
    valid syntax (use-attr-ext), so CREATE answers it with NO [USEATTR] (RFC 6154 §3), not BAD."""
    cur.expect(b"\\", "special-use attribute (\\Drafts, \\Sent, ...)")
    word = cur.atom("special-use attribute")
    return SPECIAL_USE.get("\\" + word.upper(), "\\" + word)


def parse_create(cur: Cursor, tag: str, name: str) -> Create:
    """CREATE SP mailbox [SP "(" USE SP "(" use-attr... ")" ")"] (RFC 6154 §3)."""
    cur.sp()
    mailbox = cur.mailbox()
    uses: list[str] = []
    if cur.more():

        def param() -> None:
            if cur.keyword("CREATE parameter") != "USE":
                cur.fail("unknown CREATE parameter; only USE is supported")
            cur.sp()
            uses.extend(cur.paren_list(lambda: _use_attribute(cur)))

        cur.paren_list(param, allow_empty=False)
    return Create(tag=tag, name=name, mailbox=mailbox, special_use=tuple(dict.fromkeys(uses)))


def _status_item(cur: Cursor) -> str:
    word = cur.keyword("STATUS item")
    if word not in STATUS_ITEMS:
        cur.fail(f"unknown STATUS item {word}")
    return word


def _status_items(cur: Cursor) -> tuple[str, ...]:
    return tuple(dict.fromkeys(cur.paren_list(lambda: _status_item(cur), allow_empty=False)))


def parse_status(cur: Cursor, tag: str, name: str) -> Status:
    """STATUS SP mailbox SP "(" status-att *(SP status-att) ")"."""
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    return Status(tag=tag, name=name, mailbox=mailbox, items=_status_items(cur))


def parse_lsub(cur: Cursor, tag: str, name: str) -> List:
    """LSUB SP mailbox SP list-mailbox (IMAP4rev1 only)."""
    cur.sp()
    reference = cur.mailbox("reference name")
    cur.sp()
    return List(tag=tag, name=name, reference=reference, patterns=(cur.list_mailbox(),))


def parse_list(cur: Cursor, tag: str, name: str) -> List:
    """LIST [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts] (RFC 5258 §6)."""
    cur.sp()
    extended = False
    selection: frozenset[str] = frozenset()
    if cur.peek() == ord("("):
        extended = True
        selection = frozenset(cur.paren_list(lambda: cur.keyword("LIST selection option")))
        unknown = selection - LIST_SELECTION_OPTIONS
        if unknown:
            cur.fail(f"unknown LIST selection option {min(unknown)}")
        if "RECURSIVEMATCH" in selection and not selection - {"RECURSIVEMATCH", "REMOTE"}:
            cur.fail("RECURSIVEMATCH needs another selection option such as SUBSCRIBED")
        cur.sp()
    reference = cur.mailbox("reference name")
    cur.sp()
    if cur.peek() == ord("("):
        extended = True
        patterns = tuple(cur.paren_list(cur.list_mailbox, allow_empty=False))
    else:
        patterns = (cur.list_mailbox(),)
    returns: set[str] = set()
    status_items: tuple[str, ...] = ()
    if cur.more():
        extended = True
        if cur.keyword("RETURN") != "RETURN":
            cur.fail("expected RETURN")
        cur.sp()

        def option() -> None:
            nonlocal status_items
            word = cur.keyword("LIST return option")
            if word not in LIST_RETURN_OPTIONS:
                cur.fail(f"unknown LIST return option {word}")
            if word == "STATUS":
                cur.sp()
                status_items = _status_items(cur)
            returns.add(word)

        cur.paren_list(option)
    return List(
        tag=tag,
        name=name,
        reference=reference,
        patterns=patterns,
        selection=selection,
        returns=frozenset(returns),
        status_items=status_items,
        extended=extended,
    )


def append_message(cur: Cursor) -> AppendMessage:
    """[flag-list SP] [date-time SP] (literal / literal8 / UTF8 (literal8)): one message of APPEND or REPLACE."""
    flags: tuple[str, ...] = ()
    date: datetime | None = None
    if cur.peek() == ord("("):
        flags = tuple(dict.fromkeys(cur.flag_list(settable=True)))
        cur.sp()
    if cur.peek() == ord('"'):
        date = cur.date_time()
        cur.sp()
    if cur.skip(b"UTF8 ("):  # RFC 6855 §4: UTF8 (literal8)
        binary = cur.peek() == ord("~")
        data = cur.literal(binary=True)
        cur.expect(b")", '")" after the UTF8 message literal')
    else:
        binary = cur.peek() == ord("~")
        data = cur.literal(binary=True)
    return AppendMessage(data=data, flags=flags, date=date, binary=binary)


def parse_append(cur: Cursor, tag: str, name: str) -> Append:
    """APPEND SP mailbox 1*(SP [flag-list SP] [date-time SP] (literal / literal8)) (RFC 3502 MULTIAPPEND)."""
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    messages = [append_message(cur)]
    while cur.more():
        messages.append(append_message(cur))
    return Append(tag=tag, name=name, mailbox=mailbox, messages=tuple(messages))
