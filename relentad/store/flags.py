"""Message flags as the store keeps them and as IMAP names them (RFC 3501 §2.3.2, RFC 9051 §2.3.2).

The five settable system flags are bits of ``messages.flags``; keywords are a space-separated string in
``messages.keywords``. Invariants: keywords are atoms (no spaces), unique case-insensitively, in the order they were
first set; ``\\Recent`` is never stored: the session that owns a message as recent adds the :data:`RECENT` bit.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import InvalidInput
from .messages import ANSWERED, DELETED, DRAFT, FLAGGED, SEEN

SYSTEM_BITS: dict[str, int] = {
    "\\Seen": SEEN,
    "\\Answered": ANSWERED,
    "\\Flagged": FLAGGED,
    "\\Deleted": DELETED,
    "\\Draft": DRAFT,
}
SYSTEM_FLAGS: tuple[str, ...] = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
RECENT = 32
"""Pseudo bit for \\Recent: never stored, OR-ed in by the session that owns the message as recent."""
KEYWORD_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - frozenset('(){ %*"\\]')
"""An IMAP keyword is an atom (RFC 9051 §9: ATOM-CHAR, no atom-specials)."""


def is_keyword(text: str) -> bool:
    """Whether ``text`` can be a keyword: a non-empty atom that is no \\system flag."""
    return bool(text) and KEYWORD_CHARS.issuperset(text)


def canonical(flag: str) -> str:
    """``flag`` as stored and sent: a settable system flag in its canonical case (flags are case-insensitive), or
    a keyword; InvalidInput for anything else (a keyword that is no atom would break every FETCH FLAGS)."""
    if flag.startswith("\\"):
        for name in SYSTEM_FLAGS:
            if name.lower() == flag.lower():
                return name
        raise InvalidInput(f"{flag} is not a flag a message can be given")
    if not is_keyword(flag):
        raise InvalidInput(f'{flag!r} is not an IMAP keyword (printable ASCII without spaces or ( ) {{ % * " \\ ])')
    return flag


def split(flags: Iterable[str]) -> tuple[int, list[str]]:
    """(system bits, keywords) of a client flag list; ``\\Recent`` and unknown system flags are dropped."""
    bits = 0
    keywords: list[str] = []
    seen: set[str] = set()
    for flag in flags:
        if flag.startswith("\\"):
            bits |= SYSTEM_BITS.get(flag, 0)
        elif flag.lower() not in seen:
            seen.add(flag.lower())
            keywords.append(flag)
    return bits, keywords


def parse_keywords(text: str) -> list[str]:
    return text.split() if text else []


def names(bits: int, keywords: str) -> list[str]:
    """The IMAP flag list of a stored message: system flags first, then keywords."""
    out = [name for name in SYSTEM_FLAGS if bits & SYSTEM_BITS[name]]
    if bits & RECENT:
        out.append("\\Recent")
    out.extend(parse_keywords(keywords))
    return out


def apply(action: str, bits: int, keywords: str, new_bits: int, new_keywords: list[str]) -> tuple[int, str]:
    """STORE arithmetic (RFC 3501 §6.4.6): ``action`` is "replace", "add" or "remove"; returns (bits, keywords)."""
    current = parse_keywords(keywords)
    if action == "replace":
        return new_bits, " ".join(new_keywords)
    if action == "add":
        known = {k.lower() for k in current}
        return bits | new_bits, " ".join(current + [k for k in new_keywords if k.lower() not in known])
    removed = {k.lower() for k in new_keywords}
    return bits & ~new_bits, " ".join(k for k in current if k.lower() not in removed)
