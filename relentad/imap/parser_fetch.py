"""FETCH attributes: typed items and their parser (RFC 3501 §6.4.5, RFC 9051 §6.4.5, RFC 3516 BINARY,
RFC 7162 MODSEQ, RFC 8514 SAVEDATE, RFC 8474 EMAILID/THREADID, RFC 8970 PREVIEW).

`FetchItem` is an attribute without section (FLAGS, ENVELOPE, BODY, RFC822.SIZE, ...); `FetchBody` is
BODY[section]<partial>, BODY.PEEK[...], BINARY[part]<partial>, BINARY.PEEK[...] and BINARY.SIZE[part]. The
macros ALL, FAST and FULL are expanded here, so the server only sees items. `PREVIEW (LAZY)` is PREVIEW: the
server has no cache to miss and always computes the preview (RFC 8970 §3.1 lets it).

Invariants: names are upper-case; `reply_name()` gives the exact name the FETCH response must use (PEEK
dropped, partial reduced to `<origin>`); BINARY sections only carry part numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from relentad.imap.parser_cursor import Cursor
from relentad.imap.responses import astring

__all__ = [
    "MACROS",
    "SIMPLE_ITEMS",
    "FetchAttribute",
    "FetchBody",
    "FetchItem",
    "Partial",
    "Section",
    "parse_fetch_attributes",
]

SIMPLE_ITEMS = frozenset(
    (
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
        "SAVEDATE",
        "EMAILID",
        "THREADID",
        "PREVIEW",
    )
)

_SECTION_TEXTS = frozenset(("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"))
_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")
_SPEC_CHARS = _NAME_CHARS
_HEADER_NAME_CHARS = frozenset(range(0x21, 0x7F)) - {ord(":")}


@dataclass(frozen=True)
class Section:
    """section-spec: part numbers (`1.2` → (1, 2)), then HEADER / HEADER.FIELDS[.NOT] / TEXT / MIME."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        spec = ".".join([*(str(n) for n in self.part), *([self.text] if self.text else [])])
        if self.fields:
            names = b" ".join(astring(name) for name in self.fields).decode("ascii")
            spec += f" ({names})"
        return spec


@dataclass(frozen=True)
class Partial:
    """`<offset.length>`: a byte range of the section."""

    offset: int
    length: int


@dataclass(frozen=True)
class FetchItem:
    """An attribute without section, e.g. FLAGS, UID, ENVELOPE, BODY (structure), RFC822.HEADER."""

    name: str

    def reply_name(self) -> str:
        return self.name


@dataclass(frozen=True)
class FetchBody:
    """BODY[...] (kind "BODY"), BINARY[...] ("BINARY") or BINARY.SIZE[...] ("BINARY.SIZE").

    peek: BODY.PEEK / BINARY.PEEK, which must not set \\Seen.
    """

    kind: str
    section: Section
    peek: bool = False
    partial: Partial | None = None

    def reply_name(self) -> str:
        """`BODY[1.HEADER]<0>`-style name for the FETCH response."""
        origin = f"<{self.partial.offset}>" if self.partial else ""
        return f"{self.kind}[{self.section}]{origin}"

    @property
    def sets_seen(self) -> bool:
        return self.kind != "BINARY.SIZE" and not self.peek


FetchAttribute: TypeAlias = FetchItem | FetchBody

MACROS: dict[str, tuple[FetchAttribute, ...]] = {
    "FAST": (FetchItem("FLAGS"), FetchItem("INTERNALDATE"), FetchItem("RFC822.SIZE")),
    "ALL": (FetchItem("FLAGS"), FetchItem("INTERNALDATE"), FetchItem("RFC822.SIZE"), FetchItem("ENVELOPE")),
    "FULL": (
        FetchItem("FLAGS"),
        FetchItem("INTERNALDATE"),
        FetchItem("RFC822.SIZE"),
        FetchItem("ENVELOPE"),
        FetchItem("BODY"),
    ),
}


def _header_field(cur: Cursor) -> str:
    name = cur.astring("header field name")
    if not name or not all(c in _HEADER_NAME_CHARS for c in name):
        cur.fail("invalid header field name")
    return name.decode("ascii")


def _section(cur: Cursor, *, binary: bool) -> Section:
    """`[` section-spec `]`; for BINARY only `[` section-part `]`."""
    cur.expect(b"[", '"[" starting the section')
    start = cur.pos
    spec = cur.take(_SPEC_CHARS).decode("ascii")
    pieces = spec.split(".") if spec else []
    part: list[int] = []
    while pieces and pieces[0].isdigit():
        number = pieces.pop(0)
        if number.startswith("0") or len(number) > 10 or int(number) > 0xFFFFFFFF:
            cur.pos = start
            cur.fail("section part numbers must be non-zero numbers")
        part.append(int(number))
    text = ".".join(pieces).upper() or None
    if text is not None and (binary or text not in _SECTION_TEXTS or (text == "MIME" and not part)):
        cur.pos = start
        cur.fail("invalid section; expected part numbers, HEADER, HEADER.FIELDS[.NOT], TEXT or MIME")
    fields: tuple[str, ...] = ()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        cur.sp()
        fields = tuple(cur.paren_list(lambda: _header_field(cur), allow_empty=False))
    cur.expect(b"]", '"]" closing the section')
    return Section(tuple(part), text, fields)


def _partial(cur: Cursor) -> Partial | None:
    if not cur.skip(b"<"):
        return None
    offset = cur.number("partial offset", bits=63)
    cur.expect(b".", '"." in partial range')
    length = cur.number("partial length", nonzero=True, bits=63)
    cur.expect(b">", '">" closing the partial range')
    return Partial(offset, length)


def _attribute(cur: Cursor) -> FetchAttribute:
    start = cur.pos
    name = cur.take(_NAME_CHARS).decode("ascii").upper()
    if cur.peek() == ord("["):
        if name in ("BODY", "BODY.PEEK"):
            return FetchBody("BODY", _section(cur, binary=False), name == "BODY.PEEK", _partial(cur))
        if name in ("BINARY", "BINARY.PEEK"):
            return FetchBody("BINARY", _section(cur, binary=True), name == "BINARY.PEEK", _partial(cur))
        if name == "BINARY.SIZE":
            return FetchBody("BINARY.SIZE", _section(cur, binary=True))
    elif name in SIMPLE_ITEMS:
        if name == "PREVIEW":
            cur.skip(b" (LAZY)")  # the one preview modifier (RFC 8970 §5); "(" opens no next attribute
        return FetchItem(name)
    cur.pos = start
    raise cur.error("expected fetch attribute")


def parse_fetch_attributes(cur: Cursor) -> tuple[FetchAttribute, ...]:
    """fetch-att, `(` fetch-att *(SP fetch-att) `)`, or a macro ALL / FAST / FULL."""
    if cur.peek() == ord("("):
        return tuple(cur.paren_list(lambda: _attribute(cur), allow_empty=False))
    start = cur.pos
    word = cur.take(_NAME_CHARS).decode("ascii").upper()
    macro = MACROS.get(word)
    if macro is not None and cur.peek() != ord("["):
        return macro
    cur.pos = start
    return (_attribute(cur),)
