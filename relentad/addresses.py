"""Address lists (From, To, Cc …) parsed leniently, for the IMAP ENVELOPE and for the CRM.

One tokenizer and one state machine serve both: `envelope_addresses` yields RFC 3501 §7.4.2 address
structures, `parse_addresses` the decoded (display-name, mailbox@domain) pairs the CRM keeps.

Invariants:
- Never raises. RFC 5322 syntax is accepted with its obsolete forms (routes, spaces around dots and @,
  comments anywhere) and garbage is tolerated: an entry that is no address at all is skipped; a
  mailbox without a domain keeps its text as the mailbox and "" as host (host NIL would mean a group).
- Envelope names are the raw phrase (quotes removed, encoded-words kept, RFC 3501); when a mailbox has
  no phrase, its comment serves as the name, as Dovecot does.
- Groups per RFC 3501: [NIL, NIL, "name", NIL] … [NIL, NIL, NIL, NIL]; an unterminated group is closed.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from relentad.headers import decode_header

EnvelopeAddress = list[str | None]
"""[name, adl, mailbox, host] as in RFC 3501 §7.4.2."""


class Address(NamedTuple):
    """A decoded mailbox: display name ("" if none), mailbox@domain (domain lower-cased), group name."""

    name: str
    address: str
    group: str | None = None


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[<>,:;@]|\s+|[^\s"(<>,:;@]+', re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


def _tokens(value: str) -> list[str]:
    """Split into quoted strings (kept quoted), specials, atoms and comments ("(" + text); no spaces."""
    out: list[str] = []
    pos, size = 0, len(value)
    while pos < size:
        if value[pos] == "(":
            depth, start = 0, pos
            while pos < size:
                char = value[pos]
                if char == "\\":
                    pos += 1
                elif char == "(":
                    depth += 1
                elif char == ")":
                    depth -= 1
                    if depth == 0:
                        break
                pos += 1
            out.append("(" + _QUOTED_PAIR.sub(r"\1", value[start + 1 : pos]).strip())
            pos += 1
            continue
        match = _TOKEN.match(value, pos)
        if match is None:  # a stray ")" or similar: keep it as an atom
            out.append(value[pos])
            pos += 1
            continue
        token = match.group()
        if not token.isspace():
            out.append(token)
        pos = match.end()
    return out


def _word(token: str) -> str:
    if token.startswith('"'):
        inner = token[1:-1] if len(token) > 1 and token.endswith('"') else token[1:]
        return _QUOTED_PAIR.sub(r"\1", inner)
    return token


def _phrase(tokens: list[str]) -> str:
    """Display name or group name: words unquoted and joined by one space, empty words skipped."""
    return " ".join(word for word in map(_word, tokens) if word)


class _Builder:
    """State machine over tokens; collects envelope address structures."""

    def __init__(self) -> None:
        self.items: list[EnvelopeAddress] = []
        self.phrase: list[str] = []
        self.comments: list[str] = []
        self.angle: list[str] | None = None
        self.in_group = False

    def feed(self, tokens: list[str]) -> None:
        for item in tokens:
            if item.startswith("("):
                self.comments.append(item[1:])
            elif self.angle is not None:
                if item == ">":
                    self.close_angle()
                else:
                    self.angle.append(item)
            elif item == "<":
                self.angle = []
            elif item == ",":
                self.flush()
            elif item == ":" and not self.in_group:
                self.items.append([None, None, _phrase(self.phrase), None])
                self.in_group = True
                self.reset()
            elif item == ";":
                self.flush()
                if self.in_group:
                    self.items.append([None, None, None, None])
                    self.in_group = False
            else:
                self.phrase.append(item)
        if self.angle is not None:
            self.close_angle()
        self.flush()
        if self.in_group:
            self.items.append([None, None, None, None])

    def close_angle(self) -> None:
        assert self.angle is not None
        spec, self.angle = self.angle, None
        adl = None
        if spec and spec[0] == "@" and ":" in spec:
            colon = spec.index(":")
            adl = "".join(spec[:colon])
            spec = spec[colon + 1 :]
        name = _phrase(self.phrase) or None
        self.phrase = []
        if name is None and self.comments:
            name = self.comments[-1] or None
        self.add(name, adl, spec)
        self.comments = []

    def flush(self) -> None:
        if self.phrase:
            name = (self.comments[-1] or None) if self.comments else None
            self.add(name, None, self.phrase)
        self.reset()

    def reset(self) -> None:
        self.phrase = []
        self.comments = []

    def add(self, name: str | None, adl: str | None, spec: list[str]) -> None:
        spec = [t for t in spec if t not in (",", ":", ";", "<")]
        if not spec:
            return
        if "@" in spec:
            at = len(spec) - 1 - spec[::-1].index("@")
            local, domain = spec[:at], spec[at + 1 :]
            mailbox = "".join(local)
            host = "".join(domain)
        else:
            mailbox, host = " ".join(spec), ""
        if not mailbox and not host:
            return
        self.items.append([name, adl, mailbox, host])


# Possessive quantifiers (Python 3.11) keep the fast path linear on hostile input.
_ADDR_CHARS = r'[^<>@\s",()\\:;\[\]]++'
_SIMPLE_ENTRY = re.compile(
    rf"""\s*+(?:
        (?:"(?P<quoted>[^"\\]*+)"\s*+|(?P<phrase>[^"<>@(),:;\\\[\]]*+))<(?P<l1>{_ADDR_CHARS})@(?P<d1>{_ADDR_CHARS})>
      | (?P<l2>{_ADDR_CHARS})@(?P<d2>{_ADDR_CHARS})
    )\s*+(?:,|$)""",
    re.VERBOSE,
)


def fast_envelope_addresses(value: str) -> list[EnvelopeAddress] | None:
    """Fast path for the common shapes (a@b, Name <a@b>, "Name" <a@b>, comma-separated); None if other."""
    items: list[EnvelopeAddress] = []
    pos, size = 0, len(value)
    while pos < size:
        match = _SIMPLE_ENTRY.match(value, pos)
        if match is None or match.end() == pos:
            return None
        pos = match.end()
        local = match.group("l1")
        if local is None:
            items.append([None, None, match.group("l2"), match.group("d2")])
            continue
        name = match.group("quoted")
        if name is None:
            name = " ".join(match.group("phrase").split())
        items.append([name or None, None, local, match.group("d1")])
    return items


def envelope_addresses(value: str | None) -> list[EnvelopeAddress] | None:
    """RFC 3501 address structures for an unfolded header value; None (NIL) when it has none."""
    if not value:
        return None
    items = fast_envelope_addresses(value)
    if items is None:
        items = slow_envelope_addresses(value)
    return items or None


def slow_envelope_addresses(value: str) -> list[EnvelopeAddress]:
    """The general parser (what `envelope_addresses` does when its fast path does not apply)."""
    builder = _Builder()
    builder.feed(_tokens(value))
    return builder.items


def addresses_from_envelope(items: list[EnvelopeAddress] | None) -> list[Address]:
    """Decoded `Address` values from envelope structures; group markers become the `group` field."""
    out: list[Address] = []
    group: str | None = None
    for name, _adl, mailbox, host in items or ():
        if host is None:
            group = decode_header(mailbox) if mailbox is not None else None
            continue
        address = f"{mailbox}@{host.lower()}" if host else (mailbox or "")
        out.append(Address(decode_header(name) if name else "", address, group))
    return out


def parse_addresses(value: str | None) -> list[Address]:
    """Decoded mailboxes of an address-list header value (garbage skipped, never raises)."""
    return addresses_from_envelope(envelope_addresses(value))
