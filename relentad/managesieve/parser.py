"""ManageSieve syntax (RFC 5804 §4): commands in, strings and responses out. Pure functions over bytes.

A command is a name, then arguments separated by spaces, then CRLF: quoted strings (``"..."`` with ``\\"`` and
``\\\\`` escapes, no CR, LF or NUL), literals (``{n+}`` CRLF and n octets; the synchronizing ``{n}`` is taken the
same way, as Pigeonhole does: the protocol has no continuation for it), and numbers. The session reads a command's
lines and literals first (:func:`pending_literal` says how many octets follow a line) and hands the whole to
:func:`parse`, which checks the arguments against :data:`SIGNATURES` (one table, one place for arity and types).

Invariants: strings come out as ``str`` (UTF-8, strict: RFC 5804 §1.5); every malformed input is a
:class:`ParseError` with a one-line reason, never another exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LITERAL_AT_END = re.compile(rb"\{(\d{1,10})\+?\}\r?\n\Z")
_LITERAL = re.compile(rb"\{(\d{1,10})\+?\}\r?\n")
_ATOM = re.compile(rb"[^\x00-\x20\x22\x7b\x7f]+")
MAX_NUMBER = 4_294_967_295  # RFC 5804 §4: number = 1*DIGIT, a 32-bit value

# "s" a string, "n" a number, "m" a SASL mechanism (a string, or an atom as some clients send), "?" optional
SIGNATURES: dict[str, str] = {
    "AUTHENTICATE": "ms?",
    "STARTTLS": "",
    "LOGOUT": "",
    "CAPABILITY": "",
    "HAVESPACE": "sn",
    "PUTSCRIPT": "ss",
    "LISTSCRIPTS": "",
    "SETACTIVE": "s",
    "GETSCRIPT": "s",
    "DELETESCRIPT": "s",
    "RENAMESCRIPT": "ss",
    "CHECKSCRIPT": "s",
    "NOOP": "s?",
    "UNAUTHENTICATE": "",
}
"""Every command's arguments (RFC 5804 §2)."""


class ParseError(Exception):
    """A command that does not parse; ``str()`` is the reason, for the NO."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # upper case
    args: tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class _Atom:
    text: str


def pending_literal(line: bytes) -> int | None:
    """The size of the literal announced at the end of ``line`` (which ends in LF), or None."""
    found = _LITERAL_AT_END.search(line)
    return int(found.group(1)) if found else None


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("strings must be UTF-8") from None


def _quoted(raw: bytes, i: int, end: int) -> tuple[str, int]:
    """The quoted string starting at ``raw[i]`` (a DQUOTE), and the index after its closing DQUOTE."""
    out = bytearray()
    i += 1
    while i < end:
        char = raw[i]
        if char == 0x22:  # "
            return _decode(bytes(out)), i + 1
        if char == 0x5C:  # \
            if i + 1 >= end or raw[i + 1] not in b'"\\':
                raise ParseError('only \\" and \\\\ may be escaped in a quoted string')
            out.append(raw[i + 1])
            i += 2
            continue
        if char in b"\r\n\0":
            raise ParseError("a quoted string cannot hold CR, LF or NUL (send a literal)")
        out.append(char)
        i += 1
    raise ParseError("unterminated quoted string")


def _literal(raw: bytes, i: int) -> tuple[str, int]:
    """The literal starting at ``raw[i]`` (``{``), and the index after its data."""
    found = _LITERAL.match(raw, i)
    if found is None:
        raise ParseError("bad literal: {size} or {size+} then CRLF")
    size, start = int(found.group(1)), found.end()
    if start + size > len(raw):
        raise ParseError("literal shorter than announced")
    return _decode(raw[start : start + size]), start + size


def tokens(raw: bytes) -> list[str | _Atom]:
    """The tokens of one command (with its literals inline), up to the final CRLF."""
    out: list[str | _Atom] = []
    i = 0
    end = len(raw)
    if raw.endswith(b"\r\n"):
        end -= 2
    elif raw.endswith(b"\n"):
        end -= 1
    while i < end:
        char = raw[i]
        if char == 0x20:
            i += 1
            continue
        if char == 0x22:
            text, i = _quoted(raw, i, end)
            out.append(text)
        elif char == 0x7B:  # {
            text, i = _literal(raw, i)
            out.append(text)
        else:
            found = _ATOM.match(raw, i, end)
            if found is None:
                raise ParseError(f"unexpected character {chr(char)!r}")
            out.append(_Atom(found.group().decode("ascii", "replace")))
            i = found.end()
        if i < end and raw[i] not in b" ":
            raise ParseError("arguments are separated by spaces")
    return out


def _argument(kind: str, token: str | _Atom, command: str) -> str | int:
    if kind == "n":
        if not isinstance(token, _Atom) or not token.text.isdigit() or not token.text.isascii():
            raise ParseError(f"{command} expects a number")
        value = int(token.text)
        if value > MAX_NUMBER:
            raise ParseError("number too large")
        return value
    if isinstance(token, _Atom):
        if kind == "m":
            return token.text
        raise ParseError(f"{command} expects strings (quoted or literal), not {token.text[:40]!r}")
    return token


def parse(raw: bytes) -> Command:
    """One complete command: its name (case-insensitive) and arguments checked against :data:`SIGNATURES`."""
    found = tokens(raw)
    if not found or not isinstance(found[0], _Atom):
        raise ParseError("a command starts with its name")
    name = found[0].text.upper()
    signature = SIGNATURES.get(name)
    if signature is None:
        raise ParseError(f"unknown command {found[0].text[:40]!r}")
    kinds = signature.replace("?", "")
    required = len(kinds) - signature.count("?")
    given = found[1:]
    if not required <= len(given) <= len(kinds):
        raise ParseError(f"wrong number of arguments for {name}")
    return Command(name, tuple(_argument(kind, token, name) for kind, token in zip(kinds, given, strict=False)))


def parse_string(raw: bytes) -> str:
    """A line holding one string: the client's answer to a SASL challenge (RFC 5804 §2.1)."""
    found = tokens(raw)
    if len(found) != 1 or isinstance(found[0], _Atom):
        raise ParseError("expected one string")
    return found[0]


# -- output ------------------------------------------------------------------------------------------------


def string(text: str) -> bytes:
    """A string as the server sends it: quoted when short and free of CR, LF and NUL, else a literal."""
    data = text.encode("utf-8")
    if len(data) <= 1024 and not any(c in data for c in b"\r\n\0"):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n%s" % (len(data), data)


def response(status: str, text: str = "", code: str = "") -> bytes:
    """``OK`` / ``NO`` / ``BYE`` with an optional response code (RFC 5804 §1.3) and human-readable text."""
    out = status.encode()
    if code:
        out += b" (" + code.encode("utf-8") + b")"
    if text:
        out += b" " + string(text)
    return out + b"\r\n"
