"""SEARCH programs: the typed key tree and its parser (RFC 3501 §6.4.4, RFC 9051 §6.4.4, RFC 7162 MODSEQ,
RFC 5032 OLDER/YOUNGER, RFC 8514 SAVEDATE, RFC 5182 `$`, RFC 8474 EMAILID/THREADID).

A program is one `SearchKey`; several top-level or parenthesized keys become `SearchAnd`. Key names are
upper-case strings so the evaluator can dispatch on them (`SearchSimple("UNSEEN")`, `SearchDate("SINCE", ...)`).

Invariants: strings are already decoded from the command's CHARSET to str; nesting (parentheses, NOT, OR) is
bounded by the cursor's depth limit; an unknown CHARSET raises `UnsupportedCharset`, a ParseError the server
answers with `NO [BADCHARSET (UTF-8 US-ASCII)]`.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from datetime import date
from typing import TypeAlias

from relentad.imap.parser_cursor import Cursor, ParseError
from relentad.imap.sequence import SequenceSet

__all__ = [
    "SIMPLE_KEYS",
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
    "UnsupportedCharset",
    "parse_returns",
    "parse_search_program",
]

SIMPLE_KEYS = frozenset(
    (
        "ALL",
        "ANSWERED",
        "DELETED",
        "DRAFT",
        "FLAGGED",
        "NEW",
        "OLD",
        "RECENT",
        "SEEN",
        "UNANSWERED",
        "UNDELETED",
        "UNDRAFT",
        "UNFLAGGED",
        "UNSEEN",
        "SAVEDATESUPPORTED",
    )
)
TEXT_KEYS = frozenset(
    (
        "BCC",
        "BODY",
        "CC",
        "FROM",
        "SUBJECT",
        "TEXT",
        "TO",
    )
)
DATE_KEYS = frozenset(
    (
        "BEFORE",
        "ON",
        "SINCE",
        "SENTBEFORE",
        "SENTON",
        "SENTSINCE",
        "SAVEDBEFORE",
        "SAVEDON",
        "SAVEDSINCE",
    )
)
RETURN_OPTIONS = frozenset(("MIN", "MAX", "ALL", "COUNT", "SAVE"))
"""ESEARCH / ESORT result options (RFC 4731, RFC 5182 SAVE, RFC 5267)."""
OTHER_KEYS = frozenset(
    ("KEYWORD", "UNKEYWORD", "LARGER", "SMALLER", "OLDER", "YOUNGER", "UID", "HEADER", "MODSEQ", "EMAILID", "THREADID")
)


class UnsupportedCharset(ParseError):
    """SEARCH named a charset we cannot decode: answer `NO [BADCHARSET ...]`, not BAD."""

    def __init__(self, tag: str | None, charset: str) -> None:
        super().__init__(tag, f"unsupported charset {charset}")
        self.charset = charset


@dataclass(frozen=True)
class SearchSimple:
    """A key without argument: ALL, SEEN, UNSEEN, NEW, OLD, RECENT, ..."""

    key: str


@dataclass(frozen=True)
class SearchKeyword:
    """KEYWORD / UNKEYWORD flag (a keyword atom or a system flag such as `\\Seen`)."""

    key: str
    flag: str


@dataclass(frozen=True)
class SearchText:
    """BCC, BODY, CC, FROM, SUBJECT, TEXT, TO: case-insensitive substring match."""

    key: str
    value: str


@dataclass(frozen=True)
class SearchHeader:
    """HEADER field-name string; an empty value matches every message having the field."""

    field: str
    value: str


@dataclass(frozen=True)
class SearchDate:
    """BEFORE/ON/SINCE (internal date), SENT* (Date: header), SAVED* (save date): day granularity."""

    key: str
    date: date


@dataclass(frozen=True)
class SearchSize:
    """LARGER / SMALLER n octets (RFC822.SIZE)."""

    key: str
    size: int


@dataclass(frozen=True)
class SearchAge:
    """OLDER / YOUNGER n seconds relative to the internal date (RFC 5032 WITHIN)."""

    key: str
    seconds: int


@dataclass(frozen=True)
class SearchSequence:
    """A message sequence set (may be `$`, which then stands for the saved UIDs)."""

    sequence_set: SequenceSet


@dataclass(frozen=True)
class SearchUid:
    """UID sequence-set (may be `$`)."""

    sequence_set: SequenceSet


@dataclass(frozen=True)
class SearchModseq:
    """MODSEQ [entry-name entry-type] n (RFC 7162 §3.1.5): messages with modseq >= n."""

    modseq: int
    entry_name: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True)
class SearchObjectId:
    """EMAILID / THREADID objectid (RFC 8474 §6): the messages with that id."""

    key: str
    value: str


@dataclass(frozen=True)
class SearchNot:
    key: SearchKey


@dataclass(frozen=True)
class SearchOr:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True)
class SearchAnd:
    """All keys must match (a parenthesized list, or several keys in a row)."""

    keys: tuple[SearchKey, ...]


SearchKey: TypeAlias = (
    SearchSimple
    | SearchKeyword
    | SearchText
    | SearchHeader
    | SearchDate
    | SearchSize
    | SearchAge
    | SearchSequence
    | SearchUid
    | SearchModseq
    | SearchObjectId
    | SearchNot
    | SearchOr
    | SearchAnd
)
"""Any node of a search program; a real union, so `isinstance(node, SearchKey)` works too."""

_SEQ_START = frozenset(b"0123456789*$")
_HEADER_NAME_CHARS = frozenset(range(0x21, 0x7F)) - {ord(":")}
_ENTRY_TYPES = frozenset(("priv", "shared", "all"))
_OBJECTID_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class _SearchParser:
    """One SEARCH program over a cursor; `codec` decodes the string arguments, `charset` names it."""

    def __init__(self, cursor: Cursor, codec: str, charset: str) -> None:
        self.cur = cursor
        self.codec = codec
        self.charset = charset

    def string(self) -> str:
        start = self.cur.pos
        raw = self.cur.astring("search string")
        try:
            return raw.decode(self.codec)
        except (UnicodeError, ValueError, LookupError):
            self.cur.pos = start
            self.cur.fail(f"search string is not valid {self.charset}")

    def keys_and(self, keys: list[SearchKey]) -> SearchKey:
        return keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))

    def program(self) -> SearchKey:
        keys = [self.key()]
        while self.cur.more():
            keys.append(self.key())
        return self.keys_and(keys)

    def key(self) -> SearchKey:
        cur = self.cur
        if cur.peek() == ord("("):
            return self.keys_and(cur.paren_list(self.key, allow_empty=False))
        if cur.peek() in _SEQ_START:
            return SearchSequence(cur.sequence_set())
        word = cur.keyword("search key")
        if word in SIMPLE_KEYS:
            return SearchSimple(word)
        if word in ("NOT", "OR"):
            cur.enter()
            cur.sp()
            first = self.key()
            result: SearchKey
            if word == "NOT":
                result = SearchNot(first)
            else:
                cur.sp()
                result = SearchOr(first, self.key())
            cur.leave()
            return result
        if word not in TEXT_KEYS and word not in DATE_KEYS and word not in OTHER_KEYS:
            cur.fail(f"unknown search key {word}")
        cur.sp()
        return self.key_with_argument(word)

    def key_with_argument(self, word: str) -> SearchKey:
        cur = self.cur
        if word in TEXT_KEYS:
            return SearchText(word, self.string())
        if word in DATE_KEYS:
            return SearchDate(word, cur.date())
        if word in ("KEYWORD", "UNKEYWORD"):
            return SearchKeyword(word, cur.flag())
        if word in ("LARGER", "SMALLER"):
            return SearchSize(word, cur.number("size", bits=63))
        if word in ("OLDER", "YOUNGER"):
            return SearchAge(word, cur.number("interval in seconds", nonzero=True))
        if word == "UID":
            return SearchUid(cur.sequence_set("UID set"))
        if word == "HEADER":
            name = cur.astring("header field name")
            if not name or not all(c in _HEADER_NAME_CHARS for c in name):
                cur.fail("invalid header field name")
            cur.sp()
            return SearchHeader(name.decode("ascii"), self.string())
        if word in ("EMAILID", "THREADID"):
            value = cur.take(_OBJECTID_CHARS)
            if not 0 < len(value) <= 255:
                cur.fail("expected an object id (1 to 255 letters, digits, _ and -)")
            return SearchObjectId(word, value.decode("ascii"))
        return self.modseq()

    def modseq(self) -> SearchModseq:
        """MODSEQ [entry-name SP entry-type-req SP] mod-sequence-valzer."""
        cur = self.cur
        entry_name = entry_type = None
        if cur.peek() == ord('"'):
            entry_name = cur.text(cur.quoted(), "MODSEQ entry name")
            if not entry_name.startswith("/flags/"):
                cur.fail('MODSEQ entry name must start with "/flags/"')
            cur.sp()
            entry_type = cur.atom("MODSEQ entry type (priv, shared or all)").lower()
            if entry_type not in _ENTRY_TYPES:
                cur.fail("MODSEQ entry type must be priv, shared or all")
            cur.sp()
        return SearchModseq(cur.number("mod-sequence value", bits=63), entry_name, entry_type)


_TEXT_CODEC_PREFIXES = (
    "utf-",
    "ascii",
    "latin",
    "iso8859",
    "cp",
    "koi8",
    "mac",
    "gb",
    "big5",
    "shift_jis",
    "euc",
    "iso2022",
    "johab",
    "tis",
)


def charset_codec(charset: str) -> str | None:
    """The Python codec for a SEARCH CHARSET name, or None unless it is a mail text charset we know.

    Only text charsets qualify: Python also has codecs such as base64, rot13 or idna that are not charsets.
    """
    try:
        codec = codecs.lookup(charset).name
    except (LookupError, ValueError):
        return None
    return codec if codec.startswith(_TEXT_CODEC_PREFIXES) else None


def parse_search_program(cursor: Cursor, charset: str | None) -> SearchKey:
    """search-key *(SP search-key) up to the end of the command; charset None means UTF-8."""
    codec = "utf-8" if charset is None else charset_codec(charset)
    if codec is None:
        raise UnsupportedCharset(None, charset or "")
    return _SearchParser(cursor, codec, charset or "UTF-8").program()


def parse_returns(cur: Cursor) -> tuple[str, ...] | None:
    """[RETURN SP (opts) SP] before a SEARCH or SORT program: None without it; `RETURN ()` means ALL."""
    if not cur.skip(b"RETURN "):
        return None
    options = cur.paren_list(lambda: cur.keyword("search return option"))
    unknown = set(options) - RETURN_OPTIONS
    if unknown:
        cur.fail(f"unknown search return option {min(unknown)}")
    cur.sp()
    return tuple(dict.fromkeys(options)) or ("ALL",)
