"""Lexical layer of the IMAP command parser: a cursor over one command buffer (RFC 3501 §9, RFC 9051 §9).

The buffer is the command line(s) with every literal's bytes spliced in exactly as received, so `{5}` CRLF is
followed by five raw bytes. Each method reads one grammar token (atom, number, quoted, literal, astring,
date-time, flag, mailbox, sequence-set, ...) and advances, or raises `ParseError` naming what was expected.

Invariants: the only exception that escapes is `ParseError`; numbers are range-checked before `int()` sees
them (no huge-int or digit-limit errors); nesting is counted (`enter`/`leave`) and capped at `MAX_DEPTH` so
hostile input can never reach Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import NoReturn, TypeVar

from relentad.imap import mutf7
from relentad.imap.sequence import SequenceSet, SequenceSetError
from relentad.store.mailboxes import stored_name

__all__ = ["MAX_DEPTH", "Cursor", "ParseError"]

T = TypeVar("T")

MAX_DEPTH = 100
"""Deepest parenthesized nesting accepted (SEARCH programs are the only deep grammar)."""

_ATOM_SPECIALS = frozenset(b'(){ %*"\\]')
ATOM_CHARS = frozenset(c for c in range(0x21, 0x7F) if c not in _ATOM_SPECIALS)
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
TAG_CHARS = ASTRING_CHARS - {ord("+")}
LIST_CHARS = ATOM_CHARS | frozenset(b"%*]")
_SEQ_CHARS = frozenset(b"0123456789:,*$")
_DIGITS = frozenset(b"0123456789")

_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, start=1)}

SYSTEM_FLAGS = {f.upper(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent")}


class ParseError(Exception):
    """A syntax error; the server answers `<tag> BAD <text>`, or `* BAD <text>` when tag is None."""

    def __init__(self, tag: str | None, text: str) -> None:
        super().__init__(text)
        self.tag = tag
        self.text = text
        self.resets_saved = False
        """The command was a SEARCH RETURN (SAVE): its failure empties `$` (RFC 5182 §2.1)."""


class Cursor:
    """Reads grammar tokens from `buf`, left to right; `utf8` is the session's UTF8=ACCEPT state."""

    __slots__ = ("buf", "depth", "pos", "utf8")

    def __init__(self, buf: bytes, *, utf8: bool = False) -> None:
        self.buf = buf
        self.pos = 0
        self.utf8 = utf8
        self.depth = 0

    # -- basics ---------------------------------------------------------------------------------------------

    def error(self, message: str) -> ParseError:
        """A ParseError for `message`, showing what the client sent at this point."""
        rest = self.buf[self.pos : self.pos + 20].split(b"\n")[0].split(b"\r")[0]
        if not rest:
            return ParseError(None, f"{message}, found end of line")
        shown = "".join(chr(c) if 0x20 <= c < 0x7F else "?" for c in rest)
        return ParseError(None, f'{message}, found "{shown}"')

    def fail(self, message: str) -> NoReturn:
        """Raise `error(message)`."""
        raise self.error(message)

    def peek(self) -> int:
        """The next byte, or -1 at the end of the buffer."""
        return self.buf[self.pos] if self.pos < len(self.buf) else -1

    def at_end(self) -> bool:
        """True when only the final CRLF (or nothing) is left."""
        if len(self.buf) - self.pos > 2:  # no slice: the buffer may hold a large literal
            return False
        return self.buf[self.pos :] in (b"", b"\r\n", b"\n")

    def end(self) -> None:
        """Require the end of the command."""
        if not self.at_end():
            self.fail("expected end of command")
        self.pos = len(self.buf)

    def skip(self, token: bytes) -> bool:
        """Consume `token` (ASCII, case-insensitive) if it is next."""
        end = self.pos + len(token)
        if self.buf[self.pos : end].upper() == token.upper():
            self.pos = end
            return True
        return False

    def expect(self, token: bytes, what: str) -> None:
        """Consume `token` or fail with `expected <what>`."""
        if not self.skip(token):
            self.fail(f"expected {what}")

    def sp(self) -> None:
        """Require exactly one space."""
        self.expect(b" ", "space")

    def more(self) -> bool:
        """Consume a space when another argument follows; False at the end of the command."""
        if self.at_end():
            return False
        self.expect(b" ", "space or end of command")
        return True

    def take(self, allowed: frozenset[int]) -> bytes:
        """The longest run of bytes in `allowed` (possibly empty)."""
        start = self.pos
        buf = self.buf
        while self.pos < len(buf) and buf[self.pos] in allowed:
            self.pos += 1
        return buf[start : self.pos]

    def enter(self) -> None:
        """Count one more level of nesting; fail past MAX_DEPTH."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError(None, f"nesting deeper than {MAX_DEPTH} levels")

    def leave(self) -> None:
        self.depth -= 1

    def paren_list(self, item: Callable[[], T], *, allow_empty: bool = True) -> list[T]:
        """`(` item *(SP item) `)`; the items are read by `item`."""
        self.expect(b"(", '"("')
        self.enter()
        items: list[T] = []
        if not self.skip(b")"):
            items.append(item())
            while not self.skip(b")"):
                self.expect(b" ", 'space or ")"')
                items.append(item())
        elif not allow_empty:
            self.fail("expected a non-empty list")
        self.leave()
        return items

    # -- atoms and numbers ----------------------------------------------------------------------------------

    def atom(self, what: str, chars: frozenset[int] = ATOM_CHARS) -> str:
        """A non-empty run of atom characters, as text."""
        raw = self.take(chars)
        if not raw:
            self.fail(f"expected {what}")
        return raw.decode("ascii")

    def keyword(self, what: str) -> str:
        """An atom upper-cased, for case-insensitive grammar words."""
        return self.atom(what).upper()

    def number(self, what: str = "number", *, nonzero: bool = False, bits: int = 32) -> int:
        """number (32-bit), nz-number, number64 / mod-sequence-value (bits=63)."""
        start = self.pos
        raw = self.take(_DIGITS)
        limit = (1 << bits) - 1
        if not raw:
            self.fail(f"expected {what}")
        if len(raw) > len(str(limit)) or int(raw) > limit:
            self.pos = start
            self.fail(f"{what} is too large")
        value = int(raw)
        if nonzero and (value == 0 or raw[0] == ord("0")):
            self.pos = start
            self.fail(f"expected {what} (non-zero, no leading zeros)")
        return value

    # -- strings --------------------------------------------------------------------------------------------

    def quoted(self) -> bytes:
        """DQUOTE *QUOTED-CHAR DQUOTE, unescaped; 8-bit is accepted (UTF-8 in IMAP4rev2)."""
        self.expect(b'"', "quoted string")
        out = bytearray()
        buf = self.buf
        while True:
            if self.pos >= len(buf):
                self.fail("unterminated quoted string")
            c = buf[self.pos]
            self.pos += 1
            if c == 0x22:
                return bytes(out)
            if c == 0x5C:
                if self.pos >= len(buf) or buf[self.pos] not in (0x22, 0x5C):
                    self.fail('only \\" and \\\\ may be escaped in a quoted string')
                c = buf[self.pos]
                self.pos += 1
            elif c in (0x00, 0x0A, 0x0D):
                self.pos -= 1
                self.fail("CR, LF and NUL are not allowed in a quoted string")
            out.append(c)

    def literal(self, *, binary: bool = False) -> bytes:
        """`{n}` / `{n+}` CRLF followed by n bytes; with binary, also `~{n}` (literal8)."""
        if binary:
            self.skip(b"~")
        self.expect(b"{", "literal")
        size = self.number("literal size", bits=63)
        self.skip(b"+")
        self.expect(b"}", '"}" closing the literal size')
        if not (self.skip(b"\r\n") or self.skip(b"\n")):
            self.fail("expected CRLF after literal size")
        if size > len(self.buf) - self.pos:
            raise ParseError(None, "literal data is shorter than its announced size")
        data = self.buf[self.pos : self.pos + size]
        self.pos += size
        return data

    def string(self) -> bytes:
        """quoted / literal."""
        if self.peek() == ord("{"):
            return self.literal()
        if self.peek() != ord('"'):
            self.fail("expected string")
        return self.quoted()

    def astring(self, what: str = "astring") -> bytes:
        """1*ASTRING-CHAR / string."""
        if self.peek() in (ord('"'), ord("{")):
            return self.string()
        raw = self.take(ASTRING_CHARS)
        if not raw:
            self.fail(f"expected {what}")
        return raw

    def nstring(self) -> bytes | None:
        """string / NIL."""
        if self.skip(b"NIL"):
            return None
        return self.string()

    def text(self, raw: bytes, what: str) -> str:
        """Decode client text as UTF-8 (US-ASCII is a subset), failing on malformed bytes."""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(f"{what} is not valid UTF-8")

    def astring_text(self, what: str = "astring") -> str:
        """An astring decoded as UTF-8."""
        return self.text(self.astring(what), what)

    # -- mailboxes ------------------------------------------------------------------------------------------

    def _decode_mailbox(self, raw: bytes, what: str) -> str:
        if self.utf8:
            name = self.text(raw, what)
        else:
            try:
                name = mutf7.decode(raw.decode("ascii"))
            except (UnicodeDecodeError, mutf7.MUTF7Error) as exc:
                if isinstance(exc, UnicodeDecodeError):
                    self.fail(f"{what} has 8-bit characters; use modified UTF-7 or ENABLE UTF8=ACCEPT")
                self.fail(f"{what} is not valid modified UTF-7 ({exc})")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
            self.fail(f"{what} contains control characters")
        return name

    def mailbox(self, what: str = "mailbox name") -> str:
        """mailbox: decoded name, `INBOX` case-insensitive (also as the `INBOX/` prefix)."""
        return stored_name(self._decode_mailbox(self.astring(what), what))

    def list_mailbox(self) -> str:
        """list-mailbox: 1*list-char / string, decoded like a mailbox but wildcards kept."""
        if self.peek() in (ord('"'), ord("{")):
            raw = self.string()
        else:
            raw = self.take(LIST_CHARS)
            if not raw:
                self.fail("expected mailbox pattern")
        return self._decode_mailbox(raw, "mailbox pattern")

    # -- sets, flags, dates ---------------------------------------------------------------------------------

    def sequence_set(self, what: str = "sequence set", *, allow_saved: bool = True) -> SequenceSet:
        """sequence-set, or `$` (RFC 5182) when allowed."""
        start = self.pos
        raw = self.take(_SEQ_CHARS)
        try:
            return SequenceSet.parse(raw.decode("ascii"), allow_saved=allow_saved)
        except SequenceSetError as exc:
            self.pos = start
            self.fail(f"expected {what} ({exc})")

    def flag(self, *, settable: bool = False) -> str:
        """flag: a system flag in canonical case (`\\Seen`) or a keyword atom; `\\Recent` not settable."""
        if self.skip(b"\\"):
            word = self.atom("flag name after backslash")
            canonical = SYSTEM_FLAGS.get("\\" + word.upper())
            if canonical is None:
                self.fail(f"unknown system flag \\{word}")
            if settable and canonical == "\\Recent":
                self.fail("\\Recent cannot be set by a client")
            return canonical
        return self.atom("flag")

    def flag_list(self, *, settable: bool = False) -> tuple[str, ...]:
        """`(` [flag *(SP flag)] `)`."""
        return tuple(self.paren_list(lambda: self.flag(settable=settable)))

    def _day_month_year(self, *, fixed: bool) -> tuple[int, int, int]:
        if fixed:
            self.skip(b" ")  # date-day-fixed pads with a space: " 1-Feb-1994"
        day_raw = self.take(_DIGITS)
        if not 1 <= len(day_raw) <= 2:
            self.fail("expected day of month")
        self.expect(b"-", '"-" after day')
        month = _MONTHS.get(self.buf[self.pos : self.pos + 3].decode("latin-1").upper())
        if month is None:
            self.fail("expected month name (Jan..Dec)")
        self.pos += 3
        self.expect(b"-", '"-" after month')
        year_raw = self.take(_DIGITS)
        if len(year_raw) != 4:
            self.fail("expected four-digit year")
        return int(day_raw), month, int(year_raw)

    def date(self) -> date:
        """date: `1-Feb-1994`, optionally in double quotes."""
        quoted = self.skip(b'"')
        day, month, year = self._day_month_year(fixed=False)
        if quoted:
            self.expect(b'"', "closing quote of date")
        try:
            return date(year, month, day)
        except ValueError:
            self.fail(f"no such date {day}-{month}-{year}")

    def _two_digits(self, what: str) -> int:
        raw = self.buf[self.pos : self.pos + 2]
        if len(raw) != 2 or not all(c in _DIGITS for c in raw):
            self.fail(f"expected two-digit {what}")
        self.pos += 2
        return int(raw)

    def date_time(self) -> datetime:
        """date-time: `"17-Jul-1996 02:44:25 -0700"` as an aware datetime."""
        self.expect(b'"', "date-time")
        day, month, year = self._day_month_year(fixed=True)
        self.sp()
        hour = self._two_digits("hour")
        self.expect(b":", '":" in time')
        minute = self._two_digits("minute")
        self.expect(b":", '":" in time')
        second = self._two_digits("second")
        self.sp()
        sign = self.peek()
        if sign not in (ord("+"), ord("-")):
            self.fail("expected time zone (+hhmm or -hhmm)")
        self.pos += 1
        zone_hours = self._two_digits("zone hours")
        zone_minutes = self._two_digits("zone minutes")
        self.expect(b'"', "closing quote of date-time")
        if zone_minutes > 59 or zone_hours > 23:
            self.fail("invalid time zone")
        offset = timedelta(hours=zone_hours, minutes=zone_minutes)
        try:
            zone = timezone(-offset if sign == ord("-") else offset)
            return datetime(year, month, day, hour, minute, second, tzinfo=zone)
        except ValueError:
            self.fail("no such date or time")
