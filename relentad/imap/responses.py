"""Rendering IMAP responses: a small data tree in, wire bytes out (RFC 3501 §7, RFC 9051 §7).

`ImapValue` is what every command module hands us: str/bytes become a quoted string when that is safe and
short, otherwise a literal `{n}` (str is UTF-8); int is a number; None is NIL; `Atom` is written as-is
(`\\Seen`, `FETCH`, `BODY[1.TEXT]`); `Literal8` is a binary `~{n}` literal (RFC 3516); a sequence is a
parenthesized, space separated list, except that the lists at the start of a list are written back to back:
that is the grammar's `"(" 1*address ")"` (ENVELOPE address lists), `1*body SP media-subtype` (multipart
BODYSTRUCTURE) and `"(" 1*namespace-descr ")"` (NAMESPACE), while lists after any other element keep their
SP (`env-from SP env-sender`, `body-fld-param SP body-fld-dsp`). So ENVELOPE and BODYSTRUCTURE, supplied as
nested lists of str | int | None, come out exactly as RFC 3501/9051 write them, with no special cases.
(THREAD, which we do not offer, would not fit this rule.)

Invariants: output never contains a bare CR or LF outside a literal, so a response can never be split or
injected by data; every line ends with CRLF. Programming errors (negative numbers, CR/LF in an Atom or
response code) raise ValueError rather than producing bad syntax.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from relentad.imap import mutf7

__all__ = [
    "Atom",
    "ImapValue",
    "Literal8",
    "Rendered",
    "ResponseCode",
    "astring",
    "continuation",
    "flag_list",
    "format_date_time",
    "mailbox_name",
    "mailbox_value",
    "render",
    "tagged",
    "untagged",
    "untagged_status",
]

MAX_QUOTED = 1024
"""Longer strings go out as literals: they are cheaper to parse and escape-free."""

_ATOM_SPECIALS = frozenset(b'(){ %*"\\]')
_ASTRING_CHARS = frozenset(c for c in range(0x21, 0x7F) if c not in _ATOM_SPECIALS) | {ord("]")}
_QUOTABLE = frozenset(range(0x20, 0x7F)) | {ord("\t")}


@dataclass(frozen=True)
class Atom:
    """Text written verbatim (flags, keywords, response names); the caller vouches for its syntax."""

    text: str

    def __post_init__(self) -> None:
        if not self.text or any(c in self.text for c in "\r\n\0"):
            raise ValueError(f"invalid IMAP atom {self.text!r}")

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Literal8:
    """Binary content for BINARY[] replies, always sent as a `~{n}` literal8."""

    data: bytes


@dataclass(frozen=True)
class Rendered:
    """A parenthesized list rendered earlier by :func:`render` (a cached ENVELOPE or BODYSTRUCTURE): written as
    it is, and spaced as the list it stands for."""

    data: bytes


ImapValue: TypeAlias = "str | bytes | int | Atom | Literal8 | Rendered | Sequence[ImapValue] | None"


def _utf8(text: str) -> bytes:
    """UTF-8 for the wire; bytes smuggled in by surrogateescape come back as they were, and any other
    lone surrogate (malformed stored data) becomes "?" rather than breaking a FETCH."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


_QUOTABLE_BYTES = bytes(sorted(_QUOTABLE))


def _quotable(data: bytes, utf8: bool) -> bool:
    """Every octet is quotable (or, with utf8, 8-bit); bytes.translate keeps this in C (FETCH renders a lot)."""
    rest = data.translate(None, _QUOTABLE_BYTES)
    return not rest or (utf8 and min(rest) >= 0x80)


def _literal(data: bytes) -> bytes:
    """A ``{n}`` literal. Its octets are CHAR8, which excludes NUL (RFC 9051 §4.3, §9): a message stored with NUL
    octets (SMTP and APPEND keep what they were sent) has them as 0x80 here, as Dovecot does, the length
    unchanged; BINARY[] (a ``~{n}`` :class:`Literal8`) returns them as they are."""
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")
    return b"{%d}\r\n" % len(data) + data


def _string(data: bytes, *, utf8: bool) -> bytes:
    if len(data) <= MAX_QUOTED and _quotable(data, utf8):
        if utf8 and not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                return _literal(data)
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return _literal(data)


def _render_into(value: ImapValue, out: list[bytes], utf8: bool) -> None:
    if value is None:
        out.append(b"NIL")
    elif isinstance(value, str):
        out.append(_string(_utf8(value), utf8=utf8))
    elif isinstance(value, bytes):
        out.append(_string(value, utf8=utf8))
    elif isinstance(value, int):
        if value < 0:
            raise ValueError(f"IMAP numbers are unsigned, got {value}")
        out.append(b"%d" % value)
    elif isinstance(value, Atom):
        out.append(_utf8(value.text))
    elif isinstance(value, Literal8):
        out.append(b"~{%d}\r\n" % len(value.data) + value.data)
    elif isinstance(value, Rendered):
        out.append(value.data)
    else:
        out.append(b"(")
        leading = True
        for index, item in enumerate(value):
            is_list = item is not None and not isinstance(item, str | bytes | int | Atom | Literal8)
            if index and not (leading and is_list):
                out.append(b" ")
            leading = leading and is_list
            _render_into(item, out, utf8)
        out.append(b")")


def render(value: ImapValue, *, utf8: bool = False) -> bytes:
    """Wire form of one value; `utf8` (UTF8=ACCEPT / IMAP4rev2) lets UTF-8 text go in quoted strings."""
    out: list[bytes] = []
    _render_into(value, out, utf8)
    return b"".join(out)


def astring(text: str, *, utf8: bool = False) -> bytes:
    """An astring: a bare atom when possible (never `NIL`, which would read as nil), else a string."""
    data = _utf8(text)
    if data and data.upper() != b"NIL" and all(c in _ASTRING_CHARS for c in data):
        return data
    return _string(data, utf8=utf8)


def mailbox_value(name: str, *, utf8: bool = False) -> ImapValue:
    """A mailbox name ready for a data tree: modified UTF-7 unless UTF8=ACCEPT, atom when safe."""
    wire = name if utf8 else mutf7.encode(name)
    raw = _utf8(wire)
    if raw and raw.upper() != b"NIL" and all(c in _ASTRING_CHARS for c in raw):
        return Atom(wire)
    return wire


def mailbox_name(name: str, *, utf8: bool = False) -> bytes:
    """Wire bytes of a mailbox name (see mailbox_value)."""
    return render(mailbox_value(name, utf8=utf8), utf8=utf8)


def flag_list(flags: Iterable[str]) -> list[Atom]:
    """Flags and keywords as a parenthesized-list value: render(flag_list(...)) gives `(\\Seen $Junk)`."""
    return [Atom(flag) for flag in flags]


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_date_time(moment: datetime) -> str:
    """RFC 3501 date-time text (`17-Jul-1996 02:44:25 -0700`) for INTERNALDATE; naive means UTC."""
    offset = moment.utcoffset()
    minutes = 0 if offset is None else int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return (
        f"{moment.day:02d}-{_MONTHS[moment.month - 1]}-{moment.year:04d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} {sign}{hours:02d}{mins:02d}"
    )


ResponseCode: TypeAlias = "str | Sequence[ImapValue] | None"
"""A response code: raw text (`TRYCREATE`, `UIDNEXT 4392`) or values joined by spaces (`[Atom("APPENDUID"), 1, 2]`)."""


def _code(code: ResponseCode, utf8: bool) -> bytes:
    if code is None:
        return b""
    body = _utf8(code) if isinstance(code, str) else b" ".join(render(v, utf8=utf8) for v in code)
    if not body or b"\r" in body or b"\n" in body:
        raise ValueError(f"invalid response code {code!r}")
    return b"[" + body + b"] "


def _text(text: str) -> bytes:
    clean = "".join(" " if c in "\r\n\0" else c for c in text).strip()
    return _utf8(clean or "done")


def tagged(tag: str, status: str, text: str, code: ResponseCode = None, *, utf8: bool = False) -> bytes:
    """`tag OK|NO|BAD [code] text` CRLF; code is raw text (`TRYCREATE`) or a list of values."""
    return tag.encode("ascii") + b" " + status.encode("ascii") + b" " + _code(code, utf8) + _text(text) + b"\r\n"


def untagged_status(status: str, text: str, code: ResponseCode = None, *, utf8: bool = False) -> bytes:
    """`* OK|NO|BAD|BYE|PREAUTH [code] text` CRLF, e.g. `* OK [UIDVALIDITY 3] UIDs valid`."""
    return b"* " + status.encode("ascii") + b" " + _code(code, utf8) + _text(text) + b"\r\n"


def untagged(*values: ImapValue, utf8: bool = False) -> bytes:
    """`* v1 v2 ...` CRLF, e.g. untagged(3, Atom("FETCH"), [Atom("UID"), 7]) → `* 3 FETCH (UID 7)`."""
    return b"* " + b" ".join(render(value, utf8=utf8) for value in values) + b"\r\n"


def continuation(text: str = "") -> bytes:
    """`+ text` CRLF: literal go-ahead, IDLE acknowledgement, or a base64 SASL challenge."""
    clean = "".join(" " if c in "\r\n\0" else c for c in text)
    return b"+ " + _utf8(clean) + b"\r\n"
