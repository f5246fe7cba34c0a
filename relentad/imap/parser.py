"""The IMAP command parser: one command buffer in, one typed `Command` out (RFC 3501 §9, RFC 9051 §9).

Pure: no I/O and no session state except `utf8` (UTF8=ACCEPT or IMAP4rev2 enabled, which changes how mailbox
names are decoded). The server reads a line, asks `pending_literal(line)` whether a literal follows (and
whether to send `+ ` first), appends the literal bytes and the next line to the same buffer, and repeats; then
it calls `parse_command(buffer)`. During IDLE it only checks `is_done(line)`.

Layout: `parser_cursor` (tokens, ParseError), `parser_commands` (the Command classes), `parser_search`,
`parser_fetch` and `parser_mailbox` (argument grammars); this module holds the framing helpers, the
command table and the grammars of the remaining commands. Everything a server needs is re-exported here.

Invariants: `parse_command` raises only `ParseError` (its `tag` set whenever the tag could be read; the
subclass `UnsupportedCharset` asks for `NO [BADCHARSET]`); command names are upper-case and `uid` is True only
for the UID forms of COPY, MOVE, FETCH, SEARCH, SORT, THREAD, STORE, EXPUNGE and REPLACE.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass

from relentad.imap.parser_commands import (
    Acl,
    Append,
    AppendMessage,
    Authenticate,
    Command,
    Compress,
    CopyMove,
    Create,
    Enable,
    Expunge,
    Fetch,
    GetQuota,
    Id,
    List,
    Login,
    MailboxCommand,
    NoArgs,
    Qresync,
    Rename,
    Search,
    Select,
    SetQuota,
    Sort,
    SortKey,
    Status,
    Store,
    Thread,
)
from relentad.imap.parser_cursor import TAG_CHARS, Cursor, ParseError
from relentad.imap.parser_fetch import (
    FetchAttribute,
    FetchBody,
    FetchItem,
    Partial,
    Section,
    parse_fetch_attributes,
)
from relentad.imap.parser_mailbox import (
    parse_acl,
    parse_append,
    parse_create,
    parse_list,
    parse_lsub,
    parse_mailbox_only,
    parse_rename,
    parse_select,
    parse_status,
)
from relentad.imap.parser_replace import Replace, parse_replace, replace_target
from relentad.imap.parser_search import (
    SearchAge,
    SearchAnd,
    SearchDate,
    SearchHeader,
    SearchKey,
    SearchKeyword,
    SearchModseq,
    SearchNot,
    SearchObjectId,
    SearchOr,
    SearchSequence,
    SearchSimple,
    SearchSize,
    SearchText,
    SearchUid,
    UnsupportedCharset,
    parse_returns,
    parse_search_program,
)
from relentad.imap.parser_sort import parse_sort, parse_thread

__all__ = [
    "COMMANDS",
    "UID_COMMANDS",
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
    "FetchAttribute",
    "FetchBody",
    "FetchItem",
    "GetQuota",
    "Id",
    "List",
    "LiteralSpec",
    "Login",
    "MailboxCommand",
    "NoArgs",
    "ParseError",
    "Partial",
    "Qresync",
    "Rename",
    "Replace",
    "Search",
    "SearchAge",
    "SearchAnd",
    "SearchDate",
    "SearchHeader",
    "SearchKey",
    "SearchKeyword",
    "SearchModseq",
    "SearchNot",
    "SearchObjectId",
    "SearchOr",
    "SearchSequence",
    "SearchSimple",
    "SearchSize",
    "SearchText",
    "SearchUid",
    "Section",
    "Select",
    "SetQuota",
    "Sort",
    "SortKey",
    "Status",
    "Store",
    "Thread",
    "UnsupportedCharset",
    "is_done",
    "line_tag",
    "message_literal",
    "parse_command",
    "pending_literal",
    "replace_target",
]

# -- framing ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiteralSpec:
    """A literal announced at the end of a line.

    size: octets to read next. synchronizing: `{n}`, so the server must send a `+` continuation first (or
    refuse with a tagged NO/BAD); `{n+}` (LITERAL+, RFC 7888) is False, and a server offering only LITERAL-
    must refuse such literals above 4096 octets. binary: `~{n}` literal8 (RFC 3516, APPEND only).
    """

    size: int
    synchronizing: bool
    binary: bool


def pending_literal(line: bytes) -> LiteralSpec | None:
    """Whether `line` (one line as read, ending in CRLF) ends with a literal announcement.

    Call it on each newly read line only, never on literal data, which is length-framed.
    """
    body = line.removesuffix(b"\n").removesuffix(b"\r")
    if not body.endswith(b"}"):
        return None
    start = body.rfind(b"{")
    if start < 0:
        return None
    inner = body[start + 1 : -1]
    synchronizing = not inner.endswith(b"+")
    digits = inner if synchronizing else inner[:-1]
    if not digits or len(digits) > 19 or not digits.isdigit():
        return None
    return LiteralSpec(int(digits), synchronizing, body[start - 1 : start] == b"~")


_APPEND = re.compile(rb"[^ ]+ (?:APPEND|(?:UID )?REPLACE [^ ]+) ", re.IGNORECASE)
_APPEND_MAILBOX_LITERAL = re.compile(rb"[^ ]+ (?:APPEND|(?:UID )?REPLACE [^ ]+) ~?\{[0-9]+\+?\}\r?\n?", re.IGNORECASE)


def message_literal(first: bytes, *, opening: bool) -> bool:
    """Whether a literal is a message of an APPEND or REPLACE: ``first`` is the command's first line, ``opening``
    says the literal ends that line (else it ends a line after one of the command's literals). Every literal of
    an APPEND is a message (MULTIAPPEND has several) but the mailbox name, when it is one (``tag APPEND {5}``)."""
    if not _APPEND.match(first):
        return False
    return not opening or _APPEND_MAILBOX_LITERAL.fullmatch(first) is None


def is_done(line: bytes) -> bool:
    """Whether a line received during IDLE is `DONE` (any case), which ends the IDLE (RFC 2177)."""
    return line.upper() in (b"DONE\r\n", b"DONE\n", b"DONE")


def line_tag(line: bytes) -> str | None:
    """The tag at the start of a line, for answering `<tag> BAD` before parsing (e.g. literal too big)."""
    cur = Cursor(line)
    raw = cur.take(TAG_CHARS)
    if not raw or cur.peek() != ord(" "):
        return None
    return raw.decode("ascii")


# -- command grammars -------------------------------------------------------------------------------------------

Handler = Callable[[Cursor, str, str], Command]
UidHandler = Callable[[Cursor, str, str, bool], Command]

_BASE64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _no_args(cur: Cursor, tag: str, name: str) -> NoArgs:
    return NoArgs(tag=tag, name=name)


def _authenticate(cur: Cursor, tag: str, name: str) -> Authenticate:
    """AUTHENTICATE SP auth-type [SP (base64 / "=")] (RFC 4959 SASL-IR)."""
    cur.sp()
    mechanism = cur.keyword("SASL mechanism")
    initial: bytes | None = None
    if cur.more():
        if cur.skip(b"="):
            initial = b""
        else:
            encoded = cur.take(_BASE64_CHARS)
            try:
                initial = base64.b64decode(encoded, validate=True) if encoded else None
            except (binascii.Error, ValueError):
                initial = None
            if initial is None or len(encoded) % 4:
                cur.fail("initial response is not valid base64")
    return Authenticate(tag=tag, name=name, mechanism=mechanism, initial_response=initial)


def _login(cur: Cursor, tag: str, name: str) -> Login:
    """LOGIN SP userid SP password (astrings, UTF-8)."""
    cur.sp()
    username = cur.astring_text("user name")
    cur.sp()
    return Login(tag=tag, name=name, username=username, password=cur.astring_text("password"))


def _enable(cur: Cursor, tag: str, name: str) -> Enable:
    """ENABLE 1*(SP capability) (RFC 5161)."""
    cur.sp()
    capabilities = [cur.keyword("capability name")]
    while cur.more():
        capabilities.append(cur.keyword("capability name"))
    return Enable(tag=tag, name=name, capabilities=tuple(dict.fromkeys(capabilities)))


def _expunge(cur: Cursor, tag: str, name: str, uid: bool) -> Command:
    """EXPUNGE, or UID EXPUNGE SP sequence-set (RFC 4315 §2.1)."""
    if not uid:
        return NoArgs(tag=tag, name=name)
    cur.sp()
    return Expunge(tag=tag, name=name, uid=True, sequence_set=cur.sequence_set("UID set"))


def _search(cur: Cursor, tag: str, name: str, uid: bool) -> Search:
    """SEARCH [SP RETURN (opts)] [SP CHARSET SP charset] SP search-key *(SP search-key)."""
    cur.sp()
    returns = parse_returns(cur)
    charset: str | None = None
    try:
        if cur.skip(b"CHARSET "):
            quoted = cur.peek() == ord('"')
            charset = (cur.text(cur.quoted(), "charset") if quoted else cur.atom("charset name")).upper()
            cur.sp()
        key = parse_search_program(cur, charset)
    except ParseError as exc:
        exc.resets_saved = returns is not None and "SAVE" in returns
        raise
    return Search(tag=tag, name=name, uid=uid, key=key, charset=charset, returns=returns)


def _fetch(cur: Cursor, tag: str, name: str, uid: bool) -> Fetch:
    """FETCH SP sequence-set SP (macro / att / (atts)) [SP (CHANGEDSINCE n [VANISHED])] (RFC 7162)."""
    cur.sp()
    sequence_set = cur.sequence_set()
    cur.sp()
    attributes = parse_fetch_attributes(cur)
    changed_since: int | None = None
    vanished = False
    if cur.more():

        def modifier() -> None:
            nonlocal changed_since, vanished
            word = cur.keyword("FETCH modifier")
            if word == "CHANGEDSINCE" and changed_since is None:
                cur.sp()
                changed_since = cur.number("mod-sequence value", bits=63)
            elif word == "VANISHED" and not vanished:
                vanished = True
            else:
                cur.fail(f"unknown or repeated FETCH modifier {word}")

        cur.paren_list(modifier, allow_empty=False)
        if vanished and (not uid or changed_since is None):
            cur.fail("VANISHED requires UID FETCH and CHANGEDSINCE")
    return Fetch(
        tag=tag,
        name=name,
        uid=uid,
        sequence_set=sequence_set,
        attributes=attributes,
        changed_since=changed_since,
        vanished=vanished,
    )


_STORE_ACTIONS = {"FLAGS": "replace", "+FLAGS": "add", "-FLAGS": "remove"}
_STORE_CHARS = frozenset(b"+-.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _store(cur: Cursor, tag: str, name: str, uid: bool) -> Store:
    """STORE SP sequence-set [SP (UNCHANGEDSINCE n)] SP [+-]FLAGS[.SILENT] SP (flag-list / flag...)."""
    cur.sp()
    sequence_set = cur.sequence_set()
    cur.sp()
    unchanged_since: int | None = None
    if cur.peek() == ord("("):

        def modifier() -> None:
            nonlocal unchanged_since
            if cur.keyword("STORE modifier") != "UNCHANGEDSINCE" or unchanged_since is not None:
                cur.fail("unknown or repeated STORE modifier; only UNCHANGEDSINCE is supported")
            cur.sp()
            unchanged_since = cur.number("mod-sequence value", bits=63)

        cur.paren_list(modifier, allow_empty=False)
        cur.sp()
    start = cur.pos
    word = cur.take(_STORE_CHARS).decode("ascii").upper()
    base, silent_suffix, rest = word.partition(".")
    action = _STORE_ACTIONS.get(base)
    if action is None or (silent_suffix and rest != "SILENT"):
        cur.pos = start
        cur.fail("expected FLAGS, +FLAGS or -FLAGS, optionally with .SILENT")
    cur.sp()
    if cur.peek() == ord("("):
        flags = cur.flag_list(settable=True)
    else:
        flag_items = [cur.flag(settable=True)]
        while cur.more():
            flag_items.append(cur.flag(settable=True))
        flags = tuple(flag_items)
    return Store(
        tag=tag,
        name=name,
        uid=uid,
        sequence_set=sequence_set,
        action=action,
        silent=bool(silent_suffix),
        flags=tuple(dict.fromkeys(flags)),
        unchanged_since=unchanged_since,
    )


def _copy_move(cur: Cursor, tag: str, name: str, uid: bool) -> CopyMove:
    """COPY / MOVE SP sequence-set SP mailbox (RFC 6851 for MOVE)."""
    cur.sp()
    sequence_set = cur.sequence_set()
    cur.sp()
    return CopyMove(tag=tag, name=name, uid=uid, sequence_set=sequence_set, mailbox=cur.mailbox())


def _getquota(cur: Cursor, tag: str, name: str) -> GetQuota:
    """GETQUOTA SP quota-root (RFC 9208 §4.1)."""
    cur.sp()
    return GetQuota(tag=tag, name=name, root=cur.astring_text("quota root"))


def _setquota(cur: Cursor, tag: str, name: str) -> SetQuota:
    """SETQUOTA SP quota-root SP "(" [resource SP limit *(SP resource SP limit)] ")" (RFC 9208 §4.3)."""
    cur.sp()
    root = cur.astring_text("quota root")
    cur.sp()

    def limit() -> tuple[str, int]:
        resource = cur.keyword("quota resource name")
        cur.sp()
        return resource, cur.number("quota limit", bits=63)

    return SetQuota(tag=tag, name=name, root=root, limits=tuple(cur.paren_list(limit)))


def _id(cur: Cursor, tag: str, name: str) -> Id:
    """ID SP ("(" string SP nstring *(SP string SP nstring) ")" / NIL) (RFC 2971)."""
    cur.sp()
    if cur.skip(b"NIL"):
        return Id(tag=tag, name=name, params=None)

    def pair() -> tuple[str, str | None]:
        field = cur.text(cur.string(), "ID field")
        cur.sp()
        value = cur.nstring()
        return field, None if value is None else cur.text(value, "ID value")

    return Id(tag=tag, name=name, params=tuple(cur.paren_list(pair)))


def _compress(cur: Cursor, tag: str, name: str) -> Compress:
    """COMPRESS SP algorithm (RFC 4978)."""
    cur.sp()
    return Compress(tag=tag, name=name, mechanism=cur.keyword("compression algorithm"))


def _plain(handler: Handler) -> UidHandler:
    def call(cur: Cursor, tag: str, name: str, uid: bool) -> Command:
        return handler(cur, tag, name)

    return call


UID_COMMANDS: dict[str, UidHandler] = {
    "COPY": _copy_move,
    "MOVE": _copy_move,
    "FETCH": _fetch,
    "SEARCH": _search,
    "SORT": parse_sort,
    "THREAD": parse_thread,
    "STORE": _store,
    "EXPUNGE": _expunge,
    "REPLACE": parse_replace,
}
"""Commands that also exist as `UID <name>`."""

COMMANDS: dict[str, UidHandler] = {
    **{
        name: _plain(_no_args)
        for name in ("CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "IDLE", "CHECK", "CLOSE", "UNSELECT", "NAMESPACE")
    },
    "AUTHENTICATE": _plain(_authenticate),
    "LOGIN": _plain(_login),
    "ENABLE": _plain(_enable),
    "SELECT": _plain(parse_select),
    "EXAMINE": _plain(parse_select),
    "CREATE": _plain(parse_create),
    "DELETE": _plain(parse_mailbox_only),
    "RENAME": _plain(parse_rename),
    "SUBSCRIBE": _plain(parse_mailbox_only),
    "UNSUBSCRIBE": _plain(parse_mailbox_only),
    "LIST": _plain(parse_list),
    "LSUB": _plain(parse_lsub),
    "STATUS": _plain(parse_status),
    "APPEND": _plain(parse_append),
    "GETQUOTA": _plain(_getquota),
    "GETQUOTAROOT": _plain(parse_mailbox_only),
    "SETQUOTA": _plain(_setquota),
    "MYRIGHTS": _plain(parse_mailbox_only),
    "GETACL": _plain(parse_mailbox_only),
    "SETACL": _plain(parse_acl),
    "DELETEACL": _plain(parse_acl),
    "LISTRIGHTS": _plain(parse_acl),
    "ID": _plain(_id),
    "COMPRESS": _plain(_compress),
    **UID_COMMANDS,
}
"""Every command name the parser knows (the server's per-state tables pick from these)."""


def _command(cur: Cursor, tag: str) -> Command:
    name = cur.keyword("command name")
    uid = name == "UID"
    if uid:
        cur.sp()
        name = cur.keyword("command after UID")
        handler = UID_COMMANDS.get(name)
        if handler is None:
            raise ParseError(tag, f"UID {name} is not a command; use {', '.join(UID_COMMANDS)}")
    else:
        handler = COMMANDS.get(name)
        if handler is None:
            raise ParseError(tag, f"unknown command {name}")
    try:
        command = handler(cur, tag, name, uid)
        cur.end()
    except ParseError as exc:
        exc.tag = tag
        exc.text = f"{'UID ' if uid else ''}{name}: {exc.text}"
        raise
    return command


def parse_command(buffer: bytes, *, utf8: bool = False) -> Command:
    """Parse one complete command (line(s) with literal bytes spliced in, final CRLF optional).

    utf8: the session enabled UTF8=ACCEPT or IMAP4rev2, so mailbox names are UTF-8 rather than modified UTF-7.
    Raises ParseError (with `tag` when one could be read) for every malformed input and nothing else.
    """
    cur = Cursor(buffer, utf8=utf8)
    if cur.at_end():
        raise ParseError(None, "empty command line")
    raw_tag = cur.take(TAG_CHARS)
    if not raw_tag:
        raise ParseError(None, "missing or invalid tag")
    tag = raw_tag.decode("ascii")
    if cur.peek() != ord(" "):
        raise ParseError(tag if cur.at_end() else None, "expected a space and a command after the tag")
    cur.pos += 1
    try:
        return _command(cur, tag)
    except ParseError as exc:
        exc.tag = tag
        raise
