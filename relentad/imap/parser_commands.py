"""The typed commands the IMAP parser produces; the server dispatches on `name` (and `uid`).

Every command is a frozen dataclass deriving from `Command` (`tag`, upper-case `name`, `uid` for the UID
variants). One class serves a family of commands with the same arguments: `NoArgs` for CAPABILITY, NOOP,
LOGOUT, STARTTLS, IDLE, CHECK, CLOSE, UNSELECT, NAMESPACE; `MailboxCommand` for DELETE, SUBSCRIBE, UNSUBSCRIBE,
GETQUOTAROOT; `Select` for SELECT/EXAMINE; `List` for LIST/LSUB; `CopyMove` for COPY/MOVE.

Invariants: mailbox names are decoded Unicode (`INBOX` normalised); flags are canonical (`\\Seen`) or keyword
atoms; every keyword-like value (capabilities, STATUS items, options) is upper-case.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from relentad.imap.parser_fetch import FetchAttribute
from relentad.imap.parser_search import SearchKey
from relentad.imap.sequence import SequenceSet

__all__ = [
    "Acl",
    "Append",
    "AppendMessage",
    "Authenticate",
    "Command",
    "Compress",
    "CopyMove",
    "Create",
    "Enable",
    "Expunge",
    "Fetch",
    "GetQuota",
    "Id",
    "List",
    "Login",
    "MailboxCommand",
    "NoArgs",
    "Qresync",
    "Rename",
    "Search",
    "Select",
    "SetQuota",
    "Sort",
    "SortKey",
    "Status",
    "Store",
    "Thread",
]


@dataclass(frozen=True, kw_only=True)
class Command:
    """What every command has: its tag, its upper-case name, and whether it came as `UID <name>`."""

    tag: str
    name: str
    uid: bool = False


@dataclass(frozen=True, kw_only=True)
class NoArgs(Command):
    """CAPABILITY, NOOP, LOGOUT, STARTTLS, IDLE, CHECK, CLOSE, UNSELECT, NAMESPACE, EXPUNGE (no UID)."""


@dataclass(frozen=True, kw_only=True)
class Authenticate(Command):
    """AUTHENTICATE mechanism [initial-response] (RFC 4959 SASL-IR); `=` gives b"", absent gives None."""

    mechanism: str
    initial_response: bytes | None = None


@dataclass(frozen=True, kw_only=True)
class Login(Command):
    username: str
    password: str


@dataclass(frozen=True, kw_only=True)
class Enable(Command):
    """ENABLE cap... (RFC 5161), capability names upper-cased."""

    capabilities: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Qresync:
    """SELECT (QRESYNC (uidvalidity modseq [known-uids [(known-seqs known-uids)]])) (RFC 7162 §3.2.5)."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None


@dataclass(frozen=True, kw_only=True)
class Select(Command):
    """SELECT or EXAMINE (name tells; `readonly` is True for EXAMINE), with CONDSTORE / QRESYNC."""

    mailbox: str
    readonly: bool = False
    condstore: bool = False
    qresync: Qresync | None = None


@dataclass(frozen=True, kw_only=True)
class Create(Command):
    """CREATE mailbox [(USE (\\Drafts ...))] (RFC 6154 CREATE-SPECIAL-USE)."""

    mailbox: str
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class MailboxCommand(Command):
    """DELETE, SUBSCRIBE, UNSUBSCRIBE, GETQUOTAROOT: one mailbox argument."""

    mailbox: str


@dataclass(frozen=True, kw_only=True)
class Rename(Command):
    source: str
    destination: str


@dataclass(frozen=True, kw_only=True)
class List(Command):
    """LIST / LSUB, with LIST-EXTENDED (RFC 5258), SPECIAL-USE (RFC 6154) and LIST-STATUS (RFC 5819).

    selection: SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE. returns: SUBSCRIBED, CHILDREN, SPECIAL-USE,
    STATUS. status_items: the STATUS items when `STATUS` is in returns. extended is True when the client
    used any LIST-EXTENDED syntax (selection options, a pattern list, or RETURN), which changes replies.
    """

    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()
    returns: frozenset[str] = frozenset()
    status_items: tuple[str, ...] = ()
    extended: bool = False


@dataclass(frozen=True, kw_only=True)
class Status(Command):
    """STATUS mailbox (items): MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ APPENDLIMIT."""

    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class AppendMessage:
    """One message of APPEND: its flags, optional internal date, raw bytes; binary if sent as `~{n}`."""

    data: bytes
    flags: tuple[str, ...] = ()
    date: datetime | None = None
    binary: bool = False


@dataclass(frozen=True, kw_only=True)
class Append(Command):
    """APPEND mailbox message...; more than one message is MULTIAPPEND (RFC 3502), all or nothing."""

    mailbox: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, kw_only=True)
class Expunge(Command):
    """UID EXPUNGE set (RFC 4315); plain EXPUNGE is NoArgs."""

    sequence_set: SequenceSet


@dataclass(frozen=True, kw_only=True)
class Search(Command):
    """[UID] SEARCH [RETURN (...)] [CHARSET c] keys.

    returns is None for a classic `* SEARCH` reply, otherwise the ESEARCH options (RFC 4731/5182/9051):
    MIN MAX ALL COUNT SAVE; `RETURN ()` is normalised to ("ALL",).
    """

    key: SearchKey
    charset: str | None = None
    returns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SortKey:
    """One sort criterion (RFC 5256 §3, RFC 5957): ARRIVAL CC DATE FROM SIZE SUBJECT TO DISPLAYFROM DISPLAYTO."""

    key: str
    reverse: bool = False


@dataclass(frozen=True, kw_only=True)
class Sort(Command):
    """[UID] SORT [RETURN (...)] (criteria) charset keys (RFC 5256 §3; RFC 5267 ESORT for RETURN).

    returns as in :class:`Search` (None: a `* SORT` reply); charset is upper-cased (SORT always names one).
    """

    criteria: tuple[SortKey, ...]
    key: SearchKey
    charset: str
    returns: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class Thread(Command):
    """[UID] THREAD algorithm charset keys (RFC 5256 §4): ORDEREDSUBJECT or REFERENCES."""

    algorithm: str
    key: SearchKey
    charset: str


@dataclass(frozen=True, kw_only=True)
class Fetch(Command):
    """[UID] FETCH set attributes [(CHANGEDSINCE n [VANISHED])] (RFC 7162); macros are expanded."""

    sequence_set: SequenceSet
    attributes: tuple[FetchAttribute, ...]
    changed_since: int | None = None
    vanished: bool = False


@dataclass(frozen=True, kw_only=True)
class Store(Command):
    """[UID] STORE set [(UNCHANGEDSINCE n)] [+|-]FLAGS[.SILENT] flags.

    action: "replace" (FLAGS), "add" (+FLAGS) or "remove" (-FLAGS).
    """

    sequence_set: SequenceSet
    action: str
    silent: bool
    flags: tuple[str, ...]
    unchanged_since: int | None = None


@dataclass(frozen=True, kw_only=True)
class CopyMove(Command):
    """[UID] COPY / MOVE set mailbox."""

    sequence_set: SequenceSet
    mailbox: str


@dataclass(frozen=True, kw_only=True)
class Acl(Command):
    """SETACL, DELETEACL, LISTRIGHTS (RFC 4314 §3): a mailbox, an identifier and (SETACL) a rights string."""

    mailbox: str
    identifier: str
    rights: str = ""


@dataclass(frozen=True, kw_only=True)
class GetQuota(Command):
    """GETQUOTA quota-root (RFC 9208)."""

    root: str


@dataclass(frozen=True, kw_only=True)
class SetQuota(Command):
    """SETQUOTA root ((resource limit)...) (RFC 9208); resource names upper-cased."""

    root: str
    limits: tuple[tuple[str, int], ...]


@dataclass(frozen=True, kw_only=True)
class Id(Command):
    """ID (RFC 2971): None for `ID NIL`, otherwise (field, value-or-None) pairs in client order."""

    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, kw_only=True)
class Compress(Command):
    """COMPRESS mechanism (RFC 4978), upper-cased; only DEFLATE exists."""

    mechanism: str
