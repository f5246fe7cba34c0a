"""POP3 syntax (RFC 1939 §3, RFC 2449 §3): command lines in, status lines and multi-line bodies out. Pure functions.

A command is a case-insensitive keyword, then arguments separated by single spaces, then CRLF (a bare LF is taken
too, as every server does). :data:`SIGNATURES` is the one table of arity: PASS takes the rest of the line as one
argument (passwords may hold spaces, RFC 1939 §7), message numbers are checked here.

Invariants: every malformed line is a :class:`ParseError` with a one-line reason, never another exception; a body
sent by :func:`multiline` is CRLF-terminated and byte-stuffed (a line starting with "." gets another one), so the
client's un-stuffing gives back exactly the octets whose size LIST announced.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ARGUMENT = 40
"""RFC 2449 §3: arguments are at most 40 characters (but see :data:`LONG`, and PASS takes the rest of the line)."""
MAX_NUMBER = 2**31 - 1

# (fewest, most) arguments; "rest" takes what follows the keyword and one space as a single argument
SIGNATURES: dict[str, tuple[int, int]] = {
    "USER": (1, 1),
    "PASS": (1, 1),
    "AUTH": (0, 2),
    "STLS": (0, 0),
    "CAPA": (0, 0),
    "QUIT": (0, 0),
    "STAT": (0, 0),
    "LIST": (0, 1),
    "RETR": (1, 1),
    "DELE": (1, 1),
    "NOOP": (0, 0),
    "RSET": (0, 0),
    "TOP": (2, 2),
    "UIDL": (0, 1),
}
REST = frozenset(("PASS",))
LONG = frozenset(("AUTH", "USER"))
"""Commands whose arguments may exceed :data:`MAX_ARGUMENT`: a PLAIN initial response (RFC 5034 §4), and user
names, which are whole addresses here and often longer than 40 characters (Dovecot takes them too)."""


class ParseError(Exception):
    """A line that is not a valid command; ``str()`` is the reason, for the -ERR."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # upper case
    args: tuple[str, ...]


def parse(line: bytes) -> Command:
    """One command line (with or without its CRLF)."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    if b"\0" in line or b"\r" in line:
        raise ParseError("NUL or CR inside a command")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("commands must be ASCII or UTF-8") from None
    keyword, _, rest = text.partition(" ")
    name = keyword.upper()
    signature = SIGNATURES.get(name)
    if signature is None:
        raise ParseError(f"unknown command {keyword[:40]!r}" if keyword else "empty command")
    if name in REST:
        args: tuple[str, ...] = (rest,) if rest else ()
    else:
        args = tuple(rest.split(" ")) if rest else ()
        if "" in args:
            raise ParseError("arguments are separated by one space")
        if name not in LONG and any(len(arg) > MAX_ARGUMENT for arg in args):
            raise ParseError(f"arguments are at most {MAX_ARGUMENT} characters")
    fewest, most = signature
    if not fewest <= len(args) <= most:
        raise ParseError(f"wrong number of arguments for {name}")
    return Command(name, args)


def number(text: str, *, zero: bool = False) -> int:
    """A message number (positive) or, with ``zero``, a line count (RFC 1939 §7 TOP: non-negative; a huge one, as
    fetchmail sends for "the whole message", is capped)."""
    if not text.isascii() or not text.isdigit():
        raise ParseError(f"{text[:40]!r} is not a number")
    if zero:
        return min(int(text), MAX_NUMBER)
    value = int(text) if len(text) <= 10 else MAX_NUMBER + 1
    if value > MAX_NUMBER:
        raise ParseError(f"no message {text[:40]}")
    if value == 0:
        raise ParseError("message numbers start at 1")
    return value


# -- output ------------------------------------------------------------------------------------------------


def status(ok: bool, text: str, code: str = "") -> bytes:
    """``+OK`` / ``-ERR`` with an optional RFC 2449 §8 response code: ``-ERR [AUTH] ...``."""
    out = b"+OK" if ok else b"-ERR"
    if code:
        out += b" [" + code.encode("ascii") + b"]"
    if text:
        out += b" " + text.encode("utf-8", "replace").replace(b"\r", b" ").replace(b"\n", b" ")
    return out + b"\r\n"


TERMINATOR = b".\r\n"


def stuff(data: bytes) -> bytes:
    """A multi-line body (RFC 1939 §3) without its terminator: CRLF-terminated, lines starting with "." stuffed.
    ``data`` is CRLF-normalised already. One copy of ``data`` (a message may be tens of megabytes)."""
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if stuffed and not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed


def multiline(data: bytes) -> bytes:
    """A whole multi-line body: :func:`stuff` and the ".\\r\\n" terminator."""
    return stuff(data) + TERMINATOR


def top(data: bytes, lines: int) -> bytes:
    """TOP (RFC 1939 §7): the header, the blank line, and the first ``lines`` lines of the body."""
    if data.startswith(b"\r\n"):
        end = 2
    else:
        blank = data.find(b"\r\n\r\n")
        if blank < 0:
            return data
        end = blank + 4
    position = end
    for _ in range(lines):
        newline = data.find(b"\r\n", position)
        if newline < 0:
            return data
        position = newline + 2
    return data[:position]
